"""Tests that close what the mutation runs of the registries found (issue 14).

bench/mutate_tables.py edits the registry tables' rows (a default, a type, an alias, a fact)
and bench/mutation.sh the registries' functions; these pin, by hand, the values the tables must
give: boundary values each argument's meaning allows or refuses, the aliases users write, the
defaults the references (PyTorch, Keras, TensorFlow) use. Each row says why.
"""

from __future__ import annotations

import pytest
from conftest import assert_summary
from dnn.compiler.diagnostics import SpecError
from dnn.compiler.driver import value
from dnn.compiler.values import Ref

import dnn

# (kind, text, why it must be refused)
REFUSED = [
    ("normalizer", "pca(n = 0)", "zero principal components keep nothing"),
    ("normalizer", "pca_whiten(n = 0)", "zero principal components keep nothing"),
    ("normalizer", "zca(eps = 0.0)", "eps keeps 1 / sqrt(lambda + eps) finite"),
    ("clipper", "adaptive(0.0)", "a ratio bound of 0 zeroes every gradient"),
    ("clipper", "adaptive(0.01, eps = 0.0)", "eps floors the parameter norm"),
    ("augmentation", "zoom(max_factor = 1.0)", "a scale of 1 - 1 = 0 collapses the image"),
    ("augmentation", "contrast(max_factor = 1.0)", "a factor of 0 flattens every channel"),
    ("augmentation", "rotate(max_degrees = 181.0)", "angles past 180 repeat"),
    ("augmentation", "random_flip(direction = diagonal)", "two directions only"),
    ("augmentation", "color_shift(max_delta = -0.1)", "a range U(-d, d) needs d >= 0"),
    ("augmentation", "noise(std = -0.1)", "a standard deviation is >= 0"),
    ("augmentation", "cutout(size = 0)", "an empty square cuts nothing"),
    ("augmentation", "random_crop(padding = -1)", "padding is a count of pixels"),
    ("layer", "local_response_norm(size = 0)", "the window holds at least its own channel"),
    ("layer", "local_response_norm(alpha = -1e-4)", "alpha scales a sum of squares, >= 0"),
    ("optimizer", "lion(b2 = 1.0)", "a momentum decay of 1 never takes a gradient in"),
    ("optimizer", "lion(b1 = 1.0)", "an interpolation weight of 1 ignores the gradient"),
    ("optimizer", "adamax(b2 = 1.0)", "an infinity norm that never decays"),
    ("optimizer", "lamb(b1 = 1.0)", "Adam's moments need a decay < 1"),
    ("schedule", "exponential(decay_rate = 0.0, decay_steps = 10)", "a rate of 0 is lr 0 at once"),
    ("schedule", "cosine(decay_steps = 0)", "the formula divides by decay_steps"),
    ("schedule", "one_cycle(max_lr = 0.0, total = 100)", "a peak rate of 0 never trains"),
    ("schedule", "cosine_restarts(period = 0)", "a cycle of no steps"),
    ("schedule", "one_cycle(max_lr = 0.1, total = 100, final_div_factor = 0.0)", "divides by it"),
    ("search", "best_ball(perturb = 0.0)", "a neighbourhood of size 0 searches nothing"),
    ("loss", "cross_entropy(label_smoothing = -0.1)", "a probability is >= 0"),
]

# (kind, text): every argument named, on the edge of what its meaning allows
ACCEPTED = [
    ("normalizer", "pca(n = 1)"),
    ("normalizer", "pca_whiten(n = 1, eps = 1e-5)"),
    ("normalizer", "zca(eps = 1e-5)"),
    ("clipper", "adaptive(0.01, eps = 1e-3)"),
    ("augmentation", "random_crop(padding = 0)"),
    ("augmentation", "random_flip(direction = vertical)"),
    ("augmentation", "random_flip(direction = horizontal)"),
    ("augmentation", "rotate(max_degrees = 180.0)"),
    ("augmentation", "rotate(max_degrees = 0.0)"),
    ("augmentation", "zoom(max_factor = 0.0)"),
    ("augmentation", "color_shift(max_delta = 0.0)"),
    ("augmentation", "noise(std = 0.0)"),
    ("augmentation", "cutout(size = 1)"),
    ("augmentation", "contrast(max_factor = 0.0)"),
    ("layer", "local_response_norm(size = 1, alpha = 0.0, beta = 0.0, k = 0.0)"),
    ("optimizer", "lion(lr = 1e-4, b1 = 0.0, b2 = 0.0, weight_decay = 0.0)"),
    ("schedule", "reduce_on_plateau(monitor = val_accuracy, mode = max)"),
    ("schedule", "cosine(decay_steps = 1, alpha = 1.0)"),
    ("initializer", "uniform(low = -0.1, high = 0.1)"),
    ("initializer", "normal(mean = 1.0, std = 0.0)"),  # a zero spread: a constant
]

