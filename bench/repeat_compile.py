"""Compile time, step time and memory of `repeat N { block }`, unrolled vs scanned (issue 7.4).

    python bench/repeat_compile.py                     # dense and conv bodies, N = 4, 16, 64
    python bench/repeat_compile.py --bodies dense --ns 4,64 --repeats 1   # quicker

Each measurement runs in a fresh child process (no compilation cache, in memory or on disk):
the spec below is loaded, lowered with `train.scan_repeats = false` (unrolled), `true`
(scanned) or `true` + `remat = true`, and one Adam train step (forward, cross-entropy,
gradient, update, batch statistics) is jitted. The child reports the trace time
(`jit(...).lower`), the XLA compile time (`.compile()`), the median step time over `--steps`
steps after one warm-up step, and XLA's memory analysis of the compiled step (temporary
buffers: the activations kept for the backward pass live there). The parent interleaves the
configurations, repeats them, and prints medians and the ratios that matter: compile time of
N against N = 4 within a mode, and scanned against unrolled step time at each N.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BODIES = {
    # a residual MLP block: 2 dense layers of width 128, batch 128
    "dense": (
        """block res(c) {
  h = dense(c)(in) -> relu
  h = dense(c)(h)
  output relu(add(in, h))
}
model m {
  input x: f32[64]
  dense(128)
  repeat N { res(128) }
  dense(10)
}
""",
        (128, 64),
    ),
    # a ResNet basic block without downsampling: conv-bn-relu-conv-bn + skip, 16 channels on
    # 14x14, batch 32
    "conv": (
        """block res(c) {
  h = conv2d(c, kernel = 3, padding = same, use_bias = false)(in) -> batchnorm -> relu
  h = conv2d(c, kernel = 3, padding = same, use_bias = false)(h) -> batchnorm
  output relu(add(in, h))
}
model m {
  input x: f32[14, 14, 1]
  conv2d(16, kernel = 3, padding = same)
  repeat N { res(16) }
  global_avgpool
  dense(10)
}
""",
        (32, 14, 14, 1),
    ),
}
MODES = {"unrolled": ("false", "false"), "scanned": ("true", "false"), "remat": ("true", "true")}


def child(body: str, n: int, mode: str, steps: int) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import jax
    import optax
    from dnn.compiler.lower_flax import lower_model
    from dnn.compiler.lower_scan import plan_for

    import dnn

    text, shape = BODIES[body]
    scan, remat = MODES[mode]
    program = dnn.loads(
        text.replace("repeat N", f"repeat {n}"),
        overrides=[f"train.scan_repeats={scan}", f"train.remat={remat}"],
    )
    plan = plan_for(program)
    model = lower_model(program.model, scan=plan)
    x = jax.random.normal(jax.random.key(0), shape)
    y = jax.random.randint(jax.random.key(1), (shape[0],), 0, 10)
    variables = jax.jit(lambda k: model.init(k, x))(jax.random.key(2))
    params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
    tx = optax.adam(1e-3)
    opt = jax.jit(tx.init)(params)

    def loss_fn(p: Any, s: Any, key: Any) -> Any:
        out, new = model.apply(
            {"params": p, **s}, x, train=True, rngs={"dropout": key}, mutable=list(s)
        )
        return optax.softmax_cross_entropy_with_integer_labels(out, y).mean(), new

    def step(p: Any, s: Any, o: Any, key: Any) -> Any:
        (loss, s), g = jax.value_and_grad(loss_fn, has_aux=True)(p, s, key)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), s, o, loss

    args = (params, state, opt, jax.random.key(3))
    t0 = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=(0, 1, 2)).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    mem = compiled.memory_analysis()
    p, s, o, loss = compiled(*args)
    loss.block_until_ready()
    times = []
    for i in range(steps):
        t = time.perf_counter()
        p, s, o, loss = compiled(p, s, o, jax.random.key(4 + i))
        loss.block_until_ready()
        times.append(time.perf_counter() - t)
    return {
        "body": body,
        "n": n,
        "mode": mode,
        "scanned_groups": len(plan.groups) if plan else 0,
        "trace_s": t1 - t0,
        "compile_s": t2 - t1,
        "step_ms": 1000 * statistics.median(times),
        "temp_mb": getattr(mem, "temp_size_in_bytes", 0) / 2**20,
        "backend": jax.default_backend(),
    }


def run_child(body: str, n: int, mode: str, steps: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", f"{body},{n},{mode}", "--steps", str(steps)]
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict[str, Any]]) -> str:
    """Medians per (body, N, mode), with compile ratios to N = 4 and step ratios to unrolled."""
    keyed: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in rows:
        keyed.setdefault((r["body"], r["n"], r["mode"]), []).append(r)
    med = {
        k: {f: statistics.median(r[f] for r in v) for f in ("trace_s", "compile_s", "step_ms")}
        | {"temp_mb": v[0]["temp_mb"], "runs": len(v)}
        for k, v in keyed.items()
    }
    lines = [
        "| body | N | mode | trace s | XLA compile s | compile / N=4 | step ms | step / "
        "unrolled | temp MB | runs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (body, n, mode), m in sorted(med.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        base = med.get((body, min(k[1] for k in med if k[0] == body), mode))
        unrolled = med.get((body, n, "unrolled"))
        c_ratio = m["compile_s"] / base["compile_s"] if base else float("nan")
        s_ratio = m["step_ms"] / unrolled["step_ms"] if unrolled else float("nan")
        lines.append(
            f"| {body} | {n} | {mode} | {m['trace_s']:.2f} | {m['compile_s']:.2f} | "
            f"{c_ratio:.2f} | {m['step_ms']:.1f} | {s_ratio:.2f} | {m['temp_mb']:.1f} | "
            f"{m['runs']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bodies", default="dense,conv")
    ap.add_argument("--ns", default="4,16,64")
    ap.add_argument("--modes", default="unrolled,scanned,remat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        body, n, mode = a.child.split(",")
        print(json.dumps(child(body, int(n), mode, a.steps)))
        return
    rows = []
    for _ in range(a.repeats):  # interleaved: drift in the machine's load hits every config
        for body in a.bodies.split(","):
            for n in (int(v) for v in a.ns.split(",")):
                for mode in a.modes.split(","):
                    r = run_child(body, n, mode, a.steps)
                    rows.append(r)
                    print(json.dumps(r), file=sys.stderr, flush=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
