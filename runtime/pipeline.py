"""From a `data` section to what training reads: the stages of runtime/data/, in order.

`prepare` is the one entry. It reads top to bottom, one call per stage, in either mode:

1. source (`data/load.py`): `stream_sources` decides whether to stream (`data.stream`); the
   sources are read whole (`load_tables`) or opened as `Examples` to read as needed;
2. split (`data/split.py`): train/val/test by the permutation of `data.seed`: a table cut by
   `split_table`, a streamed source's row numbers by `split_rows`;
3. fitted (`data/fitted.py`): the normalizer's statistics on the train split only, and the
   regression targets' (`data.targets`), in memory (`fit`) or in one pass over the rows
   (`fit_rows`); a typed table's columns and vocabularies, then the same statistics over its
   number columns (`fit_table`, with runtime/tabular.py);
4. transforms (`data/transforms.py`): every split, or every streamed batch, normalized,
   reshaped to the model's input (digits are 64 values, a CNN reads 8 x 8 x 1), labels and
   ids checked; a typed table's cells encoded with its fitted columns first
   (`transform_table`);
5. batches: the splits in memory are placed on the device by the trainer (runtime/train.py);
   a streamed split is `data/batches.py`'s `Streamed`, read batch by batch through Grain.

The engine inverts `data.targets` on the outputs for the metrics, `dnn predict` for its
output. The fitted statistics and what eval/predict need to repeat the transforms are saved
in the run directory (`save`: `preprocess.npz` + `preprocess.json`; the target statistics
under `targets.<name>`): plain arrays and JSON, never pickle.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import (
    E_SECTION,
    Diagnostic,
    SpecError,
)
from dnn.compiler.ir import Program
from dnn.compiler.registry.core import Problem

from . import preprocess, rundir, tabular
from .data import batches, csvrows, fitted, load, skipping, split, transforms
from .data.table import Block, Table


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
    blocks: tuple[Block, ...] = ()  # several outputs: where each one's targets are
    schema: tabular.Schema | None = None  # a typed CSV table's fitted columns
    unseen: dict[str, dict[str, tuple[int, tuple[str, ...]]]] = field(default_factory=dict)
    # per split, per column: the cells the train vocabulary did not know (count, examples)
    streamed: dict[str, batches.Streamed] = field(default_factory=dict)
    # `data.stream`: each split read from its source batch by batch; `splits` then holds
    # each split's first examples only (its head: shapes, dtypes, a look at the data)
    tallies: dict[str, tabular.Unseen] = field(default_factory=dict)
    # a typed table streamed: per split, the unseen cells its batches met so far
    skipped: dict[str, list[Any]] = field(default_factory=dict)
    # read whole where no streamed run could be (`train.pretrain`): the examples `on_error =
    # skip` left out of each split, written to the run folder by `save`

    def unseen_cells(self) -> dict[str, dict[str, tuple[int, tuple[str, ...]]]]:
        """Per split and column, the cells the vocabularies did not know (streamed: those
        read so far; every split has been read whole once a run ends)."""
        if not self.tallies:
            return self.unseen
        return {s: found for s, t in self.tallies.items() if (found := t.report())}

    def size(self, split: str) -> int:
        if self.streamed:
            return len(self.streamed[split])
        return len(self.splits[split].y)


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
    _check_sections(program)
    task = transforms.task_of(program)
    opened = load.stream_sources(program, task, schema is not None)
    if opened is not None:
        return _streamed(program, task, opened, stats, targets, schema)
    return _whole(program, task, stats, targets, schema)


def _whole(
    program: Program,
    task: str,
    stats: dict[str, np.ndarray] | None,
    targets: preprocess.Targets | None,
    schema: tabular.Schema | None,
) -> Prepared:
    """Every split read whole into memory and taken through each stage at once."""
    data = program.data
    assert data is not None
    source, blocks, separate = load.load_tables(program, task, typed=schema is not None)
    skipped: dict[str, list[Any]] = {}
    if skipping.skipped_any(source, separate):  # `on_error = skip` left examples out
        _check_kept(program, source, separate)
        if program.train.pretrain is None:  # trained as the streamed run
            opened = skipping.opened(source, separate, blocks)
            return _streamed(program, task, opened, stats, targets, schema)
        skipped = skipping.by_split(program, source, separate)  # what cannot stream: dropped
    splits = split.split_table(source, separate, dict(data.split.items), data.seed)
    _check_train(program, len(splits["train"].y))
    if splits["train"].kind == "table":  # string or missing cells: typed columns
        schema, stats, targets = fitted.fit_table(
            program, task, source, splits, stats, targets, schema
        )
        out, width, unseen = transforms.transform_table(program, schema, stats, targets, splits)
        return Prepared(
            out, stats, width, task, source.classes, source.class_names, targets, (), schema,
            unseen, skipped=skipped,
        )  # fmt: skip
    raw_shape = tuple(splits["train"].x.shape[1:])
    shape = _normalized_shape(program, raw_shape)
    transforms.check_dtypes(program, splits["train"])
    for table in splits.values():
        transforms.check_examples(program, task, table)
    stats, targets = fitted.fit(program, task, splits["train"], blocks, stats, targets)
    out = {
        name: transforms.transform(program, table, stats, targets, shape)
        for name, table in splits.items()
    }
    prepared = _prepared(program, source, out, stats, raw_shape, task, targets, blocks)
    return replace(prepared, skipped=skipped)


def _streamed(
    program: Program,
    task: str,
    opened: dict[str, Any],
    stats: dict[str, np.ndarray] | None,
    targets: preprocess.Targets | None,
    schema: tabular.Schema | None,
) -> Prepared:
    """Each split read from its source as training needs it: the train split's statistics
    in one pass over its rows, each batch checked and transformed as it is read. `splits`
    holds each split's first examples (its head: shapes, dtypes, a look at the data)."""
    data = program.data
    assert data is not None
    source = opened.pop("source")
    rows = split.split_rows(len(source), split.fractions(dict(data.split.items), opened), data.seed)
    parts = {s: (source, rows[s], "source") for s in split.SPLITS if s not in opened}
    parts.update({s: (e, np.arange(len(e)), s) for s, e in opened.items()})
    _check_train(program, len(parts["train"][1]))
    if getattr(source, "typed", False):
        return _streamed_table(program, task, source, parts, stats, targets, schema)
    raw_shape = tuple(source.shape)
    shape = _normalized_shape(program, raw_shape)
    raw = {
        s: batches.read_table(e, r[: batches.head_rows(len(r))], data.span_of(f))
        for s, (e, r, f) in parts.items()
    }
    transforms.check_dtypes(program, raw["train"])
    train, train_rows, _ = parts["train"]
    blocks = tuple(getattr(source, "blocks", ()))  # several outputs: where each one's targets are
    if blocks:
        stats, targets = fitted.fit_rows_outputs(program, train, train_rows, blocks, stats, targets)
    else:
        stats, targets = fitted.fit_rows(program, task, train, train_rows, stats, targets)
    heads, streamed = {}, {}
    for s, (e, r, f) in parts.items():
        transforms.check_examples(program, task, raw[s])
        heads[s] = transforms.transform(program, raw[s], stats, targets, shape)
        cut = _cutter(program, task, e, f, stats, targets, shape)
        on_error, workers = str(getattr(data, "on_error", "fail")), load.workers(program, f, e)
        streamed[s] = batches.Streamed(e, r, cut, heads[s], on_error, workers=workers)
    return _prepared(program, source, heads, stats, raw_shape, task, targets, blocks, streamed)


