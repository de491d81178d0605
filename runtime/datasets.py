"""Data sources: built-in sets, CSV and NPZ files and image folders, read into one `Table`.

`load_source` reads what a spec's `data { source = ... }` names (runtime/data/split.py cuts
it into train/val/test, runtime/data/transforms.py matches it to the model), and `read_inputs`
reads the examples given to `dnn predict`. Nothing is downloaded: built-in sets come from
scikit-learn's bundled loaders or from NumPy generators with a fixed seed, so a built-in set
is the same on every run.

Bad data never ends in a traceback: every mistake is a `SpecError` rendered like a compiler
error. A problem with the reference itself (no such file, column or array; examples of the
wrong shape) points at the spec. A problem inside a file points into it: a CSV's line and
field, shown with a caret, or an archive or image as a whole (line 1, column 1), with a note
back to the spec field that names the file.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from dnn.compiler.diagnostics import E_DATA, E_FILE, InternalError, Span, SpecError
from dnn.compiler.registry.core import did_you_mean, provides
from dnn.compiler.registry.data import BUILTIN_DATA, DATASETS
from dnn.compiler.registry.layers import fmt_shape
from dnn.compiler.values import Ref

from .data.table import (
    _LABEL_HINT,
    _PATH_HINT,
    TASKS,
    Block,
    Field,
    Outputs,
    Row,
    Table,
    _cannot_read,
    _choose,
    _resolve,
    _start,
    _Where,
)

SEED = 0  # of the built-in generators: the same examples on every run
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_GRAY_MODES = frozenset({"1", "L", "LA"})


# ----------------------------------------------------------------------------- public API


def load_source(
    ref: Ref, *, task: str, base_dir: Path, span: Span, sources: Mapping[str, str]
) -> Table:
    """Read the examples a `source = ...` reference names (`task` comes from the loss)."""
    if task not in TASKS:
        raise InternalError(f"unknown task {task!r}")
    return _source(ref).load(ref, task, Path(base_dir), _Where(span, sources, span))


def read_inputs(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Examples for `dnn predict`: a .npy array, or a CSV with a header row (all inputs).

    Returns float32 (N, *shape); a single example of exactly `shape` becomes a batch of one.
    """
    shown = str(path)
    where = _Where(_start(shown), {})
    reader = _INPUT_READERS.get(Path(shown).suffix.lower())
    if reader is None:
        raise where.spec(
            E_FILE,
            f"cannot read `{shown}`: inputs must be a .npy or .csv file",
            "save the examples with `np.save`, or as a CSV file with a header row",
        )
    return _as_examples(reader(shown, where), tuple(shape), shown, where)


# ----------------------------------------------------------------------------- built-in sets

Arrays = tuple[np.ndarray, np.ndarray]


def _moons(n: int, rng: np.random.Generator) -> Arrays:
    from sklearn.datasets import make_moons

    return make_moons(n, noise=0.2, random_state=SEED)


def _circles(n: int, rng: np.random.Generator) -> Arrays:
    from sklearn.datasets import make_circles

    return make_circles(n, noise=0.1, factor=0.5, random_state=SEED)


def _spirals(n: int, rng: np.random.Generator) -> Arrays:
    """Three arms 120 degrees apart, each turning 1.5 times about the origin."""
    arm = np.arange(n) % 3
    r = rng.uniform(0.05, 1.0, n)
    t = arm * (2 * np.pi / 3) + r * 3 * np.pi + rng.normal(0.0, 0.2, n)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1), arm


def _xor(n: int, rng: np.random.Generator) -> Arrays:
    x = rng.uniform(-1.0, 1.0, (n, 2))
    return x, (x[:, 0] * x[:, 1] < 0).astype(np.int64)


def _sequence(n: int, rng: np.random.Generator) -> Arrays:
    x = rng.normal(0.0, 1.0, (n, 20, 1))
    return x, (x.sum(axis=(1, 2)) > 0).astype(np.int64)


def _tokens(n: int, rng: np.random.Generator) -> Arrays:
    ids = rng.integers(0, 20, (n, 13))
    return ids, ((ids < 10).sum(axis=1) > 6).astype(np.int64)


# Sets of our own making; the others are scikit-learn's bundled loaders named in BUILTIN_DATA.
_GENERATORS: dict[str, Callable[[int, np.random.Generator], Arrays]] = {
    "moons": _moons,
    "circles": _circles,
    "spirals": _spirals,
    "xor": _xor,
    "sequence": _sequence,
    "tokens": _tokens,
}


