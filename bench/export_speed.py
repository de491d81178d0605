"""Inference speed of an exported model: onnxruntime against the jitted JAX function and
`dnn predict` (issue 17, Performance).

    python bench/export_speed.py [--repeats 50]

Trains the digits CNN for 1 epoch in a temporary run folder, exports it to ONNX, and times,
on one batch of 256 raw examples, interleaved, medians of `--repeats`:
- onnxruntime: `session.run` of the exported model (CPU provider, default threads);
- JAX: the same inference function (`dnn.runtime.export.inference`), jitted, compiled once;
- `dnn predict`: the in-process call the command makes (restore the run, read a .npy, write a
  .npy), each time from scratch, as a user running the command pays it (without the process
  start and imports).
Prints the medians and the ratios; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime as ort
from dnn.runtime import export, infer, pipeline
from dnn.runtime.fit import train

import dnn

ROOT = Path(__file__).resolve().parent.parent


def median_s(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        program = dnn.load(str(ROOT / "examples" / "digits_cnn.dnn"), ["train.epochs=1"])
        run = Path(tmp) / "run"
        train(program, run, mode="quiet")
        raw = pipeline.raw_splits(program)["train"].x[:256].astype(np.float32)
        inf = export.inference(program, run)
        session = ort.InferenceSession(export.to_onnx(inf), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        fn = jax.jit(inf.fn)
        x = jnp.asarray(raw)
        np.save(Path(tmp) / "x.npy", raw)
        onnx_s = median_s(lambda: session.run(None, {name: raw}), args.repeats)
        jax_s = median_s(lambda: fn(x).block_until_ready(), args.repeats)
        predict_s = median_s(
            lambda: infer.predict(program, run, Path(tmp) / "x.npy", Path(tmp) / "y.npy"),
            max(3, args.repeats // 10),
        )
    out = {
        "batch": 256,
        "onnxruntime_ms": onnx_s * 1e3,
        "jax_jit_ms": jax_s * 1e3,
        "dnn_predict_ms": predict_s * 1e3,
        "onnx_over_jax": onnx_s / jax_s,
        "predict_over_onnx": predict_s / onnx_s,
    }
    print(
        f"batch 256, digits CNN: onnxruntime {out['onnxruntime_ms']:.2f} ms, jitted JAX "
        f"{out['jax_jit_ms']:.2f} ms (onnx / jax = {out['onnx_over_jax']:.2f}), dnn predict "
        f"{out['dnn_predict_ms']:.0f} ms"
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
