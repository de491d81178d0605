"""From a `data` section to device-resident arrays: load, split, normalize, fit to the model.

Order: load the source (and the separate `val` / `test` sources) → split with `data.seed` →
fit the normalizer on the train split only → apply it to every split → reshape to the model's
input (digits are 64 values, a CNN reads 8 x 8 x 1) and check the labels. Regression targets go
the same way through `data.targets` (fitted on the train split's targets, applied to every
split; the engine inverts it on the outputs for the metrics, `dnn predict` for its output). The
fitted statistics and what eval/predict need to repeat the transforms are saved in the run
directory (`preprocess.npz` + `preprocess.json`; the target statistics under `targets.<name>`):
plain arrays and JSON, never pickle.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import (
    E_COLUMNS,
    E_SECTION,
    Diagnostic,
    SpecError,
)
from dnn.compiler.ir import Program
from dnn.compiler.registry.core import Problem
from dnn.compiler.rules import heads, target_kind
from dnn.compiler.values import Ref, is_float_dtype

from . import datasets, preprocess, tabular
from .data import batches
from .data.split import SPLITS, fractions, split_rows, split_table, take
from .data.transforms import (
    MULTI,
    check_dtypes,
    check_examples,
    check_ids,
    input_dtype,
    model_input_shape,
    outputs,
    task_of,
    to_model,
    transform,
)
from .datasets import Table


@dataclass(frozen=True)
class Prepared:
    """The splits as NumPy arrays, ready for the model, and how they were made."""

    splits: dict[str, Table]
    stats: dict[str, np.ndarray]  # the normalizer's statistics, from the train split
    raw_shape: tuple[int, ...]  # one example as the source stores it
    task: str  # regression | binary | multiclass | multilabel (core.TASKS)
    classes: int | None
    class_names: tuple[str, ...]
    targets: preprocess.Targets = field(default_factory=preprocess.Targets)  # y as learned
    blocks: tuple[datasets.Block, ...] = ()  # several outputs: where each one's targets are
    schema: tabular.Schema | None = None  # a typed CSV table's fitted columns
    unseen: dict[str, dict[str, tuple[int, tuple[str, ...]]]] = field(default_factory=dict)
    # per split, per column: the cells the train vocabulary did not know (count, examples)
    streamed: dict[str, batches.Streamed] = field(default_factory=dict)
    # `data.stream`: each split read from its source batch by batch; `splits` then holds
    # each split's first examples only (its head: shapes, dtypes, a look at the data)

    def size(self, split: str) -> int:
        if self.streamed:
            return len(self.streamed[split])
        return len(self.splits[split].y)


def _output_tasks(program: Program) -> tuple[tuple[str, str, int], ...]:
    assert program.model is not None
    return tuple((h.name, h.task or "", h.units) for h in heads(program.model, program.train))


def prepare(
    program: Program,
    stats: dict[str, np.ndarray] | None = None,
    targets: preprocess.Targets | None = None,
    schema: tabular.Schema | None = None,
) -> Prepared:
    """Load and transform the data of a spec (raises `SpecError` naming file, row, column).

    `stats`, `targets`, `schema`: a trained run's normalizer and target statistics and table
    columns, used instead of fitting new ones.
    """
    data = program.data
    if data is None or program.model is None:
        raise SpecError(
            [
                Diagnostic(
                    E_SECTION,
                    "nothing to train on: the spec has no `data` section"
                    if program.model is not None
                    else "nothing to train: the spec has no model",
                    program.train.span_of("loss") if program.model else _top(program),
                    'add `data { source = builtin("digits") }` or a csv/npz/images source',
                )
            ],
            program.sources,
        )
    task = task_of(program)
    if data.stream is not False:
        streamed = _prepare_streamed(program, task, stats, targets)
        if streamed is not None:
            return streamed
    source, blocks, splits = _raw(program, task)
    if len(splits["train"].y) == 0:
        raise _section_error(program, "split", "the train split is empty", "give `train` a share")
    if splits["train"].kind == "table":
        return _prepare_table(program, task, source, splits, stats, targets, schema)
    raw_shape = tuple(splits["train"].x.shape[1:])
    try:
        shape = preprocess.output_shape(data.normalize, raw_shape)
    except Problem as p:
        raise _section_error(program, "normalize", p.message, p.hint or "") from None
    check_dtypes(program, splits["train"])
    for table in splits.values():
        check_examples(program, task, table)
    if stats is None:
        stats = preprocess.fit(data.normalize, splits["train"].x)
    if targets is None and data.reconstruct:  # learned as the model reads its input
        targets = preprocess.Targets(data.normalize, stats)
    if targets is None:
        targets = _fit_targets(program, task, splits["train"], blocks)
    out = {name: transform(program, table, stats, targets, shape) for name, table in splits.items()}
    if data.reconstruct:
        return Prepared(out, stats, raw_shape, task, None, (), targets, blocks)
    names = source.class_names
    return Prepared(out, stats, raw_shape, task, source.classes, names, targets, blocks)


# ------------------------------------------------------------------ streamed


def _prepare_streamed(
    program: Program,
    task: str,
    stats: dict[str, np.ndarray] | None,
    targets: preprocess.Targets | None,
) -> Prepared | None:
    """The splits read from their sources as training needs them (`data.stream = true`, or
    `auto` where the examples would not fit the memory free for the run); None: in memory."""
    data = program.data
    assert data is not None
    auto = str(data.stream) == "auto"
    if task == MULTI or data.columns:
        if auto:
            return None
        what = "a model with several outputs" if task == MULTI else "typed columns"
        raise _cannot_stream(program, what)
    fields = [s for s in ("source", "val", "test") if getattr(data, s)]
    if auto and _surely_fits(program, fields):
        return None  # not even opened: a CSV is not indexed for a run that reads it whole
    opened = {s: _examples(program, s, task) for s in fields}
    if any(getattr(getattr(e, "table", None), "kind", "") == "table" for e in opened.values()):
        if auto:
            return None
        raise _cannot_stream(program, "a typed table (string or missing cells)")
    if auto and not _too_big(program, opened):
        return None
    if program.train.pretrain is not None:
        raise _section_error(
            program,
            "stream",
            "layer-wise pretraining reads the train split in memory, which a streamed run "
            "does not hold"
            + ("" if data.stream is True else " (`stream = auto` chose to stream: it is too big)"),
            "set `stream = false`, or pretrain on a part of the data that fits",
        )
    source = opened.pop("source")
    rows = split_rows(len(source), fractions(dict(data.split.items), opened), data.seed)
    parts = {s: (source, rows[s], "source") for s in SPLITS if s not in opened}
    parts.update({s: (e, np.arange(len(e)), s) for s, e in opened.items()})
    if len(parts["train"][1]) == 0:
        raise _section_error(program, "split", "the train split is empty", "give `train` a share")
    raw_shape = tuple(source.shape)
    try:
        shape = preprocess.output_shape(data.normalize, raw_shape)
    except Problem as p:
        raise _section_error(program, "normalize", p.message, p.hint or "") from None
    raw = {
        s: _raw_batch(program, e, r[: batches.head_rows(len(r))], f)
        for s, (e, r, f) in parts.items()
    }
    check_dtypes(program, raw["train"])
    train, train_rows, _ = parts["train"]
    if stats is None or targets is None:  # one pass over the train rows, in bounded memory
        from .data.fitted import fit_streamed

        none = Ref("normalizer", "none")
        scale = targets is None and task == "regression" and not data.reconstruct
        one_pass = fit_streamed(
            data.normalize if stats is None else none,
            train,
            train_rows,
            targets=data.targets if scale else none,
        )
        stats = one_pass.stats if stats is None else stats
        if targets is None and data.reconstruct:
            targets = preprocess.Targets(data.normalize, stats)
        elif scale:
            targets = preprocess.Targets(data.targets, one_pass.targets)
    if targets is None:
        targets = _fit_targets(program, task, _read_targets(program, train, train_rows), ())
    fitted = targets

    def cutter(examples: Any, where: str) -> Any:
        def cut(x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            t = _as_table(program, examples, where, x, y, rows)
            check_examples(program, task, t)
            t = transform(program, t, stats, fitted, shape)
            return t.x, t.y

        return cut

    streamed, heads = {}, {}
    for s, (e, r, f) in parts.items():
        check_examples(program, task, raw[s])
        heads[s] = transform(program, raw[s], stats, fitted, shape)
        on_error = str(getattr(data, "on_error", "fail"))
        workers = _workers(program, f)
        streamed[s] = batches.Streamed(e, r, cutter(e, f), heads[s], on_error, workers=workers)
    if data.reconstruct:
        return Prepared(heads, stats, raw_shape, task, None, (), fitted, streamed=streamed)
    classes, names = getattr(source, "classes", None), tuple(getattr(source, "class_names", ()))
    return Prepared(heads, stats, raw_shape, task, classes, names, fitted, streamed=streamed)


def _examples(program: Program, field: str, task: str) -> Any:
    """A data field's source as random-access examples: a reader of its files where the
    source streams (runtime/data/sources.py), else its table read into memory."""
    data = program.data
    assert data is not None
    ref = getattr(data, field)
    base = Path(program.path).resolve().parent
    try:
        from .data import sources
    except ImportError:  # the stream extra is not installed: every source is read whole
        sources = None  # type: ignore[assignment]
    if sources is not None and sources.streams(ref):
        where = datasets._Where(data.span_of(field), program.sources, data.span_of(field))
        on_error = str(getattr(data, "on_error", "fail"))
        assert program.model is not None
        one = len(program.model.outputs) == 1  # class labels checked per example, at their row
        bound = outputs(program) if one else None
        return sources.open_examples(ref, target_kind(task), base, where, on_error, outputs=bound)
    load = _loader(program, target_kind(task), base)
    return batches.TableExamples(load(field))


def in_memory(program: Program, prepared: Prepared, command: str) -> None:
    """Refuse, at `data.stream`, a streamed spec for a command that trains from splits
    placed on the device (`dnn lr-find`, `dnn sweep --vmap`, population-based training)."""
    if prepared.streamed:
        raise _section_error(
            program,
            "stream",
            f"{command} trains from the splits placed on the device, but this spec streams "
            "them" + ("" if program.data and program.data.stream is True else " (`auto`: too big)"),
            "set `stream = false` for it, on a part of the data that fits",
        )


def _cannot_stream(program: Program, what: str) -> SpecError:
    return _section_error(
        program,
        "stream",
        f"{what} cannot be streamed yet: its splits are read whole",
        "set `stream = false` (docs/streaming.md lists what streams)",
    )


def _workers(program: Program, field: str) -> int:
    """`data.workers`: as written, or for `auto` up to 4 processes where examples are
    decoded from image files (one core left to training), none for arrays and tables."""
    data = program.data
    assert data is not None
    if str(data.workers) != "auto":
        return int(data.workers)
    if getattr(data, field).name != "images":
        return 0
    return max(0, min(4, (os.cpu_count() or 1) - 1))


# How many bytes of decoded float32 examples a byte on disk may become, at most, per source
# word: arrays are stored as they are read, a CSV cell takes at least 2 bytes ("0,") for 4,
# a Parquet or shard file may be compressed, a PNG or JPEG decodes to far more.
_EXPANDS = {"npz": 1, "npy": 1, "csv": 2, "parquet": 10, "shards": 10, "images": 100}


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
    if path.is_dir():
        return [p for p in path.rglob("*") if p.is_file()]
    return [Path(p) for p in glob.glob(str(path)) if Path(p).is_file()]


def _free_memory() -> int | None:
    import jax

    from .memory_limit import available

    found = available(jax.devices()[:1])
    return found[0] if found is not None else None


def _too_big(program: Program, opened: dict[str, Any]) -> bool:
    """`stream = auto`: whether the examples, decoded, take more than half the memory free
    for the run (a device's, or the machine's RAM on a CPU: runtime/memory_limit.py)."""
    found = _free_memory()
    wanted = sum(batches.nbytes(e) for e in opened.values())
    return found is not None and wanted > found // 2


def _as_table(
    program: Program, examples: Any, field: str, x: np.ndarray, y: np.ndarray, rows: np.ndarray
) -> Table:
    """A batch of a source's examples as a table, its rows named as the source numbers them."""
    assert program.data is not None
    table = getattr(examples, "table", None)
    return Table(
        x=x,
        y=y,
        task=table.task if table is not None else getattr(examples, "task", "classification"),
        classes=getattr(examples, "classes", None),
        class_names=tuple(getattr(examples, "class_names", ())),
        origin=examples.origin,
        kind=table.kind if table is not None else getattr(examples, "kind", "array"),
        span=program.data.span_of(field),
        index=np.asarray(rows, np.int64),
        places=table.places if table is not None else None,
        text=table.text if table is not None else None,
    )


