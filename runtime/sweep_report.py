"""The report of a sweep, read back from its Optuna study: the results table (CSV and a rich
table), `best.dnn`, and the plots."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Any

COLUMNS = ("trial", "state", "objective")
TAIL = ("epochs", "wall_s", "run", "error")
# written by some searches only: the round of a tightening random search, a PBT member's line
EXTRA = ("round", "group", "member", "parent", "lineage")
LOST = "its process stopped (no heartbeat); not counted in the budget"


def rows(study: Any, names: list[str]) -> list[dict[str, Any]]:
    """One row per trial, in trial order."""
    out = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {
            "trial": t.number,
            "state": t.state.name.lower(),
            "objective": t.value if t.value is not None else None,
        }
        row.update({n: t.params.get(n) for n in names})
        row.update({k: t.user_attrs.get(k) for k in TAIL})
        row.update({k: t.user_attrs[k] for k in EXTRA if k in t.user_attrs})
        if row["state"] == "fail" and not row["error"]:  # failed by the heartbeat
            row["error"] = LOST
        out.append(row)
    return out


def ranked(table: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    """Completed trials best first, then the others in trial order."""
    done = [r for r in table if r["state"] == "complete" and r["objective"] is not None]
    sign = 1 if direction == "minimize" else -1
    done.sort(key=lambda r: (sign * r["objective"], r["trial"]))
    return done + [r for r in table if r not in done]


def write_csv(table: list[dict[str, Any]], names: list[str], path: Path) -> Path:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        extra = [k for k in EXTRA if any(k in r for r in table)]
        w = csv.DictWriter(f, fieldnames=[*COLUMNS, *names, *TAIL, *extra], restval="")
        w.writeheader()
        w.writerows(table)
    tmp.replace(path)
    return path


def rich_table(table: list[dict[str, Any]], names: list[str], metric: str, direction: str) -> Any:
    from rich.table import Table

    t = Table(title=f"sweep: {metric} ({direction})", title_justify="left")
    t.add_column("trial", justify="right")
    t.add_column(metric, justify="right")
    for n in names:
        t.add_column(n, justify="right")
    t.add_column("epochs", justify="right")
    t.add_column("s", justify="right")
    t.add_column("state")
    for i, r in enumerate(ranked(table, direction)):
        value = "" if r["objective"] is None else f"{r['objective']:.4f}"
        state = r["state"] if not r.get("error") else f"failed: {_cut(r['error'])}"
        t.add_row(
            str(r["trial"]),
            value,
            *(_cell(r.get(n)) for n in names),
            _cell(r.get("epochs")),
            _cell(r.get("wall_s")),
            state,
            style="bold" if i == 0 and r["state"] == "complete" else None,
        )
    return t


def _cell(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _cut(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def best_text(path: str, sets: list[str], settings: list[str], note: str) -> str:
    """The spec with the best trial's values written in, canonical (`dnn fmt`), a comment
    on top saying where the values came from."""
    from dnn.compiler.driver import rewrite
    from dnn.compiler.format import format_text
    from dnn.compiler.resolve import read_file

    text = rewrite(read_file(path), path, [*sets, *settings])
    return format_text(f"# {note}\n{text}", path)


def plot_objective(table: list[dict[str, Any]], metric: str, direction: str, path: Path) -> Path:
    """The objective of each trial, the best so far as a line, failed trials as crosses."""
    from .rundir import plotting

    Figure, FigureCanvasAgg = plotting()
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    done = [r for r in table if r["state"] == "complete" and r["objective"] is not None]
    xs = [r["trial"] for r in done]
    ys = [r["objective"] for r in done]
    ax.plot(xs, ys, "o", color="C0", label="trial")
    best, pick = [], min if direction == "minimize" else max
    for y in ys:
        best.append(y if not best else pick(best[-1], y))
    if xs:
        ax.step(xs, best, where="post", color="C3", label="best so far")
    pruned = [r for r in table if r["state"] == "pruned" and r["objective"] is not None]
    if pruned:
        ax.plot(
            [r["trial"] for r in pruned],
            [r["objective"] for r in pruned],
            "v",
            color="0.6",
            label="pruned (last epoch's value)",
        )
    failed = [r["trial"] for r in table if r["state"] == "fail"]
    if failed and ys:
        finite = [y for y in ys if math.isfinite(y)]
        top = max(finite) if direction == "minimize" else min(finite)
        ax.plot(failed, [top] * len(failed), "x", color="0.4", label="failed")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per trial ({direction})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def ranks_importance(names: list[str]) -> bool:
    """Whether an importance plot says anything: with one searched value, fANOVA gives it
    all the variance (one bar at 1.0), so that plot is not drawn (nor scikit-learn imported)."""
    return len(names) > 1


def plot_search(study: Any, names: list[str], metric: str, folder: Path) -> list[Path]:
    """Parallel coordinates of the finished trials and, for two or more searched values, the
    importance of each (fANOVA, seeded), drawn by Optuna's matplotlib visualization; with fewer
    than two finished trials there is nothing to relate, and nothing is drawn."""
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 2:
        return []
    import matplotlib

    matplotlib.use("Agg")  # Optuna draws through pyplot; no window, no display needed
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    drawn: tuple[tuple[str, Any], ...] = (
        (
            "parallel_coordinates.png",
            lambda: vis.plot_parallel_coordinate(study, params=names, target_name=metric),
        ),
    )
    if ranks_importance(names):
        from optuna.importance import FanovaImportanceEvaluator

        drawn += (
            (
                "importance.png",
                lambda: vis.plot_param_importances(
                    study,
                    evaluator=FanovaImportanceEvaluator(seed=0),
                    params=names,
                    target_name=metric,
                ),
            ),
        )
    for name, draw in drawn:
        with warnings.catch_warnings():  # an axis whose trials all took one value: drawn flat
            warnings.simplefilter("ignore", UserWarning)
            ax = draw()
        fig = ax.figure
        fig.set_size_inches(7.0, 4.2)
        fig.tight_layout()
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
        out.append(folder / name)
    return out