def _streamed_table(
    program: Program,
    task: str,
    source: Any,
    parts: dict[str, tuple[Any, np.ndarray, str]],
    stats: dict[str, np.ndarray] | None,
    targets: preprocess.Targets | None,
    schema: tabular.Schema | None,
) -> Prepared:
    """A typed table streamed: its columns, vocabularies and statistics fitted in passes over
    the train rows (`fitted.fit_table_rows`), each batch's cells encoded as it is read, and
    the cells the vocabularies do not know counted as the batches meet them."""
    data = program.data
    assert data is not None
    schema, stats, targets = fitted.fit_table_rows(program, task, parts, stats, targets, schema)
    slots = transforms.table_slots(program, schema)
    heads, streamed, tallies = {}, {}, {}
    for s, (e, r, f) in parts.items():
        tallies[s] = tabular.Unseen(len(e))
        cut = _table_cutter(program, e, f, schema, slots, stats, targets, tallies[s])
        head = batches.read_table(e, r[: batches.head_rows(len(r))], data.span_of(f))
        hx, hy = cut(head.x, head.y, head.index)
        heads[s] = replace(head, x=hx, y=hy)
        on_error, workers = str(getattr(data, "on_error", "fail")), load.workers(program, f, e)
        streamed[s] = batches.Streamed(e, r, cut, heads[s], on_error, workers=workers)
    width = (sum(s.size for s in slots),)
    return Prepared(
        heads, stats, width, task, source.classes, source.class_names, targets, (), schema,
        streamed=streamed, tallies=tallies,
    )  # fmt: skip


