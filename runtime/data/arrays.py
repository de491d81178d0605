"""The `npz` and `npy` sources: streamed, input rows read from memory-mapped arrays; read whole
(`_load_npz`, and `_read_npy` for `dnn predict`), at the end.

Part of the sources stage (runtime/data/sources.py, which says what every source gives).
"""

from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import E_DATA, E_FILE, E_STREAM
from dnn.compiler.registry.layers import fmt_shape
from dnn.compiler.values import Ref

from .examples import Examples, Opts, _Bad
from .table import _LABEL_HINT, Table, _cannot_read, _choose, _resolve, _start, _Where


@dataclass(frozen=True)
class _Member:
    """An array stored as .npy bytes at `offset` of `path`, mapped without reading it."""

    path: str
    offset: int
    dtype: str
    shape: tuple[int, ...]
    fortran: bool

    def map(self) -> np.ndarray:
        if not math.prod(self.shape):
            return np.zeros(self.shape, self.dtype)
        order = "F" if self.fortran else "C"
        return np.memmap(self.path, self.dtype, "r", self.offset, self.shape, order)


@dataclass(frozen=True)
class _Held:
    """An array read whole (an .npz member, compressed or not), where `ArrayExamples` would
    map a `_Member`: what an in-memory run under `on_error = skip` reads an archive as."""

    path: str
    array: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> str:
        return str(self.array.dtype.str)

    def map(self) -> np.ndarray:
        return self.array


def _npy_header(f: Any, path: str, what: str, where: _Where) -> tuple[int, str, tuple, bool]:
    """The .npy header at `f`'s position: (data offset, dtype, shape, fortran order)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        shape, fortran, dtype = (
            fmt.read_array_header_1_0(f) if version == (1, 0) else fmt.read_array_header_2_0(f)
        )
    except (ValueError, OSError) as e:
        message = f"cannot read {what} in `{path}`: not a NumPy array ({e})"
        raise where.file(E_FILE, message, _start(path), "save it with `np.save`") from None
    if dtype.hasobject:
        message = f"{what} in `{path}` holds Python objects, which are never unpickled"
        raise where.file(E_DATA, message, _start(path), "save a numeric array")
    return f.tell(), dtype.str, tuple(shape), bool(fortran)


def _npy_member(path: str, where: _Where) -> _Member:
    try:
        with open(path, "rb") as f:
            offset, dtype, shape, fortran = _npy_header(f, path, "the array", where)
    except OSError as e:
        raise _cannot_read(path, e, where) from None
    return _Member(path, offset, dtype, shape, fortran)


def _npz_members(path: str, written: str, keys: dict[str, str], where: _Where) -> list[_Member]:
    """Members `keys` (argument -> array name) of an .npz archive, each located by its offset
    in the zip file; a compressed member cannot be mapped and is refused."""
    open_npz(path, where, "save the arrays with `np.savez`").close()  # the usual errors
    out = []
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        names = {n.removesuffix(".npy"): n for n in z.namelist()}
        for arg, key in keys.items():
            if key not in names:
                fix = f'`npz("{written}", {arg} = "{{}}")`'
                hint = _choose(key, sorted(names), "arrays in it", fix)
                raise where.spec(E_DATA, f"`{path}` has no array `{key}`", hint)
            info = z.getinfo(names[key])
            if info.compress_type != zipfile.ZIP_STORED:
                message = f"array `{key}` in `{path}` is compressed, so it cannot be memory-mapped"
                hint = "save with `np.savez` (not `savez_compressed`), or set `stream = false`"
                raise where.file(E_STREAM, message, _start(path), hint)
            out.append(zip_member(z, f, names[key], f"array `{key}`", where))
    return out


def zip_member(z: zipfile.ZipFile, f: Any, name: str, what: str, where: _Where) -> _Member:
    """The stored (uncompressed) .npy member `name` of the zip file open as `z` and `f`."""
    info = z.getinfo(name)
    f.seek(info.header_offset)
    local = f.read(30)  # the local file header: its name and extra field lengths
    start = 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
    f.seek(info.header_offset + start)
    offset, dtype, shape, fortran = _npy_header(f, z.filename or "", what, where)
    return _Member(z.filename or "", offset, dtype, shape, fortran)


class ArrayExamples(Examples):
    """Rows of a memory-mapped input array; the targets, checked and converted as the
    in-memory loader does when the source opens, are kept in memory (N labels or values)."""

    cacheable = False  # read from a memory map: nothing to keep

    def __init__(
        self,
        x: _Member | _Held,
        xk: str,
        y: np.ndarray,
        names: tuple[str, ...],
        task: str,
        opts: Opts,
    ) -> None:
        super().__init__(opts)
        self._x, self._xk, self._y = x, xk, y
        self.origin, self.task = x.path, task
        self.shape = x.shape[1:]
        self.dtype = np.dtype(np.int32 if np.dtype(x.dtype).kind in "biu" else np.float32)
        self.classes = len(names) if task == "classification" else None
        self.class_names = names if task == "classification" else ()

    def __len__(self) -> int:
        return len(self._y)

    def _array(self) -> np.ndarray:
        return self._opened("_open_x", self._x.map)

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(self._array()[i]).astype(self.dtype)
        if self.dtype == np.float32 and not np.isfinite(x).all():
            pos = tuple(int(p) for p in np.argwhere(~np.isfinite(x))[0])
            kind = "NaN" if np.isnan(x[pos]) else "an infinite value"
            at = f", feature {pos[0]}" if len(pos) == 1 else f", position {pos}" if pos else ""
            message = f"array `{self._xk}` in `{self.origin}` has {kind} at example {i}{at}"
            hint = "fill in or drop the examples with missing values before training"
            raise _Bad(f"example {i}", message, _start(self.origin), hint)
        return x, self._y[i]


def _array_targets(
    raw: np.ndarray, yk: str, n: int, xk: str, shown: str, task: str, where: _Where
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The targets as the in-memory `npz` loader checks and converts them."""
    m = 1 if raw.ndim == 0 else len(raw)
    if m != n or not n:
        message = f"array `{xk}` in `{shown}` has {n} examples but `{yk}` has {m}"
        if m == n:
            message = f"`{shown}` holds no examples"
        hint = "the first axis of both arrays indexes the examples"
        raise where.file(E_DATA, message, _start(shown), hint)
    if task == "regression":
        return _numbers(raw, f"array `{yk}`", shown, where), ()
    return _npz_labels(raw, yk, shown, where)


