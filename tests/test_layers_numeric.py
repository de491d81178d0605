"""Each layer's Flax lowering against an independent float64 NumPy version of its formula.

The references below are written from the formulas in docs/reference.md (`dnn help WORD`) and
use only NumPy, never jax or flax. JAX runs in 64-bit mode here (autouse fixture), parameters
are replaced by random float64 values (so zero-initialized biases and unit scales are tested
too), and both sides compute in float64, so results agree to ~1e-12; the tolerance is 1e-10.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import numpy as np
import pytest
from dnn.compiler.lower_flax import lower_model

import dnn

TOL = {"rtol": 1e-10, "atol": 1e-10}


pytestmark = pytest.mark.usefixtures("x64")  # float64 throughout (conftest)


def rand(*shape: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape) * scale


# ------------------------------------------------------------------ building and running


def _type(x: np.ndarray) -> str:
    kind = "i32" if x.dtype.kind in "iu" else "f32"
    return f"{kind}[{', '.join(str(d) for d in x.shape[1:])}]"


def _randomized(variables: dict, seed: int) -> dict:
    """Every parameter and state leaf replaced by a random float64 array of the same shape."""
    rng = np.random.default_rng(1000 + seed)
    out = {}
    for collection, layers in variables.items():
        positive = collection == "batch_stats"  # running variances must be > 0
        out[collection] = jax.tree.map(
            lambda leaf, positive=positive: (
                np.abs(rng.normal(size=leaf.shape)) + 0.5
                if positive
                else rng.normal(size=leaf.shape)
            ),
            dict(layers),
        )
    return out


class Built:
    """A one-model spec built from `body` (lines after the inputs), with random float64 weights."""

    def __init__(self, body: str, seed: int = 0, **inputs: np.ndarray) -> None:
        head = "".join(f"  input {k}: {_type(v)}\n" for k, v in inputs.items())
        lines = "".join(f"  {line.strip()}\n" for line in body.strip().splitlines())
        self.program = dnn.loads("model m {\n" + head + lines + "}\n")
        self.model = lower_model(self.program.model)
        self.arg = inputs if len(inputs) > 1 else next(iter(inputs.values()))
        shapes = jax.eval_shape(self.model.init, jax.random.key(0), self.arg)  # no compile
        self.variables = _randomized(shapes, seed)

    def p(self, layer: str) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, np.float64) for k, v in self.variables["params"][layer].items()}

    def __call__(self) -> np.ndarray:
        return np.asarray(self.model.apply(self.variables, self.arg))


def run(body: str, x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, Built]:
    b = Built(body, seed, x=x)
    return b(), b


# ------------------------------------------------------------------ NumPy references


def ref_conv(x, w, b, stride, pad, dil, groups):
    """y[p, o] = b[o] + sum_{k, i in group(o)} x[p·s + k·d - pad, i] W[k, i, o]."""
    nd = x.ndim - 2
    x = np.pad(x, [(0, 0), *pad, (0, 0)])
    win, cin_g, out_ch = w.shape[:nd], w.shape[nd], w.shape[-1]
    og = out_ch // groups
    out = [(x.shape[1 + i] - dil[i] * (win[i] - 1) - 1) // stride[i] + 1 for i in range(nd)]
    y = np.zeros((x.shape[0], *out, out_ch))
    for k in np.ndindex(*win):
        sl = tuple(
            slice(k[i] * dil[i], k[i] * dil[i] + stride[i] * (out[i] - 1) + 1, stride[i])
            for i in range(nd)
        )
        patch = x[(slice(None), *sl)]
        for g in range(groups):
            y[..., g * og : (g + 1) * og] += (
                patch[..., g * cin_g : (g + 1) * cin_g] @ w[k][:, g * og : (g + 1) * og]
            )
    return y + b


def same_pad(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TF/Flax 'SAME': output ceil(n / s), total padding split with the extra at the end."""
    out = -(-n // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def ref_pool(x, size, stride, pad, kind):
    """max or mean over each window; padded cells are -inf for max, zeros that count for avg."""
    nd = x.ndim - 2
    fill = -np.inf if kind == "max" else 0.0
    x = np.pad(x, [(0, 0), *pad, (0, 0)], constant_values=fill)
    out = [(x.shape[1 + i] - size[i]) // stride[i] + 1 for i in range(nd)]
    patches = [
        x[
            (
                slice(None),
                *(slice(k[i], k[i] + stride[i] * (out[i] - 1) + 1, stride[i]) for i in range(nd)),
            )
        ]
        for k in np.ndindex(*size)
    ]
    stack = np.stack(patches)
    return stack.max(0) if kind == "max" else stack.sum(0) / math.prod(size)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softplus(x):
    return np.log1p(np.exp(x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def log_softmax(x, axis=-1):
    m = x.max(axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis, keepdims=True))


erf = np.vectorize(math.erf)

# the exact SELU constants (Klambauer et al. 2017); the reference page rounds them
SELU_SCALE, SELU_ALPHA = 1.0507009873554804934, 1.6732632423543772848


def rnn_step(cell, p, x_t, carry):
    """One step of simple_rnn / lstm / gru with the Keras layouts (gates concatenated)."""
    w, u, b = p["kernel"], p["recurrent_kernel"], p["bias"]
    n = u.shape[0]
    if cell == "simple_rnn":
        return (np.tanh(x_t @ w + carry[0] @ u + b),)
    if cell == "lstm":
        h, c = carry
        z = x_t @ w + h @ u + b
        i, f, g, o = (z[:, k * n : (k + 1) * n] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return (sigmoid(o) * np.tanh(c), c)
    h = carry[0]
    xw, hu = x_t @ w + b, h @ u + p["recurrent_bias"]
    z = sigmoid(xw[:, :n] + hu[:, :n])
    r = sigmoid(xw[:, n : 2 * n] + hu[:, n : 2 * n])
    cand = np.tanh(xw[:, 2 * n :] + r * hu[:, 2 * n :])
    return ((1 - z) * cand + z * h,)


def ref_rnn(cell, p, x):
    """Hidden states at every step, shape (batch, time, units), from zero initial states."""
    n = p["recurrent_kernel"].shape[0]
    h0 = np.zeros((x.shape[0], n))
    carry = (h0, h0) if cell == "lstm" else (h0,)
    hs = []
    for t in range(x.shape[1]):
        carry = rnn_step(cell, p, x[:, t], carry)
        hs.append(carry[0])
    return np.stack(hs, 1)


# ------------------------------------------------------------------ dense


def test_dense():
    x = rand(4, 5)
    y, m = run("dense(3)", x)
    p = m.p("dense")
    np.testing.assert_allclose(y, x @ p["kernel"] + p["bias"], **TOL)


def test_dense_on_rank_3_applies_to_last_axis():
    x = rand(2, 6, 5)
    y, m = run("dense(3)", x)
    p = m.p("dense")
    want = np.einsum("btf,fu->btu", x, p["kernel"]) + p["bias"]
    assert y.shape == (2, 6, 3)
    np.testing.assert_allclose(y, want, **TOL)


def test_dense_without_bias():
    x = rand(4, 5)
    y, m = run("dense(3, use_bias = false)", x)
    assert set(m.p("dense")) == {"kernel"}
    np.testing.assert_allclose(y, x @ m.p("dense")["kernel"], **TOL)


# ------------------------------------------------------------------ convolutions

# (layer text, input shape without batch, stride, padding per axis ("same" computed), dilation,
#  groups)
CONVS = [
    ("conv2d(4, 3)", (8, 8, 3), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    ("conv2d(4, 3, stride = 2, padding = 1)", (8, 8, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 1),
    ("conv2d(4, 3, stride = 2, padding = 2)", (9, 7, 3), (2, 2), ((2, 2), (2, 2)), (1, 1), 1),
    (
        "conv2d(5, [3, 2], stride = [2, 1], padding = [1, 0])",
        (9, 7, 2),
        (2, 1),
        ((1, 1), (0, 0)),
        (1, 1),
        1,
    ),
    ("conv2d(4, 3, stride = 2, padding = same)", (8, 8, 3), (2, 2), "same", (1, 1), 1),
    ("conv2d(4, 3, stride = 2, padding = same)", (9, 9, 3), (2, 2), "same", (1, 1), 1),
    ("conv2d(4, 4, padding = same)", (7, 6, 2), (1, 1), "same", (1, 1), 1),
    ("conv2d(4, 3, stride = 3, padding = same)", (10, 8, 2), (3, 3), "same", (1, 1), 1),
    ("conv2d(4, 3, dilation = 2)", (9, 9, 3), (1, 1), ((0, 0), (0, 0)), (2, 2), 1),
    ("conv2d(4, 3, dilation = 2, padding = same)", (8, 9, 2), (1, 1), "same", (2, 2), 1),
    (
        "conv2d(4, 3, stride = 2, dilation = 2, padding = 1)",
        (11, 11, 2),
        (2, 2),
        ((1, 1), (1, 1)),
        (2, 2),
        1,
    ),
    ("conv2d(3, 3, groups = 3, padding = same)", (6, 6, 3), (1, 1), "same", (1, 1), 3),
    ("conv2d(6, 3, groups = 3)", (6, 6, 3), (1, 1), ((0, 0), (0, 0)), (1, 1), 3),
    ("conv2d(6, 3, groups = 2, stride = 2)", (7, 7, 4), (2, 2), ((0, 0), (0, 0)), (1, 1), 2),
    ("conv1d(3, 2)", (10, 4), (1,), ((0, 0),), (1,), 1),
    ("conv1d(3, 3, stride = 2, padding = same)", (10, 4), (2,), "same", (1,), 1),
    ("conv1d(5, 3, stride = 2, padding = 1, dilation = 2)", (12, 2), (2,), ((1, 1),), (2,), 1),
    ("conv1d(4, 3, groups = 4)", (9, 4), (1,), ((0, 0),), (1,), 4),
]


@pytest.mark.parametrize("layer,shape,stride,pad,dil,groups", CONVS, ids=[c[0] for c in CONVS])
def test_conv(layer, shape, stride, pad, dil, groups):
    x = rand(2, *shape)
    y, m = run(layer, x)
    name = layer.split("(")[0]
    p = m.p(name)
    w = p["kernel"]
    nd = len(shape) - 1
    assert w.shape[nd] == shape[-1] // groups  # HWIO with in/groups
    if pad == "same":
        pad = [same_pad(shape[i], w.shape[i], stride[i], dil[i]) for i in range(nd)]
        assert y.shape[1:-1] == tuple(-(-shape[i] // stride[i]) for i in range(nd))
    want = ref_conv(x, w, p["bias"], stride, pad, dil, groups)
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, **TOL)


def test_conv_without_bias():
    x = rand(2, 6, 6, 2)
    y, m = run("conv2d(3, 3, use_bias = false)", x)
    w = m.p("conv2d")["kernel"]
    np.testing.assert_allclose(y, ref_conv(x, w, 0.0, (1, 1), [(0, 0)] * 2, (1, 1), 1), **TOL)


# ------------------------------------------------------------------ pooling

# (layer text, input shape without batch, size, stride, padding per axis)
POOLS = [
    ("maxpool2d(2)", (8, 8, 3), (2, 2), (2, 2), ((0, 0), (0, 0))),
    ("maxpool2d(3, stride = 2)", (9, 8, 3), (3, 3), (2, 2), ((0, 0), (0, 0))),
    ("maxpool2d(3, stride = 1)", (6, 6, 2), (3, 3), (1, 1), ((0, 0), (0, 0))),
    ("maxpool2d(3, stride = 2, padding = 1)", (8, 8, 2), (3, 3), (2, 2), ((1, 1), (1, 1))),
    ("maxpool2d([2, 3], stride = [1, 2])", (6, 9, 2), (2, 3), (1, 2), ((0, 0), (0, 0))),
    ("avgpool2d(2)", (8, 8, 3), (2, 2), (2, 2), ((0, 0), (0, 0))),
    ("avgpool2d(3, stride = 2)", (9, 8, 3), (3, 3), (2, 2), ((0, 0), (0, 0))),
    ("avgpool2d(3, stride = 2, padding = 1)", (8, 8, 2), (3, 3), (2, 2), ((1, 1), (1, 1))),
    ("avgpool2d(3, stride = 1, padding = 1)", (5, 5, 2), (3, 3), (1, 1), ((1, 1), (1, 1))),
    ("avgpool2d([2, 3], stride = [1, 2])", (6, 9, 2), (2, 3), (1, 2), ((0, 0), (0, 0))),
    ("maxpool1d(3, stride = 2)", (11, 3), (3,), (2,), ((0, 0),)),
    ("avgpool1d(2, padding = 1)", (7, 3), (2,), (2,), ((1, 1),)),
]


@pytest.mark.parametrize("layer,shape,size,stride,pad", POOLS, ids=[c[0] for c in POOLS])
def test_pool(layer, shape, size, stride, pad):
    x = rand(2, *shape, scale=3.0)
    y, _ = run(layer, x)
    want = ref_pool(x, size, stride, pad, "max" if layer.startswith("max") else "avg")
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, **TOL)


def test_avgpool_padded_zeros_count():
    """count_include_pad (PyTorch's default): a corner window of ones averages 4/9, not 1."""
    x = np.ones((1, 4, 4, 1))
    y, _ = run("avgpool2d(3, stride = 1, padding = 1)", x)
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9) and y[0, 1, 1, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("shape", [(5, 6, 3), (7, 4), (3, 4, 5, 2)])
def test_global_pools(shape):
    x = rand(2, *shape)
    axes = tuple(range(1, x.ndim - 1))
    y, _ = run("global_avgpool", x)
    np.testing.assert_allclose(y, x.mean(axes), **TOL)
    y, _ = run("global_maxpool", x)
    np.testing.assert_allclose(y, x.max(axes), **TOL)


# ------------------------------------------------------------------ reshaping


def test_flatten():
    x = rand(3, 4, 5, 2)
    y, _ = run("flatten", x)
    np.testing.assert_array_equal(y, x.reshape(3, 40))


@pytest.mark.parametrize(
    "shape,want",
    [("[5, 8]", (5, 8)), ("[-1, 4]", (10, 4)), ("[2, -1, 2]", (2, 10, 2)), ("[-1]", (40,))],
)
def test_reshape(shape, want):
    x = rand(3, 4, 5, 2)
    y, _ = run(f"reshape({shape})", x)
    np.testing.assert_array_equal(y, x.reshape(3, *want))


# ------------------------------------------------------------------ normalization


def test_batchnorm_train_uses_batch_statistics_and_updates_running_averages():
    x = rand(6, 4, 5, 3, scale=2.0) + 1.5
    m = Built("batchnorm(momentum = 0.9, eps = 1e-3)", x=x)
    y, updates = m.model.apply(m.variables, x, train=True, mutable=["batch_stats"])
    p, s = m.p("batchnorm"), m.variables["batch_stats"]["batchnorm"]
    axes = (0, 1, 2)  # all but the last
    mu, var = x.mean(axes), x.var(axes)  # biased variance (divides by N)
    want = p["scale"] * (x - mu) / np.sqrt(var + 1e-3) + p["bias"]
    np.testing.assert_allclose(np.asarray(y), want, **TOL)
    new = updates["batch_stats"]["batchnorm"]
    np.testing.assert_allclose(np.asarray(new["mean"]), 0.9 * s["mean"] + 0.1 * mu, **TOL)
    np.testing.assert_allclose(np.asarray(new["var"]), 0.9 * s["var"] + 0.1 * var, **TOL)


def test_batchnorm_eval_uses_running_averages():
    x = rand(6, 4, 3, scale=2.0)
    y, m = run("batchnorm", x)  # default eps 1e-5
    p, s = m.p("batchnorm"), m.variables["batch_stats"]["batchnorm"]
    want = p["scale"] * (x - s["mean"]) / np.sqrt(s["var"] + 1e-5) + p["bias"]
    np.testing.assert_allclose(y, want, **TOL)


def test_batchnorm_without_center_and_scale():
    x = rand(8, 3, scale=2.0)
    m = Built("batchnorm(center = false, scale = false)", x=x)
    assert "params" not in m.variables or "batchnorm" not in m.variables["params"]
    y, _ = m.model.apply(m.variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(np.asarray(y), (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), **TOL)


def test_batchnorm_feature_axis_counts_without_the_batch_axis():
    """`axis` indexes the shape without the batch axis, as the checker's parameter count does."""
    x = rand(8, 4, 3, scale=2.0)
    m = Built("batchnorm(axis = 0)", x=x)  # features: the 4 rows
    y, _ = m.model.apply(m.variables, x, train=True, mutable=["batch_stats"])
    p = m.p("batchnorm")
    assert p["scale"].shape == (4,), f"one scale per row expected, got {p['scale'].shape}"
    mu, var = x.mean((0, 2), keepdims=True), x.var((0, 2), keepdims=True)
    want = p["scale"][:, None] * (x - mu) / np.sqrt(var + 1e-5) + p["bias"][:, None]
    np.testing.assert_allclose(np.asarray(y), want, **TOL)


def test_layernorm():
    x = rand(3, 4, 6, scale=2.0) + 1.0
    y, m = run("layernorm(eps = 1e-3)", x)
    p = m.p("layernorm")
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(y, p["scale"] * (x - mu) / np.sqrt(var + 1e-3) + p["bias"], **TOL)


def ref_lrn(x, size, alpha, beta, k):
    """x_c / (k + alpha · sum_{c'} x_{c'}²)^beta, c' from c - size//2 to c + (size - 1)//2.

    For odd sizes the window is centred: [c - size/2, c + size/2] with integer halves, as on
    the reference page. For even sizes one more channel is taken below c than above it, the
    placement of PyTorch's LocalResponseNorm (which pads size//2 before, (size-1)//2 after);
    unlike PyTorch, alpha is not divided by size (AlexNet's and TF's form).
    """
    n = x.shape[-1]
    out = np.empty_like(x)
    for c in range(n):
        lo, hi = max(0, c - size // 2), min(n, c + (size - 1) // 2 + 1)
        s = (x[..., lo:hi] ** 2).sum(-1)
        out[..., c] = x[..., c] / (k + alpha * s) ** beta
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_local_response_norm(size):
    x = rand(2, 3, 3, 7, scale=2.0)
    alpha, beta, k = 0.3, 0.75, 1.5  # large alpha so the window placement matters
    y, _ = run(f"local_response_norm(size = {size}, alpha = {alpha}, beta = {beta}, k = {k})", x)
    np.testing.assert_allclose(y, ref_lrn(x, size, alpha, beta, k), **TOL)


@pytest.mark.parametrize("size,hot", [(3, [3, 4, 5]), (4, [3, 4, 5, 6]), (5, [2, 3, 4, 5, 6])])
def test_local_response_norm_window_placement(size, hot):
    """Channel 4 of 8 is seen by outputs c with c - size//2 <= 4 <= c + (size - 1)//2.

    Every channel is 1 except channel 4 (= 2); with k = alpha = beta = 1, x_c / y_c - 1 is the
    sum of squares over c's window, i.e. the channels in it plus 3 if channel 4 is among them.
    For size 4 the window of c is [c - 2, c + 1] (PyTorch's placement).
    """
    x = np.ones((1, 8))
    x[0, 4] = 2.0
    y, _ = run(f"lrn(size = {size}, alpha = 1.0, beta = 1.0, k = 1.0)", x)
    inside = [min(8, c + (size - 1) // 2 + 1) - max(0, c - size // 2) for c in range(8)]
    extra = x[0] / y[0] - 1 - np.array(inside)
    assert [c for c in range(8) if abs(extra[c] - 3) < 1e-9] == hot, extra
    assert [c for c in range(8) if abs(extra[c]) < 1e-9] == [c for c in range(8) if c not in hot]


# ------------------------------------------------------------------ dropout


def test_dropout_eval_is_identity():
    x = rand(4, 50)
    y, _ = run("dropout(0.5)", x)
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_dropout_train(rate):
    x = rand(4, 25_000) + 10.0  # no zeros in the input
    m = Built(f"dropout({rate})", x=x)
    y = np.asarray(m.model.apply(m.variables, x, train=True, rngs={"dropout": jax.random.key(3)}))
    dropped = y == 0
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - rate), **TOL)
    n = x.size
    assert abs(dropped.mean() - rate) < 5 * math.sqrt(rate * (1 - rate) / n)
    y2 = m.model.apply(m.variables, x, train=True, rngs={"dropout": jax.random.key(4)})
    assert (np.asarray(y2) != y).any()  # another key, another mask


# ------------------------------------------------------------------ activations

ACTS: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
    ("identity", lambda x: x),
    ("relu", lambda x: np.maximum(0, x)),
    ("relu6", lambda x: np.minimum(np.maximum(0, x), 6)),
    ("leaky_relu", lambda x: np.where(x > 0, x, 0.01 * x)),
    ("leaky_relu(negative_slope = 0.2)", lambda x: np.where(x > 0, x, 0.2 * x)),
    ("elu", lambda x: np.where(x > 0, x, np.exp(x) - 1)),
    ("elu(alpha = 0.5)", lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1))),
    ("selu", lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1))),
    ("gelu", lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2)))),
    (
        "gelu(approximate = true)",
        lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    ),
    ("silu", lambda x: x * sigmoid(x)),
    ("swish", lambda x: x * sigmoid(x)),
    ("softplus", softplus),
    ("softsign", lambda x: x / (1 + np.abs(x))),
    ("hard_sigmoid", lambda x: np.clip(x + 3, 0, 6) / 6),
    ("hard_tanh", lambda x: np.clip(x, -1, 1)),
    ("mish", lambda x: x * np.tanh(softplus(x))),
    ("sigmoid", sigmoid),
    ("tanh", np.tanh),
    ("softmax", softmax),
    ("log_softmax", log_softmax),
    ("softmax(axis = -2)", lambda x: softmax(x, -2)),
    ("log_softmax(axis = -2)", lambda x: log_softmax(x, -2)),
]


