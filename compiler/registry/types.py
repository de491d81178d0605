"""Argument types: each converts an evaluated value to its resolved form or says what it wanted."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..diagnostics import (
    E_DUPLICATE_ARG,
    E_MISSING_ARG,
    E_TOO_MANY_ARGS,
    E_TYPE,
    E_UNKNOWN_ARG,
    E_UNKNOWN_ENTRY,
    E_VALUE,
    NO_SPAN,
    Span,
    error,
)
from ..values import (
    CallVal,
    LayerRef,
    ListVal,
    Quantity,
    Rec,
    RecordVal,
    Ref,
    Sym,
    Symbol,
    show,
)
from .core import REGISTRIES, REQUIRED, Arg, Args, Entry, Problem, SameAs, did_you_mean


class Mismatch(Exception):
    """Raised by a type: the value does not fit; `code` tells type error from range error."""

    def __init__(self, expected: str, code: str = E_TYPE, hint: str | None = None):
        super().__init__(expected)
        self.expected, self.code, self.hint = expected, code, hint


def describe(v: Any) -> str:
    """How a value is shown in a message."""
    if isinstance(v, Sym):
        return f"`{v.name}`"
    if isinstance(v, CallVal):
        return f"`{v.name}(...)`"
    if isinstance(v, ListVal):
        return _describe_list(v.items)
    if isinstance(v, RecordVal):
        return "a record"
    if isinstance(v, LayerRef):
        return f"the input `{v.node}`" if v.op == "input" else f"`{v.node}`, a `{v.op}` output"
    if type(v).__name__ == "Tensor":
        return "a tensor"
    return f"`{show(v)}`"


def _describe_list(items: Sequence[Any]) -> str:
    """`a list of 2 ints`, `a list of 1 list`, `an empty list`: enough to see a wrong length."""
    if not items:
        return "an empty list"
    ints = all(isinstance(x, int) and not isinstance(x, bool) for x in items)
    noun = "int" if ints else "list" if all(isinstance(x, ListVal) for x in items) else "value"
    return f"a list of {len(items)} {noun}{'s' * (len(items) != 1)}"


class UnknownWord(Exception):
    """A bare word where a non-word value was expected: the checker reports it as an unknown
    name, with a did-you-mean over the names in scope (which only it knows)."""

    def __init__(self, word: Sym, context: str):
        super().__init__(word.name)
        self.word, self.context = word, context


class ArgType:
    label = "value"

    def convert(self, v: Any, span: Span) -> Any:
        raise NotImplementedError

    def from_default(self, d: Any) -> Any:
        return d

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class IntT(ArgType):
    min: int | None = None
    max: int | None = None

    @property
    def label(self) -> str:  # type: ignore[override]
        return _range_label("int", self.min, self.max)

    def convert(self, v: Any, span: Span) -> Any:
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                raise Mismatch(self.label, hint=f"write `{int(v)}` without the decimal point")
            raise Mismatch(self.label, hint=_unquote_hint(v))
        if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
            raise Mismatch(self.label, E_VALUE)
        return v


@dataclass(frozen=True)
class FloatT(ArgType):
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False

    @property
    def label(self) -> str:  # type: ignore[override]
        if self.min is not None and self.max is not None:
            lo, hi = "(" if self.min_open else "[", ")" if self.max_open else "]"
            return f"number in {lo}{self.min:g}, {self.max:g}{hi}"
        return _range_label("number", self.min, self.max, self.min_open)

    def convert(self, v: Any, span: Span) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise Mismatch(self.label, hint=_unquote_hint(v))
        f = float(v)
        bad = not math.isfinite(f)
        bad |= self.min is not None and (f < self.min or (self.min_open and f == self.min))
        bad |= self.max is not None and (f > self.max or (self.max_open and f == self.max))
        if bad:
            raise Mismatch(self.label, E_VALUE)
        return f


def _unquote_hint(v: Any) -> str | None:
    if isinstance(v, str):
        try:
            float(v)
        except ValueError:
            return None
        return f"write it without quotes: `{v}`"
    return None


def _range_label(base: str, lo: float | None, hi: float | None, open_: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"{base} in [{lo:g}, {hi:g}]"
    if lo is None and hi is not None:
        return f"{base} <= {hi:g}"
    if lo is not None:
        if lo == 0 and open_:
            return f"{base} > 0"
        if base == "int" and lo == 1:
            return "int > 0"
        return f"{base} >= {lo:g}"
    return base


class BoolT(ArgType):
    label = "true or false"

    def convert(self, v: Any, span: Span) -> Any:
        if not isinstance(v, bool):
            raise Mismatch(self.label)
        return v


class StrT(ArgType):
    label = "string"

    def convert(self, v: Any, span: Span) -> Any:
        if not isinstance(v, str):
            raise Mismatch(self.label, hint='write it in double quotes: "..."')
        return v


@dataclass(frozen=True)
class EnumT(ArgType):
    choices: tuple[str, ...]

    @property
    def label(self) -> str:  # type: ignore[override]
        return " | ".join(self.choices)

    def convert(self, v: Any, span: Span) -> Any:
        name = v.name if isinstance(v, Sym) else v if isinstance(v, str) else None
        if name is None:
            raise Mismatch(f"one of {self.label}")
        if name not in self.choices:
            raise Mismatch(f"one of {self.label}", E_VALUE, did_you_mean(name, self.choices))
        return Symbol(name)

    def from_default(self, d: Any) -> Any:
        return Sym(d) if isinstance(d, str) else d


@dataclass(frozen=True)
class SizeT(ArgType):
    """A window size per spatial axis: `3` means `[3, 3]` for a 2-d layer."""

    rank: int
    min: int = 1

    @property
    def label(self) -> str:  # type: ignore[override]
        what = "int > 0" if self.min == 1 else f"int >= {self.min}"
        return what if self.rank == 1 else f"{what} or a list of {self.rank}"

    def convert(self, v: Any, span: Span) -> Any:
        items = v.items if isinstance(v, ListVal) else (v,) * self.rank
        if len(items) != self.rank:
            raise Mismatch(self.label)
        for x in items:
            if isinstance(x, bool) or not isinstance(x, int):
                raise Mismatch(self.label)
            if x < self.min:
                raise Mismatch(self.label, E_VALUE)
        return tuple(items)


@dataclass(frozen=True)
class PaddingT(ArgType):
    """`same`, `valid`, an int for every side, or a list with one int per spatial axis.

    Explicit padding adds p zeros on BOTH sides of its axis, as torch.nn.Conv1d/2d/3d's
    `padding` int or tuple does: `padding = [1, 2]` on conv2d pads height by 1 above and 1
    below, width by 2 left and 2 right. Per-side pairs are not taken.
    """

    rank: int

    @property
    def axes(self) -> str:
        from .layers import SPATIAL_AXES

        return SPATIAL_AXES[self.rank].removesuffix(", channels")

    @property
    def label(self) -> str:  # type: ignore[override]
        ints = "1 int" if self.rank == 1 else f"{self.rank} ints"
        return f"same | valid | int >= 0 | list of {ints} ({self.axes})"

    def convert(self, v: Any, span: Span) -> Any:
        if isinstance(v, Sym | str):
            name = v.name if isinstance(v, Sym) else v
            if name in ("same", "valid"):
                return Symbol(name)
            raise Mismatch(self.label, E_VALUE, did_you_mean(name, ["same", "valid"]))
        items: tuple[Any, ...] = v.items if isinstance(v, ListVal) else (v,) * self.rank
        if len(items) != self.rank or any(
            isinstance(x, bool) or not isinstance(x, int) for x in items
        ):
            raise Mismatch(self.label, hint=self._hint(items))
        if any(x < 0 for x in items):
            raise Mismatch(self.label, E_VALUE)
        return tuple(items)

    def _hint(self, items: tuple[Any, ...]) -> str:
        """The padding the user most likely meant, written as this layer takes it."""
        pairs = [x.items for x in items if isinstance(x, ListVal)]
        sides = "zeros added on both sides of each spatial axis"
        if pairs and len(pairs) == len(items) == self.rank and all(len(q) == 2 for q in pairs):
            if all(q[0] == q[1] for q in pairs):
                per_axis = ", ".join(show(q[0]) for q in pairs)
                return f"padding is {sides}: write `padding = [{per_axis}]` ({self.axes})"
            return f"padding is {sides}, the same before and after; per-side pairs are not taken"
        ints = all(isinstance(x, int) and not isinstance(x, bool) for x in items)
        if ints and items and len(set(items)) == 1:
            one = f"write `padding = {items[0]}`"
            return f"padding is {sides} ({self.axes}): {one}"
        return f"padding is {sides}: one int per axis ({self.axes}), or one int for all"

    def from_default(self, d: Any) -> Any:
        return Sym(d) if isinstance(d, str) else d


@dataclass(frozen=True)
class SidesT(ArgType):
    """Zeros to add (or values to cut) on each side of each spatial axis, as Keras'
    ZeroPadding2D/Cropping2D take them: `n` on every side, `[a, b]` (a on both sides of the
    first spatial axis, b of the second), or `[[before, after], ...]` per spatial axis (an int
    and a pair may be mixed: `[1, [0, 2]]`). The number of spatial axes is the input's, so a
    list's length is checked with the shape."""

    label = "int >= 0 | list of ints >= 0 (one per spatial axis) | list of [before, after] pairs"

    def convert(self, v: Any, span: Span) -> Any:
        if not isinstance(v, ListVal):
            return self._int(v)
        if not v.items:
            raise Mismatch(self.label)
        if any(isinstance(x, ListVal) and len(x.items) != 2 for x in v.items):
            raise Mismatch(self.label, hint="each pair is `[before, after]`")
        return tuple(
            (self._int(x.items[0]), self._int(x.items[1]))
            if isinstance(x, ListVal)
            else self._int(x)
            for x in v.items
        )

    def _int(self, x: Any) -> int:
        if isinstance(x, bool) or not isinstance(x, int):
            raise Mismatch(self.label)
        if x < 0:
            raise Mismatch(self.label, E_VALUE)
        return x


