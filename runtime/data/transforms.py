"""The transforms stage: a split, or a streamed batch of one, as the model reads it.

`transform` applies the normalizer fitted on the train split (runtime/preprocess.py) to the
inputs, scales the targets (`data.targets`), and `to_model` reshapes the examples to the
model's input (digits are 64 values, a CNN reads 8 x 8 x 1) and checks the targets against its
output. `check_examples` checks what a shape cannot say: token ids within their tables, and
multi-hot rows only for a multi-label task. In memory every split goes through once; a
streamed split goes through batch by batch (runtime/data/batches.py), with the same functions.
A typed table's splits go through `transform_table`: their cells encoded with the fitted
schema (runtime/tabular.py), then the same targets, checks and reshape.

What the model reads is asked of the program here too: its task (`task_of`), its inputs'
shapes and dtype (`input_sizes`, `model_input_shape`, `input_dtype`) and `model_inputs`, which
cuts one array of examples into the inputs of a model with several.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import (
    E_DATA,
    E_DTYPE,
    E_SECTION,
    Diagnostic,
    InternalError,
    Span,
    SpecError,
)
from dnn.compiler.ir import Program
from dnn.compiler.registry.layers import fmt_shape
from dnn.compiler.rules import heads, id_layers
from dnn.compiler.values import is_float_dtype

from .. import preprocess, tabular
from .csvrows import table_cells
from .table import Table, _start, _Where

# ------------------------------------------------------------------ what the model reads


MULTI = "multioutput"  # the task of a model with several outputs: each has its own


def task_of(program: Program) -> str:
    """The task the loss implies for the model's output (`dnn check` refused any other), or
    `MULTI` for a model with several outputs."""
    assert program.model is not None
    if len(program.model.outputs) > 1:
        return MULTI
    found = heads(program.model, program.train)
    if not found or found[0].task is None:
        raise InternalError("the loss has no task for this output (check refuses it)")
    return found[0].task


def input_sizes(program: Program) -> list[tuple[str, tuple[int, ...]]]:
    assert program.model is not None
    return [(n, program.model.node(n).shape) for n in program.model.inputs]


def outputs(program: Program) -> int:
    assert program.model is not None
    return math.prod(program.model.node(program.model.outputs[0]).shape)


def model_input_shape(program: Program) -> tuple[int, ...]:
    """The shape one example must have: the model's input, or the inputs' sizes end to end."""
    ins = input_sizes(program)
    if len(ins) == 1:
        return ins[0][1]
    return (sum(math.prod(s) for _, s in ins),)


def input_dtype(program: Program) -> Any:
    """The NumPy dtype the model's inputs take: int32 for integer inputs, else float32
    (`dnn check` refuses inputs of both kinds fed by one source)."""
    assert program.model is not None
    ints = [not is_float_dtype(program.model.node(n).dtype) for n in program.model.inputs]
    return np.int32 if all(ints) else np.float32


def model_inputs(program: Program, x: Any) -> Any:
    """One array of examples → what the model takes: the array, or a dict of its inputs."""
    ins = input_sizes(program)
    if len(ins) == 1:
        return x
    assert program.model is not None
    out, start = {}, 0
    for name, shape in ins:
        size = math.prod(shape)
        part = x[:, start : start + size].reshape((x.shape[0], *shape))
        if not is_float_dtype(program.model.node(name).dtype) and part.dtype.kind == "f":
            part = part.astype(np.int32)  # a typed table's ids, exact in its float32 rows
        out[name] = part
        start += size
    return out


# ------------------------------------------------------------------ the stage


def check_examples(program: Program, task: str, table: Table) -> None:
    """What a split's examples must satisfy beyond their shape: ids within their tables, and
    multi-hot rows only for a multi-label task (a streamed split checks each batch)."""
    check_ids(program, table)
    _check_multi_hot(program, task, table)


def transform(
    program: Program,
    table: Table,
    stats: dict[str, np.ndarray],
    targets: preprocess.Targets,
    shape: tuple[int, ...],
) -> Table:
    """The transforms stage: a split (or a streamed batch of one) as the model reads it:
    inputs normalized with the train split's statistics and reshaped to the model's input,
    targets scaled and checked. `shape`: one example after the normalizer."""
    data = program.data
    assert data is not None
    x = preprocess.apply(data.normalize, stats, table.x) if len(table.y) else table.x
    if not len(table.y):
        x = x.reshape((0, *shape))
    if data.reconstruct:  # an autoencoder: the target is the input, in the data's units
        y = np.asarray(table.x, np.float32).reshape((len(table.x), -1))
        table = replace(table, y=y, task="regression", classes=None, class_names=())
    return to_model(program, replace(table, x=x, y=targets.apply(table.y)))


def to_model(program: Program, table: Table) -> Table:
    """A table in the model's input dtype and shape, its targets checked against the output."""
    assert program.model is not None
    first = program.model.inputs[0]
    node = program.model.node(first)
    table = replace(table, x=table.x.astype(input_dtype(program), copy=False))
    return fit_to_model(
        table,
        model_input_shape(program),
        first if len(program.model.inputs) == 1 else ", ".join(program.model.inputs),
        table.y.shape[1] if task_of(program) == MULTI else outputs(program),
        span=node.span,
        sources=program.sources,
    )


