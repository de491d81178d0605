"""The `csv` source streamed: rows found by their byte offsets, indexed once and cached.

Part of the sources stage (runtime/data/sources.py, which says what every source gives).
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import E_DATA, E_FILE, Span
from dnn.compiler.values import Ref

from .. import datasets
from .arrays import zip_member
from .examples import Examples, Opts, _Bad
from .table import _LABEL_HINT, Field, _cannot_read, _choose, _resolve, _start, _Where

_INDEX_VERSION = 3
_ROWS = ("starts", "jump_rows", "jump_lines")  # an index's arrays (`_CsvIndex`)
Rows = tuple[np.ndarray, np.ndarray, np.ndarray]
_NAMES_CAP = 100_000  # distinct labels kept while indexing a CSV (class names)


@dataclass(frozen=True)
class _CsvIndex:
    """A CSV's rows by byte offset, and what its label column holds.

    `rows` (in a cache file, mapped, or in memory) holds int64 arrays: `starts` (N + 1), where
    each row begins and, last, where the file ends (row i is the first line of bytes
    starts[i]:starts[i + 1], blank lines after it included), and the line numbers as `jumps`
    (rows, lines): row r's line is lines[k] + r - rows[k] for the last k with rows[k] <= r, one
    pair wherever blank lines break the count (usually only the first row). 8 bytes a row.
    """

    header: list[Field]
    header_line: int
    header_text: str
    file: str | None  # the cache file holding `rows`, or None: `rows` below
    rows: Rows | None
    count: int
    numeric: bool  # every non-empty label is a number
    top: int  # the largest whole-number label, -1 if none
    names: list[str] | None  # the distinct labels, sorted; None: more than _NAMES_CAP


def _index_path(shown: str) -> Path:
    p = Path(shown)
    return p.with_name(f".{p.name}.dnn-index")


def _csv_index(shown: str, label: str, where: _Where, cache_dir: Path | None) -> _CsvIndex:
    """The cached index of a CSV, or a new one (one pass over the file), saved beside the
    file, else in `cache_dir` (the run folder), else kept in memory."""
    try:
        stat = os.stat(shown)
    except OSError as e:
        raise _cannot_read(shown, e, where) from None
    stamp = {"version": _INDEX_VERSION, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    places = [_index_path(shown)]
    if cache_dir is not None:
        places.append(Path(cache_dir) / _index_path(shown).name)
    for place in places:
        found = _read_index(place, stamp, label)
        if found is not None:
            return found
    rows, meta = _build_index(shown, label, where)
    for place in places:
        if _write_index(place, rows, {**meta, **stamp, "label": label}):
            found = _read_index(place, stamp, label)
            if found is not None:
                return found
    return _index_of(meta, None, rows)


def _index_of(meta: dict[str, Any], file: str | None, rows: Rows | None) -> _CsvIndex:
    header = [tuple(f) for f in meta["header"]]
    count = int(meta["count"])
    return _CsvIndex(
        header, meta["header_line"], meta["header_text"], file, rows, count,  # type: ignore[arg-type]
        meta["numeric"], meta["top"], meta["names"],
    )  # fmt: skip


def _read_index(place: Path, stamp: dict[str, int], label: str) -> _CsvIndex | None:
    """A cache file's index, if it is one of this file as it is now (size, mtime) for `label`."""
    if not place.is_file():
        return None
    try:
        with np.load(place, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
        if any(meta.get(k) != v for k, v in stamp.items()) or meta.get("label") != label:
            return None
        return _index_of(meta, str(place), None)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _write_index(place: Path, rows: Rows, meta: dict[str, Any]) -> bool:
    """Write the index atomically (a temporary file renamed); False where the folder refuses."""
    tmp = place.with_name(f"{place.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:  # uncompressed, so `rows` maps without reading it
            arrays = dict(zip(_ROWS, rows, strict=True))
            np.savez(f, **arrays, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        os.replace(tmp, place)
        return True
    except OSError:
        tmp.unlink(missing_ok=True)
        return False


def _build_index(shown: str, label: str, where: _Where) -> tuple[np.ndarray, dict[str, Any]]:
    """One pass over the file: where each non-blank line starts and its line number, and the
    label column's numbers and distinct values (the classes), in 8 bytes a row."""
    starts, jump_rows, jump_lines = array("q"), array("q"), array("q")
    header: tuple[int, str] | None = None
    li, pos, numeric, top, names = -1, 0, True, -1, set()
    try:
        f = open(shown, "rb")
    except OSError as e:
        raise _cannot_read(shown, e, where) from None
    with f:
        for n, raw in enumerate(f, 1):
            start, pos = pos, pos + len(raw)
            if not raw.strip():
                continue
            if header is None:
                header = (n, _decode(raw.removeprefix(b"\xef\xbb\xbf"), shown, n, where))
                li = _label_column(shown, header, label, where)
                continue
            k = len(starts)
            if not jump_rows or jump_lines[-1] + k - jump_rows[-1] != n:
                jump_rows.append(k)
                jump_lines.append(n)
            starts.append(start)
            value = _label_cell(raw, li)
            number = datasets._number(value) if value else None
            if value and number is None:
                numeric = False
            elif number is not None and math.isfinite(number) and number.is_integer():
                top = max(top, int(number))
            if names is not None and value:
                names.add(value)
                names = names if len(names) <= _NAMES_CAP else None
    if header is None:
        hint = "write a header row of column names, then one row per example"
        raise where.file(E_DATA, f"`{shown}` is empty: no header row", _start(shown), hint)
    count = len(starts)
    starts.append(pos)
    # views of the arrays grown while reading, not copies
    rows = tuple(np.frombuffer(a, np.int64) for a in (starts, jump_rows, jump_lines))
    fields = datasets._fields(header[1])
    meta = {
        "header": [list(f) for f in fields], "header_line": header[0], "header_text": header[1],
        "count": count, "numeric": numeric, "top": top,
        "names": None if names is None else sorted(names),
    }  # fmt: skip
    return rows, meta  # type: ignore[return-value]


def _decode(raw: bytes, shown: str, line: int, where: _Where) -> str:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        message = f"cannot read `{shown}`: not UTF-8 text (line {line}, byte {e.start})"
        raise where.file(E_FILE, message, _start(shown), "save the file as UTF-8") from None


def _label_cell(raw: bytes, li: int) -> str:
    """The label field of a raw line, as `_fields` reads it ("" where the row is short)."""
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    if '"' not in text:
        parts = text.split(",")
        return parts[li].strip() if li < len(parts) else ""
    fields = datasets._fields(text)
    return fields[li][0] if li < len(fields) else ""


def _label_column(shown: str, header: tuple[int, str], label: str, where: _Where) -> int:
    names = [v for v, _, _ in datasets._fields(header[1])]
    if label not in names:
        hint = _choose(label, names, "columns", '`csv(..., label = "{}")`')
        raise where.spec(E_DATA, f"`{shown}` has no column `{label}`", hint)
    if len(names) == 1:
        message = f"`{shown}` has no input columns besides the label `{label}`"
        raise where.spec(E_DATA, message, "add a column for each input")
    return names.index(label)


def _values(text: str) -> list[str]:
    """A line's field values as `datasets._fields` reads them (split on commas, stripped),
    without their columns, which only a message needs."""
    if '"' in text:
        return [v for v, _, _ in datasets._fields(text)]
    return [part.strip() for part in text.split(",")]


def _one_line(line: int, text: str) -> str:
    """A text whose line `line` is `text`: the excerpt of a row read alone."""
    return "\n" * (line - 1) + text


class CsvExamples(Examples):
    """Rows of a numeric CSV, each read by its byte offset and parsed as `csv(...)` does."""

    def __init__(self, shown: str, index: _CsvIndex, label: str, task: str, opts: Opts) -> None:
        super().__init__(opts)
        self._index = index
        names = [v for v, _, _ in index.header]
        self._names, self._li = names, names.index(label)
        self._inputs = [k for k in range(len(names)) if k != self._li]
        self.origin, self.task, self.shape = shown, task, (len(self._inputs),)
        self.dtype = np.dtype(np.float32)
        self.classes, self.class_names = None, ()
        if task == "classification" and index.numeric:
            self.classes = max(index.top + 1, 0)
            self.class_names = tuple(str(k) for k in range(self.classes))
        elif task == "classification":
            if index.names is None:
                message = f"column `{label}` of `{shown}` holds over {_NAMES_CAP} class names"
                hint = "use a regression loss for real-valued targets"
                raise opts.where.spec(E_DATA, message, hint)
            self.classes, self.class_names = len(index.names), tuple(index.names)
        self._lookup = {n: k for k, n in enumerate(self.class_names)}

    def __len__(self) -> int:
        return self._index.count

    def _rows(self) -> Rows:
        index = self._index
        if index.rows is not None:
            return index.rows
        return self._opened("_open_rows", lambda: _mapped_rows(str(index.file)))

    def _line(self, i: int) -> tuple[int, int, str]:
        """Row `i`'s line number, byte offset and text."""
        f = self._opened("_open_file", lambda: open(self.origin, "rb"))
        starts, jump_rows, jump_lines = self._rows()
        start, end = int(starts[i]), int(starts[i + 1])
        k = int(np.searchsorted(jump_rows, i, side="right")) - 1
        line = int(jump_lines[k]) + i - int(jump_rows[k])
        # pread: no shared file position, so threads may read rows at once
        raw = os.pread(f.fileno(), end - start, start).split(b"\n", 1)[0]  # blank lines after
        try:
            return line, start, raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            message = f"row {i + 1} of `{self.origin}` is not UTF-8 text (byte {start + e.start})"
            at = Span(self.origin, line, 1, line, 2)
            raise _Bad(
                f"row {i + 1}", message, at, "save the file as UTF-8", None, E_FILE
            ) from None

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        line, _, text = self._line(i)
        values = _values(text)
        if len(values) != len(self._names):
            raise self._shape_problem(i, line, text, datasets._fields(text))
        return self._cells(i, line, text, values), self._label(i, line, text, values)

    def _shape_problem(self, i: int, line: int, text: str, fields: list) -> _Bad:
        width = len(self._names)
        more = len(fields) > width
        col = fields[width][1] if more else fields[-1][2]
        end = fields[-1][2] if more else col + 1
        message = f"row {i + 1} has {len(fields)} fields but the header has {width}"
        hint = "give every row one value per column of the header"
        return self._bad(i, line, text, col, end, message, hint)

    def _bad(
        self, i: int, line: int, text: str, col: int, end: int, message: str, hint: str
    ) -> _Bad:
        at = Span(self.origin, line, col, line, max(end, col + 1))
        return _Bad(f"row {i + 1}", message, at, hint, _one_line(line, text))

    def _cells(self, i: int, line: int, text: str, values: list[str]) -> np.ndarray:
        cells = [values[c] for c in self._inputs]
        try:  # as `csv` reads numbers in memory (`_Csv.columns`): the same parse, then float32
            x = np.array(cells, dtype=np.float64)
        except ValueError:
            x = np.array([datasets._float_or_nan(v) for v in cells], dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(x))
        if not len(bad):
            return x.astype(np.float32)
        c = self._inputs[int(bad[0])]
        value, col, end = datasets._fields(text)[c]
        number = datasets._number(value)
        problem = "is not a number" if number is None else "is not a finite number"
        message = f"value `{value}` in column `{self._names[c]}` {problem}"
        if not value:
            message = f"empty value in column `{self._names[c]}`"
        hint = "inputs must be numbers: fill in the value, or drop the row or the column"
        if number is None and value:
            hint += " (a typed table, with `columns`, cannot stream yet: `stream = false`)"
        raise self._bad(i, line, text, col, end, message, hint)

    def _label(self, i: int, line: int, text: str, values: list[str]) -> Any:
        value = values[self._li]
        number = datasets._number(value)
        problem = datasets._label_problem(value, number, self.task, self._index.numeric)
        if problem:
            hint = _LABEL_HINT
            if self.task == "regression":
                hint = "a regression loss needs numbers; use `cross_entropy` for class names"
            if not value:
                hint = "give every row a label"
            shown = f" `{value}`" if value else ""
            _, col, end = datasets._fields(text)[self._li]
            raise self._bad(i, line, text, col, end, f"label{shown} in row {i + 1} {problem}", hint)
        if self.task == "regression":
            return np.float32(number)
        if not self._index.numeric:
            return np.int32(self._lookup[value])
        return np.int64(number).astype(np.int32)

    def _place(self, i: int) -> tuple[str, Span, str | None]:
        line, _, text = self._line(i)
        fields = datasets._fields(text)
        _, col, end = fields[self._li] if self._li < len(fields) else ("", 1, 2)
        at = Span(self.origin, line, col, line, max(end, col + 1))
        return f"row {i + 1}", at, _one_line(line, text)


def _mapped_rows(file: str) -> Rows:
    """The `rows` arrays of an index file, memory-mapped (they are stored uncompressed)."""
    where = _Where(Span(file, 1, 1, 1, 1), {})
    with zipfile.ZipFile(file) as z, open(file, "rb") as f:
        starts, rows, lines = (zip_member(z, f, f"{k}.npy", "the index", where) for k in _ROWS)
        return starts.map(), np.array(rows.map()), np.array(lines.map())  # the jumps are few


def _open_csv(ref: Ref, task: str, base: Path, opts: Opts) -> Examples:
    shown, where = _resolve(base, ref.arg("path")), opts.where
    label = str(ref.arg("label"))
    index = _csv_index(shown, label, where, opts.cache_dir)
    if not index.count:
        line = index.header_line
        at = Span(shown, line, 1, line, len(index.header_text) + 1)
        hint = "add one row per example below the header"
        text = _one_line(line, index.header_text)
        raise where.file(E_DATA, f"`{shown}` has a header but no rows", at, hint, text)
    _check_header(shown, index, where)
    return CsvExamples(shown, index, label, task, opts)


def _check_header(shown: str, index: _CsvIndex, where: _Where) -> None:
    names = [v for v, _, _ in index.header]
    for k, (name, col, end) in enumerate(index.header):
        if name in names[:k]:
            line = index.header_line
            at = Span(shown, line, col, line, max(end, col + 1))
            message = f"column `{name}` appears twice in the header"
            text = _one_line(line, index.header_text)
            raise where.file(E_DATA, message, at, "give every column its own name", text)
