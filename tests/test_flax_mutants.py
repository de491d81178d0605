"""Tests that close what the mutation run of the Flax lowering found (issue 14, SCOPE=flax).

Each checks real values against an independent reference: a float64 NumPy computation of the
documented formula, or a hand-worked example. docs/soundness.md lists the mutants each kills.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dnn.compiler.lower_attention import attend
from dnn.compiler.lower_flax import lower_model
from dnn.compiler.lower_scan import plan, stack

import dnn

RNG = np.random.default_rng(14)


def randomized(shapes: dict) -> dict:
    """Random float64 variables of the given shapes (running variances kept positive)."""
    out = {}
    for collection, tree in shapes.items():
        low = 0.5 if collection == "batch_stats" else None
        out[collection] = jax.tree_util.tree_map_with_path(
            lambda path, leaf, low=low: jnp.asarray(
                RNG.uniform(low, 1.5, leaf.shape)
                if low is not None and "var" in str(path[-1])
                else RNG.normal(size=leaf.shape)
            ),
            tree,
        )
    return out


# ---------------------------------------------------------------- frozen batchnorms (freeze)

FROZEN = """block res(c) {
  norm = dense(c)(in) -> batchnorm
  output add(in, norm)
}
model m {
  input x: f32[3]
  repeat 3 { res(3) }
  dense(2)
}
"""


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("scanned", [False, True])
def test_a_frozen_batchnorm_normalizes_with_its_running_averages(scanned: bool) -> None:
    """`train.freeze` reaches `lower_model`, and a scanned run's body (Keras's
    `trainable = False`): in training the frozen batchnorms give the inference output and keep
    their running averages."""
    program = dnn.loads(FROZEN)
    scan = plan(program.model, True) if scanned else None
    if scan is not None:
        assert [g.key for g in scan.groups] == ["res..res_2"]
    assert program.model.node("res_1/norm").op == "batchnorm"  # a binding names its last layer
    model = lower_model(program.model, scan=scan, freeze=("res*/norm",))
    x = jnp.asarray(RNG.normal(size=(4, 3)))
    variables = randomized(jax.eval_shape(model.init, jax.random.key(0), x))
    y, state = model.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(y, model.apply(variables, x), rtol=1e-12, atol=1e-12)
    jax.tree.map(np.testing.assert_array_equal, state["batch_stats"], variables["batch_stats"])
    trained = lower_model(program.model, scan=scan)  # not frozen: batch statistics normalize
    y_trained, _ = trained.apply(variables, x, train=True, mutable=["batch_stats"])
    assert not np.allclose(y_trained, y)


# ---------------------------------------------------------------- scanned runs

ONE_LAYER = """block one(c) {
  output dense(c)(in)
}
model m {
  input x: f32[3]
  repeat 3 { one(3) }
}
"""


@pytest.mark.usefixtures("x64")
def test_a_scanned_run_whose_body_is_one_layer() -> None:
    program = dnn.loads(ONE_LAYER)
    scan = plan(program.model, True)
    assert [(g.key, len(g.body)) for g in scan.groups] == [("one..one_2", 1)]
    names = ("one/dense", "one_1/dense", "one_2/dense")
    p = {n: {"kernel": RNG.normal(size=(3, 3)), "bias": RNG.normal(size=3)} for n in names}
    x = RNG.normal(size=(4, 3))
    want = x
    for n in names:
        want = want @ p[n]["kernel"] + p[n]["bias"]
    params = stack(jax.tree.map(jnp.asarray, p), scan)
    got = lower_model(program.model, scan=scan).apply({"params": params}, jnp.asarray(x))
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ---------------------------------------------------------------- attention


def attention_ref(q, k, v, keep, causal):  # type: ignore[no-untyped-def]
    """softmax(Q Kᵀ / sqrt(d) + M) V in float64, per batch and head (Vaswani et al., eq. 1)."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    s = np.einsum("btnh,bsnh->bnts", q, k) / math.sqrt(q.shape[-1])
    mask = np.ones(s.shape, bool)
    if keep is not None:
        mask &= np.asarray(keep)[:, None, None, :]
    if causal:
        mask &= np.tril(np.ones(s.shape[-2:], bool))
    s = np.where(mask, s, -np.inf)
    w = np.exp(s - s.max(-1, keepdims=True))
    return np.einsum("bnts,bsnh->btnh", w / w.sum(-1, keepdims=True), v)


