"""Fitted statistics (`runtime/data/fitted.py`): one chunked float64 pass, Chan et al.'s merge.

Checked against NumPy's float64 formulas on the whole array (np.mean, np.std, np.cov, eigh),
and streamed == in memory exactly: `fit_streamed` over a source's rows gives the same bits as
`preprocess.fit` on the same rows in the same order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dnn.compiler.diagnostics import Span
from dnn.compiler.driver import value
from dnn.runtime import preprocess
from dnn.runtime.data import fitted, sources
from dnn.runtime.data.table import _Where

SPAN = Span("spec.dnn", 7, 12, 7, 30)
N, D = 10_000, 5  # three chunks of 4096 rows, the last one short


def norm(text: str):
    return value(text, "normalizer")[0]


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(3)
    mix = rng.normal(size=(D, D))
    # a large offset per feature: a naive sum-of-squares variance would lose digits here
    return (rng.normal(size=(N, D)) @ mix + 1e4 * np.arange(1, D + 1)).astype(np.float32)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_chunked_moments_match_numpy_on_the_whole_array(data: np.ndarray) -> None:
    x = data.astype(np.float64)
    s = fitted.summarize_array(x, comoment=True)
    assert s.n == N
    assert rel(s.mean, np.mean(x, axis=0)) < 1e-12
    assert rel(np.sqrt(s.m2 / s.n), np.std(x, axis=0)) < 1e-12
    assert rel(s.comoment / s.n, np.cov(x, rowvar=False, bias=True)) < 1e-12
    assert (s.lo == x.min(axis=0)).all() and (s.hi == x.max(axis=0)).all()


def test_normalizer_statistics_match_the_formulas(data: np.ndarray) -> None:
    x = data.astype(np.float64)
    st = preprocess.fit(norm("standardize"), data)
    assert rel(st["mean"], x.mean(axis=0)) < 1e-12 and rel(st["std"], x.std(axis=0)) < 1e-12
    mm = preprocess.fit(norm("minmax"), data)
    assert (mm["min"] == x.min(axis=0)).all() and (mm["range"] == np.ptp(x, axis=0)).all()
    pca = preprocess.fit(norm("pca(n = 3)"), data)
    w, u = np.linalg.eigh(np.cov(x, rowvar=False, bias=True))
    assert rel(pca["variances"], w[::-1][:3]) < 1e-12
    # each component is the reference eigenvector up to its sign
    assert rel(np.abs(pca["components"]), np.abs(u[:, ::-1][:, :3])) < 1e-9


def test_constant_feature_keeps_std_one() -> None:
    x = np.stack([np.full(5000, 7.0), np.arange(5000.0)], axis=1)
    assert preprocess.fit(norm("standardize"), x)["std"][0] == 1.0


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, data: np.ndarray) -> Path:
    d = tmp_path_factory.mktemp("fitted")
    y = data[:, :2] * 0.5  # real-valued targets, two per example
    np.savez(d / "d.npz", x=data, y=y)
    return d


def opened(base: Path, on_error: str = "fail") -> sources.Examples:
    where = _Where(SPAN, {}, SPAN)
    return sources.open_examples(
        value('npz("d.npz")', "dataset")[0], "regression", base, where, on_error
    )


@pytest.mark.parametrize(
    "word", ["standardize", "scale", "mean_subtraction", "pca_whiten(n = 4)", "zca"]
)
def test_streamed_statistics_equal_the_in_memory_ones_bit_for_bit(
    archive: Path, data: np.ndarray, word: str
) -> None:
    rows = np.random.default_rng(0).permutation(N)[:9000]  # a train split, in its order
    got = fitted.fit_streamed(norm(word), opened(archive), rows, targets=norm("standardize"))
    want = preprocess.fit(norm(word), data[rows])
    assert got.stats.keys() == want.keys() and not got.skipped
    for k in want:
        assert got.stats[k].tobytes() == want[k].tobytes(), k
    targets = preprocess.Targets.fitted(norm("standardize"), (data[:, :2] * 0.5)[rows])
    for k in targets.stats:
        assert got.targets[k].tobytes() == targets.stats[k].tobytes(), k


def test_skipped_examples_are_left_out_and_counted(tmp_path: Path, data: np.ndarray) -> None:
    x = data[:5000].copy()
    x[[10, 4100]] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(5000, np.float32))
    got = fitted.fit_streamed(norm("standardize"), opened(tmp_path, "skip"), np.arange(5000))
    assert [s.where for s in got.skipped] == ["example 10", "example 4100"]
    want = preprocess.fit(norm("standardize"), np.delete(x, [10, 4100], axis=0))
    assert all(got.stats[k].tobytes() == want[k].tobytes() for k in want)


def test_a_grain_pass_in_order_fits_the_same_statistics(archive: Path, data: np.ndarray) -> None:
    import grain

    rows = np.random.default_rng(1).permutation(N)[:4200]  # two chunks
    examples = opened(archive)
    ds = grain.MapDataset.source(rows.tolist()).map(examples.__getitem__).to_iter_dataset()
    got = fitted.fit_items(norm("zca"), iter(ds))
    want = preprocess.fit(norm("zca"), data[rows])
    assert all(got.stats[k].tobytes() == want[k].tobytes() for k in want)


STREAMED_SPEC = """dnn 1
model m {{
  input x: f32[5]
  dense(2)
}}
data {{
  source = npz("d.npz")
  normalize = zca
  targets = standardize
  stream = {stream}
}}
train {{
  loss = mse
  metrics = [mae]
}}
"""


def test_a_streamed_spec_fits_what_the_in_memory_one_fits(archive: Path) -> None:
    from dnn.runtime import pipeline

    import dnn

    got = {}
    for stream in ("true", "false"):
        (archive / f"{stream}.dnn").write_text(STREAMED_SPEC.format(stream=stream))
        got[stream] = pipeline.prepare(dnn.load(str(archive / f"{stream}.dnn")))
    assert got["true"].streamed and not got["false"].streamed
    for k, v in got["false"].stats.items():
        assert got["true"].stats[k].tobytes() == v.tobytes(), k
    assert got["true"].targets.ref.name == "standardize"
    for k, v in got["false"].targets.stats.items():
        assert got["true"].targets.stats[k].tobytes() == v.tobytes(), k
