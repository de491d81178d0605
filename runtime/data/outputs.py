"""Several outputs: a source read whole for a model with several outputs, each output's
targets from its own array (`npz`, a built-in set's named targets) or columns (`csv`), laid
side by side in one float32 array; `Block`s (runtime/data/table.py) say where each is.

Streamed (at the end), an `npz` or `csv` source opens as `Examples` whose row `i` is the
in-memory reader's row `i` bit for bit: `x` the inputs, `y` the targets side by side, and
`blocks` on the examples. An archive's targets are read whole when it opens (as one output's
are); a CSV's are read with each row and checked there, so a bad label names its row.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
from dnn.compiler.diagnostics import E_DATA, InternalError, Span
from dnn.compiler.registry.core import did_you_mean
from dnn.compiler.registry.data import BUILTIN_DATA
from dnn.compiler.values import Ref

from .arrays import (
    ArrayExamples,
    _Held,
    _Member,
    _npz_labels,
    _npz_members,
    _numbers,
    _read_npz,
    check_inputs,
)
from .builtin import _builtin_arrays
from .csvrows import (
    _NAMES_CAP,
    CsvExamples,
    _Csv,
    _csv_index,
    _CsvIndex,
    _decode,
    _fields,
    _float_or_nan,
    _label_problem,
    _number,
    _one_line,
    _read_csv,
    _values,
)
from .examples import Examples, Opts
from .table import (
    _LABEL_HINT,
    Block,
    Outputs,
    Table,
    _cannot_read,
    _resolve,
    _start,
    _Where,
    listed,
)

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
    y, blocks = _side_by_side(raw, len(x), xk, shown, outputs, where)
    return Table(x, y, "regression", None, (), shown, ref.name, where.span), blocks


def _side_by_side(
    raw: dict[str, np.ndarray], n: int, xk: str, shown: str, outputs: Outputs, where: _Where
) -> tuple[np.ndarray, tuple[Block, ...]]:
    """Each output's targets `raw[name]` (n of them, `n` the examples of array `xk`),
    checked, as float32 columns side by side, and the `Block`s that say where each is."""
    columns, blocks, start = [], [], 0
    for name, task, units in outputs:
        y = raw[name]
        if (1 if y.ndim == 0 else len(y)) != n:
            message = f"array `{xk}` in `{shown}` has {n} examples but `{name}` has {len(y)}"
            hint = "the first axis of every array indexes the examples"
            raise where.file(E_DATA, message, _start(shown), hint)
        col, classes = _output_targets(y, name, task, units, shown, where)
        columns.append(col.reshape(n, -1).astype(np.float32))
        blocks.append(Block(name, task, start, columns[-1].shape[1], classes))
        start += columns[-1].shape[1]
    return np.concatenate(columns, axis=1), tuple(blocks)


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
        col, classes, named = _csv_output_targets(csv, cols, name, task, units)
        columns.append(col.reshape(len(col), -1).astype(np.float32))
        blocks.append(Block(name, task, start, columns[-1].shape[1], classes, named))
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
) -> tuple[np.ndarray, int | None, tuple[str, ...]]:
    """Output `name`'s targets from its columns, checked against its task and width, and a
    class label column's names by index where its labels are names."""
    if task == "regression":
        return csv.columns(cols), None, ()
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
        return values, units, ()
    labels, classes, class_names = csv.labels(cols[0], "classification")
    numbered = class_names == tuple(str(i) for i in range(len(class_names)))
    top = 2 if task == "binary" else units
    bad = np.flatnonzero((labels < 0) | (labels >= top))
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
    return labels, top, () if numbered else tuple(class_names)


def _output_targets(
    y: np.ndarray, name: str, task: str, units: int, shown: str, where: _Where
) -> tuple[np.ndarray, int | None]:
    """One output's targets, checked against its task and width."""
    what = f"array `{name}` in `{shown}`"
    if task == "regression":  # `_numbers` names the file after `what` itself
        values = _numbers(y, f"array `{name}`", shown, where).astype(np.float32)
        values = values.reshape(len(y), -1)
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


