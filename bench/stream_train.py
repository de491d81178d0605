"""Streamed vs in-memory training, side by side in one process (issue 19, "Performance").

    python bench/stream_train.py [--example digits_cnn] [--repeats 3] [--epochs 8]
                                 [--out bench/out/stream_train]

The digits CNN (examples/digits_cnn.dnn, or another example with `--example`, e.g.
digits_mlp, whose epochs are milliseconds) trained with `data.stream = false` and `true`,
alternately, `--repeats` times each. Reports the median training samples/s and epoch time
(training and evaluating the val split) over every epoch after the first (which compiles) of
every repeat, their ratio (the issue's target: streamed >= 0.9x in memory), the share of the
epoch the steps waited for their batches (target: under 10%), and checks that both modes
trained the same history.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def spec_text(example: str, stream: bool, epochs: int) -> str:
    text = (ROOT / "examples" / f"{example}.dnn").read_text()
    text = text.replace("data {\n", f"data {{\n  stream = {str(stream).lower()}\n", 1)
    return re.sub(r"\n  epochs = \d+\n", f"\n  epochs = {epochs}\n", text)


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--example", default="digits_cnn")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "stream_train"))
    args = parser.parse_args()
    os.environ.setdefault("DNN_CACHE_DIR", str(Path(args.out) / "xla"))
    from dnn.runtime.fit import train

    import dnn

    out = Path(args.out)
    speeds: dict[str, list[float]] = {"memory": [], "streamed": []}
    times: dict[str, list[float]] = {"memory": [], "streamed": []}
    waits: list[float] = []
    histories: dict[str, list[dict]] = {}
    for r in range(args.repeats):
        for mode in ("memory", "streamed"):
            folder = out / f"{mode}-{r}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            spec = folder / f"{args.example}.dnn"
            spec.write_text(spec_text(args.example, mode == "streamed", args.epochs))
            train(dnn.load(str(spec)), folder / "run", mode="quiet")
            h = history(folder / "run")
            histories.setdefault(mode, h)
            speeds[mode] += [e["samples_per_s"] for e in h[1:]]
            times[mode] += [e["time"] for e in h[1:]]
            if mode == "streamed":
                waits += [e["data_wait_s"] / e["time"] for e in h[1:]]
    timing = ("time", "samples_per_s", "data_wait_s")
    same = [{k: v for k, v in e.items() if k not in timing} for e in histories["memory"]] == [
        {k: v for k, v in e.items() if k not in timing} for e in histories["streamed"]
    ]
    mem, stream = statistics.median(speeds["memory"]), statistics.median(speeds["streamed"])
    print(f"load average: {os.getloadavg()[0]:.1f} (2 cores)")
    for mode, rate in (("in memory", mem), ("streamed", stream)):
        epoch = statistics.median(times["memory" if mode == "in memory" else mode]) * 1e3
        print(f"{mode}: median {rate:,.0f} samples/s, {epoch:.1f} ms an epoch")
    print(f"ratio streamed / in memory: {stream / mem:.2f}x (target >= 0.9x)")
    print(
        f"steps waiting for a batch: median {statistics.median(waits):.1%} of the epoch, "
        f"largest {max(waits):.1%} (target < 10%)"
    )
    print(f"same history in both modes: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
