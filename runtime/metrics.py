"""Metrics as accumulable statistics: a jitted `update` per batch, one `finish` per split.

`build(refs, classes)` turns the spec's `train { metrics = [...] }` into a `Metrics`. The training
loop carries `acc = m.init()` through `acc = m.update(acc, logits, y, mask)` (pure, jittable, fixed
shapes and dtypes, so it can sit in a `lax.scan` carry and never syncs with the host), then calls
`m.finish(acc)` once on the host for a `{key: float}` report in the order the spec wrote.

Statistics (each kept only when a requested metric reads it):

- `count`, `correct`: int32 examples and top-1 hits (accuracy);
- `top_k`: int32 hits, one per distinct `k`;
- `confusion`: int32 (C, C) counts, row = target, column = prediction (precision, recall, f1);
- `n`, `mean`, `m2`, `sse`, `sae`: examples, and per output unit the target mean and centered sum
  of squares (merged batch by batch with Chan, Golub & LeVeque's 1979 pairwise update, which
  stays accurate where `sum y^2 - (sum y)^2 / n` cancels in float32), the squared and the
  absolute error sums (mse, mae, r2).

Outputs and targets:

- classification: logits (N, C) with integer labels (N,), or one-hot / probability targets (N, C)
  (their argmax is the label); a single logit (N,) or (N, 1) is binary: prediction `[z > 0]`,
  label `[y > 0]` (so 0/1 and -1/1 targets both work) and C = 2. Ties between logits go to the
  lowest class index, for the prediction and for `top_k` alike, so `top_k(k = 1)` equals
  `accuracy`. A label outside 0..C-1 counts as a miss for accuracy and top_k and is left out of
  the confusion matrix.
- multi-label: logits (N, C) with multi-hot 0/1 rows (N, C): every unit is its own yes/no
  decision `[z > 0]`; accuracy is the fraction of correct decisions (Keras' binary accuracy),
  precision, recall and f1 count each label (macro over every label, as scikit-learn does for
  label-indicator targets); top_k does not apply.
- regression: outputs (N, ...) and targets of the same size per example, flattened to (N, D).

Averages follow scikit-learn with `zero_division=0`: a class never predicted scores precision 0,
a class absent from the targets scores recall 0 (and f1 0), and `macro` averages over the classes
that occur in the split's targets or predictions (scikit-learn's `labels=None`; a class absent
from both is left out rather than scored 0). `micro` pools the counts over classes. r2 follows
`r2_score(multioutput="uniform_average")`: per output unit, 1 for a constant target predicted
exactly, 0 for a constant target missed, then the mean over units; fewer than 2 examples give
nan. Every metric of an empty split is nan.

Report keys (`key(ref)`): the registry name when every argument has its default (`top_k`,
`precision`), else the name and the non-default argument values in registry order, joined by
`_` (`top_k(k = 3)` → `top_k_3`, `f1(average = micro)` → `f1_micro`). Aliases report under the
canonical name (`acc` → `accuracy`). A metric written twice is reported once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from dnn.compiler.diagnostics import InternalError
from dnn.compiler.registry.core import provides
from dnn.compiler.registry.metrics import METRICS
from dnn.compiler.values import Ref

Array = Any
Stats = dict[str, Any]  # the accumulator; in `finish`, its host copy as float64 NumPy arrays


def key(ref: Ref) -> str:
    """The report name of a metric: `accuracy`, `top_k` (k = 5), `top_k_3`, `precision_micro`."""
    entry = METRICS.lookup(ref.name)
    if entry is None:
        raise InternalError(f"`{ref.name}` is not a metric")
    defaults = {a.name: a.default for a in entry.args}
    changed = [str(v) for name, v in ref.args if str(v) != str(defaults.get(name))]
    return "_".join((entry.name, *changed))


class Metric(NamedTuple):
    """A metric word's implementation: the statistic it reads (`correct`, `top_k`, `confusion`
    or `regression`) and its value from the split's statistics."""

    reads: str
    finish: Callable[[Stats, Ref], float]


def _metric(name: str) -> Metric:
    metric: Metric = METRICS.implementation(name)
    return metric


# ---- host side: each word from the split's statistics (float64) ----


