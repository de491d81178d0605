"""`data.cache = true`: a streamed source's decoded examples kept on disk, so that each is
decoded once, not once an epoch (and not again by the next run over the same files).

Part of the sources stage (runtime/data/sources.py). An example is stored as its source
decodes it, before the cheap last step (an image's 8-bit pixels, not its floats; a CSV row's
numbers), in three NumPy files of one folder that every reading process maps:

- `x.npy` and `y.npy`: the stored inputs and targets, one row per example;
- `check.npy`: 0 for a row not stored yet, else `1 << 32 | crc32(x row, y row)`.

A process that reads row i takes it from the maps where its check holds, else decodes it,
writes x and y, then the check: a row torn by a crash, or filled over a network file system
by two hosts at once, fails its check and is decoded again. The folder's name holds a hash of
the source as the spec writes it and of every file's size and modification time, so a changed
file starts a new cache (and the stale one of that source is removed).

The folder, `.dnn-cache/` beside the source file (inside an image folder, where the hidden
name is not a class), or `~/.cache/dnn/data/` where that cannot be written or lacks the disk
space: the files' whole size is reserved when they are made (a write through a map to a full
disk would kill the process). One process makes a cache, under a lock of its root folder
(others wait, then use it); a process that maps a cache holds a shared lock on it, so a run
starting over changed files never removes a cache another run still reads. A cache that
cannot be opened, or vanishes, leaves its reader decoding as without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.values import Ref

VERSION = 1
_DONE = 1 << 32
_PROBES = 64  # examples tried for one that decodes, to learn the stored rows' shapes
_FILES = ("x", "y", "check")
_ABANDONED = 24 * 3600  # seconds after which a half-made cache (its maker stopped) is removed

try:
    import fcntl
except ImportError:  # no advisory locks (Windows): one process at a time is assumed
    fcntl = None  # type: ignore[assignment]


class Cache:
    """The maps of one source's cache folder, opened in each process on first use (with a
    shared lock on the folder held while they are open); `writable` False: a cache read but
    not filled (its folder is read-only to this user)."""

    def __init__(self, folder: Path, n: int, writable: bool = True) -> None:
        self.folder, self.n, self.writable = folder, n, writable
        self._lock = threading.Lock()
        self._maps: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._broken = False  # the files could not be opened: read without them
        self._held: Any = None  # the open file of the shared lock

    def __getstate__(self) -> dict[str, Any]:  # Grain's workers map the files themselves
        return {"folder": self.folder, "n": self.n, "writable": self.writable}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["folder"], state["n"], state["writable"])  # type: ignore[misc]

    def maps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The three maps, or None where the folder cannot be opened (removed meanwhile)."""
        if self._maps is None and not self._broken:
            with self._lock:
                if self._maps is None and not self._broken:
                    try:
                        self._held = _shared(self.folder)
                        mode = "r+" if self.writable else "r"
                        self._maps = tuple(  # type: ignore[assignment]
                            np.load(self.folder / f"{k}.npy", mmap_mode=mode) for k in _FILES
                        )
                    except (OSError, ValueError):
                        self._broken = True
        return self._maps

    def read(self, examples: Any, i: int, finish: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Example i as `examples._read(i)` gives it (`finish`), else as `examples._load(i)`
        does: from the maps, or decoded and stored."""
        done = examples._finish if finish else (lambda x: x)
        maps = self.maps()
        if maps is None:
            return examples._read(i) if finish else examples._load(i)
        xs, ys, checks = maps
        check = int(checks[i])
        if check:
            x, y = np.array(xs[i]), np.array(ys[i])
            if check == _DONE | _crc(x, y):
                return done(x), y
        x, y = examples._load(i)  # a bad example raises here, and is not stored
        x, y = np.asarray(x), np.asarray(y)
        fits = x.shape == xs.shape[1:] and x.dtype == xs.dtype and y.shape == ys.shape[1:]
        if self.writable and fits:
            xs[i], ys[i] = x, y.astype(ys.dtype)
            checks[i] = _DONE | _crc(xs[i], ys[i])
        return done(x), y

    def filled(self) -> int:
        """How many examples are stored."""
        maps = self.maps()
        return 0 if maps is None else int(np.count_nonzero(maps[2]))


def _crc(x: np.ndarray, y: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(y), zlib.crc32(np.ascontiguousarray(x)))


def attach(examples: Any, ref: Ref, task: str) -> Cache | None:
    """Give `examples` (what the source word `ref` opened) its cache: the one its files have,
    or a new one (where some example decodes: the first that does sets the rows' shapes).
    None for a source read from a memory map or by row groups already (npz, npy, parquet,
    shards)."""
    if not examples.cacheable or len(examples) == 0:
        return None
    n, origin = len(examples), os.path.abspath(examples.origin)
    source = _hash([VERSION, _reading(ref), task, origin])[:10]
    name = f"{examples.kind}-{source}-{_hash([_stamp(p) for p in examples.files()])[:16]}"
    roots = _roots(origin)
    for root in roots:
        writable = _complete(root / name, n)
        if writable is not None:
            examples._cache = Cache(root / name, n, writable)
            return examples._cache
    probe = _probe(examples)
    if probe is None:
        return None
    for root in roots:
        folder = _made(root, name, source, n, *probe)
        if folder is not None:
            examples._cache = Cache(folder, n)
            return examples._cache
    return None


def _reading(ref: Ref) -> str:
    """How a source word reads its files, without the path as the spec spells it (the
    absolute path counts instead): specs naming one folder from two places share its cache."""
    from dnn.compiler.registry.data import DATASETS

    entry = DATASETS.lookup(ref.name)
    path = entry.needs.file if entry is not None else None
    return str(Ref(ref.kind, ref.name, tuple(a for a in ref.args if a[0] != path)))


def _probe(examples: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The stored form of the first example that decodes (its shapes and dtypes)."""
    from .examples import _Bad

    for i in range(min(len(examples), _PROBES)):
        try:
            x, y = examples._load(i)
        except _Bad:
            continue
        return np.asarray(x), np.asarray(y)
    return None


def _stamp(path: str) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError:  # the example names it as bad when read
        return (path, -1, -1)
    return (path, st.st_size, st.st_mtime_ns)


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, default=str).encode()).hexdigest()


