"""The two-phase fine-tuning example against its alternatives (docs/transfer.md).

    python bench/finetune.py [--seeds N]

Trains examples/digits_encoder.dnn (an autoencoder: the source run) once per seed, then
examples/digits_finetune.dnn four ways on the same split and seed: as written (head alone for
5 epochs, then every layer at lr x 0.1), the encoder frozen throughout (`unfreeze` removed: a
probe of the features), every layer from the start at the full rate (no `freeze`), and from
scratch (no `init_from`). Prints val accuracy after epochs 5 and 20 and the test accuracy of
each, and their medians over the seeds. Not part of the test suite: a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from dnn.runtime.fit import train

import dnn

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "two phases (as written)": [],
    "frozen encoder throughout": ["train.unfreeze=none"],
    "all layers from the start": ["train.unfreeze=none", "train.freeze=[]"],
    "from scratch": ["train.unfreeze=none", "train.freeze=[]", "train.init_from=none"],
}


def val_at(run: Path, epoch: int) -> float:
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["epoch"] == epoch:
            return float(record["val_accuracy"])
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=1)
    seeds = range(parser.parse_args().seeds)
    scores: dict[str, list[tuple[float, float, float]]] = {k: [] for k in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            source = Path(tmp) / f"encoder-{seed}"
            spec = dnn.load(str(ROOT / "examples" / "digits_encoder.dnn"), [f"train.seed={seed}"])
            train(spec, source, mode="quiet")
            for name, sets in VARIANTS.items():
                out = Path(tmp) / f"{len(scores[name])}-{seed}-{abs(hash(name))}"
                start = [] if "train.init_from=none" in sets else [f'train.init_from="{source}"']
                overrides = [f"train.seed={seed}", *start, *sets]
                program = dnn.load(str(ROOT / "examples" / "digits_finetune.dnn"), overrides)
                result = train(program, out, mode="quiet")
                row = (val_at(out, 5), val_at(out, 20), result["test"]["accuracy"])
                scores[name].append(row)
                print(
                    f"seed {seed}  {name:28s} val@5 {row[0]:.4f}  val@20 {row[1]:.4f}  "
                    f"test {row[2]:.4f}",
                    flush=True,
                )
    print("\nmedian over seeds:")
    for name, rows in scores.items():
        med = [statistics.median(r[i] for r in rows) for i in range(3)]
        print(f"  {name:28s} val@5 {med[0]:.4f}  val@20 {med[1]:.4f}  test {med[2]:.4f}")


if __name__ == "__main__":
    main()