def _raw_batch(program: Program, examples: Any, rows: np.ndarray, field: str) -> Table:
    x, y, got = batches.stack(batches.read_rows(examples, rows), examples)
    return _as_table(program, examples, field, x, y, got)


def _read(program: Program, examples: Any, rows: np.ndarray, field: str) -> Table:
    """A split's examples read whole, in chunks (the normalizer's fit reads every input)."""
    parts = [
        _raw_batch(program, examples, rows[i : i + READ_CHUNK], field)
        for i in range(0, len(rows), READ_CHUNK)
    ]
    first = parts[0]
    return replace(
        first,
        x=np.concatenate([p.x for p in parts]),
        y=np.concatenate([p.y for p in parts]),
        index=np.concatenate([p.index for p in parts if p.index is not None]),
    )


def _read_targets(program: Program, examples: Any, rows: np.ndarray) -> Table:
    """The train split's targets (a regression's `data.targets` fits on them)."""
    assert program.data is not None
    if program.data.targets.name == "none" or task_of(program) != "regression":
        return _raw_batch(program, examples, rows[:1], "source")  # nothing is fitted
    return _read(program, examples, rows, "source")


READ_CHUNK = 4096  # examples read at a time where a split is read whole


def _prepare_table(
    program: Program,
    task: str,
    source: Table,
    splits: dict[str, Table],
    stats: dict[str, np.ndarray] | None,
    targets: preprocess.Targets | None,
    schema: tabular.Schema | None,
) -> Prepared:
    """A typed CSV table through the tabular stage: fit the columns on the train split (or
    take a run's), encode every split, then the targets and checks as for other sources."""
    data = program.data
    assert data is not None
    if not tabular.elementwise(data.normalize):
        message = (
            f"`{data.normalize}` mixes every feature, but `{source.origin}` is a typed table "
            "(its category, binary and text columns are not scaled)"
        )
        hint = "scale the number columns one by one: `normalize = standardize`"
        raise SpecError(
            [Diagnostic(E_COLUMNS, message, _norm_span(program), hint)], program.sources
        )
    raws = {k: datasets.table_cells(t, program.sources) for k, t in splits.items()}
    label = str(data.source.arg("label"))
    if schema is None:
        types = dict(data.columns)
        tabular.check_types(
            types, source.columns, label, _column_span(program), program.sources, source.origin
        )
        train = splits["train"]  # fitted in file order, so a bad cell is the first one
        in_order = take(train, np.argsort(train.index)) if train.index is not None else train
        schema = tabular.fit(datasets.table_cells(in_order, program.sources), label, types)
    for table in splits.values():
        _check_columns(program, schema, table)
    if stats is None:
        stats = tabular.fit_numbers(schema, data.normalize, raws["train"])
    span = data.span_of("columns") if data.columns else data.span_of("source")
    slots = tabular.bind(schema, table_inputs(program), program.sources, span)
    encoded = {k: tabular.encode(schema, slots, data.normalize, stats, r) for k, r in raws.items()}
    coded = {k: replace(t, x=encoded[k].x) for k, t in splits.items()}
    if targets is None:
        targets = _fit_targets(program, task, coded["train"], ())
    out = {}
    for name, table in coded.items():
        check_ids(program, table)
        out[name] = to_model(program, replace(table, y=targets.apply(table.y)))
    width = (coded["train"].x.shape[1],)
    unseen = {k: e.unseen for k, e in encoded.items() if e.unseen}
    return Prepared(
        out, stats, width, task, source.classes, source.class_names, targets, (), schema, unseen
    )