def test_the_fused_attention_path_is_the_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a backend has fused kernels (`jax.default_backend()` other than the CPU) attention
    goes through `jax.nn.dot_product_attention`; that path too is the formula."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    q, k, v = (RNG.normal(size=(2, 5, 2, 4)).astype(np.float32) for _ in range(3))
    keep = np.array([[1, 0, 1, 1, 0], [1, 1, 0, 0, 1]], bool)  # key 0 kept: no empty row
    for mask in (None, keep):
        for causal in (False, True):
            got = attend(q, k, v, None if mask is None else jnp.asarray(mask), causal, None)
            ref = attention_ref(q, k, v, mask, causal)
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_bfloat16_attention_scores_are_summed_in_float32() -> None:
    """Hand-worked: scores 256 and 257, one apart in float32 but equal once rounded to bfloat16
    (spacing 2 there); the weight of the second key is sigmoid(1 / sqrt(2)) = 0.6698, not 0.5."""
    q = jnp.asarray([[[[16.0, 1.0]]]], jnp.bfloat16)  # [B, Tq, heads, d]
    k = jnp.asarray([[[[16.0, 0.0]], [[16.0, 1.0]]]], jnp.bfloat16)  # q·k = 256, 257
    v = jnp.asarray([[[[0.0]], [[1.0]]]], jnp.bfloat16)
    out = attend(q, k, v, None, False, None)
    assert out.dtype == jnp.bfloat16
    assert float(out[0, 0, 0, 0]) == pytest.approx(1 / (1 + math.exp(-1 / math.sqrt(2))), abs=4e-3)


# ---------------------------------------------------------------- pooling


def pooled(layer: str, x: jax.Array) -> jax.Array:
    shape = ", ".join(str(d) for d in x.shape[1:])
    program = dnn.loads(f"model m {{\n  input x: f32[{shape}]\n  {layer}\n}}\n")
    return lower_model(program.model).apply({}, x)


def test_ceil_mode_average_pooling_keeps_bfloat16() -> None:
    """`precision = bf16` computes the forward in bfloat16: the divisor of a ceil-mode window
    takes the input's dtype. Hand-worked on 0..24 (every value exact in bfloat16): the last
    row and column of windows hold the cells inside the input only."""
    x = jnp.arange(25.0, dtype=jnp.bfloat16).reshape(1, 5, 5, 1)
    y = pooled("avgpool2d(2, ceil_mode = true)", x)
    assert y.dtype == jnp.bfloat16
    want = [[3.0, 5.0, 6.5], [13.0, 15.0, 16.5], [20.5, 22.5, 24.0]]
    np.testing.assert_array_equal(np.asarray(y, np.float64)[0, :, :, 0], want)


def test_a_4x4_max_window_gives_its_gradient_to_the_first_maximum() -> None:
    """The largest window (16 cells) that tiled pooling combines as strided slices: a tie's
    gradient goes to the first maximum in row-major order, as in Flax's `max_pool` and
    PyTorch (`val > maxval`), not shared among the tied cells."""
    x = -np.abs(RNG.normal(size=(1, 8, 8, 1))).astype(np.float32) - 1
    x[0, [1, 3], [2, 0], 0] = 2.0  # window (0, 0): a tie at (1, 2) and (3, 0)
    x[0, 4:, 4:, 0] = 0.0  # window (1, 1): all sixteen tied
    grad = jax.grad(lambda x: pooled("maxpool2d(4)", x).sum())(jnp.asarray(x))
    want = np.zeros((8, 8))
    for i in (0, 4):
        for j in (0, 4):  # np.argmax: the first maximum of the window, row-major
            r, c = divmod(int(np.argmax(x[0, i : i + 4, j : j + 4, 0])), 4)
            want[i + r, j + c] = 1.0
    assert want[1, 2] == want[4, 4] == 1.0 and want[3, 0] == want[4, 5] == 0.0
    np.testing.assert_array_equal(np.asarray(grad)[0, :, :, 0], want)
    flax_grad = jax.grad(lambda x: nn.max_pool(x, (4, 4), (4, 4)).sum())(jnp.asarray(x))
    np.testing.assert_array_equal(grad, flax_grad)
