"""The source stage: what a spec's data fields (`source`, `val`, `test`) name, read whole into
`Table`s, or opened as random-access `Examples` to stream them (both by the source words of
runtime/data/sources.py), and which of the two (`data.stream`).

`stream_sources` decides: `stream = true` streams whatever can be, `auto` streams only where
the examples would not fit the memory free for the run (the files' sizes first, so a source
that surely fits is not even opened); None means read whole, with `load_tables`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import E_DATA, E_SECTION, Diagnostic, Span, SpecError
from dnn.compiler.ir import Program
from dnn.compiler.rules import heads, target_kind

from . import batches, csvrows, sources
from .skipping import KeptExamples, drop_outside
from .table import Block, Table, _Where, listed
from .transforms import MULTI, outputs


def stream_sources(program: Program, task: str, typed: bool = False) -> dict[str, Any] | None:
    """The data fields' sources opened as `Examples`, to be read as training needs them
    (`data.stream = true`, or `auto` where the examples would not fit the memory free for the
    run); None: every source is read whole. `typed`: a CSV is read as a typed table whatever
    its cells (as `load_tables`)."""
    data = program.data
    assert data is not None
    if data.stream is False:
        return None
    auto = str(data.stream) == "auto"
    fields = [s for s in ("source", "val", "test") if getattr(data, s)]
    if auto and _surely_fits(program, fields):
        return None  # not even opened: a CSV is not indexed for a run that reads it whole
    source = open_examples(program, "source", task, True if data.columns or typed else None)
    typed = bool(getattr(source, "typed", False))  # its val and test tables are read alike
    opened = {"source": source} | {s: open_examples(program, s, task, typed) for s in fields[1:]}
    for s in fields[1:]:
        if task == MULTI and hasattr(opened[s], "align"):  # several outputs' class columns
            opened[s].align(tuple(getattr(source, "blocks", ())))
        elif task != MULTI:
            _align_examples(program, s, source, opened[s])
    if auto and not _too_big(program, opened):
        return None
    if program.train.pretrain is not None:
        raise section_error(
            program,
            "stream",
            "layer-wise pretraining reads the train split in memory, which a streamed run "
            "does not hold"
            + ("" if data.stream is True else " (`stream = auto` chose to stream: it is too big)"),
            "set `stream = false`, or pretrain on a part of the data that fits",
        )
    if getattr(data, "cache", False):  # only now: a run that reads whole makes no cache
        from .cache import attach

        for s, examples in opened.items():
            if sources.streams(getattr(data, s)):
                attach(examples, getattr(data, s), _cache_task(program, task))
    return opened


def load_tables(
    program: Program, task: str, readers: bool = True, typed: bool = False
) -> tuple[Table, tuple[Block, ...], dict[str, Table]]:
    """The source read whole, where several outputs' targets sit in it (`blocks`), and the
    separate `val` / `test` tables the spec names (read as typed tables too where the source
    is one). Under `on_error = skip` (`readers`) each is read by its streamed reader; a typed
    table of which nothing was skipped is then read again by the in-memory reader, as under
    `fail`, to train in memory (with a row skipped, it trains as its streamed run does).
    `typed`: a CSV is read as a typed table whatever its cells (a run trained on one is
    evaluated on its `columns.json`)."""
    data = program.data
    assert data is not None
    base = Path(program.path).resolve().parent
    blocks: tuple[Block, ...] = ()
    if task == MULTI:
        several = _outputs_loader(program, base)
        source, blocks = several("source")

        def load(field: str) -> Table:  # numbered by the source's classes
            return _aligned_outputs(program, field, blocks, *several(field))

    else:
        load = _loader(program, target_kind(task), base, typed, readers)
        source = load("source")
        if source.kind == "table" or getattr(source.reader, "typed", False):  # typed: so are
            # the separate val/test tables
            load = _loader(program, target_kind(task), base, True, readers)
    separate = {s: load(s) for s in ("val", "test") if getattr(data, s) is not None}
    if task != MULTI:
        separate = {s: _aligned(program, s, source, t) for s, t in separate.items()}
    tables = (source, *separate.values())
    typed = any(getattr(t.reader, "typed", False) for t in tables)
    if typed and not any(t.skipped for t in tables):
        return load_tables(program, task, readers=False, typed=typed)
    return source, blocks, separate


def _same_classes(source: Any, other: Any) -> bool:
    """Whether a separate val/test source numbers its classes as the train source does: the
    same names, or both whole-number labels (each label its own index)."""
    if getattr(other, "task", "") != "classification" or other.classes is None:
        return True
    a, b = tuple(source.class_names), tuple(other.class_names)
    return a == b or (_numbered(a) and _numbered(b))


def _numbered(names: tuple[str, ...]) -> bool:
    return names == tuple(str(i) for i in range(len(names)))


def _aligned(program: Program, field: str, source: Table, table: Table) -> Table:
    """A separate val/test table's class labels numbered as the train source's classes (its
    own classes are its labels sorted: fewer, or another order); a label the train data
    lacks is an error at its row."""
    if _same_classes(source, table) or table.y.ndim != 1:
        return table
    names = tuple(source.class_names)
    index = {n: k for k, n in enumerate(names)}
    own = tuple(table.class_names)
    lacking = [k for k, n in enumerate(own) if n not in index]
    if lacking:
        data = program.data
        assert data is not None
        where = _Where(data.span_of(field), program.sources, data.span_of(field))
        i = int(np.flatnonzero(table.y == lacking[0])[0])
        label = own[lacking[0]]
        if table.places is not None and table.text is not None:  # a CSV: at the label's cell
            _, line, col, end = (int(v) for v in table.places[table.position(i)])
            at = Span(table.origin, line, col, line, max(end, col + 1))
            message = (
                f"label `{label}` in row {table.position(i) + 1} is not a class of the train data"
            )
            raise where.file(E_DATA, message, at, f"its classes: {listed(names)}", table.text)
        message = f"class `{label}` of `{table.origin}` is not a class of the train data"
        raise where.spec(E_DATA, message, f"its classes: {listed(names)}")
    remap = np.array([index[n] for n in own], np.int32)
    return replace(table, y=remap[table.y], classes=len(names), class_names=names)


def _aligned_outputs(
    program: Program, field: str, train: tuple[Block, ...], table: Table, blocks: tuple[Block, ...]
) -> Table:
    """As `_aligned`, for a several-output table: each class label column numbered by the
    train source's classes for it (`train`'s blocks)."""
    y = table.y.copy()
    for b, t in zip(blocks, train, strict=True):
        if b.task == "regression" or b.width != 1 or b.names == t.names:
            continue
        index = {n: k for k, n in enumerate(t.names or [str(i) for i in range(t.classes or 0)])}
        col = y[:, b.start].astype(np.int64)
        for v in np.unique(col):
            label = b.names[v] if b.names else str(int(v))
            k = index.get(label)
            if k is None:
                assert program.data is not None
                i = int(np.flatnonzero(col == v)[0])
                raise section_error(
                    program,
                    field,
                    f"label `{label}` of output `{b.name}` in row {table.position(i) + 1} of "
                    f"`{table.origin}` is not a class of the train data",
                    f"its classes: {listed(index)}",
                )
            y[col == v, b.start] = k
    return replace(table, y=y)


def _align_examples(program: Program, field: str, source: Any, examples: Any) -> None:
    """As `_aligned`, for a separate val/test source opened to stream: its reader numbers
    each label by the train source's classes as it reads it."""
    if _same_classes(source, examples):
        return
    align = getattr(examples, "align", None)
    if align is None:
        raise section_error(
            program,
            field,
            f"`{examples.origin}` names its classes otherwise than the train data",
            "give every source of the data the same class labels",
        )
    align(tuple(source.class_names))


