"""The `parquet` source: rows read a row group at a time with pyarrow.

Part of the sources stage (runtime/data/sources.py, which says what every source gives).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import E_DATA, E_FILE, Span
from dnn.compiler.values import Ref

from .arrays import _numbers
from .examples import Examples, Item, Opts, _Bad
from .table import _LABEL_HINT, _cannot_read, _choose, _resolve, _start, _Where


class ParquetExamples(Examples):
    """Rows of a Parquet file: the label column is the target, every other column an input
    (numbers), read a row group at a time (the last one read is kept per process)."""

    cacheable = False  # a row group read at once, decoded by Arrow: nothing to keep

    def __init__(
        self, shown: str, inputs: list[str], groups: np.ndarray, y: np.ndarray, names: tuple[str, ...],
        task: str, opts: Opts,
    ) -> None:  # fmt: skip
        super().__init__(opts)
        self._inputs, self._starts, self._y = inputs, groups, y
        self.origin, self.task, self.shape = shown, task, (len(inputs),)
        self.dtype = np.dtype(np.float32)
        self.classes = len(names) if task == "classification" else None
        self.class_names = names if task == "classification" else ()

    def __len__(self) -> int:
        return len(self._y)

    def _group(self, g: int) -> np.ndarray:
        with self._open_lock:  # one reader and one cached group, shared by Grain's threads
            cached = self.__dict__.get("_open_group")
            if cached is not None and cached[0] == g:
                return cached[1]
            if "_open_file" not in self.__dict__:
                import pyarrow.parquet as pq

                self._open_file = pq.ParquetFile(self.origin)
            part = self._open_file.read_row_group(g, columns=self._inputs)
            columns = [_float_column(part.column(c)) for c in self._inputs]
            x = np.stack(columns, axis=1) if columns else np.zeros((part.num_rows, 0))
            self._open_group = (g, x)
            return x

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        g = int(np.searchsorted(self._starts, i, side="right")) - 1
        row = self._group(g)[i - int(self._starts[g])]
        bad = np.flatnonzero(~np.isfinite(row))
        if len(bad):
            name = self._inputs[int(bad[0])]
            message = f"row {i} of `{self.origin}` has no finite number in column `{name}`"
            hint = "fill in or drop the rows with missing values before training"
            raise _Bad(f"row {i}", message, _start(self.origin), hint)
        return row.astype(np.float32), self._y[i]

    def _place(self, i: int) -> tuple[str, Span, str | None]:
        return f"row {i}", _start(self.origin), None

    def _getitems(self, rows: Sequence[int]) -> list[Item]:
        order = sorted(range(len(rows)), key=lambda k: rows[k])  # a row group read once
        out: list[Item] = [None] * len(rows)  # type: ignore[list-item]
        for k in order:
            out[k] = self[rows[k]]
        return out


def _float_column(column: Any) -> np.ndarray:
    """A Parquet column as float64; a missing value (null) is NaN."""
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _open_parquet(ref: Ref, task: str, base: Path, opts: Opts) -> Examples:
    import pyarrow as pa
    import pyarrow.parquet as pq

    shown, where = _resolve(base, ref.arg("path")), opts.where
    label = str(ref.arg("label"))
    try:
        pf = pq.ParquetFile(shown)
    except FileNotFoundError as e:
        raise _cannot_read(shown, e, where) from None
    except (OSError, pa.ArrowException) as e:
        message = f"cannot read `{shown}`: not a Parquet file ({e})"
        hint = "write it with pyarrow or pandas: `df.to_parquet(path)`"
        raise where.file(E_FILE, message, _start(shown), hint) from None
    schema = pf.schema_arrow
    if label not in schema.names:
        hint = _choose(label, list(schema.names), "columns", '`parquet(..., label = "{}")`')
        raise where.spec(E_DATA, f"`{shown}` has no column `{label}`", hint)
    inputs = [n for n in schema.names if n != label]
    for name in inputs:
        t = schema.field(name).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            message = f"column `{name}` of `{shown}` holds `{t}` values, not numbers"
            hint = "Parquet inputs must be numeric columns: encode or drop it"
            raise where.file(E_DATA, message, _start(shown), hint)
    if not inputs:
        message = f"`{shown}` has no input columns besides the label `{label}`"
        raise where.spec(E_DATA, message, "add a column for each input")
    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
    starts = (
        np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        if sizes
        else np.zeros(1, np.int64)
    )
    labels = pf.read(columns=[label]).column(label)
    y, names = _parquet_labels(labels, label, shown, task, where)
    return ParquetExamples(shown, inputs, starts, y, names, task, opts)


def _parquet_labels(
    column: Any, label: str, shown: str, task: str, where: _Where
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Targets from the label column: real values (regression), or class indices from whole
    numbers, or from names (sorted); a missing label fails with its row."""
    import pyarrow as pa

    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        message = f"label in row {row} of `{shown}` is missing"
        raise where.file(E_DATA, message, _start(shown), "give every row a label")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        if task == "regression":
            message = f"column `{label}` of `{shown}` holds names, not numbers"
            hint = "a regression loss needs numbers; use `cross_entropy` for class names"
            raise where.file(E_DATA, message, _start(shown), hint)
        values = np.asarray(column.to_pylist(), dtype=str)
        names, idx = np.unique(values, return_inverse=True)
        return idx.astype(np.int32), tuple(str(n) for n in names)
    f = np.asarray(column.to_numpy(zero_copy_only=False), np.float64)
    what = f"column `{label}` of `{shown}`"
    if task == "regression":
        return _numbers(f.astype(np.float32), what, shown, where), ()
    bad = np.flatnonzero((f != np.round(f)) | (f < 0) | ~np.isfinite(f))
    if len(bad):
        i = int(bad[0])
        message = f"label {f[i]:g} in row {i} of `{shown}` is not a class index"
        raise where.file(E_DATA, message, _start(shown), _LABEL_HINT)
    classes = max(int(f.max()) + 1, 0) if len(f) else 0
    return f.astype(np.int32), tuple(str(k) for k in range(classes))
