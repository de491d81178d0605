"""`data.on_error = skip` on data read whole (runtime/data/skipping.py): what it costs.

    python bench/skip_memory.py [--epochs 5] [--rows 1797]

The digits set written as a CSV (64 pixel columns and a label), and a copy with two bad rows
(a short row, an empty label), trained by the same MLP spec, one run each, in this order:

- `clean, fail`: the clean CSV read whole, placed on the device, epochs scanned (as ever);
- `clean, skip`: the clean CSV under `on_error = skip`: read by the streamed reader, nothing
  skipped, then trained as `clean, fail`;
- `bad, skip, whole`: the bad CSV read whole: the streamed run's batches, from memory;
- `bad, skip, stream`: the bad CSV streamed.

Printed: the seconds `pipeline.prepare` takes (reading the CSV: the bulk parser against the
streamed reader's rows, its index built beforehand), the training samples/s of each run (the
last epoch's, `metrics.jsonl`), and whether the two bad runs' histories are equal.
docs/streaming.md quotes the output.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

SPEC = """dnn 1
model m {{
  input x: f32[64]
  dense(128) -> relu
  dense(10)
}}
data {{
  source = csv("{csv}", label = "label")
  normalize = standardize
  stream = {stream}
  on_error = {on_error}
}}
train {{
  optimizer = adam(lr = 1e-3)
  batch_size = 64
  epochs = {epochs}
}}
"""


def write_csvs(folder: Path, rows: int) -> None:
    from sklearn.datasets import load_digits

    d = load_digits()
    lines = [
        ",".join(f"{v:g}" for v in x) + f",{y}" for x, y in zip(d.data, d.target, strict=True)
    ][:rows]
    header = ",".join([f"p{i}" for i in range(64)] + ["label"])
    (folder / "clean.csv").write_text(header + "\n" + "\n".join(lines) + "\n")
    lines[100] = "0,1,2"  # short
    lines[900] = lines[900].rsplit(",", 1)[0] + ","  # empty label
    (folder / "bad.csv").write_text(header + "\n" + "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1797)
    args = parser.parse_args()
    from dnn.runtime import pipeline
    from dnn.runtime.fit import train

    import dnn

    folder = Path(tempfile.mkdtemp(prefix="skip-memory-"))
    write_csvs(folder, args.rows)
    runs = {
        "clean, fail": ("clean.csv", "false", "fail"),
        "clean, skip": ("clean.csv", "false", "skip"),
        "bad, skip, whole": ("bad.csv", "false", "skip"),
        "bad, skip, stream": ("bad.csv", "true", "skip"),
    }
    histories = {}
    for name, (csv, stream, on_error) in runs.items():
        path = folder / (name.replace(", ", "-") + ".dnn")
        text = SPEC.format(csv=csv, stream=stream, on_error=on_error, epochs=args.epochs)
        path.write_text(text)
        pipeline.prepare(dnn.load(str(path)))  # once: the CSV's index built, files cached
        t = time.perf_counter()
        pipeline.prepare(dnn.load(str(path)))
        prepare_s = time.perf_counter() - t
        out = folder / ("run-" + path.stem)
        result = train(dnn.load(str(path)), out, mode="quiet")
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        drop = ("time", "samples_per_s", "data_wait_s")
        histories[name] = [{k: v for k, v in r.items() if k not in drop} for r in lines]
        print(
            f"{name:18s} prepare {prepare_s:6.3f} s   train {lines[-1]['samples_per_s']:9.0f} "
            f"samples/s (last epoch)   skipped {result.get('skipped', {})}"
        )
    same = histories["bad, skip, whole"] == histories["bad, skip, stream"]
    print(f"bad runs, whole and streamed: the same history: {same}")


if __name__ == "__main__":
    main()
