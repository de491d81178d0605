"""Sources: a data set's examples read one at a time, for data larger than memory.

`open_examples(ref, ...)` opens what a `source = ...` word names as `Examples`, random access to
its rows in Grain's `RandomAccessDataSource` protocol (`len`, `[i]`, `_getitems`). Row `i` is
the same `(x, y)` the in-memory loader (runtime/datasets.py) gives for row `i`, bit for bit:
`x` float32 (int32 for integer sources) of the source's raw `shape`, `y` an int32 class index or
float32 values. How each word reads a row:

  npz, npy   members memory-mapped (an .npz archive must store them uncompressed)
  csv        a line found by its byte offset; the offsets are indexed in one pass and cached
             beside the file (`.<name>.dnn-index`, rebuilt when its size or mtime changes)
  images     one file decoded and resized, in the process that asks (a Grain worker)
  parquet    its row group read once per process (the last one is kept)
  shards     one ArrayRecord record, an uncompressed NPZ of `x` and `y` (`write_shards`)

An `Examples` pickles small: files are opened lazily, again in each process. A bad example
(a short CSV row, a cell that is no number, a corrupt image, a record of the wrong shape, a
label outside the classes) raises the `SpecError` the in-memory loader raises, naming the file
and the row, offset or record, or under `on_error = "skip"` comes back as a `Skipped`. Labels
that fix the classes (a CSV's label column, an archive's `y`) are checked when a source opens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from dnn.compiler.diagnostics import E_STREAM, InternalError, Span
from dnn.compiler.values import Ref

from .arrays import _open_npy, _open_npz
from .csvrows import _open_csv
from .examples import Examples, Item, Opts, Skipped, table
from .images import _open_images
from .parquet import _open_parquet
from .shards import SHARDS_META, _open_shards, write_shards
from .table import TASKS, Table, _Where

__all__ = [
    "Examples",
    "Item",
    "Opts",
    "Skipped",
    "SHARDS_META",
    "open_examples",
    "streams",
    "table",
    "write_shards",
    "load",
]


_OPENERS: dict[str, Callable[..., Examples]] = {
    "npz": _open_npz,
    "npy": _open_npy,
    "csv": _open_csv,
    "images": _open_images,
    "parquet": _open_parquet,
    "shards": _open_shards,
}


def streams(ref: Ref) -> bool:
    """Whether the source word `ref` can stream (read one example at a time)."""
    return ref.name in _OPENERS


def open_examples(
    ref: Ref,
    task: str,
    base_dir: Path,
    where: _Where,
    on_error: str,
    *,
    outputs: int | None = None,
    cache_dir: Path | None = None,
    columns: Span | None = None,
) -> Examples:
    """Open the examples a `source = ...` reference names, for reading one at a time.

    `task` is "classification" or "regression" (as `load_source` takes it); `on_error` "fail"
    or "skip"; `outputs`, when given, bounds class labels as the model's output does (checked
    per example); `cache_dir` (the run folder) holds a CSV's index where the file's folder is
    not writable; `columns`, the span of a written `data.columns`: a typed table, which
    cannot stream yet (its vocabularies need a pass of their own), is refused there.
    """
    if task not in TASKS:
        raise InternalError(f"unknown task {task!r}")
    if not streams(ref):
        raise InternalError(f"`{ref.name}` does not stream")
    if columns is not None:
        message = (
            "a typed table (`columns`) cannot stream yet: its vocabularies need a pass of their own"
        )
        hint = "set `stream = false` to read the table in memory"
        raise where.file(E_STREAM, message, columns, hint)
    opts = Opts(where, str(on_error), outputs, cache_dir)  # a spec gives a `Symbol`
    examples = _OPENERS[ref.name](ref, task, Path(base_dir), opts)
    examples.kind = ref.name
    return examples


def load(ref: Ref, task: str, base_dir: Path, where: _Where) -> Table:
    """The in-memory `Source.load` of a word read through its `Examples` (npy, parquet,
    shards): every row, under `on_error = fail`."""
    examples = open_examples(ref, task, base_dir, where, "fail")
    found, _ = table(examples)
    return replace(found, kind=ref.name, span=where.span)