def _builtin_arrays(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """A built-in set's inputs, targets and class names, as BUILTIN_DATA describes it."""
    meta = BUILTIN_DATA[name]
    if name in _GENERATORS:
        x, y = _GENERATORS[name](meta["samples"], np.random.default_rng(SEED))
        return x, y, tuple(str(k) for k in range(meta["classes"]))
    if meta["source"] == "sklearn.datasets.load_digits":
        fast = _digits_file()
        if fast is not None:
            table = np.loadtxt(fast, delimiter=",")
            return table[:, :-1], table[:, -1].astype(np.int64), tuple(str(k) for k in range(10))
    from sklearn import datasets

    bunch = getattr(datasets, meta["source"].rpartition(".")[2])()
    return bunch.data, bunch.target, tuple(str(n) for n in getattr(bunch, "target_names", ()))


def _digits_file() -> Path | None:
    """scikit-learn's bundled digits file, found without importing scikit-learn (0.8 s here);
    read as `load_digits` reads it: 64 pixel columns, then the label."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec else []
    path = Path(roots[0]) / "datasets" / "data" / "digits.csv.gz" if roots else None
    return path if path is not None and path.is_file() else None


def _load_builtin(ref: Ref, task: str, base_dir: Path, where: _Where) -> Table:
    name = str(ref.arg("name"))
    meta = BUILTIN_DATA[name]
    if meta["classes"] is None and task != "regression":
        raise where.spec(
            E_DATA,
            f'`builtin("{name}")` has real-valued targets, not class labels',
            "use a regression loss such as `mse`, with one output",
        )
    x, y, names = _builtin_arrays(name)
    dtype = np.int32 if meta.get("dtype") == "int" else np.float32
    x = np.asarray(x, dtype).reshape(len(x), *meta["shape"])
    origin = f"builtin:{name}"
    if task == "regression":
        return Table(x, np.asarray(y, np.float32), task, None, (), origin, "builtin", where.span)
    y = np.asarray(y, np.int32)
    return Table(x, y, task, meta["classes"], names, origin, "builtin", where.span)


# ----------------------------------------------------------------------------- CSV


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

    def numeric(self, cols: list[int]) -> bool:
        """Whether every cell of these columns is a finite number."""
        for _, fields in self.rows:
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


def _read_csv(shown: str, where: _Where, headerless: bool = False) -> _Csv:
    """Read a CSV: UTF-8 text, a header row of distinct names, then rows of as many fields.

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
        _check_shape(csv, len(lines[0][1]))
        return csv
    csv = _Csv(shown, text, header, [(n, _fields(line)) for n, line in lines[1:]], where)
    _check_shape(csv, len(lines[0][1]))
    return csv


def _check_shape(csv: _Csv, header_length: int) -> None:
    line, fields = csv.header
    for i, (name, col, end) in enumerate(fields):
        if name in csv.names[:i]:
            message = f"column `{name}` appears twice in the header"
            raise csv.error(message, line, col, end, "give every column its own name")
    if not csv.rows:
        message = f"`{csv.shown}` has a header but no rows"
        hint = "add one row per example below the header"
        raise csv.error(message, line, 1, header_length + 1, hint)
    for k, (line, fields) in enumerate(csv.rows, 1):
        if len(fields) != len(csv.header[1]):
            more = len(fields) > len(csv.header[1])
            col = fields[len(csv.header[1])][1] if more else fields[-1][2]
            message = f"row {k} has {len(fields)} fields but the header has {len(csv.names)}"
            hint = "give every row one value per column of the header"
            raise csv.error(message, line, col, fields[-1][2] if more else col + 1, hint)


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
) -> Table:
    """A CSV source for the typed-table stage (runtime/tabular.py): its input cells as
    strings (a `table` Table) where `typed` (the spec types columns) or some input cell is
    not a number; else the numeric table `load_source` reads."""
    where = _Where(span, sources, span)
    shown = _resolve(base_dir, ref.arg("path"))
    return _csv_table(_read_csv(shown, where), ref, task, where, True if typed else None)


def _csv_table(csv: _Csv, ref: Ref, task: str, where: _Where, typed: bool | None) -> Table:
    """The table of a read CSV: typed cells where `typed` is True, or None and some input
    cell is not a number; numbers only (errors at any other cell) where it is False."""
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
    y, classes, class_names = csv.labels(li, task)
    places = np.array([(k, n, f[li][1], f[li][2]) for k, (n, f) in enumerate(csv.rows, 1)])
    if typed or (typed is None and not csv.numeric(inputs)):
        cells = np.array([[f[i][0] for i in inputs] for _, f in csv.rows], dtype=object)
        cells = cells.reshape(len(csv.rows), len(inputs))
        columns = tuple(names[i] for i in inputs)
        return Table(
            cells, y, task, classes, class_names, shown, "table", where.span, None, places,
            csv.text, columns, (csv.rows, tuple(inputs)),
        )  # fmt: skip
    x = csv.columns(inputs)
    return Table(x, y, task, classes, class_names, shown, "csv", where.span, None, places, csv.text)