# (kind, alias, the entry it names): the spellings users write (docs/reference.md)
ALIASES = [
    ("normalizer", "zscore", "standardize"),
    ("normalizer", "standard", "standardize"),
    ("normalizer", "min_max", "minmax"),
    ("normalizer", "center", "mean_subtraction"),
    ("normalizer", "whiten", "pca_whiten"),
    ("normalizer", "zca_whiten", "zca"),
    ("augmentation", "crop", "random_crop"),
    ("augmentation", "flip", "random_flip"),
    ("augmentation", "random_rotation", "rotate"),
    ("augmentation", "random_zoom", "zoom"),
    ("augmentation", "brightness", "color_shift"),
    ("augmentation", "gaussian_noise", "noise"),
    ("augmentation", "random_contrast", "contrast"),
    ("layer", "linear(2)", "dense"),
    ("layer", "maxpool", "maxpool2d"),
    ("layer", "avgpool", "avgpool2d"),
    ("layer", "batch_norm", "batchnorm"),
    ("layer", "layer_norm", "layernorm"),
    ("layer", "lrn", "local_response_norm"),
    ("layer", "concatenate", "concat"),
    ("clipper", "clip_by_value(1.0)", "value"),
    ("clipper", "clip_by_norm(1.0)", "norm"),
    ("clipper", "clip_by_average_norm(1.0)", "average_norm"),
    ("clipper", "clip_by_global_norm(1.0)", "global_norm"),
    ("clipper", "agc(0.01)", "adaptive"),
    ("activation", "linear_activation", "identity"),
    ("activation", "swish", "silu"),
    ("initializer", "xavier_uniform", "glorot_uniform"),
    ("initializer", "xavier_normal", "glorot_normal"),
    ("initializer", "kaiming_uniform", "he_uniform"),
    ("initializer", "kaiming_normal", "he_normal"),
    ("loss", "mean_squared_error", "mse"),
    ("loss", "mean_absolute_error", "mae"),
    ("loss", "bce", "binary_cross_entropy"),
    ("loss", "sigmoid_cross_entropy", "binary_cross_entropy"),
    ("loss", "categorical_cross_entropy", "cross_entropy"),
    ("loss", "softmax_cross_entropy", "cross_entropy"),
    ("schedule", "step_decay(step_size = 10)", "step"),
    ("schedule", "exponential_decay(decay_rate = 0.5, decay_steps = 10)", "exponential"),
    ("schedule", "natural_exp_decay(decay_rate = 0.5, decay_steps = 10)", "natural_exp"),
    ("schedule", "inverse_time_decay(decay_rate = 0.5, decay_steps = 10)", "inverse_time"),
    ("schedule", "polynomial_decay(decay_steps = 10)", "polynomial"),
    ("schedule", "cosine_decay(decay_steps = 10)", "cosine"),
    ("schedule", "sgdr(period = 10)", "cosine_restarts"),
    ("schedule", "onecycle(max_lr = 0.1, total = 100)", "one_cycle"),
    ("schedule", "plateau", "reduce_on_plateau"),
    ("optimizer", "nag(lr = 0.1)", "nesterov"),
    ("optimizer", "proximal_gradient_descent(lr = 0.1)", "proximal_sgd"),
    ("metric", "acc", "accuracy"),
    ("metric", "top_k_accuracy", "top_k"),
    ("metric", "f1_score", "f1"),
    ("metric", "mean_squared_error", "mse"),
    ("metric", "mean_absolute_error", "mae"),
    ("metric", "r2_score", "r2"),
]

