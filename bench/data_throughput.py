"""Throughput of the data pipeline alone, as `dnn data` measures it, for a few examples.

    python bench/data_throughput.py [NAME ...]

One line per example: the examples per second from files to prepared arrays (source, split,
fit, encode or normalize; the fastest of three) and of the train split sliced into batches and
augmented on the device (the fastest of three epochs, compile excluded). docs/data.md quotes it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dnn.runtime.data_report import report

import dnn

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ("digits_mlp", "digits_cnn", "sequence_lstm", "tokens_embedding", "penguins_tabular")


def main(names: list[str]) -> int:
    for name in names or DEFAULT:
        r = report(dnn.load(str(ROOT / "examples" / f"{name}.dnn")))
        total = sum(r.splits.values())
        print(
            f"{name:20s} {total:6,d} examples  prepare {r.throughput['prepare']:10,.0f}/s  "
            f"batches {r.throughput['batches']:12,.0f}/s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
