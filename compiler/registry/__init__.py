"""All registries. Importing this package declares every word of the language, in the order
`dnn help` and the reference list them."""

from __future__ import annotations

from . import layers, weights  # noqa: F401  (declare their registries)
from .core import REGISTRIES, Entry, Registry

try:  # kinds whose modules land separately
    from . import data, losses, metrics, optimizers, schedules, clippers, sweep  # noqa: F401
except ImportError:  # pragma: no cover - only while a kind module is missing
    pass
from . import sections  # noqa: E402,F401

__all__ = ["REGISTRIES", "Entry", "Registry"]