@pytest.mark.parametrize("layer,fn", ACTS, ids=[a[0] for a in ACTS])
def test_activation(layer, fn):
    x = rand(4, 5, 6, scale=4.0)  # reaches past ±6, so relu6/hard_* clip on both sides
    y, _ = run(layer, x)
    np.testing.assert_allclose(y, fn(x), **TOL)


@pytest.mark.parametrize("word", ["softmax", "log_softmax"])
def test_softmax_axis_counts_without_the_batch_axis(word):
    """axis = 0 is the first axis of the shape (as for concat and the checker), not the batch."""
    x = rand(4, 5, 6, scale=2.0)
    y, _ = run(f"{word}(axis = 0)", x)
    fn = softmax if word == "softmax" else log_softmax
    np.testing.assert_allclose(y, fn(x, 1), **TOL)


@pytest.mark.parametrize("shared", [False, True])
def test_prelu(shared):
    x = rand(3, 4, 5, scale=2.0)
    y, m = run(f"prelu(shared = {'true' if shared else 'false'})", x)
    a = m.p("prelu")["slope"]
    assert a.shape == ((1,) if shared else (5,))
    np.testing.assert_allclose(y, np.where(x > 0, x, a * x), **TOL)


# ------------------------------------------------------------------ embedding


def test_embedding():
    ids = np.random.default_rng(0).integers(0, 20, size=(3, 7)).astype(np.int32)
    ids[0, :3] = [0, 19, 0]
    y, m = run("embedding(20, 4)", ids)
    e = m.p("embedding")["embedding"]
    assert e.shape == (20, 4)
    np.testing.assert_allclose(y, e[ids], **TOL)