def _open_npz(ref: Ref, task: str, base: Path, opts: Opts) -> Examples:
    shown = _resolve(base, ref.arg("path"))
    xk, yk = str(ref.arg("x")), str(ref.arg("y"))
    x, y = _npz_members(shown, ref.arg("path"), {"x": xk, "y": yk}, opts.where)
    return _arrays(x, y, xk, yk, task, opts)


def _held_npz(ref: Ref, task: str, base: Path, opts: Opts) -> Examples:
    """An .npz archive read whole as `Examples` (each row checked as the streamed reader
    checks it): the in-memory reader under `on_error = skip`."""
    shown = _resolve(base, ref.arg("path"))
    xk, yk = str(ref.arg("x")), str(ref.arg("y"))
    raw_x, raw_y = _read_npz(shown, ref.arg("path"), {"x": xk, "y": yk}, opts.where)
    return _arrays(_Held(shown, raw_x), _Held(shown, raw_y), xk, yk, task, opts)


def _open_npy(ref: Ref, task: str, base: Path, opts: Opts) -> Examples:
    xs, ys = (_resolve(base, ref.arg(k)) for k in ("x", "y"))
    x, y = (_npy_member(p, opts.where) for p in (xs, ys))
    return _arrays(x, y, "x", "y", task, opts)


def _arrays(
    x: _Member | _Held, y: _Member | _Held, xk: str, yk: str, task: str, opts: Opts
) -> Examples:
    where = opts.where
    check_inputs(x, xk, where)
    targets, names = _array_targets(np.asarray(y.map()), yk, x.shape[0], xk, y.path, task, where)
    return ArrayExamples(x, xk, targets, names, task, opts)


def check_inputs(x: _Member, xk: str, where: _Where) -> None:
    """A mapped input array holds numbers, one row per example."""
    if not x.shape or np.dtype(x.dtype).kind not in "biuf":
        problem = "is a single value" if not x.shape else f"holds `{np.dtype(x.dtype)}` values"
        message = f"array `{xk}` in `{x.path}` {problem}, not numbers with one row per example"
        hint = "save a numeric array whose first axis indexes the examples"
        raise where.file(E_DATA, message, _start(x.path), hint)


# ------------------------------------------------------------------ read whole (in memory)


def _np_load(shown: str, where: _Where) -> Any:
    """What `np.load` reads from a file (no pickles): None where it is no NumPy file, the
    error where the file cannot be read."""
    try:
        return np.load(shown, allow_pickle=False)
    except OSError as e:
        raise _cannot_read(shown, e, where) from None
    except (ValueError, EOFError, zipfile.BadZipFile):
        return None


def open_npz(shown: str, where: _Where, hint: str) -> Any:
    """An .npz archive (no pickles), or the error that it cannot be read or is not one."""
    archive = _np_load(shown, where)
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


def _read_npy(shown: str, where: _Where) -> np.ndarray:
    a = _np_load(shown, where)
    if not isinstance(a, np.ndarray):
        message = f"cannot read `{shown}`: not a NumPy .npy array"
        raise where.spec(E_FILE, message, "save the examples with `np.save(path, x)`")
    return _numbers(a, "the array", shown, where)
