"""Pooling whose windows tile the input is lowered as reshape + reduce: it must equal Flax's
windowed pooling, values and gradients (random inputs: no ties between maxima)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dnn.compiler.lower_flax import _tiled_pool, _tiles


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(
    ("shape", "window"), [((3, 8, 8, 5), (2, 2)), ((2, 12, 6, 3), (3, 2)), ((2, 9, 4), (3,))]
)
def test_tiled_pooling_equals_flax(kind: str, shape: tuple, window: tuple) -> None:
    x = jax.random.normal(jax.random.key(0), shape)
    ref_fn = nn.max_pool if kind == "max" else nn.avg_pool

    def ours(v):
        return jnp.sum(jnp.sin(_tiled_pool(v, window, kind)))

    def ref(v):
        return jnp.sum(jnp.sin(ref_fn(v, window, window, "VALID")))

    np.testing.assert_allclose(
        _tiled_pool(x, window, kind), ref_fn(x, window, window, "VALID"), rtol=1e-6
    )
    np.testing.assert_allclose(jax.grad(ours)(x), jax.grad(ref)(x), rtol=1e-5, atol=1e-7)


def test_only_exact_tilings_take_the_fast_path() -> None:
    assert _tiles((8, 8), (2, 2), (2, 2), "VALID")
    assert _tiles((8, 8), (2, 2), (2, 2), [(0, 0), (0, 0)])
    assert not _tiles((7, 8), (2, 2), (2, 2), "VALID")  # a remainder row
    assert not _tiles((8, 8), (3, 3), (2, 2), "VALID")  # overlapping windows
    assert not _tiles((8, 8), (2, 2), (2, 2), "SAME")  # padding
