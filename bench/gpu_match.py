"""GPU against CPU: the same examples trained on each, per-epoch losses compared (for
bench/gpu_check.sh; runs anywhere, but compares something only where a GPU is present).

    python bench/gpu_match.py [--epochs 3] [--out DIR] [EXAMPLE ...]

Each example trains twice for `--epochs` epochs from the same seed, as separate `python -m dnn
train` processes: once with `JAX_PLATFORMS=cpu`, once on the default backend. Both run with
`JAX_DEFAULT_MATMUL_PRECISION=highest`, so the GPU's matrix products are float32 rather than
TF32 and the two differ only by summation order and library kernels. Reported per example: the
largest relative difference of the per-epoch train loss, the final test metrics of each side,
and whether they agree within `--rtol` (default 1e-3 on the losses, 0.01 absolute on the test
accuracy: a handful of test examples near a decision boundary may flip). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ("digits_mlp", "digits_cnn", "tokens_transformer", "digits_autoencoder")


def run(spec: Path, out: Path, epochs: int, cpu: bool) -> tuple[list[float], dict, float]:
    env = dict(os.environ, JAX_DEFAULT_MATMUL_PRECISION="highest")
    if cpu:
        env["JAX_PLATFORMS"] = "cpu"
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "dnn", "train", str(spec), "--out", str(out), "--quiet"]
    done = subprocess.run(
        [*cmd, "--epochs", str(epochs)], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{spec.name} ({'cpu' if cpu else 'default'}): {done.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    result = json.loads((out / "result.json").read_text())
    return [r["loss"] for r in rows], result.get("test", {}), wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("examples", nargs="*", default=list(DEFAULT))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--out", type=Path, default=Path("/tmp/gpu_match"))
    args = ap.parse_args()
    import jax

    backend = jax.default_backend()
    report: dict[str, object] = {"backend": backend, "devices": [str(d) for d in jax.devices()]}
    shutil.rmtree(args.out, ignore_errors=True)  # fresh run folders for both sides
    ok = True
    for name in args.examples:
        spec = ROOT / "examples" / f"{name}.dnn"
        cpu = run(spec, args.out / f"{name}-cpu", args.epochs, cpu=True)
        dev = run(spec, args.out / f"{name}-default", args.epochs, cpu=False)
        rel = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(cpu[0], dev[0], strict=True))
        acc = [s.get("accuracy") for s in (cpu[1], dev[1])]
        agree = rel <= args.rtol and (
            None in acc or abs(acc[0] - acc[1]) <= 0.01  # type: ignore[operator]
        )
        ok &= agree
        report[name] = {
            "loss_max_rel_diff": rel,
            "cpu_test": cpu[1],
            "default_backend_test": dev[1],
            "cpu_wall_s": round(cpu[2], 1),
            "default_backend_wall_s": round(dev[2], 1),
            "agree": agree,
        }
        print(f"{name:22s} max rel loss diff {rel:.2e}  agree {agree}", flush=True)
    report["all_agree"] = ok
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