def fit_to_model(
    table: Table,
    input_shape: tuple[int, ...],
    input_name: str,
    outputs: int,
    *,
    span: Span,
    sources: Mapping[str, str],
) -> Table:
    """Match a table to the model: examples reshaped to the input, targets checked.

    Examples take the input's shape when the number of values agrees (digits are 64 values, a
    CNN may read them as 8 x 8 x 1); `span` is where a mismatch is reported. Class labels must
    lie in [0, outputs), or be 0/1 for one output. Regression targets must have `outputs`
    values per example and come back as (N, outputs), lined up with the model's output.
    """
    where = _Where(span, sources, table.span)
    x = _reshape(table, tuple(input_shape), input_name, where)
    if table.task == "regression":
        return replace(table, x=x, y=_regression_targets(table, outputs, where))
    _check_labels(table, outputs, where)
    return replace(table, x=x)


# ------------------------------------------------------------------ checks


def check_dtypes(program: Program, table: Table) -> None:
    """Integer inputs need integer examples (token ids); real examples never become ids.

    Integer examples feed a float input as numbers (pixel values 0..255, say).
    """
    assert program.model is not None
    if table.x.dtype.kind in "iub" or (table.kind == "csv" and _whole(table.x)):
        return  # a CSV has no dtypes: whole numbers in its cells are ids
    for name in program.model.inputs:
        node = program.model.node(name)
        if not is_float_dtype(node.dtype):
            raise SpecError(
                [
                    Diagnostic(
                        E_DTYPE,
                        f"input `{name}` is {node.dtype} but `{table.origin}` holds "
                        f"{table.x.dtype} examples, not integers",
                        node.span,
                        f"store the inputs as integers (`x.astype(np.int32)`), or declare "
                        f"`input {name}: f32{list(node.shape)}`",
                    )
                ],
                program.sources,
            )


def _whole(x: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(x)) and np.all(x == np.round(x)))


def check_ids(program: Program, table: Table) -> None:
    """Every token id must have a row in each layer of ids it feeds (0 <= id < vocab): an id
    past the table reads no row and the loss is nan from the first step."""
    assert program.model is not None
    if not len(table.x):
        return
    columns = dict(zip(program.model.inputs, _input_columns(program, table.x), strict=True))
    for node, bound, fed in id_layers(program.model):
        ids = columns[fed]
        bad = np.flatnonzero(((ids < 0) | (ids >= bound)).reshape(len(ids), -1).any(axis=1))
        if len(bad):
            i = int(bad[0])
            row = ids[i].reshape(-1)
            v = int(row[(row < 0) | (row >= bound)][0])
            raise SpecError(
                [
                    Diagnostic(
                        E_DATA,
                        f"`{table.origin}` holds id {v} at example {table.position(i)}, but "
                        f"`{node.op}` here has rows for ids 0..{bound - 1}",
                        node.span,
                        f"give it a row per id: `{node.op}({int(ids.max()) + 1}, ...)`"
                        if v >= 0
                        else "ids are whole numbers from 0",
                    )
                ],
                program.sources,
            )


