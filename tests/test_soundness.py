"""What `dnn check` accepts, `dnn train` trains (issue 14): the defect classes, end to end.

Each test names its class. What check refuses is covered by the `soundness_*` fixtures in
tests/errors/; here the accepted combinations train, evaluate and predict, and what only the
data can tell is refused when it loads, at the spec line. Specs are tiny (iris, the built-in
tokens, a few epochs) so the file stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dnn.runtime import infer, pipeline
from dnn.runtime.data import transforms
from dnn.runtime.fit import train

import dnn

IRIS = """dnn 1
model m {{
  input x: f32[4]
  dense(16) -> relu
  dense({units})
}}
data {{
  source = builtin("iris")
  normalize = standardize
}}
train {{
  loss = {loss}
  epochs = {epochs}
  batch_size = 16
  optimizer = adam(lr = 0.02)
}}
"""

TOKENS = """dnn 1
model m {{
  input t: i32[13]
  embedding(20, 4)
  flatten
  dense(2)
}}
data {{
  source = {source}
}}
train {{
  epochs = {epochs}
  optimizer = adam(lr = 0.01)
  {extra}
}}
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # data files are named as the user sees them


def fit(tmp_path: Path, text: str, name: str = "spec.dnn") -> tuple[dnn.Program, dict, Path]:
    path = tmp_path / name
    path.write_text(text)
    program = dnn.load(str(path))
    run = tmp_path / f"run-{name}"
    return program, train(program, run, mode="quiet"), run


def spec_error(call: object) -> str:
    with pytest.raises(dnn.SpecError) as info:
        call()  # type: ignore[operator]
    return str(info.value)


# ------------------------------------------------------------------ class 1: loss / output / target


@pytest.mark.parametrize("loss", ["binary_cross_entropy", "hinge", "squared_hinge"])
def test_class_losses_over_several_units_train_class_1(tmp_path: Path, loss: str) -> None:
    """binary_cross_entropy over 3 units is one-vs-rest on one-hot rows; the hinges are
    Crammer & Singer's multi-class margin. Both learn iris (they crashed with a reshape)."""
    program, result, run = fit(tmp_path, IRIS.format(units=3, loss=loss, epochs=40))
    assert transforms.task_of(program) == ("multilabel" if "entropy" in loss else "multiclass")
    assert result["test"]["accuracy"] >= 0.8, result["test"]
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["loss"] < history[0]["loss"] / 2  # not constant in the weights
    x = tmp_path / "x.npy"
    np.save(x, np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32))
    labels = infer.predict(program, run, x, tmp_path / "y.npy")
    assert labels.shape == (2, 3)
    assert np.load(tmp_path / "y.npy").tolist() == [0, 2]  # setosa, virginica


def test_binary_losses_with_one_unit_train_class_1(tmp_path: Path) -> None:
    text = IRIS.format(units=1, loss="hinge", epochs=2).replace("iris", "breast_cancer")
    text = text.replace("f32[4]", "f32[30]")
    program, result, _ = fit(tmp_path, text)
    assert transforms.task_of(program) == "binary" and 0.5 < result["test"]["accuracy"] <= 1


def test_a_regression_loss_reports_regression_metrics_by_default_class_1(tmp_path: Path) -> None:
    text = IRIS.format(units=1, loss="mse", epochs=1).replace("iris", "diabetes")
    program, result, _ = fit(tmp_path, text.replace("f32[4]", "f32[10]"))
    assert [m.name for m in program.train.metrics] == ["mae", "r2"]
    assert set(result["test"]) == {"loss", "mae", "r2"}, result["test"]


# ------------------------------------------------------------------ class 2: integer inputs


