"""Linen or NNX for the lowered model? Step time and compile time, side by side in one run.

`python bench/linen_vs_nnx.py [--repeats 5] [--steps 200]` trains a 784-512-256-10 MLP on
random data (batch 128) three ways: (a) a Linen model with a pure `jax.jit` step over
(params, opt_state, batch); (b) an NNX model split once into graphdef + state, with the same
pure `jax.jit` step merging inside; (c) `nnx.jit` on the module every step. Prints medians and
ratios to (a), and a last line of JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import linen, nnx

SIZES = (784, 512, 256, 10)
BATCH = 128
MODEL = "mlp"  # or "cnn": conv 32 → pool → conv 64 → pool → dense 10 on 28×28×1


def _pool(x):
    return linen.max_pool(x, (2, 2), (2, 2))


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        if MODEL == "cnn":
            x = _pool(jax.nn.relu(linen.Conv(32, (3, 3), padding="SAME")(x.reshape(-1, 28, 28, 1))))
            x = _pool(jax.nn.relu(linen.Conv(64, (3, 3), padding="SAME")(x)))
            return linen.Dense(10)(x.reshape(x.shape[0], -1))
        for units in SIZES[1:-1]:
            x = jax.nn.relu(linen.Dense(units)(x))
        return linen.Dense(SIZES[-1])(x)


class NnxMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.c1 = nnx.Conv(1, 32, (3, 3), padding="SAME", rngs=rngs)
        self.c2 = nnx.Conv(32, 64, (3, 3), padding="SAME", rngs=rngs)
        self.head = nnx.Linear(7 * 7 * 64, 10, rngs=rngs)
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(SIZES[:-1], SIZES[1:], strict=True)]
        )

    def __call__(self, x):
        if MODEL == "cnn":
            x = _pool(jax.nn.relu(self.c1(x.reshape(-1, 28, 28, 1))))
            x = _pool(jax.nn.relu(self.c2(x)))
            return self.head(x.reshape(x.shape[0], -1))
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


def loss_of(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def data(steps: int):
    key = jax.random.key(0)
    x = jax.random.normal(key, (steps, BATCH, SIZES[0]))
    y = jax.random.randint(key, (steps, BATCH), 0, SIZES[-1])
    return x, y


def run_linen(steps: int) -> tuple[float, float]:
    model, tx = LinenMLP(), optax.adam(1e-3)
    params = model.init(jax.random.key(1), jnp.zeros((1, SIZES[0])))["params"]
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, x, y):
        loss, g = jax.value_and_grad(lambda p: loss_of(model.apply({"params": p}, x), y))(params)
        u, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, u), opt, loss

    return _time(lambda p, o, x, y: step(p, o, x, y), params, opt, steps)


def run_nnx_split(steps: int) -> tuple[float, float]:
    model = NnxMLP(nnx.Rngs(1))
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(1e-3)
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, x, y):
        def f(p):
            return loss_of(nnx.merge(graphdef, p)(x), y)

        loss, g = jax.value_and_grad(f)(params)
        u, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, u), opt, loss

    return _time(step, params, opt, steps)


def run_nnx_jit(steps: int) -> tuple[float, float]:
    model = NnxMLP(nnx.Rngs(1))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        loss, g = nnx.value_and_grad(lambda m: loss_of(m(x), y))(model)
        optimizer.update(model, g)
        return loss

    xs, ys = data(steps)
    t = time.perf_counter()
    step(model, optimizer, xs[0], ys[0]).block_until_ready()
    first = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(1, steps):
        loss = step(model, optimizer, xs[i], ys[i])
    loss.block_until_ready()
    return first, (steps - 1) * BATCH / (time.perf_counter() - t)


def _time(step, params, opt, steps: int) -> tuple[float, float]:
    xs, ys = data(steps)
    t = time.perf_counter()
    params, opt, loss = step(params, opt, xs[0], ys[0])
    loss.block_until_ready()
    first = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(1, steps):
        params, opt, loss = step(params, opt, xs[i], ys[i])
    loss.block_until_ready()
    return first, (steps - 1) * BATCH / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    args = p.parse_args()
    global MODEL
    MODEL = args.model
    ways = {"linen_jit": run_linen, "nnx_split_jit": run_nnx_split, "nnx_jit": run_nnx_jit}
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in ways}
    for _ in range(args.repeats):  # interleaved, so machine noise hits all three alike
        for name, fn in ways.items():
            results[name].append(fn(args.steps))
    base = statistics.median(r[1] for r in results["linen_jit"])
    summary = {}
    for name, rs in results.items():
        sps = statistics.median(r[1] for r in rs)
        first = statistics.median(r[0] for r in rs)
        summary[name] = {
            "samples_per_s": round(sps),
            "first_step_s": round(first, 3),
            "ratio_to_linen": round(sps / base, 3),
        }
        print(
            f"{name:>14}: {sps:10,.0f} samples/s  first step {first:.3f} s  ratio {sps / base:.2f}"
        )
    print(json.dumps({"model": args.model, **summary}))


if __name__ == "__main__":
    main()
