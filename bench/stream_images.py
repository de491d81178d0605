"""Training streamed from an image folder (issue 19, "Performance"): 20,000 generated 64x64
PNGs in 10 class folders, a small CNN trained with `data.stream = true`, and how long its
steps wait for their batches (the issue's target: under 10% of a step).

    python bench/stream_images.py [--images 20000] [--epochs 3] [--workers auto]
                                  [--out bench/out/stream_images]

The folder is generated once (kept under --out). Each class draws its own colour pattern plus
noise, so the net has something to learn. Three runs, one after the other: without `data.cache`,
with it from an empty cache (the first epoch decodes and stores the pixels), and with it again
(the next run over the same files: no image decoded). Prints for each, per epoch: samples/s and
the share of the epoch spent waiting for data; the median over the epochs after the first
(which compiles and starts the workers), over all epochs; and the run's test accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPEC = """dnn 1
model cnn {{
  input image: f32[64, 64, 3]
  conv2d(16, kernel = 3, stride = 2) -> relu
  conv2d(32, kernel = 3, stride = 2) -> relu
  conv2d(64, kernel = 3, stride = 2) -> relu
  global_avgpool
  dense(10)
}}
data {{
  source = images("{folder}")
  split = {{ train: 0.8, val: 0.1, test: 0.1 }}
  stream = true
  workers = {workers}
  cache = {cache}
}}
train {{
  batch_size = 128
  epochs = {epochs}
  optimizer = adam(lr = 2e-3)
}}
"""


def generate(folder: Path, n: int) -> None:
    """n PNGs of 64x64 RGB, n / 10 per class folder (skipped where the folder is complete)."""
    from PIL import Image

    done = folder / ".complete"
    if done.exists() and int(done.read_text()) == n:
        return
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for c in range(10):
        (folder / f"class_{c}").mkdir(parents=True, exist_ok=True)
        base = rng.uniform(0, 255, size=(8, 8, 3))
        for i in range(n // 10):
            img = np.kron(base, np.ones((8, 8, 1))) + rng.normal(0, 40, size=(64, 64, 3))
            img = np.clip(img, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"class_{c}" / f"{i:05d}.png")
    done.write_text(str(n))
    print(f"generated {n} PNGs in {time.perf_counter() - t0:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", default="auto")
    parser.add_argument(
        "--runs",
        default="none,filled,warm",
        help="which runs: none, filled (an emptied cache), warm",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "stream_images"))
    args = parser.parse_args()
    out = Path(args.out)
    folder = out / "images"
    generate(folder, args.images)
    os.environ.setdefault("DNN_CACHE_DIR", str(out / "xla"))
    from dnn.runtime.data import images
    from dnn.runtime.fit import train

    import dnn

    decoder = "libspng (pyspng)" if getattr(images, "_spng", None) is not None else "Pillow"
    print(f"PNG decoder: {decoder}")
    titles = {"none": "no cache", "filled": "cache, filled", "warm": "cache, warm"}
    for which in args.runs.split(","):
        title, cache = titles[which], "false" if which == "none" else "true"
        if which == "filled":
            shutil.rmtree(folder / ".dnn-cache", ignore_errors=True)
        spec = out / "cnn.dnn"
        spec.write_text(
            SPEC.format(folder=folder, epochs=args.epochs, workers=args.workers, cache=cache)
        )
        run = out / f"run-{time.strftime('%H%M%S')}"
        result = train(dnn.load(str(spec)), run, mode="quiet")
        history = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        print(f"{title}: load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
        for e in history:
            share = e["data_wait_s"] / e["time"]
            print(
                f"  epoch {e['epoch']}: {e['samples_per_s']:,.0f} samples/s, "
                f"waited {e['data_wait_s']:.2f} s of {e['time']:.2f} s ({share:.1%})"
            )
        for what, es in (
            ("after the first epoch", history[1:] or history),
            ("all epochs", history),
        ):
            rate = statistics.median(e["samples_per_s"] for e in es)
            wait = statistics.median(e["data_wait_s"] / e["time"] for e in es)
            print(f"  median, {what}: {rate:,.0f} samples/s, waiting {wait:.1%}")
        print(f"  test accuracy {result['test']['accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
