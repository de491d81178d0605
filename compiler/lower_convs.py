"""Lowerings of the convolution family beyond `conv1d/2d/3d` (registry/convs.py): transposed,
depthwise and separable convolutions, upsampling, adaptive pooling, zero padding and cropping.

Imported by lower_flax.py, whose `@implements` table the layer registry reads; every size comes
from the IR node (its arguments and its checked output shape).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

from .ir import Node
from .lower_flax import _channels_last, _kernel_init, _padding, _weights, initializer
from .registry.convs import sides
from .registry.core import implements
from .values import Symbol

Array = Any


class _ConvTranspose(nn.Module):
    """PyTorch's ConvTranspose as one convolution over the stride-dilated input.

    y[i·s + k·d - p] += x[i] W[k] (the scatter form) equals a stride-1 convolution of the input
    dilated by s (s - 1 zeros between values) with the kernel flipped, padded by
    d·(k - 1) - p before and d·(k - 1) - p + output_padding after (negative pads cut);
    `lax.conv_general_dilated` takes exactly these as `lhs_dilation` and `padding`.
    """

    filters: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    use_bias: bool
    kernel_init: Callable[..., Array]
    bias_init: Callable[..., Array]

    @nn.compact
    def __call__(self, x: Array) -> Array:
        w = self.param("kernel", self.kernel_init, (*self.kernel, x.shape[-1], self.filters))
        d = len(self.kernel)
        flipped = w[(slice(None, None, -1),) * d]
        y = lax.conv_general_dilated(
            x,
            flipped.astype(x.dtype),
            (1,) * d,
            self.pads,
            lhs_dilation=self.stride,
            rhs_dilation=self.dilation,
            dimension_numbers=_channels_last(d),
        )
        if self.use_bias:
            y = y + _bias(self.param("bias", self.bias_init, (self.filters,)), y)
        return y


def _bias(b: Array, y: Array) -> Array:
    """The bias at full rank, as Flax adds it (no implicit rank promotion)."""
    return jnp.reshape(b, (1,) * (y.ndim - 1) + (-1,)).astype(y.dtype)


def transpose_pads(n: Node) -> tuple[tuple[int, int], ...]:
    """The (before, after) padding of the dilated input for each spatial axis (see above);
    `same`: TF's split, the gradient of a `same` convolution (output n·s)."""
    out = []
    for i, (k, s, d) in enumerate(
        zip(n.arg("kernel"), n.arg("stride"), n.arg("dilation"), strict=True)
    ):
        eff = d * (k - 1) + 1
        pad = n.arg("padding")
        if isinstance(pad, Symbol):
            left = max(eff - s, 0) // 2 if pad.name == "same" else 0
            before = eff - 1 - left
            after = s + eff - 2 - before if pad.name == "same" else eff - 1
        else:
            before = eff - 1 - pad[i]
            after = eff - 1 - pad[i] + n.arg("output_padding")[i]
        out.append((before, after))
    return tuple(out)


