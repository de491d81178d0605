"""The convolution family beyond `conv1d/2d/3d` (issue 15): transposed, depthwise and separable
convolutions, upsampling, adaptive pooling, zero padding and cropping.

Shapes leave out the batch axis and are channels-last, as in layers.py. Output lengths follow
PyTorch where it defines the word (ConvTranspose, AdaptiveAvgPool, Upsample), Keras where it does
(SeparableConv2D, DepthwiseConv2D, ZeroPadding2D, Cropping2D); each entry's formula says which.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..diagnostics import E_VALUE
from ..values import Symbol
from .core import Args, Problem, arg
from .layers import (
    LAYERS,
    SPATIAL_AXES,
    WEIGHT_ARGS,
    Shape,
    fmt_shape,
    need_rank,
    spatial_out,
)
from .types import Bool, EnumT, PaddingT, PosInt, SidesT, SizesT, SizeT

ShapeRule = Callable[[Args, Shape], Shape]

# ------------------------------------------------------------------ transposed convolutions


def transpose_out(n: int, k: int, s: int, d: int, pad: object, op: int) -> int:
    """PyTorch's ConvTranspose length: (n - 1)·s - 2·pad + d·(k - 1) + output_padding + 1;
    `same`: n·s (TF's conv_transpose `SAME`, the gradient of a `same` convolution)."""
    if isinstance(pad, Symbol):
        return n * s if pad.name == "same" else (n - 1) * s + d * (k - 1) + op + 1
    assert isinstance(pad, int)
    return (n - 1) * s - 2 * pad + d * (k - 1) + op + 1


def _conv_transpose(rank: int) -> None:
    name = f"conv_transpose{rank}d"
    meaning = SPATIAL_AXES[rank]

    def shape(a: Args, x: Shape) -> Shape:
        need_rank(x, rank + 1, name, meaning)
        out = []
        for i in range(rank):
            pad = a.padding if isinstance(a.padding, Symbol) else a.padding[i]
            m = transpose_out(
                x[i], a.kernel[i], a.stride[i], a.dilation[i], pad, a.output_padding[i]
            )
            if m < 1:
                raise Problem(
                    f"`{name}` output length {m} on spatial axis {i} is not positive: "
                    f"(n - 1)·stride - 2·padding + dilation·(kernel - 1) + output_padding + 1 "
                    f"with n = {x[i]}",
                    "use a smaller `padding`",
                    "padding",
                )
            out.append(m)
        return (*out, a.filters)

    def validate(a: Args) -> None:
        same = isinstance(a.padding, Symbol) and a.padding.name == "same"
        if same and any(a.output_padding):
            raise Problem(
                "`output_padding` does not apply with `padding = same`, whose output is "
                "input · stride",
                "remove `output_padding`, or give the padding as a number",
                "output_padding",
                E_VALUE,
            )
        for i, (op, s, d) in enumerate(zip(a.output_padding, a.stride, a.dilation, strict=True)):
            if op >= s and op >= d:
                raise Problem(
                    f"`output_padding = {op}` on spatial axis {i} must be smaller than the "
                    f"stride ({s}) or the dilation ({d})",
                    "output_padding only picks among the output lengths a stride allows: "
                    f"use at most {max(s, d) - 1}",
                    "output_padding",
                    E_VALUE,
                )

    LAYERS.add(
        name,
        example=f"{name}(2, kernel = 2, stride = 2)",
        args=(
            arg("filters", PosInt, doc="output channels"),
            arg("kernel", SizeT(rank), doc="window size, one int or one per spatial axis"),
            arg("stride", SizeT(rank), 1),
            arg("padding", PaddingT(rank), 0, "same | valid | cut from each side of the output"),
            arg("output_padding", SizeT(rank, min=0), 0, "extra length at the end of the output"),
            arg("dilation", SizeT(rank), 1),
            arg("use_bias", Bool, True),
            *WEIGHT_ARGS,
        ),
        shape=shape,
        params=lambda a, x: (
            math.prod(a.kernel) * x[-1] * a.filters + (a.filters if a.use_bias else 0)
        ),
        validate=validate,
        known_as=(f"ConvTranspose{rank}d", f"Conv{rank}DTranspose"),
        doc=f"{rank}-d transposed convolution (PyTorch's ConvTranspose{rank}d, Keras' "
        f"Conv{rank}DTranspose) over channels-last input ({meaning}); `valid` is padding 0, "
        "`same` gives input · stride (TF's `SAME`)",
        formula="y[i·s + k·d - pad, o] += x[i, c] W[k, c, o], then + b[o]; out = (n - 1)·s - "
        "2·pad + d·(k - 1) + output_padding + 1 (PyTorch); same: out = n·s, the first "
        "floor(max(d·(k - 1) + 1 - s, 0) / 2) cut on the left",
    )


for _r in (1, 2, 3):
    _conv_transpose(_r)

# ------------------------------------------------------------------ depthwise and separable


def _depthwise_shape(name: str) -> ShapeRule:
    def shape(a: Args, x: Shape) -> Shape:
        need_rank(x, 3, name, SPATIAL_AXES[2])
        out = a.filters if name == "separable_conv2d" else x[-1] * a.depth_multiplier
        return (*spatial_out(a, x, 2, name, a.kernel, a.dilation), out)

    return shape


_WINDOW_ARGS = (
    arg("kernel", SizeT(2), doc="window size, one int or one per spatial axis"),
    arg("depth_multiplier", PosInt, 1, "output channels per input channel in the depthwise step"),
    arg("stride", SizeT(2), 1),
    arg("padding", PaddingT(2), "valid", "same | valid | zeros added on each side"),
    arg("dilation", SizeT(2), 1),
    arg("use_bias", Bool, True),
)

LAYERS.add(
    "depthwise_conv2d",
    example="depthwise_conv2d(2)",
    args=(*_WINDOW_ARGS, *WEIGHT_ARGS),
    shape=_depthwise_shape("depthwise_conv2d"),
    params=lambda a, x: (
        math.prod(a.kernel) * x[-1] * a.depth_multiplier
        + (x[-1] * a.depth_multiplier if a.use_bias else 0)
    ),
    known_as=("DepthwiseConv2D",),
    doc="depthwise 2-d convolution (Keras' DepthwiseConv2D): each input channel convolved on "
    "its own with `depth_multiplier` filters; `conv2d(c·m, k, groups = c)` with Keras' names",
    formula="y[p, c·m + j] = b[c·m + j] + sum_k x[p·s + k·d - pad, c] W[k, c, j]; "
    "params k·k·C·m (+ C·m bias)",
)

LAYERS.add(
    "separable_conv2d",
    example="separable_conv2d(2, kernel = 2)",
    args=(
        arg("filters", PosInt, doc="output channels"),
        *_WINDOW_ARGS,
        arg("init", WEIGHT_ARGS[0].type, "glorot_uniform", "initializer of both kernels"),
        *WEIGHT_ARGS[1:3],
    ),
    shape=_depthwise_shape("separable_conv2d"),
    params=lambda a, x: (
        math.prod(a.kernel) * x[-1] * a.depth_multiplier
        + x[-1] * a.depth_multiplier * a.filters
        + (a.filters if a.use_bias else 0)
    ),
    known_as=("SeparableConv2D",),
    doc="depthwise separable 2-d convolution (Keras' SeparableConv2D; Chollet 2017): a "
    "depthwise convolution without bias, then a 1x1 convolution with one bias; the "
    "regularizer applies to both kernels",
    formula="h[p, c·m + j] = sum_k x[p·s + k·d - pad, c] D[k, c, j]; y[p, o] = b[o] + "
    "sum_q h[p, q] P[q, o]; params k·k·C·m + C·m·filters (+ filters bias)",
)

# ------------------------------------------------------------------ upsampling


def _spatial(x: Shape, name: str) -> int:
    """The number of spatial axes of a channels-last input (at least one)."""
    if len(x) < 2:
        raise Problem(
            f"`{name}` expects spatial axes and channels, got shape {fmt_shape(x)}",
            f"insert `reshape([...])` before `{name}` to give it (spatial axes, channels)",
            code="E0402",
        )
    return len(x) - 1


def per_axis(v: int | tuple[int, ...], n: int, name: str, what: str) -> tuple[int, ...]:
    """An int for every spatial axis, or a list of one per axis (refused otherwise)."""
    if isinstance(v, int):
        return (v,) * n
    if len(v) != n:
        raise Problem(
            f"`{what}` has {len(v)} values, but the input of `{name}` has {n} spatial "
            f"ax{'i' if n == 1 else 'e'}s",
            f"give one int for all axes, or {n}",
            what,
        )
    return v


def _upsample(a: Args, x: Shape) -> Shape:
    scale = per_axis(a.scale, _spatial(x, "upsample"), "upsample", "scale")
    return (*(n * s for n, s in zip(x, scale, strict=False)), x[-1])


LAYERS.add(
    "upsample",
    example="upsample(2)",
    args=(
        arg("scale", SizesT(), doc="factor per spatial axis"),
        arg("mode", EnumT(("nearest", "bilinear")), "nearest", "nearest | bilinear"),
    ),
    shape=_upsample,
    params=lambda a, x: 0,
    known_as=(
        "Upsample",
        "UpSampling1D",
        "UpSampling2D",
        "UpSampling3D",
        "UpsamplingNearest2d",
        "UpsamplingBilinear2d",
    ),
    doc="enlarge the spatial axes by integer factors (PyTorch's Upsample, Keras' UpSampling2D): "
    "`nearest` repeats each value; `bilinear` interpolates linearly along each spatial axis "
    "with half-pixel centres, as PyTorch's align_corners = false",
    formula="nearest: y[p] = x[floor(p / s)]; bilinear, per axis: u = max((p + 0.5) / s - 0.5, "
    "0), i = floor(u), y[p] = (1 - (u - i)) x[i] + (u - i) x[min(i + 1, n - 1)]",
)

# ------------------------------------------------------------------ adaptive pooling


def _adaptive(name: str) -> ShapeRule:
    def shape(a: Args, x: Shape) -> Shape:
        return (*per_axis(a.output_size, _spatial(x, name), name, "output_size"), x[-1])

    return shape


for _kind, _what in (("avg", "mean"), ("max", "max")):
    LAYERS.add(
        f"adaptive_{_kind}pool",
        example=f"adaptive_{_kind}pool(2)",
        args=(arg("output_size", SizesT(), doc="output length per spatial axis"),),
        shape=_adaptive(f"adaptive_{_kind}pool"),
        params=lambda a, x: 0,
        known_as=tuple(f"Adaptive{_kind.title()}Pool{r}d" for r in (1, 2, 3)),
        doc=f"{'average' if _kind == 'avg' else 'maximum'} over bins that split each spatial "
        f"axis into `output_size` parts (PyTorch's Adaptive{_kind.title()}Pool); bins may "
        "overlap when the length does not divide",
        formula=f"y[i, c] = {_what}_{{p in bin i}} x[p, c]; bin i of n -> out: "
        "[floor(i·n / out), ceil((i + 1)·n / out)) per axis",
    )

# ------------------------------------------------------------------ padding and cropping

# `cropping`, not `crop`: `crop` is as close to `dropot` as `dropout` is, and would join the
# did-you-mean of the most common typo.


def sides(v: object, n: int, name: str, what: str) -> tuple[tuple[int, int], ...]:
    """(before, after) per spatial axis from an int, a list per axis, or a list of pairs."""
    if isinstance(v, int):
        return ((v, v),) * n
    assert isinstance(v, tuple)
    if len(v) != n:
        raise Problem(
            f"`{what}` has {len(v)} entries, but the input of `{name}` has {n} spatial "
            f"ax{'i' if n == 1 else 'e'}s",
            f"give one int for all sides, {n} ints, or {n} `[before, after]` pairs",
            what,
        )
    return tuple((p, p) if isinstance(p, int) else p for p in v)


def _zero_pad(a: Args, x: Shape) -> Shape:
    pads = sides(a.padding, _spatial(x, "zero_pad"), "zero_pad", "padding")
    return (*(d + lo + hi for d, (lo, hi) in zip(x, pads, strict=False)), x[-1])


def _cropping(a: Args, x: Shape) -> Shape:
    cuts = sides(a.cropping, _spatial(x, "cropping"), "cropping", "cropping")
    for i, (d, (lo, hi)) in enumerate(zip(x, cuts, strict=False)):
        if lo + hi >= d:
            raise Problem(
                f"`cropping` removes {lo + hi} of the {d} values on spatial axis {i}, leaving nothing",
                f"crop fewer than {d} in all on that axis",
                "cropping",
            )
    return (*(d - lo - hi for d, (lo, hi) in zip(x, cuts, strict=False)), x[-1])


LAYERS.add(
    "zero_pad",
    example="zero_pad(1)",
    args=(arg("padding", SidesT(), doc="zeros on each side: n, [per axis], [[before, after]]"),),
    shape=_zero_pad,
    params=lambda a, x: 0,
    known_as=("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "ZeroPad1d", "ZeroPad2d"),
    doc="add zeros around the spatial axes (Keras' ZeroPadding1D/2D/3D)",
    formula="y = x with `before` zeros prepended and `after` appended on each spatial axis",
)

LAYERS.add(
    "cropping",
    example="cropping(1)",
    args=(arg("cropping", SidesT(), doc="values cut from each side, as zero_pad's padding"),),
    shape=_cropping,
    params=lambda a, x: 0,
    known_as=("Cropping1D", "Cropping2D", "Cropping3D"),
    doc="cut values off the edges of the spatial axes (Keras' Cropping1D/2D/3D)",
    formula="y = x[before : n - after] on each spatial axis",
)
