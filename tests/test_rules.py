"""The cross-checks of compiler/rules.py, one spec per diagnostic, with its whole text.

Each case is a small spec and the complete list of what `dnn check` reports for it (position,
code, message, hint; errors, or warnings where it passes), compared with `==`: a rule that stops
firing, fires twice, moves, or changes a word fails here. Specs that pass list the metrics check
fills in. Written against the survivors of mutation testing (docs/soundness.md, "How strong the
tests are"), whose message and hint mutants the fixtures' substring matches let through.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dnn.compiler.diagnostics import SpecError
from dnn.compiler.driver import load, loads
from dnn.compiler.registry.metrics import monitor_mode
from dnn.compiler.values import Ref


def spec(model: str, data: str = "", train: str = "") -> str:
    """A spec from `; `-separated lines of the model, data and train sections."""
    text = "dnn 1\nmodel m {\n" + "".join(f"  {line}\n" for line in model.split("; ")) + "}\n"
    if data:
        text += "data {\n" + "".join(f"  {line}\n" for line in data.split("; ")) + "}\n"
    if train:
        text += "train {\n" + "".join(f"  {line}\n" for line in train.split("; ")) + "}\n"
    return text


TWO = "input x: f32[64]; output digit = dense(10)(x); output odd = dense(1)(x)"
CASES = {
    "loss_names_close": spec(
        TWO,
        'source = builtin("digits_multi")',
        "loss = { digt: cross_entropy, digit: cross_entropy, odd: binary_cross_entropy }",
    ),
    "loss_names_far": spec(
        TWO, "", "loss = { zzz: mse, digit: cross_entropy, odd: binary_cross_entropy }"
    ),
    "no_loss_first": spec(
        "input x: f32[4]; output a = dense(3)(x); output b = dense(1)(x)",
        "",
        "loss = { b: cross_entropy }",
    ),
    "weights_name": spec(
        TWO,
        "",
        "loss = { digit: cross_entropy, odd: binary_cross_entropy }; loss_weights = { od: 2.0 }",
    ),
    "multi_no_target": spec(
        "input x: f32[64]; output digit = dense(10)(x); output even = dense(1)(x)",
        'source = builtin("digits_multi")',
        "loss = { digit: cross_entropy, even: binary_cross_entropy }",
    ),
    "multi_binary_k": spec(
        "input x: f32[64]; output digit = dense(1)(x); output odd = dense(1)(x)",
        'source = builtin("digits_multi")',
        "loss = { digit: binary_cross_entropy, odd: binary_cross_entropy }",
    ),
    "multi_multiclass_k": spec(
        "input x: f32[64]; output digit = dense(5)(x); output odd = dense(2)(x)",
        'source = builtin("digits_multi")',
        "loss = cross_entropy",
    ),
    "multi_multilabel_k": spec(
        "input x: f32[64]; output digit = dense(10)(x); output odd = dense(3)(x)",
        'source = builtin("digits_multi")',
        "loss = { digit: cross_entropy, odd: binary_cross_entropy }",
    ),
    "multi_ok": spec(
        "input x: f32[64]; output digit = dense(10)(x); output odd = dense(1)(x)",
        'source = builtin("digits_multi")',
        "loss = { digit: cross_entropy, odd: binary_cross_entropy }",
    ),
    "multi_images": spec(
        "input x: f32[4, 4, 1]; f = flatten(x); output a = dense(3)(f); output b = dense(1)(f)",
        'source = images("imgs")',
        "loss = { a: cross_entropy, b: mse }",
    ),
    "multi_csv": spec(
        "input x: f32[4]; output a = dense(3)(x); output b = dense(1)(x)",
        'source = csv("t.csv")',
        "loss = { a: cross_entropy, b: mse }",
    ),
    "multi_csv_label": spec(
        "input x: f32[4]; output a = dense(3)(x); output b = dense(1)(x)",
        'source = csv("t.csv", label = "y")',
        "loss = { a: cross_entropy, b: mse }",
    ),
    "multi_npz_y": spec(
        "input x: f32[4]; output a = dense(3)(x); output b = dense(1)(x)",
        'source = npz("t.npz", y = "a")',
        "loss = { a: cross_entropy, b: mse }",
    ),
    "multi_targets": spec(
        "input x: f32[4]; output a = dense(3)(x); output b = dense(1)(x)",
        'source = npz("t.npz"); targets = standardize',
        "loss = { a: cross_entropy, b: mse }",
    ),
    "multi_targets_classes": spec(
        "input x: f32[4]; output a = dense(3)(x); output b = dense(1)(x)",
        'source = npz("t.npz"); targets = standardize',
        "loss = { a: cross_entropy, b: binary_cross_entropy }",
    ),
    "ce_one_unit": spec("input x: f32[4]; dense(1)", "", "loss = cross_entropy"),
    "class_image_dense": spec("input x: f32[4, 4, 1]; dense(3)", "", "loss = cross_entropy"),
    "class_image_conv": spec("input x: f32[4, 4, 1]; conv2d(3, 3)", "", "loss = cross_entropy"),
    "class_seq_dense": spec("input x: f32[5, 2]; dense(3)", "", "loss = cross_entropy"),
    "metric_one": spec("input x: f32[4]; dense(3)", "", "loss = cross_entropy; metrics = [mae]"),
    "metric_multi": spec(
        "input x: f32[4]; output a = dense(3)(x); output b = dense(1)(x)",
        "",
        "loss = { a: cross_entropy, b: binary_cross_entropy }; metrics = [mae]",
    ),
    "defaults_multi": spec(
        "input x: f32[4]; output a = dense(3)(x); output b = dense(1)(x); output c = dense(2)(x)",
        "",
        "loss = { a: cross_entropy, b: mse, c: binary_cross_entropy }",
    ),
    "defaults_reg": spec("input x: f32[4]; dense(1)", "", "loss = mse"),
    "mixed_dtypes": spec(
        "input a: i32[4]; input b: f32[4]; output dense(2)(concat(embedding(20, 3)(a) -> flatten, b))",
        'source = npz("t.npz")',
    ),
    "norm_ids": spec(
        "input x: i32[13]; embedding(20, 4); flatten; dense(2)",
        'source = builtin("tokens"); normalize = standardize',
    ),
    "pca_too_many": spec(
        "input x: f32[4]; dense(3)", 'source = builtin("iris"); normalize = pca(n = 9)'
    ),
    "real_into_int": spec(
        "input x: i32[4]; embedding(20, 3); flatten; dense(3)", 'source = builtin("iris")'
    ),
    "int_into_real": spec("input x: f32[13]; dense(2)", 'source = builtin("tokens")'),
    "inputs_add_up_pca": spec(
        "input a: f32[1]; input b: f32[1]; output dense(3)(concat(a, b))",
        'source = builtin("iris"); normalize = pca(n = 3)',
    ),
    "one_input_size": spec("input x: f32[5]; dense(3)", 'source = builtin("iris")'),
    "one_input_size_pca": spec(
        "input x: f32[5]; dense(3)", 'source = builtin("iris"); normalize = pca(n = 2)'
    ),
    "reg_width": spec("input x: f32[10]; dense(3)", 'source = builtin("diabetes")', "loss = mse"),
    "class_on_real": spec(
        "input x: f32[10]; dense(3)", 'source = builtin("diabetes")', "loss = cross_entropy"
    ),
    "reg_of_labels": spec("input x: f32[4]; dense(3)", 'source = builtin("iris")', "loss = mse"),
    "binary_three": spec(
        "input x: f32[4]; dense(1)", 'source = builtin("iris")', "loss = binary_cross_entropy"
    ),
    "multiclass_width": spec(
        "input x: f32[4]; dense(4)", 'source = builtin("iris")', "loss = cross_entropy"
    ),
    "multilabel_width": spec(
        "input x: f32[4]; dense(4)", 'source = builtin("iris")', "loss = binary_cross_entropy"
    ),
    "reg_one_label_ok": spec("input x: f32[4]; dense(1)", 'source = builtin("iris")', "loss = mse"),
    "augment_pca": spec(
        "input x: f32[8, 8, 1]; flatten; dense(10)",
        'source = builtin("digits"); normalize = pca(n = 10); augment = [random_flip]',
    ),
    "augment_two_inputs": spec(
        "input a: f32[1]; input b: f32[1]; output dense(2)(concat(a, b))",
        'source = npz("t.npz"); augment = [random_flip]',
    ),
    "augment_noise_ok": spec(
        "input x: f32[4]; dense(3)", 'source = builtin("iris"); augment = [noise(0.1)]'
    ),
    "rate_divides": spec(
        "input x: f32[4]; dense(3)",
        "",
        "optimizer = adagrad_da(lr = 0.1); schedule = cosine(decay_steps = 100 steps, warmup = 10 steps)",
    ),
    "rate_no_warmup": spec(
        "input x: f32[4]; dense(3)",
        "",
        "optimizer = ftrl(lr = 0.1); schedule = cosine(decay_steps = 100 steps)",
    ),
    "targets_pca": spec(
        "input x: f32[10]; dense(1)", 'source = builtin("diabetes"); targets = zca', "loss = mse"
    ),
    "targets_class": spec(
        "input x: f32[4]; dense(3)",
        'source = builtin("iris"); targets = minmax',
        "loss = cross_entropy",
    ),
    "model_only_one_unit": spec("input x: f32[4]; dense(1)"),
    "warmup_zero": spec(
        "input x: f32[4]; dense(3)",
        "",
        "optimizer = ftrl(lr = 0.1); schedule = cosine(decay_steps = 100 steps, warmup = 0 steps)",
    ),
    "val_after_builtin": spec(
        "input x: f32[4]; dense(3)", 'source = builtin("iris"); val = npz("v.npz")'
    ),
    "augment_two_images": spec(
        "input a: f32[8, 8, 1]; input b: f32[8, 8, 1]; output dense(2)(concat(a, b) -> flatten)",
        'source = npz("t.npz"); augment = [random_flip]',
    ),
    "augment_image_ok": spec(
        "input x: f32[8, 8, 1]; flatten; dense(10)",
        'source = builtin("digits"); augment = [random_flip]',
    ),
    "reg_of_labels_two": spec(
        "input x: f32[4]; dense(2)", 'source = builtin("iris")', "loss = mse"
    ),
    "metric_with_invalid_head": spec(
        "input x: f32[4]; output a = dense(3)(x); output b = dense(1)(x)",
        "",
        "loss = cross_entropy; metrics = [mae]",
    ),
    "rate_constant_ok": spec(
        "input x: f32[4]; dense(3)", "", "optimizer = ftrl(lr = 0.1); schedule = constant"
    ),
    "targets_regression_ok": spec(
        "input x: f32[10]; dense(1)",
        'source = builtin("diabetes"); targets = standardize',
        "loss = mse",
    ),
    "regression_image_ok": spec("input x: f32[4, 4, 1]; dense(3)", "", "loss = mse"),
    "files": spec(
        "input x: f32[4]; dense(3)",
        'source = csv("nope.csv"); val = npz("v.npz"); test = images("imgs")',
    ),
}

EXPECTED: dict[str, list[tuple[str, str, str, str | None]]] = {
    "loss_names_close": [
        (
            "11:10",
            "E0602",
            "`loss` names `digt`, which is not an output of the model",
            "did you mean `digit`?",
        )
    ],
    "loss_names_far": [
        (
            "8:10",
            "E0602",
            "`loss` names `zzz`, which is not an output of the model",
            "outputs: `digit`, `odd`",
        )
    ],
    "no_loss_first": [
        (
            "4:14",
            "E0602",
            "output `a` has no loss",
            "add `a: mse` (or the loss it needs) to `loss = { ... }`",
        ),
        (
            "5:14",
            "E0401",
            "`cross_entropy` is not valid for a model with 1 output unit: softmax over one unit is 1 whatever the weights, so the loss is always 0",
            "end the model with `dense(2)` (two classes), or train with `binary_cross_entropy`",
        ),
    ],
    "weights_name": [
        (
            "9:18",
            "E0602",
            "`loss_weights` names `od`, which is not an output of the model",
            "did you mean `odd`?",
        )
    ],
    "multi_no_target": [
        (
            "5:17",
            "E0601",
            "output `even` has no target in `digits_multi`",
            "its targets: `digit`, `odd`",
        )
    ],
    "multi_binary_k": [
        (
            "4:18",
            "E0401",
            "output `digit` has 1 unit for `binary_cross_entropy`, but its target has 10 classes",
            "end `digit` with `dense(10)` and train it with `cross_entropy`",
        )
    ],
    "multi_multiclass_k": [
        (
            "4:18",
            "E0401",
            "output `digit` has 5 units for `cross_entropy`, but its target has 10 classes",
            "end `digit` with `dense(10)`",
        )
    ],
    "multi_multilabel_k": [
        (
            "5:16",
            "E0401",
            "output `odd` has 3 units for `binary_cross_entropy`, but its target has 2 classes",
            "end `odd` with `dense(2)`",
        )
    ],
    "multi_ok": [],
    "multi_images": [
        (
            "6:14",
            "E0601",
            "the model has 2 outputs, but an `images` source has one target per example",
            "read the targets from an npz archive with one array per output (`a`, `b`) or a CSV "
            "file with a column per output, or keep one `output`",
        ),
        (
            "9:12",
            "W0806",
            "`imgs` does not exist: `dnn train` would stop here",
            "the path is relative to the folder of the spec file",
        ),
    ],
    "multi_csv": [
        (
            "8:12",
            "W0806",
            "`t.csv` does not exist: `dnn train` would stop here",
            "the path is relative to the folder of the spec file",
        ),
    ],
    "multi_csv_label": [
        (
            "8:12",
            "E0602",
            '`label = "y"` names the target of a model with one output; the 2 outputs read the '
            "targets named after them (`a`, `b`)",
            "leave `label` out",
        ),
        (
            "8:12",
            "W0806",
            "`t.csv` does not exist: `dnn train` would stop here",
            "the path is relative to the folder of the spec file",
        ),
    ],
    "multi_npz_y": [
        (
            "8:12",
            "E0602",
            '`y = "a"` names the target of a model with one output; the 2 outputs read the '
            "targets named after them (`a`, `b`)",
            "leave `y` out",
        ),
        (
            "8:12",
            "W0806",
            "`t.npz` does not exist: `dnn train` would stop here",
            "the path is relative to the folder of the spec file",
        ),
    ],
    "multi_targets": [
        (
            "8:12",
            "W0806",
            "`t.npz` does not exist: `dnn train` would stop here",
            "the path is relative to the folder of the spec file",
        ),
    ],
    "multi_targets_classes": [
        (
            "8:12",
            "W0806",
            "`t.npz` does not exist: `dnn train` would stop here",
            "the path is relative to the folder of the spec file",
        ),
        (
            "9:13",
            "E0602",
            "`targets = standardize` scales real-valued targets, but no output of the model is "
            "trained with a regression loss",
            "leave `targets` out, or train a real-valued output with `mse`, `mae` or `huber`",
        ),
    ],
    "ce_one_unit": [
        (
            "4:3",
            "E0401",
            "`cross_entropy` is not valid for a model with 1 output unit: softmax over one unit is 1 whatever the weights, so the loss is always 0",
            "end the model with `dense(2)` (two classes), or train with `binary_cross_entropy`",
        )
    ],
    "class_image_dense": [
        (
            "4:3",
            "E0401",
            "`cross_entropy` needs a model output of shape (classes,), got (4, 4, 3)",
            "insert `flatten` (or `global_avgpool`) before the last `dense`",
        )
    ],
    "class_image_conv": [
        (
            "4:3",
            "E0401",
            "`cross_entropy` needs a model output of shape (classes,), got (2, 2, 3)",
            "end the model with `flatten` (or `global_avgpool`) and `dense(classes)`",
        )
    ],
    "class_seq_dense": [
        (
            "4:3",
            "E0401",
            "`cross_entropy` needs a model output of shape (classes,), got (5, 3)",
            "insert `flatten` before the last `dense`",
        )
    ],
    "metric_one": [
        (
            "8:13",
            "E0602",
            "metric `mae` does not fit the task of `cross_entropy` (multiclass: one unit per class; integer class labels or one-hot rows)",
            "use `accuracy`, `top_k`, `precision`, `recall`, `f1`, or leave `metrics` out for the task's defaults",
        )
    ],
    "metric_multi": [
        (
            "9:13",
            "E0602",
            "metric `mae` does not fit the task of any output (binary, multiclass)",
            "use `accuracy`, `top_k`, `precision`, `recall`, `f1`, or leave `metrics` out for the task's defaults",
        )
    ],
    "defaults_multi": [],
    "defaults_reg": [],
    "mixed_dtypes": [
        (
            "3:3",
            "E0404",
            "input `a` is i32 but input `b` is f32: one data source feeds them both",
            "declare every input with the same kind of dtype, or train the two on separate models",
        ),
        (
            "8:12",
            "W0806",
            "`t.npz` does not exist: `dnn train` would stop here",
            "the path is relative to the folder of the spec file",
        ),
    ],
    "norm_ids": [
        (
            "10:15",
            "E0404",
            "`standardize` makes real numbers of the examples, but input `x` takes integer ids (i32)",
            "leave `normalize` out (token ids are not scaled), or declare the input as f32",
        )
    ],
    "pca_too_many": [
        (
            "8:15",
            "E0602",
            "`n = 9` components, but `iris` examples have 4 features",
            "keep at most 4: `n = 4`",
        )
    ],
    "real_into_int": [
        (
            "3:3",
            "E0404",
            "`iris` examples are real numbers but input `x` is i32",
            "declare `input x: f32[4]`",
        )
    ],
    "int_into_real": [
        (
            "3:3",
            "E0404",
            "`tokens` examples are integers but input `x` is f32",
            "declare `input x: i32[13]`",
        )
    ],
    "inputs_add_up_pca": [
        (
            "3:3",
            "E0401",
            "the inputs take 1 + 1 = 2 values but `iris` examples have 3 after `pca(n = 3)`",
            "the features of one example are split across the inputs in the order they are declared: make their sizes add up",
        )
    ],
    "one_input_size": [
        (
            "3:3",
            "E0401",
            "input `x` has shape (5,) (5 values) but `iris` examples have (4,)",
            "declare `input x: f32[4]` or a reshaping of it",
        )
    ],
    "one_input_size_pca": [
        (
            "3:3",
            "E0401",
            "input `x` has shape (5,) (5 values) but `iris` examples have (2,) after `pca(n = 2)`",
            "declare `input x: f32[2]` or a reshaping of it",
        )
    ],
    "reg_width": [
        (
            "4:3",
            "E0401",
            "`diabetes` has 1 target value per example but the model outputs 3",
            "end the model with `dense(1)`",
        )
    ],
    "class_on_real": [
        (
            "10:10",
            "E0602",
            "`cross_entropy` needs class labels, but `diabetes` has real-valued targets",
            "train with a regression loss such as `mse`, `mae` or `huber`",
        )
    ],
    "reg_of_labels": [
        (
            "4:3",
            "E0401",
            "`iris` has one class label per example but the model outputs 3 values for `mse` to compare with it",
            "classify with `cross_entropy` and `dense(3)`, or regress the label with `dense(1)`",
        )
    ],
    "binary_three": [
        (
            "4:3",
            "E0401",
            "one output unit makes a binary classifier, but `iris` has 3 classes",
            "end the model with `dense(3)` and train with `cross_entropy`",
        )
    ],
    "multiclass_width": [
        (
            "4:3",
            "E0401",
            "the model outputs 4 values but `iris` has 3 classes",
            "end the model with `dense(3)`",
        )
    ],
    "multilabel_width": [
        (
            "4:3",
            "E0401",
            "the model outputs 4 values but `iris` has 3 classes",
            "end the model with `dense(3)`",
        )
    ],
    "reg_one_label_ok": [],
    "augment_pca": [
        (
            "3:3",
            "E0401",
            "input `x` has shape (8, 8, 1) (64 values) but `digits` examples have (10,) after `pca(n = 10)`",
            "declare `input x: f32[10]` or a reshaping of it",
        ),
        (
            "10:13",
            "E0602",
            "`random_flip` transforms images [height, width, channels], but `pca` turns each example into a vector",
            "declare the input as an image, e.g. `input x: f32[8, 8, 1]`, or use `noise(std)`, which takes any input",
        ),
    ],
    "augment_two_inputs": [
        (
            "8:12",
            "W0806",
            "`t.npz` does not exist: `dnn train` would stop here",
            "the path is relative to the folder of the spec file",
        ),
        (
            "9:13",
            "E0602",
            "`random_flip` transforms images [height, width, channels], but the model's input is (1,), (1,)",
            "declare the input as an image, e.g. `input x: f32[8, 8, 1]`, or use `noise(std)`, which takes any input",
        ),
    ],
    "augment_noise_ok": [],
    "rate_divides": [
        (
            "8:14",
            "E0602",
            "`adagrad_da` divides by the learning rate, and the warm-up of `cosine` starts it at 0",
            "drop the warm-up (`cosine(..., warmup = 0)`), or choose another optimizer",
        )
    ],
    "rate_no_warmup": [],
    "targets_pca": [
        (
            "8:13",
            "E0602",
            "`zca` cannot scale targets: it is not an invertible map of each output unit on its own, so predictions could not be mapped back",
            "use `standardize`, `minmax`, `scale` or `mean_subtraction`",
        )
    ],
    "targets_class": [
        (
            "8:13",
            "E0602",
            "`targets = minmax` scales real-valued targets, but `cross_entropy` trains a multiclass task (one unit per class; integer class labels or one-hot rows)",
            "leave `targets` out, or train with a regression loss such as `mse`, `mae` or `huber`",
        )
    ],
    "files": [
        (
            "7:12",
            "W0806",
            "`nope.csv` does not exist: `dnn train` would stop here",
            "the path is relative to the folder of the spec file",
        ),
        (
            "8:9",
            "W0806",
            "`v.npz` does not exist: `dnn train` would stop here",
            "the path is relative to the folder of the spec file",
        ),
        (
            "9:10",
            "W0806",
            "`imgs` does not exist: `dnn train` would stop here",
            "the path is relative to the folder of the spec file",
        ),
    ],
    "model_only_one_unit": [],
    "warmup_zero": [],
    "val_after_builtin": [
        (
            "8:9",
            "W0806",
            "`v.npz` does not exist: `dnn train` would stop here",
            "the path is relative to the folder of the spec file",
        )
    ],
    "augment_two_images": [
        (
            "8:12",
            "W0806",
            "`t.npz` does not exist: `dnn train` would stop here",
            "the path is relative to the folder of the spec file",
        ),
        (
            "9:13",
            "E0602",
            "`random_flip` transforms images [height, width, channels], but the model's input is "
            "(8, 8, 1), (8, 8, 1)",
            "declare the input as an image, e.g. `input x: f32[8, 8, 1]`, or use `noise(std)`, "
            "which takes any input",
        ),
    ],
    "augment_image_ok": [],
    "reg_of_labels_two": [
        (
            "4:3",
            "E0401",
            "`iris` has one class label per example but the model outputs 2 values for `mse` to "
            "compare with it",
            "classify with `cross_entropy` and `dense(3)`, or regress the label with `dense(1)`",
        )
    ],
    "metric_with_invalid_head": [  # no metric check while an output's loss does not fit it
        (
            "5:14",
            "E0401",
            "`cross_entropy` is not valid for a model with 1 output unit: softmax over one unit "
            "is 1 whatever the weights, so the loss is always 0",
            "end the model with `dense(2)` (two classes), or train with `binary_cross_entropy`",
        )
    ],
    "regression_image_ok": [],
    "targets_regression_ok": [],
    "rate_constant_ok": [],  # a schedule without a warm-up  # a regression loss takes any output shape
}


def reported(src: str) -> list[tuple[str, str, str, str | None]]:
    """Everything check reports for `src`: its errors, or its warnings when it passes."""
    try:
        found = loads(src, "spec.dnn").warnings
    except SpecError as e:
        found = e.diagnostics
    return [(f"{d.span.line}:{d.span.col}", d.code, d.message, d.hint) for d in found]


@pytest.mark.parametrize("name", [n for n in CASES if EXPECTED[n]])
def test_each_rule_reports_its_whole_diagnostic(name: str) -> None:
    assert reported(CASES[name]) == EXPECTED[name]


@pytest.mark.parametrize(
    ("name", "metrics"),
    [
        ("multi_ok", ["accuracy"]),
        ("defaults_multi", ["accuracy", "mae", "r2"]),  # each task's defaults, once, in order
        ("defaults_reg", ["mae", "r2"]),
        ("reg_one_label_ok", ["mae", "r2"]),
        ("augment_noise_ok", ["accuracy"]),
        ("rate_no_warmup", ["accuracy"]),
        ("warmup_zero", ["accuracy"]),
        ("augment_image_ok", ["accuracy"]),
        ("regression_image_ok", ["mae", "r2"]),
        ("model_only_one_unit", ["accuracy"]),
        ("targets_regression_ok", ["mae", "r2"]),
        ("rate_constant_ok", ["accuracy"]),  # a model file alone is not held to a loss
    ],
)
def test_what_passes_gets_the_metrics_of_its_tasks(name: str, metrics: list[str]) -> None:
    assert EXPECTED[name] == []
    assert loads(CASES[name], "spec.dnn").train.metrics == tuple(Ref("metric", m) for m in metrics)


def test_written_metrics_are_kept() -> None:
    src = spec("input x: f32[4]; dense(3)", "", "loss = cross_entropy; metrics = [f1, accuracy]")
    assert [m.name for m in loads(src, "spec.dnn").train.metrics] == ["f1", "accuracy"]


def test_a_data_file_is_looked_up_beside_the_spec(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "spec.dnn").write_text(CASES["files"])
    found = [(d.severity, d.code, d.message) for d in load(str(tmp_path / "spec.dnn")).warnings]
    assert found == [
        ("warning", "W0806", "`nope.csv` does not exist: `dnn train` would stop here"),
        ("warning", "W0806", "`v.npz` does not exist: `dnn train` would stop here"),
    ]


@pytest.mark.parametrize(
    ("monitor", "mode"),
    [
        ("loss", "min"),
        ("val_loss", "min"),
        ("accuracy", "max"),
        ("val_accuracy", "max"),
        ("val_mae", "min"),
        ("val_not_a_metric", "min"),
    ],
)
def test_monitor_mode(monitor: str, mode: str) -> None:
    assert monitor_mode(monitor) == mode
