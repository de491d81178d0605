"""How fast can a scanned epoch of the digits MLP be? dnn's against the variants a JAX user
could write, all against the hand-written per-step loop (issue 7, point 3: target 1.5x).

`python bench/scan_floor.py [--epochs 40] [--xla-flags "--xla_cpu_use_xnnpack=true"]`

Sides, built on the same data (bench/specs/mlp.dnn's train split, batch 64, last partial batch
dropped), run interleaved, one epoch each in turn, median epoch time:

- `per-step (b)`: bench/handwritten.py's reference, a jitted step called from Python per batch;
- `scan`: the least a scanned epoch can do: permutation, then `lax.scan` over the batch
  indices, gather, Flax forward + gradient, `optax.adam`, loss and number-correct sums;
- `scan, gathered first`: the permuted data gathered once, then scanned over as `xs`;
- `scan, unroll 2`: `lax.scan(..., unroll=2)`;
- `scan, flatten(adam)`: `optax.flatten`: one Adam update over one concatenated vector;
- `dnn (scanned epoch)`: the engine `dnn train` runs (`train.loop = auto` scans this MLP).

`--xla-flags` sets XLA_FLAGS for the whole process (XLA reads it once), so it changes every
side alike; run the script once per flag setting and compare the ratios. The last line is JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40, help="timed epochs per side")
    ap.add_argument("--xla-flags", default="", help="XLA_FLAGS for this process")
    args = ap.parse_args()
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = args.xla_flags
    from common import median, print_json_last

    sides, samples = build()
    times: dict[str, list[float]] = {k: [] for k in sides}
    for run in sides.values():  # compile, then one warm epoch
        run(0)
        run(1)
    for e in range(2, args.epochs + 2):
        names = list(sides) if e % 2 else list(sides)[::-1]
        for k in names:
            t = time.perf_counter()
            sides[k](e)
            times[k].append(time.perf_counter() - t)
    base = median(times["per-step (b)"])
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, {args.epochs} epochs per side")
    print("| side | ms / epoch | samples/s | vs per-step (b) |\n|---|---:|---:|---:|")
    record: dict[str, Any] = {"xla_flags": os.environ.get("XLA_FLAGS", "")}
    for k, ts in times.items():
        m = median(ts)
        print(f"| {k} | {m * 1e3:.2f} | {samples / m:,.0f} | {base / m:.2f}x |")
        record[k] = round(base / m, 3)
    sys.stdout.flush()
    print_json_last(record)


def build() -> tuple[dict[str, Callable[[int], None]], int]:
    """The sides, each a function running one epoch, and the samples an epoch trains."""
    import jax
    import jax.numpy as jnp
    import optax
    from common import dnn_engine
    from dnn.runtime import fit
    from dnn.runtime.progress import Display
    from handwritten import MLP, Reference, load

    x, y = (jnp.asarray(a) for a in load("mlp")["train"])
    n, batch = int(x.shape[0]), 64
    steps = n // batch
    model = MLP()

    def scanned(tx: Any, unroll: int = 1, gather_first: bool = False) -> Callable[[int], None]:
        def loss_fn(p: Any, xb: Any, yb: Any) -> Any:
            out = model.apply({"params": p}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(out, yb).mean(), out

        def body(carry: Any, b: Any) -> Any:
            st, acc = carry
            xb, yb = b if gather_first else (x[b], y[b])
            (loss, out), g = jax.value_and_grad(loss_fn, has_aux=True)(st["params"], xb, yb)
            upd, opt = tx.update(g, st["opt"], st["params"])
            acc = (acc[0] + loss * batch, acc[1] + jnp.sum(jnp.argmax(out, -1) == yb))
            return ({"params": optax.apply_updates(st["params"], upd), "opt": opt}, acc), None

        def epoch(st: Any, acc: Any, e: Any) -> Any:
            key = jax.random.fold_in(jax.random.key(0), e)
            order = jax.random.permutation(key, n)[: steps * batch].reshape(steps, batch)
            xs = (x[order], y[order]) if gather_first else order
            return jax.lax.scan(body, (st, acc), xs, unroll=unroll)[0]

        def init() -> Any:
            p = model.init(jax.random.key(0), x[:1])["params"]
            return {"params": p, "opt": tx.init(p)}

        jitted = jax.jit(epoch, donate_argnums=(0, 1))
        zero = jax.jit(lambda: (jnp.zeros(()), jnp.zeros((), jnp.int32)))
        state = {"st": jax.jit(init)()}

        def run(e: int) -> None:
            state["st"], acc = jitted(state["st"], zero(), e)
            jax.block_until_ready(acc)

        return run

    ref = Reference("mlp")
    ref_state = {"st": ref.init(x[:1])}

    def per_step(e: int) -> None:
        ref_state["st"], acc = ref.epoch(ref_state["st"], x, y, e)
        jax.block_until_ready(acc)

    _, engine, ex, ey = dnn_engine("mlp")
    assert engine.scanned, "dnn no longer scans the MLP's epochs"
    display = Display(1, engine.steps_per_epoch, "quiet")
    dnn_state = {"st": engine.init()}

    def dnn(e: int) -> None:
        dnn_state["st"], acc = fit._one_epoch(engine, dnn_state["st"], e + 1, ex, ey, display)
        jax.block_until_ready(acc)

    adam = optax.adam(1e-3)
    sides = {
        "per-step (b)": per_step,
        "scan": scanned(adam),
        "scan, gathered first": scanned(adam, gather_first=True),
        "scan, unroll 2": scanned(adam, unroll=2),
        "scan, flatten(adam)": scanned(optax.flatten(optax.adam(1e-3))),
        "dnn (scanned epoch)": dnn,
    }
    return sides, steps * batch


if __name__ == "__main__":
    main()
