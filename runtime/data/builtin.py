"""The `builtin` source: the built-in sets, read whole (they are small, and do not stream).

Nothing is downloaded: built-in sets come from scikit-learn's bundled loaders or from NumPy
generators with a fixed seed, so a built-in set is the same on every run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from dnn.compiler.diagnostics import E_DATA
from dnn.compiler.registry.data import BUILTIN_DATA
from dnn.compiler.values import Ref

from .table import Table, _Where

SEED = 0  # of the built-in generators: the same examples on every run

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