def table_cells(table: Table, sources: Mapping[str, str]) -> Any:
    """A typed table's cells for runtime/tabular.py, with errors that point into the file."""
    from .tabular import Raw

    def at(i: int, j: int, code: str, message: str, hint: str) -> SpecError:
        assert table.cells is not None
        rows, inputs = table.cells
        line, fields = rows[table.position(i)]
        _, col, end = fields[inputs[j]]
        span = Span(table.origin, line, col, line, max(end, col + 1))
        return _Where(span, sources, table.span).file(code, message, span, hint, table.text)

    return Raw(table.columns, table.x, at)


# ----------------------------------------------------------------------------- NPZ


def open_npz(shown: str, where: _Where, hint: str) -> Any:
    """An .npz archive (no pickles), or the error that it cannot be read or is not one."""
    try:
        archive = np.load(shown, allow_pickle=False)
    except OSError as e:
        raise _cannot_read(shown, e, where) from None
    except (ValueError, EOFError, zipfile.BadZipFile):
        archive = None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        message = f"cannot read `{shown}`: not a NumPy .npz archive"
        raise where.file(E_FILE, message, _start(shown), hint)
    return archive


def _read_npz(shown: str, written: str, keys: dict[str, str], where: _Where) -> list[np.ndarray]:
    """The arrays named by `keys` (argument of `npz` -> array name) from an .npz archive."""
    archive = open_npz(
        shown, where, "save the arrays with `np.savez(path, x = inputs, y = targets)`"
    )
    with archive:
        for arg, key in keys.items():
            if key not in archive.files:
                fix = f'`npz("{written}", {arg} = "{{}}")`'
                hint = _choose(key, sorted(archive.files), "arrays in it", fix)
                raise where.spec(E_DATA, f"`{shown}` has no array `{key}`", hint)
        return [_member(archive, key, shown, where) for key in keys.values()]


def _member(archive: Any, key: str, shown: str, where: _Where) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        message = f"cannot read array `{key}` in `{shown}`: {e}"
        hint = "save plain numeric arrays with `np.savez`"
        raise where.file(E_FILE, message, _start(shown), hint) from None


def _numbers(a: np.ndarray, what: str, shown: str, where: _Where) -> np.ndarray:
    """A numeric array with one row per example, every value finite: int32 when the archive
    holds integers (token ids stay ids), float32 otherwise."""
    if a.ndim == 0 or a.dtype.kind not in "biuf":
        problem = "is a single value" if a.ndim == 0 else f"holds `{a.dtype}` values"
        message = f"{what} in `{shown}` {problem}, not numbers with one row per example"
        hint = "save a numeric array whose first axis indexes the examples"
        raise where.file(E_DATA, message, _start(shown), hint)
    if a.dtype.kind in "biu":
        return a.astype(np.int32)
    x = a.astype(np.float32)
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        i, *pos = (int(p) for p in bad[0])
        kind = "NaN" if np.isnan(x[tuple(bad[0])]) else "an infinite value"
        at = f", feature {pos[0]}" if len(pos) == 1 else f", position {tuple(pos)}" if pos else ""
        message = f"{what} in `{shown}` has {kind} at example {i}{at}"
        hint = "fill in or drop the examples with missing values before training"
        raise where.file(E_DATA, message, _start(shown), hint)
    return x


def _load_npz(ref: Ref, task: str, base_dir: Path, where: _Where) -> Table:
    shown = _resolve(base_dir, ref.arg("path"))
    xk, yk = str(ref.arg("x")), str(ref.arg("y"))
    raw_x, raw_y = _read_npz(shown, ref.arg("path"), {"x": xk, "y": yk}, where)
    x = _numbers(raw_x, f"array `{xk}`", shown, where)
    n = 1 if raw_y.ndim == 0 else len(raw_y)
    if n != len(x) or not n:
        message = f"array `{xk}` in `{shown}` has {len(x)} examples but `{yk}` has {n}"
        if n == len(x):
            message = f"`{shown}` holds no examples"
        hint = "the first axis of both arrays indexes the examples"
        raise where.file(E_DATA, message, _start(shown), hint)
    if task == "regression":
        y = _numbers(raw_y, f"array `{yk}`", shown, where)
        return Table(x, y, task, None, (), shown, "npz", where.span)
    y, names = _npz_labels(raw_y, yk, shown, where)
    return Table(x, y, task, len(names), names, shown, "npz", where.span)