# (kind, word, {argument: default}, where the default comes from)
DEFAULTS = [
    (
        "layer",
        "local_response_norm",
        {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0},
        "Krizhevsky et al. 2012, section 3.3: k = 2, n = 5, alpha = 1e-4, beta = 0.75",
    ),
    (
        "layer",
        "batchnorm",
        {"momentum": 0.99, "eps": 1e-5, "center": True, "scale": True},
        "flax.linen.BatchNorm: momentum 0.99, epsilon 1e-5, use_bias, use_scale",
    ),
    (
        "layer",
        "layernorm",
        {"eps": 1e-5, "center": True, "scale": True},
        "torch.nn.LayerNorm: eps 1e-5, elementwise_affine",
    ),
    (
        "initializer",
        "uniform",
        {"low": -0.05, "high": 0.05},
        "keras.initializers.RandomUniform: minval -0.05, maxval 0.05",
    ),
    (
        "initializer",
        "normal",
        {"mean": 0.0, "std": 0.05},
        "keras.initializers.RandomNormal: mean 0, stddev 0.05",
    ),
    ("activation", "softmax", {"axis": -1}, "keras.layers.Softmax: axis -1"),
    ("regularizer", "l1", {"l1": 0.01}, "keras.regularizers.L1: l1 0.01"),
    ("regularizer", "l2", {"l2": 0.01}, "keras.regularizers.L2: l2 0.01"),
    ("regularizer", "l1_l2", {"l1": 0.01, "l2": 0.01}, "keras.regularizers.l1_l2: 0.01, 0.01"),
]


@pytest.mark.parametrize(("kind", "text", "why"), REFUSED)
def test_values_an_argument_cannot_take_are_refused(kind: str, text: str, why: str) -> None:
    with pytest.raises(SpecError) as info:
        value(text, kind)
    assert info.value.diagnostics[0].code == "E0306", why


@pytest.mark.parametrize(("kind", "text"), ACCEPTED)
def test_values_on_the_edge_are_accepted(kind: str, text: str) -> None:
    value(text, kind)


@pytest.mark.parametrize(("kind", "alias", "name"), ALIASES)
def test_aliases_name_their_entry(kind: str, alias: str, name: str) -> None:
    assert value(alias, kind)[0].name == name


@pytest.mark.parametrize(("kind", "word", "defaults", "source"), DEFAULTS)
def test_defaults_follow_their_source(kind: str, word: str, defaults: dict, source: str) -> None:
    ref = value(word, kind)[0]
    assert {k: v for k, v in ref.args if k in defaults} == defaults, source


def test_local_response_norm_has_no_parameters() -> None:
    """AlexNet's normalization is a fixed function: 75·4 + 4 parameters, all the dense's."""
    src = "model m {\n  input x: f32[5, 5, 3]\n  lrn\n  flatten\n  dense(4)\n}\n"
    assert_summary(src, 75 * 4 + 4)


def test_prelu_slopes_per_channel_or_shared_start_at_a_quarter() -> None:
    """He et al. 2015 (section 2.2, as torch.nn.PReLU): one slope per channel, or one shared,
    initialized to 0.25."""
    src = "model m {\n  input x: f32[3]\n  dense(4)\n  prelu\n}\n"
    assert_summary(src, 3 * 4 + 4 + 4)
    assert_summary(src.replace("prelu", "prelu(shared = true)"), 3 * 4 + 4 + 1)
    init = dict(value("prelu", "activation")[0].args)["init"]
    assert (init.name, dict(init.args)) == ("constant", {"value": 0.25})


# the parameter-sized arrays each optimizer's state keeps, from the algorithms (PyTorch's
# `state` per parameter, TensorFlow's slots): (optimizer, arguments, count)
SLOTS = [
    ("sgd", {}, 0),
    ("sgd", {"momentum": 0.9}, 1),  # momentum_buffer
    ("momentum", {"momentum": 0.9}, 1),
    ("nesterov", {"momentum": 0.9}, 1),
    ("proximal_sgd", {}, 0),
    ("adagrad", {}, 1),  # sum
    ("adagrad_da", {}, 2),  # gradient sum, squared sum
    ("proximal_adagrad", {}, 1),  # accumulator
    ("ftrl", {}, 2),  # z, n
    ("rmsprop", {}, 1),  # square_avg
    ("rmsprop", {"centered": True, "momentum": 0.9}, 3),  # + grad_avg, momentum_buffer
    ("adadelta", {}, 2),  # square_avg, acc_delta
    ("adam", {}, 2),  # exp_avg, exp_avg_sq
    ("adam", {"amsgrad": True}, 3),  # + max_exp_avg_sq
    ("adamw", {}, 2),
    ("adamax", {}, 2),  # exp_avg, exp_inf
    ("nadam", {}, 2),
    ("radam", {}, 2),
    ("lion", {}, 1),  # exp_avg
    ("lamb", {}, 2),
    ("lars", {}, 1),  # momentum trace
]


