"""A transformer encoder, dnn against hand-written Flax Linen (issue 15): step speed and the
compile time of deep scanned stacks.

    python bench/transformer.py                       # both measurements, ~2 minutes on 2 cores
    python bench/transformer.py --samples 5 --compiles 2   # quicker

The model: a sequence of 128 positions of 128 features (synthetic, batch 32), a learned
positional embedding, 4 pre-norm encoder blocks (`examples/blocks/transformer.dnn`: 4 heads of
key_dim 32, MLP 512 with GELU, no dropout), a final layer norm, the mean over positions and a
dense classifier to 10 classes. The hand-written side is the same model in Flax Linen
(`nn.MultiHeadDotProductAttention`, `nn.LayerNorm`, `nn.Dense`, exact GELU as dnn's default),
in the same layer order; the parameter counts are asserted equal.

1. Steps per second. Both sides train with `optax.adam(1e-3)` and softmax cross-entropy on the
   same device arrays and the same batch order: dnn through the engine `dnn train` runs
   (`Engine.step`: gathers its batch by index, accumulates the loss and the accuracy metric on
   the device), the hand-written side through one `jax.jit` step with donated buffers that does
   the same (as `bench/handwritten.py`). After a warm-up (compile + 2 steps, not timed) the
   sides alternate, each sample timing `--steps` consecutive steps; the medians are reported.
2. Compile time of dnn's train step with `train.scan_repeats = true`, 12 layers against 2:
   each measurement in a fresh child process (JAX's persistent cache off, `DNN_CACHE_DIR=off`),
   the step lowered (`jit(...).lower`, the trace) and compiled (`.compile()`, XLA); the parent
   alternates the depths and reports medians of `--compiles` children.
The last line printed is one JSON object with every number and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import machine, median, print_json_last, spread

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SEQ, D, HEADS, KEY_DIM, MLP, BATCH, CLASSES = 128, 128, 4, 32, 512, 32, 10
N_EXAMPLES = 400  # split 0.8 / 0.1 / 0.1: 320 train examples, 10 full batches

SPEC = """dnn 1

import "blocks/transformer.dnn"

model transformer_bench {{
  input x: f32[{seq}, {d}]
  positional_embedding
  repeat {layers} {{ transformer_encoder(heads = {heads}, key_dim = {key_dim}, mlp_dim = {mlp}, \
rate = 0.0, norm_first = true) }}
  layernorm
  sequence_pool(mean)
  dense({classes})
}}

data {{
  source = npz("{npz}", x = "x", y = "y")
  split = {{ train: 0.8, val: 0.1, test: 0.1 }}
  drop_last = true
}}