# ------------------------------------------------------------------ streamed


class ArrayOutputs(ArrayExamples):
    """An npz archive for a model with several outputs, streamed: rows of its memory-mapped
    `x`, and each output's targets read whole and checked when the source opens (as the
    in-memory reader does: N rows of a few numbers), laid side by side (`blocks`)."""

    def __init__(
        self, x: _Member | _Held, xk: str, y: np.ndarray, blocks: tuple[Block, ...], opts: Opts
    ):
        super().__init__(x, xk, y, (), "regression", opts)
        self.blocks = blocks


def _open_npz_several(ref: Ref, outputs: Outputs, base: Path, opts: Opts) -> Examples:
    shown, xk = _resolve(base, ref.arg("path")), str(ref.arg("x"))
    (x,) = _npz_members(shown, ref.arg("path"), {"x": xk}, opts.where)
    return _npz_several_examples(ref, x, outputs, opts)


def _held_npz_several(ref: Ref, outputs: Outputs, base: Path, opts: Opts) -> Examples:
    """As `_open_npz_several`, `x` read whole (a compressed archive too): the in-memory
    reader under `on_error = skip`."""
    shown, xk = _resolve(base, ref.arg("path")), str(ref.arg("x"))
    (raw,) = _read_npz(shown, ref.arg("path"), {"x": xk}, opts.where)
    return _npz_several_examples(ref, _Held(shown, raw), outputs, opts)


def _npz_several_examples(ref: Ref, x: _Member | _Held, outputs: Outputs, opts: Opts) -> Examples:
    """The examples of input array `x` and the outputs' arrays, read whole and checked."""
    shown, written, where = x.path, ref.arg("path"), opts.where
    xk = str(ref.arg("x"))
    check_inputs(x, xk, where)
    names = {name: name for name, _, _ in outputs}
    raw = dict(zip(names, _read_npz(shown, written, names, where), strict=True))
    y, blocks = _side_by_side(raw, x.shape[0], xk, shown, outputs, where)
    return ArrayOutputs(x, xk, y, blocks, opts)


_UNKNOWN = -2  # a class label a source aligned to the train data's classes does not know


class _Output(NamedTuple):
    """One output's target columns in a CSV, and for a class label column what the whole
    column holds: `numeric` (every label a number), else `names` (sorted), and `classes`."""

    name: str
    task: str
    units: int
    cols: tuple[int, ...]
    top: int = 0  # labels lie in [0, top): 2 for a binary output, else its units
    numeric: bool = True
    names: tuple[str, ...] = ()
    classes: int = 0


