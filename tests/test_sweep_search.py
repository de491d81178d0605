"""The searches of issue 18 beyond Optuna's samplers: a pruner stopping a trial from its epoch
metrics (recorded as pruned), random search with coarse-to-fine tightening (the rounds' ranges
recomputed here from the documented rule), and their bad inputs at the spec line."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
from dnn.compiler.driver import load
from dnn.runtime import sweep, sweep_tighten
from dnn.runtime.cli import main

SPEC = """dnn 1
param width = 8
model tiny {{
  input x: f32[4]
  dense(width) -> relu
  dense(3)
}}
data {{
  source = builtin("iris")
  normalize = standardize
}}
train {{
  metrics = [accuracy]
  batch_size = 32
  epochs = {epochs}
  optimizer = sgd(lr = 0.01)
  seed = 0
}}
sweep {{
  {sweep}
}}
"""


def spec(tmp_path: Path, sweep_text: str, epochs: int = 1) -> Path:
    path = tmp_path / "tiny.dnn"
    path.write_text(SPEC.format(sweep=sweep_text, epochs=epochs))
    return path


def table(folder: Path) -> list[dict[str, str]]:
    with (folder / "results.csv").open() as f:
        return list(csv.DictReader(f))


def test_a_median_pruner_stops_a_bad_trial_and_records_it_pruned(tmp_path: Path, capsys) -> None:
    text = (
        "train.optimizer.lr = loguniform(1e-9, 1.0)\n  objective = minimize(val_loss)\n"
        "  pruner = median(startup = 1, warmup = 1)"
    )
    path, out = spec(tmp_path, text, epochs=2), tmp_path / "sweep"
    # the study made beforehand with its first two trials queued, so their order is known: a
    # good rate finishes, then a rate that cannot learn is worse than it at epoch 1
    out.mkdir()
    study = optuna.create_study(
        storage=sweep.storage_url(out, None), study_name="tiny", direction="minimize"
    )
    study.enqueue_trial({"train.optimizer.lr": 0.5})
    study.enqueue_trial({"train.optimizer.lr": 1e-9})
    assert main(["sweep", str(path), "--out", str(out), "--resume", "--trials", "2"]) == 0
    rows = table(out)
    assert [(r["train.optimizer.lr"], r["state"], r["epochs"]) for r in rows] == [
        ("0.5", "complete", "2"),
        ("1e-09", "pruned", "1"),
    ]
    # the pruned run stopped after epoch 1 with the value the pruner saw as its objective
    history = [json.loads(line) for line in Path(rows[1]["run"], "metrics.jsonl").open()]
    assert [h["epoch"] for h in history] == [1]
    assert float(rows[1]["objective"]) == pytest.approx(history[0]["val_loss"])
    first = [json.loads(line) for line in Path(rows[0]["run"], "metrics.jsonl").open()]
    assert history[0]["val_loss"] > first[0]["val_loss"]  # why it was pruned
    captured = capsys.readouterr()
    assert "median pruner" in captured.err and "pruned after epoch 1" in captured.err
    assert "best: trial 0" in captured.out


@pytest.mark.parametrize(
    ("word", "kind", "expected"),
    [
        ("none", optuna.pruners.NopPruner, {}),
        (
            "median(startup = 3, warmup = 2)",
            optuna.pruners.MedianPruner,
            {"_n_startup_trials": 3, "_n_warmup_steps": 2},
        ),
        (
            "successive_halving(min_epochs = 2, reduction = 4)",
            optuna.pruners.SuccessiveHalvingPruner,
            {"_min_resource": 2, "_reduction_factor": 4, "_min_early_stopping_rate": 0},
        ),
        (
            "hyperband(min_epochs = 1, reduction = 3)",
            optuna.pruners.HyperbandPruner,
            {"_min_resource": 1, "_max_resource": 9, "_reduction_factor": 3},
        ),
    ],
)
def test_each_pruner_word_builds_its_optuna_pruner(
    tmp_path: Path, word: str, kind: type, expected: dict[str, int]
) -> None:
    path = spec(tmp_path, f"train.optimizer.lr = loguniform(1e-3, 0.1)\n  pruner = {word}", 9)
    made = sweep.pruner(optuna, load(str(path)))
    assert type(made) is kind
    assert {k: getattr(made, k) for k in expected} == expected


def test_narrowing_follows_the_documented_rule() -> None:
    """A hand-worked round: loguniform narrowed in log space, uniform linearly, a choice to
    the best trials' values, an integer range to whole numbers."""
    from dnn.runtime.sweep import Axis

    axes = [
        Axis("lr", "loguniform", (), 1e-4, 1.0),
        Axis("drop", "uniform", (), 0.0, 0.5),
        Axis("width", "choice", (16, 32, 64)),
        Axis("depth", "int_uniform", (), 1, 6),
    ]
    finished = [  # (trial, values, val_loss): the best two are trials 1 and 3
        (0, {"lr": 1e-4, "drop": 0.5, "width": 16, "depth": 1}, 2.0),
        (1, {"lr": 1e-2, "drop": 0.1, "width": 32, "depth": 3}, 0.5),
        (2, {"lr": 0.5, "drop": 0.4, "width": 16, "depth": 6}, 1.5),
        (3, {"lr": 1e-3, "drop": 0.2, "width": 64, "depth": 4}, 0.7),
    ]
    space = sweep_tighten.spaces(axes, finished, 4, 2, 0.25, "minimize", 1)
    assert space.round == 1
    w = math.log(1.0) - math.log(1e-4)
    lo, hi = space.ranges["lr"]
    assert lo == pytest.approx(math.log(1e-3) - w / 10) and hi == pytest.approx(
        math.log(1e-2) + w / 10
    )
    assert space.ranges["drop"] == pytest.approx((0.1 - 0.05, 0.2 + 0.05))
    assert space.kept["width"] == (32, 64)
    assert space.ranges["depth"] == pytest.approx((3 - 0.5, 4 + 0.5))
    rng = np.random.default_rng(0)
    depths = {sweep_tighten.draw(axes[3], space, rng) for _ in range(50)}
    assert depths == {3, 4}
    lrs = [sweep_tighten.draw(axes[0], space, rng) for _ in range(50)]
    assert all(math.exp(lo) <= v <= math.exp(hi) for v in lrs)
    # maximize ranks the other way: trials 0 and 2 are the best
    space = sweep_tighten.spaces(axes, finished, 4, 2, 0.25, "maximize", 1)
    assert space.kept["width"] == (16,) and space.ranges["depth"] == pytest.approx(
        (1.0, 6.0)
    )  # within the spec
    # round 0 and a trial past the last round
    assert sweep_tighten.spaces(axes, finished, 4, 2, 0.25, "minimize", 0).round == 0
    assert sweep_tighten.spaces(axes, finished, 4, 2, 0.25, "minimize", 7).round == 1


