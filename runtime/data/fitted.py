"""Fitted statistics: a normalizer's statistics from one pass over rows, in fixed chunks.

Rows arrive in chunks of `CHUNK` rows (the last one shorter). Each chunk is summarized in
float64 — count, mean, sum of squared deviations M2, min, max, and where a normalizer needs
the covariance the co-moment matrix C = sum (x - mean)(x - mean)^T — and merged into the
running summary by the pairwise update of Chan, Golub & LeVeque (1979), "Updating formulae and
a pairwise algorithm for computing sample variances":

    n = n_a + n_b,  d = mean_b - mean_a,  mean = mean_a + d n_b / n
    M2 = M2_a + M2_b + d^2 n_a n_b / n,   C = C_a + C_b + d d^T n_a n_b / n

so the variance and the covariance never come from a difference of large sums. In-memory
training (`preprocess.fit`) summarizes its array with the same chunks, so both modes give the
same statistics bit for bit from the same rows in the same order. The normalizers turn a
`Summary` into their statistics (runtime/preprocess.py).

`fit_streamed` runs that pass over a streamed source's train rows, reading `Examples` and
leaving out (and counting) the examples `on_error = skip` skips.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from dnn.compiler.values import Ref

from .examples import Examples, Item, Skipped

CHUNK = 4096  # rows per chunk: fixed, so in-memory and streamed sums run in the same order


@dataclass(frozen=True)
class Summary:
    """Per-feature float64 statistics of `n` rows: mean, M2 = sum of squared deviations from
    the mean, min, max, and the co-moment matrix (D, D) where asked for (else None)."""

    n: int
    mean: np.ndarray
    m2: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    comoment: np.ndarray | None

    @property
    def features(self) -> int:
        return len(self.mean)


def summarize(x: np.ndarray, comoment: bool) -> Summary:
    """The summary of one chunk `x` (n, D), float64, n > 0."""
    x = np.ascontiguousarray(x, np.float64)
    mean = x.sum(axis=0) / len(x)
    d = x - mean
    c = d.T @ d if comoment else None
    return Summary(len(x), mean, (d * d).sum(axis=0), x.min(axis=0), x.max(axis=0), c)


def merge(a: Summary, b: Summary) -> Summary:
    """Two summaries of disjoint rows as one (Chan et al.'s pairwise update)."""
    n = a.n + b.n
    d = b.mean - a.mean
    w = a.n * b.n / n
    c = None
    if a.comoment is not None and b.comoment is not None:
        c = a.comoment + b.comoment + np.outer(d, d) * w
    return Summary(
        n,
        a.mean + d * (b.n / n),
        a.m2 + b.m2 + d * d * w,
        np.minimum(a.lo, b.lo),
        np.maximum(a.hi, b.hi),
        c,
    )


class Running:
    """A summary grown chunk by chunk: `add` rows until a chunk is full, then merge it."""

    def __init__(self, comoment: bool, chunk: int = CHUNK) -> None:
        self.comoment, self.chunk = comoment, chunk
        self.summary: Summary | None = None
        self._rows: list[np.ndarray] = []

    def add(self, row: np.ndarray) -> None:
        self._rows.append(np.asarray(row, np.float64).reshape(-1))
        if len(self._rows) == self.chunk:
            self._flush()

    def add_chunk(self, x: np.ndarray) -> None:
        """A whole chunk at once (its rows as `add` would collect them)."""
        part = summarize(x, self.comoment)
        self.summary = part if self.summary is None else merge(self.summary, part)

    def _flush(self) -> None:
        if self._rows:
            self.add_chunk(np.stack(self._rows))
            self._rows = []

    def result(self) -> Summary | None:
        """The summary of every row added (None if none was)."""
        self._flush()
        return self.summary


def chunks(x: np.ndarray, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """An in-memory (N, D) array's rows in the chunks a stream gives them."""
    for start in range(0, len(x), chunk):
        yield x[start : start + chunk]


def summarize_array(x: np.ndarray, comoment: bool, chunk: int = CHUNK) -> Summary:
    """The summary of an (N, D) float64 array, N > 0, chunk by chunk."""
    running = Running(comoment, chunk)
    for part in chunks(x, chunk):
        running.add_chunk(part)
    result = running.result()
    assert result is not None, "summarize_array of no rows"
    return result


class Fitted(NamedTuple):
    """What one streamed pass fitted: the normalizer's statistics, the targets' statistics
    (empty when no target normalizer was given) and the examples it skipped."""

    stats: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    skipped: tuple[Skipped, ...]


def fit_streamed(
    ref: Ref,
    examples: Examples,
    rows: np.ndarray,
    chunk: int = CHUNK,
    targets: Ref | None = None,
) -> Fitted:
    """Normalizer `ref`'s statistics (and `targets`', on the targets) over `examples[rows]`,
    rows in the given order, in one pass; bit for bit what `preprocess.fit` gives on the
    same rows in memory. Skipped examples are left out and returned."""

    def items() -> Iterator[Item]:
        for start in range(0, len(rows), chunk):
            yield from examples._getitems([int(i) for i in rows[start : start + chunk]])

    return fit_items(ref, items(), chunk, targets)


def fit_items(
    ref: Ref,
    items: Iterable[Item],
    chunk: int = CHUNK,
    targets: Ref | None = None,
) -> Fitted:
    """As `fit_streamed`, over examples given in order by any iterator (a Grain pipeline's
    unshuffled pass over the train rows, decoding in worker processes)."""
    from .. import preprocess

    fit_x, fit_y = ref.name != "none", targets is not None and targets.name != "none"
    xs = Running(preprocess.needs_covariance(ref), chunk) if fit_x else None
    ys = Running(preprocess.needs_covariance(targets), chunk) if fit_y and targets else None
    skipped: list[Skipped] = []
    for item in items if (fit_x or fit_y) else ():
        if isinstance(item, Skipped):
            skipped.append(item)
            continue
        if xs is not None:
            xs.add(item[0])
        if ys is not None:
            ys.add(item[1])
    stats = preprocess.fit_summary(ref, xs.result()) if xs else {}
    fitted_y = preprocess.fit_summary(targets, ys.result()) if ys and targets else {}
    return Fitted(stats, fitted_y, tuple(skipped))