def _npz_labels(
    y: np.ndarray, key: str, shown: str, where: _Where
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices from integer labels, one-hot rows or strings (sorted class names)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2 and y.dtype.kind in "biuf" and np.isin(y, (0, 1)).all():
        if not (y.sum(axis=1) == 1).all():  # multi-hot rows: several yes/no labels each
            return y.astype(np.int32), tuple(str(i) for i in range(y.shape[1]))
        y = y.argmax(axis=1)  # one-hot rows
    if y.ndim != 1:
        message = (
            f"array `{key}` in `{shown}` has shape {fmt_shape(y.shape)}: class labels need "
            "one value per example, multi-label targets one 0/1 row"
        )
        hint = "store class labels with shape (N,), or use a regression loss such as `mse`"
        raise where.file(E_DATA, message, _start(shown), hint)
    if y.dtype.kind in "US":
        names, idx = np.unique(y, return_inverse=True)
        return idx.astype(np.int32), tuple(str(n) for n in names)
    f = _numbers(y, f"array `{key}`", shown, where).astype(np.float64)
    bad = np.flatnonzero(f != np.round(f))
    if len(bad):
        i = int(bad[0])
        message = f"array `{key}` in `{shown}` holds {f[i]:g} at example {i}, not a class index"
        raise where.file(E_DATA, message, _start(shown), _LABEL_HINT)
    classes = max(int(f.max()) + 1, 0)
    return f.astype(np.int32), tuple(str(i) for i in range(classes))


# ----------------------------------------------------------------------------- images


def _load_images(ref: Ref, task: str, base_dir: Path, where: _Where) -> Table:
    shown = _resolve(base_dir, ref.arg("dir"))
    folders = _class_folders(shown, where)
    files = [(k, f) for k, folder in enumerate(folders) for f in _image_files(folder, where)]
    size = ref.arg("size")
    pixels = [_read_image(f, size, where) for _, f in files]
    if size is None:
        _check_sizes(ref.arg("dir"), [f for _, f in files], pixels, where)
    if any(p.ndim == 3 for p in pixels):  # some colour image: grey ones get three equal channels
        pixels = [p if p.ndim == 3 else np.repeat(p[..., None], 3, axis=2) for p in pixels]
    x = np.stack(pixels).astype(np.float32) / 255.0  # 8 bits per channel
    x = x if x.ndim == 4 else x[..., None]
    labels = np.array([k for k, _ in files])
    names = tuple(f.name for f in folders)
    if task == "regression":
        return Table(x, labels.astype(np.float32), task, None, (), shown, "images", where.span)
    return Table(x, labels.astype(np.int32), task, len(names), names, shown, "images", where.span)


def _class_folders(shown: str, where: _Where) -> list[Path]:
    root = Path(shown)
    if not root.is_dir():
        problem = "not a folder" if root.exists() else "no such folder"
        raise where.spec(E_FILE, f"cannot read `{shown}`: {problem}", _PATH_HINT)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        hint = f"put the images of each class in a subfolder named after it: `{shown}/cat/1.png`"
        raise where.spec(E_DATA, f"`{shown}` has no class folders", hint)
    return folders


def _image_files(folder: Path, where: _Where) -> list[Path]:
    files = sorted(
        f
        for f in folder.iterdir()
        if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") and f.is_file()
    )
    if not files:
        hint = "add .png or .jpg images to it, or remove it"
        raise where.spec(E_DATA, f"class folder `{folder}` holds no images", hint)
    return files


def _read_image(path: Path, size: Any, where: _Where, mode: str | None = None) -> np.ndarray:
    """Pixels as uint8: (H, W) for grey images, (H, W, 3) for colour (alpha is dropped);
    `mode` ("L" or "RGB") converts every image to it (`dnn predict`, runtime/inputs.py)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            im = opened.convert(mode or ("L" if opened.mode in _GRAY_MODES else "RGB"))
        if size is not None:
            im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(im)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        reason = "not an image Pillow can read" if isinstance(e, UnidentifiedImageError) else e
        message = f"cannot read image `{path}`: {reason}"
        raise where.file(E_FILE, message, _start(str(path)), "replace or remove the file") from None


def _check_sizes(written: str, files: list[Path], pixels: list[np.ndarray], where: _Where) -> None:
    """Without `size`, every image must have the most common height and width."""
    sizes = [p.shape[:2] for p in pixels]
    (h, w), _ = Counter(sizes).most_common(1)[0]
    for f, s in zip(files, sizes, strict=True):
        if s != (h, w):
            message = f"image `{f}` is {s[0]}x{s[1]} pixels but the others are {h}x{w}"
            fix = f'`images("{written}", size = [{h}, {w}])`'
            hint = f"give all images one size, or resize them: {fix}"
            raise where.spec(E_DATA, message, hint)


# ----------------------------------------------------------------------------- predict inputs


def _read_npy(shown: str, where: _Where) -> np.ndarray:
    try:
        a = np.load(shown, allow_pickle=False)
    except OSError as e:
        raise _cannot_read(shown, e, where) from None
    except (ValueError, EOFError, zipfile.BadZipFile):
        a = None
    if not isinstance(a, np.ndarray):
        message = f"cannot read `{shown}`: not a NumPy .npy array"
        raise where.spec(E_FILE, message, "save the examples with `np.save(path, x)`")
    return _numbers(a, "the array", shown, where)


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
    from .tabular import Raw

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


_INPUT_READERS: dict[str, Callable[[str, _Where], np.ndarray]] = {
    ".npy": _read_npy,
    ".csv": _read_csv_inputs,
}


def _as_examples(x: np.ndarray, shape: tuple[int, ...], shown: str, where: _Where) -> np.ndarray:
    if x.shape[1:] == shape:
        return x
    if x.shape == shape:
        return x[None]
    if math.prod(x.shape[1:]) == math.prod(shape):
        return x.reshape((len(x), *shape))
    raise where.spec(
        E_DATA,
        f"`{shown}` holds examples of shape {fmt_shape(x.shape[1:])} but the model takes "
        f"{fmt_shape(shape)}",
        f"give {math.prod(shape)} values per example, one example per row",
    )


# ----------------------------------------------------------------------------- several outputs


# The targets of built-in sets with several (BUILTIN_DATA's `targets`), from their labels.
_BUILTIN_TARGETS: dict[str, Callable[[np.ndarray], dict[str, np.ndarray]]] = {
    "digits_multi": lambda y: {"digit": y, "odd": y % 2},
}


def _builtin_outputs(ref: Ref, xk: str) -> tuple[str, dict[str, np.ndarray]]:
    name = str(ref.arg("name"))
    x, y, _ = _builtin_arrays(name)
    x = np.asarray(x, np.float32).reshape(len(x), *BUILTIN_DATA[name]["shape"])
    return f"builtin:{name}", {xk: x, **_BUILTIN_TARGETS[name](np.asarray(y))}


def load_outputs(
    ref: Ref,
    outputs: tuple[tuple[str, str, int], ...],
    *,
    base_dir: Path,
    span: Span,
    sources: Mapping[str, str],
) -> tuple[Table, tuple[Block, ...]]:
    """Targets for a model with several outputs: an npz archive's `x` and one array per output,
    or a CSV file's columns named after the outputs (`_csv_outputs`), or a built-in set's named
    targets. `outputs` holds (name, task, units) in the model's order.

    The targets are laid side by side in one float32 array (class labels as whole numbers,
    exact in float32), so splitting, batching and sharding treat them as one; `Block`s say
    where each output's columns are.
    """
    where = _Where(span, sources, span)
    several = _source(ref).outputs
    if several is None:
        raise InternalError(f"several outputs from `{ref.name}` (check refuses it)")
    return several(ref, outputs, base_dir, where)


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


# ----------------------------------------------------------------------------- implementations


class Source(NamedTuple):
    """A data source word's implementation: `load` reads its examples and targets; `outputs`
    reads the targets of a model with several outputs (None where the source has none)."""

    load: Callable[[Ref, str, Path, _Where], Table]
    outputs: Callable[[Ref, Outputs, Path, _Where], tuple[Table, tuple[Block, ...]]] | None = None


def _source(ref: Ref) -> Source:
    source: Source = DATASETS.implementation(ref.name)
    return source


provides("dataset", "builtin", Source(_load_builtin, _builtin_several))
provides("dataset", "csv", Source(_load_csv, _csv_outputs))
provides("dataset", "npz", Source(_load_npz, _npz_several))
provides("dataset", "images", Source(_load_images))


def _through_examples(ref: Ref, task: str, base_dir: Path, where: _Where) -> Table:
    """A word read through its streamed `Examples` (runtime/data/sources.py), every row."""
    from .data import sources

    return sources.load(ref, task, base_dir, where)


for _word in ("npy", "parquet", "shards"):
    provides("dataset", _word, Source(_through_examples))
