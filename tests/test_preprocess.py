"""Normalizers (`runtime/preprocess.py`) against independent float64 NumPy references.

The references are written from the registry formulas (`dnn help standardize` ...), not from
the implementation: moments by explicit sums, principal components by `np.linalg.svd` of the
covariance (the implementation uses `eigh`). Statistics come from a train array and are applied
to a different test array, so a normalizer fitted on the wrong split fails the comparison.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from dnn.compiler.driver import value
from dnn.compiler.values import Ref
from dnn.runtime import preprocess

TOL = {"rtol": 1e-5, "atol": 1e-5}  # float32 output against a float64 reference


def norm(text: str) -> Ref:
    """A normalizer written as in a spec, through the real front end."""
    if text == "none":
        # The front end reads a written `none` as the none literal, so `value` refuses it; this
        # is the Ref the data section's default (`normalize` not written) resolves to.
        return Ref("normalizer", "none")
    return value(text, "normalizer")[0]


def data(n: int, shape: tuple[int, ...] = (2, 2, 2), seed: int = 0) -> np.ndarray:
    """Correlated float32 examples with distinct per-feature scales and offsets."""
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    mix = rng.normal(size=(d, d)) * np.linspace(0.5, 3.0, d)
    x = rng.normal(size=(n, d)) @ mix + rng.normal(size=d) * 5
    return x.reshape(n, *shape).astype(np.float32)


TRAIN, TEST = data(200, seed=0), data(30, seed=1)

# ------------------------------------------------------------------ the reference


def reference(name: str, args: dict, train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The registry formula of `name`, with statistics from `train`, applied to `x` (float64)."""
    t = train.reshape(len(train), -1).astype(np.float64)
    v = x.reshape(len(x), -1).astype(np.float64)
    n = len(t)
    mu = t.sum(axis=0) / n
    sigma = np.sqrt(((t - mu) ** 2).sum(axis=0) / n)
    lo, hi = t.min(axis=0), t.max(axis=0)
    constant = hi == lo
    sigma[constant] = 1.0
    span = np.where(constant, 1.0, hi - lo)
    u, s, _ = np.linalg.svd((t - mu).T @ (t - mu) / n)
    k = args.get("n") or t.shape[1]
    eps = args.get("eps", 0.0)
    out = {
        "none": lambda: v,
        "standardize": lambda: (v - mu) / sigma,
        "minmax": lambda: (v - lo) / span,
        "scale": lambda: 2 * (v - lo) / span - 1,
        "mean_subtraction": lambda: v - mu,
        "pca": lambda: (v - mu) @ u[:, :k],
        "pca_whiten": lambda: (v - mu) @ u[:, :k] / np.sqrt(s[:k] + eps),
        "zca": lambda: (v - mu) @ u @ np.diag(1 / np.sqrt(s + eps)) @ u.T,
    }[name]()
    return out.reshape(len(x), *x.shape[1:]) if name not in ("pca", "pca_whiten") else out


def align_signs(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """`got` with each column's sign flipped to agree with `want` (eigenvectors have no sign)."""
    signs = np.sign(np.sum(got * want, axis=0))
    return got * signs


CASES = [
    "none",
    "standardize",
    "minmax",
    "scale",
    "mean_subtraction",
    "pca(n = 3)",
    "pca(n = 8)",
    "pca_whiten(n = 3)",
    "pca_whiten",
    "pca_whiten(n = 2, eps = 0.5)",
    "zca",
    "zca(eps = 0.1)",
]


@pytest.mark.parametrize("text", CASES)
def test_matches_reference_with_train_statistics(text: str) -> None:
    ref = norm(text)
    got = preprocess.apply(ref, preprocess.fit(ref, TRAIN), TEST)
    want = reference(ref.name, dict(ref.args), TRAIN, TEST)
    assert got.dtype == np.float32 and got.shape == want.shape
    if ref.name in ("pca", "pca_whiten"):
        got = align_signs(got, want)
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("text", ["standardize", "minmax", "scale", "mean_subtraction", "zca"])
def test_statistics_come_from_the_train_split_only(text: str) -> None:
    ref = norm(text)
    shifted = TEST * 3 + 7  # far from the train distribution
    got = preprocess.apply(ref, preprocess.fit(ref, TRAIN), shifted)
    np.testing.assert_allclose(got, reference(ref.name, {"eps": 1e-5}, TRAIN, shifted), **TOL)
    own = preprocess.apply(ref, preprocess.fit(ref, shifted), shifted)
    assert not np.allclose(got, own, atol=1e-2)


def test_standardized_train_split_has_zero_mean_unit_std() -> None:
    ref = norm("standardize")
    out = preprocess.apply(ref, preprocess.fit(ref, TRAIN), TRAIN).astype(np.float64)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-5)


