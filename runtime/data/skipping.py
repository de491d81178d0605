"""`data.on_error = skip` on data read whole (`stream = false`): the same training as a
streamed run of the same spec.

A streamed run meets a bad example while it reads a batch, leaves it out (the batch shrinks
by one), and lists it in the run folder's `skipped.json`; its splits are cut over the row
numbers of the source's full count, bad rows included (runtime/data/split.py). Read whole
(runtime/data/load.py's `_skipping`), a source is checked example by example by its
streamed reader, so the same examples are found bad, with the same records, and a `Table`
keeps the good ones and lists the bad ones with their positions (`Table.skipped`).

Where some example was left out, `KeptExamples` serves such a table as the source it came
from: its full count, a skipped position answered with its `Skipped` record, a typed table's
bad cell named through the reader (`Table.reader`). The pipeline then takes the tables
through the streamed stages (runtime/pipeline.py's `_streamed`), from memory: the splits
are the streamed run's, each epoch's batches are the same rows less the same bad ones, the
statistics are fitted over the same rows, and the skipped examples are counted and written
to `skipped.json` as they are met, so the losses equal the streamed run's, bit for bit (a
typed table's columns fitted and its cells encoded as the streamed run fits and encodes
them). Data where nothing was skipped trains in memory as ever (a typed table read again
by the in-memory reader: `load.load_tables`); with `train.pretrain`, which cannot stream,
the bad rows leave their splits (`by_split`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from dnn.compiler.ir import Program

from .batches import TableExamples
from .examples import Skipped, label_outside
from .split import SPLITS, fractions, kept, skipped_in, split_rows
from .table import Block, Table


class KeptExamples(TableExamples):
    """A table read whole under `on_error = skip`, as the source it was read from: example
    `i` is the source's example `i`, or its `Skipped` record where it was left out."""

    read = None  # rows are positions in the source, not in the table: no gather by row

    def __init__(self, table: Table, blocks: tuple[Block, ...] = ()):
        super().__init__(table, blocks)
        self.kind = table.kind
        self.typed = bool(getattr(table.reader, "typed", False))  # a typed table's cells
        self.columns = table.columns
        rows = np.arange(len(table)) if table.index is None else table.index
        self._row = np.full(table.count(), -1, np.int64)  # position -> row of the table
        self._row[rows] = np.arange(len(table))
        self._skipped = dict(table.skipped)

    def __len__(self) -> int:
        return len(self._row)

    def __getitem__(self, i: Any) -> Any:
        r = int(self._row[i])
        if r < 0:
            return self._skipped[int(i)]
        return self.table.x[r], self.table.y[r]

    def _getitems(self, rows: Any) -> list[Any]:
        return [self[int(i)] for i in rows]

    def cell_error(self, i: int, j: int, code: str, message: str, hint: str) -> Any:
        """A typed table's input cell `j` of example `i`, named at its place in the file."""
        return self.table.reader.cell_error(i, j, code, message, hint)


def drop_outside(table: Table, outputs: int | None) -> Table:
    """A CSV read whole by the in-memory reader (a typed table) under `on_error = skip`: its
    class labels outside the source's classes, or the model's `outputs` units where given,
    left out too, as the streamed reader words them (`Examples._check_label`)."""
    if table.task != "classification" or table.y.ndim != 1 or not len(table):
        return table
    found = {}
    for i, v in enumerate(table.y):
        problem = label_outside(int(v), table.classes, table.origin, outputs)
        if problem is not None:
            where = f"row {table.position(i) + 1}"
            found[i] = Skipped(table.origin, where, f"label `{int(v)}` at {where} {problem[0]}")
    if not found:
        return table
    keep = np.setdiff1d(np.arange(len(table)), list(found))
    index = keep if table.index is None else table.index[keep]
    left = dict(table.skipped) | {table.position(i): s for i, s in found.items()}
    skipped = tuple(sorted(left.items(), key=lambda p: p[0]))
    return replace(table, x=table.x[keep], y=table.y[keep], index=index, skipped=skipped)


def skipped_any(source: Table, separate: dict[str, Table]) -> bool:
    """Whether `on_error = skip` left an example of any of the tables out."""
    return any(t.skipped for t in (source, *separate.values()))


def opened(
    source: Table, separate: dict[str, Table], blocks: tuple[Block, ...] = ()
) -> dict[str, Any]:
    """The tables as the sources a streamed run opens (`load.stream_sources`' answer);
    `blocks`: where a several-output model's targets sit in them."""
    kept = {"source": KeptExamples(source, blocks)}
    return kept | {s: KeptExamples(t, blocks) for s, t in separate.items()}


def by_split(program: Program, source: Table, separate: dict[str, Table]) -> dict[str, list[Any]]:
    """The `Skipped` records of each split, in split order: the splits cut from the source
    over its full count, as a streamed run cuts them, and the separate tables' own."""
    out = {s: [r for _, r in t.skipped] for s, t in separate.items()}
    for s, rows in _cut(program, source, separate).items():
        out[s] = skipped_in(source, rows)
    return {s: out[s] for s in SPLITS if out.get(s)}


def train_kept(program: Program, source: Table, separate: dict[str, Table]) -> tuple[int, int]:
    """The train split's examples, and how many of them were not skipped."""
    rows = _cut(program, source, separate)["train"]
    return len(rows), len(kept(source, rows))


def _cut(program: Program, source: Table, separate: dict[str, Table]) -> dict[str, np.ndarray]:
    data = program.data
    assert data is not None
    shares = fractions(dict(data.split.items), separate)
    rows = split_rows(source.count(), shares, data.seed)
    return {s: r for s, r in rows.items() if s not in separate}
