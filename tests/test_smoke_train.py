"""Three epochs of every trainable example on small synthetic data lower the loss.

A minimal loop (the full runtime is issue 5): the lowered model, the train section's loss and
Optax chain, one jitted step. ResNet-18 is left out: ImageNet-sized inputs are too slow for the
test budget on two CPU cores, and its shapes and counts are tested in test_lower_flax.py.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from dnn.compiler.lower_flax import lower_model
from dnn.compiler.lower_loss import lower_loss, lower_penalties
from dnn.compiler.rules import heads
from dnn.compiler.values import DTYPES

import dnn

# examples/*.dnn only: the zoo (examples/zoo/, ImageNet- and GPT-sized) is checked and lowered
# by tests/test_zoo.py, never trained; resnet18 is ImageNet-sized too.
EXAMPLES = [
    p
    for p in sorted((Path(__file__).parent.parent / "examples").glob("*.dnn"))
    if p.name != "resnet18.dnn"
]
N, BATCH, EPOCHS = 64, 16, 3


def synthetic(program: dnn.Program) -> tuple[dict, tuple[jnp.ndarray, ...]]:
    """Inputs, and targets for each output: labels of its classes (0/1 for one unit), or the
    inputs themselves for an autoencoder (`data.reconstruct`)."""
    rng = np.random.default_rng(0)
    g = program.model
    xs = {
        n.name: jnp.asarray(rng.normal(size=(N, *n.shape)), DTYPES[n.dtype])
        for n in g.nodes
        if n.op == "input"
    }
    if program.data is not None and program.data.reconstruct:  # an autoencoder: y = x
        return xs, (xs[g.inputs[0]].reshape(N, -1),)
    ys = tuple(jnp.asarray(rng.integers(0, max(g.node(o).shape[-1], 2), size=N)) for o in g.outputs)
    return xs, ys


def losses(program: dnn.Program):  # type: ignore[no-untyped-def]
    """The weighted sum of each output's loss (one output: its loss)."""
    parts = [(lower_loss(h.loss), h.weight) for h in heads(program.model, program.train)]

    def total(out, ys):  # type: ignore[no-untyped-def]
        outs = out if isinstance(out, tuple) else (out,)
        return sum(w * fn(o, y) for (fn, w), o, y in zip(parts, outs, ys, strict=True))

    return total


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_three_epochs_lower_the_loss(path: Path) -> None:
    program = dnn.load(str(path), overrides=["train.schedule=constant", "train.accumulate=1"])
    model = lower_model(program.model)
    loss_fn = losses(program)
    penalty = lower_penalties(program.model, program.train.regularizer)
    tx = program.build_optimizer(steps_per_epoch=N // BATCH)
    xs, ys = synthetic(program)
    variables = model.init(jax.random.key(0), {k: v[:2] for k, v in xs.items()})
    params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
    opt = tx.init(params)

    def objective(params, state, x, y, key):
        out, new_state = model.apply(
            {"params": params, **state}, x, train=True, rngs={"dropout": key}, mutable=list(state)
        )
        return loss_fn(out, y) + penalty(params), new_state

    @jax.jit
    def step(params, state, opt, x, y, key):
        (loss, state), grads = jax.value_and_grad(objective, has_aux=True)(params, state, x, y, key)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), state, opt, loss

    @jax.jit
    def whole_loss(params, state):  # jitted: an eager apply dispatches op by op (DenseNet: 40 s)
        return loss_fn(model.apply({"params": params, **state}, xs), ys)

    def epoch_loss() -> float:
        return float(whole_loss(params, state))

    before = epoch_loss()
    key = jax.random.key(1)
    for _ in range(EPOCHS):
        for i in range(0, N, BATCH):
            key, sub = jax.random.split(key)
            batch = {k: v[i : i + BATCH] for k, v in xs.items()}
            ybatch = tuple(y[i : i + BATCH] for y in ys)
            params, state, opt, _ = step(params, state, opt, batch, ybatch, sub)
    assert epoch_loss() < before
