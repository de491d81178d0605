"""CPU convnets op by op: forward + gradient of single ops, alone and inside an XLA loop body.

`python bench/ops.py [--repeats 10] [--iters 4] [--only conv,pool,step]`

Ops (float32, NHWC, the shapes of issue 7):

- conv: 3x3 convolution 128x14x14x32 -> 64 (`lax.conv_general_dilated`, SAME), forward only,
  and forward + gradient with respect to the input and the kernel, the kernel only, the input
  only;
  and forward + gradient with the kernel gradient written as 9 shifted matrix products
  (`conv_shifted`, a `jax.custom_vjp`: exact up to float summation order);
- pool: 2x2 max-pool with stride 2 on 128x28x28x32, forward + gradient, through
  `flax.linen.max_pool` (XLA reduce-window; its gradient is select-and-scatter) and written as
  reshape + max (the window tiles the input, so the forward is identical; the gradient differs
  only where a window holds tied maxima, as after a ReLU that zeroed it, where it then flows
  to ReLU's zero-gradient side anyway), and as dnn lowers it now: the window's four strided
  slices combined by a chain of selects (first maximum wins; Flax's gradient exactly); and the
  same three poolings after cnn28's first convolution and ReLU (a block, kernel gradient);
- step: one whole training step of bench/specs/cnn28.dnn's twin (bench/handwritten.py) with
  each pooling, and with dnn's pooling and its one-channel convolution for the first layer
  (`lower_flax.one_channel_conv`: shifted sums forward, XLA's convolution for the gradients).

Each is timed three ways: a jitted call per iteration from a Python loop (`jit`), `iters`
iterations inside one `lax.scan` (`scan`), and inside one `lax.fori_loop` (`fori`); every
iteration feeds its gradient back into its input (`x - 1e-3 * g`) so nothing is hoisted out of
the loop. Reported: median milliseconds per iteration over `repeats`, after a warm-up call.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from common import median, print_json_last
from flax import linen as nn

Array = Any


def conv(x: Array, w: Array) -> Array:
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@jax.custom_vjp
def conv_shifted(x: Array, w: Array) -> Array:
    """`conv` whose kernel gradient is 9 shifted matrix products instead of a convolution."""
    return conv(x, w)


def _conv_fwd(x: Array, w: Array) -> tuple[Array, tuple[Array, Array]]:
    return conv(x, w), (x, w)


def _conv_bwd(res: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
    x, w = res
    kh, kw = w.shape[:2]
    _, vjp_x = jax.vjp(lambda x: conv(x, w), x)
    (dx,) = vjp_x(g)
    h, wd = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    rows = [
        jnp.stack([jnp.einsum("nhwc,nhwo->co", xp[:, i : i + h, j : j + wd], g) for j in range(kw)])
        for i in range(kh)
    ]
    return dx, jnp.stack(rows)


conv_shifted.defvjp(_conv_fwd, _conv_bwd)


def pool_flax(x: Array) -> Array:
    return nn.max_pool(x, (2, 2), (2, 2), "VALID")


def pool_reshape(x: Array) -> Array:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def pool_dnn(x: Array) -> Array:
    """What dnn lowers `maxpool(2)` on an even input to: strided slices and a select chain."""
    from dnn.compiler.lower_flax import _tiled_pool

    return _tiled_pool(x, (2, 2), "max")


# ------------------------------------------------------------------ the iterations
# Each case: initial carry (a tuple of arrays) and `update(carry) -> carry`, one iteration.


def conv_cases(key: Array) -> dict[str, tuple[tuple[Array, ...], Callable[..., Any]]]:
    kx, kw, kc = jax.random.split(key, 3)
    x = jax.random.normal(kx, (128, 14, 14, 32))
    w = jax.random.normal(kw, (3, 3, 32, 64)) * 0.1
    ct = jax.random.normal(kc, (128, 14, 14, 64))

    def loss(x: Array, w: Array) -> Array:
        return jnp.sum(conv(x, w) * ct)

    def shifted(c: tuple[Array, Array]) -> tuple[Array, Array]:
        gx, gw = jax.grad(lambda x, w: jnp.sum(conv_shifted(x, w) * ct), argnums=(0, 1))(*c)
        return c[0] - 1e-3 * gx, c[1] - 1e-3 * gw

    def fwd(c: tuple[Array, Array]) -> tuple[Array, Array]:
        x, w = c
        return x - 1e-3 * jnp.mean(conv(x, w), axis=-1, keepdims=True), w

    def both(c: tuple[Array, Array]) -> tuple[Array, Array]:
        gx, gw = jax.grad(loss, argnums=(0, 1))(*c)
        return c[0] - 1e-3 * gx, c[1] - 1e-3 * gw

    def kernel(c: tuple[Array, Array]) -> tuple[Array, Array]:
        return c[0], c[1] - 1e-3 * jax.grad(loss, argnums=1)(*c)

    def inputs(c: tuple[Array, Array]) -> tuple[Array, Array]:
        return c[0] - 1e-3 * jax.grad(loss, argnums=0)(*c), c[1]

    return {
        "conv 3x3 forward": ((x, w), fwd),
        "conv 3x3 forward + grad (input, kernel)": ((x, w), both),
        "conv 3x3 grad kernel only": ((x, w), kernel),
        "conv 3x3 grad input only": ((x, w), inputs),
        "conv 3x3 forward + grad, kernel grad as 9 shifted matmuls": ((x, w), shifted),
    }


def pool_cases(key: Array) -> dict[str, tuple[tuple[Array, ...], Callable[..., Any]]]:
    kx, kc = jax.random.split(key)
    x = jax.random.normal(kx, (128, 28, 28, 32))
    ct = jax.random.normal(kc, (128, 14, 14, 32))

    def case(pool: Callable[[Array], Array]) -> Callable[..., Any]:
        def update(c: tuple[Array]) -> tuple[Array]:
            return (c[0] - 1e-3 * jax.grad(lambda x: jnp.sum(pool(x) * ct))(c[0]),)

        return update

    x1 = jax.random.normal(kx, (128, 28, 28, 1))
    w1 = jax.random.normal(kc, (3, 3, 1, 32)) * 0.3

    def block(pool: Callable[[Array], Array]) -> Callable[..., Any]:
        """conv 3x3 1 -> 32, ReLU, pool (cnn28's first block); gradient for the kernel."""

        def update(c: tuple[Array]) -> tuple[Array]:
            g = jax.grad(lambda w: jnp.sum(pool(jax.nn.relu(conv(x1, w))) ** 2))(c[0])
            return (c[0] - 1e-3 * g,)

        return update

    return {
        "max-pool 2x2 forward + grad, flax.linen.max_pool": ((x,), case(pool_flax)),
        "max-pool 2x2 forward + grad, reshape + max": ((x,), case(pool_reshape)),
        "max-pool 2x2 forward + grad, slices + selects (dnn)": ((x,), case(pool_dnn)),
        "conv-relu-pool block 28x28x1 -> 32, flax.linen.max_pool": ((w1,), block(pool_flax)),
        "conv-relu-pool block, reshape + max": ((w1,), block(pool_reshape)),
        "conv-relu-pool block, slices + selects (dnn)": ((w1,), block(pool_dnn)),
    }


class _Net(nn.Module):
    """bench/handwritten.py's CNN28 with a choice of pooling."""

    pool: Callable[[Array], Array]
    conv: Any = None  # `conv_general_dilated` for nn.Conv (None: lax's)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for c in (32, 64):
            conv = nn.Conv(c, (3, 3), padding="SAME", conv_general_dilated=self.conv)
            x = self.pool(nn.relu(conv(x)))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


def step_cases(key: Array) -> dict[str, tuple[tuple[Array, ...], Callable[..., Any]]]:
    import optax
    from handwritten import load

    x, y = (jnp.asarray(a[:128]) for a in load("cnn28")["train"])
    out = {}
    from dnn.compiler.lower_flax import one_channel_conv

    pools = (
        ("flax.linen.max_pool", pool_flax, None),
        ("reshape + max", pool_reshape, None),
        ("slices + selects (dnn)", pool_dnn, None),
        ("dnn's pooling and one-channel convolution", pool_dnn, one_channel_conv),
    )
    for label, pool, conv_fn in pools:
        model, tx = _Net(pool, conv_fn), optax.adam(1e-3)
        params = model.init(key, x[:1])["params"]

        def update(c: tuple[Any, Any], model: Any = model, tx: Any = tx) -> tuple[Any, Any]:
            params, opt = c

            def loss(p: Any) -> Array:
                logits = model.apply({"params": p}, x)
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

            g = jax.grad(loss)(params)
            upd, opt = tx.update(g, opt, params)
            return optax.apply_updates(params, upd), opt

        out[f"cnn28 train step (batch 128), {label}"] = ((params, tx.init(params)), update)
    return out


# ------------------------------------------------------------------ the three ways


def ways(update: Callable[..., Any], iters: int) -> dict[str, Callable[..., Any]]:
    one = jax.jit(update)

    def per_call(c: Any) -> Any:
        for _ in range(iters):
            c = one(c)
        return c

    def scanned(c: Any) -> Any:
        return jax.lax.scan(lambda c, _: (update(c), None), c, None, length=iters)[0]

    def fori(c: Any) -> Any:
        return jax.lax.fori_loop(0, iters, lambda i, c: update(c), c)

    return {"jit": per_call, "scan": jax.jit(scanned), "fori": jax.jit(fori)}


def time_case(carry: Any, update: Callable[..., Any], iters: int, repeats: int) -> dict[str, float]:
    out = {}
    for way, f in ways(update, iters).items():
        jax.block_until_ready(f(carry))  # compile and warm up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            jax.block_until_ready(f(carry))
            times.append((time.perf_counter() - t) / iters * 1e3)
        out[way] = median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--iters", type=int, default=4, help="iterations per loop (jit: calls)")
    ap.add_argument("--only", default="conv,pool,step")
    args = ap.parse_args()
    key = jax.random.key(0)
    builders = {"conv": conv_cases, "pool": pool_cases, "step": step_cases}
    print(
        f"jax {jax.__version__}, backend {jax.default_backend()}; ms per iteration, medians of {args.repeats}\n"
    )
    print("| op | jit per call | in lax.scan | in lax.fori_loop | scan / jit |")
    print("|---|---:|---:|---:|---:|")
    results = {}
    for kind in args.only.split(","):
        for label, (carry, update) in builders[kind](key).items():
            r = time_case(carry, update, args.iters, args.repeats)
            results[label] = r
            print(
                f"| {label} | {r['jit']:.1f} | {r['scan']:.1f} | {r['fori']:.1f} | {r['scan'] / r['jit']:.2f}x |",
                flush=True,
            )
            print(f"  done: {label}", file=sys.stderr, flush=True)
    print_json_last({"ms_per_iteration": results})


if __name__ == "__main__":
    main()
