"""Attention on a GPU: does dnn's `attend` take the fused path, and at what fraction of peak
(issue 15, for bench/gpu_check.sh).

    python bench/gpu_attention.py [--batch 16] [--seq 2048] [--heads 16] [--dim 64]

Times dnn's attention (compiler/lower_attention.py `attend`, the function every
`multi_head_attention` layer calls) in bfloat16, forward and forward + backward, jitted; reads
the compiled HLO for a cuDNN fused-attention custom call (`__cudnn$fmha...`); and reports the
achieved TFLOP/s against the chip's dense bf16 peak (`--peak`, default 989 TFLOP/s, the H100 SXM
datasheet figure). FLOPs counted as 4·B·h·T²·d forward (Q Kᵀ and the weights times V), 2.5x
that for forward + backward (the backward pass's five matrix products against the forward's
two), halved with `--causal`. On a CPU it runs (the einsum path) but a fraction of a GPU peak
means nothing. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
from dnn.compiler.lower_attention import attend


def timed(fn, *args, repeats: int = 20) -> float:  # type: ignore[no-untyped-def]
    jax.block_until_ready(fn(*args))  # compile
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            out = fn(*args)
        jax.block_until_ready(out)
        samples.append((time.perf_counter() - t0) / repeats)
    return statistics.median(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--peak", type=float, default=989.0, help="dense bf16 TFLOP/s of the chip")
    a = ap.parse_args()
    shape = (a.batch, a.seq, a.heads, a.dim)
    keys = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(kk, shape, jnp.bfloat16) for kk in keys)

    def forward(q, k, v):  # type: ignore[no-untyped-def]
        return attend(q, k, v, None, a.causal, None)

    def loss(q, k, v):  # type: ignore[no-untyped-def]
        return forward(q, k, v).astype(jnp.float32).sum()

    fwd = jax.jit(forward)
    both = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    hlo = fwd.lower(q, k, v).compile().as_text() or ""
    fused = "__cudnn$fmha" in hlo or "fmha" in hlo.lower()  # cuDNN flash attention calls
    flops = 4 * a.batch * a.heads * a.seq**2 * a.dim / (2 if a.causal else 1)
    t_fwd, t_both = timed(fwd, q, k, v), timed(both, q, k, v)
    out = {
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "shape_bthd": list(shape),
        "causal": a.causal,
        "fused_cudnn": fused,
        "forward_ms": t_fwd * 1e3,
        "forward_tflops": flops / t_fwd / 1e12,
        "forward_backward_ms": t_both * 1e3,
        "forward_backward_tflops": 2.5 * flops / t_both / 1e12,
        "peak_tflops": a.peak,
    }
    out["forward_fraction_of_peak"] = out["forward_tflops"] / a.peak
    out["forward_backward_fraction_of_peak"] = out["forward_backward_tflops"] / a.peak
    print(
        f"fused (cuDNN) {fused}; forward {out['forward_tflops']:.1f} TFLOP/s "
        f"({out['forward_fraction_of_peak']:.1%} of {a.peak:g}); forward+backward "
        f"{out['forward_backward_tflops']:.1f} TFLOP/s ({out['forward_backward_fraction_of_peak']:.1%})"
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
