"""Metrics: accumulated statistics against scikit-learn and float64 NumPy, batched and masked."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dnn.compiler.diagnostics import InternalError
from dnn.compiler.driver import value
from dnn.runtime.metrics import Metrics, build, key
from sklearn import metrics as sk

CLASSIFICATION = (
    "accuracy",
    "top_k(k = 1)",
    "top_k(k = 2)",
    "top_k",
    "precision",
    "precision(average = micro)",
    "recall",
    "recall(average = micro)",
    "f1",
    "f1(average = micro)",
)
REGRESSION = ("mse", "mae", "r2")


def metrics(texts: tuple[str, ...], classes: int | None, outputs: int | None = None) -> Metrics:
    return build(tuple(value(t, "metric")[0] for t in texts), classes, outputs)


@functools.cache
def compiled(m: Metrics) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Jitted `update` and a jitted `lax.scan` of it over stacked batches (cached: tests reuse)."""

    def step(acc: Any, batch: tuple[Any, ...]) -> tuple[Any, None]:
        return m.update(acc, *batch), None

    return jax.jit(m.update), jax.jit(lambda batches: jax.lax.scan(step, m.init(), batches)[0])


def whole(m: Metrics, z: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The metrics of a whole split in one unmasked update."""
    return m.finish(compiled(m)[0](m.init(), jnp.asarray(z), jnp.asarray(y)))


def batched(m: Metrics, z: np.ndarray, y: np.ndarray, size: int) -> dict[str, float]:
    """Fixed-shape batches in a `lax.scan`; the last one padded with nan / -1 and masked."""
    n = len(z)
    pad = -n % size
    zp = np.concatenate([z, np.full((pad, *z.shape[1:]), np.nan, z.dtype)])
    yp = np.concatenate([y, np.full((pad, *y.shape[1:]), -1, y.dtype)])
    mask = np.arange(n + pad) < n
    split = tuple(jnp.asarray(a.reshape(-1, size, *a.shape[1:])) for a in (zp, yp, mask))
    return m.finish(compiled(m)[1](split))


def reference(z: np.ndarray, y: np.ndarray, classes: int) -> dict[str, float]:
    """scikit-learn on predicted classes (argmax, or [z > 0] for a single logit)."""
    binary = z.ndim == 1 or z.shape[1] == 1
    scores = z.reshape(-1) if binary else z
    pred = (scores > 0).astype(int) if binary else np.argmax(z, axis=1)
    labels = list(range(max(classes, 2)))

    def top(k: int) -> float:
        return sk.top_k_accuracy_score(y, scores, k=k, labels=labels)

    def avg(f, a: str) -> float:  # type: ignore[no-untyped-def]
        return f(y, pred, average=a, zero_division=0)

    return {
        "accuracy": sk.accuracy_score(y, pred),
        "top_k_1": top(1),
        "top_k_2": top(2),
        "top_k": top(5),
        **{f"{n}": avg(f, "macro") for n, f in _PRF},
        **{f"{n}_micro": avg(f, "micro") for n, f in _PRF},
    }


_PRF = (("precision", sk.precision_score), ("recall", sk.recall_score), ("f1", sk.f1_score))


def assert_close(got: dict[str, float], want: dict[str, float], rtol: float = 1e-6) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        assert math.isclose(got[k], want[k], rel_tol=rtol, abs_tol=rtol), (k, got[k], want[k])


# ---- names ----


@pytest.mark.parametrize(
    "text, name",
    [
        ("accuracy", "accuracy"),
        ("acc", "accuracy"),
        ("top_k", "top_k"),
        ("top_k(k = 5)", "top_k"),
        ("top_k(k = 3)", "top_k_3"),
        ("top_k_accuracy(k = 1)", "top_k_1"),
        ("precision", "precision"),
        ("precision(average = macro)", "precision"),
        ("precision(average = micro)", "precision_micro"),
        ("f1_score(average = micro)", "f1_micro"),
        ("r2_score", "r2"),
    ],
)
def test_key(text: str, name: str) -> None:
    assert key(value(text, "metric")[0]) == name


def test_names_in_written_order_without_repeats() -> None:
    m = metrics(("top_k(k = 3)", "acc", "accuracy", "top_k", "top_k(k = 3)", "f1"), 10)
    assert m.names == ("top_k_3", "accuracy", "top_k", "f1")
    assert m.ks == (3, 5)
    assert m.lookup("top_k") == "top_k" and m.lookup("f1") == "f1"
    assert metrics(("top_k(k = 3)",), 10).lookup("top_k") == "top_k_3"
    assert m.lookup("mse") is None


# ---- classification ----


def labels_and_logits(
    rng: np.random.Generator, n: int, c: int, ties: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Class c-1 never predicted, class c-2 absent from the targets; with ties if asked."""
    z = rng.normal(size=(n, c)).astype(np.float32)
    z[:, c - 1] = -10.0
    if ties:
        z[: n // 4] = np.round(z[: n // 4])
    y = rng.choice([k for k in range(c) if k != c - 2], size=n)
    return z, y


@pytest.mark.parametrize("seed", range(4))
def test_classification_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    z, y = labels_and_logits(rng, 203, 6)
    m = metrics(CLASSIFICATION, 6)
    assert_close(whole(m, z, y), reference(z, y, 6))
    assert_close(batched(m, z, y, 32), reference(z, y, 6))


def test_macro_leaves_out_classes_absent_from_targets_and_predictions() -> None:
    z = np.eye(4, dtype=np.float32)[[0, 0, 1, 1]]  # classes 2 and 3: never targets, never predicted
    y = np.array([0, 1, 1, 1])
    got = whole(metrics(("precision", "recall", "f1"), 4), z, y)
    # class 0: P 1/2, R 1, F1 2/3; class 1: P 1, R 2/3, F1 4/5; classes 2 and 3 left out
    assert got == pytest.approx({"precision": 0.75, "recall": 5 / 6, "f1": (2 / 3 + 0.8) / 2})
    assert_close(got, {n: f(y, z.argmax(1), average="macro") for n, f in _PRF})


@pytest.mark.filterwarnings("ignore:'k' .* greater than or equal to 'n_classes'")
@pytest.mark.parametrize("shape, dtype", [((-1,), np.int32), ((-1, 1), np.float32)])
def test_binary_single_logit(shape: tuple[int, ...], dtype: type) -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(150,)).astype(np.float32).reshape(shape)
    y = (rng.random(150) < 0.3).astype(dtype)
    m = metrics(CLASSIFICATION, 1)
    assert m.classes == 2
    want = reference(z, y.astype(int), 1)
    assert_close(whole(m, z, y.reshape(shape)), want)
    assert_close(batched(m, z, y.reshape(shape), 64), want)


def test_binary_signed_targets_and_one_hot_targets() -> None:
    rng = np.random.default_rng(2)
    z1, y1 = rng.normal(size=(40, 1)).astype(np.float32), rng.integers(0, 2, 40)
    m1 = metrics(("accuracy", "f1"), 1)
    assert whole(m1, z1, 2 * y1 - 1) == whole(m1, z1, y1)
    z, y = labels_and_logits(rng, 50, 5)
    m = metrics(CLASSIFICATION, 5)
    assert whole(m, z, np.eye(5, dtype=np.float32)[y]) == whole(m, z, y)


def test_ties_go_to_the_lowest_class() -> None:
    """argmax's rule for every metric (scikit-learn's top_k breaks ties the other way)."""
    z, y = labels_and_logits(np.random.default_rng(6), 203, 6, ties=True)
    order = np.argsort(-z, axis=1, kind="stable")  # by logit, then by class index

    def top(k: int) -> float:
        return float(np.mean((order[:, :k] == y[:, None]).any(axis=1)))

    want = {**reference(z, y, 6), "top_k_1": top(1), "top_k_2": top(2), "top_k": top(5)}
    assert want["top_k_1"] == want["accuracy"]
    m = metrics(CLASSIFICATION, 6)
    assert_close(whole(m, z, y), want)
    assert_close(batched(m, z, y, 32), want)


def test_top_1_equals_accuracy_with_ties() -> None:
    z = np.zeros((6, 3), np.float32)
    y = np.array([0, 1, 2, 0, 0, 1])
    got = whole(metrics(("accuracy", "top_k(k = 1)", "top_k(k = 2)", "top_k"), 3), z, y)
    assert got == {"accuracy": 0.5, "top_k_1": 0.5, "top_k_2": 5 / 6, "top_k": 1.0}


def test_label_out_of_range_is_a_miss() -> None:
    z = np.eye(3, dtype=np.float32)
    got = whole(
        metrics(("accuracy", "top_k", "recall(average = micro)"), 3), z, np.array([0, 1, 7])
    )
    assert got == {"accuracy": 2 / 3, "top_k": 2 / 3, "recall_micro": 1.0}


# ---- regression ----


def regression_reference(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    p64, y64 = p.astype(np.float64), y.astype(np.float64)
    return {
        "mse": sk.mean_squared_error(y64, p64),
        "mae": sk.mean_absolute_error(y64, p64),
        "r2": sk.r2_score(y64, p64, multioutput="uniform_average"),
    }


@pytest.mark.parametrize("shape", [(-1,), (-1, 1), (-1, 3)])
def test_regression_matches_sklearn(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    d = shape[-1] if shape[-1] > 0 else 1
    # Large offsets: a sum-of-squares form would cancel in float32; the pairwise merge does not.
    y = (1000 + rng.normal(size=(333, d)) * [1, 5, 0.1][:d]).astype(np.float32).reshape(shape)
    p = (y + rng.normal(size=y.shape) * 0.5).astype(np.float32)
    m = metrics(REGRESSION, None, d)
    want = regression_reference(p, y)
    assert_close(whole(m, p, y), want, rtol=1e-4)
    assert_close(batched(m, p, y, 50), want, rtol=1e-4)


def test_regression_matches_numpy_in_float64(x64: None) -> None:
    rng = np.random.default_rng(4)
    y, p = rng.normal(size=(2, 101, 2)) * [3.0, 0.2] + [5.0, -2.0]
    m = metrics(REGRESSION, None, 2)
    assert m.init()["sse"].dtype == jnp.float64
    e = y - p
    r2 = 1 - (e**2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    want = {"mse": (e**2).mean(), "mae": np.abs(e).mean(), "r2": r2.mean()}
    assert_close(batched(m, p, y, 16), want, rtol=1e-12)


def test_r2_constant_target_and_tiny_splits() -> None:
    y = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]], np.float32)
    m = metrics(("r2",), None, 2)
    assert whole(m, y, y)["r2"] == 1.0
    missed = y + np.array([[0.5, 0.0]], np.float32)  # the constant unit missed scores 0
    assert whole(m, missed, y)["r2"] == 0.5 == sk.r2_score(y, missed)
    assert math.isnan(whole(m, y[:1], y[:1])["r2"])


def test_r2_of_a_unit_constant_at_a_value_float32_cannot_average_exactly() -> None:
    """A standardized pixel that is 0 in every validation image is a constant like -0.0661: its
    float32 batch mean is not exactly the value, so an unshifted m2 was rounding noise (~1e-16)
    and r2 came out near -1e15. scikit-learn in float64 finds the variance exactly 0."""
    rng = np.random.default_rng(7)
    y = rng.normal(size=(180, 3)).astype(np.float32)
    y[:, 1] = np.float32(-0.06609341)
    p = (y + rng.normal(size=y.shape) * 0.3).astype(np.float32)
    m = metrics(("r2",), None, 3)
    want = sk.r2_score(y.astype(np.float64), p.astype(np.float64))
    assert -0.1 < want < 0.67  # the constant unit scores 0, the others about 0.9
    for got in (whole(m, p, y), batched(m, p, y, 64), batched(m, p, y, 7)):
        assert_close(got, {"r2": want}, rtol=1e-5)


def test_empty_split_is_nan() -> None:
    m = metrics(("accuracy", "top_k", "f1", "mse"), 3, 1)
    assert all(math.isnan(v) for v in m.finish(m.init()).values())


# ---- jit, shapes, mistakes ----


@pytest.mark.parametrize("texts, y", [(CLASSIFICATION, np.zeros(8, int)), (REGRESSION, None)])
def test_update_keeps_shapes_and_dtypes_under_jit(texts: tuple[str, ...], y: object) -> None:
    m = metrics(texts, 4)
    acc = m.init()
    z = jnp.ones((8, 4), jnp.bfloat16)
    new = jax.jit(m.update)(acc, z, z if y is None else y, jnp.ones(8))
    assert jax.tree.map(lambda a: (a.shape, a.dtype), new) == jax.tree.map(
        lambda a: (a.shape, a.dtype), acc
    )


def test_rank_promotion_is_explicit() -> None:
    rng = np.random.default_rng(5)
    z, y = labels_and_logits(rng, 20, 4)
    with jax.numpy_rank_promotion("raise"):
        whole(metrics(CLASSIFICATION, 4), z, y)
        batched(metrics(REGRESSION, None, 4), z, z, 8)


def test_mistakes() -> None:
    with pytest.raises(InternalError, match="need `classes`"):
        metrics(("accuracy",), None)
    m = metrics(("accuracy",), 3)
    with pytest.raises(ValueError, match=r"logits of shape \(N, 3\)"):
        m.update(m.init(), jnp.zeros((2, 4)), jnp.zeros(2, jnp.int32))
    r = metrics(("mse",), None, 2)
    with pytest.raises(ValueError, match="2 output units"):
        r.update(r.init(), jnp.zeros((2, 3)), jnp.zeros((2, 3)))
