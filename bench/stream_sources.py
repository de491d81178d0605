"""Streamed sources alone (runtime/data/sources.py, fitted.py): image throughput through Grain,
and the peak memory of a streamed statistics pass over a CSV far larger than a memory limit.

    python bench/stream_sources.py images [--dir DIR] [--n 20000]
    python bench/stream_sources.py csv [--dir DIR] [--gb 1.0] [--limit-mb 100]

`images`: a folder of N generated 64x64 RGB PNGs (10 classes), opened as `images(...)`
Examples and read through Grain (`MapDataset.source(...).batch(256)`, then `mp_prefetch` with 0,
2 and 4 worker processes): decoded samples per second, one full pass each, after a warm-up
batch. `csv`: a numeric CSV of `--gb` GB (128 features and a label), then two child processes,
each printing its own peak RSS (`ru_maxrss`): one builds the offset index (one pass), one runs
`fit_streamed(standardize)` over every row. The claim is that both stay under `--limit-mb`
while the file is ten times that. docs/data.md quotes the output.
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


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("images", "csv"))
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
    else:
        csv_memory(folder, args.gb, args.limit_mb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