def _column_span(program: Program) -> Any:
    """Where the spec types column `name`: its entry in `columns`, else the field."""
    from dnn.compiler.diagnostics import NO_SPAN

    assert program.data is not None
    data = program.data

    def span(name: str) -> Any:
        at = data.span_of(f"columns.{name}")
        return at if at != NO_SPAN else data.span_of("columns")

    return span


def _check_columns(program: Program, schema: tabular.Schema, table: Table) -> None:
    """A separate val or test table, or eval's data, holds every column the schema reads."""
    lacking = tabular.missing_column(table.columns, schema)
    if lacking is not None:
        raise SpecError(
            [
                Diagnostic(
                    E_COLUMNS,
                    f"`{table.origin}` has no column `{lacking}`, which the model reads",
                    table.span or _top(program),
                    "give every table of the data the train table's columns",
                )
            ],
            program.sources,
        )


def _norm_span(program: Program) -> Any:
    assert program.data is not None
    return program.data.span_of("normalize")


def table_inputs(program: Program) -> list[tabular.Input]:
    """The model's inputs, as the tabular stage binds columns to them."""
    assert program.model is not None
    nodes = [program.model.node(n) for n in program.model.inputs]
    return [tabular.Input(n.name, not is_float_dtype(n.dtype), n.shape, n.span) for n in nodes]


