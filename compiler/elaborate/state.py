"""The checker's state: evaluation values, scopes, the graph being built, and `Base`,
which holds what every part of the checker shares (the collector, binding, static values)
and declares the methods one part calls on another."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .. import ast
from ..diagnostics import (
    E_NOT_STATIC,
    E_UNKNOWN_NAME,
    Diagnostic,
    DiagnosticError,
    Diagnostics,
    Span,
    error,
)
from ..ir import Node
from ..registry.core import Entry, did_you_mean
from ..registry.types import UnknownWord, bind
from ..resolve import Resolved
from ..values import (
    Sym,
)


@dataclass(frozen=True, slots=True)
class Tensor:
    """A value flowing through the model graph; `shape` None means an earlier error."""

    node: str
    shape: tuple[int, ...] | None
    dtype: str = "f32"

    @property
    def poisoned(self) -> bool:
        return self.shape is None


POISON = Tensor("<error>", None)


@dataclass(frozen=True, slots=True)
class NamedInputs:
    """What `in` means in a block that names its inputs: nothing, with a message saying so."""

    block: str
    names: tuple[str, ...]


_UNDEFINED = object()


@dataclass(slots=True)
class Env:
    """Names in scope: params, block arguments, loop indices, named values, `in`."""

    vars: dict[str, Any]
    parent: Env | None = None

    def lookup(self, name: str) -> Any:
        env: Env | None = self
        while env is not None:
            if name in env.vars:
                return env.vars[name]
            env = env.parent
        return _UNDEFINED

    def names(self) -> list[str]:
        out: list[str] = []
        env: Env | None = self
        while env is not None:
            out += list(env.vars)
            env = env.parent
        return out

    def child(self, **vars: Any) -> Env:
        return Env(dict(vars), self)


_BUILTINS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "abs": abs, "len": len}


# The most layers a model may expand to (blocks and repeats unrolled), so that every spec
# checks in bounded time and memory: ~1 s of `dnn check` for a replicated repeat, ~15 s for
# one elaborated layer by layer (docs/performance.md). The largest example has 76 layers.
MAX_LAYERS = 100_000


_SMALLER = "lower the count, or make the body smaller"


class _TooLarge(Exception):
    """The graph reached MAX_LAYERS: the outermost `repeat`, or the model line, reports it."""


class _TooSlow(_TooLarge):
    """The check ran past its deadline (`dnn lsp`): reported where `_TooLarge` is."""


# A naming step of one repeat iteration, replayed for the next: ("unique", prefix, base,
# full name) or ("discard", "", "", full name).
_NameOp = tuple[str, str, str, str]


@dataclass(slots=True)
class _Graph:
    """The graph under construction."""

    nodes: list[Node] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    scope: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    blocks_active: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)  # node name -> position in `nodes`
    logs: list[list[_NameOp]] = field(default_factory=list)  # one per repeat being recorded
    blocks: dict[str, str] = field(default_factory=dict)  # instance path -> the block's name
    sites: dict[str, Span] = field(default_factory=dict)  # instance path -> its call's span
    # time.monotonic() past which elaboration stops (the editor's bound); None: no bound
    deadline: float | None = None

    def unique(self, base: str) -> str:
        """`dense`, `dense_1`, ... within the current block instance."""
        return self.unique_in("/".join(self.scope), base)

    def unique_in(self, prefix: str, base: str) -> str:
        key = f"{prefix}/{base}"
        while True:
            n = self.counters.get(key, 0)
            self.counters[key] = n + 1
            local = base if n == 0 else f"{base}_{n}"
            full = f"{prefix}/{local}" if prefix else local
            if full not in self.names:
                self.names.add(full)
                for log in self.logs:
                    log.append(("unique", prefix, base, full))
                return full

    def discard(self, name: str) -> None:
        self.names.discard(name)
        for log in self.logs:
            log.append(("discard", "", "", name))

    def tick(self) -> None:
        """Stop with `_TooSlow` once the deadline has passed."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise _TooSlow

    def add(self, node: Node) -> None:
        if len(self.nodes) >= MAX_LAYERS:
            raise _TooLarge
        self.tick()
        self.index[node.name] = len(self.nodes)
        self.nodes.append(node)

    def rename(self, i: int, name: str) -> Node:
        old = self.nodes[i]
        del self.index[old.name]
        self.index[name] = i
        self.nodes[i] = replace(old, name=name)
        return self.nodes[i]

    def node(self, name: str) -> Node:
        return self.nodes[self.index[name]]


class Base:
    """State and helpers shared by the parts of the checker (see compiler/check.py)."""

    def __init__(self, resolved: Resolved, diags: Diagnostics, deadline: float | None = None):
        self.r = resolved
        self.diags = diags
        self.g = _Graph(deadline=deadline)
        self.menv = Env({})
        self.env = self.menv  # the innermost scope being evaluated, for did-you-mean hints
        self.failed: set[str] = set()  # params whose value had an error: uses stay silent
        self.repeats = 0  # repeats being elaborated around the current statement
        # The name a statement binds (`u2 = up(32)(b, d2)`), and the spans of the expressions
        # whose value it binds: a block expanded at one of them is named after the binding.
        self.binding: tuple[str, frozenset[Span]] | None = None

    def _try(self, f: Callable[[], Any], fallback: Any = None) -> Any:
        try:
            return f()
        except DiagnosticError as e:
            self.diags.add(e.diagnostic)
            return fallback

    def static(self, expr: ast.Expr, env: Env, what: str = "value") -> Any:
        """Evaluate an expression that must be a compile-time value."""
        v = self.eval(expr, env, None)
        if isinstance(v, Tensor):
            raise error(
                E_NOT_STATIC,
                f"{what} must be a compile-time value, not a tensor",
                expr.span,
                "use a shape property such as `x.channels`",
            )
        return v

    def bind(
        self, entry: Entry, pos: list[Any], kws: list[Any], span: Span, noun: str = "argument"
    ) -> tuple[Any, dict[str, Span]]:
        """`types.bind`, with a bare unknown word reported as an unknown name in scope."""
        try:
            return bind(entry, pos, kws, span, noun)
        except UnknownWord as u:
            raise self._unknown_word(u.word) from None

    def _unknown_word(self, word: Sym) -> DiagnosticError:
        if word.name in self.failed:  # the param's own error was reported already
            return DiagnosticError(Diagnostic("", "", word.span))
        names = [n for n in self.env.names() if n != "in"] + list(self.r.blocks)
        values = [n for n in names if isinstance(self.env.lookup(n), Tensor)]
        fallback = (
            "values in scope: " + ", ".join(f"`{n}`" for n in values[:6])
            if values
            else "define it with `param` or as a block argument"
        )
        return error(
            E_UNKNOWN_NAME,
            f"unknown name `{word.name}`",
            word.span,
            did_you_mean(word.name, names) or fallback,
        )

    # ---- defined by the parts ----------------------------------------------

    def _current(self, current: Any, layer: Any, span: Span) -> Tensor:
        raise NotImplementedError  # defined by a mixin of Checker

    def _int(self, expr: ast.Expr, env: Env, what: str) -> int:
        raise NotImplementedError  # defined by a mixin of Checker

    def _is_word(self, name: str) -> bool:
        raise NotImplementedError  # defined by a mixin of Checker

    def apply(
        self, f: Any, inputs: list[Tensor], config: list[tuple[str | None, Any, Span]], span: Span
    ) -> Tensor:
        raise NotImplementedError  # defined by a mixin of Checker

    def eval(self, e: ast.Expr, env: Env, current: Any) -> Any:
        raise NotImplementedError  # defined by a mixin of Checker
