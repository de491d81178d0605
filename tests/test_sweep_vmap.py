"""`dnn sweep --vmap K`: trials whose values change no shape trained as one vmapped program.
Each trial's epochs and final metrics equal (to float rounding) those of its run alone, early
stopping per trial included; values that change more are refused at their line (E0609)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
from dnn.compiler.driver import load
from dnn.runtime.cli import main
from dnn.runtime.fit import train

SPEC = """dnn 1
param width = 16
model tiny {{
  input x: f32[4]
  dense(width) -> relu
  dropout(0.2)
  dense(3)
}}
data {{
  source = builtin("iris")
  normalize = standardize
}}
train {{
  metrics = [accuracy]
  batch_size = 32
  epochs = 6
  optimizer = {optimizer}
  early_stopping = {{ monitor: val_loss, patience: 1, restore_best: true }}
  seed = 0
}}
sweep {{
  {sweep}
}}
"""
ADAM = "adam(lr = 0.01)\n  schedule = cosine(decay_steps = 6 epochs, warmup = 3 steps)"
SEARCH = (
    "method = random(trials = 2)\n  train.optimizer.lr = loguniform(0.02, 0.5)\n"
    "  train.seed = int_uniform(0, 9)\n  objective = minimize(val_loss)"
)


def spec(tmp_path: Path, sweep: str, optimizer: str = ADAM) -> Path:
    path = tmp_path / "tiny.dnn"
    path.write_text(SPEC.format(sweep=sweep, optimizer=optimizer))
    return path


def history(run: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").open()]


def test_vmapped_trials_equal_their_runs_alone(tmp_path: Path, capsys) -> None:
    path, out = spec(tmp_path, SEARCH), tmp_path / "sweep"
    assert main(["sweep", str(path), "--out", str(out), "--vmap", "2"]) == 0
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["state"] for r in rows] == ["complete", "complete"] and rows[0]["group"] == "0"
    assert rows[1]["group"] == "0"  # one group: both trials in one program
    assert rows[0]["train.seed"] != rows[1]["train.seed"]  # own seeds: own batches and masks
    assert "(group of 2)" in capsys.readouterr().err
    stopped_early = False
    for r in rows:
        sets = [f"train.optimizer.lr={r['train.optimizer.lr']}", f"train.seed={r['train.seed']}"]
        alone = train(load(str(path), sets), tmp_path / f"alone{r['trial']}", mode="quiet")
        group = json.loads(Path(r["run"], "result.json").read_text())
        assert group["epochs_run"] == alone["epochs_run"] == int(r["epochs"])
        assert group["best_epoch"] == alone["best_epoch"]
        stopped_early |= alone["epochs_run"] < 6
        for split in ("train", "val", "test"):
            assert group[split] == pytest.approx(alone[split], rel=1e-5, abs=1e-6), split
        assert float(r["objective"]) == pytest.approx(alone["val"]["loss"], rel=1e-5)
        ours, theirs = history(Path(r["run"])), history(Path(alone["run"]))
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["epoch"], key)
    assert stopped_early  # a trial's early stop inside a group that trained on
    for r in rows:  # each trial's folder is a run folder, with both checkpoints
        assert {p.name for p in Path(r["run"], "checkpoints").iterdir()} == {"best", "last"}


@pytest.mark.parametrize(
    ("sweep", "optimizer", "where", "message"),
    [
        (
            "width = choice(8, 16)",
            ADAM,
            "24:3",
            "`width = 8`: it changes the model",
        ),
        (
            "train.batch_size = choice(16, 32)",
            ADAM,
            "24:3",
            "it changes `train.batch_size`",
        ),
        (
            "train.optimizer.l2 = choice(0.0, 0.1)",
            "ftrl(lr = 0.1)",
            "23:3",
            "the lowering of `ftrl` decides on `train.optimizer.l2`'s value",
        ),
        (
            "train.optimizer.lr = loguniform(1e-3, 0.1)\n  pruner = median",
            ADAM,
            "23:12",
            "a pruner stops trials one by one",
        ),
    ],
)
def test_trials_that_cannot_share_a_program_are_refused(
    tmp_path: Path, capsys, sweep: str, optimizer: str, where: str, message: str
) -> None:
    path = spec(tmp_path, f"method = random(trials = 2)\n  {sweep}", optimizer)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--vmap", "2"]) == 1
    err = capsys.readouterr().err
    assert f"{path}:{where}: error[E0609]: `--vmap` cannot train these trials as one" in err, err
    assert message in err and "hint: sweep only the optimizer's and schedule's numbers" in err
    assert not (tmp_path / "out").exists()


def test_a_traced_momentum_of_zero_is_plain_sgd(tmp_path: Path) -> None:
    """Optimizer numbers are traced per member: SGD's momentum 0 and 0.9 in one vmapped
    chain, against PyTorch's SGD written out in float64 (buf = mu * buf + g; w -= lr * buf)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from dnn.compiler.lower_optax import lower_train
    from dnn.runtime.sweep_vmap import with_values

    text = "train.optimizer.lr = loguniform(0.01, 0.1)"
    program = load(str(spec(tmp_path, text, "sgd(lr = 0.1, momentum = 0.5)")))
    w0 = np.array([1.0, -2.0, 0.5])

    def run(mu: jax.Array) -> jax.Array:
        tx = lower_train(with_values(program, {("optimizer", "momentum"): mu}), 10)
        w = {"w": jnp.asarray(w0, jnp.float32)}
        state = tx.init(w)
        for _ in range(4):  # the loss 0.5 * (w . w * 3): the gradient is 3 w
            u, state = tx.update(jax.tree.map(lambda a: 3 * a, w), state, w)
            w = optax.apply_updates(w, u)
        return w["w"]

    got = jax.vmap(run)(jnp.asarray([0.0, 0.9]))
    for k, mu in enumerate((0.0, 0.9)):
        w, buf = w0.copy(), np.zeros(3)
        for step in range(4):
            g = 3 * w
            buf = g if step == 0 else mu * buf + g
            w = w - 0.1 * buf
        np.testing.assert_allclose(np.asarray(got[k]), w, rtol=1e-6, atol=1e-7)