@pytest.mark.parametrize(("name", "args", "count"), SLOTS)
def test_optimizer_state_slots(name: str, args: dict, count: int) -> None:
    from dnn.compiler.registry.optimizers import OPTIMIZERS

    assert OPTIMIZERS.lookup(name).slots.count(args) == count


# how weight_decay acts (torch.optim's documentation: an L2 term added to the gradient, or
# AdamW's decoupled shrinking; Lion and LAMB decouple it as their papers do)
COUPLED = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "amsgrad"]
COUPLED += ["adamax", "nadam", "radam", "lars"]
DECOUPLED = ["adamw", "lion", "lamb"]


@pytest.mark.parametrize("name", COUPLED + DECOUPLED)
def test_how_weight_decay_acts(name: str) -> None:
    from dnn.compiler.registry.optimizers import OPTIMIZERS

    want = "coupled" if name in COUPLED else "decoupled"
    assert OPTIMIZERS.lookup(name).info["weight_decay"] == want


SECTIONED = """model m {
  input x: f32[4]
  dense(3)
}
data {
  source = builtin("iris")
  split = { train: 0.8, test: 0.2 }
}
train {
  early_stopping = { monitor: val_loss, patience: 3, min_delta: 0.01, mode: min }
}
"""


def test_a_split_without_val_has_no_val_share_and_early_stopping_takes_min_delta() -> None:
    program = dnn.loads(SECTIONED)
    assert dict(program.data.split.items) == {"train": 0.8, "val": 0.0, "test": 0.2}
    stop = dict(program.train.early_stopping.items)
    assert (stop["patience"], stop["min_delta"], str(stop["mode"])) == (3, 0.01, "min")
    assert stop["restore_best"] is True  # Keras' restore_best_weights, on by default here


EVERY_FIELD = """model m {
  input x: f32[4]
  dense(8)
  dense(3)
}
data {
  source = builtin("iris")
  split = { train: 0.7, val: 0.2, test: 0.1 }
  normalize = standardize
  augment = [noise(0.01)]
  shuffle = false
  drop_last = true
  seed = 3
}
train {
  loss = cross_entropy
  metrics = [accuracy]
  batch_size = 16
  epochs = 2
  optimizer = sgd(lr = 0.1)
  schedule = constant
  clip = value(1.0)
  init = he_normal
  regularizer = l2(0.001)
  early_stopping = { monitor: val_accuracy, patience: 2, mode: max }
  seed = 7
  accumulate = 2
  lr_scale = { dense: 0.5 }
  decay_all = true
  freeze = ["dense_1"]
  loop = steps
  scan_repeats = false
  remat = false
  precision = bf16
  devices = 1
  shard = data
  ensemble = 2
}
"""


def test_every_section_field_is_read_under_its_name() -> None:
    """Each field written with a value other than its default comes back under its name."""
    program = dnn.loads(EVERY_FIELD)
    train = {k: v for k, v in program.train.fields if k in program.train.written}
    plain = {k: v if isinstance(v, (bool, int, float, tuple)) else str(v) for k, v in train.items()}
    assert {k: plain[k] for k in ("batch_size", "epochs", "seed", "accumulate", "decay_all")} == {
        "batch_size": 16,
        "epochs": 2,
        "seed": 7,
        "accumulate": 2,
        "decay_all": True,
    }
    assert plain["freeze"] == ("dense_1",) and plain["lr_scale"] == (("dense", 0.5),)
    assert (plain["loop"], plain["precision"], plain["shard"]) == ("steps", "bf16", "data")
    assert (plain["scan_repeats"], plain["remat"], plain["ensemble"]) == (False, False, 2)
    assert (train["init"].name, train["regularizer"].name, train["clip"].name) == (
        "he_normal",
        "l2",
        "value",
    )
    stop = dict(train["early_stopping"].items)
    assert (str(stop["monitor"]), stop["patience"], str(stop["mode"])) == ("val_accuracy", 2, "max")
    data = dict(program.data.fields)
    assert (data["shuffle"], data["drop_last"], data["seed"]) == (False, True, 3)
    assert str(data["normalize"]) == "standardize" or data["normalize"].name == "standardize"