def raw_splits(program: Program) -> dict[str, Table]:
    """The splits as the source holds them, before any transform: what `dnn predict` and an
    exported model take as inputs (and the targets in the data's units)."""
    return _raw(program, task_of(program))[2]


def _raw(program: Program, task: str) -> tuple[Table, tuple[datasets.Block, ...], dict[str, Table]]:
    data = program.data
    assert data is not None
    base = Path(program.path).resolve().parent
    blocks: tuple[datasets.Block, ...] = ()
    if task == MULTI:
        load = _outputs_loader(program, base)
        source, blocks = load("source")
        load = lambda field: _outputs_loader(program, base)(field)[0]  # noqa: E731
    else:
        load = _loader(program, target_kind(task), base)
        source = load("source")
        if source.kind == "table":  # separate val/test tables are read as typed tables too
            load = _loader(program, target_kind(task), base, True)
    extra = {s: load(s) for s in ("val", "test") if getattr(data, s) is not None}
    return source, blocks, split_table(source, extra, dict(data.split.items), data.seed)


def _fit_targets(
    program: Program, task: str, train: Table, blocks: tuple[datasets.Block, ...]
) -> preprocess.Targets:
    """`data.targets` fitted on the train split's targets (regression only: check refuses
    target scaling for class labels; with several outputs, the regression outputs' columns)."""
    assert program.data is not None
    ref = program.data.targets
    if ref.name == "none" or task not in ("regression", MULTI):
        return preprocess.Targets()
    if task == MULTI:
        return preprocess.Targets.fitted(ref, train.y, regression_columns(blocks))
    return preprocess.Targets.fitted(ref, train.y)


