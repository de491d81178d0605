"""Every example exported, StableHLO and ONNX, checked against dnn on its test split.

    python bench/export_examples.py [NAME ...] [--epochs 1]

Each example (examples/*.dnn but resnet18, whose ImageNet shapes no built-in set has) trains
for `--epochs` epochs in a temporary run folder, is exported in both formats, and the exported
programs run on the raw test split: the StableHLO one through `jax.export.deserialize`, the
ONNX one in onnxruntime. Both are compared with what `dnn predict` computes (the model's
outputs in the data's units: logits for classifiers). Prints one line per example with the
largest difference relative to the largest output (the issue's bar: 1e-5 in float32), or the
converter's message where it cannot convert; the last line is JSON. Not part of the tests: it
trains every example (a few minutes on 2 cores); tests/test_export.py checks a representative
few.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from dnn.runtime import export, infer, pipeline
from dnn.runtime.fit import train
from dnn.runtime.train import TrainingError
from jax import export as jax_export

import dnn

ROOT = Path(__file__).resolve().parent.parent


def reference(program: dnn.Program, run: Path, raw: np.ndarray) -> tuple[np.ndarray, ...]:
    """What `dnn predict` computes for `raw`, before it picks classes: outputs in data units."""
    engine, st, transform, task = infer.loaded(program, run)
    out = infer._forward_all(engine, st, transform(program, raw))
    if task == "regression":
        out = transform.targets.invert(out.astype(np.float64)).astype(out.dtype)
    elif engine.blocks:
        out = tuple(
            infer._untarget(o, b, transform.targets)
            for o, b in zip(out, engine.blocks, strict=True)
        )
    return out if isinstance(out, tuple) else (out,)


def worst(got: tuple, want: tuple) -> float:
    out = 0.0
    for g, w in zip(got, want, strict=True):
        scale = max(1.0, float(np.abs(w).max(initial=0.0)))
        out = max(out, float(np.abs(np.asarray(g, np.float64) - w).max(initial=0.0)) / scale)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    specs = sorted(p for p in (ROOT / "examples").glob("*.dnn") if p.stem != "resnet18")
    specs = [p for p in specs if not args.names or p.stem in args.names]
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            t0 = time.perf_counter()
            program = dnn.load(str(spec), [f"train.epochs={args.epochs}"])
            run = Path(tmp) / spec.stem
            train(program, run, mode="quiet")
            raw = pipeline.raw_splits(program)["test"].x
            inf = export.inference(program, run)
            raw = raw.astype(inf.dtype)
            want = reference(program, run, raw)
            row: dict[str, object] = {}
            hlo = jax_export.deserialize(bytearray(export.to_stablehlo(inf)))
            got = hlo.call(jnp.asarray(raw))
            row["stablehlo"] = worst(got if isinstance(got, tuple) else (got,), want)
            try:
                model = export.to_onnx(inf)
            except TrainingError as e:
                row["onnx"] = f"not converted: {e}"
            else:
                import onnxruntime as ort

                session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
                row["onnx"] = worst(
                    tuple(session.run(None, {session.get_inputs()[0].name: raw})), want
                )
            row["seconds"] = round(time.perf_counter() - t0, 1)
            report[spec.stem] = row
            shown = {
                k: (f"{v:.1e}" if isinstance(v, float) and k != "seconds" else v)
                for k, v in row.items()
            }
            print(f"{spec.stem:22s} {shown}", flush=True)
    print(json.dumps(report))
    bad = [
        k
        for k, r in report.items()
        if any(isinstance(r[f], float) and r[f] > 1e-5 for f in ("stablehlo", "onnx"))
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
