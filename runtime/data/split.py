"""The split stage: a source's rows cut into train/val/test by a permutation drawn from
`data.seed`, and the separate `val` / `test` sources that take the place of a share.

A table in memory is cut by `split`; a streamed source by `split_rows`, the same permutation
over its row numbers, so both modes put the same examples in the same split.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import InternalError

from .table import Table

SPLITS = ("train", "val", "test")


def split_table(
    source: Table, separate: dict[str, Table], shares: dict[str, float], seed: int
) -> dict[str, Table]:
    """The splits of a table in memory: `source` cut by the shares of the splits that have
    no `separate` table of their own, and those tables as they are."""
    splits = split(source, fractions(shares, separate), seed)
    splits.update(separate)
    return splits


def split(table: Table, fractions: tuple[float, float, float], seed: int) -> dict[str, Table]:
    """Cut a table into train/val/test by a permutation drawn from `seed`.

    Sizes are the fractions of N rounded by largest remainder, so they add up to N and a zero
    fraction gives an empty split. N is the source's count: under `data.on_error = skip` the
    examples left out are cut too, then dropped from their split (as a streamed run drops
    them when it meets them), so each split keeps the rows it holds with none skipped.
    """
    parts = split_rows(table.count(), fractions, seed)
    return {name: take(table, kept(table, idx)) for name, idx in parts.items()}


def split_rows(n: int, fractions: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """The rows of a source of `n` examples that each split takes, in split order: what
    `split` cuts a table by, and what a streamed split reads (runtime/data/batches.py)."""
    sizes = _split_sizes(n, fractions)
    order = np.random.default_rng(seed % 2**64).permutation(n)
    parts = np.split(order, np.cumsum(sizes)[:-1])
    return dict(zip(SPLITS, parts, strict=True))


def fractions(shares: dict[str, float], separate: Mapping[str, Any]) -> tuple[float, float, float]:
    """The source's shares; a split given by its own file takes none and the rest renormalize."""
    kept = [0.0 if s in separate else float(shares[s]) for s in SPLITS]
    total = sum(kept)
    return (kept[0] / total, kept[1] / total, kept[2] / total)


def kept(table: Table, positions: np.ndarray) -> np.ndarray:
    """The table's rows at these positions in its source, in their order, less the
    positions `data.on_error = skip` left out (`Table.skipped`)."""
    if not table.skipped:
        return positions
    row = np.full(table.count(), -1, np.int64)
    row[np.arange(len(table)) if table.index is None else table.index] = np.arange(len(table))
    found = row[positions]
    return found[found >= 0]


def skipped_in(table: Table, positions: np.ndarray) -> list[Any]:
    """The `Skipped` records of the positions left out among `positions`, in their order."""
    records = dict(table.skipped)
    return [records[int(p)] for p in positions if int(p) in records]


def take(table: Table, idx: np.ndarray) -> Table:
    """The rows `idx` of a table, each still named by its position in the source (the
    source's skipped examples stay with the source: `skipping.by_split` says which split
    held each)."""
    index = idx if table.index is None else table.index[idx]
    return replace(table, x=table.x[idx], y=table.y[idx], index=index, skipped=())


def _split_sizes(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """Largest-remainder rounding of `fractions * n`: sums to n, zero stays zero."""
    f = np.asarray(fractions, np.float64)
    if f.shape != (3,) or (f < 0).any() or f.sum() <= 0:
        raise InternalError(f"bad split fractions {fractions!r}")
    exact = f / f.sum() * n
    sizes = np.floor(exact).astype(np.int64)
    remainder = np.where(f > 0, exact - sizes, -1.0)
    sizes[np.argsort(-remainder, kind="stable")[: n - int(sizes.sum())]] += 1
    return [int(s) for s in sizes]