class CsvOutputs(CsvExamples):
    """A CSV for a model with several outputs, streamed: each row read by its byte offset
    (the offsets indexed once, as for one output) and parsed as `_csv_outputs` reads the file
    in memory: output `a`'s targets from column `a` (or `a_0` ... `a_D-1`), laid side by side
    (`blocks`), every other column an input. A bad cell or label fails at its row and column,
    or is skipped (`on_error = skip`)."""

    def __init__(self, shown: str, index: _CsvIndex, outs: list[_Output], opts: Opts) -> None:
        Examples.__init__(self, opts)  # not CsvExamples': its one label column is not ours
        self._index, self.typed, self._outs = index, False, outs
        self._names = [v for v, _, _ in index.header]
        taken = {c for o in outs for c in o.cols}
        self._inputs = [k for k in range(len(self._names)) if k not in taken]
        self._li = outs[0].cols[0]  # where `_place` points
        self.origin, self.task, self.shape = shown, "regression", (len(self._inputs),)
        self.dtype = np.dtype(np.float32)
        self.classes, self.class_names = None, ()
        # the cells read as numbers, in one parse: the numeric targets (in the in-memory
        # reader's order: output by output), then the inputs; `_from`: each target column's
        # place among them (a class label's is filled in after)
        numeric = [c for o in outs if o.task == "regression" or len(o.cols) > 1 for c in o.cols]
        self._numeric, self._targets_read = numeric + self._inputs, len(numeric)
        at = {c: k for k, c in enumerate(numeric)}
        self._from = np.array([at.get(c, 0) for o in outs for c in o.cols], np.int64)
        self._lookups = [{n: k for k, n in enumerate(o.names)} for o in outs]
        blocks, start = [], 0
        for o in outs:
            width = len(o.cols)
            classes = None if o.task == "regression" else (o.units if width > 1 else o.top)
            named = () if o.numeric or width > 1 or o.task == "regression" else tuple(o.names)
            blocks.append(Block(o.name, o.task, start, width, classes, named))
            start += width
        self.blocks = tuple(blocks)

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        line, _, text = self._line(i)
        values = _values(text)
        if len(values) != len(self._names):
            raise self._shape_problem(i, line, text, _fields(text))
        row = (i, line, text, values)
        numbers = self._numbers(row, self._numeric)
        y = numbers[self._from]  # every output's targets, side by side
        for o, b, lookup in zip(self._outs, self.blocks, self._lookups, strict=True):
            if o.task == "regression":
                continue
            if len(o.cols) > 1:  # multi-hot: a 0/1 per unit
                self._check_yes_no(row, o, y[b.start : b.start + b.width])
            else:
                y[b.start] = self._class(row, o, lookup)
        return numbers[self._targets_read :], y

    def _numbers(self, row: tuple[int, int, str, list[str]], cols: list[int]) -> np.ndarray:
        """Columns `cols` of a row as float32, parsed as `_Csv.columns` does in memory."""
        i, line, text, values = row
        cells = [values[c] for c in cols]
        try:
            x = np.array(cells, dtype=np.float64)
        except ValueError:  # a cell is no number: NaN marks it for the search below
            x = np.array([_float_or_nan(v) for v in cells], dtype=np.float64)
        if np.isfinite(x).all():
            return x.astype(np.float32)
        c = cols[int(np.flatnonzero(~np.isfinite(x))[0])]
        value, col, end = _fields(text)[c]
        problem = "is not a number" if _number(value) is None else "is not a finite number"
        message = f"value `{value}` in column `{self._names[c]}` {problem}"
        if not value:
            message = f"empty value in column `{self._names[c]}`"
        hint = "inputs must be numbers: fill in the value, or drop the row or the column"
        raise self._bad(i, line, text, col, end, message, hint)

    def _check_yes_no(
        self, row: tuple[int, int, str, list[str]], o: _Output, y: np.ndarray
    ) -> None:
        """Multi-hot targets are 0 or 1, as `_csv_output_targets` checks them."""
        bad = np.flatnonzero((y != 0) & (y != 1))
        if len(bad):
            i, line, text, _ = row
            c = o.cols[int(bad[0])]
            value, col, end = _fields(text)[c]
            message = f"value `{value}` in column `{self._names[c]}` is not 0 or 1"
            hint = f"output `{o.name}` reads one yes/no label per unit from these columns"
            raise self._bad(i, line, text, col, end, message, hint)

    def _class(
        self, row: tuple[int, int, str, list[str]], o: _Output, lookup: dict[str, int]
    ) -> int:
        """Output `o`'s class label in a row, as `_Csv.labels` reads it in memory and
        `_csv_output_targets` checks it."""
        i, line, text, values = row
        value = values[o.cols[0]]
        number = _number(value)
        problem = _label_problem(value, number, "classification", o.numeric)
        label = -1 if problem else self._label(o, lookup, value, number)
        if 0 <= label < o.top:
            return label
        _, col, end = _fields(text)[o.cols[0]]  # only now: splitting a line is costly
        if label == _UNKNOWN:  # aligned to the train source's classes, which lack it
            message = f"label `{value}` of output `{o.name}` in row {i + 1} is not a class of the train data"
            raise self._bad(i, line, text, col, end, message, f"its classes: {listed(o.names)}")
        if problem:
            hint = "give every row a label" if not value else _LABEL_HINT
            shown = f" `{value}`" if value else ""
            message = f"label{shown} in row {i + 1} {problem}"
            raise self._bad(i, line, text, col, end, message, hint)
        shown = f"`{value}`" if value == str(label) else f"`{value}` (class {label})"
        message = f"label {shown} in row {i + 1} is outside output `{o.name}`'s {o.top} classes"
        hint = f"class labels run from 0 to {o.top - 1}"
        if o.classes > o.top:
            hint = f"column `{self._names[o.cols[0]]}` has {o.classes} classes: end "
            hint += f"`{o.name}` with `dense({o.classes})`"
        raise self._bad(i, line, text, col, end, message, hint)

    @staticmethod
    def _label(o: _Output, lookup: dict[str, int], value: str, number: float | None) -> int:
        """A class label's index: the number itself, or the name's place among the names
        (`_UNKNOWN` where a source aligned to the train data's classes meets another)."""
        return int(number) if o.numeric and number is not None else lookup.get(value, _UNKNOWN)

    def align(self, train: tuple[Block, ...]) -> None:
        """Number each class label column by the train source's classes (`train`, its
        blocks): a separate `val` or `test` file's own names may be fewer, or another order."""
        outs, lookups = list(self._outs), list(self._lookups)
        for k, (o, b) in enumerate(zip(outs, train, strict=True)):
            if o.task == "regression" or len(o.cols) > 1:
                continue
            mine = () if o.numeric else tuple(o.names)
            if mine == b.names:
                continue
            names = b.names or tuple(str(i) for i in range(o.top))  # whole numbers: themselves
            outs[k] = o._replace(numeric=False, names=names, classes=len(names))
            lookups[k] = {n: i for i, n in enumerate(names)}
        self._outs, self._lookups = outs, lookups
        self.blocks = tuple(
            replace(b, names=t.names) if b.task != "regression" and b.width == 1 else b
            for b, t in zip(self.blocks, train, strict=True)
        )


