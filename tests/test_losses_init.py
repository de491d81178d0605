"""Losses and penalties against NumPy float64; initializers' statistics against their formulas."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dnn.compiler.driver import value
from dnn.compiler.lower_flax import initializer, lower_model
from dnn.compiler.lower_loss import lower_loss, lower_penalties

import dnn

pytestmark = pytest.mark.usefixtures("x64")  # float64 throughout (conftest)


RNG = np.random.default_rng(0)
Z = RNG.normal(size=(6, 4))  # logits
LABELS = RNG.integers(0, 4, size=6)
Y = RNG.normal(size=(6, 4))  # regression targets
B = RNG.integers(0, 2, size=(6, 4)).astype(np.float64)  # binary targets


def loss(text: str, z: np.ndarray, y: np.ndarray) -> float:
    return float(lower_loss(value(text, "loss")[0])(jnp.asarray(z), jnp.asarray(y)))


def log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def test_regression_losses() -> None:
    r = Y - Z
    assert loss("mse", Z, Y) == pytest.approx(np.mean(r**2), rel=1e-12)
    assert loss("mae", Z, Y) == pytest.approx(np.mean(np.abs(r)), rel=1e-12)
    h = np.where(np.abs(r) <= 0.5, r**2 / 2, 0.5 * (np.abs(r) - 0.25))
    assert loss("huber(delta = 0.5)", Z, Y) == pytest.approx(np.mean(h), rel=1e-12)


def test_cross_entropy_integer_one_hot_and_smoothing() -> None:
    ref = -np.mean(log_softmax(Z)[np.arange(6), LABELS])
    assert loss("cross_entropy", Z, LABELS) == pytest.approx(ref, rel=1e-12)
    onehot = np.eye(4)[LABELS]
    assert loss("cross_entropy", Z, onehot) == pytest.approx(ref, rel=1e-12)
    smooth = onehot * 0.9 + 0.1 / 4
    ref = -np.mean((smooth * log_softmax(Z)).sum(-1))
    assert loss("cross_entropy(label_smoothing = 0.1)", Z, LABELS) == pytest.approx(ref, rel=1e-12)


def test_binary_losses() -> None:
    y = B * 0.8 + 0.1  # label_smoothing = 0.2
    p = 1 / (1 + np.exp(-Z))
    ref = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert loss("binary_cross_entropy(label_smoothing = 0.2)", Z, B) == pytest.approx(
        ref, rel=1e-10
    )
    s = 2 * B - 1
    assert loss("hinge", Z, B) == pytest.approx(np.mean(np.maximum(0, 1 - s * Z)), rel=1e-12)
    ref = np.mean(np.maximum(0, 1 - s * Z) ** 2)
    assert loss("squared_hinge", Z, B) == pytest.approx(ref, rel=1e-12)


def test_several_units_with_class_labels_class_1() -> None:
    """Task-dependent losses (issue 14, class 1): class labels against C units are one-hot rows
    for binary_cross_entropy (one-vs-rest) and Crammer & Singer's margin for the hinges."""
    onehot = np.eye(4)[LABELS]
    p = 1 / (1 + np.exp(-Z))
    ref = -np.mean(onehot * np.log(p) + (1 - onehot) * np.log(1 - p))
    assert loss("binary_cross_entropy", Z, LABELS) == pytest.approx(ref, rel=1e-10)
    true = Z[np.arange(6), LABELS]
    other = np.where(onehot > 0, -np.inf, Z).max(axis=1)
    margin = np.maximum(0, 1 + other - true)
    assert loss("hinge", Z, LABELS) == pytest.approx(np.mean(margin), rel=1e-12)
    assert loss("squared_hinge", Z, LABELS) == pytest.approx(np.mean(margin**2), rel=1e-12)
    # hand-worked: scores (2, 0.5, -1), class 0: max(0, 1 + 0.5 - 2) = 0; class 2: 1 + 2 + 1 = 4
    z = np.array([[2.0, 0.5, -1.0], [2.0, 0.5, -1.0]])
    assert loss("hinge", z, np.array([0, 2])) == pytest.approx(2.0, rel=1e-12)


def test_penalties_apply_to_kernels_unless_on_all() -> None:
    src = """model m {
  input x: f32[3]
  dense(4, regularizer = l1_l2(l1 = 0.1, l2 = 0.01))
  dense(2, regularizer = l2(0.5, on = all))
  dense(2)
}
"""
    program = dnn.loads(src)
    variables = lower_model(program.model).init(jax.random.key(0), jnp.zeros((1, 3)))
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables["params"])
    p = jax.tree.map(np.asarray, params)
    k0, k1, b1 = p["dense"]["kernel"], p["dense_1"]["kernel"], p["dense_1"]["bias"]
    want = 0.1 * np.abs(k0).sum() + 0.01 * (k0**2).sum() + 0.5 * ((k1**2).sum() + (b1**2).sum())
    got = float(lower_penalties(program.model)(params))
    assert got == pytest.approx(want, rel=1e-12)
    # a model-wide default covers layers that set none
    l2 = value("l2(1.0)", "regularizer")[0]
    k2 = p["dense_2"]["kernel"]
    got = float(lower_penalties(program.model, l2)(params))
    assert got == pytest.approx(want + (k2**2).sum(), rel=1e-12)