def _ratio(num: Any, den: Any) -> Any:
    """num / den elementwise, 0 where den is 0 (scikit-learn's zero_division=0)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _per_class(s: Stats, ref: Ref, num: Callable[..., Any], den: Callable[..., Any]) -> float:
    """Macro or micro average of num/den over the classes, from the confusion matrix (or, for
    multi-hot targets, the per-label counts: macro over every label, as scikit-learn does for
    label-indicator targets)."""
    if "tp" in s:
        tp, fp, fn = s["tp"], s["fp"], s["fn"]
        if s["count"] == 0:
            return float("nan")
        present = np.ones(tp.shape, bool)
    else:
        cm = s["confusion"]
        if cm.sum() == 0:
            return float("nan")
        tp, predicted, actual = np.diag(cm), cm.sum(axis=0), cm.sum(axis=1)
        fp, fn = predicted - tp, actual - tp
        present = (actual + predicted) > 0
    if str(ref.arg("average")) == "micro":
        return float(_ratio(num(tp, fp, fn).sum(), den(tp, fp, fn).sum()))
    return float(_ratio(num(tp, fp, fn), den(tp, fp, fn))[present].mean())


def _precision(s: Stats, ref: Ref) -> float:
    return _per_class(s, ref, lambda tp, fp, fn: tp, lambda tp, fp, fn: tp + fp)


provides("metric", "precision", Metric("confusion", _precision))


def _recall(s: Stats, ref: Ref) -> float:
    return _per_class(s, ref, lambda tp, fp, fn: tp, lambda tp, fp, fn: tp + fn)


provides("metric", "recall", Metric("confusion", _recall))


def _f1(s: Stats, ref: Ref) -> float:
    return _per_class(s, ref, lambda tp, fp, fn: 2 * tp, lambda tp, fp, fn: 2 * tp + fp + fn)


provides("metric", "f1", Metric("confusion", _f1))


def _per_example(total: Any, n: Any) -> float:
    return float(np.sum(total) / n) if n > 0 else float("nan")


def _accuracy(s: Stats, ref: Ref) -> float:
    return _per_example(s["correct"], s["count"])


provides("metric", "accuracy", Metric("correct", _accuracy))


def _top_k(s: Stats, ref: Ref) -> float:
    return _per_example(s["top_k"][s["ks"].index(ref.arg("k"))], s["count"])


provides("metric", "top_k", Metric("top_k", _top_k))


def _mse(s: Stats, ref: Ref) -> float:
    return _per_example(s["sse"], s["n"] * s["sse"].size)


provides("metric", "mse", Metric("regression", _mse))


def _mae(s: Stats, ref: Ref) -> float:
    return _per_example(s["sae"], s["n"] * s["sae"].size)


provides("metric", "mae", Metric("regression", _mae))


def _r2(s: Stats, ref: Ref) -> float:
    if s["n"] < 2:
        return float("nan")  # as scikit-learn: r2 is not defined for fewer than two examples
    sse, m2 = s["sse"], s["m2"]
    constant = m2 == 0  # scikit-learn's force_finite: 1 if also fitted exactly, else 0
    per_unit = np.where(
        constant, (sse == 0).astype(np.float64), 1 - sse / np.where(constant, 1, m2)
    )
    return float(per_unit.mean())


provides("metric", "r2", Metric("regression", _r2))


# ---- device side: one batch's statistics, pure and jittable ----


def _labels(y: Array, n: int, binary: bool) -> Array:
    """Integer labels (N,) from labels, one-hot / probability targets, or binary targets."""
    if binary:
        return (y.reshape(n) > 0).astype(jnp.int32)
    if y.ndim == 2 and y.shape[1] > 1:
        return jnp.argmax(y, axis=1).astype(jnp.int32)
    return y.reshape(n).astype(jnp.int32)


def _scores(logits: Array, classes: int) -> tuple[Array, bool]:
    """(N, C) scores and whether the output is a single binary logit (scored as [0, z])."""
    n = logits.shape[0]
    if logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
        z = logits.reshape(n, 1)
        return jnp.concatenate([jnp.zeros_like(z), z], axis=1), True
    if logits.ndim != 2 or logits.shape[1] != classes:
        raise ValueError(f"metrics expect logits of shape (N, {classes}), got {logits.shape}")
    return logits, False


def _rank(scores: Array, label: Array) -> Array:
    """How many classes come before the target: higher logit, or equal logit and lower index."""
    c = scores.shape[1]
    target = jnp.take_along_axis(scores, jnp.clip(label, 0, c - 1)[:, None], axis=1)
    lower = jnp.arange(c)[None, :] < label[:, None]
    before = (scores > target) | ((scores == target) & lower)
    return jnp.sum(before, axis=1)


def _classification(m: Metrics, acc: Stats, logits: Array, y: Array, w: Array) -> Stats:
    n = logits.shape[0]
    scores, binary = _scores(logits, m.classes)
    label = _labels(y, n, binary)
    c = scores.shape[1]
    valid = w & (label >= 0) & (label < c)
    rank = _rank(scores, label)
    out = dict(acc, count=acc["count"] + jnp.sum(w, dtype=jnp.int32))
    out["correct"] = acc["correct"] + jnp.sum(valid & (rank == 0), dtype=jnp.int32)
    if "top_k" in acc:
        hit = valid[:, None] & (rank[:, None] < jnp.asarray(m.ks)[None, :])
        out["top_k"] = acc["top_k"] + jnp.sum(hit, axis=0, dtype=jnp.int32)
    if "confusion" in acc:
        predicted = jnp.argmax(scores, axis=1)  # first maximum: ties to the lowest index
        cell = acc["confusion"].at[jnp.where(valid, label, 0), predicted]
        out["confusion"] = cell.add(valid.astype(jnp.int32))
    return out


def _multilabel(m: Metrics, acc: Stats, logits: Array, y: Array, w: Array) -> Stats:
    """Multi-hot targets (N, C): one yes/no decision per unit, predicted as [z > 0]."""
    pred, true, keep = logits > 0, y > 0, w[:, None]
    out = dict(acc, count=acc["count"] + jnp.sum(w, dtype=jnp.int32) * logits.shape[1])
    out["correct"] = acc["correct"] + jnp.sum(keep & (pred == true), dtype=jnp.int32)
    if "tp" in acc:
        for name, hit in (("tp", pred & true), ("fp", pred & ~true), ("fn", ~pred & true)):
            out[name] = acc[name] + jnp.sum(keep & hit, axis=0, dtype=jnp.int32)
    return out


def _regression(m: Metrics, acc: Stats, pred: Array, y: Array, w: Array) -> Stats:
    n, dtype = pred.shape[0], acc["mean"].dtype
    if pred.size != n * m.outputs or y.size != n * m.outputs:
        raise ValueError(
            f"metrics expect {m.outputs} output units per example, "
            f"got outputs {pred.shape} and targets {y.shape}"
        )
    pred, y = pred.reshape(n, m.outputs).astype(dtype), y.reshape(n, m.outputs).astype(dtype)
    keep = w[:, None]
    err = jnp.where(keep, y - pred, 0)  # `where`, not `* mask`: padding may hold nan
    y = jnp.where(keep, y, 0)
    # Chan, Golub & LeVeque (1979): merge (count, mean, centered sum of squares) of two parts.
    nb = jnp.sum(w, dtype=jnp.int32)
    na_f, nb_f = acc["n"].astype(dtype), nb.astype(dtype)
    total = jnp.maximum(na_f + nb_f, 1)
    # Shifted by a real example's targets (0 where the batch has none): a unit constant over
    # the split sums exact zeros, so its m2 stays exactly 0 (as float64 scikit-learn's does)
    # instead of float32 rounding noise that would blow its r2 up to -1e15.
    shift = y[jnp.argmax(w)]
    ys = jnp.where(keep, y - shift[None, :], 0)
    mean_s = jnp.sum(ys, axis=0) / jnp.maximum(nb_f, 1)
    mean_b = shift + mean_s
    m2_b = jnp.sum(jnp.where(keep, ys - mean_s[None, :], 0) ** 2, axis=0)
    delta = mean_b - acc["mean"]
    return dict(
        acc,
        n=acc["n"] + nb,
        mean=acc["mean"] + delta * (nb_f / total),
        m2=acc["m2"] + m2_b + delta**2 * (na_f * nb_f / total),
        sse=acc["sse"] + jnp.sum(err**2, axis=0),
        sae=acc["sae"] + jnp.sum(jnp.abs(err), axis=0),
    )


@dataclass(frozen=True)
class Metrics:
    """The metrics of a spec: `init`, `update` per batch (jittable), `finish` per split."""

    refs: tuple[Ref, ...]  # one per report key, in the order written
    classes: int  # confusion matrix size (2 for a single binary logit); 0 without classification
    outputs: int  # regression output units D
    ks: tuple[int, ...]  # distinct `top_k` values, in the order written
    multilabel: bool = False  # targets are multi-hot rows: every unit its own yes/no label

    @property
    def names(self) -> tuple[str, ...]:
        """Report keys, in the order the spec wrote the metrics."""
        return tuple(key(r) for r in self.refs)

    @property
    def _stats(self) -> frozenset[str]:
        return frozenset(_metric(r.name).reads for r in self.refs)

    def init(self) -> Stats:
        """The empty accumulator: a dict of int32 counts and float sums (float64 under x64)."""
        stats, acc = self._stats, dict[str, Any]()
        if stats & {"correct", "top_k", "confusion"}:
            acc.update(count=jnp.zeros((), jnp.int32), correct=jnp.zeros((), jnp.int32))
        if "top_k" in stats:
            acc["top_k"] = jnp.zeros(len(self.ks), jnp.int32)
        if "confusion" in stats and self.multilabel:
            acc.update({k: jnp.zeros(self.outputs, jnp.int32) for k in ("tp", "fp", "fn")})
        elif "confusion" in stats:
            acc["confusion"] = jnp.zeros((self.classes, self.classes), jnp.int32)
        if "regression" in stats:
            acc["n"] = jnp.zeros((), jnp.int32)
            for name in ("mean", "m2", "sse", "sae"):
                acc[name] = jnp.zeros(self.outputs, float)  # float32, or float64 under x64
        return acc

    def update(self, acc: Stats, logits: Array, y: Array, mask: Array | None = None) -> Stats:
        """Add one batch; `mask` (N,) marks real examples (padding is ignored, even if nan)."""
        w = jnp.ones(logits.shape[0], bool) if mask is None else jnp.asarray(mask).astype(bool)
        if "count" in acc:
            score = _multilabel if self.multilabel else _classification
            acc = score(self, acc, logits, y, w)
        if "n" in acc:
            acc = _regression(self, acc, logits, y, w)
        return acc

    def finish(self, acc: Stats) -> dict[str, float]:
        """The split's report `{key: value}`, computed on the host in float64."""
        host = jax.device_get(acc)
        stats: Stats = {k: np.asarray(v).astype(np.float64) for k, v in host.items()}
        stats["ks"] = list(self.ks)
        return {key(r): _metric(r.name).finish(stats, r) for r in self.refs}

    def lookup(self, word: str) -> str | None:
        """The key a monitor naming `word` reads: that key, else the first metric of that word."""
        if word in self.names:
            return word
        return next((key(r) for r in self.refs if r.name == word), None)


