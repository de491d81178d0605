"""Regression against a linear baseline: the diabetes example beside scikit-learn's Ridge.

    python bench/regression.py [--seeds 0 1 ...] [--set FIELD=VALUE ...]

For each seed s (0 to 9 unless given), the example `examples/diabetes_regression.dnn` is trained with
`data.seed = s` (the split) and `train.seed = s` (init, batches), and Ridge is fitted on the
same train split after the same input normalization, its alpha chosen on the val split from a
log grid. Both are scored by test R^2 in the data's units (the dnn run's metrics invert
`data.targets`). Prints one line per seed, then the medians and the ratio dnn / Ridge.
`--set data.targets=none` measures the example without target scaling.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
from dnn.runtime import pipeline
from dnn.runtime.fit import train

import dnn

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "diabetes_regression.dnn"
ALPHAS = np.logspace(-3, 3, 25)


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """scikit-learn's r2_score for one output, in float64."""
    y, pred = np.asarray(y, np.float64).ravel(), np.asarray(pred, np.float64).ravel()
    return float(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def ridge(program: dnn.Program) -> tuple[float, float]:
    """Test R^2 of Ridge with alpha chosen by val R^2 on the spec's split; (r2, alpha)."""
    from sklearn.linear_model import Ridge

    prepared = pipeline.prepare(program)
    s = {
        k: (t.x, prepared.targets.invert(t.y.astype(np.float64)).ravel())
        for k, t in prepared.splits.items()
    }
    fits = [Ridge(alpha=a).fit(*s["train"]) for a in ALPHAS]
    best = max(fits, key=lambda m: r2(s["val"][1], m.predict(s["val"][0])))
    return r2(s["test"][1], best.predict(s["test"][0])), float(best.alpha)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    args = ap.parse_args()
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            sets = [f"data.seed={seed}", f"train.seed={seed}", *args.overrides]
            program = dnn.load(str(EXAMPLE), overrides=sets)
            result = train(program, Path(tmp) / f"run{seed}", mode="quiet")
            got, (base, alpha) = result["test"]["r2"], ridge(program)
            ours.append(got)
            theirs.append(base)
            print(
                f"seed {seed}: dnn test r2 {got:.4f} ({result['epochs_run']} epochs)   "
                f"ridge test r2 {base:.4f} (alpha {alpha:.3g})",
                flush=True,
            )
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(
        f"median over {len(args.seeds)} seeds: dnn {mo:.4f}   ridge {mt:.4f}   "
        f"ratio {mo / mt:.3f}   (means: dnn {statistics.mean(ours):.4f}, "
        f"ridge {statistics.mean(theirs):.4f})"
    )


if __name__ == "__main__":
    main()