@dataclass(frozen=True)
class SizesT(ArgType):
    """Positive ints per spatial axis, whose number is the input's: one int for all axes, or a
    list with one per axis (its length is checked with the shape)."""

    what: str = "int > 0"

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"{self.what} or a list of one per spatial axis"

    def convert(self, v: Any, span: Span) -> Any:
        items: tuple[Any, ...] = v.items if isinstance(v, ListVal) else (v,)
        if not items or any(isinstance(x, bool) or not isinstance(x, int) for x in items):
            raise Mismatch(self.label)
        if any(x < 1 for x in items):
            raise Mismatch(self.label, E_VALUE)
        return items if isinstance(v, ListVal) else items[0]


@dataclass(frozen=True)
class ShapeT(ArgType):
    """A target shape for `reshape`: positive ints, at most one -1."""

    label = "list of ints > 0 (one may be -1)"

    def convert(self, v: Any, span: Span) -> Any:
        items: tuple[Any, ...] = v.items if isinstance(v, ListVal) else (v,)
        if not items or any(isinstance(x, bool) or not isinstance(x, int) for x in items):
            raise Mismatch(self.label)
        if sum(x == -1 for x in items) > 1 or any(x == 0 or x < -1 for x in items):
            raise Mismatch(self.label, E_VALUE)
        return tuple(items)