def _table_cutter(
    program: Program,
    examples: Any,
    field: str,
    schema: tabular.Schema,
    slots: tuple[tabular.Slot, ...],
    stats: dict[str, np.ndarray],
    targets: preprocess.Targets,
    tally: tabular.Unseen,
) -> Any:
    """The transforms stage of one streamed batch of a typed table: its cells encoded."""
    span = program.data.span_of(field) if program.data is not None else None

    def cut(x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = batches.as_table(examples, span, x, y, rows)
        at = lambda i, j, code, m, h: examples.cell_error(int(rows[i]), j, code, m, h)  # noqa: E731
        raw = tabular.Raw(examples.columns, x.reshape(len(x), len(examples.columns)), at)
        t, encoded = transforms.encode_table(program, schema, slots, stats, targets, t, raw)
        tally.add(rows, raw, encoded.masks)
        return t.x, t.y

    return cut


def _cutter(
    program: Program,
    task: str,
    examples: Any,
    field: str,
    stats: dict[str, np.ndarray],
    targets: preprocess.Targets,
    shape: tuple[int, ...],
) -> Any:
    """The transforms stage of one streamed batch of `examples` (the source of `field`)."""
    span = program.data.span_of(field) if program.data is not None else None

    def cut(x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = batches.as_table(examples, span, x, y, rows)
        transforms.check_examples(program, task, t)
        t = transforms.transform(program, t, stats, targets, shape)
        return t.x, t.y

    return cut


def _prepared(
    program: Program,
    source: Any,
    splits: dict[str, Table],
    stats: dict[str, np.ndarray],
    raw_shape: tuple[int, ...],
    task: str,
    targets: preprocess.Targets,
    blocks: tuple[Block, ...],
    streamed: dict[str, batches.Streamed] | None = None,
) -> Prepared:
    """The prepared splits, with the source's classes (an autoencoder has none)."""
    assert program.data is not None
    classes, names = getattr(source, "classes", None), tuple(getattr(source, "class_names", ()))
    if program.data.reconstruct:
        classes, names = None, ()
    return Prepared(
        splits, stats, raw_shape, task, classes, names, targets, blocks, streamed=streamed or {}
    )


def _check_sections(program: Program) -> None:
    """A spec to prepare data for has a model and a data section."""
    if program.data is None or program.model is None:
        raise SpecError(
            [
                Diagnostic(
                    E_SECTION,
                    "nothing to train on: the spec has no `data` section"
                    if program.model is not None
                    else "nothing to train: the spec has no model",
                    program.train.span_of("loss") if program.model else load.top(program),
                    'add `data { source = builtin("digits") }` or a csv/npz/images source',
                )
            ],
            program.sources,
        )


def _check_train(program: Program, n: int) -> None:
    if n == 0:
        raise load.section_error(
            program, "split", "the train split is empty", "give `train` a share"
        )


def _check_kept(program: Program, source: Table, separate: dict[str, Table]) -> None:
    """Data read whole under `on_error = skip` keeps some example of the train split."""
    n, kept = skipping.train_kept(program, source, separate)
    if n and not kept:
        (_, first), *_ = source.skipped
        raise load.nothing_kept(program, n, first)


def _normalized_shape(program: Program, raw_shape: tuple[int, ...]) -> tuple[int, ...]:
    """One example's shape after the normalizer (which refuses a shape it cannot take)."""
    assert program.data is not None
    try:
        return preprocess.output_shape(program.data.normalize, raw_shape)
    except Problem as p:
        raise load.section_error(program, "normalize", p.message, p.hint or "") from None


def in_memory(program: Program, prepared: Prepared, command: str) -> None:
    """Refuse, at `data.stream`, a streamed spec for a command that trains from splits
    placed on the device (`dnn lr-find`, `dnn sweep --vmap`, population-based training);
    at `data.on_error`, data read whole that examples were skipped from (then read batch by
    batch, as streamed: runtime/data/skipping.py)."""
    kept = [s for s in prepared.streamed.values() if isinstance(s.examples, skipping.KeptExamples)]
    if kept:
        raise load.section_error(
            program,
            "on_error",
            f"{command} trains from the splits placed on the device, but `on_error = skip` "
            "left bad examples out of this spec's data, which is then read batch by batch as "
            "a streamed run reads it",
            "fix or remove the bad examples (`dnn train` lists them in skipped.json), or set "
            "`on_error = fail` to stop at the first",
        )
    if prepared.streamed:
        raise load.section_error(
            program,
            "stream",
            f"{command} trains from the splits placed on the device, but this spec streams "
            "them" + ("" if program.data and program.data.stream is True else " (`auto`: too big)"),
            "set `stream = false` for it, on a part of the data that fits",
        )


def raw_splits(program: Program) -> dict[str, Table]:
    """The splits as the source holds them, before any transform: what `dnn predict` and an
    exported model take as inputs (and the targets in the data's units)."""
    assert program.data is not None
    source, _, separate = load.load_tables(program, transforms.task_of(program))
    return split.split_table(source, separate, dict(program.data.split.items), program.data.seed)


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
        "multi_hot": prepared.task not in ("regression", transforms.MULTI)
        and prepared.splits["train"].y.ndim == 2,
        "outputs": [dataclasses.asdict(b) for b in prepared.blocks],
    }
    (folder / "preprocess.json").write_text(json.dumps(meta, indent=2) + "\n")
    if prepared.skipped:  # as a streamed run writes what it met (runtime/fit.py)
        counts = {s: len(v) for s, v in prepared.skipped.items()}
        found = {
            s: [r._asdict() for r in sorted(v, key=lambda r: r.order())]
            for s, v in prepared.skipped.items()
        }
        rundir.write_json(folder / "skipped.json", {"counts": counts, "skipped": found})
    if prepared.schema is not None:
        tabular.save(prepared.schema, folder, prepared.unseen_cells())


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
    blocks: tuple[Block, ...] = ()  # several outputs: where each one's targets were
    schema: tabular.Schema | None = None  # a typed table's columns (predict reads cells)
    normalize: str | None = None  # the run's `data.normalize`, as written (None: unknown)

    def check(self, program: Program, folder: Path) -> None:
        """The spec reads its inputs as the run was trained to: its `data.normalize` is the
        run's (the saved statistics are that normalizer's)."""
        data = program.data
        if data is None or self.normalize is None or str(data.normalize) == self.normalize:
            return
        raise load.section_error(
            program,
            "normalize",
            f"the run in `{folder}` was trained with `normalize = {self.normalize}`, but the "
            f"spec says `{data.normalize}`: the run's saved statistics are for its own",
            f"write `normalize = {self.normalize}`, or use the spec the run was trained with "
            f"(`{folder / 'spec.dnn'}`)",
        )

    def __call__(self, program: Program, x: np.ndarray) -> np.ndarray:
        assert program.data is not None
        x = preprocess.apply(program.data.normalize, self.stats, x)
        x = x.astype(transforms.input_dtype(program), copy=False)
        return x.reshape((x.shape[0], *transforms.model_input_shape(program)))


def load_transform(folder: Path) -> Transform:
    """A run's saved preprocessing; a run saved before `data.targets` existed has no target
    statistics and learned the targets as they are."""
    meta = json.loads((folder / "preprocess.json").read_text())
    with np.load(folder / "preprocess.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    stats = {k: v for k, v in arrays.items() if not k.startswith("targets.")}
    target_stats = {k[len("targets.") :]: v for k, v in arrays.items() if k.startswith("targets.")}
    targets = preprocess.Targets()
    blocks = tuple(
        Block(**{**b, "names": tuple(b.get("names", ()))}) for b in meta.get("outputs", ())
    )
    if meta.get("targets", "none") != "none":
        from dnn.compiler.driver import value

        ref = value(meta["targets"], "normalizer")[0]
        targets = preprocess.Targets(ref, target_stats)
        if blocks:
            width = sum(b.width for b in blocks)
            targets = preprocess.Targets(
                ref, target_stats, fitted.regression_columns(blocks), width
            )
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
        meta.get("normalize"),
    )


def encode_cells(program: Program, transform: Transform, path: Path) -> tabular.Encoded:
    """`dnn predict`'s inputs for a run trained on a typed table: a CSV with the train table's
    columns (the label column may be there, and is not read), encoded with the run's columns
    and statistics; cells the vocabularies do not know are counted in `unseen`."""
    assert program.data is not None and transform.schema is not None
    schema = transform.schema
    if path.suffix.lower() != ".csv":
        raise csvrows.header_error(
            path,
            f"cannot read `{path}`: the run trained on a typed table, so its inputs are a CSV",
            "give a .csv file with the train table's columns and a header row",
        )
    raw = csvrows.read_cells(path)
    lacking = tabular.missing_column(raw.names, schema)
    if lacking is not None:
        raise csvrows.header_error(
            path,
            f"`{path}` has no column `{lacking}`, which the model reads",
            "give the CSV the columns of the table the run trained on (a header row, then one row per example)",
        )
    span = program.data.span_of("source")
    slots = tabular.bind(schema, transforms.table_inputs(program), program.sources, span)
    enc = tabular.encode(schema, slots, program.data.normalize, transform.stats, raw)
    x = enc.x.astype(transforms.input_dtype(program), copy=False)
    return replace(enc, x=x.reshape((x.shape[0], *transforms.model_input_shape(program))))
