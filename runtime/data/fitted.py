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

The stage itself is `fit` (a train split in memory) and `fit_rows` (a streamed source's train
rows): the normalizer's statistics (`data.normalize`) and the regression targets'
(`data.targets`), or a trained run's, kept. A typed table's columns and vocabularies are
fitted by runtime/tabular.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from dnn.compiler.diagnostics import E_COLUMNS, NO_SPAN, Diagnostic, Span, SpecError
from dnn.compiler.ir import Program
from dnn.compiler.values import Ref

from . import split
from .csvrows import table_cells
from .examples import Examples, Item, Skipped
from .table import Block, Table

if TYPE_CHECKING:  # preprocess imports this module: imported where used, as `fit_items` does
    from ..preprocess import Targets
    from ..tabular import Schema

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
    (empty when no target normalizer was given) and the examples it skipped; `kept`: how
    many it read (None: nothing was to fit, so nothing was read)."""

    stats: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    skipped: tuple[Skipped, ...]
    kept: int | None = None


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
    kept = 0
    for item in items if (fit_x or fit_y) else ():
        if isinstance(item, Skipped):
            skipped.append(item)
            continue
        kept += 1
        if xs is not None:
            xs.add(item[0])
        if ys is not None:
            ys.add(item[1])
    if not kept:  # nothing read, or every example skipped: nothing to fit on
        return Fitted({}, {}, tuple(skipped), kept if (fit_x or fit_y) else None)
    stats = preprocess.fit_summary(ref, xs.result()) if xs else {}
    fitted_y = preprocess.fit_summary(targets, ys.result()) if ys and targets else {}
    return Fitted(stats, fitted_y, tuple(skipped), kept)


# ------------------------------------------------------------------ the stage


def fit(
    program: Program,
    task: str,
    train: Table,
    blocks: tuple[Block, ...],
    stats: dict[str, np.ndarray] | None,
    targets: Targets | None,
) -> tuple[dict[str, np.ndarray], Targets]:
    """The statistics of a train split in memory: the normalizer's on its inputs, and
    `data.targets`' on its targets (an autoencoder learns its input as the model reads it).
    `stats`, `targets`: a trained run's, kept instead of fitting new ones."""
    from .. import preprocess

    data = program.data
    assert data is not None
    if stats is None:
        stats = preprocess.fit(data.normalize, train.x)
    if targets is None and data.reconstruct:  # learned as the model reads its input
        targets = preprocess.Targets(data.normalize, stats)
    if targets is None:
        targets = fit_targets(program, task, train, blocks)
    return stats, targets


def fit_rows(
    program: Program,
    task: str,
    examples: Any,
    rows: np.ndarray,
    stats: dict[str, np.ndarray] | None,
    targets: Targets | None,
) -> tuple[dict[str, np.ndarray], Targets]:
    """As `fit`, for a streamed source's train `rows`: one pass over them, in bounded memory,
    bit for bit what `fit` gives on the same rows in memory."""
    from .. import preprocess

    data = program.data
    assert data is not None
    if stats is None or targets is None:
        none = Ref("normalizer", "none")
        scale = targets is None and task == "regression" and not data.reconstruct
        one_pass = fit_streamed(
            data.normalize if stats is None else none,
            examples,
            rows,
            targets=data.targets if scale else none,
        )
        if one_pass.kept == 0 and one_pass.skipped:  # `on_error = skip` left out every one
            from .load import nothing_kept

            raise nothing_kept(program, len(rows), one_pass.skipped[0])
        stats = one_pass.stats if stats is None else stats
        if targets is None and data.reconstruct:
            targets = preprocess.Targets(data.normalize, stats)
        elif scale:
            targets = preprocess.Targets(data.targets, one_pass.targets)
    # still None: class labels, which `data.targets` never scales (check refuses it)
    return stats, targets if targets is not None else preprocess.Targets()


def fit_targets(program: Program, task: str, train: Table, blocks: tuple[Block, ...]) -> Targets:
    """`data.targets` fitted on the train split's targets (regression only: check refuses
    target scaling for class labels; with several outputs, the regression outputs' columns)."""
    from .. import preprocess
    from .transforms import MULTI

    assert program.data is not None
    ref = program.data.targets
    if ref.name == "none" or task not in ("regression", MULTI):
        return preprocess.Targets()
    if task == MULTI:
        return preprocess.Targets.fitted(ref, train.y, regression_columns(blocks))
    return preprocess.Targets.fitted(ref, train.y)


