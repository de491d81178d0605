"""`dnn init-check` (issue 21, point 4): one batch through the initialized model.

The statistics are checked against a float64 NumPy propagation of the same batch through the
same weights (forward and backward by hand), and the findings reproduce the lectures' point: a
20-layer tanh net from `normal(0, 1)` saturates (and its gradients explode toward the input),
from `glorot_normal` keeps its variance; a ReLU net from `glorot_normal` vanishes, from
`he_normal` does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dnn.compiler.driver import loads
from dnn.runtime import pipeline
from dnn.runtime.cli import main
from dnn.runtime.init_check import init_check
from dnn.runtime.train import Engine, TrainingError

import dnn

SMALL = """dnn 1
model small {{
  input x: f32[64]
  dense(24, bias_init = {bias}) -> {act}
  dense(16) -> {act}
  dense(10)
}}
data {{
  source = builtin("digits")
  normalize = standardize
}}
train {{
  seed = 3
}}
"""


def _by_hand(program: dnn.Program, n: int) -> tuple[list[dict[str, np.ndarray]], float, dict]:
    """The batch through the model in float64: each dense layer's z and its activation's a,
    the mean cross-entropy, and each dense layer's kernel and bias gradients (backprop)."""
    prepared = pipeline.prepare(program)
    x = prepared.splits["train"].x[:n].astype(np.float64)
    y = prepared.splits["train"].y[:n]
    params = Engine(program, prepared, 1).init()["params"]
    names = ["dense", "dense_1", "dense_2"]
    ws = [np.asarray(params[k]["kernel"], np.float64) for k in names]
    bs = [np.asarray(params[k]["bias"], np.float64) for k in names]
    act = program.model.node("dense_1").name and program.model.nodes[2].op
    f, df = {
        "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
        "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(np.float64)),
    }[act]
    h, layers = x, []
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        z = h @ w + b
        a = f(z) if i < 2 else z
        layers.append({"in": h, "z": z, "a": a})
        h = a
    logits = h - h.max(axis=1, keepdims=True)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    loss = float(-np.mean(np.log(p[np.arange(n), y])))
    delta = (p - np.eye(10)[y]) / n  # dL/dz of the last layer
    grads = {}
    for i in (2, 1, 0):
        grads[names[i]] = np.concatenate([(layers[i]["in"].T @ delta).ravel(), delta.sum(0)])
        if i:
            delta = (delta @ ws[i].T) * df(layers[i - 1]["z"])
    return layers, loss, grads


@pytest.mark.parametrize(("act", "bias"), [("tanh", "zeros"), ("relu", "constant(-3.0)")])
def test_statistics_equal_a_float64_numpy_propagation(act: str, bias: str) -> None:
    program = loads(SMALL.format(act=act, bias=bias), "spec.dnn")
    report = init_check(program, batch=64)
    layers, loss, grads = _by_hand(program, 64)
    got = {s.name: s for s in report.layers}
    assert report.batch == 64 and report.loss == pytest.approx(loss, rel=1e-5)
    assert report.input_std == pytest.approx(layers[0]["in"].std(), rel=1e-6)
    for i, (dense, a) in enumerate([("dense", act), ("dense_1", f"{act}_1"), ("dense_2", None)]):
        z = layers[i]["z"]
        assert got[dense].mean == pytest.approx(z.mean(), rel=1e-4, abs=1e-6)
        assert got[dense].std == pytest.approx(z.std(), rel=1e-5)
        assert got[dense].grad_std == pytest.approx(grads[dense].std(), rel=1e-4)
        assert got[dense].dead is None and got[dense].saturated is None
        if a is None:
            continue
        assert got[a].std == pytest.approx(layers[i]["a"].std(), rel=1e-5)
        if act == "tanh":  # slope 1 - tanh² below 1/20 of its slope at 0 (1)
            want = np.mean(1 - np.tanh(z) ** 2 < 1 / 20)
            assert got[a].saturated == pytest.approx(want) and got[a].dead == 0
        else:  # units negative for every example of the batch
            want = np.mean(np.all(z <= 0, axis=0))
            assert got[a].dead == pytest.approx(want) and got[a].saturated is None
            if i == 0:
                assert 0 < want < 1  # the bias of -3 kills some units, not all


DEEP = """dnn 1
model deep {{
  input x: f32[64]
  repeat 20 {{ dense(128, init = {init}) -> {act} }}
  dense(10)
}}
data {{
  source = builtin("digits")
  normalize = standardize
}}
"""


