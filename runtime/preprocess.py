"""Input normalization (`normalize = ...`): statistics fitted on the train split, applied to any.

`fit(ref, x_train)` computes the statistics of a normalizer in float64 (one pass over the rows in
chunks of 4096, merged by Chan et al.'s update: runtime/data/fitted.py, which a streamed source's
pass shares, so both give the same numbers bit for bit) and returns them as plain
NumPy arrays (saved with the checkpoint by `np.savez`, no pickle); `apply(ref, stats, x)` then
transforms any batch (train, val, test, predict) with those train statistics, to float32.
NumPy only: no JAX here, the transform runs once per data set, before training.

"Per feature" means per element of one example: inputs are flattened to (N, D), so each
pixel-channel of an image is a feature with its own mean and spread (CS231n's mean image), and
the principal components are those of the D x D covariance `X_c^T X_c / N`. The formulas are
those of the registry entries (`compiler/registry/data.py`, `dnn help standardize`).

Statistics by normalizer (all float64, D = features per example, k = components kept):
  standardize        mean (D,), std (D,)       std = 1 where a feature is constant
  minmax, scale      min (D,), range (D,)      range = max - min, 1 where a feature is constant
  mean_subtraction   mean (D,)
  pca, pca_whiten    mean (D,), components (D, k), variances (k,)   k = n, or D when n is none
  zca                mean (D,), components (D, D), variances (D,)
Components are the covariance's eigenvectors by decreasing eigenvalue (`variances`), each with
its largest-magnitude entry positive so that refitting the same data gives the same signs.

Regression targets (`targets = ...`, `Targets`): an `invertible` normalizer is fitted the same
way on the train split's targets, one feature per output unit, applied to the targets of every
split, and inverted (`Targets.invert`) on the model's outputs for the metrics and predictions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from dnn.compiler.registry.core import provides
from dnn.compiler.registry.data import NORMALIZERS
from dnn.compiler.rules import example_shape
from dnn.compiler.values import Ref

from .data.fitted import Summary, summarize_array

Stats = dict[str, np.ndarray]


class Normalizer(NamedTuple):
    """How one normalizer fits its statistics and applies them to flattened (N, D) inputs.

    `fit` turns a float64 `Summary` of the train rows (runtime/data/fitted.py: one pass in
    fixed chunks, in memory and streamed alike) into the statistics; `covariance`: the summary
    must hold the co-moment matrix. `affine`, for the `invertible` ones: (shift, scale) per
    feature with x' = (x - shift) / scale, which `Targets.invert` reads to map outputs back to
    the data's units.
    """

    fit: Callable[[Ref, Summary], Stats]
    apply: Callable[[Ref, Stats, np.ndarray], np.ndarray]
    affine: Callable[[Stats], tuple[np.ndarray, np.ndarray]] | None = None
    covariance: bool = False


# ----------------------------------------------------------------------------- statistics


def _nothing(ref: Ref, s: Summary) -> Stats:
    return {}


def _moments(ref: Ref, s: Summary) -> Stats:
    # std over N (NumPy's default ddof = 0); exactly 1 where a feature has a single value over
    # the split (max == min is exact, unlike a std near 0)
    std = np.where(s.hi == s.lo, 1.0, np.sqrt(s.m2 / s.n))
    return {"mean": s.mean, "std": std}


def _extremes(ref: Ref, s: Summary) -> Stats:
    return {"min": s.lo, "range": np.where(s.hi > s.lo, s.hi - s.lo, 1.0)}


def _centre(ref: Ref, s: Summary) -> Stats:
    return {"mean": s.mean}


def _components(s: Summary, k: int) -> Stats:
    """Mean and the k leading eigenpairs of the covariance X_c^T X_c / N."""
    assert s.comoment is not None, "a PCA's summary holds the co-moment matrix"
    u_s = np.linalg.eigh(s.comoment / s.n)
    order = np.argsort(u_s[0])[::-1][:k]
    ev, u = u_s[0][order], u_s[1][:, order]
    # Sign of each eigenvector fixed as scikit-learn's `svd_flip` does: largest entry positive.
    signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(u.shape[1])])
    # Round-off can leave the eigenvalues of a singular covariance slightly below 0.
    return {"mean": s.mean, "components": u * signs, "variances": ev.clip(0)}


def _kept(ref: Ref, s: Summary) -> int:
    """The number of components `n` a PCA keeps (all when none), checked against the data."""
    n, d = ref.arg("n"), s.features
    if n is None:
        return d
    if n > d:
        raise ValueError(
            f"`{ref}` keeps {n} components but an example has only {d} features; use n <= {d}"
        )
    if n > s.n:
        raise ValueError(
            f"`{ref}` keeps {n} components but the train split has only {s.n} examples; "
            f"use n <= {s.n} or more training data"
        )
    return n


def _pca(ref: Ref, s: Summary) -> Stats:
    return _components(s, _kept(ref, s))


def _all_components(ref: Ref, s: Summary) -> Stats:
    return _components(s, s.features)


# ----------------------------------------------------------------------------- transforms


def _identity(ref: Ref, st: Stats, x: np.ndarray) -> np.ndarray:
    return x


def _standardize(ref: Ref, st: Stats, x: np.ndarray) -> np.ndarray:
    return (x - st["mean"]) / st["std"]


def _minmax(ref: Ref, st: Stats, x: np.ndarray) -> np.ndarray:
    return (x - st["min"]) / st["range"]


def _scale(ref: Ref, st: Stats, x: np.ndarray) -> np.ndarray:
    return 2 * _minmax(ref, st, x) - 1


def _mean_subtraction(ref: Ref, st: Stats, x: np.ndarray) -> np.ndarray:
    return x - st["mean"]


def _project(ref: Ref, st: Stats, x: np.ndarray) -> np.ndarray:
    return (x - st["mean"]) @ st["components"]


def _pca_whiten(ref: Ref, st: Stats, x: np.ndarray) -> np.ndarray:
    return _project(ref, st, x) / np.sqrt(st["variances"] + ref.arg("eps"))


def _zca(ref: Ref, st: Stats, x: np.ndarray) -> np.ndarray:
    return _pca_whiten(ref, st, x) @ st["components"].T


# x' = (x - shift) / scale of each invertible normalizer; `scale`: 2 (x - min) / range - 1 is
# (x - (min + range / 2)) / (range / 2).
def _identity_affine(st: Stats) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(()), np.ones(())


def _standardize_affine(st: Stats) -> tuple[np.ndarray, np.ndarray]:
    return st["mean"], st["std"]


def _minmax_affine(st: Stats) -> tuple[np.ndarray, np.ndarray]:
    return st["min"], st["range"]


def _scale_affine(st: Stats) -> tuple[np.ndarray, np.ndarray]:
    return st["min"] + st["range"] / 2, st["range"] / 2


def _centre_affine(st: Stats) -> tuple[np.ndarray, np.ndarray]:
    return st["mean"], np.ones_like(st["mean"])


# One implementation per normalizer word (`NORMALIZERS.implementation(name)`).
provides("normalizer", "none", Normalizer(_nothing, _identity, _identity_affine))
provides("normalizer", "standardize", Normalizer(_moments, _standardize, _standardize_affine))
provides("normalizer", "minmax", Normalizer(_extremes, _minmax, _minmax_affine))
provides("normalizer", "scale", Normalizer(_extremes, _scale, _scale_affine))
provides("normalizer", "mean_subtraction", Normalizer(_centre, _mean_subtraction, _centre_affine))
provides("normalizer", "pca", Normalizer(_pca, _project, covariance=True))
provides("normalizer", "pca_whiten", Normalizer(_pca, _pca_whiten, covariance=True))
provides("normalizer", "zca", Normalizer(_all_components, _zca, covariance=True))

# ----------------------------------------------------------------------------- entry points


def _normalizer(ref: Ref) -> Normalizer:
    normalizer: Normalizer = NORMALIZERS.implementation(ref.name)
    return normalizer


def _flat(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.reshape(len(x), math.prod(x.shape[1:])).astype(np.float64)  # -1 fails when N = 0


def fit(ref: Ref, x: np.ndarray) -> Stats:
    """The statistics of normalizer `ref` over train inputs `x` of shape (N, *shape), float64."""
    if ref.name == "none":
        return {}
    if len(x) == 0:
        raise ValueError(f"cannot fit `{ref}` on an empty train split")
    flat = np.ascontiguousarray(_flat(x))
    return fit_summary(ref, summarize_array(flat, needs_covariance(ref)))


def fit_summary(ref: Ref, summary: Summary | None) -> Stats:
    """The statistics of normalizer `ref` from a float64 summary of the train rows (None: no
    rows); the one step `fit` and a streamed pass (runtime/data/fitted.py) share."""
    if ref.name == "none":
        return {}
    if summary is None:
        raise ValueError(f"cannot fit `{ref}` on an empty train split")
    return _normalizer(ref).fit(ref, summary)


def needs_covariance(ref: Ref) -> bool:
    """Whether normalizer `ref` fits on the covariance (its summary keeps the co-moments)."""
    return _normalizer(ref).covariance


def apply(ref: Ref, stats: Stats, x: np.ndarray) -> np.ndarray:
    """Normalize the batch `x` (N, *shape) with train statistics: float32 of `output_shape`.

    `none` leaves the examples as they are, integer token ids included.
    """
    if ref.name == "none":
        return x
    y = _normalizer(ref).apply(ref, stats, _flat(x))
    return y.reshape(len(y), *output_shape(ref, np.shape(x)[1:])).astype(np.float32)


def output_shape(ref: Ref, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of one example after normalizer `ref`: its entry's shape rule, the one
    `dnn check` uses (raises `Problem` where the normalizer cannot apply)."""
    return example_shape(ref, tuple(shape))


# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Targets:
    """A regression target normalizer (`data.targets`) with its train-split statistics.

    The model learns y' = (y - shift) / scale per output unit; `invert` maps its outputs back
    to the data's units for the metrics and `dnn predict`. `none` (no statistics) is the identity.

    With several outputs the targets sit side by side in one (N, width) array and only the
    regression outputs' `columns` are scaled (class labels stay whole numbers): the statistics
    are those of these columns, and every other column maps to itself.
    """

    ref: Ref = Ref("normalizer", "none")
    stats: Stats = field(default_factory=dict)
    columns: tuple[int, ...] | None = None  # None: every column (one output)
    width: int = 0  # with `columns`: the width of the whole target array

    @staticmethod
    def fitted(ref: Ref, y: np.ndarray, columns: tuple[int, ...] | None = None) -> Targets:
        """`ref` fitted on the train split's targets `y` (N, ...), statistics in float64; with
        `columns`, on those columns of a (N, width) array only."""
        if columns is None:
            return Targets(ref, fit(ref, y))
        return Targets(ref, fit(ref, y[:, list(columns)]), columns, y.shape[1])

    def apply(self, y: np.ndarray) -> np.ndarray:
        """Targets (N, ...) in the units the model learns: float32 (unchanged under `none`)."""
        if not len(y) or self.ref.name == "none":
            return y
        if self.columns is None:
            return apply(self.ref, self.stats, y)
        out = np.array(y, np.float32)
        out[:, list(self.columns)] = apply(self.ref, self.stats, y[:, list(self.columns)])
        return out

    def invert(self, z: Any, start: int = 0) -> Any:
        """Outputs (N, ...) in learned units -> the data's units, z * scale + shift per unit.
        `start`: where z's units begin in the target array (an output's block; 0 for one).

        Plain arithmetic in z's dtype, so a NumPy or a JAX array (inside jit) alike; NumPy
        callers wanting float64 pass float64.
        """
        if self.ref.name == "none":
            return z
        shift, scale = self._affine()
        flat = z.reshape(z.shape[0], math.prod(z.shape[1:]))  # -1 fails when N = 0
        shift, scale = (a[:, start : start + flat.shape[1]] for a in (shift, scale))
        return (flat * scale.astype(flat.dtype) + shift.astype(flat.dtype)).reshape(z.shape)

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(shift, scale) rows (1, units) over the whole target array; 0 and 1 off `columns`."""
        affine = _normalizer(self.ref).affine
        assert affine is not None, f"`{self.ref}` is not invertible: `dnn check` refuses it"
        shift, scale = (np.asarray(a, np.float64).reshape(1, -1) for a in affine(self.stats))
        if self.columns is None:
            return shift, scale
        full = np.zeros((1, self.width)), np.ones((1, self.width))
        full[0][0, list(self.columns)], full[1][0, list(self.columns)] = shift[0], scale[0]
        return full
