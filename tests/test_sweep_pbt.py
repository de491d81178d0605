"""`method = best_ball`: population-based training. Exploit copies a member's whole state,
explore perturbs by 0.8 / 1.2 within the range (or moves a choice to a neighbour); end to end
the results record each member and round with its parent and lineage; values PBT cannot
explore are refused at their line (E0610)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from dnn.runtime.cli import main
from dnn.runtime.sweep import Axis
from dnn.runtime.sweep_pbt import exploit, explore

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
  epochs = 2
  optimizer = sgd(lr = 0.01, momentum = 0.9)
  seed = 0
}}
sweep {{
  method = best_ball(population = 3, interval = 1 epochs, truncate = 0.34, resample = 0.0)
  {sweep}
  objective = maximize(val_accuracy)
}}
"""


def test_exploit_copies_the_whole_state_but_not_the_numbers() -> None:
    host = {
        "params": {"w": np.arange(12.0).reshape(3, 4)},
        "opt": ({"mu": np.arange(6.0).reshape(3, 2)}, {"count": np.array([5, 6, 7])}),
        "step": np.array([10, 11, 12]),
        "hp": {("optimizer", "lr"): np.array([0.1, 0.2, 0.3])},
    }
    exploit(host, 2, 0)
    assert host["params"]["w"].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]
    assert host["opt"][0]["mu"].tolist() == [[0, 1], [2, 3], [0, 1]]
    assert host["opt"][1]["count"].tolist() == [5, 6, 5] and host["step"].tolist() == [10, 11, 10]
    assert host["hp"][("optimizer", "lr")].tolist() == [0.1, 0.2, 0.3]  # explore sets those


def test_explore_perturbs_within_the_range() -> None:
    rng = np.random.default_rng(0)
    lr = Axis("lr", "loguniform", (), 1e-4, 1.0)
    seen = {round(explore(lr, 0.01, 0.2, 0.0, rng), 12) for _ in range(40)}
    assert seen == {0.008, 0.012}
    assert {round(explore(lr, 0.9, 0.2, 0.0, rng), 12) for _ in range(40)} == {0.72, 1.0}  # clipped
    depth = Axis("depth", "int_uniform", (), 1, 10)
    assert {explore(depth, 5, 0.2, 0.0, rng) for _ in range(40)} == {4, 6}
    width = Axis("width", "choice", (16, 32, 64))
    assert {explore(width, 32, 0.2, 0.0, rng) for _ in range(40)} == {16, 64}
    assert {explore(width, 16, 0.2, 0.0, rng) for _ in range(40)} == {16, 32}
    drawn = [explore(lr, 0.01, 0.2, 1.0, rng) for _ in range(40)]  # always resampled
    assert len(set(drawn)) == 40 and all(1e-4 <= v <= 1.0 for v in drawn)


def test_population_based_training_end_to_end(tmp_path: Path, capsys) -> None:
    path, out = tmp_path / "tiny.dnn", tmp_path / "sweep"
    sweep = (
        "train.optimizer.lr = loguniform(1e-3, 0.5)\n  train.optimizer.momentum = uniform(0.5, 0.9)"
    )
    path.write_text(SPEC.format(sweep=sweep))
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["round"], r["member"]) for r in rows] == [
        ("0", "0"), ("0", "1"), ("0", "2"), ("1", "0"), ("1", "1"), ("1", "2"),
    ]  # fmt: skip
    first, second = rows[:3], rows[3:]
    worst = min(first, key=lambda r: (float(r["objective"]), -int(r["member"])))
    moved = [r for r in second if r["parent"] != r["member"]]
    assert len(moved) <= 1  # truncate = 0.34 of 3: one member is replaced (unless by itself)
    for r in moved:
        assert r["member"] == worst["member"]
        parent = first[int(r["parent"])]
        assert float(parent["objective"]) >= float(worst["objective"])
        assert r["lineage"] == f"member_{r['member']} <- member_{r['parent']}"
        for name, (lo, hi) in {
            "train.optimizer.lr": (1e-3, 0.5),
            "train.optimizer.momentum": (0.5, 0.9),
        }.items():
            v, p = float(r[name]), float(parent[name])
            assert v == pytest.approx(min(max(p * 0.8, lo), hi)) or v == pytest.approx(
                min(max(p * 1.2, lo), hi)
            )
    for r in second:
        if r["parent"] == r["member"]:  # kept its values
            assert r["train.optimizer.lr"] == first[int(r["member"])]["train.optimizer.lr"]
    # each member's run folder has its history across rounds and its lineage
    result = json.loads((out / "trials" / "member_0" / "result.json").read_text())
    assert result["epochs_run"] == 2 and result["lineage"].startswith("member_0")
    history = (out / "trials" / "member_0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(h)["round"] for h in history] == [0, 1]
    captured = capsys.readouterr()
    assert (
        "best_ball search, 6 trials" in captured.err and "round 2/2: best member_" in captured.err
    )
    # two searched values: their importance (fANOVA) is drawn
    assert (out / "plots" / "importance.png").stat().st_size > 5_000
    assert f"plot: {out / 'plots' / 'importance.png'}" in captured.out


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ("width = choice(4, 8)", "`width` is not a number of the optimizer or schedule"),
        ("train.batch_size = choice(16, 32)", "`train.batch_size` is not a number of the"),
    ],
)
def test_values_pbt_cannot_explore_are_refused(
    tmp_path: Path, capsys, sweep: str, message: str
) -> None:
    path = tmp_path / "tiny.dnn"
    path.write_text(SPEC.format(sweep=sweep))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{path}:21:3: error[E0610]: `best_ball` trains its population as one program" in err
    assert message in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("interval", "message"),
    [
        ("0 epochs", "a round must train at least 1 epoch"),
        ("20 steps", "a population is compared at the end of epochs"),
    ],
)
def test_an_interval_is_whole_epochs(tmp_path: Path, capsys, interval: str, message: str) -> None:
    path = tmp_path / "tiny.dnn"
    text = SPEC.format(sweep="train.optimizer.lr = loguniform(1e-3, 0.5)")
    path.write_text(text.replace("interval = 1 epochs", f"interval = {interval}"))
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:20:38: error[E0306]: {message}" in err, err
