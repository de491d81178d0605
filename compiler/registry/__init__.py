"""All registries. Importing this package declares every word of the language, in the order
`dnn help` and the reference list them."""

from __future__ import annotations

from . import (  # noqa: F401  (each module declares its registries on import)
    attention,
    clippers,
    convs,
    data,
    dbn,
    layers,
    losses,
    metrics,
    optimizers,
    schedules,
    sections,
    sweep,
    weights,
)
from .core import REGISTRIES, Entry, Registry

# The order `dnn help` and the reference list the kinds in: model words first, then training.
_ORDER = (
    "layer",
    "activation",
    "initializer",
    "regularizer",
    "constraint",
    "loss",
    "metric",
    "optimizer",
    "schedule",
    "clipper",
    "pretrainer",
    "dataset",
    "column",
    "normalizer",
    "augmentation",
    "search",
    "distribution",
    "objective",
    "pruner",
    "section",
)
for _kind in sorted(REGISTRIES, key=lambda k: _ORDER.index(k) if k in _ORDER else len(_ORDER)):
    REGISTRIES[_kind] = REGISTRIES.pop(_kind)

__all__ = ["REGISTRIES", "Entry", "Registry"]
