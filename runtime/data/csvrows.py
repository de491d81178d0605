"""The `csv` source: streamed, rows found by their byte offsets, indexed once and cached; read
whole (`_read_csv`: a numeric or a typed table, several outputs' columns, `dnn predict`'s
inputs), at the end. Both split a line into fields with `_fields`.

Part of the sources stage (runtime/data/sources.py, which says what every source gives).
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import E_DATA, E_FILE, Span, SpecError
from dnn.compiler.values import Ref

from .arrays import zip_member
from .examples import Examples, Opts, Skipped, _Bad
from .table import (
    _LABEL_HINT,
    Field,
    Row,
    Table,
    _cannot_read,
    _choose,
    _resolve,
    _start,
    _Where,
    listed,
)

_INDEX_VERSION = 4
_SAMPLE = 1000  # rows whose input cells the index pass looks at for strings or gaps
_ROWS = ("starts", "jump_rows", "jump_lines")  # an index's arrays (`_CsvIndex`)
Rows = tuple[np.ndarray, np.ndarray, np.ndarray]
_NAMES_CAP = 100_000  # distinct labels kept while indexing a CSV (class names)
# Bytes of memory a typed table read whole takes per byte of its file: the parsed rows, their
# fields and the cells as Python strings (measured: a 15 MB typed CSV peaked 478 MB above the
# imports, `python bench/stream_sources.py table`).
TYPED_EXPANDS = 32


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
    typed: bool  # an input cell of the first _SAMPLE rows is not a finite number: a typed table


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
        meta["numeric"], meta["top"], meta["names"], meta["typed"],
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
    li, pos, numeric, top, names, typed = -1, 0, True, -1, set(), False
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
            if k < _SAMPLE and not typed:  # strings or gaps among the inputs: read in memory
                typed = _has_text(raw, li)
            value = _label_cell(raw, li)
            number = _number(value) if value else None
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
    fields = _fields(header[1])
    meta = {
        "header": [list(f) for f in fields], "header_line": header[0], "header_text": header[1],
        "count": count, "numeric": numeric, "top": top,
        "names": None if names is None else sorted(names), "typed": typed,
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
    fields = _fields(text)
    return fields[li][0] if li < len(fields) else ""


def _has_text(raw: bytes, li: int) -> bool:
    """Whether an input field of a raw line is not a finite number (a string, or empty): what
    makes the in-memory loader read the table as typed cells."""
    fields = _fields(raw.decode("utf-8", "replace").rstrip("\r\n"))
    for c, (value, _, _) in enumerate(fields):
        number = _number(value) if c != li else 0.0
        if number is None or not math.isfinite(number):
            return True
    return False


def _label_column(shown: str, header: tuple[int, str], label: str, where: _Where) -> int:
    names = [v for v, _, _ in _fields(header[1])]
    if label not in names:
        hint = _choose(label, names, "columns", '`csv(..., label = "{}")`')
        raise where.spec(E_DATA, f"`{shown}` has no column `{label}`", hint)
    if len(names) == 1:
        message = f"`{shown}` has no input columns besides the label `{label}`"
        raise where.spec(E_DATA, message, "add a column for each input")
    return names.index(label)


def _values(text: str) -> list[str]:
    """A line's field values as `_fields` reads them (split on commas, stripped),
    without their columns, which only a message needs."""
    if '"' in text:
        return [v for v, _, _ in _fields(text)]
    return [part.strip() for part in text.split(",")]


def _one_line(line: int, text: str) -> str:
    """A text whose line `line` is `text`: the excerpt of a row read alone."""
    return "\n" * (line - 1) + text


class CsvExamples(Examples):
    """Rows of a CSV, each read by its byte offset and parsed as `csv(...)` does: numbers, or
    for a typed table (`typed`: the spec types columns, or the first rows hold a string or a
    gap) the input cells as strings, which runtime/tabular.py fits and encodes."""

    def __init__(self, shown: str, index: _CsvIndex, label: str, task: str, opts: Opts) -> None:
        super().__init__(opts)
        self._index = index
        self.typed = index.typed if opts.cells is None else opts.cells
        self.cacheable = not self.typed  # `data.cache` keeps float rows, not cells
        names = [v for v, _, _ in index.header]
        self._names, self._li = names, names.index(label)
        self._inputs = [k for k in range(len(names)) if k != self._li]
        self.columns = tuple(names[k] for k in self._inputs)
        self.origin, self.task, self.shape = shown, task, (len(self._inputs),)
        self.dtype = np.dtype(object if self.typed else np.float32)
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
            raise self._shape_problem(i, line, text, _fields(text))
        if self.typed:
            x = np.empty(len(self._inputs), object)
            x[:] = [values[c] for c in self._inputs]
            return x, self._label(i, line, text, values)
        return self._cells(i, line, text, values), self._label(i, line, text, values)

    def nbytes(self) -> int:
        """The bytes the examples take read whole: float32 rows, or for a typed table its
        cells as Python strings, about `TYPED_EXPANDS` times the file."""
        if self.typed:
            return int(os.path.getsize(self.origin) * TYPED_EXPANDS)
        return len(self) * len(self._inputs) * 4

    def cell_error(self, i: int, j: int, code: str, message: str, hint: str) -> SpecError:
        """A problem with row `i`'s input cell `j` (of `columns`), at that cell of the file."""
        line, _, text = self._line(i)
        _, col, end = _fields(text)[self._inputs[j]]
        at = Span(self.origin, line, col, line, max(end, col + 1))
        return self._where.file(code, message, at, hint, _one_line(line, text))

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
            x = np.array([_float_or_nan(v) for v in cells], dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(x))
        if not len(bad):
            return x.astype(np.float32)
        c = self._inputs[int(bad[0])]
        value, col, end = _fields(text)[c]
        number = _number(value)
        problem = "is not a number" if number is None else "is not a finite number"
        message = f"value `{value}` in column `{self._names[c]}` {problem}"
        if not value:
            message = f"empty value in column `{self._names[c]}`"
        hint = _number_hint(value, number, self._names[c])
        raise self._bad(i, line, text, col, end, message, hint)

    def _label(self, i: int, line: int, text: str, values: list[str]) -> Any:
        value = values[self._li]
        number = _number(value)
        problem = _label_problem(value, number, self.task, self._index.numeric)
        if problem:
            hint = _LABEL_HINT
            if self.task == "regression":
                hint = "a regression loss needs numbers; use `cross_entropy` for class names"
            if not value:
                hint = "give every row a label"
            shown = f" `{value}`" if value else ""
            _, col, end = _fields(text)[self._li]
            raise self._bad(i, line, text, col, end, f"label{shown} in row {i + 1} {problem}", hint)
        if self.task == "regression":
            return np.float32(number)
        if not self._index.numeric or self._aligned:
            k = self._lookup.get(value)
            if k is None:  # aligned to the train source's classes, which lack it
                _, col, end = _fields(text)[self._li]
                message = f"label `{value}` in row {i + 1} is not a class of the train data"
                hint = f"its classes: {listed(self.class_names)}"
                raise self._bad(i, line, text, col, end, message, hint)
            return np.int32(k)
        return np.int64(number).astype(np.int32)

    _aligned = False

    def align(self, names: tuple[str, ...]) -> None:
        """Number the class labels as the train source does (`names`, by index): a separate
        `val` or `test` file's own classes may be fewer, or in another order."""
        self.classes, self.class_names, self._aligned = len(names), tuple(names), True
        self._lookup = {n: k for k, n in enumerate(names)}

    def _place(self, i: int) -> tuple[str, Span, str | None]:
        line, _, text = self._line(i)
        fields = _fields(text)
        _, col, end = fields[self._li] if self._li < len(fields) else ("", 1, 2)
        at = Span(self.origin, line, col, line, max(end, col + 1))
        return f"row {i + 1}", at, _one_line(line, text)


