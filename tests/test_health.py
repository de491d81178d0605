"""Training health (issue 21, points 1-3): per-layer statistics inside the compiled step.

The first check of a run is compared with a float64 NumPy forward and backward pass of the
same batch through the same initial weights (what the step sees before its update); health
off traces nothing; the diagnoses are worked on hand-made checks; `--health`, an ensemble and
a scanned repeat write what they should.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dnn.compiler.driver import load
from dnn.runtime import health, pipeline
from dnn.runtime.cli import main
from dnn.runtime.fit import train
from dnn.runtime.train import Engine, device_data

SPEC = """dnn 1
model m {{
  input x: f32[64]
  dense(12) -> tanh
  dense(10)
}}
data {{
  source = builtin("digits")
  normalize = standardize
}}
train {{
  epochs = 1
  batch_size = 100
  optimizer = sgd(lr = 0.1)
{extra}}}
"""


def test_the_first_check_equals_a_float64_numpy_pass(tmp_path: Path) -> None:
    path = tmp_path / "h.dnn"
    path.write_text(SPEC.format(extra="  health = { every: 5 steps }\n"))
    program = load(str(path))
    train(program, tmp_path / "run", mode="quiet")
    lines = health.read(tmp_path / "run" / "health.jsonl")
    assert [ln["step"] for ln in lines] == [1, 6, 11]  # 15 steps of 100 (1,437 examples)
    got = lines[0]["layers"]
    # the first batch of epoch 1 through the initial weights, as the step saw them
    prepared = pipeline.prepare(program)
    engine = Engine(program, prepared, 1)
    params = engine.init()["params"]
    x_all, y_all = device_data(prepared, engine.place)["train"]
    order, _ = engine.order(1, int(x_all.shape[0]))
    idx = np.asarray(order[0])
    x = np.asarray(x_all, np.float64)[idx]
    y = np.asarray(y_all)[idx]
    w1, b1 = (np.asarray(params["dense"][k], np.float64) for k in ("kernel", "bias"))
    w2, b2 = (np.asarray(params["dense_1"][k], np.float64) for k in ("kernel", "bias"))
    z1 = x @ w1 + b1
    a1 = np.tanh(z1)
    z2 = a1 @ w2 + b2
    p = np.exp(z2 - z2.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d2 = (p - np.eye(10)[y]) / len(y)
    g2 = np.concatenate([(a1.T @ d2).ravel(), d2.sum(0)])
    d1 = (d2 @ w2.T) * (1 - a1**2)
    g1 = np.concatenate([(x.T @ d1).ravel(), d1.sum(0)])
    norm = np.linalg.norm
    want = {
        "dense": (z1, None, None, g1, np.concatenate([w1.ravel(), b1])),
        "tanh": (a1, 0.0, np.mean(1 - a1**2 < 1 / 20), None, None),
        "dense_1": (z2, None, None, g2, np.concatenate([w2.ravel(), b2])),
    }
    for name, (out, dead, saturated, g, w) in want.items():
        s = got[name]
        assert s["mean"] == pytest.approx(out.mean(), rel=1e-4, abs=1e-6), name
        assert s["std"] == pytest.approx(out.std(), rel=1e-5), name
        assert s["dead"] == dead and s["saturated"] == pytest.approx(saturated), name
        if g is None:
            assert s["grad_norm"] is None and s["update_ratio"] is None
            continue
        assert s["grad_norm"] == pytest.approx(norm(g), rel=1e-4), name
        assert s["update_ratio"] == pytest.approx(0.1 * norm(g) / norm(w), rel=1e-4), name  # sgd


def test_health_off_traces_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "h.dnn"
    path.write_text(SPEC.format(extra=""))
    program = load(str(path))

    def traced(*_: object) -> None:
        raise AssertionError("health statistics traced with health off")

    monkeypatch.setattr(health, "stats", traced)
    engine = Engine(program, pipeline.prepare(program), 1)
    assert engine.health_every == 0 and "health" not in engine.train_acc()
    x, y = device_data(engine.prepared, engine.place)["train"]
    order, _ = engine.order(1, int(x.shape[0]))
    engine.step.lower(engine.init(), engine.train_acc(), x, y, order, 0).compile()


def _line(**layers: dict) -> dict:
    base = dict.fromkeys(health.COLUMNS)
    return {"epoch": 1, "step": 1, "layers": {k: base | v for k, v in layers.items()}}


DIAGNOSED = """dnn 1
model m {
  input x: f32[8]
  repeat 2 { dense(8) -> relu }
  dense(3) -> sigmoid
  dense(2)
}
"""


def test_each_diagnosis_is_a_warning_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "d.dnn"
    path.write_text(DIAGNOSED)
    program = load(str(path))
    lines = [
        _line(
            dense={"grad_norm": 1e-4 * (k + 1), "update_ratio": 1e-3},
            relu={"dead": 0.75},
            dense_1={"grad_norm": 1e-3, "update_ratio": 1e-3},
            relu_1={"dead": 0.25},
            dense_2={"grad_norm": 0.5, "update_ratio": 2e-6},
            sigmoid={"saturated": 0.9 if k else 0.1},
            dense_3={"grad_norm": 1.0 * 10 ** (4 * k), "update_ratio": 1e-3},
        )
        for k in range(3)
    ]
    found = [
        (f"{d.span.line}:{d.span.col}", d.code, d.message) for d in health.diagnose(program, lines)
    ]
    assert found == [
        (
            "4:14",
            "W0808",
            "gradients vanish: `dense`'s gradient norm is 1e+03 times below the last weighted "
            "layer's (`dense_3`) in 3 of 3 checks (median 0.0002 against 1e+04)",
        ),
        (
            "4:26",
            "W0808",
            "`relu`: more than half of its units are dead in 3 of 3 checks (last 75%)",
        ),
        (
            "5:3",
            "W0808",
            "`dense_2`'s updates are 2.0e-06 of its weights per step (median), far from the "
            "healthy 1e-3",
        ),
        (
            "5:15",
            "W0808",
            "`sigmoid` saturates: more than half of its values in 2 of 3 checks (last 90%)",
        ),
        ("6:3", "W0808", "gradients explode: `dense_3`'s gradient norm grew from 1 to 1e+08"),
    ]
    healthy = [_line(dense={"grad_norm": 0.1, "update_ratio": 1e-3}, relu={"dead": 0.1})]
    assert health.diagnose(program, healthy) == []


def test_the_health_flag_an_ensemble_and_a_scanned_repeat(tmp_path: Path, capsys) -> None:
    path = tmp_path / "e.dnn"
    spec = SPEC.replace("  dense(12) -> tanh\n", "  repeat 8 {{ dense(8) -> relu }}\n")
    path.write_text(spec.format(extra="  ensemble = 2\n  scan_repeats = true\n"))
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet", "--health"]) == 0
    capsys.readouterr()
    lines = [json.loads(t) for t in (tmp_path / "run" / "health.jsonl").read_text().splitlines()]
    assert [(ln["member"], ln["step"]) for ln in lines] == [(0, 1), (1, 1)]  # every 50 of 15
    names = [f"dense_{i}" if i else "dense" for i in range(9)]
    assert all(n in lines[0]["layers"] for n in names)  # the scanned instances, unstacked
    assert lines[0]["layers"]["dense_3"]["grad_norm"] > 0
    assert lines[0]["layers"]["dense"] != lines[1]["layers"]["dense"]  # members differ
    assert (tmp_path / "run" / "plots" / "health_grad_norm.png").exists()
    # and TensorBoard's scalars, one folder per member, equal the lines
    for m in (0, 1):
        got = _scalars(tmp_path / "run" / "tensorboard" / f"member_{m}")
        want = lines[m]["layers"]["dense_3"]["grad_norm"]
        assert got[("health/grad_norm/dense_3", 1)] == pytest.approx(want, rel=1e-6)
        assert len(got) == sum(
            v is not None for r in lines[m]["layers"].values() for v in r.values()
        )


def _scalars(folder: Path) -> dict[tuple[str, int], float]:
    """(tag, step) -> value from the TFRecord event files of a folder (tensorboardX's protos:
    8-byte length, 4-byte crc, the Event, 4-byte crc)."""
    from tensorboardX.proto.event_pb2 import Event

    out = {}
    for path in folder.glob("events.out.tfevents.*"):
        data, at = path.read_bytes(), 0
        while at < len(data):
            n = int.from_bytes(data[at : at + 8], "little")
            event = Event.FromString(data[at + 12 : at + 12 + n])
            at += 12 + n + 4
            for v in event.summary.value:
                out[(v.tag, event.step)] = v.simple_value
    return out


def test_statistics_over_a_mesh_are_the_global_ones(tmp_path: Path) -> None:
    """On 4 devices (data sharding) a check reads the whole batch, not one device's quarter:
    the same numbers as on one device (to float32 reduction order)."""
    path = tmp_path / "h.dnn"
    path.write_text(SPEC.format(extra="  health = { every: 5 steps }\n"))
    lines = {}
    for devices in (1, 4):
        program = load(str(path), [f"train.devices={devices}", "train.epochs=1"])
        train(program, tmp_path / f"run{devices}", mode="quiet")
        lines[devices] = health.read(tmp_path / f"run{devices}" / "health.jsonl")
    assert [ln["step"] for ln in lines[4]] == [ln["step"] for ln in lines[1]] == [1, 6, 11]
    for one, four in zip(lines[1], lines[4], strict=True):
        for name, row in one["layers"].items():
            for col, v in row.items():
                got = four["layers"][name][col]
                assert got == (None if v is None else pytest.approx(v, rel=1e-4, abs=1e-6)), (
                    name,
                    col,
                )
