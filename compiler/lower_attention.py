"""Lowerings of the attention family (registry/attention.py): multi-head attention, key masks,
positional embeddings, patch embedding, class token and `take`.

Imported by lower_flax.py, whose `@implements` table the layer registry reads. Parameters are
leaves of the node's own key (`params["multi_head_attention"]["query_kernel"]`), the contract
lower_optax.py and lower_loss.py read: a leaf's role is its key, a bias ends in `bias`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .ir import Node
from .lower_flax import _kernel_init, initializer
from .registry.core import implements

Array = Any

# ------------------------------------------------------------------ multi-head attention


def _large_negative(dtype: Any) -> Array:
    """The score of a masked key: `jax.nn.dot_product_attention`'s -0.7 · the largest float,
    finite, so a query whose keys are all masked gets uniform weights rather than NaN."""
    return jnp.asarray(-0.7 * float(jnp.finfo(dtype).max), dtype)


def attend(
    q: Array,
    k: Array,
    v: Array,
    mask: Array | None,
    causal: bool,
    drop: Callable[[Array], Array] | None,
) -> Array:
    """softmax(Q Kᵀ / sqrt(key_dim) + M) V per head; q [B, Tq, h, dk], k [B, Tk, h, dk],
    v [B, Tk, h, dv], mask [B, Tk] of booleans (True: attend) or None.

    `jax.nn.dot_product_attention` where it applies (a backend with fused kernels, not a CPU,
    where its XLA path ran 6% slower than this one: bench/transformer.py; no dropout; dv == dk:
    it takes one head size; not float64, whose softmax it rounds to float32); otherwise the same
    steps written out, as that function's XLA path takes them (scores and softmax in at least
    float32, masked scores set to the same large negative number).
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    full = None if mask is None else mask[:, None, None, :]  # [B, heads, Tq, Tk]
    fused = jax.default_backend() != "cpu"  # no fused kernel on a CPU: its XLA path is slower
    if fused and drop is None and v.shape[-1] == k.shape[-1] and jnp.finfo(q.dtype).bits <= 32:
        return jax.nn.dot_product_attention(q, k, v, mask=full, scale=scale, is_causal=causal)
    acc = jnp.promote_types(q.dtype, jnp.float32)
    scores = jnp.einsum("btnh,bsnh->bnts", q, k, preferred_element_type=acc) * scale
    keep = full
    if causal:
        lower = jnp.tril(jnp.ones(scores.shape[-2:], bool))[None, None]
        keep = lower if keep is None else keep & lower
    if keep is not None:
        scores = jnp.where(keep, scores, _large_negative(scores.dtype))
    weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    if drop is not None:
        weights = drop(weights)
    return jnp.einsum("bnts,bsnh->btnh", weights, v)


class _MultiHeadAttention(nn.Module):
    """Four 2-d projections (PyTorch's layout, [in, h·d]; Keras' count), scaled dot-product
    attention per head, the heads concatenated and projected back to the query's size."""

    heads: int
    key_dim: int
    value_dim: int
    dropout: float
    causal: bool
    use_bias: bool
    kernel_init: Callable[..., Array]
    bias_init: Callable[..., Array]

    def _project(self, x: Array, role: str, size: int) -> Array:
        w = self.param(f"{role}_kernel", self.kernel_init, (x.shape[-1], size))
        y = jnp.einsum("btf,fo->bto", x, w.astype(x.dtype))
        if self.use_bias:
            b = self.param(f"{role}_bias", self.bias_init, (size,))
            y = y + b.reshape(1, 1, size).astype(y.dtype)
        return y

    @nn.compact
    def __call__(self, xq: Array, xkv: Array, mask: Array | None, train: bool) -> Array:
        h, kd, vd = self.heads, self.key_dim, self.value_dim
        (b, tq, dq), tk = xq.shape, xkv.shape[1]
        q = self._project(xq, "query", h * kd).reshape(b, tq, h, kd)
        k = self._project(xkv, "key", h * kd).reshape(b, tk, h, kd)
        v = self._project(xkv, "value", h * vd).reshape(b, tk, h, vd)
        drop = None
        if train and self.dropout > 0:
            drop = nn.Dropout(self.dropout, deterministic=False, name="attention_dropout")
        heads = attend(q, k, v, mask, self.causal, drop).reshape(b, tq, h * vd)
        return self._project(heads, "output", dq)


