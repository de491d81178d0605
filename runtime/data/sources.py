"""Sources: the source words, each read whole or one example at a time, in one table.

A word's module holds both modes: `builtin` (read whole only), `arrays` (npz, npy), `csvrows`
(csv), `images`, `parquet`, `shards`, and `outputs` for a model with several outputs. Each word
is registered below as a `Source`, the `dataset` registry's implementation. `load_source(ref,
...)` reads what a `source = ...` word names whole into a `Table` (runtime/data/table.py);
`load_outputs` reads it for a model with several outputs, and `open_outputs` opens an `npz` or
`csv` source for one streamed (each row's targets side by side, runtime/data/outputs.py).

For data larger than memory, `open_examples(ref, ...)` opens it as `Examples`, random access
to its rows in Grain's `RandomAccessDataSource` protocol (`len`, `[i]`, `_getitems`). Row `i`
is the same `(x, y)` the in-memory loader (`load_source`) gives for row `i`, bit for bit: `x`
float32 (int32 for integer sources) of the source's raw `shape`, `y` an int32 class index or
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

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from dnn.compiler.diagnostics import InternalError, Span
from dnn.compiler.registry.core import provides
from dnn.compiler.registry.data import DATASETS
from dnn.compiler.values import Ref

from .arrays import _held_npz, _load_npz, _open_npy, _open_npz
from .builtin import _load_builtin
from .csvrows import _load_csv, _open_csv
from .examples import Examples, Item, Opts, Skipped, table
from .images import _load_images, _open_images
from .outputs import (
    _builtin_several,
    _csv_outputs,
    _held_npz_several,
    _npz_several,
    _open_csv_several,
    _open_npz_several,
)
from .parquet import _open_parquet
from .shards import SHARDS_META, _open_shards, write_shards
from .table import TASKS, Block, Outputs, Table, _Where

__all__ = [
    "Examples",
    "Item",
    "Opts",
    "Skipped",
    "SHARDS_META",
    "Source",
    "load_outputs",
    "open_outputs",
    "load_source",
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


# Words whose in-memory `Examples` (`load`) are not their streamed ones: an archive read whole,
# so a compressed one, which cannot be memory-mapped, reads too.
_WHOLE: dict[str, Callable[..., Examples]] = {"npz": _held_npz}


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
    cells: bool | None = None,
    cache: bool = False,
) -> Examples:
    """Open the examples a `source = ...` reference names, for reading one at a time.

    `task` is "classification" or "regression" (as `load_source` takes it); `on_error` "fail"
    or "skip"; `outputs`, when given, bounds class labels as the model's output does (checked
    per example); `cache_dir` (the run folder) holds a CSV's index where the file's folder is
    not writable; `cells`: whether a CSV's input cells are read as strings, a typed table
    (None: where the file's first rows hold a string or a gap, as in memory); `cache` (`data.cache`): decoded
    examples are kept on disk (runtime/data/cache.py).
    """
    if task not in TASKS:
        raise InternalError(f"unknown task {task!r}")
    if not streams(ref):
        raise InternalError(f"`{ref.name}` does not stream")
    opts = Opts(where, str(on_error), outputs, cache_dir, cells)  # a spec gives a `Symbol`
    examples = _OPENERS[ref.name](ref, task, Path(base_dir), opts)
    examples.kind = ref.name
    if cache:
        from .cache import attach

        attach(examples, ref, task)
    return examples


# For a model with several outputs: the words whose targets stream (a built-in set's do not).
_OUTPUT_OPENERS: dict[str, Callable[..., Examples]] = {
    "npz": _open_npz_several,
    "csv": _open_csv_several,
}
_WHOLE_OUTPUTS: dict[str, Callable[..., Examples]] = {"npz": _held_npz_several}  # as `_WHOLE`


def open_outputs(
    ref: Ref,
    outputs: Outputs,
    base_dir: Path,
    where: _Where,
    on_error: str,
    *,
    cache_dir: Path | None = None,
    whole: bool = False,
) -> Examples:
    """As `open_examples`, for a model with several outputs (`outputs`: (name, task, units)
    in the model's order): row `i`'s `y` holds every output's targets side by side, as
    `load_outputs` lays them; the examples' `blocks` say where each output's are. `whole`:
    to be read whole (`on_error = skip` in memory): an archive is read, not mapped."""
    if ref.name not in _OUTPUT_OPENERS:
        raise InternalError(f"several outputs streamed from `{ref.name}` (check refuses it)")
    opener = (_WHOLE_OUTPUTS if whole else {}).get(ref.name, _OUTPUT_OPENERS[ref.name])
    examples = opener(ref, outputs, Path(base_dir), Opts(where, on_error, None, cache_dir))
    examples.kind = ref.name
    return examples


def load(
    ref: Ref,
    task: str,
    base_dir: Path,
    where: _Where,
    cache: bool = False,
    on_error: str = "fail",
    outputs: int | None = None,
    cells: bool | None = None,
) -> Table:
    """The in-memory `Source.load` of a word read through its `Examples` (npy, parquet,
    shards; an image folder under `data.cache`; any streamable word under `on_error =
    skip`, whose bad examples the table then lists in `Table.skipped`, a CSV's input cells
    as strings where `cells` or its first rows say so, and the reader in `Table.reader`):
    every row."""
    whole = _WHOLE.get(ref.name)
    if whole is not None:
        examples = whole(ref, task, Path(base_dir), Opts(where, on_error, outputs))
        examples.kind = ref.name
    else:
        examples = open_examples(
            ref, task, base_dir, where, on_error, outputs=outputs, cells=cells, cache=cache
        )
    found, _ = table(examples)
    reader = examples if on_error == "skip" else None  # `Table.reader`
    columns = tuple(getattr(examples, "columns", ())) if getattr(examples, "typed", False) else ()
    return replace(found, kind=ref.name, span=where.span, reader=reader, columns=columns)


class Source(NamedTuple):
    """A data source word's implementation: `load` reads its examples and targets; `outputs`
    reads the targets of a model with several outputs (None where the source has none)."""

    load: Callable[[Ref, str, Path, _Where], Table]
    outputs: Callable[[Ref, Outputs, Path, _Where], tuple[Table, tuple[Block, ...]]] | None = None


def _source(ref: Ref) -> Source:
    source: Source = DATASETS.implementation(ref.name)
    return source


def load_source(
    ref: Ref, *, task: str, base_dir: Path, span: Span, sources: Mapping[str, str]
) -> Table:
    """Read the examples a `source = ...` reference names (`task` comes from the loss)."""
    if task not in TASKS:
        raise InternalError(f"unknown task {task!r}")
    return _source(ref).load(ref, task, Path(base_dir), _Where(span, sources, span))


def load_outputs(
    ref: Ref,
    outputs: tuple[tuple[str, str, int], ...],
    *,
    base_dir: Path,
    span: Span,
    sources: Mapping[str, str],
) -> tuple[Table, tuple[Block, ...]]:
    """Targets for a model with several outputs: an npz archive's `x` and one array per output,
    or a CSV file's columns named after the outputs (`_csv_outputs`), or a built-in set's named
    targets. `outputs` holds (name, task, units) in the model's order.

    The targets are laid side by side in one float32 array (class labels as whole numbers,
    exact in float32), so splitting, batching and sharding treat them as one; `Block`s say
    where each output's columns are.
    """
    where = _Where(span, sources, span)
    several = _source(ref).outputs
    if several is None:
        raise InternalError(f"several outputs from `{ref.name}` (check refuses it)")
    return several(ref, outputs, base_dir, where)


# Each word: read whole (`load`, and `outputs` for several outputs), and streamed (`_OPENERS`).
provides("dataset", "builtin", Source(_load_builtin, _builtin_several))
provides("dataset", "csv", Source(_load_csv, _csv_outputs))
provides("dataset", "npz", Source(_load_npz, _npz_several))
provides("dataset", "images", Source(_load_images))
for _word in ("npy", "parquet", "shards"):  # read whole through their `Examples`
    provides("dataset", _word, Source(load))
