"""A real-budget `dnn sweep` (issue 18): random search and TPE over the digits MLP's rate,
dropout and width, against the spec's own (default) point trained for the same epochs.

    python bench/sweep_digits.py [--trials 12] [--epochs 10] [--out bench/out/sweep_digits]

Prints the default point's validation accuracy, each search's best and its wall time, and the
commands it ran (for docs). Each search is one `dnn sweep` process; the default point is one
`dnn train` process.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DNN = str(Path(sys.executable).parent / "dnn")
SWEEP = """
sweep {{
  method = {method}(trials = {trials})
  train.optimizer.lr = loguniform(1e-4, 3e-2)
  width = choice(64, 128, 256)
  drop = uniform(0.0, 0.5)
  objective = maximize(val_accuracy)
}}
"""


def spec(folder: Path, method: str, trials: int, epochs: int) -> Path:
    text = (ROOT / "examples" / "digits_mlp.dnn").read_text()
    text = text.replace("dnn 1\n", "dnn 1\n\nparam width = 256\nparam drop = 0.2\n", 1)
    text = text.replace("dense(256) -> relu", "dense(width) -> relu")
    text = text.replace("dropout(0.2)", "dropout(drop)")
    text = text.replace("epochs = 40", f"epochs = {epochs}")
    path = folder / f"digits_mlp_{method}.dnn"
    path.write_text(text + SWEEP.format(method=method, trials=trials))
    return path


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def best(folder: Path) -> float:
    with (folder / "results.csv").open() as f:
        return max(float(r["objective"]) for r in csv.DictReader(f) if r["state"] == "complete")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "sweep_digits"))
    a = ap.parse_args()
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rows = {}
    base = spec(out, "random", a.trials, a.epochs)
    t = run([DNN, "train", str(base), "--out", str(out / "default"), "--quiet"])
    result = json.loads((out / "default" / "result.json").read_text())
    rows["default point"] = (result["val"]["accuracy"], t)
    for method in ("random", "bayes"):
        path = spec(out, method, a.trials, a.epochs)
        t = run([DNN, "sweep", str(path), "--out", str(out / method)])
        rows[f"{method} ({a.trials} trials)"] = (best(out / method), t)
    print(f"\ndigits MLP, {a.epochs} epochs, val_accuracy (best of the search):")
    for name, (acc, secs) in rows.items():
        print(f"  {name:<22} {acc:.4f}   {secs:6.1f} s")


if __name__ == "__main__":
    main()
