"""Does pretraining help? The digits DBN with and without `pretrain = cd(...)`, side by side.

    python bench/dbn_pretrain.py [--seeds 0 1 ...] [--epochs N ...] [--set FIELD=VALUE ...]

For each seed s (0 to 4 unless given), `examples/digits_dbn.dnn` is trained with
`data.seed = s` (the split) and `train.seed = s` (initialization, batch order, the CD
samples) twice: as written (the rbms pretrained by CD-1, then fine-tuned) and with
`train.pretrain = none` (the same network from its random initialization, Glorot uniform,
fine-tuned the same way). Each fine-tuning budget in `--epochs` is run: `example` is the spec's
own (30 epochs, early stopping on val_loss, best weights restored); a number n trains n epochs
without early stopping. Prints one line per seed and budget, then the medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from dnn.runtime.fit import train

import dnn

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits_dbn.dnn"


def run(seed: int, budget: str, pretrained: bool, extra: list[str], out: Path) -> dict:
    sets = [f"data.seed={seed}", f"train.seed={seed}", *extra]
    if not pretrained:
        sets.append("train.pretrain=none")
    if budget != "example":
        sets += [f"train.epochs={budget}", "train.early_stopping=none"]
    t0 = time.perf_counter()
    result = train(dnn.load(str(EXAMPLE), overrides=sets), out, mode="quiet")
    return {
        "accuracy": result["test"]["accuracy"],
        "loss": result["test"]["loss"],
        "epochs": result["epochs_run"],
        "wall": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(5)))
    ap.add_argument("--epochs", nargs="+", default=["example", "2"])
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args()
    rows: dict[tuple[str, bool], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for budget in args.epochs:
            for seed in args.seeds:
                line = []
                for pretrained in (True, False):
                    name = f"{budget}-{seed}-{'cd' if pretrained else 'random'}"
                    r = run(seed, budget, pretrained, args.sets, Path(tmp) / name)
                    rows.setdefault((budget, pretrained), []).append(r)
                    line.append(
                        f"{'pretrained' if pretrained else 'random init'}: acc {r['accuracy']:.4f} "
                        f"loss {r['loss']:.4f} ({r['epochs']} epochs, {r['wall']:.0f} s)"
                    )
                print(f"budget {budget:7s} seed {seed}  " + "  |  ".join(line), flush=True)
    print("\nmedians over seeds " + " ".join(map(str, args.seeds)))
    print("| fine-tuning | init | test accuracy | test loss | epochs run | wall s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (budget, pretrained), rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        what = "the example's (early stopping)" if budget == "example" else f"{budget} epochs"
        init = "pretrained (cd)" if pretrained else "random (glorot_uniform)"
        print(
            f"| {what} | {init} | {med['accuracy']:.4f} | {med['loss']:.4f} | "
            f"{med['epochs']:g} | {med['wall']:.1f} |"
        )


if __name__ == "__main__":
    main()
