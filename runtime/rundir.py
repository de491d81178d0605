"""The run folder: everything needed to read, reproduce, evaluate and resume a training run.

spec.dnn        the spec as trained (overrides applied, canonical form)
hparams.yaml    params, data and train sections with every default filled
env.yaml        versions, devices, seed, command line, start time
metrics.jsonl   one JSON line per epoch
result.json     final train/val/test metrics, epochs run, wall time, throughput
preprocess.*    the normalizer's train-split statistics (NumPy .npz, no pickle) + JSON
checkpoints/    Orbax: last/ (to resume) and best/ (early stopping's best epoch)
plots/          loss and metric curves, train vs val (PNG)
tensorboard/    TensorBoard event files: the epoch scalars, the model summary (runtime/tensorboard.py)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from dnn.compiler import ast
from dnn.compiler.format import format_module
from dnn.compiler.ir import Config, Program
from dnn.compiler.parse import parse
from dnn.compiler.values import Rec, Ref, show

# Epoch-record keys that are bookkeeping, not curves to plot.
NOT_CURVES = ("epoch", "lr", "time", "samples_per_s", "phase", "data_wait_s")

# Everything `dnn train` writes at the top of a run folder (`.tmp`: a write cut short).
RUN_ENTRIES = (
    "env.yaml",
    "spec.dnn",
    "hparams.yaml",
    "metrics.jsonl",
    "metrics.tmp",
    "result.json",
    "result.json.tmp",
    "preprocess.npz",
    "preprocess.json",
    "checkpoints",
    "plots",
    "tensorboard",
    "health.jsonl",
    "pretrain.jsonl",
)
# Keys of env.yaml that mark a dnn run (a conda env.yaml, say, has none of them).
ENV_MARKS = ("spec", "seed", "command", "started")

PACKAGES = ("dnn", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scikit-learn")


def plain(v: Any) -> Any:
    """A resolved spec value as YAML/JSON-ready data: words by name, arguments as a mapping."""
    if isinstance(v, Ref):
        return v.name if not v.args else {v.name: {k: plain(a) for k, a in v.args}}
    if isinstance(v, Rec):
        return {k: plain(a) for k, a in v.items}
    if isinstance(v, tuple | list):
        return [plain(a) for a in v]
    if isinstance(v, bool | int | float | str) or v is None:
        return v
    return show(v)


def hparams(program: Program) -> dict[str, Any]:
    out: dict[str, Any] = {"params": {k: plain(v) for k, v in program.params}}
    sections: tuple[tuple[str, Config | None], ...] = (
        ("data", program.data),
        ("train", program.train),
    )
    for name, cfg in sections:
        if cfg is not None:
            out[name] = {k: plain(v) for k, v in cfg.fields}
    return out


def spec_text(program: Program) -> str:
    """The spec as trained, canonical and self-contained: imported blocks and params inlined
    (the run folder has no `blocks/` beside it)."""
    if program.module is None:
        return ""
    items = _inline(program.module.items, program.path, program.sources, set())
    return format_module(dataclasses.replace(program.module, items=tuple(items)))


def _inline(items: Any, importer: str, sources: dict[str, str], seen: set[str]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if not isinstance(item, ast.ImportStmt):
            out.append(item)
            continue
        path = os.path.normpath(os.path.join(os.path.dirname(importer), item.path))
        if path in seen or path not in sources:
            continue
        seen.add(path)
        module = parse(sources[path], path)
        body = [i for i in module.items if not isinstance(i, ast.Version)]
        inlined = _inline(body, path, sources, seen)
        if inlined:
            note = (f"# from {item.path}",)
            first = inlined[0]
            inlined[0] = dataclasses.replace(first, comments=(*note, *first.comments))
        out += inlined
    return out


def environment(program: Program, argv: list[str] | None = None) -> dict[str, Any]:
    import jax

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "spec": program.path,
        "seed": program.train.seed,
        "command": " ".join(argv if argv is not None else sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cwd": os.getcwd(),
    }


def run_folder_start(folder: Path) -> str | None:
    """When the dnn run in `folder` started, or None if `folder` is not (only) a dnn run folder.

    A run folder holds env.yaml with dnn's keys and nothing but the entries dnn writes.
    """
    if any(p.name not in RUN_ENTRIES for p in folder.iterdir()):
        return None
    try:
        env = yaml.safe_load((folder / "env.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(env, dict) or not all(k in env for k in ENV_MARKS):
        return None
    return str(env["started"])


def empty_run_folder(folder: Path) -> None:
    """Delete what `dnn train` wrote in `folder` (checked with `run_folder_start` first)."""
    for name in RUN_ENTRIES:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def write_yaml(path: Path, data: Any) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def write_json(path: Path, data: Any) -> None:
    """Write beside, then rename: a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl from the history (rewritten whole, so a resumed run has no duplicates)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
    os.replace(tmp, path)