def test_integer_inputs_stay_integer_end_to_end_class_2(tmp_path: Path) -> None:
    program, result, run = fit(
        tmp_path, TOKENS.format(source='builtin("tokens")', epochs=8, extra="")
    )
    prepared = pipeline.prepare(program)
    assert all(t.x.dtype == np.int32 for t in prepared.splits.values())
    assert result["test"]["accuracy"] >= 0.8, result["test"]  # chance is about 0.5
    assert infer.evaluate(program, run)["accuracy"] == pytest.approx(result["test"]["accuracy"])
    ids = np.array([[1] * 13, [15] * 13], np.int64)
    np.save(tmp_path / "ids.npy", ids)
    infer.predict(program, run, tmp_path / "ids.npy", tmp_path / "out.npy")
    assert np.load(tmp_path / "out.npy").tolist() == [1, 0]  # all ids below 10, none
    (tmp_path / "ids.csv").write_text(
        ",".join(f"t{i}" for i in range(13)) + "\n" + ",".join(["2"] * 13) + "\n"
    )
    infer.predict(program, run, tmp_path / "ids.csv", tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text().splitlines()[1].startswith("1,")


def test_integer_inputs_shard_over_devices_class_2(tmp_path: Path) -> None:
    """Sharded over the test session's 4 CPU devices, the ids stay int32 on every device."""
    from dnn.runtime.train import Engine, device_data

    text = TOKENS.format(source='builtin("tokens")', epochs=1, extra="devices = all")
    program, result, _ = fit(tmp_path, text)
    engine = Engine(program, pipeline.prepare(program), 1)
    x, _ = device_data(engine.prepared, engine.place)["train"]
    assert x.dtype == np.int32 and len(x.sharding.device_set) == 4
    assert result["test"]["accuracy"] > 0.5


def test_integer_archives_feed_integer_inputs_class_2(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, (64, 13)).astype(np.uint8)
    np.savez(tmp_path / "tok.npz", x=x, y=(x.sum(axis=1) > 120).astype(np.int32))
    _, result, _ = fit(tmp_path, TOKENS.format(source='npz("tok.npz")', epochs=1, extra=""))
    assert result["epochs_run"] == 1


def test_an_id_past_the_embedding_is_refused_at_its_line_class_2(tmp_path: Path) -> None:
    """Fuzzer finding: ids past an embedding's rows read no row and the loss was nan from the
    first step, with a hint about learning rates; now the load names the id and the layer."""
    x = np.arange(8 * 13).reshape(8, 13) % 25  # ids 0..24 against 20 rows
    np.savez(tmp_path / "ids.npz", x=x.astype(np.int32), y=np.arange(8) % 2)
    (tmp_path / "spec.dnn").write_text(TOKENS.format(source='npz("ids.npz")', epochs=1, extra=""))
    program = dnn.load(str(tmp_path / "spec.dnn"))
    text = spec_error(lambda: pipeline.prepare(program))
    first = text.splitlines()[0]
    assert first.endswith("but `embedding` here has rows for ids 0..19"), text
    assert ":4:3: error[E0702]: `ids.npz` holds id 2" in first, text
    assert "hint: give it a row per id: `embedding(25, ...)`" in text


def test_real_examples_into_an_integer_input_are_refused_at_the_input_class_2(
    tmp_path: Path,
) -> None:
    np.savez(tmp_path / "f.npz", x=np.full((8, 13), 0.5), y=np.zeros(8, np.int32))
    (tmp_path / "spec.dnn").write_text(TOKENS.format(source='npz("f.npz")', epochs=1, extra=""))
    program = dnn.load(str(tmp_path / "spec.dnn"))
    text = spec_error(lambda: pipeline.prepare(program))
    assert text.splitlines()[0].endswith(
        "3:3: error[E0404]: input `t` is i32 but `f.npz` holds float32 examples, not integers"
    ), text
    assert "hint: store the inputs as integers (`x.astype(np.int32)`)" in text


# ------------------------------------------------------------------ class 10: the front end


def test_a_data_file_that_does_not_exist_is_a_warning_at_check_class_10(tmp_path: Path) -> None:
    """A warning, not an error: a spec can be checked and reviewed where its data is not."""
    text = IRIS.format(units=3, loss="cross_entropy", epochs=1)
    (tmp_path / "spec.dnn").write_text(text.replace('builtin("iris")', 'csv("data/d.csv")'))
    program = dnn.load(str(tmp_path / "spec.dnn"))
    found = [(d.code, d.span.line, d.span.col, d.message, d.hint) for d in program.warnings]
    assert found == [
        (
            "W0806",
            8,
            12,
            "`data/d.csv` does not exist: `dnn train` would stop here",
            "the path is relative to the folder of the spec file",
        )
    ]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "d.csv").write_text("a,b,c,d,label\n1,2,3,4,0\n")
    assert dnn.load(str(tmp_path / "spec.dnn")).warnings == ()


# ------------------------------------------------------------------ class 4: check and train agree


def test_the_input_is_the_normalized_example_in_check_and_train_class_4(tmp_path: Path) -> None:
    text = IRIS.format(units=10, loss="cross_entropy", epochs=1).replace("iris", "digits")
    text = text.replace("f32[4]", "f32[20]").replace("standardize", "pca(n = 20)")
    _, result, _ = fit(tmp_path, text)
    assert result["epochs_run"] == 1


def test_a_normalizer_that_cannot_apply_to_a_file_is_refused_at_its_line_class_4(
    tmp_path: Path,
) -> None:
    (tmp_path / "d.csv").write_text("a,b,c,label\n" + "1,2,3,0\n4,5,7,1\n" * 8)
    text = IRIS.format(units=2, loss="cross_entropy", epochs=1)
    text = text.replace('builtin("iris")', 'csv("d.csv")').replace("standardize", "pca(n = 5)")
    (tmp_path / "spec.dnn").write_text(text.replace("f32[4]", "f32[5]"))
    program = dnn.load(str(tmp_path / "spec.dnn"))  # a CSV's width is known when it loads
    text = spec_error(lambda: pipeline.prepare(program))
    assert text.splitlines()[0].endswith(
        "9:15: error[E0602]: `n = 5` components, but the examples have 3 features"
    ), text
    assert "hint: keep at most 3: `n = 3`" in text