def _input_columns(program: Program, x: np.ndarray) -> list[np.ndarray]:
    """Each input's part of the examples (several inputs share one array, in order)."""
    ins = input_sizes(program)
    flat, out, start = x.reshape(len(x), -1), [], 0
    for _, shape in ins:
        size = math.prod(shape)
        out.append(flat[:, start : start + size])
        start += size
    return out


def _check_multi_hot(program: Program, task: str, table: Table) -> None:
    """Multi-hot target rows (several 0/1 labels per example) train a multi-label task only,
    and `top_k` ranks one class per example, which such rows do not have."""
    if table.task != "classification" or table.y.ndim != 2:
        return
    train = program.train
    if task != "multilabel":
        raise SpecError(
            [
                Diagnostic(
                    E_SECTION,
                    f"`{table.origin}` holds multi-hot rows (several yes/no labels per example), "
                    f"but `{train.loss.name}` trains a {task} task: one class per example",
                    train.span_of("loss"),
                    f"train with `binary_cross_entropy` and `dense({table.y.shape[1]})`: one "
                    "yes/no decision per unit",
                )
            ],
            program.sources,
        )
    ranked = [m.name for m in train.metrics if m.name == "top_k"]
    if ranked:
        raise SpecError(
            [
                Diagnostic(
                    E_SECTION,
                    f"`top_k` ranks the one class of each example, but `{table.origin}` holds "
                    "multi-hot rows",
                    train.span_of("metrics"),
                    "drop `top_k`; `accuracy`, `precision`, `recall` and `f1` score each label",
                )
            ],
            program.sources,
        )


def _reshape(table: Table, shape: tuple[int, ...], input_name: str, where: _Where) -> np.ndarray:
    example = tuple(table.x.shape[1:])
    if example == shape:
        return table.x
    n, m = math.prod(example), math.prod(shape)
    if n == m:
        return table.x.reshape((len(table), *shape))
    raise where.spec(
        E_DATA,
        f"`{_name(table)}` examples have shape {fmt_shape(example)} ({n} values) but input "
        f"`{input_name}` has shape {fmt_shape(shape)} ({m} values)",
        f"declare `input {input_name}: f32{list(example)}`, or another shape of {n} values",
    )


def _regression_targets(table: Table, outputs: int, where: _Where) -> np.ndarray:
    width = math.prod(table.y.shape[1:])
    if width != outputs:
        raise where.spec(
            E_DATA,
            f"`{_name(table)}` has {width} target value{'s' * (width != 1)} per example but "
            f"the model outputs {outputs}",
            f"end the model with `dense({width})`",
        )
    return table.y.reshape(len(table), outputs).astype(np.float32)


def _check_labels(table: Table, outputs: int, where: _Where) -> None:
    """Class labels in [0, outputs); one output means a binary model with 0/1 labels; multi-hot
    rows (N, C) need C == outputs (the pipeline allows them only for a multi-label task)."""
    if table.y.ndim == 2:
        if table.y.shape[1] != outputs:
            raise where.spec(
                E_DATA,
                f"`{_name(table)}` has {table.y.shape[1]} yes/no labels per example (multi-hot "
                f"rows) but the model outputs {outputs}",
                f"end the model with `dense({table.y.shape[1]})`",
            )
        return
    bad = np.flatnonzero((table.y < 0) | (table.y >= max(outputs, 2)))
    if len(bad):
        raise label_error(table, int(bad[0]), outputs, where)


