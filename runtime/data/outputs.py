"""Several outputs: a source read whole for a model with several outputs, each output's
targets from its own array (`npz`, a built-in set's named targets) or columns (`csv`), laid
side by side in one float32 array; `Block`s (runtime/data/table.py) say where each is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from dnn.compiler.diagnostics import E_DATA, InternalError
from dnn.compiler.registry.core import did_you_mean
from dnn.compiler.registry.data import BUILTIN_DATA
from dnn.compiler.values import Ref

from .arrays import _npz_labels, _numbers, _read_npz
from .builtin import _builtin_arrays
from .csvrows import _Csv, _read_csv
from .table import Block, Outputs, Table, _resolve, _start, _Where

# The targets of built-in sets with several (BUILTIN_DATA's `targets`), from their labels.
_BUILTIN_TARGETS: dict[str, Callable[[np.ndarray], dict[str, np.ndarray]]] = {
    "digits_multi": lambda y: {"digit": y, "odd": y % 2},
}


def _builtin_outputs(ref: Ref, xk: str) -> tuple[str, dict[str, np.ndarray]]:
    name = str(ref.arg("name"))
    x, y, _ = _builtin_arrays(name)
    x = np.asarray(x, np.float32).reshape(len(x), *BUILTIN_DATA[name]["shape"])
    return f"builtin:{name}", {xk: x, **_BUILTIN_TARGETS[name](np.asarray(y))}


def _builtin_several(
    ref: Ref, outputs: Outputs, base_dir: Path, where: _Where
) -> tuple[Table, tuple[Block, ...]]:
    """A built-in set with named targets (`_BUILTIN_TARGETS`) for a model with several outputs."""
    if str(ref.arg("name")) not in _BUILTIN_TARGETS:
        raise InternalError(f"several outputs from `{ref.name}` (check refuses it)")
    shown, arrays = _builtin_outputs(ref, "x")
    raw = {"x": arrays["x"], **{name: arrays[name] for name, _, _ in outputs}}
    return _array_outputs(ref, raw, "x", shown, outputs, where)


def _npz_several(
    ref: Ref, outputs: Outputs, base_dir: Path, where: _Where
) -> tuple[Table, tuple[Block, ...]]:
    """An npz archive's `x` and one array per output, named after it."""
    shown = _resolve(base_dir, ref.arg("path"))
    keys = {"x": str(ref.arg("x")), **{name: name for name, _, _ in outputs}}
    raw = dict(zip(keys, _read_npz(shown, ref.arg("path"), keys, where), strict=True))
    return _array_outputs(ref, raw, str(ref.arg("x")), shown, outputs, where)


def _array_outputs(
    ref: Ref, raw: dict[str, np.ndarray], xk: str, shown: str, outputs: Outputs, where: _Where
) -> tuple[Table, tuple[Block, ...]]:
    """The examples `raw["x"]` (array `xk` of `shown`) and each output's targets `raw[name]`,
    laid side by side."""
    x = _numbers(raw["x"], f"array `{xk}`", shown, where)
    columns, blocks, start = [], [], 0
    for name, task, units in outputs:
        y = raw[name]
        if (1 if y.ndim == 0 else len(y)) != len(x):
            message = f"array `{xk}` in `{shown}` has {len(x)} examples but `{name}` has {len(y)}"
            hint = "the first axis of every array indexes the examples"
            raise where.file(E_DATA, message, _start(shown), hint)
        col, classes = _output_targets(y, name, task, units, shown, where)
        columns.append(col.reshape(len(x), -1).astype(np.float32))
        blocks.append(Block(name, task, start, columns[-1].shape[1], classes))
        start += columns[-1].shape[1]
    y = np.concatenate(columns, axis=1)
    return Table(x, y, "regression", None, (), shown, ref.name, where.span), tuple(blocks)


def _csv_outputs(
    ref: Ref, outputs: Outputs, base_dir: Path, where: _Where
) -> tuple[Table, tuple[Block, ...]]:
    """A CSV file for a model with several outputs. Output `a` reads column `a` (a class label,
    a name or a whole number, or one real value), or, for several values per example (a
    regression output of D units, multi-hot rows of a multi-label one), columns `a_0` ... `a_D-1`.
    Every other column is an input, in file order."""
    shown = _resolve(base_dir, ref.arg("path"))
    csv = _read_csv(shown, where)
    names = csv.names
    columns, blocks, taken, start = [], [], set(), 0
    for name, task, units in outputs:
        cols = _csv_output_columns(csv, name, task, units)
        taken.update(cols)
        col, classes = _csv_output_targets(csv, cols, name, task, units)
        columns.append(col.reshape(len(col), -1).astype(np.float32))
        blocks.append(Block(name, task, start, columns[-1].shape[1], classes))
        start += columns[-1].shape[1]
    inputs = [i for i in range(len(names)) if i not in taken]
    if not inputs:
        line, (_, col, end) = csv.header[0], csv.header[1][0]
        message = f"`{shown}` has no input columns besides the outputs' targets"
        raise csv.error(message, line, col, end, "add a column for each input")
    x, y = csv.columns(inputs), np.concatenate(columns, axis=1)
    return Table(x, y, "regression", None, (), shown, "csv", where.span), tuple(blocks)