class AxisT(ArgType):
    label = "axis (int; negative counts from the end)"

    def convert(self, v: Any, span: Span) -> Any:
        if isinstance(v, bool) or not isinstance(v, int):
            raise Mismatch(self.label)
        return v


@dataclass(frozen=True)
class ListT(ArgType):
    inner: ArgType
    min_len: int = 0

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"list of {self.inner.label}"

    def convert(self, v: Any, span: Span) -> Any:
        if not isinstance(v, ListVal):
            v = ListVal((v,), (span,))  # a single item stands for a list of one
        if len(v.items) < self.min_len:
            raise Mismatch(f"{self.label} with at least {self.min_len} item(s)", E_VALUE)
        spans = v.spans or (span,) * len(v.items)
        return tuple(convert_at(self.inner, x, s) for x, s in zip(v.items, spans, strict=True))

    def from_default(self, d: Any) -> Any:
        return ListVal(tuple(self.inner.from_default(x) for x in d)) if isinstance(d, tuple) else d


@dataclass(frozen=True)
class OptionalT(ArgType):
    inner: ArgType

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"{self.inner.label} | none"

    def convert(self, v: Any, span: Span) -> Any:
        return None if v is None else self.inner.convert(v, span)

    def from_default(self, d: Any) -> Any:
        return None if d is None else self.inner.from_default(d)


