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