def _number_hint(value: str, number: float | None, column: str) -> str:
    """The hint for a cell that is no finite number in a table read as numbers."""
    if number is not None and value:  # `inf`, `nan`
        return "inputs must be numbers: fill in the value, or drop the row or the column"
    kind = "number" if not value else "category"
    return (
        f"the table is read as numbers, as its first {_SAMPLE:,} rows (or the train table's) "
        f"hold only numbers; to read its cells as a typed table, type the column: "
        f"`columns = {{ {column}: {kind} }}`"
    )


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


# ------------------------------------------------------------------ read whole (in memory)


def _fields(line: str) -> list[Field]:
    """Split one CSV line on commas; a field's columns are those of its stripped value."""
    if '"' in line:
        return _quoted_fields(line)
    out, start = [], 0
    for part in line.split(","):
        value = part.strip()
        lead = len(part) - len(part.lstrip())
        out.append((value, start + lead + 1, start + lead + len(value) + 1))
        start += len(part) + 1
    return out


def _quoted_fields(line: str) -> list[Field]:
    """As `_fields`, for a line with double-quoted fields (`""` inside quotes is one quote)."""
    out, i = [], 0
    while True:
        j = i + len(line[i:]) - len(line[i:].lstrip(" \t"))
        if line.startswith('"', j):
            k, chars = j + 1, []
            while k < len(line) and not (line[k] == '"' and not line.startswith('""', k)):
                chars.append(line[k])
                k += 2 if line.startswith('""', k) else 1
            value, end, comma = "".join(chars), k + 1, line.find(",", k)
        else:
            comma = line.find(",", j)
            value = line[j : len(line) if comma < 0 else comma].rstrip()
            end = j + len(value)
        out.append((value, j + 1, min(end, len(line)) + 1))
        if comma < 0:
            return out
        i = comma + 1


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _float_or_nan(value: str) -> float:
    number = _number(value)
    return math.nan if number is None else number