@dataclass(frozen=True)
class QuantityT(ArgType):
    """A duration: `500 steps`, `2 epochs`; a bare int means steps."""

    label = "int >= 0 with a unit (`steps` or `epochs`)"

    def convert(self, v: Any, span: Span) -> Any:
        if isinstance(v, bool):
            raise Mismatch(self.label)
        if isinstance(v, int):
            v = Quantity(v, "steps")
        if not isinstance(v, Quantity):
            raise Mismatch(self.label)
        if v.value < 0 or (v.unit == "steps" and not isinstance(v.value, int)):
            raise Mismatch(self.label, E_VALUE)
        return v


class AnyT(ArgType):
    """Any compile-time value (numbers, strings, words, lists)."""

    label = "value"

    def convert(self, v: Any, span: Span) -> Any:
        if isinstance(v, Sym):
            return Symbol(v.name)
        if isinstance(v, ListVal):
            return tuple(self.convert(x, span) for x in v.items)
        if isinstance(v, CallVal | RecordVal) or type(v).__name__ == "Tensor":
            raise Mismatch("a number, string, word or list")
        return v


@dataclass(frozen=True)
class RefT(ArgType):
    """A word from another registry, bare (`he_normal`) or with arguments (`l2(1e-4)`)."""

    kind: str
    reject: tuple[str, str, str] | None = None  # (info key, why, hint): entries that cannot apply

    @property
    def label(self) -> str:  # type: ignore[override]
        return REGISTRIES[self.kind].kind if self.kind in REGISTRIES else self.kind

    def convert(self, v: Any, span: Span) -> Any:
        reg = REGISTRIES[self.kind]
        if v is None and reg.lookup("none") is not None:  # `normalize = none`: the word `none`
            return Ref(self.kind, "none", ())
        if isinstance(v, Sym | CallVal):
            entry = reg.lookup(v.name)
            if entry is None:
                raise error(
                    E_UNKNOWN_ENTRY,
                    f"unknown {reg.kind} `{v.name}`",
                    v.span or span,
                    reg.suggest(v.name) or f"see `dnn help {reg.title}`",
                )
            pos = [(x, s) for k, x, s in v.args if k is None] if isinstance(v, CallVal) else []
            kws = (
                [(k, x, s) for k, x, s in v.args if k is not None] if isinstance(v, CallVal) else []
            )
            if self.reject is not None and entry.info.get(self.reject[0]):
                raise error(
                    E_VALUE, f"`{entry.name}` {self.reject[1]}", v.span or span, self.reject[2]
                )
            args, spans = bind(entry, pos, kws, v.span or span)
            run_validate(entry, args, spans, v.span or span)
            return Ref(self.kind, entry.name, args.items)
        raise Mismatch(
            _article(f"{reg.kind} name such as `{reg.names()[0]}`") if len(reg) else reg.kind
        )

    def from_default(self, d: Any) -> Any:
        return Sym(d) if isinstance(d, str) else d


@dataclass(frozen=True)
class LayerT(ArgType):
    """A layer of the model, named by the value it outputs: `tie = tok` where `tok =
    embedding(...)(ids)`. The checker turns the named tensor into a `LayerRef` (only for an
    argument of this type: elsewhere a tensor goes positionally, as an input)."""

    op: str

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"the name of an `{self.op}` output"

    def convert(self, v: Any, span: Span) -> Any:
        if isinstance(v, LayerRef) and v.op == self.op:
            return v
        raise Mismatch(
            f"an `{self.op}`'s output, by its name",
            hint=f"name the `{self.op}`'s own output, e.g. `tok = {self.op}(...)(ids)`, and "
            "write `tie = tok`",
        )


def layer_arg(entry: Entry, name: str | None) -> LayerT | None:
    """The `LayerT` of `entry`'s argument `name` (inside `OptionalT` too), if it is one."""
    a = entry.get_arg(name) if name is not None else None
    t = (
        a.type.inner
        if a is not None and isinstance(a.type, OptionalT)
        else getattr(a, "type", None)
    )
    return t if isinstance(t, LayerT) else None