def _csv_output_columns(csv: _Csv, name: str, task: str, units: int) -> list[int]:
    """The columns holding output `name`'s targets: `name`, or `name_0` ... `name_<units-1>`."""
    names = csv.names
    several = [f"{name}_{i}" for i in range(units)]
    if name in names and (units == 1 or task != "regression"):
        return [names.index(name)]
    if units > 1 and task in ("regression", "multilabel") and all(n in names for n in several):
        return [names.index(n) for n in several]
    if name in names:  # one column for a regression output of several units
        line, (_, col, end) = csv.header[0], csv.header[1][names.index(name)]
        message = (
            f"column `{name}` holds one value per example, but output `{name}` has {units} units"
        )
        hint = f"name its {units} columns `{several[0]}` ... `{several[-1]}`, or end `{name}` "
        hint += "with `dense(1)`"
        raise csv.error(message, line, col, end, hint)
    wanted = f"`{name}`"
    if units > 1 and task in ("regression", "multilabel"):
        wanted += f" (or `{several[0]}` ... `{several[-1]}`)"
    message = f"`{csv.shown}` has no column {wanted} for output `{name}`"
    hint = did_you_mean(name, names) or (
        "a model with several outputs reads each one's targets from the column named after it"
    )
    line, (_, col, end) = csv.header[0], csv.header[1][0]
    raise csv.error(message, line, col, end, hint)


def _csv_output_targets(
    csv: _Csv, cols: list[int], name: str, task: str, units: int
) -> tuple[np.ndarray, int | None]:
    """Output `name`'s targets from its columns, checked against its task and width."""
    if task == "regression":
        return csv.columns(cols), None
    if len(cols) > 1:  # multi-hot rows: a 0/1 per unit
        values = csv.columns(cols)
        bad = np.argwhere((values != 0) & (values != 1))
        if len(bad):
            r, c = (int(i) for i in bad[0])
            line, fields = csv.rows[r]
            value, col, end = fields[cols[c]]
            message = f"value `{value}` in column `{csv.names[cols[c]]}` is not 0 or 1"
            hint = f"output `{name}` reads one yes/no label per unit from these columns"
            raise csv.error(message, line, col, end, hint)
        return values, units
    labels, classes, class_names = csv.labels(cols[0], "classification")
    top = 2 if task == "binary" else units
    bad = np.flatnonzero(labels >= top)
    if len(bad):
        k = int(bad[0])
        line, fields = csv.rows[k]
        value, col, end = fields[cols[0]]
        shown = f"`{value}`" if value == str(labels[k]) else f"`{value}` (class {labels[k]})"
        message = f"label {shown} in row {k + 1} is outside output `{name}`'s {top} classes"
        hint = f"class labels run from 0 to {top - 1}"
        if (classes or 0) > top:
            hint = f"column `{csv.names[cols[0]]}` has {classes} classes: end `{name}` with "
            hint += f"`dense({classes})`"
        raise csv.error(message, line, col, end, hint)
    return labels, top


def _output_targets(
    y: np.ndarray, name: str, task: str, units: int, shown: str, where: _Where
) -> tuple[np.ndarray, int | None]:
    """One output's targets, checked against its task and width."""
    what = f"array `{name}` in `{shown}`"
    if task == "regression":
        values = _numbers(y, what, shown, where).astype(np.float32).reshape(len(y), -1)
        if values.shape[1] != units:
            message = (
                f"{what} has {values.shape[1]} values per example but output `{name}` has {units}"
            )
            raise where.file(
                E_DATA, message, _start(shown), f"end `{name}` with `dense({values.shape[1]})`"
            )
        return values, None
    labels, _ = _npz_labels(y, name, shown, where)
    top = 2 if task == "binary" else units
    if labels.ndim == 2 and (task != "multilabel" or labels.shape[1] != units):
        message = f"{what} holds multi-hot rows of {labels.shape[1]}, but output `{name}` is {task}"
        raise where.file(E_DATA, message, _start(shown), "store one class label per example")
    bad = np.flatnonzero((labels < 0) | (labels >= top)) if labels.ndim == 1 else []
    if len(bad):
        i = int(bad[0])
        message = (
            f"{what} holds {labels[i]} at example {i}, outside output `{name}`'s {top} classes"
        )
        raise where.file(E_DATA, message, _start(shown), f"class labels run from 0 to {top - 1}")
    return labels, top