@dataclass(frozen=True)
class _Csv:
    """A CSV file read for a spec: header, rows (blank lines skipped), and where errors go."""

    shown: str
    text: str
    header: Row
    rows: list[Row]
    where: _Where
    # `data.on_error = skip`: the rows left out as bad, each (its index in `rows`, why)
    bad: tuple[tuple[int, Skipped], ...] = ()

    @property
    def names(self) -> list[str]:
        return [value for value, _, _ in self.header[1]]

    def error(self, message: str, line: int, col: int, end: int, hint: str) -> SpecError:
        """A problem at `line`, columns [col, end), shown with the CSV's line and a caret."""
        at = Span(self.shown, line, col, line, max(end, col + 1))
        return self.where.file(E_DATA, message, at, hint, self.text)

    def columns(self, cols: list[int]) -> np.ndarray:
        """These columns as float32 (N, len(cols)); a cell that is no finite number fails."""
        cells = [[fields[c][0] for c in cols] for _, fields in self.rows]
        try:
            x = np.array(cells, dtype=np.float64)
        except ValueError:  # a cell is no number: NaN marks it for the search below
            x = np.array([[_float_or_nan(v) for v in row] for row in cells], dtype=np.float64)
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):
            r, c = (int(i) for i in bad[0])
            raise self._cell_error(self.rows[r], cols[c])
        return x.astype(np.float32)

    def numeric(self, cols: list[int], rows: int | None = None) -> bool:
        """Whether every cell of these columns is a finite number (in the first `rows` rows)."""
        for _, fields in self.rows[:rows]:
            for c in cols:
                f = _number(fields[c][0])
                if f is None or not math.isfinite(f):
                    return False
        return True

    def _cell_error(self, row: Row, c: int) -> SpecError:
        (line, fields), name = row, self.names[c]
        value, col, end = fields[c]
        problem = "is not a number" if _number(value) is None else "is not a finite number"
        message = f"value `{value}` in column `{name}` {problem}"
        if not value:
            message = f"empty value in column `{name}`"
        hint = _number_hint(value, _number(value), name)
        if self.where.origin is None:  # `dnn predict`'s inputs: no spec to type columns in
            hint = "inputs must be numbers: fill in the value, or drop the row or the column"
        return self.error(message, line, col, end, hint)

    def labels(self, li: int, task: str) -> tuple[np.ndarray, int | None, tuple[str, ...]]:
        """Targets from column `li`: numbers for regression; for classification whole numbers
        are class indices as given, and any other label makes every label a name (sorted)."""
        values = [fields[li][0] for _, fields in self.rows]
        numbers = [_number(v) for v in values]
        numeric = all(n is not None for v, n in zip(values, numbers, strict=True) if v)
        for k, (v, n) in enumerate(zip(values, numbers, strict=True)):
            problem = _label_problem(v, n, task, numeric)
            if problem:
                raise self._bad_label(k, li, problem, task)
        if task == "regression":
            return np.array(numbers, np.float32), None, ()
        if not numeric:
            names = sorted(set(values))
            lookup = {n: i for i, n in enumerate(names)}
            return np.array([lookup[v] for v in values], np.int32), len(names), tuple(names)
        y = np.array(numbers, np.int64)
        classes = max(int(y.max()) + 1, 0)
        return y.astype(np.int32), classes, tuple(str(i) for i in range(classes))

    def _bad_label(self, k: int, li: int, problem: str, task: str) -> SpecError:
        line, fields = self.rows[k]
        value, col, end = fields[li]
        hint = _LABEL_HINT
        if task == "regression":
            hint = "a regression loss needs numbers; use `cross_entropy` for class names"
        if not value:
            hint = "give every row a label"
        shown = f" `{value}`" if value else ""
        return self.error(f"label{shown} in row {k + 1} {problem}", line, col, end, hint)