def test_one_compiled_program_serves_every_group_of_a_sweep(tmp_path: Path) -> None:
    """A group's seeds and numbers are data in its state: the programs compiled (ahead, on a
    side thread) for one group of two train the next group of two without compiling again,
    and give what a group built for those trials alone gives; so do two lanes of two."""
    import jax
    from dnn.runtime.sweep_vmap import compile_ahead, train_group

    path = spec(tmp_path, SEARCH)
    base = load(str(path))
    keys = (("optimizer", "lr"),)
    groups = [
        [load(str(path), [f"train.optimizer.lr={lr}", f"train.seed={seed}"]) for lr, seed in g]
        for g in (((0.05, 1), (0.2, 2)), ((0.1, 3), (0.4, 4)))
    ]
    ready = compile_ahead(base, keys, 2).result()
    folders = [[tmp_path / f"g{i}" / str(k) for k in range(2)] for i in range(2)]
    events: list[str] = []

    def listen(event: str, _secs: float, **_: object) -> None:
        if event.startswith("/jax/core/compile/"):  # tracing, lowering or compiling a program
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        first = train_group(groups[0], folders[0], None, ready)
        second = train_group(groups[1], folders[1], None, ready)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert events == []  # every program was compiled ahead: neither group traced or compiled
    engine = ready.engine  # one program each for both groups, compiled ahead from shapes alone
    for program in (engine.scan_epoch, engine._init_jit, engine._order, engine.evaluate_members):
        assert program._cache_size() == 1
    fresh = train_group(groups[1], [tmp_path / "fresh" / str(k) for k in range(2)])
    for a, b in zip(second, fresh, strict=True):
        assert isinstance(a, dict) and isinstance(b, dict)
        assert a["epochs_run"] == b["epochs_run"] and a["best_epoch"] == b["best_epoch"]
        for split in ("train", "val", "test"):
            assert a[split] == b[split], split
    assert first[0]["val"] != second[0]["val"]  # other values: another group's numbers
    # both groups as one of 4 in 2 lanes (two programs of 2 side by side on threads, as a
    # 2-core CPU trains a group of 8): each lane computes what its group of 2 did, exactly
    lanes = [tmp_path / "lanes" / str(k) for k in range(4)]
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        both = train_group(groups[0] + groups[1], lanes, None, replace(ready, lanes=2))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert events == []  # the lanes share the compiled programs
    for a, b, run, folder in zip(
        both, first + second, [*folders[0], *folders[1]], lanes, strict=True
    ):
        assert isinstance(a, dict) and isinstance(b, dict)
        assert (a["epochs_run"], a["best_epoch"]) == (b["epochs_run"], b["best_epoch"])
        assert all(a[split] == b[split] for split in ("train", "val", "test"))
        assert (a["vmapped_trials"], a["lanes"]) == (4, 2)
        timing = ("time", "samples_per_s")
        assert [{k: v for k, v in r.items() if k not in timing} for r in history(folder)] == [
            {k: v for k, v in r.items() if k not in timing} for r in history(run)
        ]