# ------------------------------------------------------------------ recurrent layers

CELLS = ["simple_rnn", "lstm", "gru"]
GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


def _layout(cell, p, features, units):
    g = GATES[cell] * units
    assert p["kernel"].shape == (features, g)
    assert p["recurrent_kernel"].shape == (units, g)
    assert p["bias"].shape == (g,)
    assert ("recurrent_bias" in p) == (cell == "gru")


@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_one_step(cell):
    x = rand(3, 1, 4)
    y, m = run(f"{cell}(5)", x)
    p = m.p(cell)
    _layout(cell, p, 4, 5)
    h0 = np.zeros((3, 5))
    want = rnn_step(cell, p, x[:, 0], (h0, h0) if cell == "lstm" else (h0,))[0]
    np.testing.assert_allclose(y, want, **TOL)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("sequences", [True, False])
def test_recurrent_sequence(cell, sequences):
    x = rand(3, 6, 4)
    y, m = run(f"{cell}(5, return_sequences = {'true' if sequences else 'false'})", x)
    hs = ref_rnn(cell, m.p(cell), x)
    np.testing.assert_allclose(y, hs if sequences else hs[:, -1], **TOL)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("sequences", [True, False])
def test_recurrent_bidirectional(cell, sequences):
    x = rand(3, 6, 4)
    flag = "true" if sequences else "false"
    y, m = run(f"{cell}(5, bidirectional = true, return_sequences = {flag})", x)
    fwd = ref_rnn(cell, m.p(f"{cell}/forward"), x)
    bwd = ref_rnn(cell, m.p(f"{cell}/backward"), x[:, ::-1])[:, ::-1]  # back in input order
    if sequences:
        want = np.concatenate([fwd, bwd], -1)
    else:  # forward's last state, backward's last state (which sits at the first step)
        want = np.concatenate([fwd[:, -1], bwd[:, 0]], -1)
    np.testing.assert_allclose(y, want, **TOL)