def test_a_bias_refuses_an_initializer_defined_by_fans() -> None:
    for init in ("he_uniform", "he_normal", "glorot_uniform", "lecun_normal"):
        with pytest.raises(SpecError) as info:
            value(f"dense(2, bias_init = {init})", "layer")
        assert "needs a weight matrix" in info.value.diagnostics[0].message, init
    value("dense(2, bias_init = normal(std = 0.1))", "layer")


def test_early_stopping_counts_any_improvement_by_default() -> None:
    """keras.callbacks.EarlyStopping: min_delta 0."""
    src = SECTIONED.replace("patience: 3, min_delta: 0.01, mode: min", "patience: 3")
    assert dict(dnn.loads(src).train.early_stopping.items)["min_delta"] == 0.0


def test_an_empty_piecewise_boundary_list_is_refused_at_the_boundaries() -> None:
    with pytest.raises(SpecError) as info:
        value("piecewise_constant(boundaries = [], values = [1.0, 0.5])", "schedule")
    d = info.value.diagnostics[0]
    assert (d.span.col, d.code) == (20, "E0306") and "`boundaries`" in d.message


# ---------------------------------------------------------------- a word's own checks, in full
# Written against the survivors of the registry functions' mutation sample (SCOPE=registry,
# docs/soundness.md): the error fixtures match a message by substring, so a reworded message or
# hint, a lost hint, a moved position or a check that stopped firing went unseen. Each row is
# the whole diagnostic: (start column, end column, code, message, hint).

