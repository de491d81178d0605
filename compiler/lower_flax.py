"""IR → a Flax Linen module (issue 3, in progress).

Linen, not NNX: a Linen model is a pure `apply(variables, x)`, which is what a jitted train
step, `lax.scan` over epochs and sharding want; measured on this machine for a 784-512-256-10
MLP, a Linen step under `jax.jit` ran as fast as an NNX model split once into graphdef + state,
and 18% faster than calling `nnx.jit` on the module each step (issue 3's numbers).

Parameters live under the IR node names (`params["basic_1/conv_bn/conv2d"]["kernel"]`), the
contract `lower_optax` relies on for freeze, lr_scale and the weight-decay mask. Each layer,
activation and initializer word has one function here, tagged `@implements(kind, name)` (the
registry finds it by that tag, DESIGN §7); sizes come from the IR, never recomputed.
Runs of identical block instances that the model is asked to scan (`scan`, from
`lower_scan.plan`) are one `nn.scan` whose weights stack under the run's key
(`params["res..res_63"]["dense"]["kernel"]`, leading axis N); see lower_scan.py.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from .diagnostics import InternalError
from .ir import Graph, Node
from .lower_scan import CARRY, Group, ScanPlan, frozen, skipped
from .registry.core import implementation, implements
from .registry.layers import LAYERS
from .registry.weights import INITIALIZERS
from .values import Ref, Symbol

Array = Any
# The spec's `train.init` while a Model is being traced (layers that write no `init` use it).
_DEFAULT_INIT: contextvars.ContextVar[Ref | None] = contextvars.ContextVar("init", default=None)
# The embedding tables built so far while a Model is traced, by node name: a tied `dense`
# (`tie = tok`) reads its kernel here. A fresh dict per trace (`Model.__call__`).
_TABLES: contextvars.ContextVar[dict[str, Array]] = contextvars.ContextVar("tables")

# ------------------------------------------------------------------ initializers

_GAINS = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "selu": 0.75}  # PyTorch's gains
Init = Callable[..., Array]  # a `jax.nn.initializers` function: (key, shape, dtype) -> array
_vs: Any = jax.nn.initializers.variance_scaling  # its mode/distribution are Literal-typed


def initializer(ref: Ref) -> Init:
    """A registry initializer as a `jax.nn.initializers` function (fans from the kernel shape)."""
    return INITIALIZERS.implementation(ref.name)(dict(ref.args))


@implements("initializer", "zeros")
def zeros(a: dict[str, Any]) -> Init:
    return jax.nn.initializers.constant(0.0)


@implements("initializer", "ones")
def ones(a: dict[str, Any]) -> Init:
    return jax.nn.initializers.constant(1.0)


@implements("initializer", "constant")
def constant(a: dict[str, Any]) -> Init:
    return jax.nn.initializers.constant(a.get("value", 0.0))


@implements("initializer", "uniform")
def uniform(a: dict[str, Any]) -> Init:
    low, high = a["low"], a["high"]
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, low, high)


def _shifted(base: Init, mean: float) -> Init:
    return lambda key, shape, dtype=jnp.float32: mean + base(key, shape, dtype)


@implements("initializer", "normal")
def normal(a: dict[str, Any]) -> Init:
    return _shifted(jax.nn.initializers.normal(a["std"]), a["mean"])


@implements("initializer", "truncated_normal")
def truncated_normal(a: dict[str, Any]) -> Init:
    return _shifted(jax.nn.initializers.truncated_normal(a["std"]), a["mean"])


@implements("initializer", "glorot_uniform")
def glorot_uniform(a: dict[str, Any]) -> Init:
    return _vs(a["gain"] ** 2, "fan_avg", "uniform")


@implements("initializer", "glorot_normal")
def glorot_normal(a: dict[str, Any]) -> Init:
    return _vs(a["gain"] ** 2, "fan_avg", "normal")


def _he_gain2(a: dict[str, Any]) -> float:
    nl = str(a["nonlinearity"])
    return 2.0 / (1 + a["a"] ** 2) if nl in ("relu", "leaky_relu") else _GAINS[nl] ** 2


@implements("initializer", "he_uniform")
def he_uniform(a: dict[str, Any]) -> Init:
    return _vs(_he_gain2(a), str(a["mode"]), "uniform")


@implements("initializer", "he_normal")
def he_normal(a: dict[str, Any]) -> Init:
    return _vs(_he_gain2(a), str(a["mode"]), "normal")


@implements("initializer", "lecun_uniform")
def lecun_uniform(a: dict[str, Any]) -> Init:
    return _vs(1.0, "fan_in", "uniform")


@implements("initializer", "lecun_normal")
def lecun_normal(a: dict[str, Any]) -> Init:
    return _vs(1.0, "fan_in", "truncated_normal")


@implements("initializer", "orthogonal")
def orthogonal(a: dict[str, Any]) -> Init:
    return jax.nn.initializers.orthogonal(scale=a["gain"])


@implements("initializer", "variance_scaling")
def variance_scaling(a: dict[str, Any]) -> Init:
    return _vs(a["scale"], str(a["mode"]), str(a["distribution"]))


# ------------------------------------------------------------------ layers


def _kernel_init(n: Node) -> Callable[..., Array]:
    """The layer's `init`, or the model-wide `train.init` when the layer writes none."""
    default = _DEFAULT_INIT.get()
    if default is not None and "init" not in n.written:
        return initializer(default)
    return initializer(n.arg("init"))