@dataclass(frozen=True)
class RecordT(ArgType):
    """A record with known keys: `{ monitor: val_loss, patience: 5 }`."""

    fields: tuple[Arg, ...]
    name: str = "record"
    rest: Any = REQUIRED  # once any key is written, the unwritten ones take this value

    @property
    def label(self) -> str:  # type: ignore[override]
        return "{ " + ", ".join(f"{f.name}: {f.type.label}" for f in self.fields) + " }"

    def convert(self, v: Any, span: Span) -> Any:
        if not isinstance(v, RecordVal):
            raise Mismatch(f"a record {{ {', '.join(f.name + ': ...' for f in self.fields)} }}")
        spans = v.spans or (span,) * len(v.keys)
        fields = self.fields
        if v.keys and self.rest is not REQUIRED:
            fields = tuple(f if f.name in v.keys else replace(f, default=self.rest) for f in fields)
        entry = Entry("record", self.name, fields)
        kws = list(zip(v.keys, v.values, spans, strict=True))
        args, _ = bind(entry, [], kws, span, noun="key")
        return Rec(args.items)


@dataclass(frozen=True)
class MapT(ArgType):
    """A record with free keys, e.g. layer patterns: `{ "conv*": 0.1, head: 2.0 }`."""

    value: ArgType

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"{{ name: {self.value.label}, ... }}"

    def convert(self, v: Any, span: Span) -> Any:
        if not isinstance(v, RecordVal):
            raise Mismatch(f"a record {{ name: {self.value.label}, ... }}")
        spans = v.spans or (span,) * len(v.keys)
        return tuple(
            (k, convert_at(self.value, x, s, f"the value of `{k}`"))
            for k, x, s in zip(v.keys, v.values, spans, strict=True)
        )

    def from_default(self, d: Any) -> Any:
        return RecordVal((), ()) if d == () else d


@dataclass(frozen=True)
class UnionT(ArgType):
    options: tuple[ArgType, ...]

    @property
    def label(self) -> str:  # type: ignore[override]
        return " | ".join(o.label for o in self.options)

    def convert(self, v: Any, span: Span) -> Any:
        last: Mismatch | None = None
        for o in self.options:
            try:
                return o.convert(v, span)
            except Mismatch as m:
                last = m
        raise Mismatch(self.label, last.code if last else E_TYPE)

    def from_default(self, d: Any) -> Any:
        return self.options[0].from_default(d)


def convert_at(t: ArgType, v: Any, span: Span, context: str = "value") -> Any:
    """Convert, turning a mismatch into a positioned diagnostic."""
    try:
        return t.convert(v, span)
    except Mismatch as m:
        if isinstance(v, Sym) and m.code == E_TYPE:
            raise UnknownWord(v, context) from None
        raise error(
            m.code, f"{context} must be {_article(m.expected)}, got {describe(v)}", span, m.hint
        ) from None


def _article(expected: str) -> str:
    if expected.startswith(("one of", "a ", "an ", "list", "{", "same")) or "|" in expected:
        return expected
    return ("an " if expected[0] in "aeiou" else "a ") + expected


# ----------------------------------------------------------------------------- binding


def bind(
    entry: Entry,
    pos: Sequence[tuple[Any, Span]],
    kws: Sequence[tuple[str, Any, Span]],
    span: Span,
    noun: str = "argument",
) -> tuple[Args, dict[str, Span]]:
    """Match a call's arguments to an entry: check names, count and types; fill defaults."""
    given, spans = _match(entry, pos, kws, span, noun)
    values: list[tuple[str, Any]] = []
    for a in entry.args:
        if a.name in given:
            ctx = f"{noun} `{a.name}` of `{entry.name}`"
            values.append((a.name, convert_at(a.type, given[a.name], spans[a.name], ctx)))
        elif a.required:
            raise error(
                E_MISSING_ARG,
                f"`{entry.name}` needs {noun} `{a.name}` ({a.type.label})",
                span,
                _missing_hint(entry, a, noun),
            )
        elif isinstance(a.default, SameAs):
            values.append((a.name, a.default))
        else:
            values.append((a.name, a.type.convert(a.type.from_default(a.default), span)))
    resolved = dict(values)
    final = tuple((k, resolved[v.arg] if isinstance(v, SameAs) else v) for k, v in values)
    return Args(final), spans