def _findings(init: str, act: str) -> list[tuple[str, str, str | None]]:
    program = loads(DEEP.format(init=init, act=act), "spec.dnn")
    found = init_check(program, batch=128).findings()
    assert all(d.code == "W0807" and d.severity == "warning" for d in found)
    return [(f"{d.span.line}:{d.span.col}", d.message, d.hint) for d in found]


def test_a_deep_tanh_net_from_normal_1_saturates_and_its_gradients_explode() -> None:
    (sat, grad) = _findings("normal(std = 1.0)", "tanh")
    assert sat[0] == "4:55" and sat[1].startswith("`tanh` saturates: ")
    assert sat[1].endswith(
        "of its values sit where its slope is below 1/20 of its slope at 0; so do 19 more "
        "layers of this line (`tanh_1` ... `tanh_19`)"
    )
    assert "glorot_normal" in (sat[2] or "")
    assert grad[0] == "4:15" and grad[1].startswith("gradients explode: `dense`'s gradient std")
    assert grad[1].endswith(
        "times the last weighted layer's (`dense_20`, " + grad[1].split("(`dense_20`, ")[1]
    )
    assert grad[2] == (
        "keep the gradient's scale through depth: ReLU with `he_normal`, `batchnorm`, residual "
        "connections (`add`), or `clip = norm(1.0)` against explosion"
    )


def test_glorot_keeps_a_deep_tanh_net_and_he_a_deep_relu_net() -> None:
    assert _findings("glorot_normal", "tanh") == []
    assert _findings("he_normal", "relu") == []


def test_a_deep_relu_net_from_glorot_vanishes() -> None:
    found = _findings("glorot_normal", "relu")
    assert [w for w, _, _ in found] == ["4:51", "4:15", "5:3"]
    assert found[0][1].startswith("`relu_") and "outputs vanish: std " in found[0][1]
    assert found[2][1].startswith("`dense_20`'s outputs vanish")
    assert "`he_normal` before ReLUs" in (found[0][2] or "")


def test_the_command_prints_the_table_and_the_findings(tmp_path: Path, capsys) -> None:
    path = tmp_path / "deep.dnn"
    path.write_text(DEEP.format(init="glorot_normal", act="relu"))
    assert main(["init-check", str(path), "--batch", "32"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("init-check `deep`: 32 examples of the train split (builtin:digits)")
    assert out.splitlines()[1].split() == [
        "layer",
        "op",
        "line",
        "mean",
        "std",
        "dead",
        "saturated",
        "grad",
        "std",
        "weight",
        "std",
    ]
    assert f"{path}:4:51: warning[W0807]: `relu_" in err and err.endswith("3 findings\n")
    assert main(["init-check", str(path), "--batch", "32", "--format", "json", "--noise"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == "32 examples of unit-variance noise" and report["batch"] == 32
    assert len(report["layers"]) == 41 and report["layers"][0]["name"] == "dense"
    assert {f["code"] for f in report["findings"]} == {"W0807"}


def test_a_model_without_data_is_checked_on_noise_and_integer_inputs_need_data() -> None:
    program = loads("dnn 1\nmodel m {\n  input x: f32[8]\n  dense(4) -> sigmoid\n  dense(2)\n}\n")
    report = init_check(program, batch=16)
    assert report.source == "16 examples of unit-variance noise"
    assert report.input_std == pytest.approx(1.0, abs=0.25)
    ids = "dnn 1\nmodel m {\n  input t: i32[5]\n  embedding(10, 4)\n  flatten\n  dense(2)\n}\n"
    with pytest.raises(TrainingError) as e:
        init_check(loads(ids), batch=16)
    assert str(e.value) == (
        "init-check on noise needs real-valued inputs; this model takes integer ids"
    )
    assert e.value.hint == "give the spec a data section with its ids, and leave out --noise"


def test_a_model_alone_whose_default_loss_does_not_fit_asks_for_one() -> None:
    one = "dnn 1\nmodel m {\n  input x: f32[8]\n  dense(1)\n}\n"
    with pytest.raises(TrainingError) as e:
        init_check(loads(one), batch=16)
    assert str(e.value) == (
        "the gradient needs a loss: `cross_entropy` (the default) does not fit the model's 1 "
        "output unit"
    )
    assert e.value.hint == "write the loss the model trains with: `train { loss = mse }`, say"
    assert init_check(loads(one + "train {\n  loss = mse\n}\n"), batch=16).batch == 16
