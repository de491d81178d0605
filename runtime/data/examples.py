"""`Examples`, the protocol every streamed source implements, and `Skipped`.

Part of the sources stage (runtime/data/sources.py, which says what every source gives).
"""

from __future__ import annotations

import math
import operator
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
from dnn.compiler.diagnostics import E_DATA, InternalError, Span

from .table import Table, _start, _Where

T = TypeVar("T")
ON_ERROR = ("fail", "skip")


class Skipped(NamedTuple):
    """An example left out under `on_error = skip`: its file, where in it, and why."""

    origin: str
    where: str  # "row 17", "offset 4096", "cat/3.png", "record 5 of part-00001.array_record"
    reason: str

    def order(self) -> tuple[str, list[Any]]:
        """A fixed order to list skipped examples in, whichever reading thread met them
        first: by file, then by `where` with its numbers compared as numbers (row 9, row 10)."""
        parts = re.split(r"(\d+)", self.where)
        return self.origin, [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts]


class _Bad(Exception):
    """One example cannot be read: its place (`Skipped.where`) and the diagnostic's parts."""

    def __init__(
        self, where: str, message: str, at: Span, hint: str, text: str | None = None, code=E_DATA
    ):
        super().__init__(message)
        self.where, self.message, self.at, self.hint, self.text, self.code = (
            where,
            message,
            at,
            hint,
            text,
            code,
        )


Item = tuple[np.ndarray, np.ndarray] | Skipped


class Opts(NamedTuple):
    """How a source opens: where its errors point, `on_error`, the model's `outputs` (class
    labels are checked against them when given), a folder for a CSV's index, and `cells`: a
    CSV's input cells as strings (a typed table, runtime/tabular.py)."""

    where: _Where
    on_error: str = "fail"
    outputs: int | None = None
    cache_dir: Path | None = None
    cells: bool | None = None  # None: as the CSV's first rows say


class Examples:
    """One source's examples, random access (Grain's `RandomAccessDataSource` protocol).

    `origin` names the file or folder as messages do; `shape` and `dtype` are one raw example's
    (before `normalize`); `task`, `classes`, `class_names` as a `Table` has them.
    """

    origin: str
    kind: str = "array"  # the source word (`npz`, `csv`, ...), as a `Table`'s kind
    cacheable = True  # `data.cache` keeps its decoded examples (not a memory-mapped source's)
    shape: tuple[int, ...]
    dtype: np.dtype
    task: str
    classes: int | None
    class_names: tuple[str, ...]

    def __init__(self, opts: Opts) -> None:
        if opts.on_error not in ON_ERROR:
            raise InternalError(f"on_error {opts.on_error!r}")
        self._where, self._on_error, self._outputs = opts.where, opts.on_error, opts.outputs
        self._open_lock = threading.Lock()
        self._cache: Any = None  # runtime/data/cache.py, where `data.cache = true`

    def __len__(self) -> int:
        raise NotImplementedError

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _load(self, i: int) -> tuple[Any, np.ndarray]:
        """Example `i` as `data.cache` stores it: `_finish` makes it what `_read` gives."""
        return self._read(i)

    def _finish(self, x: np.ndarray) -> np.ndarray:
        return x

    # The dtype `_load` gives where `_finish` converts it (images: uint8 pixels, a quarter of
    # the float32 bytes): a batch is then read as stored, in a Grain worker process, and
    # finished whole where it is cut (`finish_batch`); None: read as `_read` gives it.
    raw_dtype: np.dtype | None = None

    def finish_batch(self, x: np.ndarray) -> np.ndarray:
        """A batch read as `_load` gives each example, as `_finish` makes each one."""
        return np.stack([self._finish(r) for r in x]) if len(x) else x

    def files(self) -> list[str]:
        """The files the examples are read from (a cache is of them as they are now)."""
        return [self.origin]

    def _place(self, i: int) -> tuple[str, Span, str | None]:
        """Where example `i` is: for `Skipped.where`, a span, the excerpt's text (or None)."""
        return f"example {i}", _start(self.origin), None

    def __getitem__(self, i: Any) -> Item:
        i = operator.index(i)
        if not 0 <= i < len(self):
            raise IndexError(f"example {i} of {len(self)} in {self.origin}")
        try:
            x, y = self._read(i) if self._cache is None else self._cache.read(self, i)
            self._check_label(i, y)
        except _Bad as bad:
            return self._failed(bad)
        return x, y

    def raw(self, i: int) -> Item:
        """Example `i` as `_load` gives it (and `data.cache` stores it): what `_finish` takes."""
        if not 0 <= i < len(self):
            raise IndexError(f"example {i} of {len(self)} in {self.origin}")
        try:
            x, y = self._load(i) if self._cache is None else self._cache.read(self, i, False)
            self._check_label(i, y)
        except _Bad as bad:
            return self._failed(bad)
        return x, y

    def _getitems(self, rows: Sequence[int]) -> list[Item]:
        """The examples `rows`, as `[self[i] for i in rows]` (sources override it to batch)."""
        return [self[i] for i in rows]

    def nbytes(self) -> int:
        """The decoded examples' bytes if all were in memory."""
        return len(self) * math.prod(self.shape) * np.dtype(self.dtype).itemsize

    def __repr__(self) -> str:  # Grain's checkpoints name the source by it
        return f"{type(self).__name__}({self.origin!r}, {len(self)} examples)"

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for Grain's workers: open files (attributes `_open_*`) stay behind."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_open_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open_lock = threading.Lock()

    def _opened(self, name: str, make: Callable[[], T]) -> T:
        """The handle `name` (an `_open_*` attribute) of this process, made on first use under
        a lock: Grain reads examples from several threads of a process at once."""
        found = self.__dict__.get(name)
        if found is None:
            with self._open_lock:
                found = self.__dict__.get(name)
                if found is None:
                    found = self.__dict__[name] = make()
        return found

    def _failed(self, bad: _Bad) -> Skipped:
        if self._on_error == "skip":
            return Skipped(self.origin, bad.where, bad.message)
        raise self._where.file(bad.code, bad.message, bad.at, bad.hint, bad.text)

    def _check_label(self, i: int, y: np.ndarray) -> None:
        """A class label met while reading must lie among the classes (of the source, and of
        the model's `outputs` when given: [0, outputs), or 0/1 for one output), as
        `transforms.label_error` words it in memory."""
        if self.task != "classification" or np.ndim(y) != 0:
            return
        found = label_outside(int(y), self.classes, self.origin, self._outputs)
        if found is not None:
            where, at, text = self._place(i)
            problem, hint = found
            raise _Bad(where, f"label `{int(y)}` at {where} {problem}", at, hint, text)