def fit_rows_outputs(
    program: Program,
    examples: Any,
    rows: np.ndarray,
    blocks: tuple[Block, ...],
    stats: dict[str, np.ndarray] | None,
    targets: Targets | None,
) -> tuple[dict[str, np.ndarray], Targets]:
    """As `fit_rows`, for a model with several outputs (`blocks`): `data.targets` fitted on
    the regression outputs' columns only, bit for bit what `fit_targets` gives in memory."""
    from .. import preprocess

    data = program.data
    assert data is not None
    columns, none = regression_columns(blocks), Ref("normalizer", "none")
    scale = targets is None and data.targets.name != "none"
    if stats is not None and not scale:
        return stats, targets if targets is not None else preprocess.Targets()

    def items() -> Iterator[Item]:  # each example's targets cut to the regression columns
        for start in range(0, len(rows), CHUNK):
            for item in examples._getitems([int(i) for i in rows[start : start + CHUNK]]):
                yield item if isinstance(item, Skipped) else (item[0], item[1][list(columns)])

    one_pass = fit_items(
        data.normalize if stats is None else none, items(), targets=data.targets if scale else none
    )
    if one_pass.kept == 0 and one_pass.skipped:  # `on_error = skip` left out every one
        from .load import nothing_kept

        raise nothing_kept(program, len(rows), one_pass.skipped[0])
    stats = one_pass.stats if stats is None else stats
    if scale:
        width = sum(b.width for b in blocks)
        targets = preprocess.Targets(data.targets, one_pass.targets, columns, width)
    return stats, targets if targets is not None else preprocess.Targets()


def regression_columns(blocks: tuple[Block, ...]) -> tuple[int, ...]:
    """The target columns of the regression outputs, which `data.targets` scales."""
    return tuple(
        i for b in blocks if b.task == "regression" for i in range(b.start, b.start + b.width)
    )


# ------------------------------------------------------------------ a typed table


def fit_table(
    program: Program,
    task: str,
    source: Table,
    splits: dict[str, Table],
    stats: dict[str, np.ndarray] | None,
    targets: Targets | None,
    schema: Schema | None,
) -> tuple[Schema, dict[str, np.ndarray], Targets]:
    """As `fit`, for a typed CSV table read whole: the columns' types and vocabularies
    (`data.columns`, or inferred; runtime/tabular.py's `Schema`) fitted on the train split,
    the normalizer's statistics over its number columns, and `data.targets`' on its targets.
    `stats`, `targets`, `schema`: a trained run's, kept instead of fitting new ones. Every split
    must hold the columns the schema reads."""
    from .. import tabular

    data = program.data
    assert data is not None
    _check_elementwise(program, source.origin)
    if schema is None:
        types = dict(data.columns)
        label = str(data.source.arg("label"))
        tabular.check_types(
            types, source.columns, label, _column_span(program), program.sources, source.origin
        )
        train = splits["train"]  # fitted in file order, so a bad cell is the first one
        in_order = split.take(train, np.argsort(train.index)) if train.index is not None else train
        schema = tabular.fit(table_cells(in_order, program.sources), label, types)
    for table in splits.values():
        _check_columns(program, schema, table.columns, table.origin, table.span)
    if stats is None:
        raw = table_cells(splits["train"], program.sources)
        stats = tabular.fit_numbers(schema, data.normalize, raw)
    if targets is None:
        targets = fit_targets(program, task, splits["train"], ())
    return schema, stats, targets


def _column_span(program: Program) -> Any:
    """Where the spec types column `name`: its entry in `columns`, else the field."""
    assert program.data is not None
    data = program.data

    def span(name: str) -> Any:
        at = data.span_of(f"columns.{name}")
        return at if at != NO_SPAN else data.span_of("columns")

    return span


def _check_columns(
    program: Program, schema: Schema, columns: tuple[str, ...], origin: str, span: Span | None
) -> None:
    """A separate val or test table, or eval's data, holds every column the schema reads."""
    from .. import tabular

    lacking = tabular.missing_column(columns, schema)
    if lacking is not None:
        raise SpecError(
            [
                Diagnostic(
                    E_COLUMNS,
                    f"`{origin}` has no column `{lacking}`, which the model reads",
                    span or Span(program.path, 1, 1, 1, 1),
                    "give every table of the data the train table's columns",
                )
            ],
            program.sources,
        )