@implements("layer", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
def conv_transpose(n: Node, xs: list[Array], train: bool) -> Array:
    w = _weights(n)
    return _ConvTranspose(
        n.arg("filters"),
        n.arg("kernel"),
        n.arg("stride"),
        transpose_pads(n),
        n.arg("dilation"),
        w["use_bias"],
        w["kernel_init"],
        w["bias_init"],
        name=n.name,
    )(xs[0])


@implements("layer", "depthwise_conv2d")
def depthwise_conv2d(n: Node, xs: list[Array], train: bool) -> Array:
    """A grouped convolution with one group per input channel: output channel c·m + j is input
    channel c's j-th filter, Keras' DepthwiseConv2D order."""
    c = xs[0].shape[-1]
    return nn.Conv(
        c * n.arg("depth_multiplier"),
        n.arg("kernel"),
        strides=n.arg("stride"),
        padding=_padding(n.arg("padding")),
        kernel_dilation=n.arg("dilation"),
        feature_group_count=c,
        **_weights(n),
    )(xs[0])


class _Separable(nn.Module):
    """Keras' SeparableConv2D: a depthwise convolution without bias, then a 1x1 convolution
    with the layer's one bias; leaves `depthwise_kernel`, `pointwise_kernel`, `bias`."""

    filters: int
    multiplier: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: Any
    dilation: tuple[int, ...]
    use_bias: bool
    kernel_init: Callable[..., Array]
    bias_init: Callable[..., Array]

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = x.shape[-1]
        dw = self.param(
            "depthwise_kernel", self.kernel_init, (*self.kernel, 1, c * self.multiplier)
        )
        pw = self.param("pointwise_kernel", self.kernel_init, (c * self.multiplier, self.filters))
        h = lax.conv_general_dilated(
            x,
            dw.astype(x.dtype),
            self.stride,
            self.padding,
            rhs_dilation=self.dilation,
            dimension_numbers=_channels_last(2),
            feature_group_count=c,
        )
        y = h @ pw.astype(h.dtype)
        if self.use_bias:
            y = y + _bias(self.param("bias", self.bias_init, (self.filters,)), y)
        return y


@implements("layer", "separable_conv2d")
def separable_conv2d(n: Node, xs: list[Array], train: bool) -> Array:
    return _Separable(
        n.arg("filters"),
        n.arg("depth_multiplier"),
        n.arg("kernel"),
        n.arg("stride"),
        _padding(n.arg("padding")),
        n.arg("dilation"),
        n.arg("use_bias"),
        _kernel_init(n),
        initializer(n.arg("bias_init")),
        name=n.name,
    )(xs[0])


@implements("layer", "upsample")
def upsample(n: Node, xs: list[Array], train: bool) -> Array:
    """nearest: repeat; bilinear: `jax.image.resize`'s linear kernel, which samples at half-pixel
    centres, (p + 0.5) / s - 0.5, and renormalizes its weights at the edges: for enlarging,
    PyTorch's align_corners = False (tested against that formula in tests/test_conv_family.py).

    The bilinear map is separable: one spatial axis at a time it is a constant matrix
    (`_linear_matrix`) contracted with x along that axis, the numbers `jax.image.resize` gives,
    as a product every exporter converts for any batch size (jax2onnx's resize needs a
    constant one and refuses the antialiased kernel)."""
    x = xs[0]
    bilinear = str(n.arg("mode")) == "bilinear"
    for axis, (a, b) in enumerate(zip(x.shape[1:-1], n.shape[:-1], strict=True)):
        if bilinear:
            m = jnp.asarray(_linear_matrix(a, b), x.dtype)
            x = jnp.moveaxis(jnp.tensordot(m, x, axes=([1], [axis + 1])), 0, axis + 1)
        else:
            x = jnp.repeat(x, b // a, axis=axis + 1)
    return x


def _linear_matrix(a: int, b: int) -> np.ndarray:
    """M [b, a] with y = M x the linear resize of a samples to b >= a: output p samples the
    input at u = (p + 0.5) · a / b - 0.5 with the triangle kernel max(0, 1 - |u - j|), its
    weights renormalized to sum to 1 (the edges), as `jax.image.resize(..., "linear")`."""
    u = (np.arange(b) + 0.5) * a / b - 0.5
    w = np.maximum(0.0, 1.0 - np.abs(u[:, None] - np.arange(a)[None, :]))
    return w / w.sum(axis=1, keepdims=True)


def _bins(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive bins: [floor(i·n / out), ceil((i + 1)·n / out))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _adaptive(kind: str) -> Callable[[Node, list[Array], bool], Array]:
    def pool(n: Node, xs: list[Array], train: bool) -> Array:
        """Axis by axis (a mean or max over a product of bins is the mean or max of the
        per-axis ones): one gather of each bin's cells, padded to the longest bin by repeating
        its last cell, then a max (a repeat changes no max) or a masked mean."""
        x = xs[0]
        for axis, out in enumerate(n.shape[:-1], start=1):
            bins = _bins(x.shape[axis], out)
            width = max(hi - lo for lo, hi in bins)
            idx = [[min(lo + j, hi - 1) for j in range(width)] for lo, hi in bins]
            g = jnp.take(x, jnp.array(idx).reshape(-1), axis=axis)
            g = g.reshape((*x.shape[:axis], out, width, *x.shape[axis + 1 :]))
            if kind == "max":
                x = jnp.max(g, axis=axis + 1)
                continue
            cells = [[lo + j < hi for j in range(width)] for lo, hi in bins]
            shape = (1,) * axis + (out, width) + (1,) * (x.ndim - axis - 1)  # full rank
            mask = jnp.array(cells, x.dtype).reshape(shape)
            x = jnp.sum(g * mask, axis=axis + 1) / jnp.sum(mask, axis=axis + 1)
        return x

    return pool


adaptive_avgpool = implements("layer", "adaptive_avgpool")(_adaptive("avg"))
adaptive_maxpool = implements("layer", "adaptive_maxpool")(_adaptive("max"))


@implements("layer", "zero_pad")
def zero_pad(n: Node, xs: list[Array], train: bool) -> Array:
    x = xs[0]
    pads = sides(n.arg("padding"), x.ndim - 2, "zero_pad", "padding")
    return jnp.pad(x, ((0, 0), *pads, (0, 0)))


@implements("layer", "cropping")
def cropping(n: Node, xs: list[Array], train: bool) -> Array:
    x = xs[0]
    cuts = sides(n.arg("cropping"), x.ndim - 2, "cropping", "cropping")
    window = tuple(slice(lo, d - hi) for d, (lo, hi) in zip(x.shape[1:-1], cuts, strict=True))
    return x[(slice(None), *window, slice(None))]
