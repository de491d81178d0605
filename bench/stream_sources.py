"""Streamed sources alone (runtime/data/sources.py, fitted.py): image throughput through Grain,
and the peak memory of a streamed statistics pass over a CSV far larger than a memory limit.

    python bench/stream_sources.py images [--dir DIR] [--n 20000]
    python bench/stream_sources.py csv [--dir DIR] [--gb 1.0] [--limit-mb 100]
    python bench/stream_sources.py table [--dir DIR] [--gb 0.5] [--limit-mb 400]

`images`: a folder of N generated 64x64 RGB PNGs (10 classes), opened as `images(...)`
Examples and read through Grain (`MapDataset.source(...).batch(256)`, then `mp_prefetch` with 0,
2 and 4 worker processes): decoded samples per second, one full pass each, after a warm-up
batch. `csv`: a numeric CSV of `--gb` GB (128 features and a label), then two child processes,
each printing its own peak RSS (`ru_maxrss`): one builds the offset index (one pass), one runs
`fit_streamed(standardize)` over every row. The claim is that both stay under `--limit-mb`
while the file is ten times that. `table`: a typed CSV of `--gb` GB (8 number columns with
gaps, a category of 40 values, a binary column with gaps, a text column of 6 words from 2,000),
then one child process preparing it streamed (`pipeline.prepare` with `stream = true`: the
index pass, the first fitting pass over the train rows in file order, the second for the
vocabularies and statistics) and reading 200 train batches of 1,024 encoded rows, printing its
peak RSS, the seconds of each phase and the encoded rows per second; and, for scale, a child
reading a 1/20 slice of the file in memory (`stream = false`). docs/streaming.md quotes the
output.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FEATURES = 128


def _where():
    from dnn.compiler.diagnostics import Span
    from dnn.runtime.data.table import _Where

    span = Span("bench", 1, 1, 1, 1)
    return _Where(span, {}, span)


def _ref(text: str):
    from dnn.compiler.driver import value

    return value(text, "dataset")[0]


# ----------------------------------------------------------------------------- images


def make_images(root: Path, n: int) -> None:
    """N 64x64 RGB PNGs in 10 class folders: a smooth gradient plus noise (PNG-compressible)."""
    from PIL import Image

    if (root / "done").is_file():
        return
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(n):
        k = i % 10
        (root / f"c{k}").mkdir(parents=True, exist_ok=True)
        base = np.stack([xx * 4, yy * 4, (xx + yy) * 2], axis=-1) + 20 * k
        pixels = (base + rng.integers(0, 32, (64, 64, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"c{k}" / f"{i}.png")
    (root / "done").write_text(str(n))


def image_rates(root: Path) -> None:
    import grain
    from absl import flags
    from dnn.runtime.data import sources

    flags.FLAGS.mark_as_parsed()
    start = time.perf_counter()
    examples = sources.open_examples(
        _ref(f'images("{root}")'), "classification", Path("."), _where(), "fail"
    )
    opened = time.perf_counter() - start
    print(f"images: {len(examples)} files of {examples.shape}, opened in {opened:.2f} s")
    for workers in (0, 2, 4):
        ds = grain.MapDataset.source(examples).batch(256)
        it = iter(ds) if workers == 0 else iter(_prefetched(ds, workers))
        n = len(next(it)[1])  # warm-up: workers started, files opened
        start = time.perf_counter()
        for batch in it:
            n += len(batch[1])
        rate = (n - 256) / (time.perf_counter() - start)
        print(f"  grain, {workers} worker processes: {rate:8,.0f} samples/s", flush=True)


def _prefetched(ds, workers: int):
    import grain

    options = grain.multiprocessing.MultiprocessingOptions(num_workers=workers)
    return ds.to_iter_dataset().mp_prefetch(options)


# ----------------------------------------------------------------------------- CSV

_CHILD = """
import resource, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, {bench!r})
from stream_sources import _ref, _where
from dnn.runtime.data import sources, fitted
print("baseline_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # imports alone
start = time.perf_counter()
ex = sources.open_examples(_ref('csv("{path}")'), "classification", Path("."), _where(), "fail")
if {fit}:
    from dnn.compiler.driver import value
    got = fitted.fit_streamed(value("standardize", "normalizer")[0], ex, np.arange(len(ex)))
    print("rows", len(ex), "mean[0]", got.stats["mean"][0])
print("seconds", time.perf_counter() - start)
print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def make_csv(path: Path, gb: float) -> None:
    """A numeric CSV of about `gb` GB: 128 features ("%.4f") and an integer label."""
    if path.is_file() and path.stat().st_size >= gb * 1e9 * 0.99:
        return
    rng = np.random.default_rng(0)
    header = ",".join([f"f{i}" for i in range(FEATURES)] + ["label"]) + "\n"
    with open(path, "w") as f:
        f.write(header)
        written = len(header)
        while written < gb * 1e9:
            block = rng.normal(size=(2000, FEATURES)) * 3 + 1
            labels = rng.integers(0, 10, 2000)
            lines = "".join(
                ",".join(f"{v:.4f}" for v in row) + f",{k}\n"
                for row, k in zip(block, labels, strict=True)
            )
            f.write(lines)
            written += len(lines)


def csv_memory(folder: Path, gb: float, limit_mb: float) -> None:
    path = folder / "big.csv"
    make_csv(path, gb)
    index = path.with_name(f".{path.name}.dnn-index")
    index.unlink(missing_ok=True)
    size = path.stat().st_size / 1e6
    print(f"csv: {size:,.0f} MB, limit {limit_mb:.0f} MB ({size / limit_mb:.1f}x)")
    for what, fit in (("index pass", False), ("statistics pass", True)):
        code = _CHILD.format(bench=str(Path(__file__).parent), path=path, fit=fit)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if done.returncode:
            print(done.stderr)
            raise SystemExit(1)
        out = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
        peak = int(out["maxrss_kb"]) / 1024
        verdict = "within" if peak < limit_mb else "OVER"
        base = int(out["baseline_kb"]) / 1024
        extra = f", rows {out['rows'].split()[0]}" if "rows" in out else ""
        print(
            f"  {what}: peak RSS {peak:6.1f} MB ({verdict} the limit; {base:.1f} MB after imports), "
            f"{float(out['seconds']):6.1f} s{extra}",
            flush=True,
        )
    print(f"  index file: {index.stat().st_size / 1e6:.1f} MB")


_TABLE_SPEC = """dnn 1
model m {
  input notes: i32[8]
  input kind: i32[1]
  input x: f32[18]
  e = embedding(2002, 4)(notes) -> flatten
  k = embedding(42, 2)(kind) -> flatten
  output dense(2)(concat(e, k, x))
}
data {
  source = csv("PATH", label = "label")
  columns = { notes: text(length = 8, max_words = 2000), kind: category }
  normalize = standardize
  stream = STREAM
}
train {
  loss = cross_entropy
  batch_size = 1024
  epochs = 1
  optimizer = adam(lr = 0.001)
}
"""

_TABLE_CHILD = """
import resource, sys, time
sys.path.insert(0, {bench!r})
from pathlib import Path
import numpy as np
import dnn
from dnn.runtime import pipeline
print("baseline_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
start = time.perf_counter()
prepared = pipeline.prepare(dnn.load({spec!r}))
print("prepare_s", time.perf_counter() - start)
print("rows", prepared.size("train"))
if prepared.streamed:
    train = prepared.streamed["train"]
    start, n = time.perf_counter(), 0
    it = train.epoch(np.arange(min(train.n, 200 * 1024)), 1024, workers=False)
    for x, y, _ in it:
        n += len(y)
    print("encoded_rows_per_s", n / (time.perf_counter() - start))
print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def make_table(path: Path, gb: float) -> None:
    """A typed CSV of about `gb` GB (see the module doc), label 0/1 from the first number."""
    if path.is_file() and path.stat().st_size >= gb * 1e9 * 0.99:
        return
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(2000)]
    kinds = [f"k{i}" for i in range(40)]
    header = ",".join([f"f{i}" for i in range(8)] + ["kind", "flag", "notes", "label"]) + "\n"
    with open(path, "w") as f:
        f.write(header)
        written = len(header)
        while written < gb * 1e9:
            block = rng.normal(size=(2000, 8))
            gaps = rng.random((2000, 8)) < 0.02
            lines = []
            for r in range(2000):
                nums = ",".join("NA" if gaps[r, c] else f"{block[r, c]:.4f}" for c in range(8))
                flag = ("yes", "no", "")[int(rng.integers(0, 3))]
                notes = " ".join(words[int(w)] for w in rng.zipf(1.3, 6) % 2000)
                kind = kinds[int(rng.integers(0, 40))]
                lines.append(f"{nums},{kind},{flag},{notes},{int(block[r, 0] > 0)}\n")
            text = "".join(lines)
            f.write(text)
            written += len(text)


def _child(code: str) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        print(done.stderr)
        raise SystemExit(1)
    return dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())


def table_memory(folder: Path, gb: float, limit_mb: float) -> None:
    path = folder / "table.csv"
    make_table(path, gb)
    path.with_name(f".{path.name}.dnn-index").unlink(missing_ok=True)
    size = path.stat().st_size / 1e6
    print(f"typed csv: {size:,.0f} MB, limit {limit_mb:.0f} MB ({size / limit_mb:.1f}x)")
    part, written = folder / "table_part.csv", 0
    with open(path, "rb") as src, open(part, "wb") as dst:  # the first 1/20 of the bytes
        for line in src:
            if written * 20 > size * 1e6:
                break
            written += dst.write(line)
    for what, csv, stream in (("streamed", path, "true"), ("in memory, 1/20", part, "false")):
        spec = folder / f"table_{stream}.dnn"
        spec.write_text(_TABLE_SPEC.replace("PATH", str(csv)).replace("STREAM", stream))
        out = _child(_TABLE_CHILD.format(bench=str(Path(__file__).parent), spec=str(spec)))
        peak, base = int(out["maxrss_kb"]) / 1024, int(out["baseline_kb"]) / 1024
        mb = csv.stat().st_size / 1e6
        rate = out.get("encoded_rows_per_s")
        print(
            f"  {what}: {mb:,.0f} MB, {int(out['rows']):,} train rows: peak RSS {peak:6.1f} MB "
            f"({'within' if peak < limit_mb else 'OVER'} the limit; {base:.1f} MB after "
            f"imports), prepared in {float(out['prepare_s']):.1f} s"
            + (f", {float(rate):,.0f} encoded rows/s read" if rate else ""),
            flush=True,
        )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("images", "csv", "table"))
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "dnn-stream-bench"))
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--gb", type=float, default=1.0)
    p.add_argument("--limit-mb", type=float, default=100.0)
    args = p.parse_args()
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, {sys.platform}")
    if args.what == "images":
        start = time.perf_counter()
        make_images(folder / "images", args.n)
        print(f"images written in {time.perf_counter() - start:.0f} s")
        image_rates(folder / "images")
    elif args.what == "table":
        table_memory(folder, args.gb, args.limit_mb)
    else:
        csv_memory(folder, args.gb, args.limit_mb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
