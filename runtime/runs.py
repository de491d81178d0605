"""`dnn runs`: the run folders under a directory as a table, and two runs side by side.

Reads only the files `dnn train` writes (hparams.yaml, env.yaml, metrics.jsonl, result.json),
so it needs no JAX and works on folders copied from another machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .rundir import NOT_CURVES, read_history


@dataclass(frozen=True)
class RunInfo:
    """What one run folder says about itself."""

    folder: Path
    spec: str
    started: str
    status: str  # finished | stopped | failed or running
    epochs: int
    metrics: dict[str, float]  # the final test metrics, else the last epoch's validation ones
    wall: float | None


def find(root: Path) -> list[RunInfo]:
    """Every run folder directly under `root` (or `root` itself), oldest first."""
    folders = [root] if (root / "hparams.yaml").exists() else sorted(root.glob("*/"))
    runs = [read(f) for f in folders if (f / "hparams.yaml").exists()]
    return sorted(runs, key=lambda r: (r.started, str(r.folder)))


def read(folder: Path) -> RunInfo:
    env = _yaml(folder / "env.yaml")
    history = read_history(folder / "metrics.jsonl")
    result = _json(folder / "result.json")
    if result:
        split = "test" if "test" in result else "val" if "val" in result else "train"
        metrics = {k: v for k, v in result[split].items() if isinstance(v, float)}
        metrics = {f"{split}_{k}": v for k, v in metrics.items()}
        status, epochs, wall = "finished", result["epochs_run"], result["wall_time_s"]
    else:
        last = history[-1] if history else {}
        metrics = {k: v for k, v in last.items() if k.startswith("val_")}
        status, epochs, wall = "stopped", int(last.get("epoch", 0)), None
    return RunInfo(
        folder,
        Path(str(env.get("spec", "?"))).name,
        str(env.get("started", "")),
        status,
        epochs,
        metrics,
        wall,
    )


def _yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def table(runs: list[RunInfo]) -> Any:
    """A rich table, one row per run, that reads at 80 columns: each cell stacks its facts on
    lines (run over spec, date over time, status over epochs, one metric a line) and a long
    run name folds onto a second line instead of being cut."""
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, show_lines=True, pad_edge=False)
    t.add_column("run / spec", overflow="fold")
    t.add_column("started", no_wrap=True)
    t.add_column("status", no_wrap=True)
    t.add_column("final metrics", no_wrap=True)
    t.add_column("wall", justify="right", no_wrap=True)
    for r in runs:
        split = next(iter(r.metrics), "_").split("_")[0]
        shown = [f"{k.removeprefix(split + '_')} {v:.4f}" for k, v in list(r.metrics.items())[:3]]
        day, _, clock = r.started.replace("T", " ")[:19].partition(" ")
        t.add_row(
            f"{r.folder.name}\n[dim]{r.spec}[/dim]",
            f"{day}\n{clock[:5]}",
            f"{r.status}\n{r.epochs} epoch{'s' * (r.epochs != 1)}"
            + (f"\n[dim]{split}[/dim]" if shown else ""),
            "\n".join(shown),
            f"{r.wall:.1f} s" if r.wall is not None else "",
        )
    return t


def plot_compare(a: Path, b: Path, out: Path) -> list[str]:
    """Both runs' curves in one PNG: one panel per quantity, train dashed, validation solid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ha, hb = read_history(a / "metrics.jsonl"), read_history(b / "metrics.jsonl")
    names = [
        k
        for k in (ha[0] if ha else {})
        if k not in NOT_CURVES and not k.startswith("val_") and any(k in r for r in hb)
    ]
    if not names:
        raise ValueError(f"{a.name} and {b.name} share no recorded quantity to compare")
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), dpi=100, squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for history, label, color in ((ha, a.name, "C0"), (hb, b.name, "C1")):
            epochs = [r["epoch"] for r in history]
            ax.plot(
                epochs, [r.get(name) for r in history], "--", color=color, label=f"{label} train"
            )
            if any(f"val_{name}" in r for r in history):
                values = [r.get(f"val_{name}") for r in history]
                ax.plot(epochs, values, "-", color=color, label=f"{label} val")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return names