def test_a_split_without_val_beside_a_val_file_class_4(tmp_path: Path) -> None:
    rows = "".join(f"{i % 7},{i % 5},{i % 3},{i % 2},{i % 3}\n" for i in range(60))
    for name in ("d.csv", "v.csv"):
        (tmp_path / name).write_text("a,b,c,d,label\n" + rows)
    text = IRIS.format(units=3, loss="cross_entropy", epochs=1).replace(
        'source = builtin("iris")',
        'source = csv("d.csv")\n  val = csv("v.csv")\n  split = { train: 0.8, test: 0.2 }',
    )
    program, result, _ = fit(tmp_path, text)
    assert dict(program.data.split.items) == {"train": 0.8, "val": 0.0, "test": 0.2}
    prepared = pipeline.prepare(program)
    assert [prepared.size(s) for s in ("train", "val", "test")] == [48, 60, 12]
    assert result["epochs_run"] == 1


# ------------------------------------------------------------------ class 1: multi-hot targets

MULTI = """dnn 1
model m {{
  input x: f32[6]
  dense(16) -> relu
  dense(4)
}}
data {{
  source = npz("labels.npz")
}}
train {{
  loss = {loss}
  epochs = {epochs}
  batch_size = 16
  optimizer = adam(lr = 0.02)
  {extra}
}}
"""


def multi_hot(tmp_path: Path, n: int = 240) -> np.ndarray:
    """Four yes/no labels per example: label c is on where feature c is positive."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, :4] > 0).astype(np.int8)
    np.savez(tmp_path / "labels.npz", x=x, y=y)
    return y


def test_multi_hot_targets_train_a_multilabel_model_class_1(tmp_path: Path) -> None:
    multi_hot(tmp_path)
    spec = MULTI.format(loss="binary_cross_entropy", epochs=30, extra="metrics = [accuracy, f1]")
    program, result, run = fit(tmp_path, spec)
    assert pipeline.prepare(program).splits["train"].y.shape[1:] == (4,)
    assert result["test"]["accuracy"] >= 0.9, result["test"]  # per yes/no decision
    x = np.array([[1, -1, 1, -1, 0, 0], [-1, 1, -1, 1, 0, 0]], np.float32)
    np.save(tmp_path / "x.npy", x)
    infer.predict(program, run, tmp_path / "x.npy", tmp_path / "y.npy")
    assert np.load(tmp_path / "y.npy").tolist() == [[1, 0, 1, 0], [0, 1, 0, 1]]
    infer.predict(program, run, tmp_path / "x.npy", tmp_path / "y.csv")
    lines = (tmp_path / "y.csv").read_text().splitlines()
    assert lines[0] == "0,1,2,3,p_0,p_1,p_2,p_3" and lines[1].startswith("1,0,1,0,")


def test_multi_hot_metrics_match_scikit_learn_class_1() -> None:
    from dnn.compiler.driver import value
    from dnn.runtime import metrics
    from sklearn.metrics import f1_score, precision_score, recall_score

    rng = np.random.default_rng(3)
    z, y = rng.normal(size=(50, 5)), rng.integers(0, 2, (50, 5))
    y[:, 4] = 0  # a label that never occurs: scored 0 by both (zero_division=0)
    words = ["accuracy", "precision", "recall", "f1", "precision(average = micro)"]
    refs = tuple(value(w, "metric")[0] for w in words)
    m = metrics.build(refs, 5, 5, multilabel=True)
    mask = np.arange(50) < 47  # the last three are padding
    got = m.finish(m.update(m.init(), z, y, mask))
    pred, t = (z > 0).astype(int)[:47], y[:47]
    kw = {"zero_division": 0}
    want = {
        "accuracy": np.mean(pred == t),
        "precision": precision_score(t, pred, average="macro", **kw),
        "recall": recall_score(t, pred, average="macro", **kw),
        "f1": f1_score(t, pred, average="macro", **kw),
        "precision_micro": precision_score(t, pred, average="micro", **kw),
    }
    assert got == pytest.approx(want, rel=1e-12), (got, want)


def test_multi_hot_targets_under_a_one_class_loss_are_refused_at_the_loss_class_1(
    tmp_path: Path,
) -> None:
    multi_hot(tmp_path, 40)
    (tmp_path / "spec.dnn").write_text(MULTI.format(loss="cross_entropy", epochs=1, extra=""))
    text = spec_error(lambda: pipeline.prepare(dnn.load(str(tmp_path / "spec.dnn"))))
    assert text.splitlines()[0].endswith(
        "11:10: error[E0602]: `labels.npz` holds multi-hot rows (several yes/no labels per "
        "example), but `cross_entropy` trains a multiclass task: one class per example"
    ), text
    assert "hint: train with `binary_cross_entropy` and `dense(4)`" in text
    spec = MULTI.format(loss="binary_cross_entropy", epochs=1, extra="metrics = [top_k(k = 2)]")
    (tmp_path / "spec.dnn").write_text(spec)
    text = spec_error(lambda: pipeline.prepare(dnn.load(str(tmp_path / "spec.dnn"))))
    assert "error[E0602]: `top_k` ranks the one class of each example" in text, text