WORD_DIAGNOSTICS = [
    (
        "optimizer",
        "sgd(nesterov = true)",
        (
            5,
            20,
            "E0306",
            "Nesterov momentum needs `momentum` > 0 and `dampening` = 0",
            "set `momentum = 0.9` (and leave `dampening` at 0), or `nesterov = false`",
        ),
    ),
    (
        "schedule",
        "reduce_on_plateau(monitor = val_accuracy, mode = min)",
        (
            43,
            53,
            "E0306",
            "`val_accuracy` improves when it rises, but `mode` is `min`",
            "write `mode = max`",
        ),
    ),
    (
        "schedule",
        "reduce_on_plateau(monitor = val_loss, mode = max)",
        (
            39,
            49,
            "E0306",
            "`val_loss` improves when it falls, but `mode` is `max`",
            "write `mode = min`",
        ),
    ),
    (
        "schedule",
        "multistep(milestones = [10, 10])",  # equal milestones: not increasing
        (
            11,
            32,
            "E0306",
            "`milestones` must increase: 10 steps is followed by 10 steps",
            "list the boundaries in training order",
        ),
    ),
    (
        "schedule",
        "step(step_size = 0 epochs)",
        (6, 26, "E0306", "`step_size` must be longer than 0", None),
    ),
    (
        "schedule",
        "step(step_size = 1.5 steps)",  # a step count is whole
        (
            6,
            27,
            "E0306",
            "argument `step_size` of `step` must be an int >= 0 with a unit "
            "(`steps` or `epochs`), got `1.5 steps`",
            None,
        ),
    ),
    (
        "layer",
        "reshape([0, 3])",
        (
            9,
            15,
            "E0306",
            "argument `shape` of `reshape` must be list of ints > 0 (one may be -1), "
            "got a list of 2 ints",
            None,
        ),
    ),
    (
        "layer",
        "reshape([])",
        (
            9,
            11,
            "E0305",
            "argument `shape` of `reshape` must be list of ints > 0 (one may be -1), "
            "got an empty list",
            None,
        ),
    ),
    (
        "layer",
        "conv2d(2, kernel = [1.5, 2.0])",
        (
            11,
            30,
            "E0305",
            "argument `kernel` of `conv2d` must be an int > 0 or a list of 2, "
            "got a list of 2 values",
            None,
        ),
    ),
    (
        "layer",
        "conv2d(2, kernel = [[1], [2]])",
        (
            11,
            30,
            "E0305",
            "argument `kernel` of `conv2d` must be an int > 0 or a list of 2, "
            "got a list of 2 lists",
            None,
        ),
    ),
    (
        "layer",
        "conv2d(2, 3, padding = [[1, 1], [2, 2]])",  # per-side pairs, the same on both sides
        (
            14,
            40,
            "E0305",
            "argument `padding` of `conv2d` must be same | valid | int >= 0 | list "
            "of 2 ints (height, width), got a list of 2 lists",
            "padding is zeros added on both sides of each spatial axis: write `padding = [1, 2]` "
            "(height, width)",
        ),
    ),
    (
        "layer",
        "conv2d(2, 3, padding = [[1, 2], [2, 2]])",  # a pair that differs: not expressible
        (
            14,
            40,
            "E0305",
            "argument `padding` of `conv2d` must be same | valid | int >= 0 | list "
            "of 2 ints (height, width), got a list of 2 lists",
            "padding is zeros added on both sides of each spatial axis, the same before and after; "
            "per-side pairs are not taken",
        ),
    ),
    (
        "layer",
        "conv2d(2, 3, padding = [1, 1, 1])",  # one value too many, all equal
        (
            14,
            33,
            "E0305",
            "argument `padding` of `conv2d` must be same | valid | int >= 0 | list "
            "of 2 ints (height, width), got a list of 3 ints",
            "padding is zeros added on both sides of each spatial axis (height, width): "
            "write `padding = 1`",
        ),
    ),
    (
        "layer",
        "conv2d(2, 3, padding = [3])",  # one int in a list, for two axes
        (
            14,
            27,
            "E0305",
            "argument `padding` of `conv2d` must be same | valid | int >= 0 | list "
            "of 2 ints (height, width), got a list of 1 int",
            "padding is zeros added on both sides of each spatial axis (height, width): "
            "write `padding = 3`",
        ),
    ),
    (
        "layer",
        "conv1d(2, 3, padding = [1.0])",
        (
            14,
            29,
            "E0305",
            "argument `padding` of `conv1d` must be same | valid | int >= 0 | list "
            "of 1 int (length), got a list of 1 value",
            "padding is zeros added on both sides of each spatial axis: one int per axis (length), "
            "or one int for all",
        ),
    ),
    (
        "layer",
        "conv2d(2, 3, padding = vaild)",
        (
            14,
            29,
            "E0306",
            "argument `padding` of `conv2d` must be same | valid | int >= 0 | list "
            "of 2 ints (height, width), got `vaild`",
            "did you mean `valid`?",
        ),
    ),
    (
        "layer",
        "conv2d(2, kernel = [1, 2, 3])",
        (
            11,
            29,
            "E0305",
            "argument `kernel` of `conv2d` must be an int > 0 or a list of 2, got a list of 3 ints",
            None,
        ),
    ),
    (
        "layer",
        "zero_pad(padding = [[1, 2, 3]])",
        (
            10,
            31,
            "E0305",
            "argument `padding` of `zero_pad` must be int >= 0 | list of ints >= 0 "
            "(one per spatial axis) | list of [before, after] pairs, got a list of 1 list",
            "each pair is `[before, after]`",
        ),
    ),
    (
        "layer",
        "cnv2d(2)",  # three close names: `a`, `b` or `c`
        (1, 6, "E0205", "unknown layer `cnv2d`", "did you mean `conv2d`, `conv3d` or `conv1d`?"),
    ),
    (
        "layer",
        "dense(2, init = 3)",  # "an initializer", not "a initializer"
        (
            10,
            18,
            "E0305",
            "argument `init` of `dense` must be an initializer name such as `zeros`, got `3`",
            None,
        ),
    ),
    (
        "layer",
        'dropout("0.5")',
        (
            9,
            14,
            "E0305",
            'argument `rate` of `dropout` must be a number in [0, 1), got `"0.5"`',
            "write it without quotes: `0.5`",
        ),
    ),
    (
        "layer",
        "flatten(relu)",  # a bare word past the positional arguments: a misspelt name
        (9, 13, "E0201", "unknown name `relu`", "define it with `param` or as a block argument"),
    ),
    (
        "layer",
        "conv_transpose2d(2, 3, stride = 2, padding = same, output_padding = 1)",
        (
            52,
            70,
            "E0306",
            "`output_padding` does not apply with `padding = same`, whose output is input · stride",
            "remove `output_padding`, or give the padding as a number",
        ),
    ),
    (
        "layer",
        "conv_transpose1d(2, 3, stride = 2, output_padding = 2)",
        (
            36,
            54,
            "E0306",
            "`output_padding = 2` on spatial axis 0 must be smaller than the stride "
            "(2) or the dilation (1)",
            "output_padding only picks among the output lengths a stride allows: use at most 1",
        ),
    ),
    (
        "layer",
        "maxpool2d(2, padding = same, ceil_mode = true)",
        (
            30,
            46,
            "E0306",
            "`ceil_mode` does not apply with `padding = same`, which already covers the input",
            "remove `ceil_mode`, or give the padding as a number",
        ),
    ),
    (
        "layer",
        "conv2d(4, 3, groups = 3)",
        (
            14,
            24,
            "E0306",
            "`groups = 3` does not divide `filters = 4`",
            "choose `groups` dividing both input and output channels",
        ),
    ),
    (
        "distribution",
        "uniform(0.5, 0.5)",
        (14, 17, "E0306", "`low` must be less than `high`", None),
    ),
    (
        "objective",
        "minimize(val_accuracy)",
        (10, 22, "E0306", "`val_accuracy` is better when higher", "write `maximize(val_accuracy)`"),
    ),
    (
        "objective",
        "maximize(val_loss)",
        (10, 18, "E0306", "`val_loss` is better when lower", "write `minimize(val_loss)`"),
    ),
    (
        "dataset",
        'images("x", size = [32])',
        (
            13,
            24,
            "E0306",
            "`size` needs 2 items, [height, width], got 1",
            "write `size = [32, 32]`",
        ),
    ),
]


