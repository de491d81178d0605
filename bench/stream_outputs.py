"""Several outputs, streamed (runtime/data/outputs.py): what opening and reading a source costs
for a model with three outputs, against the same file read for one output.

    python bench/stream_outputs.py [--rows 200000] [--dir DIR]

A CSV of `--rows` rows: 16 inputs, and targets for three outputs (`digit`, class names;
`size_0`/`size_1`, two real values; `flag`, 0/1), the same inputs with `flag` alone as a
CSV for one output, and an npz archive of the same numbers. For each: the time to open it (a
CSV: its offset index built, cold, then found beside the file, warm; with several outputs a
second class label column, `flag`, is counted in a pass of its own, kept beside the file too) and the rows per second
read in batches of 256 by one thread (`_getitems`, as Grain's reading threads call it), for
three outputs and for one (`label = "flag"`, `y = "flag"`).
docs/streaming.md quotes the output.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

OUTPUTS = (("digit", "multiclass", 3), ("size", "regression", 2), ("flag", "binary", 1))


def _where():
    from dnn.compiler.diagnostics import Span
    from dnn.runtime.data.table import _Where

    span = Span("bench", 1, 1, 1, 1)
    return _Where(span, {}, span)


def _ref(text: str):
    from dnn.compiler.driver import value

    return value(text, "dataset")[0]


def make(folder: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 16)).astype(np.float32)
    digit = rng.integers(0, 3, rows)
    size = rng.normal(size=(rows, 2)).astype(np.float32)
    flag = rng.integers(0, 2, rows)
    names = np.array(["high", "low", "mid"])
    header = ",".join([f"x{i}" for i in range(16)] + ["digit", "size_0", "size_1", "flag"])
    one = ",".join([f"x{i}" for i in range(16)] + ["flag"])
    with open(folder / "multi.csv", "w") as f, open(folder / "one.csv", "w") as g:
        f.write(header + "\n")
        g.write(one + "\n")
        for r in range(rows):
            inputs = [f"{v:.5f}" for v in x[r]]
            cells = [*inputs, names[digit[r]], *(f"{v:.5f}" for v in size[r]), str(flag[r])]
            f.write(",".join(cells) + "\n")
            g.write(",".join([*inputs, str(flag[r])]) + "\n")
    np.savez(folder / "multi.npz", x=x, digit=digit, size=size, flag=flag, y=flag)


def _open(source: str, several: bool):
    from dnn.runtime.data import sources

    ref, where = _ref(source), _where()
    if several:
        return sources.open_outputs(ref, OUTPUTS, Path("."), where, "fail")
    return sources.open_examples(ref, "classification", Path("."), where, "fail")


def _rate(examples) -> float:
    start = time.perf_counter()
    for k in range(0, len(examples), 256):
        examples._getitems(range(k, min(k + 256, len(examples))))
    return len(examples) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="dnn-outputs-"))
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "multi.csv").exists():
        make(folder, args.rows)
    for several in (True, False):
        what = "3 outputs" if several else "1 output "
        name = "multi.csv" if several else "one.csv"
        csv = f'csv("{folder}/{name}", label = "flag")'
        for kept in (f".{name}.dnn-index", f".{name}.dnn-labels"):  # opened cold
            (folder / kept).unlink(missing_ok=True)
        start = time.perf_counter()
        _open(csv, several)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        examples = _open(csv, several)
        warm = time.perf_counter() - start
        print(
            f"csv {what}: {len(examples)} rows, opened in {cold:.2f} s cold, {warm:.3f} s "
            f"warm; {_rate(examples):,.0f} rows/s"
        )
        npz = _open(f'npz("{folder}/multi.npz", y = "flag")', several)
        print(f"npz {what}: {_rate(npz):,.0f} rows/s")


if __name__ == "__main__":
    main()
