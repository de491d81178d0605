"""A convolution of a one-channel input is lowered, on the CPU, as a sum of shifted inputs
times the kernel's taps (forward) with XLA's convolution for the gradients: it must equal
`lax.conv_general_dilated`, values and gradients, and leave every other case to it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dnn.compiler.lower_flax import one_channel_conv
from jax import lax


def _dims(d: int) -> lax.ConvDimensionNumbers:
    """Flax's NHWC / HWIO layout for d spatial dimensions."""
    return lax.ConvDimensionNumbers(
        (0, d + 1, *range(1, d + 1)), (d + 1, d, *range(d)), (0, d + 1, *range(1, d + 1))
    )


CASES = [
    ((4, 10, 10, 1), (3, 3, 1, 5), "SAME"),
    ((4, 10, 9, 1), (3, 2, 1, 5), "VALID"),
    ((2, 12, 1), (5, 1, 4), "SAME"),  # 1-D
    ((2, 6, 5, 4, 1), (3, 3, 3, 1, 2), "SAME"),  # 3-D
    ((3, 8, 8, 1), (3, 3, 1, 4), ((2, 0), (1, 1))),  # explicit, uneven
]


@pytest.mark.parametrize(("xs", "ws", "padding"), CASES)
def test_equals_xla_convolution(xs: tuple, ws: tuple, padding: object) -> None:
    kx, kw, kc = jax.random.split(jax.random.key(0), 3)
    x, w = jax.random.normal(kx, xs), jax.random.normal(kw, ws)
    d = len(xs) - 2
    strides = (1,) * d

    def ours(x, w):
        return one_channel_conv(x, w, strides, padding, dimension_numbers=_dims(d))

    def ref(x, w):
        return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_dims(d))

    out = ref(x, w)
    ct = jax.random.normal(kc, out.shape)
    np.testing.assert_allclose(ours(x, w), out, rtol=1e-5, atol=1e-5)
    g_ours = jax.grad(lambda x, w: jnp.sum(ours(x, w) * ct), argnums=(0, 1))(x, w)
    g_ref = jax.grad(lambda x, w: jnp.sum(ref(x, w) * ct), argnums=(0, 1))(x, w)
    for a, b in zip(g_ours, g_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # the forward holds no convolution; the gradient is XLA's
    assert "conv_general_dilated" not in str(jax.make_jaxpr(ours)(x, w))


@pytest.mark.parametrize(
    ("xs", "ws", "kwargs"),
    [
        ((2, 8, 8, 2), (3, 3, 2, 4), {}),  # two channels
        ((2, 8, 8, 1), (3, 3, 1, 4), {"window_strides": (2, 2)}),
        ((2, 8, 8, 1), (3, 3, 1, 4), {"rhs_dilation": (2, 2)}),
    ],
)
def test_other_convolutions_are_xlas(xs: tuple, ws: tuple, kwargs: dict) -> None:
    x, w = jnp.ones(xs), jnp.ones(ws)
    args = {"window_strides": (1, 1), "padding": "SAME", "dimension_numbers": _dims(2), **kwargs}
    jaxpr = str(jax.make_jaxpr(lambda x, w: one_channel_conv(x, w, **args))(x, w))
    assert "conv_general_dilated" in jaxpr
    np.testing.assert_allclose(
        one_channel_conv(x, w, **args), lax.conv_general_dilated(x, w, **args), rtol=1e-6
    )


def test_a_spec_with_a_gray_image_input_uses_it_on_the_cpu() -> None:
    from dnn.compiler.lower_flax import lower_model

    import dnn

    program = dnn.loads(
        "dnn 1\nmodel m {\n  input image: f32[8, 8, 1]\n  conv2d(4, kernel = 3, padding = same)\n"
        "  conv2d(2, kernel = 3, padding = same)\n}\n"
    )
    model = lower_model(program.model, program.train.init)
    x = jnp.ones((2, 8, 8, 1))
    params = model.init(jax.random.key(0), x)
    jaxpr = str(jax.make_jaxpr(lambda p: model.apply(p, x))(params))
    assert jax.default_backend() == "cpu"
    assert jaxpr.count("conv_general_dilated") == 1  # the second layer (4 channels in) only


def test_bf16_inputs_are_summed_in_float32() -> None:
    kx, kw = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (2, 9, 9, 1)).astype(jnp.bfloat16)
    w = jax.random.normal(kw, (3, 3, 1, 6)).astype(jnp.bfloat16)
    args = {"window_strides": (1, 1), "padding": "SAME", "dimension_numbers": _dims(2)}
    ours = one_channel_conv(x, w, **args)
    assert ours.dtype == jnp.bfloat16
    # reference: XLA's convolution of the same values in float32, rounded once to bf16
    # (the products of two bf16 numbers are exact in float32); summing in bf16 instead would
    # round after every one of the 9 additions
    exact = lax.conv_general_dilated(x.astype(jnp.float32), w.astype(jnp.float32), **args)
    np.testing.assert_array_equal(
        np.asarray(ours, np.float32),
        np.asarray(exact.astype(jnp.bfloat16), np.float32),
    )
