"""The reference for `bench/overhead.py`: each benchmark model written by hand in Flax + Optax.

What a good JAX user writes: a Linen module with the spec's architecture and initializers
(`glorot_uniform` kernels, zero biases, BatchNorm momentum 0.99 and eps 1e-5 as dnn's
defaults), `optax.adam`, the same batch size; the data placed on the device once; one
`jax.jit` step with donated buffers that gathers its batch by index, takes the gradient,
applies the update and accumulates the loss and the number correct on the device; a Python
loop over the batches of an epoch (reshuffled each epoch, the last partial batch dropped, as
the specs' `drop_last = true`); one jitted evaluation of a whole split.

As a script it is the process `dnn train` is compared with (`bench/overhead.py`,
`bench/phases.py`): `python bench/handwritten.py [mlp|cnn28|resnet] [--epochs 1]` loads and
standardizes the data as the spec does (same split sizes), trains, evaluates the validation
split each epoch and the test split at the end, and prints one line of JSON: the accuracies
and, with `--phases`, the seconds each phase of the process took.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import listen_compiles, make_digits28, process_age
from flax import linen as nn

glorot = nn.initializers.glorot_uniform()  # dnn's default kernel initializer


def _norm(train: bool) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-5)


class MLP(nn.Module):
    """64-256-128-10 with ReLU (bench/specs/mlp.dnn)."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.relu(nn.Dense(256, kernel_init=glorot)(x))
        x = nn.relu(nn.Dense(128, kernel_init=glorot)(x))
        return nn.Dense(10, kernel_init=glorot)(x)


class CNN28(nn.Module):
    """conv 32 - relu - pool - conv 64 - relu - pool - dense 10 (bench/specs/cnn28.dnn)."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for c in (32, 64):
            x = nn.relu(nn.Conv(c, (3, 3), padding="SAME", kernel_init=glorot)(x))
            x = nn.max_pool(x, (2, 2), (2, 2), "VALID")
        return nn.Dense(10, kernel_init=glorot)(x.reshape(x.shape[0], -1))


class Basic(nn.Module):
    """Two 3x3 convolutions with batch norm and a skip by addition (bench/specs/resnet.dnn)."""

    c: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        conv = nn.Conv(self.c, (3, 3), self.stride, "SAME", use_bias=False, kernel_init=glorot)
        h = nn.relu(_norm(train)(conv(x)))
        h = _norm(train)(
            nn.Conv(self.c, (3, 3), padding="SAME", use_bias=False, kernel_init=glorot)(h)
        )
        skip = x
        if self.stride != 1 or x.shape[-1] != self.c:
            proj = nn.Conv(self.c, (1, 1), self.stride, "VALID", use_bias=False, kernel_init=glorot)
            skip = _norm(train)(proj(x))
        return nn.relu(h + skip)


class ResNet(nn.Module):
    """conv_bn 16, 2 x basic 16, basic 32 / 2, basic 32, global average pool, dense 10."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = nn.Conv(16, (3, 3), padding="SAME", use_bias=False, kernel_init=glorot)
        x = nn.relu(_norm(train)(conv(x)))
        for c, stride in ((16, 1), (16, 1), (32, 2), (32, 1)):
            x = Basic(c, stride)(x, train)
        return nn.Dense(10, kernel_init=glorot)(jnp.mean(x, axis=(1, 2)))


@dataclass(frozen=True)
class Config:
    model: Callable[[], nn.Module]
    batch: int
    data: str  # "digits" (8x8) or "digits28" (bench/common.py)
    shape: tuple[int, ...]  # one example as the model reads it
    lr: float = 1e-3
    seed: int = 0


CONFIGS = {
    "mlp": Config(MLP, 64, "digits", (64,)),
    "cnn28": Config(CNN28, 128, "digits28", (28, 28, 1)),
    "resnet": Config(ResNet, 64, "digits", (8, 8, 1)),
}

# ------------------------------------------------------------------ data, as the specs load it


def split_sizes(n: int, fractions: tuple[float, ...] = (0.8, 0.1, 0.1)) -> list[int]:
    """Largest-remainder rounding, the sizes dnn's `split = {...}` gives."""
    exact = np.asarray(fractions) * n
    sizes = np.floor(exact).astype(int)
    sizes[np.argsort(-(exact - sizes), kind="stable")[: n - sizes.sum()]] += 1
    return [int(s) for s in sizes]