@implements("layer", "multi_head_attention")
def multi_head_attention(n: Node, xs: list[Array], train: bool) -> Array:
    """Inputs (x), (queries, memory) or (queries, memory, key mask: 0 masks a key)."""
    xq = xs[0]
    xkv = xs[1] if len(xs) > 1 else xq
    mask = xs[2] != 0 if len(xs) > 2 else None
    return _MultiHeadAttention(
        n.arg("heads"),
        n.arg("key_dim"),
        n.arg("value_dim"),
        n.arg("dropout"),
        n.arg("causal"),
        n.arg("use_bias"),
        _kernel_init(n),
        initializer(n.arg("bias_init")),
        name=n.name,
    )(xq, xkv, mask, train)


@implements("layer", "padding_mask")
def padding_mask(n: Node, xs: list[Array], train: bool) -> Array:
    return (xs[0] != n.arg("pad_id")).astype(jnp.float32)


# ------------------------------------------------------------------ positions


class _Added(nn.Module):
    """A learned parameter added to (or prepended to) the input."""

    leaf: str
    shape: tuple[int, ...]
    init: Callable[..., Array]
    prepend: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        p = self.param(self.leaf, self.init, self.shape).astype(x.dtype)
        if self.prepend:
            return jnp.concatenate([jnp.broadcast_to(p, (x.shape[0], 1, *self.shape)), x], 1)
        return x + p[None, : x.shape[1]]


@implements("layer", "positional_embedding")
def positional_embedding(n: Node, xs: list[Array], train: bool) -> Array:
    t, d = n.shape
    rows = n.arg("max_len") or t
    return _Added("embedding", (rows, d), initializer(n.arg("init")), name=n.name)(xs[0])


def sinusoids(t: int, d: int, max_wavelength: float) -> np.ndarray:
    """Vaswani et al.'s table [t, d]: sin at even features, cos at odd, angle t / base^(2i/d)."""
    pos = np.arange(t)[:, None]
    pair = np.arange(d)[None, :] // 2
    angle = pos / np.power(max_wavelength, 2 * pair / d)
    return np.where(np.arange(d) % 2 == 0, np.sin(angle), np.cos(angle))


@implements("layer", "sinusoidal_embedding")
def sinusoidal_embedding(n: Node, xs: list[Array], train: bool) -> Array:
    t, d = n.shape
    table = sinusoids(t, d, n.arg("max_wavelength"))  # a constant folded into the program
    return xs[0] + jnp.asarray(table, xs[0].dtype)[None]


# ------------------------------------------------------------------ ViT


@implements("layer", "patch_embed")
def patch_embed(n: Node, xs: list[Array], train: bool) -> Array:
    """A convolution with kernel = stride = patch (valid padding), then the patch grid flattened
    row-major: ViT's `embedding` convolution and reshape."""
    y = nn.Conv(
        n.arg("dim"),
        n.arg("patch"),
        strides=n.arg("patch"),
        padding="VALID",
        kernel_init=_kernel_init(n),
        bias_init=initializer(n.arg("bias_init")),
        use_bias=n.arg("use_bias"),
        name=n.name,
    )(xs[0])
    return y.reshape(y.shape[0], -1, y.shape[-1])


@implements("layer", "cls_token")
def cls_token(n: Node, xs: list[Array], train: bool) -> Array:
    d = n.shape[-1]
    init = initializer(n.arg("init"))
    return _Added("cls", (d,), init, prepend=True, name=n.name)(xs[0])


@implements("layer", "take")
def take(n: Node, xs: list[Array], train: bool) -> Array:
    return xs[0][:, n.arg("index")]


@implements("layer", "sequence_pool")
def sequence_pool(n: Node, xs: list[Array], train: bool) -> Array:
    x = xs[0]
    keep = (xs[1] != 0)[..., None] if len(xs) > 1 else jnp.ones((1, x.shape[1], 1), bool)
    if str(n.arg("mode")) == "max":
        low = jnp.asarray(jnp.finfo(x.dtype).min, x.dtype)
        top = jnp.max(jnp.where(keep, x, low), axis=1)
        return jnp.where(jnp.any(keep, axis=1), top, jnp.zeros((), x.dtype))
    m = keep.astype(x.dtype)
    return jnp.sum(x * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1)
