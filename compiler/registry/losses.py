"""Losses: `train { loss = ... }`, the quantity the optimizer minimizes.

The model's last layer gives raw scores z (logits: no softmax or sigmoid in the model; the
classification losses apply it themselves, in a numerically stable form). y is the target,
N the batch size, D the number of output units, C the number of classes. Every loss is the
mean over the batch (and over output units where there are several), so its scale does not
depend on the batch size.

`task` says which task a loss implies for a model output of one unit and of several (see
`core.TASKS`): the checker refuses a width the loss is not valid for, the data loader reads the
targets that task needs, and the default metrics follow it.
"""

from __future__ import annotations

from .core import Task, arg, registry
from .types import PosFloat, Prob

LOSSES = registry(
    "loss",
    "losses",
    "What training minimizes: a function of the model's outputs and the targets, "
    "averaged over the batch.",
    implemented_in="dnn.compiler.lower_loss",
)

LOSSES.add(
    "mse",
    aliases=("mean_squared_error",),
    doc="mean squared error, mean over the batch and output units",
    formula="L = (1/(N D)) sum_i sum_d (y_id - z_id)^2",
    task=Task("regression", "regression"),
)

LOSSES.add(
    "mae",
    aliases=("mean_absolute_error",),
    doc="mean absolute error, mean over the batch and output units",
    formula="L = (1/(N D)) sum_i sum_d |y_id - z_id|",
    task=Task("regression", "regression"),
)

LOSSES.add(
    "huber",
    args=(arg("delta", PosFloat, 1.0, doc="where the loss turns from quadratic to linear"),),
    doc="quadratic for small errors, linear for large ones; mean over the batch and output units",
    formula=(
        "r = y - z;  l(r) = r^2 / 2  if |r| <= delta  else  delta * (|r| - delta / 2);  "
        "L = (1/(N D)) sum_i sum_d l(r_id)"
    ),
    task=Task("regression", "regression"),
)

LOSSES.add(
    "binary_cross_entropy",
    args=(arg("label_smoothing", Prob, 0.0, doc="pull the 0/1 targets towards 1/2 by this much"),),
    aliases=("bce", "sigmoid_cross_entropy"),
    doc="cross-entropy of sigmoid(z) against 0/1 targets, from logits; mean over the batch and "
    "units. One output unit: a binary classifier; several: multi-label, one yes/no decision per "
    "unit, with multi-hot targets (class labels are read as one-hot rows: one-vs-rest)",
    formula=(
        "y' = y * (1 - label_smoothing) + label_smoothing / 2;  "
        "l = -(y' log sigmoid(z) + (1 - y') log(1 - sigmoid(z))) "
        "= max(z, 0) - z y' + log(1 + exp(-|z|));  L = (1/(N D)) sum_i sum_d l_id;  "
        "several units with class labels: y = one_hot(label)"
    ),
    task=Task("binary", "multilabel"),
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
    task=Task(
        None,
        "multiclass",
        refuse_one="softmax over one unit is 1 whatever the weights, so the loss is always 0",
    ),
)

_HINGE_MULTI = (
    "several units: the multi-class hinge of Crammer & Singer (2001), the true class's score "
    "against the best other one; it differs from Keras' `categorical_hinge`, which takes the "
    "best other score as max((1 - y) z) and so counts a negative best score as 0"
)

LOSSES.add(
    "hinge",
    doc="hinge loss of the margin y z with targets in {-1, 1} (0/1 targets are mapped to -1/1); "
    f"mean over the batch and units. One unit: a binary classifier; {_HINGE_MULTI}",
    formula=(
        "one unit: y in {-1, 1} (y <- 2 y - 1 for 0/1 targets);  L = (1/N) sum_i max(0, 1 - y_i z_i);  "
        "C units, class label y_i: L = (1/N) sum_i max(0, 1 + max_{c != y_i} z_ic - z_i,y_i);  "
        "C units, multi-hot rows: the one-unit form per unit, L = (1/(N C)) sum"
    ),
    task=Task("binary", "multiclass"),
)

LOSSES.add(
    "squared_hinge",
    doc="squared hinge loss with targets in {-1, 1} (0/1 targets are mapped to -1/1); "
    f"mean over the batch and units. One unit: a binary classifier; {_HINGE_MULTI}, squared",
    formula=(
        "one unit: y in {-1, 1} (y <- 2 y - 1 for 0/1 targets);  "
        "L = (1/N) sum_i max(0, 1 - y_i z_i)^2;  "
        "C units, class label y_i: L = (1/N) sum_i max(0, 1 + max_{c != y_i} z_ic - z_i,y_i)^2;  "
        "C units, multi-hot rows: the one-unit form per unit, L = (1/(N C)) sum"
    ),
    task=Task("binary", "multiclass"),
)
