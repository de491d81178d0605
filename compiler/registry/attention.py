"""The attention family (issue 15): multi-head attention, positional embeddings, ViT's patch
embedding and class token, one position of a sequence or a pool over its positions, and key
masks from padded token ids.

Shapes leave out the batch axis; a sequence is [time, features], as the recurrent layers take
it. Parameter counts are Keras' `MultiHeadAttention` (four projections with biases) and ViT's
(Dosovitskiy et al. 2021) patch embedding, class token and learned position embedding.

A key mask is a third input of `multi_head_attention`, a float tensor [keys] whose zeros mark
keys no query may attend to; `padding_mask(pad_id)` makes one from integer token ids. So an
attention layer takes floats only, as every other float layer, and the mask is an ordinary
value of the graph that a model can pass to several layers.
"""

from __future__ import annotations

import math

from .core import Args, Needs, Problem, SameAs, arg
from .layers import LAYERS, WEIGHT_ARGS, Shape, fmt_shape, need_rank
from .types import Bool, EnumT, Int, OptionalT, PosFloat, PosInt, Rate, RefT, SizeT, call

SEQUENCE = "time, features"

# ------------------------------------------------------------------ multi-head attention


def _mha_inputs(a: Args, xs: tuple[Shape, ...]) -> tuple[Shape, Shape]:
    """(queries, memory) shapes, after checking ranks, the key mask and `causal`."""
    q = xs[0]
    need_rank(q, 2, "multi_head_attention", SEQUENCE)
    kv = xs[1] if len(xs) > 1 else q
    if len(xs) > 1 and len(kv) == 1:
        raise Problem(
            f"the second input of `multi_head_attention` is the memory keys and values are "
            f"computed from, [time, features], got shape {fmt_shape(kv)}",
            "a key mask is the third input: self-attention with a mask is "
            "`multi_head_attention(...)(x, x, mask)`",
            code="E0403",
        )
    need_rank(kv, 2, "multi_head_attention", SEQUENCE)
    if len(xs) == 3 and xs[2] != (kv[0],):
        raise Problem(
            f"the key mask of `multi_head_attention` must have one value per key, shape "
            f"{fmt_shape((kv[0],))}, got {fmt_shape(xs[2])}",
            "make it from the token ids the memory came from: `padding_mask(pad_id)(ids)`",
            code="E0403",
        )
    if a.causal and q[0] != kv[0]:
        raise Problem(
            f"`causal = true` needs as many queries as keys, got {q[0]} queries and {kv[0]} keys",
            "causal masking is for self-attention: remove `causal`, or attend over a memory "
            "of the queries' length",
            "causal",
        )
    return q, kv


def _mha_shape(a: Args, xs: tuple[Shape, ...]) -> Shape:
    q, _ = _mha_inputs(a, xs)
    return q


def _mha_params(a: Args, xs: tuple[Shape, ...]) -> int:
    """Keras' MultiHeadAttention: Wq, Wk, Wv to h heads, Wo back to the query's features."""
    (_, dq), (_, dk) = _mha_inputs(a, xs)
    h, kd, vd, b = a.heads, a.key_dim, a.value_dim, int(a.use_bias)
    return (
        (dq * h * kd + b * h * kd)
        + (dk * h * kd + b * h * kd)
        + (dk * h * vd + b * h * vd)
        + (h * vd * dq + b * dq)
    )


def _mha_keeps(a: Args, xs: tuple[Shape, ...], y: Shape) -> int:
    """The projections Q, K, V, the heads' concatenated output and the layer's output, and
    4 arrays of the attention weights' size [h, Tq, Tk] (the scores and their softmax, and as
    many gradients in the backward pass), 6 with dropout (the dropped weights and their
    gradient), per example. Measured on XLA's CPU backend (T = 20, h = 2 and 8, one layer,
    bench-style as tests/test_memory.py): 3.3-4.2 weight-sized arrays without dropout, 5.7-5.8
    with it."""
    (tq, _), (tk, _) = _mha_inputs(a, xs)
    h, kd, vd = a.heads, a.key_dim, a.value_dim
    weights = h * tq * tk * (6 if a.dropout > 0 else 4)
    return tq * h * kd + tk * h * (kd + vd) + weights + tq * h * vd + math.prod(y)


