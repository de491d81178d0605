"""Pooling whose windows tile the input is lowered without XLA's reduce-window: strided
slices combined elementwise (small windows) or reshape + reduce (large ones). It must equal
Flax's windowed pooling: values and gradients, ties between maxima and NaN included."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dnn.compiler import lower_flax
from dnn.compiler.lower_flax import _tiled_pool, _tiles

CASES = [
    ((3, 8, 8, 5), (2, 2)),
    ((2, 12, 6, 3), (3, 2)),
    ((2, 9, 4), (3,)),
    ((2, 4, 4, 4, 3), (2, 2, 2)),
    ((2, 20, 20, 3), (5, 5)),  # 25 elements a window: the reshape path
]


def _flax(kind: str) -> object:
    return nn.max_pool if kind == "max" else nn.avg_pool


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(("shape", "window"), CASES)
def test_tiled_pooling_equals_flax(kind: str, shape: tuple, window: tuple) -> None:
    x = jax.random.normal(jax.random.key(0), shape)
    ref_fn = _flax(kind)

    def ours(v):
        return jnp.sum(jnp.sin(_tiled_pool(v, window, kind)))

    def ref(v):
        return jnp.sum(jnp.sin(ref_fn(v, window, window, "VALID")))

    np.testing.assert_allclose(
        _tiled_pool(x, window, kind), ref_fn(x, window, window, "VALID"), rtol=1e-6
    )
    np.testing.assert_allclose(jax.grad(ours)(x), jax.grad(ref)(x), rtol=1e-5, atol=1e-7)


def test_ties_send_the_gradient_to_the_first_maximum_as_flax_does() -> None:
    # after a ReLU whole windows are zeros; here ties of positive values, not after a ReLU
    x = jnp.asarray(
        np.array(
            [[3.0, 3.0, 1.0, 2.0], [3.0, 0.0, 2.0, 2.0], [5.0, 5.0, -1, -1], [5.0, 5.0, -1, -1]]
        )
    )[None, :, :, None]
    assert lower_flax.SLICED_WINDOW_MAX >= 4
    mine = jax.grad(
        lambda v: jnp.sum(_tiled_pool(v, (2, 2), "max") * jnp.arange(1.0, 5.0).reshape(1, 2, 2, 1))
    )(x)
    theirs = jax.grad(
        lambda v: jnp.sum(
            nn.max_pool(v, (2, 2), (2, 2), "VALID") * jnp.arange(1.0, 5.0).reshape(1, 2, 2, 1)
        )
    )(x)
    expected = np.zeros((4, 4))
    expected[0, 0] = 1.0  # first of three 3s
    expected[0, 3] = 2.0  # first of three 2s (row-major: (0, 3) before (1, 2))
    expected[2, 0] = 3.0  # first of four 5s
    expected[2, 2] = 4.0  # first of four -1s
    np.testing.assert_array_equal(np.asarray(mine)[0, :, :, 0], expected)
    np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))


def test_nan_propagates_through_max_pooling() -> None:
    x = jnp.ones((1, 4, 4, 1)).at[0, 1, 1, 0].set(jnp.nan).at[0, 2, 3, 0].set(jnp.nan)
    out = np.asarray(_tiled_pool(x, (2, 2), "max"))[0, :, :, 0]
    assert np.isnan(out[0, 0]) and np.isnan(out[1, 1])
    assert out[0, 1] == 1.0 and out[1, 0] == 1.0


def test_only_exact_tilings_take_the_fast_path() -> None:
    assert _tiles((8, 8), (2, 2), (2, 2), "VALID")
    assert _tiles((8, 8), (2, 2), (2, 2), [(0, 0), (0, 0)])
    assert not _tiles((7, 8), (2, 2), (2, 2), "VALID")  # a remainder row
    assert not _tiles((8, 8), (3, 3), (2, 2), "VALID")  # overlapping windows
    assert not _tiles((8, 8), (2, 2), (2, 2), "SAME")  # padding