# ---------------------------------------------------------------- initializers


def draw(text: str, shape: tuple[int, ...]) -> np.ndarray:
    init = initializer(value(text, "initializer")[0])
    return np.asarray(init(jax.random.key(1), shape, jnp.float64))


DENSE = (400, 300)  # fan_in 400, fan_out 300
CONV = (3, 3, 32, 64)  # fan_in 3·3·32 = 288, fan_out 3·3·64 = 576


@pytest.mark.parametrize(
    ("text", "shape", "std"),
    [
        ("glorot_uniform", DENSE, math.sqrt(2 / 700)),
        ("xavier_uniform(gain = 2.0)", CONV, 2 * math.sqrt(2 / (288 + 576))),
        ("glorot_normal", CONV, math.sqrt(2 / (288 + 576))),
        ("he_uniform", CONV, math.sqrt(2 / 288)),
        ("kaiming_normal(mode = fan_out)", CONV, math.sqrt(2 / 576)),
        ("he_normal(a = 0.2, nonlinearity = leaky_relu)", DENSE, math.sqrt(2 / 1.04 / 400)),
        ("he_uniform(nonlinearity = tanh)", DENSE, 5 / 3 / math.sqrt(400)),
        ("lecun_uniform", DENSE, math.sqrt(1 / 400)),
        ("lecun_normal", CONV, math.sqrt(1 / 288)),
        (
            "variance_scaling(scale = 2.0, mode = fan_avg, distribution = uniform)",
            CONV,
            math.sqrt(2 / ((288 + 576) / 2)),
        ),
        ("normal(mean = 1.0, std = 0.2)", DENSE, 0.2),
        ("uniform(low = -1.0, high = 3.0)", DENSE, 4 / math.sqrt(12)),
        ("orthogonal", (300, 300), math.sqrt(1 / 300)),
    ],
)
def test_initializer_statistics(text: str, shape: tuple[int, ...], std: float) -> None:
    w = draw(text, shape)
    mean = {"normal(mean = 1.0, std = 0.2)": 1.0, "uniform(low = -1.0, high = 3.0)": 1.0}.get(
        text, 0.0
    )
    n = w.size
    assert abs(w.mean() - mean) < 5 * std / math.sqrt(n)  # five standard errors
    assert w.std() == pytest.approx(std, rel=0.03)


def test_truncated_normal_stays_within_two_std() -> None:
    w = draw("truncated_normal(std = 0.1)", DENSE)
    assert np.abs(w).max() <= 0.2 + 1e-12


def test_orthogonal_is_orthogonal() -> None:
    w = draw("orthogonal(gain = 2.0)", (64, 64))
    np.testing.assert_allclose(w.T @ w, 4 * np.eye(64), atol=1e-10)


def test_constant_and_zeros() -> None:
    assert (draw("constant(0.25)", (3,)) == 0.25).all() and (draw("zeros", (3,)) == 0).all()


def test_constraints_project_kernels() -> None:
    from dnn.compiler.lower_loss import lower_constraints

    src = """model m {
  input x: f32[3]
  dense(2, constraint = max_norm(1.0))
  dense(2, constraint = non_neg)
  dense(2, constraint = unit_norm)
}
"""
    program = dnn.loads(src)
    k = np.array([[3.0, 0.1], [4.0, -0.2], [0.0, 0.0]])  # columns: norm 5 and ~0.22
    params = {
        n: {"kernel": jnp.asarray(k[: 3 if n == "dense" else 2]), "bias": jnp.zeros(2)}
        for n in ("dense", "dense_1", "dense_2")
    }
    out = jax.tree.map(np.asarray, lower_constraints(program.model)(params))
    np.testing.assert_allclose(out["dense"]["kernel"][:, 0], [0.6, 0.8, 0.0])  # 5 → 1
    np.testing.assert_allclose(out["dense"]["kernel"][:, 1], k[:, 1])  # under 1: unchanged
    assert (out["dense_1"]["kernel"] >= 0).all()
    norms = np.linalg.norm(out["dense_2"]["kernel"], axis=0)
    np.testing.assert_allclose(norms, [1.0, 1.0])


def test_model_wide_init_applies_where_a_layer_writes_none() -> None:
    src = """model m {
  input x: f32[400]
  dense(300)
  dense(300, init = glorot_uniform)
}
train {
  init = normal(std = 2.0)
}
"""
    program = dnn.loads(src)
    model = lower_model(program.model, program.train.init)
    p = model.init(jax.random.key(0), jnp.zeros((1, 400)))["params"]
    assert float(jnp.std(p["dense"]["kernel"])) == pytest.approx(2.0, rel=0.03)
    assert float(jnp.std(p["dense_1"]["kernel"])) == pytest.approx(math.sqrt(2 / 600), rel=0.03)
