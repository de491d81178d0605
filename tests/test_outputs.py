"""Models with several outputs train (issue 14, class 3), as Keras' multi-output `fit` does.

Targets come from an npz archive: `x` and one array per output, named after it. `loss` is one
word for every output or one per output by name, `loss_weights` weighs them in the total loss,
metrics are reported per output (`digit_accuracy`, `size_mae`), and `dnn predict` writes an
.npz with one array per output. What cannot work is refused by check at the line at fault.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
from dnn.compiler.driver import loads
from dnn.runtime import infer, pipeline
from dnn.runtime.fit import train
from dnn.runtime.train import Engine

import dnn

SPEC = """dnn 1
model m {{
  input x: f32[6]
  h = dense(16)(x) -> relu
  output digit = dense(3)(h)
  output size = dense(2)(h)
  output flag = dense(1)(h)
}}
data {{
  source = npz("multi.npz")
}}
train {{
  loss = {loss}
  loss_weights = {{ size: 0.5, flag: 2.0 }}
  epochs = {epochs}
  batch_size = 16
  optimizer = adam(lr = 0.02)
}}
"""
LOSSES = "{ digit: cross_entropy, size: mse, flag: binary_cross_entropy }"


@pytest.fixture(autouse=True)
def _data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    digit = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)  # three classes
    size = np.stack([x[:, 2] + x[:, 3], x[:, 4]], axis=1)  # two real values
    np.savez("multi.npz", x=x, digit=digit, size=size, flag=(x[:, 5] > 0).astype(np.int8))


def spec(loss: str = LOSSES, epochs: int = 40) -> Path:
    Path("spec.dnn").write_text(SPEC.format(loss=loss, epochs=epochs))
    return Path("spec.dnn")


def test_several_outputs_train_evaluate_and_predict_class_3(tmp_path: Path) -> None:
    program = dnn.load(str(spec()))
    result = train(program, tmp_path / "run", mode="quiet")
    test = result["test"]
    assert set(test) == {"loss", "digit_accuracy", "size_mae", "size_r2", "flag_accuracy"}
    assert test["digit_accuracy"] >= 0.85 and test["flag_accuracy"] >= 0.9, test
    assert test["size_r2"] >= 0.9, test
    assert infer.evaluate(program, tmp_path / "run") == pytest.approx(test)
    x = np.array([[1, 1, 1, 1, 1, 1], [-1, -1, 0, 0, -2, -1]], np.float32)
    np.save("x.npy", x)
    infer.predict(program, tmp_path / "run", Path("x.npy"), Path("y.npz"))
    with np.load("y.npz") as out:
        assert sorted(out.files) == ["digit", "flag", "size"]
        assert out["digit"].tolist() == [2, 0] and out["flag"].tolist() == [[1], [0]]
        assert out["size"] == pytest.approx(np.array([[2.0, 1.0], [0.0, -2.0]]), abs=0.35)
    with pytest.raises(infer.TrainingError, match="cannot write the 3 outputs' predictions") as e:
        infer.predict(program, tmp_path / "run", Path("x.npy"), Path("y.csv"))
    assert e.value.hint == "use an output ending in .npz (one array per output)"


def test_the_loss_is_the_weighted_sum_of_the_outputs_losses_class_3() -> None:
    """Against float64 NumPy on the model's own outputs: 1 CE + 0.5 MSE + 2 BCE (the engine
    computes in float32, whose rounding over these sums is about 1e-7)."""
    program = dnn.load(str(spec()))
    prepared = pipeline.prepare(program)
    engine = Engine(program, prepared, 1)
    st = engine.init()
    x, y = prepared.splits["train"].x[:32], prepared.splits["train"].y[:32]
    outs, _ = engine._forward(st["params"], st["model_state"], x, False, jax.random.key(0))
    digit, size, flag = (np.asarray(o, np.float64) for o in outs)
    label = y[:, 0].astype(int)
    logp = digit - digit.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    ce = -np.mean(logp[np.arange(32), label])
    mse = np.mean((y[:, 1:3] - size) ** 2)
    z, t = flag[:, 0], y[:, 3]
    bce = np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z))))
    got = float(engine.loss(outs, y))
    assert got == pytest.approx(ce + 0.5 * mse + 2.0 * bce, rel=1e-6)
    assert got != pytest.approx(ce + mse + bce, rel=1e-3)  # the weights count


def test_one_loss_word_applies_to_every_output_class_3() -> None:
    text = SPEC.format(loss="mse", epochs=1).replace("dense(1)(h)", "dense(2)(h)")
    text = text.replace("output digit = dense(3)(h)", "output digit = dense(1)(h)")
    program = loads(text, "spec.dnn")
    assert [m.name for m in program.train.metrics] == ["mae", "r2"]


@pytest.mark.parametrize(
    ("loss", "extra", "where", "message", "hint"),
    [
        (
            "{ digit: cross_entropy, size: mse }",
            "",
            "7:17",
            "output `flag` has no loss",
            "add `flag: mse` (or the loss it needs) to `loss = { ... }`",
        ),
        (
            "{ digit: cross_entropy, sise: mse, flag: bce }",
            "",
            "13:10",
            "`loss` names `sise`, which is not an output of the model",
            "did you mean `size`?",
        ),
        (
            LOSSES,
            "  early_stopping = { monitor: val_accuracy }",
            "17:20",
            "`early_stopping` watches `val_accuracy`, but each of the 3 outputs reports its own "
            "metrics",
            "watch the total loss: `val_loss`",
        ),
        (
            "{ digit: mse, size: mse, flag: cross_entropy }",
            "",
            "7:17",
            "`cross_entropy` is not valid for a model with 1 output unit",
            "end the model with `dense(2)` (two classes), or train with `binary_cross_entropy`",
        ),
    ],
)
def test_what_cannot_train_is_refused_at_its_line_class_3(
    loss: str, extra: str, where: str, message: str, hint: str
) -> None:
    text = SPEC.format(loss=loss, epochs=1).replace("  optimizer", f"{extra}\n  optimizer")
    with pytest.raises(dnn.SpecError) as info:
        loads(text, "spec.dnn")
    found = [(f"{d.span.line}:{d.span.col}", d.message, d.hint) for d in info.value.diagnostics]
    assert any(w == where and message in m and h == hint for w, m, h in found), found


def test_a_source_with_one_target_is_refused_at_the_second_output_class_3() -> None:
    text = SPEC.format(loss=LOSSES, epochs=1).replace('npz("multi.npz")', 'builtin("wine")')
    text = text.replace("f32[6]", "f32[13]")
    with pytest.raises(dnn.SpecError) as info:
        loads(text, "spec.dnn")
    d = info.value.diagnostics[0]
    assert (d.code, d.span.line, d.span.col) == ("E0601", 6, 17), d
    assert d.message == "the model has 3 outputs, but `wine` has one target per example"


def test_an_output_whose_array_is_missing_is_reported_with_the_file_class_3() -> None:
    rng = np.random.default_rng(0)
    np.savez("multi.npz", x=rng.normal(size=(10, 6)), digit=np.zeros(10), size=np.zeros((10, 2)))
    text = str(pytest.raises(dnn.SpecError, pipeline.prepare, dnn.load(str(spec()))).value)
    assert "error[E0702]: `multi.npz` has no array `flag`" in text, text


def test_a_builtin_set_with_several_targets_names_them_class_3() -> None:
    base = Path(__file__).parent.parent / "examples" / "digits_two_heads.dnn"
    text = base.read_text()
    loads(text, "spec.dnn")  # the example checks
    wrong = text.replace("output odd = dense(1)", "output even = dense(1)").replace(
        "odd: binary", "even: binary"
    )
    with pytest.raises(dnn.SpecError) as info:
        loads(wrong, "spec.dnn")
    d = info.value.diagnostics[0]
    assert d.message == "output `even` has no target in `digits_multi`", d
    assert d.hint == "its targets: `digit`, `odd`"
    three = text.replace("output odd = dense(1)", "output odd = dense(3)").replace(
        "odd: binary_cross_entropy", "odd: cross_entropy"
    )
    with pytest.raises(dnn.SpecError) as info:
        loads(three, "spec.dnn")
    d = info.value.diagnostics[0]
    assert d.message == "output `odd` has 3 units for `cross_entropy`, but its target has 2 classes"


def _csv(path: str, rows: int = 300, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    """The fixture's data as a CSV: class names for `digit`, `size_0`/`size_1` (times `scale`
    plus `shift`), a 0/1 `flag` between the inputs; returns the size values written."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 6))
    names = np.array(["high", "low", "mid"])[[1, 2, 0]]  # digit 0, 1, 2 -> low, mid, high
    digit = names[(x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)]
    size = np.stack([x[:, 2] + x[:, 3], x[:, 4]], axis=1) * scale + shift
    flag = (x[:, 5] > 0).astype(int)
    lines = ["x0,x1,x2,flag,x3,x4,x5,size_0,digit,size_1"]
    for r in range(rows):
        a = [f"{v:.6f}" for v in x[r]]
        lines.append(
            ",".join(
                [*a[:3], str(flag[r]), *a[3:], f"{size[r, 0]:.6f}", digit[r], f"{size[r, 1]:.6f}"]
            )
        )
    Path(path).write_text("\n".join(lines) + "\n")
    return size