def test_a_streamed_spec_is_refused_before_the_sweep_starts(tmp_path: Path, capsys) -> None:
    """A group trains from splits placed on the device: a streamed spec is refused at
    `data.stream` (as `dnn lr-find` refuses it), before the sweep folder is made."""
    path = spec(tmp_path, SEARCH)
    path.write_text(path.read_text().replace("standardize\n", "standardize\n  stream = true\n"))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--vmap", "2"]) == 1
    err = capsys.readouterr().err
    assert f"{path}:12:12: error[E0602]: `dnn sweep --vmap` trains from the splits placed" in err
    assert "hint: set `stream = false` for it" in err
    assert not out.exists()


def test_a_failing_lane_stops_the_others(tmp_path: Path, monkeypatch) -> None:
    """A lane that fails (or a Ctrl-C) stops every lane at its next epoch, rather than the
    error waiting for the other lanes to train to their end. A run a step at a time (`loop =
    steps`, as convolutions on a CPU) has its steps compiled ahead too: a lane's thread never
    traces (the lanes share the engine's tracing state)."""
    import threading

    import jax
    from dnn.runtime import fit
    from dnn.runtime.sweep_vmap import prepare_group, train_group

    path = spec(tmp_path, SEARCH.replace("trials = 2", "trials = 4"))
    keep = ["train.early_stopping.patience=100", "train.loop=steps"]
    group = [load(str(path), [f"train.optimizer.lr={lr}", *keep]) for lr in (0.1, 0.2, 0.3, 0.4)]
    ready = prepare_group(group[0], (("optimizer", "lr"),), 4, lanes=2)
    assert not ready.engine.scanned and ready.engine.tail
    events: list[str] = []

    def listen(event: str, _secs: float, **_: object) -> None:
        if event.startswith("/jax/core/compile/"):
            events.append(event)

    reached: dict[str, int] = {}
    one = fit._one_epoch

    def failing(engine, st, epoch, *args):
        lane = threading.current_thread().name[-1]
        reached[lane] = epoch
        if lane == "0" and epoch == 2:
            raise RuntimeError("lane 0 failed")
        return one(engine, st, epoch, *args)

    monkeypatch.setattr(fit, "_one_epoch", failing)
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        with pytest.raises(RuntimeError, match="lane 0 failed"):
            train_group(group, [tmp_path / str(k) for k in range(4)], None, ready)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert reached["0"] == 2 and reached["1"] <= 3  # of 6 epochs
    assert events == []  # the steps and the evaluation were compiled ahead


def test_lanes_count_the_cores_a_container_allows(tmp_path: Path, monkeypatch) -> None:
    import os

    from dnn.runtime import sweep_vmap

    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(16)), raising=False)
    assert sweep_vmap.cores(tmp_path) == 16  # no quota files
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert sweep_vmap.cores(tmp_path) == 16
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # 2.5 cores: 3 threads
    assert sweep_vmap.cores(tmp_path) == 3
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert sweep_vmap.cores(tmp_path) == 2
    monkeypatch.setattr(sweep_vmap, "cores", lambda: 2)
    assert [sweep_vmap._lanes(k) for k in (2, 3, 4, 6, 8, 9)] == [1, 1, 2, 2, 2, 1]
    assert [sweep_vmap._lanes(8, most) for most in (1, 3, 4, 16)] == [1, 2, 4, 4]  # --lanes
    from argparse import Namespace

    from dnn.runtime.cli_sweep import _most_lanes

    assert _most_lanes(Namespace(lanes=0, parallel=1)) == 2
    assert _most_lanes(Namespace(lanes=0, parallel=2)) == 1  # a core for each process
    assert _most_lanes(Namespace(lanes=3, parallel=2)) == 3


def test_lanes_must_be_a_positive_count(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["sweep", str(spec(tmp_path, SEARCH)), "--vmap", "2", "--lanes", "0"])
    assert (
        "argument --lanes: `0` is not a positive whole number of lanes" in capsys.readouterr().err
    )
