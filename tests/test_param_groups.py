"""Reduce-on-plateau, weight-decay masks, freezing, per-layer rate scales, accumulation."""

from __future__ import annotations

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np
import pytest
from dnn.compiler.driver import value  # noqa: E402
from dnn.compiler.lower_optax import decay_mask, plateau_start, plateau_step  # noqa: E402

import dnn  # noqa: E402


def test_plateau_follows_pytorch() -> None:
    ref, _ = value(
        "reduce_on_plateau(factor = 0.5, patience = 2, cooldown = 1, threshold = 0.0, "
        "threshold_mode = abs, min_lr = 0.3)",
        "schedule",
    )
    state, scales = plateau_start(ref), []
    for v in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85]:
        state = plateau_step(ref, state, v, base_lr=1.0)
        scales.append(state.scale)
    # worked by hand: the 3rd bad epoch after the best (0.9) halves the rate; one cooldown epoch
    # follows; 0.8 is a new best; three bad epochs later 0.25 is floored at min_lr = 0.3
    # epochs (0-based): bad at 2, 3, 4 → halve at 4; cooldown 5; bad 6; best 7; bad 8, 9, 10 → 0.3
    assert scales == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3]


def test_plateau_max_mode_relative_threshold() -> None:
    ref, _ = value(
        "reduce_on_plateau(monitor = val_accuracy, mode = max, patience = 0, threshold = 0.1)",
        "schedule",
    )
    state = plateau_start(ref)
    state = plateau_step(ref, state, 0.5, 1.0)  # first value is the best
    state = plateau_step(ref, state, 0.54, 1.0)  # < 0.5 · 1.1: no improvement → reduce
    assert state.scale == pytest.approx(0.1) and state.best == 0.5


PARAMS = {
    "dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
    "block/batchnorm": {"scale": jnp.ones(2), "bias": jnp.ones(2)},
    "head": {"kernel": jnp.ones((2, 1)), "bias": jnp.ones(1)},
}
GRADS = jax.tree.map(jnp.zeros_like, PARAMS)


def updates(src: str) -> dict:
    tx = dnn.loads(src).build_optimizer(steps_per_epoch=1)
    out, _ = tx.update(GRADS, tx.init(PARAMS), PARAMS)
    return jax.tree.map(np.asarray, out)


def test_decay_mask_skips_biases_and_scales() -> None:
    mask = decay_mask(PARAMS)
    assert mask["dense"] == {"kernel": True, "bias": False}
    assert mask["block/batchnorm"] == {"scale": False, "bias": False}
    # zero gradients: only decoupled decay moves parameters, and only the kernels
    out = updates("train {\n  optimizer = adamw(lr = 0.1, weight_decay = 0.5)\n}\n")
    np.testing.assert_allclose(out["dense"]["kernel"], -0.05)
    np.testing.assert_allclose(out["dense"]["bias"], 0.0)
    np.testing.assert_allclose(out["block/batchnorm"]["scale"], 0.0)
    out = updates(
        "train {\n  optimizer = adamw(lr = 0.1, weight_decay = 0.5)\n  decay_all = true\n}\n"
    )
    np.testing.assert_allclose(out["dense"]["bias"], -0.05)


def test_freeze_and_lr_scale() -> None:
    src = (
        "train {\n  optimizer = sgd(lr = 1.0, weight_decay = 1.0)\n  decay_all = true\n"
        '  freeze = ["dense"]\n  lr_scale = { "block/*": 0.1, head: 2.0 }\n}\n'
    )
    out = updates(src)
    np.testing.assert_allclose(out["dense"]["kernel"], 0.0)  # frozen
    np.testing.assert_allclose(out["block/batchnorm"]["scale"], -0.1)  # g = wd·p = 1, × 0.1
    np.testing.assert_allclose(out["head"]["bias"], -2.0)


def test_accumulate_averages_micro_batches() -> None:
    src = "train {\n  optimizer = sgd(lr = 1.0)\n  accumulate = 2\n}\n"
    tx = dnn.loads(src).build_optimizer(steps_per_epoch=1)
    p = {"w": jnp.zeros(1)}
    s = tx.init(p)
    u1, s = tx.update({"w": jnp.array([1.0])}, s, p)
    u2, s = tx.update({"w": jnp.array([3.0])}, s, p)
    assert float(u1["w"][0]) == 0.0 and float(u2["w"][0]) == -2.0  # mean of 1 and 3
