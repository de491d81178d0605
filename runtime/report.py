"""Evaluation people read (issue 17, point 6): what `dnn eval` adds to the split's metrics.

Classification (one output; classes, binary): per-class precision, recall, F1 and support,
their macro and support-weighted averages (the rows of scikit-learn's
`classification_report`, computed here from the confusion matrix), and the confusion matrix
as a PNG. Multi-label outputs: the same rows, one per label (each label a yes/no decision).
Regression: predicted against actual and a histogram of the residuals, in the data's units.

  precision_c = TP_c / (TP_c + FP_c)     recall_c = TP_c / (TP_c + FN_c)
  F1_c = 2 precision_c recall_c / (precision_c + recall_c)   (0 where a denominator is 0)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = ("precision", "recall", "f1", "support")


@dataclass(frozen=True)
class ClassReport:
    """Per-class rows and averages of one split's predictions."""

    names: tuple[str, ...]
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    confusion: np.ndarray | None = None  # (true, predicted); None for multi-label
    plots: list[Path] = field(default_factory=list)

    def averages(self) -> dict[str, dict[str, Any]]:
        """Macro (unweighted mean over classes) and weighted (by support) averages."""
        w = self.support / max(int(self.support.sum()), 1)
        total = int(self.support.sum())
        out = {}
        for name, weights in (("macro avg", None), ("weighted avg", w)):
            out[name] = {
                "precision": float(np.average(self.precision, weights=weights)),
                "recall": float(np.average(self.recall, weights=weights)),
                "f1": float(np.average(self.f1, weights=weights)),
                "support": total,
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        rows = {
            name: {
                "precision": float(p),
                "recall": float(r),
                "f1": float(f),
                "support": int(s),
            }
            for name, p, r, f, s in zip(
                self.names, self.precision, self.recall, self.f1, self.support, strict=True
            )
        }
        out: dict[str, Any] = {"classes": rows, **self.averages()}
        if self.confusion is not None:
            out["confusion"] = self.confusion.tolist()
        return out

    def text(self) -> str:
        """The table as scikit-learn's `classification_report` lays it out."""
        width = max([12, *(len(n) for n in self.names)])
        head = f"{'':>{width}}  precision     recall         f1    support"
        lines = [head]
        for name, p, r, f, s in zip(
            self.names, self.precision, self.recall, self.f1, self.support, strict=True
        ):
            lines.append(f"{name:>{width}}  {p:9.4f}  {r:9.4f}  {f:9.4f}  {int(s):9d}")
        lines.append("")
        for name, row in self.averages().items():
            lines.append(
                f"{name:>{width}}  {row['precision']:9.4f}  {row['recall']:9.4f}  "
                f"{row['f1']:9.4f}  {int(row['support']):9d}"
            )
        return "\n".join(lines)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, 0 where b is 0 (scikit-learn's `zero_division=0`)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def from_counts(names: tuple[str, ...], tp: Any, fp: Any, fn: Any) -> ClassReport:
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return ClassReport(names, precision, recall, f1, np.asarray(tp + fn, np.int64))


def confusion(y: np.ndarray, pred: np.ndarray, classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    out = np.zeros((classes, classes), np.int64)
    np.add.at(out, (y.astype(np.int64), pred.astype(np.int64)), 1)
    return out


def classes_report(y: np.ndarray, pred: np.ndarray, names: tuple[str, ...]) -> ClassReport:
    """One label per example (classes, or a binary output's 0/1)."""
    m = confusion(y, pred, len(names))
    tp = np.diag(m)
    report = from_counts(names, tp, m.sum(axis=0) - tp, m.sum(axis=1) - tp)
    return replace(report, confusion=m)


def labels_report(y: np.ndarray, pred: np.ndarray, names: tuple[str, ...]) -> ClassReport:
    """Multi-hot rows: each label a yes/no decision of its own."""
    y, pred = y.astype(bool), pred.astype(bool)
    tp = np.sum(y & pred, axis=0)
    return from_counts(names, tp, np.sum(~y & pred, axis=0), np.sum(y & ~pred, axis=0))


def decisions(out: np.ndarray, task: str) -> np.ndarray:
    """The model's outputs (logits) as what it predicts: a class index, or 0/1 per label."""
    out = np.asarray(out, np.float64)
    if task == "multilabel" or (task == "binary" and out.ndim == 2 and out.shape[1] > 1):
        return (out > 0).astype(np.int64)  # sigmoid(z) > 0.5
    if task == "binary":
        return (out.reshape(-1) > 0).astype(np.int64)
    return out.argmax(axis=-1)


# ------------------------------------------------------------------ pictures


def plot_confusion(report: ClassReport, path: Path, title: str) -> Path:
    """The confusion matrix: counts in the cells, the rows (true classes) shaded by share."""
    from .rundir import plotting

    assert report.confusion is not None
    m = report.confusion
    Figure, FigureCanvasAgg = plotting()
    k = len(report.names)
    side = min(max(4.0, 0.45 * k + 2.0), 16.0)
    fig = Figure(figsize=(side + 1, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:  # beyond that the numbers no longer fit their cells
        for i in range(k):
            for j in range(k):
                color = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, str(m[i, j]), ha="center", va="center", color=color, fontsize=8)
    ticks = range(k)
    ax.set_xticks(ticks, report.names, rotation=90 if k > 10 else 0, fontsize=8)
    ax.set_yticks(ticks, report.names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of the true class")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_residuals(y: np.ndarray, out: np.ndarray, path: Path, title: str) -> Path:
    """Predicted against actual (the diagonal is perfect) and the residuals' histogram."""
    from .rundir import plotting

    y = np.asarray(y, np.float64).reshape(len(y), -1)
    out = np.asarray(out, np.float64).reshape(len(out), -1)
    Figure, FigureCanvasAgg = plotting()
    fig = Figure(figsize=(10, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    scatter, hist = fig.subplots(1, 2)
    for c in range(y.shape[1]):
        label = f"y{c}" if y.shape[1] > 1 else None
        scatter.scatter(y[:, c], out[:, c], s=10, alpha=0.6, label=label)
    lo, hi = float(min(y.min(), out.min())), float(max(y.max(), out.max()))
    scatter.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--")
    scatter.set_xlabel("actual")
    scatter.set_ylabel("predicted")
    scatter.set_title(f"{title}: predicted vs actual")
    if y.shape[1] > 1:
        scatter.legend(fontsize=8)
    residuals = (out - y).reshape(-1)
    hist.hist(residuals, bins=min(40, max(5, len(residuals) // 5)), color="C1")
    hist.axvline(0, color="gray", lw=1, ls="--")
    hist.set_xlabel("predicted - actual")
    hist.set_ylabel("examples")
    rmse = float(np.sqrt(np.mean(residuals**2)))
    hist.set_title(f"residuals (mean {residuals.mean():.3g}, rmse {rmse:.3g})")
    for ax in (scatter, hist):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