LAYERS.add(
    "multi_head_attention",
    example="multi_head_attention(2, 4)",
    args=(
        arg("heads", PosInt, doc="attention heads h"),
        arg("key_dim", PosInt, doc="size of each head's queries and keys"),
        arg("value_dim", PosInt, SameAs("key_dim"), "size of each head's values"),
        arg("dropout", Rate, 0.0, "dropout on the attention weights, in training only"),
        arg("causal", Bool, False, "a query attends to keys at its position and before only"),
        arg("use_bias", Bool, True, "biases on the four projections"),
        arg("init", WEIGHT_ARGS[0].type, "glorot_uniform", "initializer of the four kernels"),
        *WEIGHT_ARGS[1:3],
    ),
    shape=_mha_shape,
    params=_mha_params,
    keeps=_mha_keeps,
    arity=(1, 3),
    known_as=("MultiHeadAttention", "MultiHeadDotProductAttention"),  # PyTorch's folds to it
    doc="multi-head scaled dot-product attention (Vaswani et al. 2017, section 3.2). Inputs: "
    "`(x)` self-attention; `(queries, memory)` cross-attention, keys and values from the "
    "memory [Tk, dk]; `(queries, memory, key_mask)` also a key mask [Tk] whose zeros mark keys "
    "that get no weight (from `padding_mask`; self-attention with a mask is `(x, x, mask)`). "
    "Output [Tq, dq], the query's size, through an output projection (Keras' default "
    "`output_shape`). Parameters as Keras' `MultiHeadAttention(num_heads, key_dim, "
    "value_dim)`: dq·h·key_dim + h·key_dim (Wq, bias) + dk·h·key_dim + h·key_dim (Wk) + "
    "dk·h·value_dim + h·value_dim (Wv) + h·value_dim·dq + dq (Wo), without the bias terms "
    "when `use_bias = false`; kernels are stored 2-d, [in, h·key_dim] with head j in columns "
    "j·key_dim to (j + 1)·key_dim. Computed by `jax.nn.dot_product_attention` (fused kernels "
    "where the backend has them); on a CPU, with dropout in training, `value_dim` != `key_dim` (that "
    "function takes one head size) or float64 (it rounds the softmax to float32), by the "
    "same formula written out. A masked key's "
    "score is set to -0.7 times the largest float (as `jax.nn.dot_product_attention` does), "
    "so a query whose keys are all masked averages them rather than giving NaN. The "
    "regularizer applies to the four kernels",
    formula="head_j = softmax(Q_j K_jᵀ / sqrt(key_dim) + M) V_j, Q_j = x_q W^Q_j + b^Q_j, "
    "K_j = x_kv W^K_j + b^K_j, V_j = x_kv W^V_j + b^V_j; y = [head_1 | ... | head_h] W^O + "
    "b^O; M[t, s] = -inf (in effect) where key s is masked or, with `causal`, s > t, else 0; "
    "train: dropout on softmax(...), rescaled by 1 / (1 - dropout)",
)

LAYERS.add(
    "padding_mask",
    example="padding_mask(0)",
    args=(arg("pad_id", Int, 0, "the id that marks padding"),),
    shape=lambda a, x: x,
    params=lambda a, x: 0,
    int_input=True,
    needs=Needs(dtype="int"),
    known_as=("key_padding_mask",),  # PyTorch's argument name
    doc="a float mask from integer token ids: 0 where the id is `pad_id`, 1 elsewhere; the "
    "third input of `multi_head_attention`, whose masked keys get no weight (PyTorch's "
    "`key_padding_mask`, Keras' `mask_zero` made explicit)",
    formula="y[t] = 0 if x[t] == pad_id else 1",
)

# ------------------------------------------------------------------ positions


def _positional_params(a: Args, x: Shape) -> int:
    need_rank(x, 2, "positional_embedding", SEQUENCE)
    if a.max_len is not None and a.max_len < x[0]:
        raise Problem(
            f"`max_len = {a.max_len}` is shorter than the sequence of {x[0]} positions",
            f"use `max_len` of at least {x[0]}, or leave it out (it defaults to the length)",
            "max_len",
        )
    return (x[0] if a.max_len is None else a.max_len) * x[1]


LAYERS.add(
    "positional_embedding",
    args=(
        arg("max_len", OptionalT(PosInt), None, "rows of the table; none: the input's length"),
        arg("init", RefT("initializer"), call("normal", std=0.02), "initializer of the table"),
    ),
    shape=lambda a, x: x,
    params=_positional_params,
    known_as=("PositionEmbedding", "PositionalEmbedding"),
    doc="a learned vector per position, added to the input (BERT, ViT: Dosovitskiy et al. 2021, "
    "whose initializer, normal with std 0.02, is the default); a table of `max_len` rows of "
    "which a sequence of length T uses the first T; params max_len·d",
    formula="y[t, :] = x[t, :] + P[t, :],  P: [max_len, d]",
)


def _sinusoidal_shape(a: Args, x: Shape) -> Shape:
    need_rank(x, 2, "sinusoidal_embedding", SEQUENCE)
    return x


LAYERS.add(
    "sinusoidal_embedding",
    args=(arg("max_wavelength", PosFloat, 10000.0, "the base of the wavelengths"),),
    shape=_sinusoidal_shape,
    params=lambda a, x: 0,
    known_as=("SinePositionEncoding", "PositionalEncoding"),
    doc="fixed sine and cosine position signals added to the input (Vaswani et al. 2017, "
    "section 3.5): even features a sine, odd features a cosine, of wavelengths from 2π to "
    "max_wavelength·2π; no parameters",
    formula="y[t, 2i] = x[t, 2i] + sin(t / max_wavelength^(2i / d)); y[t, 2i + 1] = "
    "x[t, 2i + 1] + cos(t / max_wavelength^(2i / d)); t from 0",
)

# ------------------------------------------------------------------ ViT: patches and class token


def _divisors(n: int) -> str:
    ds = [str(d) for d in range(1, n + 1) if n % d == 0]
    return ", ".join(ds[:-1]) + f" or {ds[-1]}" if len(ds) > 1 else ds[0]