def load(name: str, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """train/val/test as float32 / int32 arrays, standardized with the train split's statistics."""
    cfg = CONFIGS[name]
    if cfg.data == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = d.data, d.target
    else:
        with np.load(make_digits28()) as z:
            x, y = z["x"].astype(np.float64), z["y"]
    order = np.random.default_rng(seed).permutation(len(y))
    parts = np.split(order, np.cumsum(split_sizes(len(y)))[:-1])
    train = x[parts[0]]
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return {
        s: (((x[i] - mean) / std).astype(np.float32).reshape(-1, *cfg.shape), y[i].astype(np.int32))
        for s, i in zip(("train", "val", "test"), parts, strict=True)
    }


# ------------------------------------------------------------------ the jitted pieces


@dataclass
class Reference:
    """One model's init, train step, epoch order and evaluation, each jitted once."""

    name: str
    cfg: Config = field(init=False)

    def __post_init__(self) -> None:
        self.cfg = CONFIGS[self.name]
        self.model = self.cfg.model()
        self.tx = optax.adam(self.cfg.lr)
        self.key = jax.random.key(self.cfg.seed)
        self.init = jax.jit(self._init)
        self.step = jax.jit(self._step, donate_argnums=(0, 1))
        self.order = jax.jit(self._order, static_argnums=(1,))
        self.evaluate = jax.jit(self._evaluate)
        # made by a jitted function, as dnn's are: with fresh `jnp.zeros` accumulators an epoch
        # of the MLP measured ~3 ms (~25%) slower than its steps (the first step off jit's fast
        # path, it seems)
        self.zero_acc = jax.jit(
            lambda: {"loss": jnp.zeros(()), "correct": jnp.zeros((), jnp.int32)}
        )

    def _init(self, x: jax.Array) -> dict[str, Any]:
        variables = self.model.init(self.key, x, train=False)
        params = variables["params"]
        return {
            "params": params,
            "stats": variables.get("batch_stats", {}),
            "opt": self.tx.init(params),
        }

    def _step(self, st: Any, acc: Any, x: jax.Array, y: jax.Array, order: jax.Array, i: Any) -> Any:
        idx = order[i]
        xb, yb = x[idx], y[idx]

        def loss_fn(params: Any) -> Any:
            if st["stats"]:
                variables = {"params": params, "batch_stats": st["stats"]}
                logits, upd = self.model.apply(variables, xb, train=True, mutable=["batch_stats"])
                stats = upd["batch_stats"]
            else:
                logits, stats = self.model.apply({"params": params}, xb, train=True), st["stats"]
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
            return loss, (logits, stats)

        (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(st["params"])
        updates, opt = self.tx.update(grads, st["opt"], st["params"])
        params = optax.apply_updates(st["params"], updates)
        acc = {
            "loss": acc["loss"] + loss * yb.shape[0],
            "correct": acc["correct"] + jnp.sum(jnp.argmax(logits, -1) == yb),
        }
        return {"params": params, "stats": stats, "opt": opt}, acc

    def _order(self, epoch: jax.Array, n: int) -> jax.Array:
        perm = jax.random.permutation(jax.random.fold_in(self.key, epoch), n)
        full = n // self.cfg.batch
        return perm[: full * self.cfg.batch].reshape(full, self.cfg.batch)

    def _evaluate(self, st: Any, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
        variables = {
            "params": st["params"],
            **({"batch_stats": st["stats"]} if st["stats"] else {}),
        }
        logits = self.model.apply(variables, x, train=False)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}

    def steps(self, n: int) -> int:
        return n // self.cfg.batch

    def epoch(self, st: Any, x: jax.Array, y: jax.Array, epoch: int) -> tuple[Any, Any]:
        """One epoch of per-step calls; nothing is read back to the host."""
        n = int(x.shape[0])
        order, acc = self.order(epoch, n), self.zero_acc()
        for i in range(self.steps(n)):
            st, acc = self.step(st, acc, x, y, order, i)
        return st, acc


# ------------------------------------------------------------------ the script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="mlp", choices=sorted(CONFIGS))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--phases", action="store_true", help="time each phase (adds a few syncs)")
    ap.add_argument("--cache", metavar="DIR", help="JAX's persistent compilation cache here")
    args = ap.parse_args()
    if args.cache:  # as dnn's enable_compile_cache does
        jax.config.update("jax_compilation_cache_dir", args.cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    phases = {"start + imports (jax, flax, optax)": process_age()}
    events, counts = listen_compiles()
    clock = time.perf_counter()

    def phase(name: str, out: Any = None) -> Any:
        nonlocal clock
        if args.phases:
            jax.block_until_ready(out)
            now = time.perf_counter()
            phases[name] = phases.get(name, 0.0) + now - clock
            clock = now
        return out

    ref = Reference(args.model)
    arrays = phase("data (load, split, standardize)", load(args.model))
    data = phase(
        "data to device", {k: (jnp.asarray(x), jnp.asarray(y)) for k, (x, y) in arrays.items()}
    )
    x, y = data["train"]
    st = phase("init (jitted)", ref.init(x[:1]))
    for epoch in range(1, args.epochs + 1):
        n = int(x.shape[0])
        order, acc = ref.order(epoch, n), ref.zero_acc()
        for i in range(ref.steps(n)):
            st, acc = ref.step(st, acc, x, y, order, i)
            if i == 0:
                st = phase("first step (trace + compile)", st)
        st = phase("other steps", st)
        train_loss = float(acc["loss"]) / (ref.steps(n) * ref.cfg.batch)
        val = {k: float(v) for k, v in ref.evaluate(st, *data["val"]).items()}
        phase("validation + read-back")
    test = {k: float(v) for k, v in ref.evaluate(st, *data["test"]).items()}
    phase("test evaluation")
    out = {"model": args.model, "train_loss": train_loss, "val": val, "test": test}
    if args.phases:
        phases["total (process age)"] = process_age()
        out.update(phases=phases, jax_events=events, counts=counts)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
