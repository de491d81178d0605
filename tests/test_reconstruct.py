"""`data { reconstruct = true }`: autoencoders, whose targets are their own inputs (issue 15).

The model learns each example's input as `normalize` scales it (the normalizer doubles as the
target scaling, so it must be invertible); the metrics and `dnn predict` are in the data's units;
the source's labels are not learned; `augment` corrupts the inputs only. Check refuses what
cannot be reconstructed at the line that says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from dnn.compiler.lower_loss import huber, mae, mse
from dnn.runtime import infer, pipeline
from dnn.runtime.fit import train
from sklearn.datasets import load_digits

import dnn

MODEL = "input x: f32[64]; dense(12) -> relu; dense(64)"
DATA = 'source = builtin("digits"); normalize = standardize; reconstruct = true'
TRAIN = "loss = mse; metrics = [mse, mae, r2]; epochs = 2; batch_size = 64; optimizer = adam"


def spec(model: str = MODEL, data: str = DATA, train_: str = TRAIN) -> str:
    """A spec from `; `-separated lines of the model, data and train sections."""

    def body(text: str) -> str:
        return "".join(f"  {line}\n" for line in text.split("; "))

    return (
        f"dnn 1\nmodel m {{\n{body(model)}}}\ndata {{\n{body(data)}}}\ntrain {{\n{body(train_)}}}\n"
    )


def refused(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "ae.dnn"
    path.write_text(text)
    with pytest.raises(dnn.SpecError) as info:
        dnn.load(str(path))
    return [line.replace(str(path), "ae.dnn") for line in str(info.value).splitlines()]


# ------------------------------------------------------------------ what check refuses


def test_two_inputs_are_refused_at_the_field(tmp_path: Path) -> None:
    model = "input a: f32[32]; input b: f32[32]; concat(a, b); dense(64)"
    assert refused(tmp_path, spec(model)) == [
        "ae.dnn:11:17: error[E0602]: `reconstruct = true` trains one output to give back one "
        "input, but the model has 2 inputs and 1 output",
        "11 |   reconstruct = true",
        "   |                 ^^^^",
        "  hint: keep one `input` and one output, or leave `reconstruct` out",
    ]


def test_an_output_of_another_size_is_refused_at_the_output(tmp_path: Path) -> None:
    assert refused(tmp_path, spec("input x: f32[8, 8, 1]; flatten; dense(10)")) == [
        "ae.dnn:5:3: error[E0401]: the model outputs 10 values, but `reconstruct = true` "
        "compares them with the 64 values of input `x`, shape (8, 8, 1)",
        "5 |   dense(10)",
        "  |   ^^^^^^^^^",
        "  hint: end the model with `dense(64)`, or with layers giving back shape (8, 8, 1)",
    ]


def test_a_class_loss_is_refused_at_the_loss(tmp_path: Path) -> None:
    lines = refused(tmp_path, spec(train_="loss = cross_entropy"))
    assert lines == [
        "ae.dnn:13:10: error[E0602]: `reconstruct = true` learns real values (the inputs), but "
        "`cross_entropy` trains a multiclass task (one unit per class; integer class labels or "
        "one-hot rows)",
        "13 |   loss = cross_entropy",
        "   |          ^^^^^^^^^^^^^",
        "  hint: train with a regression loss such as `mse`, `mae` or `huber`",
    ]


def test_a_normalizer_without_an_inverse_is_refused_at_normalize(tmp_path: Path) -> None:
    data = 'source = builtin("digits"); normalize = pca(n = 64); reconstruct = true'
    assert refused(tmp_path, spec(data=data)) == [
        "ae.dnn:9:15: error[E0602]: `reconstruct = true` learns the inputs as `normalize` "
        "scales them and gives them back in the data's units, but `pca(n = 64)` cannot be "
        "inverted value by value",
        "9 |   normalize = pca(n = 64)",
        "  |               ^^^^^^^^^^^",
        "  hint: use `none`, `standardize`, `minmax`, `scale` or `mean_subtraction`",
    ]


def test_target_scaling_is_refused_at_targets(tmp_path: Path) -> None:
    lines = refused(tmp_path, spec(data=DATA + "; targets = standardize"))
    assert lines[0] == (
        "ae.dnn:11:13: error[E0602]: `targets = standardize` scales the source's targets, but "
        "`reconstruct = true` learns the inputs, already scaled by `normalize`"
    )
    assert lines[-1] == "  hint: leave `targets` out"


def test_token_ids_are_refused_at_the_input(tmp_path: Path) -> None:
    model = "input t: i32[13]; embedding(20, 4); flatten; dense(13)"
    data = 'source = builtin("tokens"); reconstruct = true'
    lines = refused(tmp_path, spec(model, data))
    assert lines[0] == (
        "ae.dnn:3:3: error[E0404]: `reconstruct = true` regresses the input's values, but "
        "input `t` holds i32 ids"
    )
    assert lines[-1] == (
        "  hint: reconstruct real-valued inputs (`f32`); token ids are classes, not values"
    )


def test_a_classification_set_checks_with_reconstruct(tmp_path: Path) -> None:
    """The digits' labels (10 classes) are not the targets: no output-width rule of the class
    task applies, and the regression metrics are the defaults."""
    path = tmp_path / "ae.dnn"
    path.write_text(spec(train_="loss = mse"))
    program = dnn.load(str(path))
    assert [m.name for m in program.train.metrics] == ["mae", "r2"]


# ------------------------------------------------------------------ the targets


def test_the_targets_are_the_standardized_inputs_in_float64(tmp_path: Path) -> None:
    path = tmp_path / "ae.dnn"
    path.write_text(spec())
    prepared = pipeline.prepare(dnn.load(str(path)))
    assert prepared.task == "regression" and prepared.classes is None
    x = load_digits().data.astype(np.float64)
    train_rows = x[prepared.splits["train"].index]
    mean, std = train_rows.mean(0), train_rows.std(0)
    std = np.where(train_rows.max(0) == train_rows.min(0), 1.0, std)
    for split in ("train", "val", "test"):
        table = prepared.splits[split]
        want = (x[table.index] - mean) / std
        np.testing.assert_allclose(table.y, want, atol=1e-5)
        np.testing.assert_array_equal(table.y, table.x)  # what the model reads, exactly
        # and back in the data's units
        back = prepared.targets.invert(table.y.astype(np.float64))
        np.testing.assert_allclose(back, x[table.index], atol=1e-5)


@pytest.mark.parametrize("loss", [mse, mae, huber])
def test_a_regression_loss_reads_flat_targets_in_the_outputs_layout(loss: object) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 4, 4, 2))
    y = rng.normal(size=(3, 32))
    r = np.abs(y - z.reshape(3, 32))
    want = {
        mse: np.mean(r**2),
        mae: np.mean(r),
        huber: np.mean(np.where(r <= 1.0, r**2 / 2, r - 0.5)),
    }[loss]
    got = loss(jnp.asarray(z, jnp.float32), jnp.asarray(y, jnp.float32), {"delta": 1.0})  # type: ignore[operator]
    assert float(got) == pytest.approx(want, rel=1e-5)


# ------------------------------------------------------------------ train, eval, predict


def test_metrics_and_predictions_are_in_the_datas_units(tmp_path: Path) -> None:
    path = tmp_path / "ae.dnn"
    path.write_text(spec(model="input x: f32[8, 8, 1]; flatten; dense(12) -> relu; dense(64)"))
    program = dnn.load(str(path))
    run = tmp_path / "run"
    result = train(program, run, mode="quiet")
    assert json.loads((run / "preprocess.json").read_text())["targets"] == "standardize"
    prepared = pipeline.prepare(program)
    test = prepared.splits["test"]
    raw = load_digits().data.astype(np.float32)[test.index]
    np.save(tmp_path / "x.npy", raw)
    predicted = infer.predict(program, run, tmp_path / "x.npy", tmp_path / "y.npy")
    assert predicted.shape == (len(raw), 64)
    err = predicted.astype(np.float64) - raw
    assert result["test"]["mse"] == pytest.approx(np.mean(err**2), rel=1e-4)
    assert result["test"]["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-4)
    # the loss is in the units the model learns: per pixel, the error over the train std
    scaled = err / prepared.targets.stats["std"].reshape(1, -1)
    assert result["test"]["loss"] == pytest.approx(np.mean(scaled**2), rel=1e-4)
    assert infer.evaluate(program, run)["mse"] == pytest.approx(result["test"]["mse"], rel=1e-6)