def _patch_shape(a: Args, x: Shape) -> Shape:
    need_rank(x, 3, "patch_embed", "height, width, channels")
    (ph, pw), (h, w) = a.patch, x[:2]
    if h % ph or w % pw:
        side = "sides" if h % ph and w % pw else "height" if h % ph else "width"
        common = _divisors(math.gcd(h, w)) if ph == pw else None
        raise Problem(
            f"`patch = {ph if ph == pw else [ph, pw]}` does not divide the image's {side}: "
            f"the image is {h} x {w}",
            f"choose a patch dividing both sides: {common}"
            if common
            else f"choose a patch height dividing {h} and a width dividing {w}",
            "patch",
        )
    return ((h // ph) * (w // pw), a.dim)


LAYERS.add(
    "patch_embed",
    example="patch_embed(2, 4)",
    args=(
        arg("patch", SizeT(2), doc="patch size, one int or [height, width]; must divide the image"),
        arg("dim", PosInt, doc="the vector each patch becomes"),
        arg("use_bias", Bool, True),
        *WEIGHT_ARGS,
    ),
    shape=_patch_shape,
    params=lambda a, x: a.patch[0] * a.patch[1] * x[-1] * a.dim + (a.dim if a.use_bias else 0),
    known_as=("PatchEmbed", "PatchEmbedding", "Patches"),
    doc="ViT's patch embedding (Dosovitskiy et al. 2021): the image cut into non-overlapping "
    "patches, each flattened and projected to `dim`, as a convolution with kernel = stride = "
    "patch; the patches in row-major order, [num_patches, dim]; params p_h·p_w·C·dim + dim",
    formula="y[i·(W / p_w) + j, :] = b + sum_{u, v, c} x[i·p_h + u, j·p_w + v, c] W[u, v, c, :]",
)


def _cls_params(a: Args, x: Shape) -> int:
    need_rank(x, 2, "cls_token", SEQUENCE)
    return x[1]


LAYERS.add(
    "cls_token",
    args=(arg("init", RefT("initializer"), "zeros", "initializer of the token"),),
    shape=lambda a, x: (x[0] + 1, *x[1:]),
    params=_cls_params,
    known_as=("ClassToken", "CLSToken"),
    doc="prepend one learned vector to a sequence, [T, d] -> [T + 1, d] (BERT's [CLS], ViT's "
    "class token, initialized to zeros as ViT's); `take(0)` reads its output after the "
    "encoder; params d",
    formula="y = [c; x],  c: [d]",
)


def _take_shape(a: Args, x: Shape) -> Shape:
    if len(x) < 2:
        raise Problem(
            f"`take` picks one position of a sequence [time, features], got shape {fmt_shape(x)}",
            "apply it to a sequence, e.g. after `multi_head_attention` or "
            "`lstm(units, return_sequences = true)`",
            code="E0402",
        )
    if not -x[0] <= a.index < x[0]:
        raise Problem(
            f"`index = {a.index}` is out of range for a sequence of {x[0]} positions",
            f"use an index from {-x[0]} to {x[0] - 1}: 0 is the first position, -1 the last",
            "index",
        )
    return x[1:]


LAYERS.add(
    "take",
    example="take(0)",
    args=(arg("index", Int, doc="the position; negative counts from the end"),),
    shape=_take_shape,
    params=lambda a, x: 0,
    doc="one position of a sequence: `take(0)` the class token, `take(-1)` the last step; "
    "[T, ...] -> [...] (the mean or maximum over the positions: `sequence_pool`)",
    formula="y = x[index],  x[-k] = x[T - k]",
)


def _pool_shape(a: Args, xs: tuple[Shape, ...]) -> Shape:
    x = xs[0]
    need_rank(x, 2, "sequence_pool", SEQUENCE)
    if len(xs) == 2 and xs[1] != (x[0],):
        raise Problem(
            f"the mask of `sequence_pool` must have one value per position, shape "
            f"{fmt_shape((x[0],))}, got {fmt_shape(xs[1])}",
            "make it from the token ids of the sequence: `padding_mask(pad_id)(ids)`",
            code="E0403",
        )
    return (x[1],)


LAYERS.add(
    "sequence_pool",
    example="sequence_pool(mean)",
    args=(arg("mode", EnumT(("mean", "max")), "mean", "mean | max over the positions"),),
    shape=_pool_shape,
    params=lambda a, xs: 0,
    arity=(1, 2),
    known_as=("GlobalAveragePooling1D", "GlobalMaxPooling1D"),
    doc="the mean or maximum over a sequence's positions, [T, d] -> [d]; with a mask [T] as "
    "second input (`padding_mask`), over the positions whose mask is not 0 only (Keras' "
    "GlobalAveragePooling1D with a mask); a sequence with every position masked gives 0. "
    "Without a mask it is `global_avgpool` or `global_maxpool`",
    formula="mean: y = sum_t m[t] x[t] / max(sum_t m[t], 1); max: y = max_{t: m[t] != 0} x[t] "
    "(0 if none); m = 1 without a mask",
)