train {{
  loss = cross_entropy
  metrics = [accuracy]
  batch_size = {batch}
  epochs = 1
  optimizer = adam(lr = 1e-3)
  seed = 0
}}
"""


def make_data(directory: Path) -> Path:
    """N_EXAMPLES random sequences [SEQ, D] (N(0, 1)) with random labels in 0..CLASSES-1."""
    import numpy as np

    rng = np.random.default_rng(0)
    path = directory / "transformer_bench.npz"
    x = rng.normal(size=(N_EXAMPLES, SEQ, D)).astype(np.float32)
    np.savez(path, x=x, y=rng.integers(0, CLASSES, N_EXAMPLES).astype(np.int64))
    return path


def dnn_engine(layers: int, npz: Path, overrides: list[str]) -> tuple[Any, Any, Any]:
    """The engine `dnn train` builds for the spec: (engine, x, y), the train split on device."""
    from dnn.runtime import pipeline
    from dnn.runtime.train import Engine, device_data

    import dnn

    text = SPEC.format(
        seq=SEQ, d=D, layers=layers, heads=HEADS, key_dim=KEY_DIM, mlp=MLP,
        classes=CLASSES, npz=npz, batch=BATCH,
    )  # fmt: skip
    # the path only anchors the import of "blocks/transformer.dnn" (examples/blocks)
    program = dnn.loads(text, str(EXAMPLES / "transformer_bench.dnn"), overrides)
    prepared = pipeline.prepare(program)
    engine = Engine(program, prepared, 1)
    x, y = device_data(prepared, engine.place)["train"]
    return engine, x, y


# ------------------------------------------------------------------ the hand-written side


def handwritten(layers: int) -> Any:
    """The reference: the same model in Flax Linen, a jitted Adam step like bench/handwritten.py."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import linen as nn

    glorot = nn.initializers.glorot_uniform()

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            h = nn.LayerNorm(epsilon=1e-5)(x)
            h = nn.MultiHeadDotProductAttention(
                num_heads=HEADS,
                qkv_features=HEADS * KEY_DIM,
                kernel_init=glorot,
                deterministic=True,
            )(h)
            a = x + h
            h = nn.LayerNorm(epsilon=1e-5)(a)
            h = nn.Dense(MLP, kernel_init=glorot)(h)
            h = nn.Dense(D, kernel_init=glorot)(nn.gelu(h, approximate=False))
            return a + h

    class Encoder(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            pos = self.param("positions", nn.initializers.normal(0.02), (SEQ, D))
            x = x + pos[None]
            for _ in range(layers):
                x = Block()(x)
            x = nn.LayerNorm(epsilon=1e-5)(x)
            return nn.Dense(CLASSES, kernel_init=glorot)(jnp.mean(x, axis=1))

    model, tx = Encoder(), optax.adam(1e-3)

    def init(x: jax.Array) -> Any:
        params = model.init(jax.random.key(0), x[:1])["params"]
        return {"params": params, "opt": tx.init(params)}

    def step(st: Any, acc: Any, x: jax.Array, y: jax.Array, order: jax.Array, i: Any) -> Any:
        idx = order[i]
        xb, yb = x[idx], y[idx]

        def loss_fn(params: Any) -> Any:
            logits = model.apply({"params": params}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(st["params"])
        updates, opt = tx.update(grads, st["opt"], st["params"])
        acc = {
            "loss": acc["loss"] + loss * yb.shape[0],
            "correct": acc["correct"] + jnp.sum(jnp.argmax(logits, -1) == yb),
        }
        return {"params": optax.apply_updates(st["params"], updates), "opt": opt}, acc

    zero = jax.jit(lambda: {"loss": jnp.zeros(()), "correct": jnp.zeros((), jnp.int32)})
    return jax.jit(init), jax.jit(step, donate_argnums=(0, 1)), zero


def count(tree: Any) -> int:
    import jax

    return sum(int(a.size) for a in jax.tree.leaves(tree))


# ------------------------------------------------------------------ 1. steps per second


def steps_per_second(npz: Path, samples: int, steps: int) -> dict[str, Any]:
    import jax

    engine, x, y = dnn_engine(4, npz, [])
    init, step, zero = handwritten(4)
    order, _ = engine.order(1, int(x.shape[0]))  # the same batches for both sides
    st_d, acc_d = engine.init(), engine.train_acc()
    st_h, acc_h = init(x), zero()
    n_dnn, n_hand = count(st_d["params"]), count(st_h["params"])
    assert n_dnn == n_hand, f"parameter counts differ: dnn {n_dnn:,}, hand-written {n_hand:,}"
    full = int(order.shape[0])
    sides = {
        "dnn": [st_d, acc_d, engine.step, 0.0],
        "handwritten": [st_h, acc_h, step, 0.0],
    }
    for side in sides.values():  # warm-up: the compile and two steps, not timed
        t = time.perf_counter()
        for i in range(3):
            side[0], side[1] = side[2](side[0], side[1], x, y, order, i % full)
        jax.block_until_ready(side[0])
        side[3] = time.perf_counter() - t
    times: dict[str, list[float]] = {"dnn": [], "handwritten": []}
    names = list(sides)
    for s in range(samples):  # alternating, the first side swapped each sample
        for name in names if s % 2 == 0 else names[::-1]:
            side = sides[name]
            t = time.perf_counter()
            for k in range(steps):
                side[0], side[1] = side[2](side[0], side[1], x, y, order, (s * steps + k) % full)
            jax.block_until_ready(side[0])
            times[name].append(steps / (time.perf_counter() - t))
        print(f"  sample {s + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in times.items()),
              file=sys.stderr, flush=True)  # fmt: skip
    return {
        "params": n_dnn,
        "scan_repeats": bool(engine.scan),
        "warmup_s": {k: v[3] for k, v in sides.items()},
        "steps_per_s": times,
        "ratio": median(times["dnn"]) / median(times["handwritten"]),
    }


# ------------------------------------------------------------------ 2. compile time, by depth


def compile_child(layers: int, npz: Path) -> dict[str, Any]:
    """In this fresh process: trace and compile dnn's train step, scanned repeats."""
    import jax

    engine, x, y = dnn_engine(layers, npz, ["train.scan_repeats=true"])
    order, _ = engine.order(1, int(x.shape[0]))
    st, acc = engine.init(), engine.train_acc()
    t0 = time.perf_counter()
    lowered = engine.step.lower(st, acc, x, y, order, 0)
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    return {
        "layers": layers,
        "scanned_groups": len(engine.scan.groups) if engine.scan else 0,
        "trace_s": t1 - t0,
        "compile_s": t2 - t1,
        "total_s": t2 - t0,
        "backend": jax.default_backend(),
    }


def run_compile_child(layers: int, npz: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", str(layers), "--npz", str(npz)]
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false", "DNN_CACHE_DIR": "off"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compile_times(npz: Path, depths: tuple[int, ...], repeats: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for r in range(repeats):  # alternating depths, the order swapped each repeat
        for layers in depths if r % 2 == 0 else depths[::-1]:
            rows.append(run_compile_child(layers, npz))
            print(f"  compile {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    by = {d: [r for r in rows if r["layers"] == d] for d in depths}
    med = {d: {f: median([r[f] for r in by[d]]) for f in ("trace_s", "compile_s", "total_s")}
           for d in depths}  # fmt: skip
    lo, hi = min(depths), max(depths)
    return {
        "rows": rows,
        "median": med,
        "ratio_total": med[hi]["total_s"] / med[lo]["total_s"],
        "ratio_xla": med[hi]["compile_s"] / med[lo]["compile_s"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=11, help="timed samples per side")
    ap.add_argument("--steps", type=int, default=5, help="steps per sample")
    ap.add_argument("--compiles", type=int, default=5, help="fresh compiles per depth")
    ap.add_argument("--depths", default="2,12")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--npz", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(compile_child(a.child, a.npz)))
        return
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        npz = make_data(Path(tmp))
        speed = steps_per_second(npz, a.samples, a.steps)
        depths = tuple(int(v) for v in a.depths.split(","))
        comp = compile_times(npz, depths, a.compiles)
    sps = speed["steps_per_s"]
    print(f"\nparameters (both sides): {speed['params']:,}")
    print("| side | steps/s, median [min-max] | samples x steps |")
    print("| --- | --- | --- |")
    for k in ("dnn", "handwritten"):
        print(f"| {k} | {spread(sps[k])} | {len(sps[k])} x {a.steps} |")
    met = "met" if speed["ratio"] >= 1.0 else "NOT met"
    print(f"dnn / hand-written: {speed['ratio']:.3f}x (target >= 1.0x: {met})\n")
    print("| layers (scan_repeats = true) | trace s | XLA compile s | total s | runs |")
    print("| --- | --- | --- | --- | --- |")
    for d, m in comp["median"].items():
        runs = sum(r["layers"] == d for r in comp["rows"])
        print(f"| {d} | {m['trace_s']:.2f} | {m['compile_s']:.2f} | {m['total_s']:.2f} | {runs} |")
    met = "met" if comp["ratio_total"] <= 1.5 else "NOT met"
    print(f"{max(depths)} / {min(depths)} layers: total {comp['ratio_total']:.2f}x (target <= 1.5x:"
          f" {met}), XLA compile alone {comp['ratio_xla']:.2f}x")  # fmt: skip
    print(f"wall {time.perf_counter() - t_start:.0f} s")
    print_json_last({"speed": speed, "compile": comp, "machine": machine()})


if __name__ == "__main__":
    main()
