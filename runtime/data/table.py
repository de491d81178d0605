"""The table both modes share: `Table`, examples in memory (a source read whole, a split, a
streamed source's first rows); `Block`, where each output's targets sit in a several-output
table; and `_Where` with the helpers every source's errors go through.

Bad data never ends in a traceback: every mistake is a `SpecError` rendered like a compiler
error. A problem with the reference itself (no such file, column or array; examples of the
wrong shape) points at the spec. A problem inside a file points into it: a CSV's line and
field, shown with a caret, or an archive or image as a whole (line 1, column 1), with a note
back to the spec field that names the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import E_FILE, Diagnostic, InternalError, Span, SpecError
from dnn.compiler.registry.core import did_you_mean

TASKS = ("classification", "regression")
_PATH_HINT = "the path is relative to the folder of the spec file"
_LABEL_HINT = (
    "class labels are whole numbers from 0, or names; use a regression loss such as `mse` "
    "for real-valued targets"
)

Field = tuple[str, int, int]  # a CSV field: value, first column, end column (1-based, exclusive)
Row = tuple[int, list[Field]]  # a CSV line: its number in the file and its fields


@dataclass(frozen=True, eq=False)
class Table:
    """Examples in memory, one per row: inputs `x` (N, *shape) float32 (int32 for integer
    sources: token ids) and targets `y`.

    `y` holds int32 class indices (N,) for classification, float32 (N,) or (N, D) values for
    regression. `origin` is the file as messages name it, or `builtin:NAME`. The remaining
    fields let messages point at an example: `span` is the spec field that named the data,
    `index` each example's position in the source (None: 0..N-1), and for a CSV `places`
    holds (row, line, col, end_col) of every source row's label and `text` the file's text.
    """

    x: np.ndarray
    y: np.ndarray
    task: str
    classes: int | None
    class_names: tuple[str, ...]
    origin: str
    kind: str = "array"  # builtin | csv | npz | images | array (made in code) | table
    span: Span | None = field(default=None, repr=False)
    index: np.ndarray | None = field(default=None, repr=False)
    places: np.ndarray | None = field(default=None, repr=False)
    text: str | None = field(default=None, repr=False)
    # a typed table (kind "table"): `x` holds the input cells as strings, `columns` their
    # names, `cells` the CSV's rows (line, fields) and the input columns' field indices, for
    # messages that point at a cell
    columns: tuple[str, ...] = field(default=(), repr=False)
    cells: tuple[list[Row], tuple[int, ...]] | None = field(default=None, repr=False)
    # `data.on_error = skip`: the source's examples left out as bad, each (its position in
    # the source, its `Skipped` record); the source held len(x) + len(skipped) examples, and
    # `index` says where the kept ones sat
    skipped: tuple[tuple[int, Any], ...] = field(default=(), repr=False)
    # the streamed reader (`Examples`) a table read whole under `on_error = skip` came from:
    # a typed table's (input cells as strings) names a bad cell at its place in the file
    reader: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y) or self.task not in TASKS:
            raise InternalError(
                f"table from {self.origin}: {len(self.x)} inputs, {len(self.y)} targets, "
                f"task {self.task!r}"
            )

    def __len__(self) -> int:
        return len(self.x)

    def count(self) -> int:
        """How many examples its source held, the skipped ones too (`data.on_error = skip`)."""
        return len(self.x) + len(self.skipped)

    def position(self, i: int) -> int:
        """Where example `i` sits in its source (0-based), whatever split it is in."""
        return int(i if self.index is None else self.index[i])


Outputs = tuple[tuple[str, str, int], ...]  # a model's outputs: (name, task, units) in order


@dataclass(frozen=True)
class Block:
    """Where one output's targets sit in a several-output table's target columns."""

    name: str
    task: str  # core.TASKS
    start: int
    width: int  # 1: a class label or one value; C: multi-hot rows or C real values
    classes: int | None
    names: tuple[str, ...] = ()  # a class label column's names by index (): whole numbers


# ----------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class _Where:
    """Where a source's errors point: `span` in the spec, or into a data file.

    `origin` is the spec field that names the data; errors elsewhere get a note pointing at it.
    """

    span: Span
    sources: Mapping[str, str]
    origin: Span | None = None

    def spec(self, code: str, message: str, hint: str | None = None) -> SpecError:
        """A problem with the reference itself, at `span`."""
        return self.file(code, message, self.span, hint)

    def file(
        self, code: str, message: str, at: Span, hint: str | None = None, text: str | None = None
    ) -> SpecError:
        """A problem at `at`; `text` is the data file's text, for the excerpt under the message."""
        notes: tuple[tuple[str, Span], ...] = ()
        if self.origin is not None and self.origin != at:
            notes = (("the data named here", self.origin),)
        sources = dict(self.sources) | ({at.path: text} if text is not None else {})
        return SpecError([Diagnostic(code, message, at, hint, notes=notes)], sources)


def _start(path: str) -> Span:
    """A whole file: line 1, column 1 (archives and images have no lines to show)."""
    return Span(path, 1, 1, 1, 1)


def _resolve(base_dir: Path, written: str) -> str:
    """The path a spec names, relative to its folder; shown from the working folder if inside."""
    path = Path(base_dir) / written
    try:  # absolute, not resolved: a symbolic link keeps the name the spec gave it
        return str(Path(os.path.abspath(path)).relative_to(os.path.abspath(os.getcwd())))
    except ValueError:
        return str(path)


def _cannot_read(shown: str, e: OSError, where: _Where) -> SpecError:
    hint = _PATH_HINT if where.origin is not None else None  # `dnn predict` paths are the user's
    return where.spec(E_FILE, f"cannot read `{shown}`: {e.strerror or e}", hint)


def _choose(name: str, names: list[str], what: str, fix: str) -> str:
    """Hint for an unknown column or array: did-you-mean, else the choices and `fix` (a
    template whose `{}` takes the first choice)."""
    close = did_you_mean(name, names)
    if close or not names:
        return close or f"the file has no {what}"
    return f"{what}: {listed(names)}; write {fix.format(names[0])}"


def listed(names: Any) -> str:
    """The first eight names, each in backquotes, for a hint (`, ...` where there are more)."""
    names = list(names)
    return ", ".join(f"`{n}`" for n in names[:8]) + (", ..." if len(names) > 8 else "")