def _label_problem(value: str, number: float | None, task: str, numeric: bool) -> str | None:
    """What is wrong with one label, if anything; `numeric`: every label is a number."""
    if not value:
        return "is empty"
    if task == "regression":
        if number is None:
            return "is not a number"
        return None if math.isfinite(number) else "is not a finite number"
    if numeric and number is not None and not (math.isfinite(number) and number.is_integer()):
        return "is not a class index or name"
    return None


def _read_csv(shown: str, where: _Where, headerless: bool = False, skip: bool = False) -> _Csv:
    """Read a CSV: UTF-8 text, a header row of distinct names, then rows of as many fields
    (`skip`: a row of another count is left out, listed in `_Csv.bad`).

    `headerless`: a first row of numbers only is an example, not a header (inputs for
    `dnn predict`, whose columns need no names); the columns are then named `column 1`, ...
    """
    try:
        data = Path(shown).read_bytes()
    except OSError as e:
        raise _cannot_read(shown, e, where) from None
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (spreadsheet exports) is dropped
    except UnicodeDecodeError as e:
        message = f"cannot read `{shown}`: not UTF-8 text (byte {e.start})"
        raise where.file(E_FILE, message, _start(shown), "save the file as UTF-8") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        hint = "write a header row of column names, then one row per example"
        raise where.file(E_DATA, f"`{shown}` is empty: no header row", _start(shown), hint, text)
    header = (lines[0][0], _fields(lines[0][1]))
    if headerless and all(_is_number(v) for v, _, _ in header[1]):
        named = [(f"column {i}", col, end) for i, (_, col, end) in enumerate(header[1], 1)]
        rows = [(n, _fields(line)) for n, line in lines]
        csv = _Csv(shown, text, (header[0], named), rows, where)
        return _check_shape(csv, len(lines[0][1]), skip)
    csv = _Csv(shown, text, header, [(n, _fields(line)) for n, line in lines[1:]], where)
    return _check_shape(csv, len(lines[0][1]), skip)


