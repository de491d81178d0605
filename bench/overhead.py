"""Spec vs hand-written: the same model trained by dnn and by hand-written Flax + Optax.

`python bench/overhead.py [--quick] [--models mlp,cnn28,resnet] [--repeats N] [--json F]`

For each benchmark model (bench/specs/*.dnn and its twin in bench/handwritten.py) it measures,
in this one process and alternating the two sides each repeat:

- init: the jitted parameter and optimizer-state initialization (trace + compile + run);
- first epoch overhead: the first epoch's wall time minus a steady epoch's, i.e. the trace and
  compile of the step (or of the scanned epoch) and any other first-call cost;
- steady-state samples/s: training steps only (shuffle, batches, steps, metric accumulation
  on the device), no validation, one epoch timed at a time with the state ready at its end,
  the sides' epochs interleaved so that load from other processes hits them alike;

and, as separate processes (not with `--quick`), `dnn train SPEC --epochs 1` against
`python bench/handwritten.py MODEL --epochs 1`: end-to-end wall time (this process's clock,
start to exit) and peak resident memory (the child's `ru_maxrss`), with XLA's persistent
compilation cache off (cold) and warm (a directory filled by a first run) on both sides.

dnn is driven through `dnn.runtime.fit._one_epoch`, the loop `dnn train` runs, so a fused
(scanned) epoch is measured when the engine chooses one; with `train.loop` in the
language, `--loops auto,steps` also measures the per-step loop (`auto` and `steps` by default).
Medians over repeats, ratios to the hand-written reference (b). `--quick`: the MLP only, dnn as
`dnn train` runs it against (b), 3 repeats, no processes, under a minute; its last line is JSON
`{"model", "dnn_samples_per_s", "handwritten_samples_per_s", "ratio"}`.
PyTorch and Keras are not used: see docs/performance.md for the numbers the issue quotes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from common import (
    BENCH,
    SPECS,
    dnn_engine,
    epoch_loop_overrides,
    make_digits28,
    median,
    print_json_last,
    run_child,
    timed,
)
from handwritten import Reference, load

# epochs timed per repeat (after the first): enough steps that one timing is >= ~0.2 s
EPOCHS = {"mlp": 20, "resnet": 6, "cnn28": 2}
DNN = str(Path(sys.executable).with_name("dnn"))


# ------------------------------------------------------------------ the two sides, one interface


class Side:
    """Build (fresh jits), init, run one epoch; samples per epoch."""

    label: str
    samples: int

    def build(self) -> None: ...
    def init(self) -> Any: ...
    def epoch(self, st: Any, epoch: int) -> tuple[Any, Any]: ...


class Handwritten(Side):
    label = "hand-written"

    def __init__(self, name: str):
        self.name = name
        arrays = load(name)
        self.x, self.y = (jnp.asarray(a) for a in arrays["train"])

    def build(self) -> None:
        self.ref = Reference(self.name)
        self.samples = self.ref.steps(int(self.x.shape[0])) * self.ref.cfg.batch

    def init(self) -> Any:
        return self.ref.init(self.x[:1])

    def epoch(self, st: Any, epoch: int) -> tuple[Any, Any]:
        return self.ref.epoch(st, self.x, self.y, epoch)


class Dnn(Side):
    """The compiled spec through the engine `dnn train` runs (`fit._one_epoch`)."""

    def __init__(self, name: str, loop: str):
        self.name, self.overrides = name, epoch_loop_overrides(loop)
        self.label = "dnn" if loop == "auto" else f"dnn ({loop})"

    def build(self) -> None:
        from dnn.runtime.progress import Display

        program, self.engine, self.x, self.y = dnn_engine(self.name, self.overrides)
        e = self.engine
        n = int(self.x.shape[0])
        self.samples = e.full * e.batch + (n - e.full * e.batch if e.tail else 0)
        self.display = Display(program.train.epochs, e.steps_per_epoch, "quiet")

    @property
    def scanned(self) -> bool:
        return bool(getattr(self.engine, "scanned", False))

    def init(self) -> Any:
        return self.engine.init()

    def epoch(self, st: Any, epoch: int) -> tuple[Any, Any]:
        from dnn.runtime import fit

        return fit._one_epoch(self.engine, st, epoch, self.x, self.y, self.display)


# ------------------------------------------------------------------ in-process measurements


@dataclass
class Stats:
    label: str
    init_s: list[float] = field(default_factory=list)
    first_extra_s: list[float] = field(default_factory=list)
    samples_per_s: list[float] = field(default_factory=list)
    note: str = ""


def one_repeat(sides: list[Side], stats: list[Stats], epochs: int, flip: bool) -> None:
    """Fresh jits, init and a first epoch per side, then `epochs` steady epochs interleaved
    side by side (a burst of load on this shared machine hits every side alike)."""
    order = list(range(len(sides)))[:: -1 if flip else 1]
    states, first = {}, {}
    for i in order:
        sides[i].build()
        t_init, st = timed(sides[i].init)
        first[i], (states[i], _) = timed(lambda i=i, st=st: sides[i].epoch(st, 1))
        stats[i].init_s.append(t_init)
    times: dict[int, list[float]] = {i: [] for i in order}
    for e in range(2, epochs + 2):
        for i in order if e % 2 == 0 else order[::-1]:
            t, (states[i], _) = timed(lambda i=i, e=e: sides[i].epoch(states[i], e))
            times[i].append(t)
    for i in order:
        stats[i].first_extra_s.append(first[i] - median(times[i]))
        stats[i].samples_per_s.extend(sides[i].samples / t for t in times[i])


def in_process(name: str, loops: list[str], repeats: int, epochs: int) -> list[Stats]:
    sides: list[Side] = [Handwritten(name)]
    for loop in loops:
        d = Dnn(name, loop)
        d.build()
        if loop != "auto" and not _differs(d, sides):
            continue  # `auto` already chose this loop
        sides.append(d)
    stats = [Stats(s.label) for s in sides]
    for r in range(repeats):
        one_repeat(sides, stats, epochs, flip=r % 2 == 1)
        print(f"  {name} repeat {r + 1}", file=sys.stderr, flush=True)
    for s, side in zip(stats, sides, strict=True):
        if isinstance(side, Dnn):
            s.note = "scanned epoch" if side.scanned else "per-step loop"
        else:
            s.note = "per-step loop"
    return stats


def _differs(d: Dnn, sides: list[Side]) -> bool:
    autos = [s for s in sides if isinstance(s, Dnn) and s.label == "dnn"]
    return not autos or autos[0].scanned != d.scanned


# ------------------------------------------------------------------ whole processes


@dataclass
class Proc:
    label: str
    wall_s: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)


def processes(name: str, repeats: int) -> list[Proc]:
    """`dnn train` vs the hand-written script, one epoch each, cold and warm XLA cache."""
    tmp = Path(tempfile.mkdtemp(prefix="dnn-bench-"))
    spec = str(SPECS / f"{name}.dnn")
    hand = [sys.executable, str(BENCH / "handwritten.py"), name, "--epochs", "1"]
    cmds: dict[str, Callable[[int], tuple[list[str], dict[str, str]]]] = {
        "hand-written, cold": lambda r: (hand, {}),
        "dnn train, cold": lambda r: (_dnn_cmd(spec, tmp / f"cold{r}"), {"DNN_CACHE_DIR": "off"}),
        "hand-written, warm cache": lambda r: (
            [*hand, "--cache", str(tmp / "xla-hand")],
            {},
        ),
        "dnn train, warm cache": lambda r: (
            _dnn_cmd(spec, tmp / f"warm{r}"),
            {"DNN_CACHE_DIR": str(tmp / "xla-dnn")},
        ),
    }
    for label in ("hand-written, warm cache", "dnn train, warm cache"):
        cmd, env = cmds[label](-1)  # fills the cache
        run_child(cmd, env)
    out = {label: Proc(label) for label in cmds}
    for r in range(repeats):
        labels = list(cmds) if r % 2 == 0 else list(reversed(cmds))
        for label in labels:
            cmd, env = cmds[label](r)
            child = run_child(cmd, env)
            out[label].wall_s.append(child.wall_s)
            out[label].peak_mb.append(child.peak_rss_mb)
        print(f"  {name} processes: repeat {r + 1}", file=sys.stderr, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return list(out.values())


def _dnn_cmd(spec: str, out: Path) -> list[str]:
    return [DNN, "train", spec, "--epochs", "1", "--out", str(out), "--quiet"]


# ------------------------------------------------------------------ report


def table(name: str, stats: list[Stats], procs: list[Proc]) -> str:
    ref = stats[0]
    rows = [
        f"### {name}",
        "",
        "| side | loop | init (s) | first-epoch extra (s) | steady samples/s | ratio to (b) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in stats:
        ratio = median(s.samples_per_s) / median(ref.samples_per_s)
        rows.append(
            f"| {s.label} | {s.note} | {median(s.init_s):.2f} | {median(s.first_extra_s):.2f} "
            f"| {median(s.samples_per_s):,.0f} | {ratio:.2f}x |"
        )
    if procs:
        rows += [
            "",
            "| process (1 epoch) | wall (s) | ratio | peak RSS (MB) | ratio |",
            "|---|---:|---:|---:|---:|",
        ]
        base = {p.label.split(", ")[1]: p for p in procs if p.label.startswith("hand")}
        for p in procs:
            b = base[p.label.split(", ")[1]]
            rows.append(
                f"| {p.label} | {median(p.wall_s):.2f} | {median(p.wall_s) / median(b.wall_s):.2f}x "
                f"| {median(p.peak_mb):.0f} | {median(p.peak_mb) / median(b.peak_mb):.2f}x |"
            )
    return "\n".join(rows)


def as_json(name: str, stats: list[Stats], procs: list[Proc]) -> dict[str, Any]:
    return {
        "model": name,
        "in_process": [s.__dict__ for s in stats],
        "processes": [p.__dict__ for p in procs],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the MLP only, in-process, < 60 s")
    ap.add_argument("--models", default="mlp,cnn28,resnet")
    ap.add_argument("--loops", default="auto,steps", help="dnn variants (train.loop)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--process-repeats", type=int, default=5)
    ap.add_argument("--no-processes", action="store_true")
    ap.add_argument("--json", type=Path, help="write every measurement here")
    args = ap.parse_args()
    models = ["mlp"] if args.quick else args.models.split(",")
    repeats = 3 if args.quick else args.repeats
    loops = args.loops.split(",") if epoch_loop_overrides("steps") else ["auto"]  # no choice
    if args.quick:
        loops = ["auto"]  # what `dnn train` runs; keeps --quick under a minute on a busy machine
    make_digits28()
    print(f"jax {jax.__version__} on {jax.default_backend()}", file=sys.stderr)
    results = []
    for name in models:
        epochs = 10 if args.quick else EPOCHS[name]
        stats = in_process(name, loops, repeats, epochs)
        procs = [] if args.quick or args.no_processes else processes(name, args.process_repeats)
        print(table(name, stats, procs) + "\n", flush=True)
        results.append(as_json(name, stats, procs))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    first = results[0]["in_process"]
    dnn_sps, hand_sps = median(first[1]["samples_per_s"]), median(first[0]["samples_per_s"])
    print_json_last(
        {
            "model": models[0],
            "dnn_samples_per_s": round(dnn_sps, 1),
            "handwritten_samples_per_s": round(hand_sps, 1),
            "ratio": round(dnn_sps / hand_sps, 3),
        }
    )


if __name__ == "__main__":
    main()
