"""Losses: `train { loss = ... }`, the quantity the optimizer minimizes.

The model's last layer gives raw scores z (logits: no softmax or sigmoid in the model; the
classification losses apply it themselves, in a numerically stable form). y is the target,
N the batch size, D the number of output units, C the number of classes. Every loss is the
mean over the batch (and over output units where there are several), so its scale does not
depend on the batch size.

`info["task"]`: `regression` (real-valued targets), `classification` (one of C classes, as
integer labels or one-hot rows) or `binary` (0/1 targets, one output unit per label).
"""

from __future__ import annotations

from .core import arg, registry
from .types import PosFloat, Prob

LOSSES = registry(
    "loss",
    "losses",
    "What training minimizes: a function of the model's outputs and the targets, "
    "averaged over the batch.",
)

LOSSES.add(
    "mse",
    aliases=("mean_squared_error",),
    doc="mean squared error, mean over the batch and output units",
    formula="L = (1/(N D)) sum_i sum_d (y_id - z_id)^2",
    info={"task": "regression"},
)

LOSSES.add(
    "mae",
    aliases=("mean_absolute_error",),
    doc="mean absolute error, mean over the batch and output units",
    formula="L = (1/(N D)) sum_i sum_d |y_id - z_id|",
    info={"task": "regression"},
)

LOSSES.add(
    "huber",
    args=(arg("delta", PosFloat, 1.0, doc="where the loss turns from quadratic to linear"),),
    doc="quadratic for small errors, linear for large ones; mean over the batch and output units",
    formula=(
        "r = y - z;  l(r) = r^2 / 2  if |r| <= delta  else  delta * (|r| - delta / 2);  "
        "L = (1/(N D)) sum_i sum_d l(r_id)"
    ),
    info={"task": "regression"},
)

LOSSES.add(
    "binary_cross_entropy",
    args=(arg("label_smoothing", Prob, 0.0, doc="pull the 0/1 targets towards 1/2 by this much"),),
    aliases=("bce", "sigmoid_cross_entropy"),
    doc="cross-entropy of sigmoid(z) against 0/1 targets, from logits; mean over the batch and units",
    formula=(
        "y' = y * (1 - label_smoothing) + label_smoothing / 2;  "
        "l = -(y' log sigmoid(z) + (1 - y') log(1 - sigmoid(z))) "
        "= max(z, 0) - z y' + log(1 + exp(-|z|));  L = (1/(N D)) sum_i sum_d l_id"
    ),
    info={"task": "binary"},
)

LOSSES.add(
    "cross_entropy",
    args=(arg("label_smoothing", Prob, 0.0, doc="mix this much of the uniform distribution in"),),
    aliases=("categorical_cross_entropy", "softmax_cross_entropy"),
    doc="cross-entropy of softmax(z) against class targets (integer or one-hot), from logits; "
    "mean over the batch",
    formula=(
        "p = softmax(z) = exp(z_c) / sum_k exp(z_k);  y = one_hot(label) for integer labels;  "
        "y' = y * (1 - label_smoothing) + label_smoothing / C;  "
        "L = -(1/N) sum_i sum_c y'_ic log p_ic"
    ),
    info={"task": "classification"},
)

LOSSES.add(
    "hinge",
    doc="hinge loss of the margin y z with targets in {-1, 1} (0/1 targets are mapped to -1/1); "
    "mean over the batch and units",
    formula="y in {-1, 1} (y <- 2 y - 1 for 0/1 targets);  L = (1/(N D)) sum max(0, 1 - y z)",
    info={"task": "binary"},
)

LOSSES.add(
    "squared_hinge",
    doc="squared hinge loss with targets in {-1, 1} (0/1 targets are mapped to -1/1); "
    "mean over the batch and units",
    formula="y in {-1, 1} (y <- 2 y - 1 for 0/1 targets);  L = (1/(N D)) sum max(0, 1 - y z)^2",
    info={"task": "binary"},
)