def _check_shape(csv: _Csv, header_length: int, skip: bool = False) -> _Csv:
    line, fields = csv.header
    for i, (name, col, end) in enumerate(fields):
        if name in csv.names[:i]:
            message = f"column `{name}` appears twice in the header"
            raise csv.error(message, line, col, end, "give every column its own name")
    if not csv.rows:
        message = f"`{csv.shown}` has a header but no rows"
        hint = "add one row per example below the header"
        raise csv.error(message, line, 1, header_length + 1, hint)
    bad = []
    for k, (line, fields) in enumerate(csv.rows, 1):
        if len(fields) != len(csv.header[1]):
            more = len(fields) > len(csv.header[1])
            col = fields[len(csv.header[1])][1] if more else fields[-1][2]
            message = f"row {k} has {len(fields)} fields but the header has {len(csv.names)}"
            if skip:  # as the streamed reader words it (`CsvExamples._shape_problem`)
                bad.append((k - 1, Skipped(csv.shown, f"row {k}", message)))
                continue
            hint = "give every row one value per column of the header"
            raise csv.error(message, line, col, fields[-1][2] if more else col + 1, hint)
    return replace(csv, bad=tuple(bad)) if bad else csv


def _skip_labels(csv: _Csv, li: int, task: str) -> _Csv:
    """`on_error = skip`: the rows whose label `labels` would refuse left out too, listed
    in `bad` as the streamed reader words them (`CsvExamples._label`)."""
    out, shape = dict(csv.bad), dict(csv.bad)
    good = [k for k in range(len(csv.rows)) if k not in shape]
    values = {k: csv.rows[k][1][li][0] for k in good}
    numbers = {k: _number(v) for k, v in values.items()}
    numeric = all(numbers[k] is not None for k, v in values.items() if v)
    for k, v in values.items():
        problem = _label_problem(v, numbers[k], task, numeric)
        if problem:
            shown = f" `{v}`" if v else ""
            message = f"label{shown} in row {k + 1} {problem}"
            out[k] = Skipped(csv.shown, f"row {k + 1}", message)
    return replace(csv, bad=tuple(sorted(out.items())))


def _load_csv(ref: Ref, task: str, base_dir: Path, where: _Where) -> Table:
    shown = _resolve(base_dir, ref.arg("path"))
    return _csv_table(_read_csv(shown, where), ref, task, where, False)


def load_table(
    ref: Ref,
    *,
    task: str,
    base_dir: Path,
    span: Span,
    sources: Mapping[str, str],
    typed: bool,
    skip: bool = False,
) -> Table:
    """A CSV source for the typed-table stage (runtime/tabular.py): its input cells as
    strings (a `table` Table) where `typed` (the spec types columns) or some input cell is
    not a number; else the numeric table `load_source` reads. `skip` (`data.on_error =
    skip`): a row of the wrong length or with a bad label is left out (`Table.skipped`)."""
    where = _Where(span, sources, span)
    shown = _resolve(base_dir, ref.arg("path"))
    csv = _read_csv(shown, where, skip=skip)
    return _csv_table(csv, ref, task, where, True if typed else None, skip)