def _open_csv_several(ref: Ref, outputs: Outputs, base: Path, opts: Opts) -> Examples:
    """A CSV's header read first (which columns are whose targets, with the in-memory
    reader's errors), then its rows indexed, keyed by the first class label column (the
    index pass counts its classes too; any other one is counted in a pass of its own)."""
    shown, where = _resolve(base, ref.arg("path")), opts.where
    header = _csv_header(shown, where)
    line, fields = header.header
    for k, (name, col, end) in enumerate(fields):
        if name in header.names[:k]:
            message = f"column `{name}` appears twice in the header"
            raise header.error(message, line, col, end, "give every column its own name")
    cols = [_csv_output_columns(header, name, task, units) for name, task, units in outputs]
    if not [c for c in range(len(header.names)) if all(c not in o for o in cols)]:
        line, (_, col, end) = header.header[0], header.header[1][0]
        message = f"`{shown}` has no input columns besides the outputs' targets"
        raise header.error(message, line, col, end, "add a column for each input")
    labels = [
        c[0]
        for c, (_, task, _) in zip(cols, outputs, strict=True)
        if task != "regression" and len(c) == 1
    ]
    key = header.names[labels[0] if labels else cols[0][0]]
    index = _csv_index(shown, key, where, opts.cache_dir)
    if not index.count:
        line = index.header_line
        at = Span(shown, line, 1, line, len(index.header_text) + 1)
        text = _one_line(line, index.header_text)
        hint = "add one row per example below the header"
        raise where.file(E_DATA, f"`{shown}` has a header but no rows", at, hint, text)
    counted = _counted(shown, labels[1:], header.names, opts.cache_dir) if len(labels) > 1 else {}
    if labels:
        counted[labels[0]] = (index.numeric, index.top, index.names)
    outs = []
    for c, (name, task, units) in zip(cols, outputs, strict=True):
        out = _Output(name, task, units, tuple(c))
        if c[0] in counted and len(c) == 1:
            out = _classes_of(out, *counted[c[0]], header.names[c[0]], shown, where)
        outs.append(out)
    return CsvOutputs(shown, index, outs, opts)