def build(
    refs: tuple[Ref, ...],
    classes: int | None,
    outputs: int | None = None,
    multilabel: bool = False,
) -> Metrics:
    """The `Metrics` for a spec's metric list.

    Args:
        refs: the metric Refs, as `train.metrics` holds them.
        classes: the model's class count C (1 for a single binary logit); needed by the
            classification metrics.
        outputs: regression output units D per example; defaults to `classes`, else 1.
        multilabel: the targets are multi-hot rows (N, C); accuracy is then the fraction of
            correct yes/no decisions and precision, recall and f1 count each label.
    """
    first: dict[str, Ref] = {}
    for r in refs:
        first.setdefault(key(r), r)
    unique = tuple(first.values())
    reads = [_metric(r.name).reads for r in unique]  # an InternalError for a word without one
    needs_classes = any(stat != "regression" for stat in reads)
    if needs_classes and not classes:
        raise InternalError(f"classification metrics {[key(r) for r in unique]} need `classes`")
    ks = tuple(dict.fromkeys(int(r.arg("k")) for r in unique if _metric(r.name).reads == "top_k"))
    if multilabel and ks:
        raise InternalError("`top_k` on multi-hot targets (the pipeline refuses it)")
    size = max(classes, 2) if needs_classes and classes else 0
    return Metrics(unique, size, outputs or classes or 1, ks, multilabel)


