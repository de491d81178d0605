"""Shared pieces of the training benchmarks: data, clocks, child processes, the machine.

Imported by `bench/overhead.py`, `bench/phases.py`, `bench/ops.py` and the hand-written
reference `bench/handwritten.py`, so it imports nothing heavy at module level (the hand-written
script's start-up time is one of the things measured). `python bench/common.py` writes the
synthetic 28x28 data set and prints the machine.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
SPECS = BENCH / "specs"
DIGITS28 = SPECS / "data" / "digits28.npz"
DIGITS28_N = 5000  # MNIST-sized images, as many as issue 7's "MNIST-5k"


# ------------------------------------------------------------------ data


def make_digits28(path: Path = DIGITS28, n: int = DIGITS28_N, seed: int = 0) -> Path:
    """5,000 synthetic MNIST-sized digits: scikit-learn's 8x8 digits upsampled to 28x28.

    Each example is a random one of the 1,797 digits, zoomed to 28x28 (bilinear), shifted by up
    to 2 pixels each way, scaled to [0, 1] and noised (N(0, 0.1)); its label is the digit's. The
    rule is learnable (a CNN passes 90% test accuracy in a few epochs) and nothing is downloaded.
    Written once; the same seed gives the same file.
    """
    if path.exists():
        return path
    import numpy as np
    from scipy import ndimage
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(digits.target), n)
    big = ndimage.zoom(digits.images[pick] / 16.0, (1, 3.5, 3.5), order=1)  # (n, 28, 28)
    shifts = rng.integers(-2, 3, size=(n, 2))
    x = np.stack([np.roll(img, tuple(s), axis=(0, 1)) for img, s in zip(big, shifts, strict=True)])
    x = x + rng.normal(0.0, 0.1, x.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x[..., None].astype(np.float32), y=digits.target[pick].astype(np.int64))
    return path


# ------------------------------------------------------------------ dnn's engine


def dnn_engine(model: str, overrides: Sequence[str] = ()) -> tuple[Any, Any, Any, Any]:
    """The engine `dnn train` builds for bench/specs/MODEL.dnn, and its train split on the
    device: (program, engine, x, y). Fresh jitted functions each call."""
    import inspect

    from dnn.runtime import pipeline
    from dnn.runtime.train import Engine, device_data

    import dnn

    program = dnn.load(str(SPECS / f"{model}.dnn"), list(overrides))
    prepared = pipeline.prepare(program)
    engine = Engine(program, prepared, 1)
    placed = len(inspect.signature(device_data).parameters) > 1  # the engine's placement
    data = device_data(prepared, engine.place) if placed else device_data(prepared)
    x, y = data["train"]
    return program, engine, x, y


def epoch_loop_overrides(loop: str) -> list[str]:
    """The override that makes dnn run epochs as `loop` (`scan`, `steps`): `train.loop=...`
    (named `epoch_loop` in an earlier draft), or nothing where the language has no such field."""
    from dnn.compiler.registry.sections import SECTIONS

    entry = SECTIONS.lookup("train")
    for name in ("loop", "epoch_loop"):
        if entry is not None and entry.get_arg(name) is not None:
            return [f"train.{name}={loop}"] if loop != "auto" else []
    return []


# ------------------------------------------------------------------ clocks and statistics


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def spread(xs: Sequence[float]) -> str:
    """`median [min–max]` for a table cell."""
    if not xs:
        return "–"
    return f"{median(xs):.3g} [{min(xs):.3g}–{max(xs):.3g}]"


def timed(f: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds `f()` took, with every JAX array it returns ready."""
    import jax

    t = time.perf_counter()
    out = jax.block_until_ready(f())
    return time.perf_counter() - t, out


@dataclass(frozen=True)
class Child:
    """One finished child process: wall time, peak resident memory, what it printed."""

    wall_s: float
    peak_rss_mb: float
    stdout: str


# Children are started from this small interpreter, not forked from the benchmark itself: on
# Linux a child's ru_maxrss counts the memory of the process it was forked from, so a child of
# a process that already holds JAX and a model would report that process's size.
_TRAMPOLINE = """
import json, os, subprocess, sys, time
t = time.perf_counter()
p = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(p.pid, 0)
wall = time.perf_counter() - t
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as f:
    json.dump({"wall": wall, "maxrss_kb": usage.ru_maxrss, "code": code}, f)
"""


def run_child(cmd: Sequence[str], env: dict[str, str] | None = None) -> Child:
    """Run `cmd` to the end: wall time by `time.perf_counter` from spawn to exit (the same
    clock for every command), peak RSS from the child's own rusage (`wait4`, `ru_maxrss`)."""
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("r") as rec,
    ):
        tramp = [sys.executable, "-c", _TRAMPOLINE, rec.name, *cmd]
        code = subprocess.call(tramp, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        got = json.loads(Path(rec.name).read_text() or "{}")
        out.seek(0)
        err.seek(0)
        if code != 0 or got.get("code") != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{err.read()[-3000:]}")
        return Child(got["wall"], got["maxrss_kb"] / 1024, out.read())


def process_age() -> float:
    """Seconds since this process started (interpreter start-up and imports included), from
    /proc: the kernel's start time of the process, in clock ticks (10 ms), against the uptime."""
    stat = Path("/proc/self/stat").read_text()
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the name
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def listen_compiles() -> tuple[dict[str, float], dict[str, int]]:
    """Seconds and counts of JAX's compile events from now on, by event (filled in place):
    `jaxpr_trace_duration`, `jaxpr_to_mlir_module_duration`, `backend_compile_duration`."""
    import jax

    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}

    def on(event: str, duration: float, **_: Any) -> None:
        short = event.rsplit("/", 1)[-1]
        seconds[short] = seconds.get(short, 0.0) + duration
        counts[short] = counts.get(short, 0) + 1

    jax.monitoring.register_event_duration_secs_listener(on)
    return seconds, counts


# ------------------------------------------------------------------ the machine


def machine() -> dict[str, Any]:
    """What the numbers were measured on: cores, CPU model, library versions, date."""
    from importlib import metadata

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "torch", "keras"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return {
        "date": datetime.date.today().isoformat(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def print_json_last(record: dict[str, Any]) -> None:
    """The last line of a benchmark's output: one JSON object."""
    sys.stdout.flush()
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    print(make_digits28())
    print(json.dumps(machine(), indent=2))