def test_recurrent_stack():
    x = rand(2, 5, 3)
    y, m = run("lstm(4, return_sequences = true)\ngru(3)", x)
    want = ref_rnn("gru", m.p("gru"), ref_rnn("lstm", m.p("lstm"), x))[:, -1]
    np.testing.assert_allclose(y, want, **TOL)


# ------------------------------------------------------------------ merges


MERGES = [
    ("add(a, b, c)", lambda a, b, c: a + b + c),
    ("add(a, b)", lambda a, b, c: a + b),
    ("subtract(a, b)", lambda a, b, c: a - b),
    ("multiply(a, b, c)", lambda a, b, c: a * b * c),
    ("average(a, b, c)", lambda a, b, c: (a + b + c) / 3),
    ("average(a, b)", lambda a, b, c: (a + b) / 2),
    ("maximum(a, b, c)", lambda a, b, c: np.maximum(np.maximum(a, b), c)),
    ("concat(a, b, c)", lambda a, b, c: np.concatenate([a, b, c], -1)),
    ("concat(a, b, axis = 0)", lambda a, b, c: np.concatenate([a, b], 1)),
    ("concat(a, c, axis = 1)", lambda a, b, c: np.concatenate([a, c], 2)),
    ("concat(b, c, axis = -2)", lambda a, b, c: np.concatenate([b, c], 1)),
]


@pytest.mark.parametrize("expr,fn", MERGES, ids=[e[0] for e in MERGES])
def test_merge(expr, fn):
    a, b, c = rand(2, 3, 4, seed=1), rand(2, 3, 4, seed=2), rand(2, 3, 4, seed=3)
    m = Built(f"output {expr}", a=a, b=b, c=c)
    np.testing.assert_allclose(m(), fn(a, b, c), **TOL)


def test_concat_axis_with_unequal_sizes():
    a, b = rand(2, 3, 4, seed=1), rand(2, 5, 4, seed=2)
    m = Built("output concat(a, b, axis = 0)", a=a, b=b)
    np.testing.assert_allclose(m(), np.concatenate([a, b], 1), **TOL)