def _match(
    entry: Entry,
    pos: Sequence[tuple[Any, Span]],
    kws: Sequence[tuple[str, Any, Span]],
    span: Span,
    noun: str,
) -> tuple[dict[str, Any], dict[str, Span]]:
    given: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    positional = [a for a in entry.args if not a.kw_only]
    variadic = next((a for a in positional if a.variadic), None)
    fixed = [a for a in positional if not a.variadic]
    if variadic is not None:
        if pos:
            given[variadic.name] = ListVal(tuple(v for v, _ in pos), tuple(s for _, s in pos))
            spans[variadic.name] = pos[0][1].to(pos[-1][1])
        pos = []
    if len(pos) > len(fixed):
        extra, extra_span = pos[len(fixed)]
        if isinstance(extra, Sym):  # most likely a misspelt value name, not an argument
            raise UnknownWord(extra, noun)
        names = ", ".join(f"`{a.name}`" for a in fixed) or "none"
        raise error(
            E_TOO_MANY_ARGS,
            f"`{entry.name}` takes {len(fixed)} positional {noun}(s) ({names}), got {len(pos)}",
            extra_span,
            "name the others: `name = value`"
            if len(entry.args) > len(fixed)
            else f"remove the extra {noun}(s)",
        )
    for a, (v, s) in zip(fixed, pos, strict=False):
        given[a.name], spans[a.name] = v, s
    arg_names = [a.name for a in entry.args]
    for k, v, s in kws:
        if k not in arg_names:
            hint: str | None = did_you_mean(k, arg_names) or (
                f"`{entry.name}` takes " + ", ".join(f"`{n}`" for n in arg_names)
                if arg_names
                else f"`{entry.name}` takes no {noun}s"
            )
            weightless = entry.get_arg("init") is None and entry.get_arg("bias_init") is None
            if k in _WEIGHT_WORDS and entry.kind in ("layer", "activation") and weightless:
                hint = f"`{entry.name}` has no weights, so it takes no `{k}`"
            raise error(E_UNKNOWN_ARG, f"unknown {noun} `{k}` for `{entry.name}`", s, hint)
        if k in given:
            raise error(
                E_DUPLICATE_ARG,
                f"{noun} `{k}` of `{entry.name}` given twice",
                s,
                f"remove one of the two values of `{k}`",
            )
        given[k], spans[k] = v, s
    return given, spans


_WEIGHT_WORDS = ("init", "bias_init", "regularizer", "constraint")


def _missing_hint(entry: Entry, a: Arg, noun: str) -> str:
    if noun == "key":
        return f"add `{a.name}: ...` to the record"
    if noun == "field":
        return f"add `{a.name} = ...` to the `{entry.name}` section"
    if a.kw_only:
        return f"write `{entry.name}({a.name} = ...)`"
    return f"write `{entry.name}({a.name} = ...)` or give it first"


def run_validate(entry: Entry, args: Args, spans: dict[str, Span], span: Span) -> None:
    """Run an entry's argument-combination check, positioning its complaint."""
    if entry.validate is None:
        return
    try:
        entry.validate(args)
    except Problem as p:
        raise error(p.code or E_VALUE, p.message, spans.get(p.arg or "", span), p.hint) from None


def call(name: str, *args: Any, **kwargs: Any) -> CallVal:
    """A default that is a word with arguments: `call("constant", value=0.25)`."""
    pos = [(None, v, NO_SPAN) for v in args]
    return CallVal(name, tuple(pos + [(k, v, NO_SPAN) for k, v in kwargs.items()]))


# Shorthands used by the kind modules.
PosInt = IntT(min=1)
NonNegInt = IntT(min=0)
Int = IntT()
Float = FloatT()
PosFloat = FloatT(min=0.0, min_open=True)
NonNegFloat = FloatT(min=0.0)
Prob = FloatT(min=0.0, max=1.0)
Rate = FloatT(min=0.0, max=1.0, max_open=True)
Bool = BoolT()
Str = StrT()
Any_ = AnyT()
Axis = AxisT()
Duration = QuantityT()
