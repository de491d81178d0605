"""All registries. Importing this package declares every word of the language, in the order
`dnn help` and the reference list them."""

from __future__ import annotations

from . import (  # noqa: F401  (each module declares its registries on import)
    clippers,
    data,
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

__all__ = ["REGISTRIES", "Entry", "Registry"]
