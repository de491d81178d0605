"""`dnn sweep` on Optuna: a grid with a diverging trial (recorded, the sweep goes on), the
folder (a run folder per trial, results.csv, best.dnn, the plot), --resume, two processes on
one SQLite study, and the bad inputs (spec lines, foreign or damaged databases)."""

from __future__ import annotations

import csv
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml
from dnn.compiler.driver import load
from dnn.compiler.format import format_text
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
  epochs = 1
  optimizer = sgd(lr = 0.01)  # the base point
  seed = 0
}}
sweep {{
  {sweep}
}}
"""

GRID = (
    "method = grid\n  train.optimizer.lr = choice(0.05, 1e30)\n  objective = maximize(val_accuracy)"
)


def spec(tmp_path: Path, sweep: str, name: str = "tiny.dnn") -> Path:
    path = tmp_path / name
    path.write_text(SPEC.format(sweep=sweep))
    return path


def table(folder: Path) -> list[dict[str, str]]:
    with (folder / "results.csv").open() as f:
        return list(csv.DictReader(f))


def test_grid_sweep_records_a_diverging_trial_and_goes_on(tmp_path: Path, capsys) -> None:
    path, out = spec(tmp_path, GRID), tmp_path / "sweep"
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    rows = sorted(table(out), key=lambda r: float(r["train.optimizer.lr"]))
    assert [r["state"] for r in rows] == ["complete", "fail"]
    assert "not finite" in rows[1]["error"] and rows[0]["error"] == ""
    good = Path(rows[0]["run"])
    assert good.parent == out / "trials" and (good / "result.json").is_file()
    hp = yaml.safe_load((good / "hparams.yaml").read_text())
    assert hp["train"]["optimizer"]["sgd"]["lr"] == 0.05  # the trial's value, in its run folder
    assert float(rows[0]["objective"]) > 0.2 and rows[0]["epochs"] == "1"
    best = (out / "best.dnn").read_text()
    assert best == format_text(best) and "optimizer = sgd(lr = 0.05)  # the base point" in best
    assert best.startswith(f"# dnn sweep: trial {rows[0]['trial']} of 2 is the best")
    assert load(str(out / "best.dnn")).train.optimizer.arg("lr") == 0.05
    assert (out / "plots" / "objective.png").stat().st_size > 5_000
    captured = capsys.readouterr()
    assert "grid search, 2 trials, maximize val_accuracy over train.optimizer.lr" in captured.err
    assert "failed: the loss is not finite" in captured.err and "val_accuracy" in captured.out
    # --resume: the study is done, nothing runs again, the report is written again
    (out / "results.csv").unlink()
    assert main(["sweep", str(path), "--out", str(out), "--resume"]) == 0
    assert len(table(out)) == 2 and "2 done" in capsys.readouterr().err
    # a spec changed since the sweep began is refused, the study untouched
    path.write_text(path.read_text().replace("epochs = 1", "epochs = 2"))
    assert main(["sweep", str(path), "--out", str(out), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "error: the spec differs from the one the study `tiny`" in err
    assert len(table(out)) == 2


def test_two_processes_share_one_sqlite_study(tmp_path: Path, capsys) -> None:
    sweep = "method = bayes(trials = 2)\n  train.optimizer.lr = loguniform(1e-3, 1e-1)"
    path, out = spec(tmp_path, sweep), tmp_path / "sweep"
    assert main(["sweep", str(path), "--out", str(out), "--parallel", "2"]) == 0
    rows = table(out)
    assert len(rows) >= 2 and all(r["state"] == "complete" for r in rows)
    assert len({r["trial"] for r in rows}) == len({r["run"] for r in rows}) == len(rows)
    assert len({r["train.optimizer.lr"] for r in rows}) == len(rows)  # no trial repeated
    with sqlite3.connect(out / "study.db") as db:
        assert db.execute("SELECT count(*) FROM trials").fetchone()[0] == len(rows)


@pytest.mark.parametrize(
    ("sweep", "where", "message"),
    [
        (
            "method = grid\n  train.optimizer.lr = loguniform(1e-3, 1e-1)",
            "21:3",
            "`grid` tries every value, but `loguniform` is a continuous range",
        ),
        (
            "method = grid(max_trials = 3)\n  width = choice(2, 4)\n  "
            "train.optimizer.lr = choice(0.1, 0.01)",
            "20:12",
            "the grid has 4 points, more than `max_trials = 3`",
        ),
        ("widht = choice(2, 4)", "20:3", "`widht` is not a param"),
        ("train.optimizer.lr = uniform(0.5, 0.1)", "20:37", "`low` must be less than `high`"),
        ("train.optimizer.lr = loguniform(0.0, 0.1)", "20:35", "must be a number > 0"),
        ("width = choice(4, 0)", "20:3", "`width = 0` makes the spec wrong"),
    ],
)
def test_bad_sweeps_are_reported_at_their_line(
    tmp_path: Path, capsys, sweep: str, where: str, message: str
) -> None:
    path = spec(tmp_path, sweep)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"{path}:{where}: error[E" in err and message in err
    assert not (tmp_path / "out").exists()  # refused before anything is written


@pytest.mark.parametrize("kind", ["foreign", "damaged"])
def test_a_foreign_or_damaged_database_is_refused_and_kept(
    tmp_path: Path, capsys, kind: str
) -> None:
    path, out = spec(tmp_path, "train.optimizer.lr = loguniform(1e-3, 0.1)"), tmp_path / "out"
    out.mkdir()
    db = out / "study.db"
    if kind == "foreign":
        with sqlite3.connect(db) as c:
            c.execute("CREATE TABLE orders (id INTEGER)")
    else:
        db.write_bytes(b"SQLite format 3\x00" + b"\x07" * 200)
    before = db.read_bytes()
    assert main(["sweep", str(path), "--out", str(out), "--resume"]) == 1
    err = capsys.readouterr().err
    said = "not an Optuna study" if kind == "foreign" else "a damaged SQLite database"
    assert f"{db}: error: " in err and said in err and "hint: give the sweep another --out" in err
    assert db.read_bytes() == before


def test_sweep_usage_errors(tmp_path: Path, capsys, monkeypatch) -> None:
    path, out = spec(tmp_path, "train.optimizer.lr = loguniform(1e-3, 0.1)"), tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--resume"]) == 1
    assert "nothing to resume: no study `tiny`" in capsys.readouterr().err
    (out / "other").mkdir(parents=True)
    assert main(["sweep", str(path), "--out", str(out)]) == 1
    assert f"{out} is not empty" in capsys.readouterr().err
    plain = tmp_path / "plain.dnn"
    plain.write_text(SPEC.split("sweep {{")[0].replace("{{", "{").replace("}}", "}"))
    assert main(["sweep", str(plain)]) == 1
    assert "the spec has no `sweep` section" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    assert main(["sweep", str(path)]) == 1
    err = capsys.readouterr().err
    assert "`dnn sweep` needs Optuna" in err and "pip install 'dnn[sweep]'" in err


def test_report_rows_rank_and_name_a_trial_whose_process_died() -> None:
    import optuna
    from dnn.runtime import sweep_report as report

    study = optuna.create_study(direction="maximize")
    dist = {"lr": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)}
    state = optuna.trial.TrialState
    for lr, value, st in ((0.01, 0.5, state.COMPLETE), (0.1, 0.9, state.COMPLETE)):
        study.add_trial(
            optuna.trial.create_trial(params={"lr": lr}, distributions=dist, value=value, state=st)
        )
    failed = optuna.trial.create_trial(params={"lr": 0.5}, distributions=dist, state=state.FAIL)
    study.add_trial(failed)
    rows = report.rows(study, ["lr"])
    assert [r["trial"] for r in report.ranked(rows, "maximize")] == [1, 0, 2]
    assert [r["trial"] for r in report.ranked(rows, "minimize")] == [0, 1, 2]
    assert rows[2]["error"] == report.LOST and rows[0]["error"] is None