def label_error(table: Table, i: int, outputs: int, where: _Where) -> SpecError:
    v, names, pos, top = int(table.y[i]), table.class_names, table.position(i), max(outputs, 2)
    label = f"`{names[v]}` (class {v})" if 0 <= v < len(names) and names[v] != str(v) else f"`{v}`"
    problem = (
        f"is outside the {outputs} classes the model outputs"
        if outputs > 1
        else "is not 0 or 1, as a model with one output needs"
    )
    hint = f"class labels run from 0 to {top - 1}"
    if (table.classes or 0) > top:
        loss = " and train with `cross_entropy`" if outputs == 1 else ""
        k = table.classes
        hint = f"`{_name(table)}` has {k} classes: end the model with `dense({k})`{loss}"
    if table.places is not None and table.text is not None:
        row, line, col, end = (int(p) for p in table.places[pos])
        at = Span(table.origin, line, col, line, max(end, col + 1))
        return where.file(E_DATA, f"label {label} in row {row} {problem}", at, hint, table.text)
    at = _start(table.origin) if table.kind == "npz" else table.span or where.span
    return where.file(E_DATA, f"label {label} at example {pos} {problem}", at, hint)


def _name(table: Table) -> str:
    return table.origin.removeprefix("builtin:")


# ------------------------------------------------------------------ a typed table


def transform_table(
    program: Program,
    schema: tabular.Schema,
    stats: dict[str, np.ndarray],
    targets: preprocess.Targets,
    splits: dict[str, Table],
) -> tuple[dict[str, Table], tuple[int, ...], dict[str, dict[str, tuple[int, tuple[str, ...]]]]]:
    """As `transform`, for the splits of a typed CSV table: every split's cells encoded with
    the fitted schema (runtime/tabular.py: number columns scaled with `stats`, categories and
    words as vocabulary ids, laid out input by input as `bind` says), the targets scaled, ids
    checked, the examples reshaped to the model's input. Also returns one encoded example's
    shape and, per split and column, the cells the vocabularies did not know."""
    slots = table_slots(program, schema)
    out, unseen = {}, {}
    for name, table in splits.items():
        raw = table_cells(table, program.sources)
        out[name], encoded = encode_table(program, schema, slots, stats, targets, table, raw)
        if encoded.unseen:
            unseen[name] = encoded.unseen
    return out, (sum(s.size for s in slots),), unseen


def table_slots(program: Program, schema: tabular.Schema) -> tuple[tabular.Slot, ...]:
    """Which of a typed table's columns feed which model input (`tabular.bind`)."""
    data = program.data
    assert data is not None
    span = data.span_of("columns") if data.columns else data.span_of("source")
    return tabular.bind(schema, table_inputs(program), program.sources, span)


def encode_table(
    program: Program,
    schema: tabular.Schema,
    slots: tuple[tabular.Slot, ...],
    stats: dict[str, np.ndarray],
    targets: preprocess.Targets,
    table: Table,
    raw: tabular.Raw,
) -> tuple[Table, tabular.Encoded]:
    """One split of a typed table, or one streamed batch of it (its cells `raw`), as the
    model reads it, and how it was encoded (the cells the vocabularies did not know)."""
    assert program.data is not None
    encoded = tabular.encode(schema, slots, program.data.normalize, stats, raw, table.index)
    coded = replace(table, x=encoded.x)
    check_ids(program, coded)
    return to_model(program, replace(coded, y=targets.apply(coded.y))), encoded


def table_inputs(program: Program) -> list[tabular.Input]:
    """The model's inputs, as the tabular stage binds columns to them."""
    assert program.model is not None
    nodes = [program.model.node(n) for n in program.model.inputs]
    return [tabular.Input(n.name, not is_float_dtype(n.dtype), n.shape, n.span) for n in nodes]