def test_random_search_with_tightening_end_to_end(tmp_path: Path, capsys) -> None:
    text = (
        "method = random(trials = 3, rounds = 2, keep = 0.5)\n"
        "  train.optimizer.lr = loguniform(1e-4, 1.0)\n  objective = minimize(val_loss)"
    )
    path, out = spec(tmp_path, text), tmp_path / "sweep"
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    rows = table(out)
    assert [r["round"] for r in rows] == ["0", "0", "1"]
    assert all(r["state"] == "complete" for r in rows)
    # round 1's range, recomputed here: the best 2 of round 0 in log space, widened by a tenth
    # of the spec's log-width on each side, within the spec's range
    first = sorted(rows[:2], key=lambda r: float(r["objective"]))
    logs = [math.log(float(r["train.optimizer.lr"])) for r in first]
    pad = (math.log(1.0) - math.log(1e-4)) / 10
    lo, hi = max(math.log(1e-4), min(logs) - pad), min(0.0, max(logs) + pad)
    assert hi - lo < math.log(1.0) - math.log(1e-4)  # narrower than the spec's
    for r in rows[2:]:
        assert lo - 1e-9 <= math.log(float(r["train.optimizer.lr"])) <= hi + 1e-9
    for name in ("objective", "parallel_coordinates"):  # Optuna's, the second
        assert (out / "plots" / f"{name}.png").stat().st_size > 5_000
    # one searched value: an importance plot would be one bar at 1.0 (tests/test_sweep_pbt.py
    # searches two and checks it is drawn)
    assert not (out / "plots" / "importance.png").exists()
    captured = capsys.readouterr()
    assert f"plot: {out / 'plots' / 'parallel_coordinates.png'}" in captured.out
    err = captured.err
    assert "round 1: train.optimizer.lr in [0.0001, 1]" in err
    assert f"round 2: train.optimizer.lr in [{math.exp(lo):.3g}, {math.exp(hi):.3g}]" in err


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "method = random(trials = 2, rounds = 3)\n  train.optimizer.lr = loguniform(1e-3, 0.1)",
            "20:31",
            "3 rounds need at least 3 trials, not 2",
        ),
        (
            "train.optimizer.lr = loguniform(1e-3, 0.1)\n  pruner = hyperband(reduction = 1)",
            "21:22",
            "argument `reduction` of `hyperband` must be an int >= 2, got `1`",
        ),
        (
            "train.optimizer.lr = loguniform(1e-3, 0.1)\n  pruner = medain",
            "21:12",
            "did you mean `median`",
        ),
    ],
)
def test_bad_search_settings_are_reported_at_their_line(
    tmp_path: Path, capsys, text: str, where: str, message: str
) -> None:
    path = spec(tmp_path, text)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{path}:{where}: error[E" in err and message in err, err