def _weights(n: Node) -> dict[str, Any]:
    return {
        "kernel_init": _kernel_init(n),
        "bias_init": initializer(n.arg("bias_init")),
        "use_bias": n.arg("use_bias"),
        "name": n.name,
    }


@implements("layer", "dense")
def dense(n: Node, xs: list[Array], train: bool) -> Array:
    tie = n.arg("tie")
    if tie is None:
        return nn.Dense(n.arg("units"), **_weights(n))(xs[0])
    table = _TABLES.get().get(tie.node)
    if table is None:
        raise InternalError(f"`{n.name}` is tied to `{tie.node}`, whose table was not built")
    bias = initializer(n.arg("bias_init"))
    return _Tied(n.arg("use_bias"), bias, name=n.name)(xs[0], table)


class _Tied(nn.Module):
    """A dense layer whose kernel is an embedding's table [vocab, dim], transposed (weight
    tying, Press & Wolf 2017; Flax's `Embed.attend`): the table is an input, so its gradient
    is the sum of both uses'. Only the bias is this layer's own."""

    use_bias: bool
    bias_init: Callable[..., Array]

    @nn.compact
    def __call__(self, x: Array, table: Array) -> Array:
        y = jnp.einsum("...d,vd->...v", x, table.astype(x.dtype))
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (table.shape[0],)).astype(y.dtype)
        return y


@implements("layer", "rbm")
def rbm(n: Node, xs: list[Array], train: bool) -> Array:
    """The hidden units' probabilities, sigmoid(x W + c); b (`visible_bias`) is held for
    pretraining and reconstructions (runtime/pretrain.py)."""
    return _RBM(n.arg("units"), _kernel_init(n), initializer(n.arg("bias_init")), name=n.name)(
        xs[0]
    )


class _RBM(nn.Module):
    """A restricted Boltzmann machine's upward pass: W [in, units] (`kernel`), hidden bias c
    [units] (`bias`), visible bias b [in] (`visible_bias`, initialized to 0)."""

    units: int
    kernel_init: Callable[..., Array]
    bias_init: Callable[..., Array]

    @nn.compact
    def __call__(self, x: Array) -> Array:
        w = self.param("kernel", self.kernel_init, (x.shape[-1], self.units))
        c = self.param("bias", self.bias_init, (self.units,))
        self.param("visible_bias", nn.initializers.zeros, (x.shape[-1],))
        return jax.nn.sigmoid(x @ w.astype(x.dtype) + c.astype(x.dtype))


def _padding(p: Any) -> Any:
    return p.name.upper() if isinstance(p, Symbol) else [(q, q) for q in p]


@implements("layer", "conv1d", "conv2d", "conv3d")
def conv(n: Node, xs: list[Array], train: bool) -> Array:
    one_channel = xs[0].shape[-1] == 1 and jax.default_backend() == "cpu"
    return nn.Conv(
        n.arg("filters"),
        n.arg("kernel"),
        strides=n.arg("stride"),
        padding=_padding(n.arg("padding")),
        kernel_dilation=n.arg("dilation"),
        feature_group_count=n.arg("groups"),
        conv_general_dilated=one_channel_conv if one_channel else None,
        **_weights(n),
    )(xs[0])