def open_examples(program: Program, field: str, task: str, cells: bool | None = None) -> Any:
    """A data field's source as random-access examples: a reader of its files where the
    source streams (runtime/data/sources.py), else its table read into memory. `cells`: a
    CSV's input cells read as strings, a typed table (None: as its first rows say)."""
    data = program.data
    assert data is not None
    ref = getattr(data, field)
    base = Path(program.path).resolve().parent
    if sources.streams(ref):
        where = _Where(data.span_of(field), program.sources, data.span_of(field))
        on_error = str(getattr(data, "on_error", "fail"))
        if task == MULTI:  # every output's targets side by side, `blocks` saying where
            return sources.open_outputs(ref, _output_tasks(program), base, where, on_error)
        assert program.model is not None
        one = len(program.model.outputs) == 1  # class labels checked per example, at their row
        bound = outputs(program) if one else None
        return sources.open_examples(
            ref, target_kind(task), base, where, on_error, outputs=bound, cells=cells
        )
    if task == MULTI:  # a built-in set: small, read whole
        return batches.TableExamples(*_outputs_loader(program, base)(field))
    load = _loader(program, target_kind(task), base)
    return batches.TableExamples(load(field))


def workers(program: Program, field: str, examples: Any = None) -> int:
    """`data.workers`: as written, or for `auto` up to 4 processes where examples are
    decoded from image files (one core left to training); none for arrays and tables, nor
    where `data.cache` holds every example already (read from its maps by threads)."""
    data = program.data
    assert data is not None
    if isinstance(examples, KeptExamples):  # read whole (`on_error = skip`): by this process
        return 0
    if str(data.workers) != "auto":
        return int(data.workers)
    if getattr(data, field).name != "images":
        return 0
    stored = getattr(examples, "_cache", None)
    if stored is not None and stored.filled() == len(examples):
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _loader(
    program: Program, task: str, base: Path, typed: bool = False, readers: bool = True
) -> Any:
    """Reads one source field: a CSV through `load_table` (a typed table where the spec
    types columns or a cell is not a number), any other source through `load_source`."""
    data = program.data
    assert data is not None

    skip_bad = str(getattr(data, "on_error", "fail")) == "skip"

    def load(field: str) -> Table:
        ref = getattr(data, field)
        if skip_bad and readers and sources.streams(ref):
            # a CSV's cells: typed where the spec or the source says; else for `val` and
            # `test`, numbers, as `stream_sources` opens them
            cells = True if typed or data.columns else (None if field == "source" else False)
            found = _skipping(program, field, task, base, cells)
            if found is not None:
                return found
        if ref.name == "csv":
            table = csvrows.load_table(
                ref,
                task=task,
                base_dir=base,
                span=data.span_of(field),
                sources=program.sources,
                typed=typed or bool(data.columns),
                skip=skip_bad,
            )
            return drop_outside(table, _bound(program)) if skip_bad else table
        if ref.name == "images" and getattr(data, "cache", False):  # decoded once, kept
            where = _Where(data.span_of(field), program.sources, data.span_of(field))
            return sources.load(ref, task, base, where, cache=True)
        return sources.load_source(
            getattr(data, field),
            task=task,
            base_dir=base,
            span=data.span_of(field),
            sources=program.sources,
        )

    return load


