"""One training step, dnn's against the hand-written one: compile time, run time, XLA program.

`python bench/step_cost.py [--model mlp] [--repeats 5] [--steps 50]`

Both steps are lowered and compiled ahead of time from the same arguments (fresh each repeat,
alternating), then called `steps` times in a loop on donated state as `dnn train` and the
hand-written loop do; the per-step time is that loop's wall time over `steps`. Also printed:
XLA's cost analysis (flops, bytes accessed) of each compiled program, its HLO instruction
histogram where the two differ, and the number of array leaves each call flattens (state and
accumulators), which is what per-call dispatch cost grows with. Medians; the last line is JSON.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
from common import dnn_engine, epoch_loop_overrides, median, print_json_last
from handwritten import Reference, load


def dnn_step(model: str) -> tuple[Any, Any, tuple[Any, ...]]:
    """dnn's per-step function, its initial state and call arguments."""
    _, e, x, y = dnn_engine(model, epoch_loop_overrides("steps"))
    full, _ = e.order(1, int(x.shape[0]))
    return e.step, (e.init, e.train_acc), (x, y, full)


def hand_step(model: str) -> tuple[Any, Any, tuple[Any, ...]]:
    ref = Reference(model)
    x, y = (jnp.asarray(a) for a in load(model)["train"])
    order = ref.order(1, int(x.shape[0]))

    def acc() -> Any:
        return {"loss": jnp.zeros(()), "correct": jnp.zeros((), jnp.int32)}

    return ref.step, (lambda: ref.init(x[:1]), acc), (x, y, order)


def histogram(hlo: str) -> collections.Counter[str]:
    """HLO instructions by opcode in the optimized module."""
    ops = re.findall(r"=\s*[\w\[\]{},:\s/()]*?\s([a-z][\w-]*)\(", hlo)
    return collections.Counter(ops)


def measure(build: Any, model: str, steps: int) -> dict[str, Any]:
    step, (init, acc0), (x, y, order) = build(model)
    st, acc = jax.block_until_ready((init(), acc0()))
    args = (st, acc, x, y, order, 0)
    t = time.perf_counter()
    lowered = step.lower(*args)
    t_lower = time.perf_counter() - t
    t = time.perf_counter()
    compiled = lowered.compile()
    t_compile = time.perf_counter() - t
    jax.block_until_ready(compiled(*args))  # warm up (the donated state is gone now)
    st, acc = jax.block_until_ready((init(), acc0()))
    n = int(order.shape[0])
    t = time.perf_counter()
    for i in range(steps):
        st, acc = compiled(st, acc, x, y, order, i % n)
    jax.block_until_ready((st, acc))
    per_step = (time.perf_counter() - t) / steps
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {
        "lower_s": t_lower,
        "compile_s": t_compile,
        "step_ms": per_step * 1e3,
        "flops": float(cost.get("flops", 0.0)),
        "bytes": float(cost.get("bytes accessed", 0.0)),
        "leaves": len(jax.tree.leaves((st, acc))),
        "hist": histogram(compiled.as_text()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    sides = {"hand-written": hand_step, "dnn (steps)": dnn_step}
    found: dict[str, list[dict[str, Any]]] = {k: [] for k in sides}
    for r in range(args.repeats):
        for label in sides if r % 2 == 0 else list(sides)[::-1]:
            found[label].append(measure(sides[label], args.model, args.steps))
        print(f"  repeat {r + 1}", file=sys.stderr, flush=True)
    print(f"### {args.model}: one step, medians of {args.repeats}\n")
    print("| | lower (s) | compile (s) | step (ms) | GFLOP | MB accessed | state + acc leaves |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, recs in found.items():
        m = {
            k: median([r[k] for r in recs])
            for k in ("lower_s", "compile_s", "step_ms", "flops", "bytes", "leaves")
        }
        print(
            f"| {label} | {m['lower_s']:.3f} | {m['compile_s']:.3f} | {m['step_ms']:.3f} "
            f"| {m['flops'] / 1e9:.4f} | {m['bytes'] / 1e6:.1f} | {m['leaves']:.0f} |"
        )
    h, d = found["hand-written"][0]["hist"], found["dnn (steps)"][0]["hist"]
    diff = {
        op: (h.get(op, 0), d.get(op, 0)) for op in sorted(set(h) | set(d)) if h.get(op) != d.get(op)
    }
    print("\nHLO instructions that differ (hand-written, dnn):", diff)
    print(f"HLO instructions in all: {sum(h.values())} hand-written, {sum(d.values())} dnn")
    ms = {k: median([r["step_ms"] for r in v]) for k, v in found.items()}
    print_json_last(
        {
            "model": args.model,
            "dnn_step_ms": round(ms["dnn (steps)"], 4),
            "handwritten_step_ms": round(ms["hand-written"], 4),
            "ratio": round(ms["hand-written"] / ms["dnn (steps)"], 3),
        }
    )


if __name__ == "__main__":
    main()
