"""Trials as one program (issue 18, point 3): K = 8 learning rates of the digits MLP trained as
one vmapped program (`dnn sweep --vmap 8`) against 8 sequential `dnn train` processes, and
each trial's metrics against its run alone.

    python bench/sweep_vmap.py [--out bench/out/sweep_vmap] [--runs N] [--also-sequential-sweep]

Each side starts from an empty XLA cache of its own (DNN_CACHE_DIR), as a first sweep would;
the 8 `dnn train` processes share theirs, so processes 2-8 skip compiling. With `--runs N`
the two sides alternate N times (fresh folders and caches each time) and the medians are
printed with each run; the load average before each side says how busy the machine was.
Prints both wall and CPU times, the ratios, and the largest difference between a trial's
per-epoch and final metrics in the group and in its run alone (of the last run).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DNN = str(Path(sys.executable).parent / "dnn")
RATES = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2)
SWEEP = """
sweep {{
  method = grid
  train.optimizer.lr = choice({rates})
  objective = minimize(val_loss)
}}
"""
KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")


def run(cmd: list[str], cache: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the process and its threads)."""
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, "DNN_CACHE_DIR": str(cache)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def history(run_dir: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]


def largest_difference(group: Path, alone: Path) -> tuple[float, bool]:
    """The largest |group - alone| over per-epoch and final metrics; whether epochs agree."""
    a, b = history(group), history(alone)
    worst = 0.0
    for x, y in zip(a, b, strict=False):
        worst = max(worst, *(abs(x[k] - y[k]) for k in KEYS))
    ra = json.loads((group / "result.json").read_text())
    rb = json.loads((alone / "result.json").read_text())
    for split in ("train", "val", "test"):
        worst = max(worst, *(abs(ra[split][k] - rb[split][k]) for k in ra[split]))
    return worst, len(a) == len(b) and ra["best_epoch"] == rb["best_epoch"]


def one_run(spec: Path, out: Path, sequential: bool) -> dict[str, tuple[float, float, float]]:
    """Each side's (wall, CPU, load average before it) in fresh folders and XLA caches."""
    for name in ("vmapped", "alone", "sequential", "cache-vmap", "cache-alone", "cache-sweep"):
        shutil.rmtree(out / name, ignore_errors=True)
    times = {}
    load = os.getloadavg()[0]
    times["vmap"] = (
        *run(
            [DNN, "sweep", str(spec), "--out", str(out / "vmapped"), "--vmap", str(len(RATES))],
            out / "cache-vmap",
        ),
        load,
    )
    load, wall, cpu = os.getloadavg()[0], 0.0, 0.0
    for r in RATES:
        cmd = [DNN, "train", str(spec), "--set", f"train.optimizer.lr={r:g}", "--quiet"]
        w, c = run([*cmd, "--out", str(out / "alone" / f"{r:g}")], out / "cache-alone")
        wall, cpu = wall + w, cpu + c
    times["alone"] = (wall, cpu, load)
    if sequential:
        load = os.getloadavg()[0]
        times["sweep"] = (
            *run([DNN, "sweep", str(spec), "--out", str(out / "sequential")], out / "cache-sweep"),
            load,
        )
    return times


NAMES = {
    "alone": "8 sequential `dnn train` processes",
    "sweep": "`dnn sweep` (one trial at a time)",
    "vmap": "`dnn sweep --vmap 8` (one program)",
}


def show(times: dict[str, tuple[float, float, float]], title: str) -> None:
    print(f"\n{title}:")
    print(f"  {'':38} {'wall':>7}   {'CPU':>7}   load before")
    for key, name in NAMES.items():
        if key in times:
            wall, cpu, load = times[key]
            print(f"  {name:<38} {wall:7.1f} s {cpu:7.1f} s   {load:5.2f}")
    ratio = [times["alone"][i] / times["vmap"][i] for i in (0, 1)]
    print(f"  {'speed-up over the processes':<38} {ratio[0]:7.2f}x  {ratio[1]:7.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "sweep_vmap"))
    ap.add_argument("--runs", type=int, default=1, help="alternate the two sides N times")
    ap.add_argument(
        "--also-sequential-sweep",
        action="store_true",
        help="also time `dnn sweep` without --vmap (one process, one trial at a time)",
    )
    a = ap.parse_args()
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    spec = out / "digits_mlp_lr.dnn"
    text = (ROOT / "examples" / "digits_mlp.dnn").read_text()
    spec.write_text(text + SWEEP.format(rates=", ".join(f"{r:g}" for r in RATES)))
    runs = [one_run(spec, out, a.also_sequential_sweep) for _ in range(a.runs)]
    print(f"\ndigits MLP, {len(RATES)} learning rates, early stopping as in the spec")
    for i, times in enumerate(runs):
        show(times, f"run {i + 1} of {len(runs)}")
    if len(runs) > 1:
        medians = {
            key: tuple(statistics.median(t[key][i] for t in runs) for i in range(3))
            for key in runs[0]
        }
        show(medians, f"medians of {len(runs)} runs (ratios of the medians)")  # type: ignore[arg-type]
    with (out / "vmapped" / "results.csv").open() as f:  # the last run's trials
        rows = list(csv.DictReader(f))
    print("\n  lr        epochs  val_acc   largest |group - alone|  same epochs")
    for row in sorted(rows, key=lambda r: float(r["train.optimizer.lr"])):
        lr = float(row["train.optimizer.lr"])
        diff, same = largest_difference(Path(row["run"]), out / "alone" / f"{lr:g}")
        result = json.loads((Path(row["run"]) / "result.json").read_text())
        print(
            f"  {lr:<9g} {row['epochs']:>6}  {result['val']['accuracy']:.4f}   "
            f"{diff:.2e}                 {same}"
        )


if __name__ == "__main__":
    main()