def regression_columns(blocks: tuple[datasets.Block, ...]) -> tuple[int, ...]:
    """The target columns of the regression outputs, which `data.targets` scales."""
    return tuple(
        i for b in blocks if b.task == "regression" for i in range(b.start, b.start + b.width)
    )


def _top(program: Program) -> Any:
    from dnn.compiler.diagnostics import Span

    return Span(program.path, 1, 1, 1, 1)


def _loader(program: Program, task: str, base: Path, typed: bool = False) -> Any:
    """Reads one source field: a CSV through `load_table` (a typed table where the spec
    types columns or a cell is not a number), any other source through `load_source`."""
    data = program.data
    assert data is not None

    def load(field: str) -> Table:
        ref = getattr(data, field)
        if ref.name == "csv":
            return datasets.load_table(
                ref,
                task=task,
                base_dir=base,
                span=data.span_of(field),
                sources=program.sources,
                typed=typed or bool(data.columns),
            )
        return datasets.load_source(
            getattr(data, field),
            task=task,
            base_dir=base,
            span=data.span_of(field),
            sources=program.sources,
        )

    return load


def _outputs_loader(program: Program, base: Path) -> Any:
    data = program.data
    assert data is not None

    def load(field: str) -> tuple[Table, tuple[datasets.Block, ...]]:
        return datasets.load_outputs(
            getattr(data, field),
            _output_tasks(program),
            base_dir=base,
            span=data.span_of(field),
            sources=program.sources,
        )

    return load


def _section_error(program: Program, field: str, message: str, hint: str) -> SpecError:
    assert program.data is not None
    return SpecError(
        [Diagnostic(E_SECTION, message, program.data.span_of(field), hint)], program.sources
    )


# ------------------------------------------------------------------ saved with a run


