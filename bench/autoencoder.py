"""The digits autoencoder beside PCA with as many components as its code, on the same split.

    python bench/autoencoder.py [--epochs N]

Trains examples/digits_autoencoder.dnn (its 2 x 2 x 8 code holds 32 values) and fits PCA with
32 components on the same train split (scikit-learn, in the data's units: pixels 0..16), then
prints both test reconstruction errors (mse per pixel) and r2. PCA is the best linear
32-value code in mean squared error, so it is the bar a nonlinear autoencoder is read against.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from dnn.runtime import pipeline
from dnn.runtime.fit import train
from sklearn.decomposition import PCA
from sklearn.metrics import r2_score

import dnn

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "digits_autoencoder.dnn"
CODE = 32  # 2 x 2 x 8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    args = ap.parse_args()
    program = dnn.load(str(SPEC), overrides=[f"train.epochs={args.epochs}"] if args.epochs else [])
    prepared = pipeline.prepare(program)
    train_y, test_y = (prepared.targets.invert(prepared.splits[s].y) for s in ("train", "test"))
    pca = PCA(CODE).fit(train_y)
    back = pca.inverse_transform(pca.transform(test_y))
    with tempfile.TemporaryDirectory() as tmp:
        result = train(program, Path(tmp) / "run", mode="quiet")["test"]
    print(f"{'test, pixels 0..16':28s} {'mse':>8s} {'r2':>8s}")
    print(f"{'autoencoder (32-value code)':28s} {result['mse']:8.4f} {result['r2']:8.4f}")
    print(
        f"{'PCA, 32 components':28s} {np.mean((back - test_y) ** 2):8.4f} "
        f"{r2_score(test_y, back):8.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