def one_channel_conv(
    lhs: Array,
    rhs: Array,
    window_strides: Any,
    padding: Any,
    lhs_dilation: Any = None,
    rhs_dilation: Any = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
) -> Array:
    """`lax.conv_general_dilated` for a one-channel input (gray images, 1-feature sequences)
    on the CPU: the forward as a sum of the kernel's taps times shifted inputs, the gradients
    by XLA's convolution. XLA's CPU convolution runs such a layer at ≈16 GFLOP/s against ≈100
    for the shifted form; the cnn28 train step took 44 ms instead of 60–66 ms
    (docs/performance.md). Exact up to the order of the sum. Any other case goes to `lax`."""
    d = lhs.ndim - 2
    default = _channels_last(d)
    pads = (
        tuple(lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:-2], window_strides, padding))
        if isinstance(padding, str)
        else tuple(tuple(p) for p in padding)
    )
    plain = (
        lhs.shape[-1] == 1
        and feature_group_count == 1
        and all(s == 1 for s in window_strides)
        and all(v == 1 for v in (lhs_dilation or ()))
        and all(v == 1 for v in (rhs_dilation or ()))
        and all(lo >= 0 and hi >= 0 for lo, hi in pads)
        and dimension_numbers == default
    )
    if not plain:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            precision=precision,
        )
    return _shifted_conv(lhs, rhs, tuple((int(lo), int(hi)) for lo, hi in pads), precision)