@pytest.mark.parametrize(("kind", "text", "want"), WORD_DIAGNOSTICS)
def test_a_word_s_own_check_in_full(kind: str, text: str, want: tuple) -> None:
    with pytest.raises(SpecError) as info:
        value(text, kind)
    got = [(d.span.col, d.span.end_col, d.code, d.message, d.hint) for d in info.value.diagnostics]
    assert got == [want]


def model(shape: str, *layers: str) -> str:
    return f"model m {{\n  input x: f32[{shape}]\n" + "".join(f"  {x}\n" for x in layers) + "}\n"


PROJECT = "project one input to match, e.g. `conv2d(32, kernel = 1, stride = 2)` on the skip path"

# (spec, [(line:col, code, message, hint)]): shape rules' problems, in full
SHAPE_DIAGNOSTICS = [
    (
        model("3, 4", "concat(x, x, axis = 2)"),  # the rank itself is one past the last axis
        [
            (
                "3:16",
                "E0401",
                "`axis = 2` is out of range for inputs of rank 2",
                "use an axis from -2 to 1; -1 is the channels",
            )
        ],
    ),
    (
        model("3", "add(x, dense(4)(x))"),  # two inputs: the second is compared too
        [
            (
                "3:3",
                "E0403",
                "`add` inputs have different shapes: (3,) and (4,)",
                "project one input to match, e.g. `dense(4)`",
            )
        ],
    ),
    (
        model("8, 8, 16", "add(x, conv2d(32, 3, stride = 2, padding = same)(x))"),
        [
            (
                "3:3",
                "E0403",
                "`add` inputs have different shapes: (8, 8, 16) and (4, 4, 32)",
                PROJECT,
            )
        ],
    ),
    (
        model("8", "patch_embed(4, 2)"),
        [
            (
                "3:3",
                "E0402",
                "`patch_embed` expects an input of rank 3 (height, width, channels), "
                "got shape (8,)",
                "insert `reshape([...])` before `patch_embed` to give it (height, width, channels)",
            )
        ],
    ),
    (
        model("8", "sinusoidal_embedding"),
        [
            (
                "3:3",
                "E0402",
                "`sinusoidal_embedding` expects an input of rank 2 (time, features), "
                "got shape (8,)",
                "insert `reshape([...])` before `sinusoidal_embedding` to give it (time, features)",
            )
        ],
    ),
    (
        model("8", "sequence_pool"),
        [
            (
                "3:3",
                "E0402",
                "`sequence_pool` expects an input of rank 2 (time, features), got shape (8,)",
                "insert `reshape([...])` before `sequence_pool` to give it (time, features)",
            )
        ],
    ),
    (
        model("5, 4, 3", "lstm(4)"),  # every axis after the first folds into the features
        [
            (
                "3:3",
                "E0402",
                "`lstm` expects an input of rank 2 (time, features), got shape (5, 4, 3)",
                "insert `reshape([5, 12])` before `lstm` to make (time, features)",
            )
        ],
    ),
    (
        model("4", "dense(3)") + "train {\n  devices = 0\n}\n",  # a value out of range: E0306
        [("6:13", "E0306", "field `devices` of `train` must be all | int > 0, got `0`", None)],
    ),
    (
        model("8", "conv_transpose2d(2, 3)"),
        [
            (
                "3:3",
                "E0402",
                "`conv_transpose2d` expects an input of rank 3 (height, width, "
                "channels), got shape (8,)",
                "insert `reshape([...])` before `conv_transpose2d` to "
                "give it (height, width, channels)",
            )
        ],
    ),
    (
        model("4, 4, 2", "conv_transpose2d(2, 3, padding = 5)"),
        [
            (
                "3:26",
                "E0401",
                "`conv_transpose2d` output length -4 on spatial axis 0 is not "
                "positive: (n - 1)·stride - 2·padding + dilation·(kernel - 1) + output_padding + 1 "
                "with n = 4",
                "use a smaller `padding`",
            )
        ],
    ),
    (
        model("6, 6, 2", "adaptive_avgpool([2, 2, 2])"),
        [
            (
                "3:20",
                "E0401",
                "`output_size` has 3 values, but the input of `adaptive_avgpool` has "
                "2 spatial axes",
                "give one int for all axes, or 2",
            )
        ],
    ),
    (
        model("6, 6, 3", "conv2d(4, 3, groups = 2)"),
        [
            (
                "3:16",
                "E0401",
                "`groups = 2` does not divide the 3 input channels",
                "choose `groups` dividing both input and output channels",
            )
        ],
    ),
    (
        model("5, 5, 1", "maxpool2d(7, ceil_mode = true)"),
        [
            (
                "3:3",
                "E0401",
                "`maxpool2d` window 7 is larger than the input length 5 on spatial axis 0",
                "use `padding = same`, a smaller kernel or stride, or fewer downsampling layers",
            )
        ],
    ),
    (
        model("5, 5, 1", "cropping([1, 2, 3])"),
        [
            (
                "3:12",
                "E0401",
                "`cropping` has 3 entries, but the input of `cropping` has 2 spatial axes",
                "give one int for all sides, 2 ints, or 2 `[before, after]` pairs",
            )
        ],
    ),
]