def test_csv_columns_named_after_the_outputs_are_their_targets_class_3(tmp_path: Path) -> None:
    """Output `a` reads column `a`, or `a_0`...`a_<D-1>` for D values; every other column is an
    input, in file order. `targets = standardize` scales the regression output only (its class
    labels stay labels); metrics and predictions are in the data's units."""
    _csv("multi.csv", scale=100.0, shift=1000.0)
    text = SPEC.format(loss=LOSSES, epochs=40).replace('npz("multi.npz")', 'csv("multi.csv")')
    text = text.replace('csv("multi.csv")', 'csv("multi.csv")\n  targets = standardize')
    Path("spec.dnn").write_text(text)
    program = dnn.load("spec.dnn")
    prepared = pipeline.prepare(program)
    train_y = prepared.splits["train"].y
    assert [(b.name, b.start, b.width) for b in prepared.blocks] == [
        ("digit", 0, 1),
        ("size", 1, 2),
        ("flag", 3, 1),
    ]
    assert set(np.unique(train_y[:, 0])) == {0.0, 1.0, 2.0}  # labels are not scaled
    assert set(np.unique(train_y[:, 3])) == {0.0, 1.0}
    assert train_y[:, 1:3].mean(axis=0) == pytest.approx([0, 0], abs=1e-5)  # standardized
    assert train_y[:, 1:3].std(axis=0) == pytest.approx([1, 1], rel=1e-4)
    result = train(program, tmp_path / "run", mode="quiet")
    test = result["test"]
    assert test["digit_accuracy"] >= 0.85 and test["flag_accuracy"] >= 0.9, test
    assert test["size_r2"] >= 0.9 and 5.0 < test["size_mae"] < 35.0, test  # in the data's units
    assert infer.evaluate(program, tmp_path / "run") == pytest.approx(test)
    # inputs in file order: x0, x1, x2, x3, x4, x5 (flag, size and digit are targets)
    x = np.array([[1, 1, 1, 1, 1, 1], [-1, -1, 0, 0, -2, -1]], np.float32)
    np.save("x.npy", x)
    infer.predict(program, tmp_path / "run", Path("x.npy"), Path("y.npz"))
    with np.load("y.npz") as out:
        # sorted class names: high 0, low 1, mid 2
        assert out["digit"].tolist() == [0, 1] and out["flag"].tolist() == [[1], [0]]
        want = np.array([[2.0, 1.0], [0.0, -2.0]]) * 100 + 1000
        assert out["size"] == pytest.approx(want, abs=35)


