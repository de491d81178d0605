"""Layers and activations: arguments, static shape and parameter-count rules, docs, formulas.

Shapes leave out the batch axis and are channels-last (NHWC), as Flax is. Parameter counts
follow the published conventions (Keras for recurrent cells: LSTM 4u(f+u+1), GRU with
reset_after 3u(f+u+2)); the lowering builds exactly these.
"""

from __future__ import annotations

import math
from typing import Any

from ..diagnostics import E_VALUE
from ..values import Symbol
from .core import Args, Needs, Problem, SameAs, arg, registry
from .types import (
    Axis,
    Bool,
    LayerT,
    NonNegFloat,
    OptionalT,
    PaddingT,
    PosFloat,
    PosInt,
    Rate,
    RefT,
    ShapeT,
    SizeT,
    call,
)

Shape = tuple[int, ...]

LAYERS = registry(
    "layer",
    "layers",
    "Layers, applied in a chain or to named values.",
    implemented_in="dnn.compiler.lower_flax",
)
ACTIVATIONS = registry(
    "activation",
    "activations",
    "Element-wise nonlinearities; usable wherever a layer is (`dense(128) -> relu`).",
    implemented_in="dnn.compiler.lower_flax",
)

# Initializers defined by fan-in/fan-out need a weight matrix; a bias is a vector.
BIAS_REJECT = (
    "fan",
    "needs a weight matrix (it is defined by fan-in and fan-out); a bias is 1-D",
    "use `zeros`, `constant(...)`, `uniform(...)` or `normal(...)` for a bias",
)

WEIGHT_ARGS = (
    arg("init", RefT("initializer"), "glorot_uniform", "kernel initializer"),
    arg("bias_init", RefT("initializer", reject=BIAS_REJECT), "zeros", "bias initializer"),
    arg("regularizer", OptionalT(RefT("regularizer")), None, "penalty on the kernel"),
    arg("constraint", OptionalT(RefT("constraint")), None, "projection after each step"),
)


# ------------------------------------------------------------------ shape helpers


def need_rank(x: Shape, rank: int, layer: str, meaning: str) -> None:
    """Raise a rank problem unless `x` has exactly `rank` axes (batch axis not counted)."""
    if len(x) != rank:
        hint = None
        if len(x) < rank and rank >= 2:
            hint = f"insert `reshape([...])` before `{layer}` to give it ({meaning})"
            side = math.isqrt(x[0]) if len(x) == 1 and rank == 3 else 0
            if side and side * side == x[0]:
                hint = f"insert `reshape([{side}, {side}, 1])` before `{layer}`"
        elif len(x) > rank and rank == 1:
            hint = f"insert `flatten` before `{layer}`"
        elif rank == 2 and x:
            steps = f"{x[0]}, {math.prod(x[1:])}" if len(x) > 2 else f"{x[0]}, 1"
            hint = f"insert `reshape([{steps}])` before `{layer}` to make ({meaning})"
        raise Problem(
            f"`{layer}` expects an input of rank {rank} ({meaning}), got shape {fmt_shape(x)}",
            hint,
            code="E0402",
        )


def fmt_shape(x: Shape) -> str:
    return "(" + ", ".join(str(d) for d in x) + ("," if len(x) == 1 else "") + ")"


