"""Training on arrays (issue 17, point 4): `dnn.fit`, `Model.predict/evaluate/save`,
`dnn.load_run`. `evaluate`'s loss and accuracy are recomputed from `predict`'s logits with a
float64 NumPy softmax cross-entropy; several inputs and outputs go by name; token ids stay
integers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dnn.runtime.api import Model
from dnn.runtime.cli import main
from dnn.runtime.train import TrainingError
from sklearn.datasets import load_iris

import dnn

IRIS = """dnn 1
model m {
  input x: f32[4]
  dense(16) -> relu
  dense(3)
}
train {
  epochs = 20
  optimizer = adam(lr = 0.01)
  seed = 0
}
"""


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> tuple[Model, np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order].astype(np.float32), y[order]
    out = tmp_path_factory.mktemp("iris") / "run"
    model = dnn.fit(
        dnn.loads(IRIS, "iris.dnn"),
        x[:100],
        y[:100],
        validation=(x[100:125], y[100:125]),
        out=out,
        normalize="standardize",
    )
    return model, x, y


def test_evaluate_is_the_loss_and_accuracy_of_predict(
    iris: tuple[Model, np.ndarray, np.ndarray],
) -> None:
    model, x, y = iris
    assert set(model.result["val"]) == {"loss", "accuracy"}
    held_x, held_y = x[125:], y[125:]
    logits = model.predict(held_x).astype(np.float64)
    assert logits.shape == (25, 3)
    z = logits - logits.max(axis=1, keepdims=True)
    ce = -(z[np.arange(25), held_y] - np.log(np.exp(z).sum(axis=1))).mean()
    got = model.evaluate(held_x, held_y)
    assert got["accuracy"] == pytest.approx((logits.argmax(1) == held_y).mean(), abs=1e-12)
    assert got["loss"] == pytest.approx(ce, rel=1e-5)
    assert got["accuracy"] >= 0.8  # 20 epochs on 100 flowers


def test_predict_is_dnn_predict_and_the_run_reloads(
    iris: tuple[Model, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    model, x, _ = iris
    np.save(tmp_path / "x.npy", x[:30])
    assert main(["predict", "--run", str(model.run), "--input", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "y.npy")]) == 0  # fmt: skip
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), model.predict(x[:30]).argmax(1))
    copy = model.save(tmp_path / "saved")
    again = dnn.load_run(copy)
    np.testing.assert_array_equal(again.predict(x[:30]), model.predict(x[:30]))
    assert again.result["val"] == model.result["val"]
    with pytest.raises(FileExistsError):
        model.save(copy)


TWO = """dnn 1
model two {
  input a: f32[2]
  input b: f32[3]
  h = concat(a, b) -> dense(8) -> relu
  output kind = dense(3)(h)
  output size = dense(1)(h)
}
train {
  loss = { kind: cross_entropy, size: mse }
  epochs = 2
  batch_size = 16
}
"""


def test_several_inputs_and_outputs_go_by_name(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(64, 2)), rng.normal(size=(64, 3))
    kind, size = rng.integers(0, 3, 64), rng.normal(size=64)
    program = dnn.loads(TWO, "two.dnn")
    model = dnn.fit(program, {"a": a, "b": b}, {"kind": kind, "size": size}, out=tmp_path / "r")
    out = model.predict({"a": a[:5], "b": b[:5]})
    assert set(out) == {"kind", "size"}
    assert out["kind"].shape == (5, 3) and out["size"].shape == (5, 1)
    scores = model.evaluate({"a": a, "b": b}, {"kind": kind, "size": size})
    assert {"kind_accuracy", "size_mae"} <= set(scores)
    with pytest.raises(TrainingError) as info:
        model.predict({"a": a[:5], "c": b[:5]})
    assert str(info.value) == "the inputs are `a`, `b`; got `a`, `c`"


def test_token_ids_stay_integers(tmp_path: Path) -> None:
    spec = (
        "dnn 1\nmodel t {\n  input ids: i32[5]\n  embedding(10, 4)\n  flatten\n  dense(2)\n}\n"
        "train {\n  epochs = 2\n  batch_size = 16\n}\n"
    )
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 10, size=(48, 5)).astype(np.int32)
    label = (ids.sum(1) > 22).astype(np.int64)
    model = dnn.fit(dnn.loads(spec, "t.dnn"), ids, label, out=tmp_path / "run")
    assert model.predict(ids[:4]).shape == (4, 2)
    assert set(model.evaluate(ids, label)) == {"loss", "accuracy"}