def _channels_last(d: int) -> lax.ConvDimensionNumbers:
    """Flax's convolution layout for d spatial axes: NHWC inputs, HWIO kernels."""
    spatial = tuple(range(1, d + 1))
    return lax.ConvDimensionNumbers(
        (0, d + 1, *spatial), (d + 1, d, *range(d)), (0, d + 1, *spatial)
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _shifted_conv(x: Array, w: Array, pads: tuple[tuple[int, int], ...], precision: Any) -> Array:
    acc = jnp.promote_types(x.dtype, jnp.float32)  # bf16 inputs: sum in f32, as XLA's does
    p = jnp.pad(x, ((0, 0), *pads, (0, 0))).astype(acc)
    size = [p.shape[i + 1] - w.shape[i] + 1 for i in range(len(pads))]
    out: Array | None = None
    for taps in itertools.product(*(range(k) for k in w.shape[:-2])):
        window = tuple(slice(t, t + n) for t, n in zip(taps, size, strict=True))
        term = p[(slice(None), *window, slice(None))] * w[taps][0].astype(acc)  # (..., 1) x (out,)
        out = term if out is None else out + term
    assert out is not None
    return out.astype(jnp.result_type(x, w))


def _shifted_conv_fwd(x: Array, w: Array, pads: Any, precision: Any) -> tuple[Array, Any]:
    return _shifted_conv(x, w, pads, precision), (x, w)


def _shifted_conv_bwd(pads: Any, precision: Any, res: Any, g: Array) -> tuple[Array, Array]:
    x, w = res
    d = x.ndim - 2
    dims = _channels_last(d)

    def conv(x: Array, w: Array) -> Array:
        return lax.conv_general_dilated(
            x, w, (1,) * d, pads, dimension_numbers=dims, precision=precision
        )

    dx, dw = jax.vjp(conv, x, w)[1](g)
    return dx, dw


_shifted_conv.defvjp(_shifted_conv_fwd, _shifted_conv_bwd)


def _pool(kind: str) -> Callable[[Node, list[Array], bool], Array]:
    def pool(n: Node, xs: list[Array], train: bool) -> Array:
        window, stride, pad = n.arg("size"), n.arg("stride"), _padding(n.arg("padding"))
        if n.arg("ceil_mode"):
            return ceil_pool(xs[0], n, kind)
        if _tiles(xs[0].shape[1:-1], window, stride, pad):
            return _tiled_pool(xs[0], window, kind)
        if kind == "max":
            return nn.max_pool(xs[0], window, stride, pad)
        return nn.avg_pool(xs[0], window, stride, pad)  # padded zeros count, as PyTorch's default

    return pool


def ceil_pool(x: Array, n: Node, kind: str) -> Array:
    """Pooling with PyTorch's ceil_mode: the windows past the padded input see -inf (max) or
    are left out of the divisor (avg, which divides by the cells inside the padded input,
    PyTorch's count_include_pad = True)."""
    window, stride, pad = n.arg("size"), n.arg("stride"), n.arg("padding")
    spatial = x.shape[1:-1]
    p = (0,) * len(spatial) if isinstance(pad, Symbol) else pad
    extra = [
        (m - 1) * s + k - (d + 2 * q)
        for m, s, k, d, q in zip(n.shape[:-1], stride, window, spatial, p, strict=True)
    ]
    pads = [(q, q + max(e, 0)) for q, e in zip(p, extra, strict=True)]
    if kind == "max":
        return nn.max_pool(x, window, stride, pads)
    total = nn.pool(x, 0.0, lax.add, window, stride, pads)
    count: Array = 1.0
    for axis, (m, s, k, d, q) in enumerate(
        zip(n.shape[:-1], stride, window, spatial, p, strict=True)
    ):
        cells = jnp.array([min(i * s + k, d + 2 * q) - i * s for i in range(m)], x.dtype)
        count = count * cells.reshape((1,) * (axis + 1) + (m,) + (1,) * (len(spatial) - axis))
    return total / count


def _tiles(spatial: tuple[int, ...], window: Any, stride: Any, pad: Any) -> bool:
    """Windows that tile the input exactly: no overlap, no padding, no remainder."""
    no_pad = pad == "VALID" or (not isinstance(pad, str) and all(p == (0, 0) for p in pad))
    return (
        no_pad
        and tuple(window) == tuple(stride)
        and all(d % w == 0 for d, w in zip(spatial, window, strict=True))
    )


# Up to this many elements a window, tiled pooling combines strided slices; beyond, a reshape.
SLICED_WINDOW_MAX = 16


def _tiled_pool(x: Array, window: Any, kind: str) -> Array:
    """Pooling whose windows tile the input, without XLA's reduce-window.

    Small windows (the usual 2x2) combine the window's strided slices elementwise: for max, a
    chain of selects in which the first maximum of a window wins a tie and NaN propagates —
    Flax's `max_pool` exactly, values and gradients — whose gradient is a few selects instead
    of XLA's select-and-scatter. On the CPU the cnn28 pooling block (conv, ReLU, pool; forward
    and gradient) took 12 ms this way, 38 ms as reshape + max and 97 ms through Flax
    (docs/performance.md). Larger windows reshape and reduce.
    """
    if math.prod(window) <= SLICED_WINDOW_MAX:
        parts = iter(_window_slices(x, tuple(window)))
        out = next(parts)
        if kind == "max":
            for s in parts:
                out = jnp.where((out >= s) | jnp.isnan(out), out, s)
            return out
        for s in parts:
            out = out + s
        return out / math.prod(window)
    split: list[int] = [x.shape[0]]
    for d, w in zip(x.shape[1:-1], window, strict=True):
        split += [d // w, w]
    y = x.reshape((*split, x.shape[-1]))
    axes = tuple(range(2, 2 * len(window) + 1, 2))
    return jnp.max(y, axis=axes) if kind == "max" else jnp.mean(y, axis=axes)


def _window_slices(x: Array, window: tuple[int, ...]) -> Iterator[Array]:
    """For each offset in a window (row-major), the strided slice of x at that offset."""
    for offsets in itertools.product(*(range(w) for w in window)):
        spatial = tuple(slice(o, None, w) for o, w in zip(offsets, window, strict=True))
        yield x[(slice(None), *spatial, slice(None))]


maxpool = implements("layer", "maxpool1d", "maxpool2d", "maxpool3d")(_pool("max"))
avgpool = implements("layer", "avgpool1d", "avgpool2d", "avgpool3d")(_pool("avg"))


@implements("layer", "global_avgpool")
def global_avgpool(n: Node, xs: list[Array], train: bool) -> Array:
    return jnp.mean(xs[0], axis=tuple(range(1, xs[0].ndim - 1)))


@implements("layer", "global_maxpool")
def global_maxpool(n: Node, xs: list[Array], train: bool) -> Array:
    return jnp.max(xs[0], axis=tuple(range(1, xs[0].ndim - 1)))


@implements("layer", "flatten")
def flatten(n: Node, xs: list[Array], train: bool) -> Array:
    return xs[0].reshape(xs[0].shape[0], -1)


@implements("layer", "reshape")
def reshape(n: Node, xs: list[Array], train: bool) -> Array:
    return xs[0].reshape(xs[0].shape[0], *n.shape)


@implements("layer", "dropout")
def dropout(n: Node, xs: list[Array], train: bool) -> Array:
    return nn.Dropout(n.arg("rate"), deterministic=not train, name=n.name)(xs[0])


def _axis(axis: int) -> int:
    """An IR axis (counted without the batch axis) as an array axis."""
    return axis if axis < 0 else axis + 1


@implements("layer", "batchnorm")
def batchnorm(n: Node, xs: list[Array], train: bool | Array) -> Array:
    norm = nn.BatchNorm(
        momentum=n.arg("momentum"),
        epsilon=n.arg("eps"),
        axis=_axis(n.arg("axis")),
        use_bias=n.arg("center"),
        use_scale=n.arg("scale"),
        name=n.name,
    )
    if isinstance(train, bool):
        return norm(xs[0], use_running_average=not train)
    # a traced mode: a layer `unfreeze` releases runs in inference mode until its phase
    # turns, in one compiled step (`nn.cond` carries the running averages' update)
    return nn.cond(
        train,
        lambda m, x: m(x, use_running_average=False),
        lambda m, x: m(x, use_running_average=True),
        norm,
        xs[0],
    )


@implements("layer", "layernorm")
def layernorm(n: Node, xs: list[Array], train: bool) -> Array:
    return nn.LayerNorm(
        epsilon=n.arg("eps"), use_bias=n.arg("center"), use_scale=n.arg("scale"), name=n.name
    )(xs[0])


# Group and instance normalization take their variance in two passes, mean((x - mu)²), as
# PyTorch does, rather than Flax's default E[x²] - mu², which cancels in float32 when |mu| is
# large next to the spread (a channel near a constant offset).
@implements("layer", "groupnorm")
def groupnorm(n: Node, xs: list[Array], train: bool) -> Array:
    return nn.GroupNorm(
        num_groups=n.arg("groups"),
        epsilon=n.arg("eps"),
        use_bias=n.arg("center"),
        use_scale=n.arg("scale"),
        use_fast_variance=False,
        name=n.name,
    )(xs[0])


@implements("layer", "instancenorm")
def instancenorm(n: Node, xs: list[Array], train: bool) -> Array:
    return nn.InstanceNorm(
        epsilon=n.arg("eps"),
        use_bias=n.arg("center"),
        use_scale=n.arg("scale"),
        feature_axes=-1,
        use_fast_variance=False,
        name=n.name,
    )(xs[0])


@implements("layer", "rmsnorm")
def rmsnorm(n: Node, xs: list[Array], train: bool) -> Array:
    return nn.RMSNorm(epsilon=n.arg("eps"), use_scale=n.arg("scale"), name=n.name)(xs[0])


@implements("layer", "local_response_norm")
def local_response_norm(n: Node, xs: list[Array], train: bool) -> Array:
    """AlexNet: x_c / (k + alpha · sum of x² over `size` neighbouring channels)^beta."""
    x, size = xs[0], n.arg("size")
    sq = jnp.pad(x * x, [(0, 0)] * (x.ndim - 1) + [(size // 2, (size - 1) // 2)])
    window = sum(sq[..., i : i + x.shape[-1]] for i in range(size))
    return x / (n.arg("k") + n.arg("alpha") * window) ** n.arg("beta")


@implements("layer", "embedding")
def embedding(n: Node, xs: list[Array], train: bool) -> Array:
    embed = nn.Embed(
        n.arg("vocab"), n.arg("dim"), embedding_init=initializer(n.arg("init")), name=n.name
    )
    y = embed(xs[0])
    _TABLES.get()[n.name] = embed.embedding  # for a `dense(..., tie = <this node>)` later
    return y


# ---- merges


@implements("layer", "add")
def add(n: Node, xs: list[Array], train: bool) -> Array:
    return sum(xs[1:], xs[0])


@implements("layer", "subtract")
def subtract(n: Node, xs: list[Array], train: bool) -> Array:
    return xs[0] - xs[1]


@implements("layer", "multiply")
def multiply(n: Node, xs: list[Array], train: bool) -> Array:
    return math.prod(xs[1:], start=xs[0])


@implements("layer", "average")
def average(n: Node, xs: list[Array], train: bool) -> Array:
    return sum(xs[1:], xs[0]) / len(xs)


@implements("layer", "maximum")
def maximum(n: Node, xs: list[Array], train: bool) -> Array:
    out = xs[0]
    for x in xs[1:]:
        out = jnp.maximum(out, x)
    return out


@implements("layer", "concat")
def concat(n: Node, xs: list[Array], train: bool) -> Array:
    return jnp.concatenate(xs, axis=_axis(n.arg("axis")))


# ---- activations

_SIMPLE: dict[str, Callable[..., Array]] = {
    "identity": lambda x, a: x,
    "sigmoid": lambda x, a: jax.nn.sigmoid(x),
    "tanh": lambda x, a: jnp.tanh(x),
    "relu": lambda x, a: jax.nn.relu(x),
    "relu6": lambda x, a: jax.nn.relu6(x),
    "leaky_relu": lambda x, a: jax.nn.leaky_relu(x, a["negative_slope"]),
    "elu": lambda x, a: jax.nn.elu(x, a["alpha"]),
    "selu": lambda x, a: jax.nn.selu(x),
    "gelu": lambda x, a: jax.nn.gelu(x, approximate=a["approximate"]),
    "silu": lambda x, a: jax.nn.silu(x),
    "softplus": lambda x, a: jax.nn.softplus(x),
    "softsign": lambda x, a: jax.nn.soft_sign(x),
    "hard_sigmoid": lambda x, a: jax.nn.relu6(x + 3) / 6,
    "hard_tanh": lambda x, a: jnp.clip(x, -1, 1),
    "mish": lambda x, a: x * jnp.tanh(jax.nn.softplus(x)),
    "softmax": lambda x, a: jax.nn.softmax(x, axis=_axis(a["axis"])),
    "log_softmax": lambda x, a: jax.nn.log_softmax(x, axis=_axis(a["axis"])),
}


def _activation(fn: Callable[..., Array]) -> Callable[[Node, list[Array], bool], Array]:
    return lambda n, xs, train: fn(xs[0], dict(n.args))


for _name, _fn in _SIMPLE.items():
    implements("activation", _name)(_activation(_fn))


class _PReLU(nn.Module):
    shape: tuple[int, ...]
    slope_init: Callable[..., Array]

    @nn.compact
    def __call__(self, x: Array) -> Array:
        slope = self.param("slope", self.slope_init, self.shape)
        return jnp.where(x > 0, x, slope * x)


@implements("activation", "prelu")
def prelu(n: Node, xs: list[Array], train: bool) -> Array:
    shape = (1,) if n.arg("shared") else (n.shape[-1],)
    return _PReLU(shape, initializer(n.arg("init")), name=n.name)(xs[0])


# ---- recurrent layers (scans over time; parameter layouts as in Keras, see registry/layers.py)


class _Recurrent(nn.Module):
    """One direction of a recurrent layer: input and recurrent kernels, scanned over time."""

    cell: str
    units: int
    kernel_init: Callable[..., Array]
    recurrent_init: Callable[..., Array]

    @nn.compact
    def __call__(self, x: Array) -> Array:
        gates = {"simple_rnn": 1, "lstm": 4, "gru": 3}[self.cell]
        u = self.units
        w = self.param("kernel", self.kernel_init, (x.shape[-1], gates * u))
        r = self.param("recurrent_kernel", self.recurrent_init, (u, gates * u))
        b = self.param("bias", nn.initializers.zeros, (gates * u,))
        # GRU with the reset gate after the matmul has a second bias on the recurrent side
        rb = (
            self.param("recurrent_bias", nn.initializers.zeros, (gates * u,))
            if (self.cell == "gru")
            else None
        )
        xw = jnp.einsum("btf,fg->btg", x, w) + b
        step = {"simple_rnn": _rnn_step, "lstm": _lstm_step, "gru": _gru_step}[self.cell]

        def body(carry: Any, xt: Array) -> tuple[Any, Array]:
            carry = step(carry, xt, r, rb, u)
            return carry, carry[0]

        h0 = jnp.zeros((x.shape[0], u), x.dtype)
        carry0 = (h0, h0) if self.cell == "lstm" else (h0,)
        _, hs = jax.lax.scan(body, carry0, jnp.swapaxes(xw, 0, 1))
        return jnp.swapaxes(hs, 0, 1)


def _rnn_step(carry: Any, xt: Array, r: Array, rb: Any, u: int) -> Any:
    return (jnp.tanh(xt + carry[0] @ r),)


def _lstm_step(carry: Any, xt: Array, r: Array, rb: Any, u: int) -> Any:
    h, c = carry
    z = xt + h @ r
    i, f, g, o = (z[:, k * u : (k + 1) * u] for k in range(4))
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return (jax.nn.sigmoid(o) * jnp.tanh(c), c)


def _gru_step(carry: Any, xt: Array, r: Array, rb: Array, u: int) -> Any:
    h = carry[0]
    hr = h @ r + rb
    z = jax.nn.sigmoid(xt[:, :u] + hr[:, :u])
    rg = jax.nn.sigmoid(xt[:, u : 2 * u] + hr[:, u : 2 * u])
    n_ = jnp.tanh(xt[:, 2 * u :] + rg * hr[:, 2 * u :])
    return ((1 - z) * n_ + z * h,)


@implements("layer", "simple_rnn", "lstm", "gru")
def recurrent(n: Node, xs: list[Array], train: bool) -> Array:
    cell = dict(
        cell=n.op,
        units=n.arg("units"),
        kernel_init=_kernel_init(n),
        recurrent_init=initializer(n.arg("recurrent_init")),
    )
    x = xs[0]
    out = _Recurrent(**cell, name=n.name if not n.arg("bidirectional") else f"{n.name}/forward")(x)
    if n.arg("bidirectional"):
        back = _Recurrent(**cell, name=f"{n.name}/backward")(x[:, ::-1])[:, ::-1]
        out = jnp.concatenate([out, back], axis=-1)
    return (
        out
        if n.arg("return_sequences")
        else out[:, -1]
        if not n.arg("bidirectional")
        else (jnp.concatenate([out[:, -1, : n.arg("units")], out[:, 0, n.arg("units") :]], axis=-1))
    )


# ------------------------------------------------------------------ the model


def lowering(node: Node) -> Callable[[Node, list[Array], bool], Array]:
    """The function lowering a layer or activation node: `(node, inputs, train) -> output`."""
    return implementation(node.kind, node.op)


def _mode(train: bool, still: bool, thawed: Array | None) -> bool | Array:
    """A node's training mode: `train`, but inference for a frozen batchnorm (`still`) —
    until `thawed` (traced: `unfreeze`'s phase 2) turns true, where one is given."""
    if not still or not train:
        return train
    return False if thawed is None else thawed


def inference_mode(op: str, name: str, freeze: tuple[str, ...]) -> bool:
    """A frozen layer with running statistics (an entry with `state`: batchnorm) runs in
    inference mode in training too, as Keras's `trainable = False`: its running averages
    normalize, and are not updated."""
    entry = LAYERS.lookup(op)
    return entry is not None and entry.state is not None and frozen(name, freeze)


class _Repeat(nn.Module):
    """One instance of a scanned run: the body's nodes applied to the carry."""

    body: tuple[Node, ...]
    output: str
    train: bool
    every_value: bool
    still: tuple[str, ...] = ()  # body nodes in inference mode (frozen batchnorms)

    @nn.compact
    def __call__(self, carry: Array, thawed: Array | None) -> tuple[Array, Any]:
        values: dict[str, Array] = {CARRY: carry}
        for node in self.body:
            mode = _mode(self.train, node.name in self.still, thawed)
            values[node.name] = lowering(node)(node, [values[i] for i in node.inputs], mode)
        seen = {k: v for k, v in values.items() if k != CARRY} if self.every_value else None
        return values[self.output], seen


def _scan_group(
    g: Group, remat: bool, train: bool, every_value: bool, freeze: tuple[str, ...]
) -> nn.Module:
    """The run as one `nn.scan`: weights and batch statistics stacked on a leading axis of
    length N, a fresh dropout key per iteration; with `remat`, each iteration's activations are
    recomputed in the backward pass (only the carries are stored). Every instance freezes the
    same layers (`lower_scan.split`), so the first one's say which run in inference mode."""
    still = tuple(n.name for n in g.body if inference_mode(n.op, g.names(n.name)[0], freeze))
    body = nn.remat(_Repeat, prevent_cse=False) if remat else _Repeat  # no CSE worry in a scan
    scanned = nn.scan(
        body,
        variable_axes={True: 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=nn.broadcast,  # the phase flag of `unfreeze` (or None), the same every instance
        length=g.length,
    )
    return scanned(g.body, g.output, train, every_value, still, name=g.key)


class Model(nn.Module):
    """The IR graph as one Linen module: inputs by name (or one array), outputs in order."""

    graph: Graph
    default_init: Ref | None = None  # `train.init`
    scan: ScanPlan | None = None  # runs of identical blocks lowered as scans (lower_scan.py)
    freeze: tuple[str, ...] = ()  # `train.freeze`: frozen batchnorms run in inference mode

    @nn.compact
    def __call__(
        self,
        inputs: Any,
        train: bool = False,
        every_value: bool = False,
        thawed: Array | None = None,
    ) -> Any:
        """The outputs; with `every_value`, a dict of every node's value (for checks).

        `thawed`: a traced boolean, true in `unfreeze`'s phase 2, where frozen batchnorms
        train (in training mode only; None: they stay in inference mode)."""
        token, tables = _DEFAULT_INIT.set(self.default_init), _TABLES.set({})
        try:
            return self._run(inputs, train, every_value, thawed)
        finally:
            _DEFAULT_INIT.reset(token)
            _TABLES.reset(tables)

    def _run(self, inputs: Any, train: bool, every_value: bool, thawed: Array | None) -> Any:
        if not isinstance(inputs, dict):
            inputs = {self.graph.inputs[0]: inputs}
        groups = {g.names(g.body[0].name)[0]: g for g in self.scan.groups} if self.scan else {}
        inside = set(skipped(self.scan))
        values: dict[str, Array] = {}
        for node in self.graph.nodes:
            if node.op == "input":
                values[node.name] = inputs[node.name]
            elif node.name in groups:
                self._run_group(groups[node.name], values, train, every_value, thawed)
            elif node.name not in inside:
                still = inference_mode(node.op, node.name, self.freeze)
                values[node.name] = lowering(node)(
                    node, [values[i] for i in node.inputs], _mode(train, still, thawed)
                )
        if every_value:
            return values
        outs = [values[o] for o in self.graph.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _run_group(
        self, g: Group, values: dict[str, Array], train: bool, every: bool, thawed: Array | None
    ) -> None:
        assert self.scan is not None
        run = _scan_group(g, self.scan.remat, train, every, self.freeze)
        out, seen = run(values[g.source], thawed)
        values[g.last_output] = out
        for local, stacked in (seen or {}).items():
            values.update(zip(g.names(local), stacked, strict=True))


def lower_model(
    graph: Graph,
    default_init: Ref | None = None,
    scan: ScanPlan | None = None,
    freeze: tuple[str, ...] = (),
) -> Model:
    """The Flax module of a checked model graph (`default_init`: the spec's `train.init`;
    `scan`: the runs to lower as scans, `lower_scan.plan_for(program)`; none by default;
    `freeze`: the spec's `train.freeze`, whose batchnorms run in inference mode)."""
    return Model(graph, default_init, scan, tuple(freeze))


# The convolution family beyond conv1d/2d/3d (transposed, depthwise, separable, upsampling,
# adaptive pooling, padding, cropping) and the attention family (multi-head attention, key
# masks, positional embeddings, ViT's patches and class token, `take`) live in their own
# modules; importing them tags their lowerings.
from . import lower_attention, lower_convs  # noqa: E402, F401