def read_history(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------ plots


def plot_history(history: list[dict[str, Any]], folder: Path, best_epoch: int = 0) -> list[Path]:
    """One PNG per quantity (loss, each metric): train and validation curves over epochs,
    the best epoch (`best_epoch`, the monitored one; 0: none) marked; a quantity to minimize
    that spans more than two decades on a log axis; and the learning rate per epoch (`lr.png`)
    when a schedule or plateau reduction changed it.

    Matplotlib's object API, not pyplot: no global figure state, so `dnn train` can draw on a
    side thread while the final evaluation runs.
    """
    if not history:
        return []
    Figure, FigureCanvasAgg = plotting()
    folder.mkdir(parents=True, exist_ok=True)
    names = [
        k
        for k, v in history[0].items()
        if k not in NOT_CURVES and not k.startswith("val_") and isinstance(v, int | float)
    ]
    written = []
    epochs = [r["epoch"] for r in history]
    # `unfreeze`: a line between the last epoch of phase 1 and the first of phase 2
    thawed = [r["epoch"] for r in history if r.get("phase") == 2]
    for name in names:
        fig = Figure(figsize=(6, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        curves = {"train": [r.get(name) for r in history]}
        if f"val_{name}" in history[0]:
            curves["val"] = [r.get(f"val_{name}") for r in history]
        for label, values in curves.items():
            ax.plot(epochs, values, marker="o", ms=3, label=label)
        if best_epoch in epochs:
            at = epochs.index(best_epoch)
            shown = curves.get("val", curves["train"])
            ax.axvline(best_epoch, color="gray", ls="--", lw=1, label=f"best epoch {best_epoch}")
            if shown[at] is not None:
                ax.plot([best_epoch], [shown[at]], "*", color="C3", ms=12)
        if thawed and thawed[0] > epochs[0]:
            ax.axvline(thawed[0] - 0.5, color="0.5", ls=":", lw=1, label="unfreeze")
        if log_scale(name, [v for vs in curves.values() for v in vs]):
            ax.set_yscale("log")
        _finish(ax, name, f"{name} (log scale)" if ax.get_yscale() == "log" else name)
        fig.tight_layout()
        path = folder / f"{name}.png"
        fig.savefig(path)
        written.append(path)
    rates = [r.get("lr") for r in history]
    if _varies(rates):  # a constant rate is a flat line not worth a picture
        fig = Figure(figsize=(6, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot(epochs, rates, marker="o", ms=3, color="C2", label="lr (last step of the epoch)")
        if log_scale("lr", rates):
            ax.set_yscale("log")
        _finish(ax, "learning rate", "learning rate")
        fig.tight_layout()
        fig.savefig(folder / "lr.png")
        written.append(folder / "lr.png")
    return written


def _varies(values: list[Any]) -> bool:
    finite = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return len(finite) > 1 and max(finite) > min(finite)


LOG_SPAN = 100.0  # a curve to minimize spanning more than two decades is drawn on a log axis


def log_scale(name: str, values: list[Any]) -> bool:
    """Whether a curve reads better on a log axis: a quantity to minimize (a loss, an error,
    the rate), all positive, whose largest value is over 100 times its smallest."""
    from dnn.compiler.registry.metrics import monitor_mode

    if name != "lr" and monitor_mode(name) != "min":
        return False
    finite = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) > LOG_SPAN * min(finite)


def _finish(ax: Any, ylabel: str, title: str) -> None:
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()


def plotting() -> tuple[Any, Any]:
    """Matplotlib's Figure and Agg canvas (0.3-0.6 s to import the first time)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return Figure, FigureCanvasAgg