def _csv_table(
    csv: _Csv, ref: Ref, task: str, where: _Where, typed: bool | None, skip: bool = False
) -> Table:
    """The table of a read CSV: typed cells where `typed` is True, or None and some input
    cell is not a number; numbers only (errors at any other cell) where it is False.
    `skip`: the rows `_check_shape` left out, and those with a bad label, are not read."""
    shown = csv.shown
    names, label = csv.names, str(ref.arg("label"))
    if label not in names:
        fix = f'`csv("{ref.arg("path")}", label = "{{}}")`'
        hint = _choose(label, names, "columns", fix)
        raise where.spec(E_DATA, f"`{shown}` has no column `{label}`", hint)
    li = names.index(label)
    if len(names) == 1:
        line, (_, col, end) = csv.header[0], csv.header[1][li]
        message = f"`{shown}` has no input columns besides the label `{label}`"
        raise csv.error(message, line, col, end, "add a column for each input")
    inputs = [i for i in range(len(names)) if i != li]
    every, index = csv, None  # every row, as positions name them (places, cells)
    if skip:
        csv = _skip_labels(csv, li, task)
        left = dict(csv.bad)
        index = np.array([k for k in range(len(every.rows)) if k not in left], np.int64)
        csv = replace(csv, rows=[every.rows[k] for k in index])
    more = {"index": index if csv.bad else None, "skipped": csv.bad}
    if not csv.rows:  # every row bad: no labels to read (the train split is empty)
        return Table(
            np.zeros((0, len(inputs)), np.float32), np.zeros((0,), np.int32), task, None, (),
            shown, "csv", where.span, **more,
        )  # fmt: skip
    y, classes, class_names = csv.labels(li, task)
    places = np.array(
        [(k, n, *(f[li][1:] if li < len(f) else (1, 2))) for k, (n, f) in enumerate(every.rows, 1)]
    )
    # typed where the spec says so, or a cell of the first rows is no number: the rows the
    # streamed reader's index looks at (`_SAMPLE`), so both modes read a file alike
    if typed or (typed is None and not csv.numeric(inputs, _SAMPLE)):
        cells = np.array([[f[i][0] for i in inputs] for _, f in csv.rows], dtype=object)
        cells = cells.reshape(len(csv.rows), len(inputs))
        columns = tuple(names[i] for i in inputs)
        return Table(
            cells, y, task, classes, class_names, shown, "table", where.span, places=places,
            text=csv.text, columns=columns, cells=(every.rows, tuple(inputs)), **more,
        )  # fmt: skip
    x = csv.columns(inputs)
    return Table(
        x, y, task, classes, class_names, shown, "csv", where.span, places=places,
        text=csv.text, **more,
    )  # fmt: skip


def table_cells(table: Table, sources: Mapping[str, str]) -> Any:
    """A typed table's cells for runtime/tabular.py, with errors that point into the file."""
    from ..tabular import Raw

    def at(i: int, j: int, code: str, message: str, hint: str) -> SpecError:
        assert table.cells is not None
        rows, inputs = table.cells
        line, fields = rows[table.position(i)]
        _, col, end = fields[inputs[j]]
        span = Span(table.origin, line, col, line, max(end, col + 1))
        return _Where(span, sources, table.span).file(code, message, span, hint, table.text)

    return Raw(table.columns, table.x, at)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv_inputs(shown: str, where: _Where) -> np.ndarray:
    csv = _read_csv(shown, where, headerless=True)
    return csv.columns(list(range(len(csv.names))))


def read_cells(path: Path) -> Any:
    """A CSV of examples for a run trained on a typed table: a header row of column names,
    then one row per example, every cell a string (runtime/tabular.py encodes them)."""
    from ..tabular import Raw

    shown = str(path)
    where = _Where(_start(shown), {})
    csv = _read_csv(shown, where)
    names = tuple(csv.names)
    cells = np.array([[v for v, _, _ in f] for _, f in csv.rows], dtype=object)
    cells = cells.reshape(len(csv.rows), len(names))

    def at(i: int, j: int, code: str, message: str, hint: str) -> SpecError:
        line, fields = csv.rows[i]
        _, col, end = fields[j]
        span = Span(shown, line, col, line, max(end, col + 1))
        return where.file(code, message, span, hint, csv.text)

    return Raw(names, cells, at)


def header_error(path: Path, message: str, hint: str) -> SpecError:
    """A problem with the header row of a CSV given to `dnn predict`."""
    shown = str(path)
    return _Where(_start(shown), {}).file(E_DATA, message, _start(shown), hint)
