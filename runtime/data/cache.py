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
disk would kill the process).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np

VERSION = 1
_DONE = 1 << 32
_PROBES = 64  # examples tried for one that decodes, to learn the stored rows' shapes


class Cache:
    """The maps of one source's cache folder (opened in each process on first use)."""

    def __init__(self, folder: Path, n: int) -> None:
        self.folder, self.n = folder, n
        self._lock = threading.Lock()
        self._maps: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:  # Grain's workers map the files themselves
        return {"folder": self.folder, "n": self.n}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["folder"], state["n"])  # type: ignore[misc]

    def maps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._maps is None:
            with self._lock:
                if self._maps is None:
                    self._maps = tuple(  # type: ignore[assignment]
                        np.load(self.folder / f"{k}.npy", mmap_mode="r+")
                        for k in ("x", "y", "check")
                    )
        assert self._maps is not None
        return self._maps

    def read(self, examples: Any, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Example i as `examples._read(i)` gives it: from the maps, or decoded and stored."""
        xs, ys, checks = self.maps()
        check = int(checks[i])
        if check:
            x, y = np.array(xs[i]), np.array(ys[i])
            if check == _DONE | _crc(x, y):
                return examples._finish(x), y
        x, y = examples._load(i)  # a bad example raises here, and is not stored
        x, y = np.asarray(x), np.asarray(y)
        if x.shape == xs.shape[1:] and x.dtype == xs.dtype and y.shape == ys.shape[1:]:
            xs[i], ys[i] = x, y.astype(ys.dtype)
            checks[i] = _DONE | _crc(xs[i], ys[i])
        return examples._finish(x), y

    def filled(self) -> int:
        """How many examples are stored."""
        return int(np.count_nonzero(self.maps()[2]))


def _crc(x: np.ndarray, y: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(y), zlib.crc32(np.ascontiguousarray(x)))


def attach(examples: Any, spelled: str, task: str) -> Cache | None:
    """Give `examples` its cache: the one its files have, or a new one (where some example
    decodes: the first that does sets the rows' shapes). None for a source read from a
    memory map or by row groups already (npz, npy, parquet, shards)."""
    if not examples.cacheable or len(examples) == 0:
        return None
    n, origin = len(examples), os.path.abspath(examples.origin)
    source = _hash([VERSION, spelled, task, origin])[:10]
    name = f"{examples.kind}-{source}-{_hash([_stamp(p) for p in examples.files()])[:16]}"
    roots = _roots(origin)
    found = next((r / name for r in roots if _complete(r / name, n)), None)
    if found is None:
        probe = _probe(examples)
        if probe is None:
            return None
        found = next((f for r in roots if (f := _made(r, name, source, n, *probe))), None)
    if found is not None:
        examples._cache = Cache(found, n)
    return examples._cache


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
    """The cache folder `name` under `root`, made empty where it is not there (its files
    written under a temporary name, then renamed at once); None where `root` refuses."""
    folder = root / name
    shutil.rmtree(folder, ignore_errors=True)  # a torn or foreign folder of that name
    tmp = root / f".{name}.{os.getpid()}.tmp"
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        for key, a in (("x", x), ("y", y), ("check", np.zeros((), np.int64))):
            path = tmp / f"{key}.npy"
            np.lib.format.open_memmap(path, "w+", a.dtype, (n, *a.shape)).flush()
            _reserve(path)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process made it first
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    if not _complete(folder, n):
        return None
    for stale in root.glob(f"*-{source}-*"):  # this source's caches of files as they were
        if stale.name != name and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    return folder


def _reserve(path: Path) -> None:
    """Take the file's disk space now (OSError where it is lacking): a map written past a
    full disk kills the process (SIGBUS) rather than raising."""
    if hasattr(os, "posix_fallocate"):  # not on macOS, whose files are not sparse anyway
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)


def _complete(folder: Path, n: int) -> bool:
    """Whether `folder` holds a cache of n rows that this process can write."""
    try:
        xs, ys, checks = (np.load(folder / f"{k}.npy", mmap_mode="r+") for k in ("x", "y", "check"))
    except (OSError, ValueError):
        return False
    return len(xs) == len(ys) == n and checks.shape == (n,) and checks.dtype == np.int64