def test_minmax_and_scale_span_their_ranges_on_train() -> None:
    for text, (lo, hi) in [("minmax", (0, 1)), ("scale", (-1, 1))]:
        ref = norm(text)
        out = preprocess.apply(ref, preprocess.fit(ref, TRAIN), TRAIN)
        np.testing.assert_allclose(out.min(axis=0), lo, atol=1e-6)
        np.testing.assert_allclose(out.max(axis=0), hi, atol=1e-6)


# ------------------------------------------------------------------ PCA and whitening


def test_components_match_svd_up_to_sign() -> None:
    stats = preprocess.fit(norm("zca"), TRAIN)
    t = TRAIN.reshape(len(TRAIN), -1).astype(np.float64)
    tc = t - t.mean(axis=0)
    u, s, _ = np.linalg.svd(tc.T @ tc / len(t))
    np.testing.assert_allclose(stats["variances"], s, rtol=1e-9)
    np.testing.assert_allclose(align_signs(stats["components"], u), u, atol=1e-9)
    assert np.all(np.diff(stats["variances"]) <= 0)  # sorted descending


def test_pca_keeps_the_leading_components() -> None:
    full = preprocess.fit(norm("zca"), TRAIN)
    three = preprocess.fit(norm("pca(n = 3)"), TRAIN)
    assert three["components"].shape == (8, 3) and three["variances"].shape == (3,)
    np.testing.assert_allclose(three["components"], full["components"][:, :3], atol=1e-9)


def test_component_signs_are_deterministic() -> None:
    a = preprocess.fit(norm("zca"), TRAIN)["components"]
    b = preprocess.fit(norm("zca"), TRAIN[::-1].copy())["components"]
    np.testing.assert_allclose(a, b, atol=1e-9)
    biggest = a[np.abs(a).argmax(axis=0), np.arange(a.shape[1])]
    assert np.all(biggest > 0)


def covariance(out: np.ndarray) -> np.ndarray:
    flat = out.reshape(len(out), -1).astype(np.float64)
    c = flat - flat.mean(axis=0)
    return c.T @ c / len(flat)


@pytest.mark.parametrize("text", ["pca_whiten(eps = 1e-12)", "zca(eps = 1e-12)"])
def test_whitened_train_split_has_identity_covariance(text: str) -> None:
    ref = norm(text)
    out = preprocess.apply(ref, preprocess.fit(ref, TRAIN), TRAIN)
    np.testing.assert_allclose(covariance(out), np.eye(8), atol=1e-4)


def test_pca_whiten_with_n_gives_unit_variance_components() -> None:
    ref = norm("pca_whiten(n = 3, eps = 1e-12)")
    out = preprocess.apply(ref, preprocess.fit(ref, TRAIN), TRAIN)
    np.testing.assert_allclose(covariance(out), np.eye(3), atol=1e-4)


def test_zca_is_a_symmetric_transform() -> None:
    ref = norm("zca")
    stats = preprocess.fit(ref, TRAIN)
    mu = stats["mean"].reshape(1, 2, 2, 2)
    basis = np.eye(8).reshape(8, 2, 2, 2)
    w = preprocess.apply(ref, stats, (mu + basis).astype(np.float32)).reshape(8, 8)
    np.testing.assert_allclose(w, w.T, atol=1e-4)
    assert np.all(np.linalg.eigvalsh((w + w.T) / 2) > 0)  # symmetric positive definite


# ------------------------------------------------------------------ edge cases


def with_constant_feature() -> tuple[np.ndarray, np.ndarray]:
    train, test = data(50, (4,)), data(10, (4,), seed=1)
    train[:, 2], test[:, 2] = 0.1, np.linspace(-1, 1, 10)
    return train, test


@pytest.mark.parametrize("text", ["standardize", "minmax", "scale"])
def test_constant_feature_uses_unit_spread(text: str) -> None:
    ref = norm(text)
    train, test = with_constant_feature()
    stats = preprocess.fit(ref, train)
    got = preprocess.apply(ref, stats, test)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, reference(ref.name, {}, train, test), **TOL)
    spread = stats["std" if text == "standardize" else "range"]
    assert spread[2] == 1.0
    on_train = preprocess.apply(ref, stats, train)[:, 2]
    np.testing.assert_allclose(on_train, 0.0 if text != "scale" else -1.0, atol=1e-6)


def test_constant_feature_with_whitening_stays_finite() -> None:
    train, test = with_constant_feature()
    for text in ["pca_whiten", "zca"]:
        ref = norm(text)
        assert np.all(np.isfinite(preprocess.apply(ref, preprocess.fit(ref, train), test)))


@pytest.mark.parametrize(
    "alias, name",
    [
        ("zscore", "standardize"),
        ("standard", "standardize"),
        ("min_max", "minmax"),
        ("center", "mean_subtraction"),
        ("whiten", "pca_whiten"),
        ("whiten(n = 3)", "pca_whiten(n = 3)"),
        ("zca_whiten", "zca"),
    ],
)
def test_aliases_give_the_same_result(alias: str, name: str) -> None:
    a, b = norm(alias), norm(name)
    out_a = preprocess.apply(a, preprocess.fit(a, TRAIN), TEST)
    out_b = preprocess.apply(b, preprocess.fit(b, TRAIN), TEST)
    np.testing.assert_array_equal(out_a, out_b)


@pytest.mark.parametrize("text", CASES)
def test_stats_are_plain_arrays_that_survive_savez(text: str) -> None:
    ref = norm(text)
    stats = preprocess.fit(ref, TRAIN)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in stats.values())
    buf = io.BytesIO()
    np.savez(buf, **stats)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as loaded:
        back = dict(loaded)
    np.testing.assert_array_equal(
        preprocess.apply(ref, back, TEST), preprocess.apply(ref, stats, TEST)
    )


def test_none_fits_nothing_and_keeps_inputs() -> None:
    ref = norm("none")
    assert preprocess.fit(ref, TRAIN) == {}
    np.testing.assert_array_equal(preprocess.apply(ref, {}, TEST), TEST)


@pytest.mark.parametrize(
    "text, shape",
    [
        ("none", (2, 2, 2)),
        ("standardize", (2, 2, 2)),
        ("scale", (2, 2, 2)),
        ("pca(n = 3)", (3,)),
        ("pca_whiten(n = 5)", (5,)),
        ("pca_whiten", (8,)),
        ("zca", (2, 2, 2)),
    ],
)
def test_output_shape_matches_apply(text: str, shape: tuple[int, ...]) -> None:
    ref = norm(text)
    assert preprocess.output_shape(ref, (2, 2, 2)) == shape
    assert preprocess.apply(ref, preprocess.fit(ref, TRAIN), TEST).shape == (len(TEST), *shape)


@pytest.mark.parametrize("text, shape", [("standardize", (2, 2, 2)), ("pca(n = 3)", (3,))])
def test_empty_batch_gives_an_empty_result(text: str, shape: tuple[int, ...]) -> None:
    ref = norm(text)
    out = preprocess.apply(ref, preprocess.fit(ref, TRAIN), TEST[:0])
    assert out.shape == (0, *shape) and out.dtype == np.float32


def test_statistics_are_computed_in_float64() -> None:
    # float32 sums of 2^24 + small values would lose the small part; float64 keeps it.
    x = (np.float32(2**24) + np.arange(4, dtype=np.float32).repeat(2)).reshape(8, 1)
    stats = preprocess.fit(norm("standardize"), x)
    assert stats["mean"][0] == 2**24 + 1.5


@pytest.mark.parametrize(
    "text, n, message",
    [
        ("pca(n = 9)", 200, "`pca(n = 9)` keeps 9 components but an example has only 8 features"),
        ("pca_whiten(n = 9)", 200, "use n <= 8"),
        ("pca(n = 6)", 5, "the train split has only 5 examples; use n <= 5"),
    ],
)
def test_too_many_components_is_a_clear_error(text: str, n: int, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        preprocess.fit(norm(text), TRAIN[:n])


def test_empty_train_split_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="empty train split"):
        preprocess.fit(norm("standardize"), TRAIN[:0])


def test_module_does_not_import_jax() -> None:
    code = "import sys, dnn.runtime.preprocess; assert 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