def _roots(origin: str) -> list[Path]:
    """Where a source's caches go: beside it, else the user's cache folder."""
    beside = Path(origin) if os.path.isdir(origin) else Path(origin).parent
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [beside / ".dnn-cache", Path(base) / "dnn" / "data"]


def _made(root: Path, name: str, source: str, n: int, x: np.ndarray, y: np.ndarray) -> Path | None:
    """The cache folder `name` under `root`, made by this process or by another that held the
    root's lock first; None where `root` refuses it (unwritable, or the disk lacks the space).
    Its files are made under a temporary name and renamed at once."""
    folder = root / name
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _exclusive(root / ".lock"):
            if _complete(folder, n):  # made while this process waited for the lock
                return folder
            tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
            try:
                for key, a in zip(_FILES, (x, y, np.zeros((), np.int64)), strict=True):
                    path = tmp / f"{key}.npy"
                    np.lib.format.open_memmap(path, "w+", a.dtype, (n, *a.shape)).flush()
                    _reserve(path)
                _remove(folder)  # a damaged folder of that name (the lock keeps out its makers)
                os.replace(tmp, folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            _drop_stale(root, name, source)
    except OSError:
        return None
    return folder if _complete(folder, n) else None


def _drop_stale(root: Path, name: str, source: str) -> None:
    """This source's caches of files as they were, where no process reads them, and caches
    half made by a process that stopped long ago."""
    now = time.time()
    for other in root.glob(f"*{source}-*"):
        if other.name.startswith("."):  # half made: its maker may still be at it
            if _age(other, now) > _ABANDONED:
                shutil.rmtree(other, ignore_errors=True)
        elif other.name != name and other.is_dir():
            with contextlib.suppress(OSError), _unread(other):
                shutil.rmtree(other)


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


def _remove(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)


def _reserve(path: Path) -> None:
    """Take the file's disk space now (OSError where it is lacking): a map written past a
    full disk kills the process (SIGBUS) rather than raising."""
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(f.fileno(), 0, size)
            return
        offset = np.load(path, mmap_mode="r").offset  # the rows, after the .npy header
        chunk = bytes(1 << 24)  # elsewhere (macOS: sparse files too), written out
        f.seek(offset)
        for start in range(offset, size, len(chunk)):
            f.write(chunk[: min(len(chunk), size - start)])
        f.flush()
        os.fsync(f.fileno())


def _complete(folder: Path, n: int) -> bool | None:
    """Whether `folder` holds a cache of n rows: True where this process can fill it, False
    where it can only read it, None where it is not there or not whole."""
    for mode, writable in (("r+", True), ("r", False)):
        try:
            xs, ys, checks = (np.load(folder / f"{k}.npy", mmap_mode=mode) for k in _FILES)
        except PermissionError:
            continue
        except (OSError, ValueError):
            return None
        whole = len(xs) == len(ys) == n and checks.shape == (n,) and checks.dtype == np.int64
        return writable if whole else None
    return None


# ------------------------------------------------------------------ locks


def _shared(folder: Path) -> Any:
    """A shared lock on a cache folder, held while the returned file stays open (for the
    process's life: the maps live as long)."""
    f = open(folder / "check.npy", "rb")  # noqa: SIM115 - held open on purpose
    if fcntl is not None:
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
    return f


@contextlib.contextmanager
def _unread(folder: Path) -> Iterator[None]:
    """Held while no process maps `folder` (OSError where one does)."""
    with open(folder / "check.npy", "rb") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """The root folder's lock, for making a cache: one process at a time."""
    with open(path, "a+b") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield
