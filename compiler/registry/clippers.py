"""Gradient clipping: `train { clip = ... }`, applied to the gradients before the optimizer.

The names follow TensorFlow's `tf.clip_by_value`, `tf.clip_by_norm`, `tf.clip_by_average_norm`
and `tf.clip_by_global_norm`; `adaptive` is adaptive gradient clipping (AGC, Brock et al. 2021).
g is the gradient of one parameter tensor, G the list of all of them; norms are L2 norms.
"""

from __future__ import annotations

from .core import arg, registry
from .types import PosFloat

CLIPPERS = registry(
    "clipper",
    "clippers",
    "Limits on the gradients, applied before the optimizer's update (against exploding gradients).",
    implemented_in="dnn.compiler.lower_optax",
)

CLIPPERS.add(
    "value",
    example="value(1.0)",
    args=(arg("c", PosFloat, doc="largest absolute value of a gradient element"),),
    aliases=("clip_by_value",),
    doc="clip every gradient element to [-c, c]",
    formula="g <- min(max(g, -c), c)",
)

CLIPPERS.add(
    "norm",
    example="norm(1.0)",
    args=(arg("c", PosFloat, doc="largest L2 norm of each gradient tensor"),),
    aliases=("clip_by_norm",),
    doc="rescale each gradient tensor whose L2 norm exceeds c",
    formula="g <- g * c / max(||g||, c)        (for each parameter tensor separately)",
)

CLIPPERS.add(
    "average_norm",
    example="average_norm(1.0)",
    args=(arg("c", PosFloat, doc="largest average L2 norm of each gradient tensor"),),
    aliases=("clip_by_average_norm",),
    doc="rescale each gradient tensor whose L2 norm divided by its element count exceeds c",
    formula="g <- g * c / max(||g|| / n, c),  n = number of elements of g   (per tensor)",
)

CLIPPERS.add(
    "global_norm",
    example="global_norm(1.0)",
    args=(arg("c", PosFloat, doc="largest L2 norm of all gradients together"),),
    aliases=("clip_by_global_norm",),
    doc="rescale all gradients together when their joint L2 norm exceeds c",
    formula="N = sqrt(sum_{g in G} ||g||^2);  g <- g * c / max(N, c)   for every g in G",
)

CLIPPERS.add(
    "adaptive",
    example="adaptive(0.01)",
    args=(
        arg("c", PosFloat, doc="largest ratio of gradient norm to parameter norm, per unit"),
        arg("eps", PosFloat, 1e-3, doc="floor on the parameter norm"),
    ),
    aliases=("agc",),
    doc="adaptive gradient clipping (Brock et al. 2021): bound each unit's gradient by its weights",
    formula=(
        "for each unit (output row) i of a parameter W with gradient G: "
        "w = max(||W_i||, eps); G_i <- G_i * c * w / ||G_i||  if ||G_i|| / w > c  else G_i"
    ),
)