def _skipping(
    program: Program, field: str, task: str, base: Path, cells: bool | None
) -> Table | None:
    """`on_error = skip`, read whole: a source word that can stream read through its
    streamed reader, so each example is checked as a streamed run checks it (class labels
    against a one-output model's units too) and a bad one is left out and listed
    (`Table.skipped`); a CSV's input cells as strings where `cells`, or its first rows, say
    it is a typed table. None for a typed table under `train.pretrain`, which cannot stream:
    `csvrows.load_table` reads it and drops its bad rows."""
    data = program.data
    assert data is not None and program.model is not None
    ref = getattr(data, field)
    where = _Where(data.span_of(field), program.sources, data.span_of(field))
    if ref.name == "csv" and program.train.pretrain is not None:
        if sources.open_examples(ref, task, base, where, "skip", cells=cells).typed:
            return None
    bound = _bound(program)
    cache = ref.name == "images" and bool(getattr(data, "cache", False))
    return sources.load(ref, task, base, where, cache, "skip", bound, cells)


def _bound(program: Program) -> int | None:
    """The units a one-output model's class labels must fall within (None: several)."""
    assert program.model is not None
    return outputs(program) if len(program.model.outputs) == 1 else None


def _outputs_loader(program: Program, base: Path) -> Any:
    data = program.data
    assert data is not None

    def load(field: str) -> tuple[Table, tuple[Block, ...]]:
        ref = getattr(data, field)
        if str(getattr(data, "on_error", "fail")) == "skip" and sources.streams(ref):
            # read by its streamed reader: bad rows left out and listed (`Table.skipped`)
            where = _Where(data.span_of(field), program.sources, data.span_of(field))
            outs = _output_tasks(program)
            examples = sources.open_outputs(ref, outs, base, where, "skip", whole=True)
            found, _ = sources.table(examples)
            table = replace(found, kind=ref.name, span=where.span, reader=examples)
            return table, examples.blocks
        return sources.load_outputs(
            ref,
            _output_tasks(program),
            base_dir=base,
            span=data.span_of(field),
            sources=program.sources,
        )

    return load


def _output_tasks(program: Program) -> tuple[tuple[str, str, int], ...]:
    assert program.model is not None
    return tuple((h.name, h.task or "", h.units) for h in heads(program.model, program.train))


def _cache_task(program: Program, task: str) -> str:
    """What a `data.cache` of the source is keyed by besides its files: how its targets are
    read (with several outputs, each one's name, task and units: the stored rows' layout)."""
    if task == MULTI:
        return f"{MULTI} {_output_tasks(program)}"
    return target_kind(task)


# How many bytes of memory a byte on disk may become read whole, at most, per source word:
# arrays are stored as they are read, a CSV cell of numbers takes at least 2 bytes ("0,") for
# 4 but a typed table's cells are Python strings (`csvrows.TYPED_EXPANDS`; a CSV is not known
# to be numeric before it is opened), a Parquet or shard file may be compressed, a PNG or
# JPEG decodes to far more.
_EXPANDS = {
    "npz": 1, "npy": 1, "csv": csvrows.TYPED_EXPANDS, "parquet": 10, "shards": 10, "images": 100
}  # fmt: skip


def _surely_fits(program: Program, fields: list[str]) -> bool:
    """`stream = auto`: whether the files' sizes alone show the examples fit in memory, so
    the sources need not be opened (opening a CSV indexes it) to find out."""
    data = program.data
    assert data is not None
    base = Path(program.path).resolve().parent
    total = 0
    for name in fields:
        ref = getattr(data, name)
        if ref.name not in _EXPANDS:
            return False  # a built-in set is measured loaded (no file, nothing to index)
        paths = [str(ref.arg(a)) for a in ("path", "x", "y", "dir", "pattern") if _has(ref, a)]
        files = [f for p in paths for f in _files(base / p)]
        total += _EXPANDS[ref.name] * sum(f.stat().st_size for f in files)
    found = _free_memory()
    return found is not None and total <= found // 8


def _has(ref: Any, name: str) -> bool:
    try:
        return ref.arg(name) is not None
    except (KeyError, AttributeError):
        return False


def _files(path: Path) -> list[Path]:
    import glob

    if path.is_file():
        return [path]
    if path.is_dir():  # a `data.cache` inside an image folder is no part of the data
        return [p for p in path.rglob("*") if p.is_file() and ".dnn-cache" not in p.parts]
    return [Path(p) for p in glob.glob(str(path)) if Path(p).is_file()]


def _free_memory() -> int | None:
    import jax

    from ..memory_limit import available

    found = available(jax.devices()[:1])
    return found[0] if found is not None else None


def _too_big(program: Program, opened: dict[str, Any]) -> bool:
    """`stream = auto`: whether the examples, decoded, take more than half the memory free
    for the run (a device's, or the machine's RAM on a CPU: runtime/memory_limit.py)."""
    found = _free_memory()
    wanted = sum(batches.nbytes(e) for e in opened.values())
    return found is not None and wanted > found // 2


def nothing_kept(program: Program, n: int, first: Any) -> SpecError:
    """Every example of the train split (`n`) was skipped as bad (`on_error = skip`); `first`:
    the first one's `Skipped` record."""
    return section_error(
        program,
        "on_error",
        f"every example of the train split ({n}) was skipped as bad: nothing to train on "
        f"(the first: {first.where} of `{first.origin}`: {first.reason})",
        "fix the data, or set `on_error = fail` to stop at the first bad example, shown "
        "in its file",
    )


def section_error(program: Program, field: str, message: str, hint: str) -> SpecError:
    """A mistake of the data section, at its field `field`."""
    assert program.data is not None
    return SpecError(
        [Diagnostic(E_SECTION, message, program.data.span_of(field), hint)], program.sources
    )


def top(program: Program) -> Span:
    """The spec's first character: where an error with no field of its own points."""
    return Span(program.path, 1, 1, 1, 1)