@pytest.mark.parametrize(
    ("header", "where", "message", "hint"),
    [
        (
            "x0,x1,x2,flag,x3,x4,x5,size_0,digits,size_1",
            "1:1",
            "`multi.csv` has no column `digit` for output `digit`",
            "did you mean `digits`?",
        ),
        (
            "x0,x1,x2,flag,x3,x4,x5,size_0,label,size_1",
            "1:1",
            "`multi.csv` has no column `digit` for output `digit`",
            "a model with several outputs reads each one's targets from the column named after it",
        ),
        (
            "x0,x1,x2,flag,x3,x4,x5,sz,digit,size_1",
            "1:1",
            "`multi.csv` has no column `size` (or `size_0` ... `size_1`) for output `size`",
            "did you mean `size_1` or `sz`?",
        ),
        (
            "x0,x1,x2,flag,x3,x4,x5,size,digit,sz",
            "1:24",
            "column `size` holds one value per example, but output `size` has 2 units",
            "name its 2 columns `size_0` ... `size_1`, or end `size` with `dense(1)`",
        ),
    ],
)
def test_csv_output_columns_that_are_missing_are_named_class_3(
    header: str, where: str, message: str, hint: str
) -> None:
    _csv("multi.csv", rows=20)
    lines = Path("multi.csv").read_text().splitlines()
    Path("multi.csv").write_text("\n".join([header, *lines[1:]]) + "\n")
    text = SPEC.format(loss=LOSSES, epochs=1).replace('npz("multi.npz")', 'csv("multi.csv")')
    Path("spec.dnn").write_text(text)
    with pytest.raises(dnn.SpecError) as info:
        pipeline.prepare(dnn.load("spec.dnn"))
    (d,) = info.value.diagnostics
    assert (d.code, f"{d.span.line}:{d.span.col}", d.span.path) == ("E0702", where, "multi.csv")
    assert d.message == message
    assert d.hint == hint


def test_a_csv_label_outside_an_outputs_classes_is_shown_in_its_row_class_3() -> None:
    _csv("multi.csv", rows=20)
    text = SPEC.format(loss=LOSSES, epochs=1).replace('npz("multi.npz")', 'csv("multi.csv")')
    Path("spec.dnn").write_text(text.replace("output digit = dense(3)", "output digit = dense(2)"))
    with pytest.raises(dnn.SpecError) as info:
        pipeline.prepare(dnn.load("spec.dnn"))
    (d,) = info.value.diagnostics
    assert d.message.startswith("label `mid` (class 2) in row ") and d.message.endswith(
        "is outside output `digit`'s 2 classes"
    ), d.message
    assert d.hint == "column `digit` has 3 classes: end `digit` with `dense(3)`"
    row = int(d.message.split(" in row ")[1].split()[0])
    line = Path("multi.csv").read_text().splitlines()[row]
    assert line.split(",")[8] == "mid" and d.span.line == row + 1
    assert d.span.col == len(",".join(line.split(",")[:8])) + 2