@pytest.mark.parametrize(("src", "want"), SHAPE_DIAGNOSTICS)
def test_a_shape_rule_s_problem_in_full(src: str, want: list) -> None:
    with pytest.raises(SpecError) as info:
        dnn.loads(src, "spec.dnn")
    got = [
        (f"{d.span.line}:{d.span.col}", d.code, d.message, d.hint) for d in info.value.diagnostics
    ]
    assert got == want


def test_conv_transpose_with_valid_padding_is_pytorch_s_length() -> None:
    """`valid` is padding 0: out = (n - 1)·s + d·(k - 1) + output_padding + 1 (PyTorch's
    ConvTranspose2d): (5 - 1)·2 + 2·(3 - 1) + 1 + 1 = 14, (6 - 1)·2 + 2·2 + 0 + 1 = 15."""
    src = model(
        "5, 6, 2",
        "conv_transpose2d(3, 3, stride = 2, padding = valid, dilation = 2, "
        "output_padding = [1, 0])",
    )
    assert dnn.loads(src).model.nodes[-1].shape == (14, 15, 3)


def test_the_word_none_is_a_ref_of_its_own_kind() -> None:
    src = model("4", "dense(3)") + 'data {\n  source = builtin("iris")\n  normalize = none\n}\n'
    assert dnn.loads(src).data.normalize == Ref("normalizer", "none", ())