def save(prepared: Prepared, program: Program, folder: Path) -> None:
    """The statistics and the facts eval/predict need, beside the checkpoints."""
    assert program.data is not None
    targets = {f"targets.{k}": v for k, v in prepared.targets.stats.items()}
    np.savez(folder / "preprocess.npz", **prepared.stats, **targets)
    meta = {
        "normalize": str(program.data.normalize),
        "targets": str(prepared.targets.ref),
        "raw_shape": list(prepared.raw_shape),
        "task": prepared.task,
        "classes": prepared.classes,
        "class_names": list(prepared.class_names),
        "multi_hot": prepared.task not in ("regression", MULTI)
        and prepared.splits["train"].y.ndim == 2,
        "outputs": [dataclasses.asdict(b) for b in prepared.blocks],
    }
    (folder / "preprocess.json").write_text(json.dumps(meta, indent=2) + "\n")
    if prepared.schema is not None:
        tabular.save(prepared.schema, folder, prepared.unseen)


@dataclass(frozen=True)
class Transform:
    """The saved preprocessing of a run, applied to new inputs."""

    stats: dict[str, np.ndarray]
    raw_shape: tuple[int, ...]
    task: str
    classes: int | None
    class_names: tuple[str, ...]
    targets: preprocess.Targets = field(default_factory=preprocess.Targets)
    multi_hot: bool = False  # trained on multi-hot rows: predictions are one 0/1 per unit
    blocks: tuple[datasets.Block, ...] = ()  # several outputs: where each one's targets were
    schema: tabular.Schema | None = None  # a typed table's columns (predict reads cells)

    def __call__(self, program: Program, x: np.ndarray) -> np.ndarray:
        assert program.data is not None
        x = preprocess.apply(program.data.normalize, self.stats, x)
        x = x.astype(input_dtype(program), copy=False)
        return x.reshape((x.shape[0], *model_input_shape(program)))


def load_transform(folder: Path) -> Transform:
    """A run's saved preprocessing; a run saved before `data.targets` existed has no target
    statistics and learned the targets as they are."""
    meta = json.loads((folder / "preprocess.json").read_text())
    with np.load(folder / "preprocess.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    stats = {k: v for k, v in arrays.items() if not k.startswith("targets.")}
    target_stats = {k[len("targets.") :]: v for k, v in arrays.items() if k.startswith("targets.")}
    targets = preprocess.Targets()
    blocks = tuple(datasets.Block(**b) for b in meta.get("outputs", ()))
    if meta.get("targets", "none") != "none":
        from dnn.compiler.driver import value

        ref = value(meta["targets"], "normalizer")[0]
        targets = preprocess.Targets(ref, target_stats)
        if blocks:
            width = sum(b.width for b in blocks)
            targets = preprocess.Targets(ref, target_stats, regression_columns(blocks), width)
    return Transform(
        stats,
        tuple(meta["raw_shape"]),
        meta["task"],
        meta["classes"],
        tuple(meta["class_names"]),
        targets,
        bool(meta.get("multi_hot", False)),
        blocks,
        tabular.load(folder),
    )


def encode_cells(program: Program, transform: Transform, path: Path) -> tabular.Encoded:
    """`dnn predict`'s inputs for a run trained on a typed table: a CSV with the train table's
    columns (the label column may be there, and is not read), encoded with the run's columns
    and statistics; cells the vocabularies do not know are counted in `unseen`."""
    assert program.data is not None and transform.schema is not None
    schema = transform.schema
    if path.suffix.lower() != ".csv":
        raise datasets.header_error(
            path,
            f"cannot read `{path}`: the run trained on a typed table, so its inputs are a CSV",
            "give a .csv file with the train table's columns and a header row",
        )
    raw = datasets.read_cells(path)
    lacking = tabular.missing_column(raw.names, schema)
    if lacking is not None:
        raise datasets.header_error(
            path,
            f"`{path}` has no column `{lacking}`, which the model reads",
            "give the CSV the columns of the table the run trained on (a header row, then one row per example)",
        )
    span = program.data.span_of("source")
    slots = tabular.bind(schema, table_inputs(program), program.sources, span)
    enc = tabular.encode(schema, slots, program.data.normalize, transform.stats, raw)
    x = enc.x.astype(input_dtype(program), copy=False)
    return replace(enc, x=x.reshape((x.shape[0], *model_input_shape(program))))
