"""Compile-time values: what expressions evaluate to, and the resolved values the IR holds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .diagnostics import NO_SPAN, Span

DTYPES = {
    "f16": "float16",
    "bf16": "bfloat16",
    "f32": "float32",
    "f64": "float64",
    "i8": "int8",
    "i16": "int16",
    "i32": "int32",
    "i64": "int64",
    "u8": "uint8",
    "bool": "bool",
}
DTYPE_BYTES = {"f16": 2, "bf16": 2, "f32": 4, "f64": 8, "i8": 1, "i16": 2, "i32": 4, "i64": 8}
DTYPE_BYTES |= {"u8": 1, "bool": 1}


def is_float_dtype(dtype: str) -> bool:
    return dtype in ("f16", "bf16", "f32", "f64")


# ---- values during evaluation (carry spans so errors point at the right place) ----


@dataclass(frozen=True, slots=True)
class Sym:
    """A bare word such as `same`, `he_normal` or `relu`, meaning decided by where it is used."""

    name: str
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class CallVal:
    """`l2(1e-4)` or `dense(128)` before it is applied: a word with arguments."""

    name: str
    args: tuple[tuple[str | None, object, Span], ...]
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class ListVal:
    items: tuple[object, ...]
    spans: tuple[Span, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class RecordVal:
    keys: tuple[str, ...]
    values: tuple[object, ...]
    spans: tuple[Span, ...] = field(default=(), compare=False)


# ---- resolved values (what the IR holds) ----


@dataclass(frozen=True, slots=True)
class Quantity:
    """An amount with a unit: `200 steps`, `10 epochs`."""

    value: int | float
    unit: str

    def __str__(self) -> str:
        return f"{fmt_number(self.value)} {self.unit}"


@dataclass(frozen=True, slots=True)
class TensorType:
    """A dtype and a static shape without the batch axis: `f32[28, 28, 1]`."""

    dtype: str
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(map(str, self.shape))}]"


@dataclass(frozen=True, slots=True)
class Ref:
    """A validated reference to a registry entry, arguments in registry order, defaults filled."""

    kind: str
    name: str
    args: tuple[tuple[str, object], ...] = ()

    def arg(self, name: str) -> Any:
        return dict(self.args)[name]

    def __str__(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}({', '.join(f'{k} = {show(v)}' for k, v in self.args)})"


@dataclass(frozen=True, slots=True)
class LayerRef:
    """A layer of the model named by the value it outputs (`tie = tok`, where `tok =
    embedding(...)(ids)`): the node's name, its word and its resolved arguments."""

    node: str
    op: str
    # the layer's own arguments, for shape rules; not compared: a tie is to the layer, and a
    # change of the layer is that layer's (`dnn diff` says it there, once)
    args: tuple[tuple[str, object], ...] = field(default=(), compare=False)

    def arg(self, name: str) -> Any:
        return dict(self.args)[name]

    def __str__(self) -> str:
        return self.node


@dataclass(frozen=True, slots=True)
class Rec:
    """A validated record: `{ monitor: val_loss, patience: 5 }` with keys in schema order."""

    items: tuple[tuple[str, object], ...]

    def get(self, key: str) -> Any:
        return dict(self.items)[key]

    def __str__(self) -> str:
        return "{ " + ", ".join(f"{k}: {show(v)}" for k, v in self.items) + " }"


def fmt_number(v: int | float) -> str:
    """Canonical text of a number: ints as digits, floats shortest, below 0.01 as `3e-4`."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    r = repr(v)
    if not math.isfinite(v) or v == 0 or 1e-2 <= abs(v) < 1e16:
        return r
    sign, digits, exp = Decimal(r).normalize().as_tuple()
    assert isinstance(exp, int)
    mant = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{'-' if sign else ''}{mant}e{exp + len(digits) - 1}"


def show(v: object) -> str:
    """A resolved value as it would be written in a spec."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return fmt_number(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        return "[" + ", ".join(show(x) for x in v) + "]"
    if isinstance(v, Symbol):
        return v.name
    return str(v)


@dataclass(frozen=True, slots=True)
class Symbol:
    """A resolved enumeration value such as `same` (as opposed to the string "same")."""

    name: str

    def __str__(self) -> str:
        return self.name