# ---- several outputs ----


def block_targets(block: Any, y: Array) -> Array:
    """One output's targets from a several-output target array (data/table.py's Block): its class
    labels as int32, or its columns (real values, multi-hot rows)."""
    cols = y[:, block.start : block.start + block.width]
    if block.task == "regression" or block.width > 1:
        return cols
    return cols[:, 0].astype(jnp.int32)


@dataclass(frozen=True)
class PerOutput:
    """The metrics of a model with several outputs: each output's own, keys `output_metric`."""

    parts: tuple[tuple[Any, Metrics], ...]  # (table.Block, its Metrics), in output order

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"{b.name}_{k}" for b, m in self.parts for k in m.names)

    def init(self) -> Stats:
        return {b.name: m.init() for b, m in self.parts}

    def update(self, acc: Stats, outs: Any, y: Array, mask: Array | None = None) -> Stats:
        pairs = zip(self.parts, outs, strict=True)
        return {b.name: m.update(acc[b.name], o, block_targets(b, y), mask) for (b, m), o in pairs}

    def finish(self, acc: Stats) -> dict[str, float]:
        out: dict[str, float] = {}
        for b, m in self.parts:
            out.update({f"{b.name}_{k}": v for k, v in m.finish(acc[b.name]).items()})
        return out

    def lookup(self, word: str) -> str | None:
        return word if word in self.names else None


def build_outputs(refs: tuple[Ref, ...], blocks: tuple[Any, ...], units: tuple[int, ...]) -> Any:
    """`PerOutput` metrics: each output reports the metrics of `refs` that fit its task."""
    parts = []
    for b, u in zip(blocks, units, strict=True):
        mine = tuple(r for r in refs if METRICS.lookup(r.name).needs.fits(b.task))  # type: ignore[union-attr]
        classes = None if b.task == "regression" else u
        parts.append((b, build(mine, classes, u, b.task == "multilabel" and b.width > 1)))
    return PerOutput(tuple(parts))