def window_out(n: int, k: int, s: int, d: int, pad: Any, axis: int, layer: str) -> int:
    """Output length of a convolution or pooling window along one axis."""
    eff = d * (k - 1) + 1
    if isinstance(pad, Symbol):
        out = -(-n // s) if pad.name == "same" else (n - eff) // s + 1
    else:
        out = (n + 2 * pad[axis] - eff) // s + 1
    if out < 1:
        raise Problem(
            f"`{layer}` window {eff} is larger than the input length {n} on spatial axis {axis}",
            "use `padding = same`, a smaller kernel or stride, or fewer downsampling layers",
            code="E0401",
        )
    return out


def spatial_out(a: Args, x: Shape, rank: int, layer: str, kernel: Shape, dilation: Shape) -> Shape:
    return tuple(
        window_out(x[i], kernel[i], a.stride[i], dilation[i], a.padding, i, layer)
        for i in range(rank)
    )


def ceil_out(a: Args, x: Shape, rank: int, layer: str) -> Shape:
    """Pooling output lengths with PyTorch's ceil_mode: the division rounds up, but the last
    window must start inside the input or its left padding (torch pooling_output_shape)."""
    out = []
    for i in range(rank):
        n, k, s = x[i], a.size[i], a.stride[i]
        p = 0 if isinstance(a.padding, Symbol) else a.padding[i]
        if n + 2 * p < k:
            window_out(n, k, s, 1, (p,) * rank, i, layer)  # raises the window-too-large problem
        m = -(-(n + 2 * p - k) // s) + 1
        out.append(m - 1 if (m - 1) * s >= n + p else m)
    return tuple(out)


# What the axes of a channels-last input of each spatial rank mean (for messages).
SPATIAL_AXES = {
    1: "length, channels",
    2: "height, width, channels",
    3: "depth, height, width, channels",
}

# ------------------------------------------------------------------ dense and convolutions


def _table(a: Args) -> str:
    return f"[{a.tie.arg('vocab')}, {a.tie.arg('dim')}]"


def _dense_shape(a: Args, x: Shape) -> Shape:
    """The output shape; tied (`tie = tok`), the table [vocab, dim] must be the kernel
    transposed: `units` = vocab, and `dim` input features."""
    if a.tie is not None:
        t, vocab, dim = a.tie.node, a.tie.arg("vocab"), a.tie.arg("dim")
        if a.units != vocab:
            raise Problem(
                f"`dense({a.units})` is tied to `{t}`, whose table {_table(a)} has {vocab} rows: "
                f"the tied kernel is its transpose [{dim}, {vocab}], one unit per token id",
                f"write `dense({vocab}, tie = {t})`",
                "units",
            )
        if x[-1] != dim:
            raise Problem(
                f"`dense` tied to `{t}` takes {dim} features (the kernel is the transpose of its "
                f"table {_table(a)}: [{dim}, {vocab}]), got shape {fmt_shape(x)}",
                f"project to {dim} features first: insert `dense({dim})` before it",
                "tie",
            )
    return (*x[:-1], a.units)


def _dense_validate(a: Args) -> None:
    if a.tie is not None:
        for name in ("regularizer", "constraint"):
            if getattr(a, name) is not None:
                raise Problem(
                    f"`{name}` of a tied `dense` would act on the table of `{a.tie.node}`, "
                    "which the `dense` does not own",
                    f"give the `{name}` to the embedding, or remove it here",
                    name,
                    E_VALUE,
                )


DENSE = LAYERS.add(
    "dense",
    example="dense(4)",
    args=(
        arg("units", PosInt, doc="output features"),
        arg(
            "tie",
            OptionalT(LayerT("embedding")),
            None,
            "share an `embedding`'s table [vocab, dim] as the kernel, transposed (weight "
            "tying: Press & Wolf 2017): the named output's layer, e.g. `tie = tok`",
            kw_only=True,
        ),
        arg("use_bias", Bool, True),
        *WEIGHT_ARGS,
    ),
    shape=_dense_shape,
    params=lambda a, x: (
        (0 if a.tie is not None else x[-1] * a.units) + (a.units if a.use_bias else 0)
    ),
    validate=_dense_validate,
    doc="fully connected layer, applied to the last axis; with `tie = tok`, its kernel is the "
    "table of the `embedding` whose output is `tok`, transposed (counted once, trained by the "
    "gradients of both uses; `init` does not apply)",
    formula="y = x W + b,  W: [in, units];  tied: W = Eᵀ, E: [vocab, dim] the embedding's table",
    aliases=("linear",),
)


def _conv(rank: int) -> None:
    name = f"conv{rank}d"
    meaning = SPATIAL_AXES[rank]

    def shape(a: Args, x: Shape) -> Shape:
        need_rank(x, rank + 1, name, meaning)
        if x[-1] % a.groups:
            raise Problem(
                f"`groups = {a.groups}` does not divide the {x[-1]} input channels",
                "choose `groups` dividing both input and output channels",
                "groups",
            )
        return (*spatial_out(a, x, rank, name, a.kernel, a.dilation), a.filters)

    def params(a: Args, x: Shape) -> int:
        return math.prod(a.kernel) * (x[-1] // a.groups) * a.filters + (
            a.filters if a.use_bias else 0
        )

    def validate(a: Args) -> None:
        if a.filters % a.groups:
            raise Problem(
                f"`groups = {a.groups}` does not divide `filters = {a.filters}`",
                "choose `groups` dividing both input and output channels",
                "groups",
            )

    LAYERS.add(
        name,
        example=f"{name}(2, kernel = 2)",
        args=(
            arg("filters", PosInt, doc="output channels"),
            arg("kernel", SizeT(rank), doc="window size, one int or one per spatial axis"),
            arg("stride", SizeT(rank), 1),
            arg("padding", PaddingT(rank), "valid", "same | valid | zeros added on each side"),
            arg("dilation", SizeT(rank), 1),
            arg("groups", PosInt, 1, "groups = in channels makes it depthwise"),
            arg("use_bias", Bool, True),
            *WEIGHT_ARGS,
        ),
        shape=shape,
        params=params,
        validate=validate,
        doc=f"{rank}-d convolution over channels-last input ({meaning})",
        formula="y[p, o] = b[o] + sum_{k, i in group(o)} x[p·s + k·d - pad, i] W[k, i, o]; "
        "out = floor((n + 2·pad - d·(k - 1) - 1) / s) + 1  (same: ceil(n / s))",
    )


for _r in (1, 2, 3):
    _conv(_r)


def _pool(kind: str, rank: int) -> None:
    name = f"{kind}pool{rank}d"
    meaning = SPATIAL_AXES[rank]

    def shape(a: Args, x: Shape) -> Shape:
        need_rank(x, rank + 1, name, meaning)
        if a.ceil_mode:
            return (*ceil_out(a, x, rank, name), x[-1])
        return (*spatial_out(a, x, rank, name, a.size, (1,) * rank), x[-1])

    def validate(a: Args) -> None:
        if a.ceil_mode and isinstance(a.padding, Symbol) and a.padding.name == "same":
            raise Problem(
                "`ceil_mode` does not apply with `padding = same`, which already covers the input",
                "remove `ceil_mode`, or give the padding as a number",
                "ceil_mode",
                E_VALUE,
            )

    what = "maximum" if kind == "max" else "average"
    divisor = (
        ""
        if kind == "max"
        else "; avg divides by the window's cells inside the padded input (PyTorch's "
        "count_include_pad): padding zeros count, cells past it (ceil_mode) do not"
    )
    LAYERS.add(
        name,
        args=(
            arg("size", SizeT(rank), 2, "window size"),
            arg("stride", SizeT(rank), SameAs("size")),
            arg("padding", PaddingT(rank), "valid"),
            arg("ceil_mode", Bool, False, "round the output length up (PyTorch's ceil_mode)"),
        ),
        shape=shape,
        params=lambda a, x: 0,
        validate=validate,
        doc=f"{rank}-d {what} pooling over windows",
        formula=f"y[p, c] = {'max' if kind == 'max' else 'mean'}_{{k in window}} x[p·s + k, c]; "
        "out = floor((n + 2·pad - k) / s) + 1 (same: ceil(n / s)); ceil_mode: "
        "ceil((n + 2·pad - k) / s) + 1, less one if the last window would start at or past "
        f"n + pad (PyTorch){divisor}",
        aliases=(f"{kind}pool",) if rank == 2 else (),
    )


for _k in ("max", "avg"):
    for _r in (1, 2, 3):
        _pool(_k, _r)


def _global_pool(kind: str) -> None:
    name = f"global_{kind}pool"

    def shape(a: Args, x: Shape) -> Shape:
        if len(x) < 2:
            raise Problem(
                f"`{name}` expects spatial axes and channels, got shape {fmt_shape(x)}",
                "apply it after a convolution",
                code="E0402",
            )
        return (x[-1],)

    LAYERS.add(
        name,
        shape=shape,
        params=lambda a, x: 0,
        doc=f"{'maximum' if kind == 'max' else 'average'} over all spatial axes, per channel",
        formula=f"y[c] = {'max' if kind == 'max' else 'mean'}_p x[p, c]",
    )


_global_pool("avg")
_global_pool("max")

# Layers that only move values (in evaluation): the range of their outputs is their input's.
_REARRANGES = frozenset({"rearranges"})

LAYERS.add(
    "flatten",
    shape=lambda a, x: (math.prod(x),),
    params=lambda a, x: 0,
    doc="all non-batch axes into one",
    formula="y = reshape(x, [batch, prod(shape)])",
    traits=_REARRANGES,
)


def _reshape(a: Args, x: Shape) -> Shape:
    size, target = math.prod(x), a.shape
    known = math.prod(d for d in target if d != -1)
    if -1 in target:
        if size % known:
            raise Problem(
                f"cannot reshape {fmt_shape(x)} ({size} values) to {list(target)}",
                f"the known axes multiply to {known}, which does not divide {size}",
                "shape",
            )
        return tuple(size // known if d == -1 else d for d in target)
    if known != size:
        raise Problem(
            f"cannot reshape {fmt_shape(x)} ({size} values) to {fmt_shape(target)} "
            f"({known} values)",
            "the sizes must multiply to the same number; -1 infers one",
            "shape",
        )
    return tuple(target)


LAYERS.add(
    "reshape",
    example="reshape([2, -1])",
    args=(arg("shape", ShapeT(), doc="target shape without the batch axis; one -1 is inferred"),),
    shape=_reshape,
    params=lambda a, x: 0,
    doc="a new shape with the same number of values",
    formula="y = reshape(x, [batch, *shape])",
    traits=_REARRANGES,
)

LAYERS.add(
    "dropout",
    example="dropout(0.5)",
    args=(arg("rate", Rate, doc="probability of dropping a unit"),),
    shape=lambda a, x: x,
    params=lambda a, x: 0,
    doc="inverted dropout: zero units at random while training and rescale the rest; "
    "identity at evaluation",
    formula="train: y = x · m / (1 - rate), m ~ Bernoulli(1 - rate); eval: y = x",
    traits=_REARRANGES,
)


def _norm_channels(a: Args, x: Shape, name: str) -> int:
    if not x:
        raise Problem(f"`{name}` needs at least one axis", code="E0402")
    axis = a.axis if hasattr(a, "axis") else -1
    if not -len(x) <= axis < len(x):
        raise Problem(f"`axis = {axis}` is out of range for shape {fmt_shape(x)}", arg="axis")
    return x[axis]


LAYERS.add(
    "batchnorm",
    args=(
        arg("momentum", Rate, 0.99, "decay of the running averages (Keras/Flax meaning)"),
        arg("eps", PosFloat, 1e-5),
        arg("axis", Axis, -1, "the feature axis"),
        arg("center", Bool, True, "learn a shift beta"),
        arg("scale", Bool, True, "learn a scale gamma"),
    ),
    shape=lambda a, x: x,
    params=lambda a, x: _norm_channels(a, x, "batchnorm") * (int(a.center) + int(a.scale)),
    state=lambda a, x: 2 * _norm_channels(a, x, "batchnorm"),
    doc="batch normalization (Ioffe & Szegedy 2015): batch statistics in training, running "
    "averages at evaluation",
    formula="y = gamma · (x - mu_B) / sqrt(var_B + eps) + beta; "
    "running = momentum · running + (1 - momentum) · batch",
    aliases=("batch_norm",),
)

LAYERS.add(
    "layernorm",
    args=(arg("eps", PosFloat, 1e-5), arg("center", Bool, True), arg("scale", Bool, True)),
    shape=lambda a, x: x,
    params=lambda a, x: _norm_channels(a, x, "layernorm") * (int(a.center) + int(a.scale)),
    doc="layer normalization (Ba et al. 2016) over the last axis",
    formula="y = gamma · (x - mean(x)) / sqrt(var(x) + eps) + beta",
    aliases=("layer_norm",),
)

# Group, instance and RMS normalization: statistics per example, never across the batch, so
# the same in training and evaluation and no running averages (no `state`). Channels last.
AFFINE_ARGS = (
    arg("center", Bool, True, "learn a per-channel shift beta"),
    arg("scale", Bool, True, "learn a per-channel scale gamma"),
)


def _affine(a: Args, channels: int) -> int:
    return channels * (int(a.center) + int(a.scale))


def _divisors(n: int, most: int | None = None) -> str:
    """`1, 2, 3 or 6`: the divisors of n (up to `most`)."""
    ds = [str(d) for d in range(1, (n if most is None else most) + 1) if n % d == 0]
    return ds[0] if len(ds) == 1 else ", ".join(ds[:-1]) + f" or {ds[-1]}"


def _groupnorm_params(a: Args, x: Shape) -> int:
    channels = _norm_channels(a, x, "groupnorm")
    if channels % a.groups:
        raise Problem(
            f"`groups = {a.groups}` does not divide the {channels} channels of the input",
            f"choose `groups` among the divisors of {channels}: {_divisors(channels)}",
            "groups",
        )
    if math.prod(x[:-1]) * (channels // a.groups) == 1:
        raise Problem(
            f"`groups = {a.groups}` leaves one value in each group of an input of shape "
            f"{fmt_shape(x)}: each normalizes to 0, and the output is beta whatever the input",
            f"use fewer groups: {_divisors(channels, a.groups - 1)}"
            if a.groups > 1
            else "a single value has nothing to normalize: remove the layer",
            "groups",
        )
    return _affine(a, channels)


LAYERS.add(
    "groupnorm",
    example="groupnorm(2)",
    args=(
        arg("groups", PosInt, doc="channel groups; must divide the channels"),
        arg("eps", PosFloat, 1e-5, "added to the variance inside the square root"),
        *AFFINE_ARGS,
    ),
    shape=lambda a, x: x,
    params=_groupnorm_params,
    doc="group normalization (Wu & He 2018): per example, mean and variance over the spatial "
    "axes and the channels of each of `groups` channel groups, then a per-channel scale and "
    "shift; PyTorch's `GroupNorm` (biased variance); no running statistics, the same in "
    "training and evaluation. `groups = 1` normalizes over all axes but the batch; `groups` = "
    "channels is `instancenorm`",
    formula="y[n, p, c] = gamma[c] · (x[n, p, c] - mu[n, g]) / sqrt(var[n, g] + eps) + beta[c]; "
    "g = floor(c / (C / groups)); mu, var: mean and biased variance over all positions p and "
    "the C / groups channels of group g",
    aliases=("group_norm",),
)


def _instancenorm_params(a: Args, x: Shape) -> int:
    if len(x) < 2:
        raise Problem(
            f"`instancenorm` normalizes each channel over the spatial axes, and an input of "
            f"shape {fmt_shape(x)} has none",
            "apply it after a convolution, or use `layernorm` to normalize a vector's features",
            code="E0402",
        )
    if math.prod(x[:-1]) == 1:  # PyTorch refuses it too ("more than 1 spatial element")
        raise Problem(
            f"`instancenorm` on shape {fmt_shape(x)} normalizes each channel over one "
            "position: each normalizes to 0, and the output is beta whatever the input",
            "apply it before the spatial axes shrink to one position, or use `layernorm`",
        )
    return _affine(a, x[-1])


LAYERS.add(
    "instancenorm",
    args=(arg("eps", PosFloat, 1e-5, "added to the variance inside the square root"), *AFFINE_ARGS),
    shape=lambda a, x: x,
    params=_instancenorm_params,
    doc="instance normalization (Ulyanov et al. 2016): per example and per channel, mean and "
    "variance over the spatial axes (an input needs at least one), then a per-channel scale "
    "and shift; PyTorch's `InstanceNorm2d(affine = True, track_running_stats = False)` "
    "(biased variance): the example's own statistics in training and in evaluation, no "
    "running averages",
    formula="y[n, p, c] = gamma[c] · (x[n, p, c] - mu[n, c]) / sqrt(var[n, c] + eps) + beta[c]; "
    "mu, var: mean and biased variance over all positions p (= groupnorm with groups = C)",
    aliases=("instance_norm",),
)

LAYERS.add(
    "rmsnorm",
    args=(
        arg("eps", PosFloat, 1e-6, "added to the mean square inside the square root"),
        arg("scale", Bool, True, "learn a scale g"),
    ),
    shape=lambda a, x: x,
    params=lambda a, x: _norm_channels(a, x, "rmsnorm") * int(a.scale),
    doc="root-mean-square normalization (Zhang & Sennrich 2019) over the last axis: no "
    "centering and no shift; Flax's `RMSNorm`, and PyTorch's `RMSNorm` given the same `eps` "
    "(PyTorch's default is the dtype's machine epsilon, Flax's and ours 1e-6)",
    formula="y = g · x / sqrt(mean(x²) + eps),  mean over the last axis, g: [features]",
    aliases=("rms_norm",),
)

LAYERS.add(
    "local_response_norm",
    args=(
        arg("size", PosInt, 5, "channels in the window"),
        arg("alpha", NonNegFloat, 1e-4),
        arg("beta", NonNegFloat, 0.75),
        arg("k", NonNegFloat, 2.0),
    ),
    shape=lambda a, x: x,
    params=lambda a, x: 0,
    doc="AlexNet's normalization across neighbouring channels (Krizhevsky et al. 2012)",
    formula="y_c = x_c / (k + alpha · sum_{c' in [c - size/2, c + size/2]} x_{c'}^2)^beta",
    aliases=("lrn",),
)

LAYERS.add(
    "embedding",
    example="embedding(10, 4)",
    args=(
        arg("vocab", PosInt, doc="number of distinct token ids"),
        arg("dim", PosInt, doc="vector size"),
        arg("init", RefT("initializer"), "uniform"),
    ),
    shape=lambda a, x: (*x, a.dim),
    params=lambda a, x: a.vocab * a.dim,
    int_input=True,
    needs=Needs(dtype="int", ids="vocab"),
    doc="a learned vector per integer token id (0 <= id < vocab; an id outside has no row)",
    formula="y[..., :] = E[x[...], :],  E: [vocab, dim]",
)


def _recurrent(name: str, gates: int, biases: int, doc: str, formula: str) -> None:
    def shape(a: Args, x: Shape) -> Shape:
        need_rank(x, 2, name, "time, features")
        units = a.units * (2 if a.bidirectional else 1)
        return (x[0], units) if a.return_sequences else (units,)

    def params(a: Args, x: Shape) -> int:
        u, f = a.units, x[-1]
        return gates * u * (f + u + biases) * (2 if a.bidirectional else 1)

    def keeps(a: Args, x: Shape, y: Shape) -> int:
        """Every step keeps, per gate and unit, the input and recurrent projections and the
        gate's value, and its backward pass as many gradients (6 per gate), plus the state:
        (6 gates + 1) values per unit, step and direction. Measured on XLA's CPU backend for
        one layer (bench/memory_estimate.py --recurrent): lstm 25.0-25.7, gru 19.2-19.5,
        simple_rnn 7.1-7.3 per unit and step, as 6 g + 1 gives 25, 19 and 7."""
        return x[0] * a.units * (2 if a.bidirectional else 1) * (6 * gates + 1)

    LAYERS.add(
        name,
        example=f"{name}(4)",
        args=(
            arg("units", PosInt, doc="hidden state size"),
            arg("return_sequences", Bool, False, "output every step, not only the last"),
            arg("bidirectional", Bool, False, "also run backwards and concatenate"),
            arg("init", RefT("initializer"), "glorot_uniform", "input kernel initializer"),
            arg(
                "recurrent_init", RefT("initializer"), "orthogonal", "recurrent kernel initializer"
            ),
        ),
        shape=shape,
        params=params,
        keeps=keeps,
        doc=doc,
        formula=formula,
    )


_recurrent(
    "simple_rnn", 1, 1, "Elman recurrent layer with tanh", "h_t = tanh(x_t W + h_{t-1} U + b)"
)
_recurrent(
    "lstm",
    4,
    1,
    "long short-term memory (Hochreiter & Schmidhuber 1997)",
    "i, f, o = sigmoid(x W_{i,f,o} + h U_{i,f,o} + b); g = tanh(x W_g + h U_g + b_g); "
    "c_t = f c_{t-1} + i g; h_t = o tanh(c_t)",
)
_recurrent(
    "gru",
    3,
    2,
    "gated recurrent unit (Cho et al. 2014), reset gate after the matmul (Keras default)",
    "z, r = sigmoid(x W_{z,r} + b_{z,r} + h U_{z,r} + c_{z,r}); "
    "n = tanh(x W_n + b_n + r (h U_n + c_n)); h_t = (1 - z) n + z h_{t-1}",
)


# ------------------------------------------------------------------ merges


def _same_shapes(name: str) -> Any:
    def shape(a: Args, xs: tuple[Shape, ...]) -> Shape:
        for other in xs[1:]:
            if other != xs[0]:
                raise Problem(
                    f"`{name}` inputs have different shapes: "
                    + " and ".join(fmt_shape(x) for x in xs),
                    _projection_hint(xs[0], other),
                    code="E0403",
                )
        return xs[0]

    return shape


def _projection_hint(a: Shape, b: Shape) -> str:
    if len(a) == len(b) == 3:
        stride = a[0] // b[0] if b[0] and a[0] % b[0] == 0 else (b[0] // a[0] if a[0] else 1)
        return (
            f"project one input to match, e.g. `conv2d({b[-1]}, kernel = 1, stride = "
            f"{max(stride, 1)})` on the skip path"
        )
    return f"project one input to match, e.g. `dense({b[-1]})`"


for _name, _doc, _formula in (
    ("add", "element-wise sum (residual connections)", "y = x_1 + x_2 + ..."),
    ("subtract", "difference of two inputs", "y = x_1 - x_2"),
    ("multiply", "element-wise product (gating)", "y = x_1 · x_2 · ..."),
    ("average", "element-wise mean", "y = (x_1 + ... + x_n) / n"),
    ("maximum", "element-wise maximum", "y = max(x_1, ..., x_n)"),
):
    LAYERS.add(
        _name,
        shape=_same_shapes(_name),
        params=lambda a, xs: 0,
        arity=(2, 2) if _name == "subtract" else (2, None),
        doc=_doc,
        formula=_formula,
    )


def _concat(a: Args, xs: tuple[Shape, ...]) -> Shape:
    rank = len(xs[0])
    if any(len(x) != rank for x in xs):
        raise Problem(
            "`concat` inputs must have the same rank, got " + ", ".join(fmt_shape(x) for x in xs),
            "reshape or flatten one of them first",
            code="E0403",
        )
    if not -rank <= a.axis < rank:
        raise Problem(
            f"`axis = {a.axis}` is out of range for inputs of rank {rank}",
            f"use an axis from {-rank} to {rank - 1}; -1 is the channels",
            arg="axis",
            code="E0401",
        )
    axis = a.axis % rank
    for x in xs[1:]:
        if any(x[i] != xs[0][i] for i in range(rank) if i != axis):
            raise Problem(
                "`concat` inputs differ outside the joined axis: "
                + " and ".join(fmt_shape(y) for y in xs),
                "make the other axes equal, e.g. with pooling or `padding = same`",
                code="E0403",
            )
    return tuple(sum(x[i] for x in xs) if i == axis else xs[0][i] for i in range(rank))


LAYERS.add(
    "concat",
    args=(arg("axis", Axis, -1),),
    shape=_concat,
    params=lambda a, xs: 0,
    arity=(2, None),
    doc="join inputs along an axis (DenseNet-style skips)",
    formula="y = [x_1 | x_2 | ...] along `axis`",
    aliases=("concatenate",),
)

# ------------------------------------------------------------------ activations


def _act(
    name: str,
    doc: str,
    formula: str,
    *args: Any,
    aliases: tuple[str, ...] = (),
    traits: frozenset[str] = frozenset({"pointwise"}),
) -> None:
    ACTIVATIONS.add(
        name,
        args=args,
        shape=lambda a, x: x,
        params=lambda a, x: 0,
        doc=doc,
        formula=formula,
        aliases=aliases,
        traits=traits,
    )


_SATURATING = frozenset({"pointwise", "saturating"})
_UNIT = frozenset({"unit_range"})  # outputs in [0, 1]


_act("identity", "no change", "y = x", aliases=("linear_activation",))
_act("sigmoid", "logistic function", "y = 1 / (1 + exp(-x))", traits=_SATURATING | _UNIT)
_act("tanh", "hyperbolic tangent", "y = tanh(x)", traits=_SATURATING)
_act("relu", "rectified linear unit", "y = max(0, x)")
_act("relu6", "ReLU capped at 6 (MobileNet)", "y = min(max(0, x), 6)")
_act(
    "leaky_relu",
    "ReLU with a small slope for negative inputs",
    "y = x if x > 0 else slope · x",
    arg("negative_slope", NonNegFloat, 0.01),
)
_act(
    "elu",
    "exponential linear unit (Clevert et al. 2015)",
    "y = x if x > 0 else alpha · (exp(x) - 1)",
    arg("alpha", PosFloat, 1.0),
)
_act(
    "selu",
    "scaled ELU, self-normalizing (Klambauer et al. 2017)",
    "y = 1.0507 · (x if x > 0 else 1.67326 · (exp(x) - 1))",
)
_act(
    "gelu",
    "Gaussian error linear unit (Hendrycks & Gimpel 2016)",
    "y = x · Phi(x); approximate: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))",
    arg("approximate", Bool, False, "use the tanh approximation"),
)
_act("silu", "sigmoid-weighted linear unit", "y = x · sigmoid(x)", aliases=("swish",))
_act("softplus", "smooth ReLU", "y = log(1 + exp(x))")
_act("softsign", "x over one plus its magnitude", "y = x / (1 + |x|)", traits=_SATURATING)
_act(
    "hard_sigmoid",
    "piecewise-linear sigmoid",
    "y = relu6(x + 3) / 6",
    traits=_SATURATING | _UNIT,
)
_act("hard_tanh", "tanh clipped linear", "y = clip(x, -1, 1)", traits=_SATURATING)
_act("mish", "self-regularized activation (Misra 2019)", "y = x · tanh(softplus(x))")
_act(
    "softmax",
    "normalized exponentials along an axis",
    "y_i = exp(x_i) / sum_j exp(x_j)",
    arg("axis", Axis, -1),
    traits=_UNIT,
)
_act(
    "log_softmax",
    "logarithm of softmax, computed stably",
    "y_i = x_i - log sum_j exp(x_j)",
    arg("axis", Axis, -1),
    traits=frozenset(),
)

ACTIVATIONS.add(
    "prelu",
    args=(
        arg("shared", Bool, False, "one slope for all channels instead of one per channel"),
        arg("init", RefT("initializer"), call("constant", value=0.25)),
    ),
    shape=lambda a, x: x,
    params=lambda a, x: 1 if a.shared else x[-1],
    doc="leaky ReLU with a learned slope (He et al. 2015), per channel by default",
    formula="y = x if x > 0 else a_c · x",
)