def _check_elementwise(program: Program, origin: str) -> None:
    """A typed table is scaled column by column: a normalizer that mixes features is refused."""
    from .. import tabular

    data = program.data
    assert data is not None
    if not tabular.elementwise(data.normalize):
        message = (
            f"`{data.normalize}` mixes every feature, but `{origin}` is a typed table "
            "(its category, binary and text columns are not scaled)"
        )
        hint = "scale the number columns one by one: `normalize = standardize`"
        raise SpecError(
            [Diagnostic(E_COLUMNS, message, data.span_of("normalize"), hint)], program.sources
        )


def fit_table_rows(
    program: Program,
    task: str,
    parts: dict[str, tuple[Any, np.ndarray, str]],
    stats: dict[str, np.ndarray] | None,
    targets: Targets | None,
    schema: Schema | None,
    chunk: int = CHUNK,
) -> tuple[Schema, dict[str, np.ndarray], Targets]:
    """As `fit_table`, for a typed table streamed (`parts`: each split's examples, its
    source rows and the spec field naming them), in bounded memory: a first pass over the
    train rows in file order (`tabular.Fit.observe`: types, fills, the first bad cell), then,
    where anything is left to fit, a second in split order (the vocabularies, and the
    normalizer's and the targets' statistics, chunk by chunk as `fit_table` does in memory),
    so both modes give the same schema and statistics, bit for bit."""
    from .. import preprocess, tabular

    data = program.data
    assert data is not None
    train, rows, _ = parts["train"]
    _check_elementwise(program, train.origin)
    fitting = None
    if schema is None:
        types = dict(data.columns)
        label = str(data.source.arg("label"))
        tabular.check_types(
            types, train.columns, label, _column_span(program), program.sources, train.origin
        )
        fitting = tabular.Fit(train.columns, label, types, train.cell_error)
        skipped: list[Skipped] = []
        for got, cells, _ in _cell_chunks(train, np.sort(rows), chunk, skipped):
            fitting.observe(cells, got)
        if skipped and not fitting.facts[0].cells:  # `on_error = skip` left out every one
            from .load import nothing_kept

            raise nothing_kept(program, len(rows), skipped[0])
        fitting.types()
    fills = fitting.schema() if fitting is not None else schema  # the number columns' fills
    assert fills is not None
    scale = targets is None and task == "regression" and data.targets.name != "none"
    numbers = stats is None and data.normalize.name != "none"
    if (fitting is not None and fitting.counts()) or numbers or scale:
        xs = Running(False, chunk)  # elementwise (checked above): no co-moments
        ys = Running(preprocess.needs_covariance(data.targets), chunk)
        for got, cells, y in _cell_chunks(train, rows, chunk):
            if fitting is not None:
                fitting.count(cells)
            if numbers:
                at = _cell_error(train, got)
                raw = tabular.Raw(train.columns, cells, at)
                for row in tabular.number_rows(fills, raw):
                    xs.add(row)
            if scale:
                for v in y:
                    ys.add(v)
    if fitting is not None:
        schema = fitting.schema()
    assert schema is not None
    for examples, _, field in parts.values():
        columns = tuple(getattr(examples, "columns", ()))
        _check_columns(program, schema, columns, examples.origin, data.span_of(field))
    if stats is None:
        summary = xs.result() if numbers and schema.numbers() else None
        stats = preprocess.fit_summary(data.normalize, summary) if summary is not None else {}
    if targets is None:
        fitted_y = preprocess.fit_summary(data.targets, ys.result()) if scale else {}
        targets = preprocess.Targets(data.targets, fitted_y) if scale else preprocess.Targets()
    return schema, stats, targets


def _cell_chunks(
    examples: Any, rows: np.ndarray, chunk: int, skipped: list[Skipped] | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A streamed typed table's `rows`, `chunk` at a time: the rows read (a skipped one left
    out, and added to `skipped`), their input cells (n, C) and targets."""
    from .batches import read_rows, stack

    for start in range(0, len(rows), chunk):
        items = read_rows(examples, rows[start : start + chunk])
        if skipped is not None:
            skipped += [i for i in items if isinstance(i, Skipped)]
        x, y, got = stack(items, examples)
        if len(got):
            yield got, x, y


def _cell_error(examples: Any, rows: np.ndarray) -> Any:
    """Errors at row `i` of a chunk read from `rows`: at that source row's cell."""
    return lambda i, j, code, m, h: examples.cell_error(int(rows[i]), j, code, m, h)
