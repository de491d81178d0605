"""Metrics: what `train { metrics = [...] }` reports, and what early stopping, plateau
reduction and sweep objectives may monitor.

`info["mode"]` says whether larger (`max`) or smaller (`min`) is better; `needs.tasks` says
which tasks' targets the metric reads (class labels, or real values). Model outputs are
logits, as for the losses. A spec that lists no metrics gets its task's defaults
(`DEFAULT_METRICS`).
"""

from __future__ import annotations

from .core import CLASS_TASKS, Needs, arg, registry
from .types import EnumT, PosInt

METRICS = registry(
    "metric",
    "metrics",
    "Quantities computed on the model's outputs and the targets, averaged over a split.",
    implemented_in="dnn.runtime.metrics",
)

_CLASSES = Needs(tasks=CLASS_TASKS)
_REAL = Needs(tasks=("regression",))

_AVERAGE = arg(
    "average",
    EnumT(("macro", "micro")),
    default="macro",
    doc="macro: unweighted mean of the per-class scores; micro: from counts pooled over classes",
)

METRICS.add(
    "accuracy",
    aliases=("acc",),
    doc="fraction of examples whose predicted class is the target class",
    formula=(
        "accuracy = (1/N) sum_i [argmax_c z_ic == y_i]; "
        "one output unit (binary): prediction = [z_i > 0], i.e. sigmoid(z_i) > 0.5; "
        "multi-hot targets (multi-label): (1/(N C)) sum_i sum_c [[z_ic > 0] == y_ic], the fraction "
        "of correct yes/no decisions (Keras' binary accuracy)"
    ),
    info={"mode": "max"},
    needs=_CLASSES,
)

METRICS.add(
    "top_k",
    args=(arg("k", PosInt, default=5, doc="how many of the highest logits may hold the target"),),
    aliases=("top_k_accuracy",),
    doc="fraction of examples whose target class is among the k largest logits",
    formula="top_k = (1/N) sum_i [y_i in the k classes with the largest z_ic]",
    info={"mode": "max"},
    needs=_CLASSES,
)

METRICS.add(
    "precision",
    args=(_AVERAGE,),
    doc="of the examples predicted as a class, the fraction that belong to it",
    formula=(
        "precision_c = TP_c / (TP_c + FP_c) (multi-hot targets: per label, predicted [z_c > 0], "
        "macro over every label); "
        "macro = (1/C) sum_c precision_c; micro = sum_c TP_c / sum_c (TP_c + FP_c); "
        "a class never predicted scores 0"
    ),
    info={"mode": "max"},
    needs=_CLASSES,
)

METRICS.add(
    "recall",
    args=(_AVERAGE,),
    doc="of the examples of a class, the fraction predicted as that class",
    formula=(
        "recall_c = TP_c / (TP_c + FN_c); "
        "macro = (1/C) sum_c recall_c; micro = sum_c TP_c / sum_c (TP_c + FN_c)"
    ),
    info={"mode": "max"},
    needs=_CLASSES,
)

METRICS.add(
    "f1",
    args=(_AVERAGE,),
    aliases=("f1_score",),
    doc="harmonic mean of precision and recall",
    formula=(
        "f1_c = 2 TP_c / (2 TP_c + FP_c + FN_c); "
        "macro = (1/C) sum_c f1_c; micro = 2 sum_c TP_c / sum_c (2 TP_c + FP_c + FN_c)"
    ),
    info={"mode": "max"},
    needs=_CLASSES,
)

METRICS.add(
    "mse",
    aliases=("mean_squared_error",),
    doc="mean squared error over examples and output units",
    formula="mse = (1/(N D)) sum_i sum_d (y_id - yhat_id)^2",
    info={"mode": "min"},
    needs=_REAL,
)

METRICS.add(
    "mae",
    aliases=("mean_absolute_error",),
    doc="mean absolute error over examples and output units",
    formula="mae = (1/(N D)) sum_i sum_d |y_id - yhat_id|",
    info={"mode": "min"},
    needs=_REAL,
)

METRICS.add(
    "r2",
    aliases=("r2_score",),
    doc="coefficient of determination, averaged over output units (1 is a perfect fit)",
    formula="r2_d = 1 - sum_i (y_id - yhat_id)^2 / sum_i (y_id - mean_i y_id)^2; r2 = (1/D) sum_d r2_d",
    info={"mode": "max"},
    needs=_REAL,
)


# What a run reports when `metrics` is not written: by the task the loss implies.
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "regression": ("mae", "r2"),
    "binary": ("accuracy",),
    "multiclass": ("accuracy",),
    "multilabel": ("accuracy",),
}


# Names a monitor may take (early stopping, reduce_on_plateau, sweep objectives): the loss and
# every metric, on the validation split (`val_...`) or on the training batches.
MONITORS: tuple[str, ...] = (
    "val_loss",
    *(f"val_{m}" for m in METRICS.names()),
    "loss",
    *METRICS.names(),
)


def monitor_mode(name: str) -> str:
    """`min` or `max`: which direction is an improvement for a monitored quantity."""
    base = name.removeprefix("val_")
    if base == "loss":
        return "min"
    entry = METRICS.lookup(base)
    return entry.info["mode"] if entry is not None else "min"
