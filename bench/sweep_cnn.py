"""A real-budget search of the digits CNN (issue 18, "done when"): random search with
coarse-to-fine tightening and TPE against the spec's default point, all at the same epochs.

    python bench/sweep_cnn.py [--trials 12] [--rounds 3] [--epochs 10] [--out DIR]

Prints the validation and test accuracy of the default point and of each search's best trial,
each search's wall time, and the commands it ran (for docs/sweep.md).
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
  method = {method}
  train.optimizer.lr = loguniform(3e-4, 1e-2)
  width = choice(16, 32, 64)
  drop = uniform(0.0, 0.5)
  objective = maximize(val_accuracy)
}}
"""


def spec(folder: Path, name: str, method: str, epochs: int) -> Path:
    text = (ROOT / "examples" / "digits_cnn.dnn").read_text()
    text = text.replace("param width = 32", "param width = 32\nparam drop = 0.3", 1)
    assert "dropout(0.3)" in text and "epochs = 40" in text and "40 epochs" in text
    text = text.replace("dropout(0.3)", "dropout(drop)")
    text = text.replace("epochs = 40", f"epochs = {epochs}")
    text = text.replace("decay_steps = 40 epochs", f"decay_steps = {epochs} epochs")
    path = folder / f"digits_cnn_{name}.dnn"
    path.write_text(text + SWEEP.format(method=method))
    return path


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def best(folder: Path) -> tuple[float, float, dict[str, str]]:
    """The best trial's validation and test accuracy, and its row."""
    with (folder / "results.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["state"] == "complete"]
    top = max(rows, key=lambda r: (float(r["objective"]), -int(r["trial"])))
    result = json.loads((Path(top["run"]) / "result.json").read_text())
    return result["val"]["accuracy"], result["test"]["accuracy"], top


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "sweep_cnn"))
    a = ap.parse_args()
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rows = {}
    base = spec(out, "default", f"random(trials = {a.trials})", a.epochs)
    t = run([DNN, "train", str(base), "--out", str(out / "default"), "--quiet"])
    result = json.loads((out / "default" / "result.json").read_text())
    rows["default point"] = (result["val"]["accuracy"], result["test"]["accuracy"], t, "")
    methods = {
        "tightening": f"random(trials = {a.trials}, rounds = {a.rounds})",
        "tpe": f"bayes(trials = {a.trials})",
    }
    for name, method in methods.items():
        path = spec(out, name, method, a.epochs)
        t = run([DNN, "sweep", str(path), "--out", str(out / name)])
        val, test, top = best(out / name)
        shown = ", ".join(
            f"{k}={float(top[k]):.3g}" for k in ("train.optimizer.lr", "width", "drop")
        )
        rows[f"{name}: {method}"] = (val, test, t, shown)
    print(f"\ndigits CNN, {a.epochs} epochs; the best trial by val_accuracy:")
    print(f"  {'':44} {'val acc':>8} {'test acc':>8} {'wall':>8}")
    for name, (val, test, secs, shown) in rows.items():
        print(f"  {name:<44} {val:8.4f} {test:8.4f} {secs:7.0f} s  {shown}")


if __name__ == "__main__":
    main()