def label_outside(
    v: int, classes: int | None, origin: str, outputs: int | None
) -> tuple[str, str] | None:
    """What is wrong with class label `v` of a source of `classes` classes (None: not known)
    for a model of `outputs` units (None: not checked), and the hint; None where it fits."""
    tops = []
    if classes is not None:
        tops.append((classes, f"the {classes} classes of `{origin}`"))
    one = outputs == 1
    if outputs is not None:
        top = max(outputs, 2)
        what = "0 or 1, as a model with one output needs" if one else ""
        tops.append((top, what or f"the {top} classes the model outputs"))
    for top, what in tops:
        if not 0 <= v < top:
            hint = f"class labels run from 0 to {top - 1}"
            if (classes or 0) > top:
                k, loss = classes, " and train with `cross_entropy`" if one else ""
                hint = f"`{origin}` has {k} classes: end the model with `dense({k})`{loss}"
            problem = f"is not {what}" if what.startswith("0 or 1") else f"is outside {what}"
            return problem, hint
    return None


def table(examples: Examples) -> tuple[Table, list[Skipped]]:
    """Every example in memory, as the in-memory loader's `Table`: the skipped ones left
    out, listed, and kept with their positions on the table (`Table.skipped`)."""
    from .batches import read_rows, stack  # the batches stage reads rows the same way

    parts, skipped = [], []
    for start in range(0, len(examples), 4096):
        rows = np.arange(start, min(start + 4096, len(examples)))
        items = read_rows(examples, rows)
        skipped += [(int(r), i) for r, i in zip(rows, items, strict=True) if isinstance(i, Skipped)]
        parts.append(stack(items, examples))
    read = [p for p in parts if len(p[0])] or parts[:1] or [stack([], examples)]
    x, y, rows = (np.concatenate([p[k] for p in read]) for k in range(3))
    t = Table(x, y, examples.task, examples.classes, examples.class_names, examples.origin)
    return replace(t, index=rows if skipped else None, skipped=tuple(skipped)), [
        s for _, s in skipped
    ]