def _classes_of(
    out: _Output,
    numeric: bool,
    top: int,
    names: list[str] | None,
    column: str,
    shown: str,
    where: _Where,
) -> _Output:
    """A class label column's classes, as `_Csv.labels` finds them in memory: whole numbers
    are class indices as given, any other label makes every label a name (sorted)."""
    bound = 2 if out.task == "binary" else out.units
    if numeric:
        return out._replace(top=bound, classes=max(top + 1, 0))
    if names is None:
        message = f"column `{column}` of `{shown}` holds over {_NAMES_CAP} class names"
        raise where.spec(E_DATA, message, "use a regression loss for real-valued targets")
    return out._replace(top=bound, numeric=False, names=tuple(names), classes=len(names))


def _csv_header(shown: str, where: _Where) -> _Csv:
    """A CSV's header row alone (its first line that is not blank), as `_read_csv` reads it."""
    try:
        with open(shown, "rb") as f:
            for n, raw in enumerate(f, 1):
                if raw.strip():
                    text = _decode(raw.removeprefix(b"\xef\xbb\xbf"), shown, n, where)
                    return _Csv(shown, _one_line(n, text), (n, _fields(text)), [], where)
    except OSError as e:
        raise _cannot_read(shown, e, where) from None
    hint = "write a header row of column names, then one row per example"
    raise where.file(E_DATA, f"`{shown}` is empty: no header row", _start(shown), hint)


def _counted(
    shown: str, cols: list[int], names: list[str], cache_dir: Path | None
) -> dict[int, tuple[bool, int, list[str] | None]]:
    """`_count_labels` of columns `cols`, kept beside the file (`.<name>.dnn-labels`, else in
    `cache_dir`, the run folder) for the file as it is now (its size and mtime), as its index
    is: a later run does not read the file again to count them."""
    stat = os.stat(shown)
    stamp = {"version": 1, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    file = f".{Path(shown).name}.dnn-labels"
    places = [Path(shown).with_name(file)] + ([Path(cache_dir) / file] if cache_dir else [])
    for place in places:
        try:
            found = json.loads(place.read_text())
            if all(found[k] == v for k, v in stamp.items()):
                return {c: tuple(found["columns"][names[c]]) for c in cols}  # type: ignore[misc]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    counted = _count_labels(shown, cols)
    record = {**stamp, "columns": {names[c]: list(v) for c, v in counted.items()}}
    for place in places:
        tmp = place.with_name(f"{place.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(record))
            os.replace(tmp, place)
            break
        except OSError:
            tmp.unlink(missing_ok=True)
    return counted


def _count_labels(shown: str, cols: list[int]) -> dict[int, tuple[bool, int, list[str] | None]]:
    """For each of the columns `cols`: whether every non-empty cell is a number, the largest
    whole number, and the distinct values (None: over `_NAMES_CAP`), as the index counts its
    label column; in one pass over the file."""
    numeric, top = dict.fromkeys(cols, True), dict.fromkeys(cols, -1)
    names: dict[int, set[str] | None] = {c: set() for c in cols}
    with open(shown, "rb") as f:
        rows = (r for r in f if r.strip())
        next(rows, None)  # the header
        for raw in rows:
            values = _values(raw.decode("utf-8", "replace").rstrip("\r\n"))
            for c in cols:
                value = values[c] if c < len(values) else ""
                if not value:
                    continue
                number = _number(value)
                if number is None:
                    numeric[c] = False
                elif math.isfinite(number) and number.is_integer():
                    top[c] = max(top[c], int(number))
                found = names[c]
                if found is not None:
                    found.add(value)
                    names[c] = found if len(found) <= _NAMES_CAP else None
    return {c: (numeric[c], top[c], None if names[c] is None else sorted(names[c])) for c in cols}
