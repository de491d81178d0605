"""Expressions: compile-time values, names, calls of layers and blocks, operators."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

from .. import ast
from ..diagnostics import (
    E_EVAL,
    E_NOT_A_LAYER,
    E_NOT_STATIC,
    E_TYPE,
    E_UNKNOWN_NAME,
    E_VALUE,
    Diagnostic,
    DiagnosticError,
    Span,
    error,
)
from ..registry import REGISTRIES
from ..registry.core import did_you_mean
from ..registry.layers import ACTIVATIONS, LAYERS
from ..registry.types import describe, layer_arg
from ..values import (
    DTYPES,
    CallVal,
    LayerRef,
    ListVal,
    Quantity,
    RecordVal,
    Sym,
    TensorType,
    show,
)
from .state import (
    _BUILTINS,
    _UNDEFINED,
    POISON,
    Base,
    Env,
    NamedInputs,
    Tensor,
)


class Evaluate(Base):
    """Expressions: compile-time values, names, calls of layers and blocks, operators."""

    def _int(self, expr: ast.Expr, env: Env, what: str) -> int:
        v = self.static(expr, env, what)
        if isinstance(v, bool) or not isinstance(v, int):
            raise error(E_TYPE, f"{what} must be an int, got {describe(v)}", expr.span)
        return v

    def eval(self, e: ast.Expr, env: Env, current: Any) -> Any:
        method = getattr(self, "_eval_" + type(e).__name__)
        return method(e, env, current)

    def _eval_IntLit(self, e: ast.IntLit, env: Env, current: Any) -> Any:
        return e.value

    _eval_FloatLit = _eval_StringLit = _eval_BoolLit = _eval_IntLit

    def _eval_NoneLit(self, e: ast.NoneLit, env: Env, current: Any) -> Any:
        return None

    def _eval_Quantity(self, e: ast.Quantity, env: Env, current: Any) -> Any:
        return Quantity(e.value, e.unit)

    def _eval_Name(self, e: ast.Name, env: Env, current: Any) -> Any:
        v = env.lookup(e.id)
        if isinstance(v, NamedInputs):
            names = ", ".join(f"`{n}`" for n in v.names)
            raise error(
                E_UNKNOWN_NAME,
                f"block `{v.block}` names its inputs, so `in` is not defined",
                e.span,
                f"use one of {names}",
            )
        if v is not _UNDEFINED:
            return v
        if e.id == "in":
            raise error(
                E_UNKNOWN_NAME,
                "`in` is only defined inside a block or repeat",
                e.span,
                "refer to a named value or input instead",
            )
        return Sym(e.id, e.span)

    def _eval_ListLit(self, e: ast.ListLit, env: Env, current: Any) -> Any:
        return ListVal(
            tuple(self.eval(x, env, current) for x in e.items), tuple(x.span for x in e.items)
        )

    def _eval_Record(self, e: ast.Record, env: Env, current: Any) -> Any:
        return RecordVal(
            tuple(p.key for p in e.pairs),
            tuple(self.eval(p.value, env, current) for p in e.pairs),
            tuple(p.span for p in e.pairs),
        )

    def _eval_Chain(self, e: ast.Chain, env: Env, current: Any) -> Any:
        # A mistake in one link poisons the rest of the chain, whose words are still checked.
        head = self._try(partial(self._chain_head, e.items[0], env, current), POISON)
        for item in e.items[1:]:
            head = self._try(partial(self._chain_link, item, env, current, head), POISON)
        return head

    def _chain_head(self, item: ast.Expr, env: Env, current: Any) -> Tensor:
        head = self.eval(item, env, current)
        if _layer_like(head):
            head = self.apply(head, [self._current(current, head, item.span)], [], item.span)
        if not isinstance(head, Tensor):
            raise error(
                E_NOT_A_LAYER,
                f"{describe(head)} is not a layer or tensor",
                item.span,
                "a chain starts with a layer or a named value",
            )
        return head

    def _chain_link(self, item: ast.Expr, env: Env, current: Any, head: Tensor) -> Tensor:
        layer = self.eval(item, env, current)
        if not _layer_like(layer):
            raise error(
                E_NOT_A_LAYER,
                f"{describe(layer)} cannot follow `->`",
                item.span,
                "only layers and blocks can follow `->`",
            )
        return self.apply(layer, [head], [], item.span)

    def _eval_Cond(self, e: ast.Cond, env: Env, current: Any) -> Any:
        test = self.static(e.test, env, "the condition")
        if not isinstance(test, bool):
            raise error(
                E_TYPE, f"the condition must be true or false, got {describe(test)}", e.test.span
            )
        return self.eval(e.then if test else e.orelse, env, current)

    def _eval_Attr(self, e: ast.Attr, env: Env, current: Any) -> Any:
        v = self.eval(e.value, env, current)
        if isinstance(v, Tensor):
            if v.shape is None:  # unknown after an earlier error, which was reported
                raise DiagnosticError(Diagnostic("", "", e.span))
            props = {
                "channels": v.shape[-1] if v.shape else 1,
                "shape": v.shape,
                "rank": len(v.shape),
                "size": math.prod(v.shape),
            }
            if e.attr in props:
                return props[e.attr]
            raise error(
                E_UNKNOWN_NAME,
                f"a tensor has no property `{e.attr}`",
                e.span,
                did_you_mean(e.attr, list(props)) or "use channels, shape, rank or size",
            )
        if isinstance(v, Sym):
            self._unknown(v, env)
        raise error(E_TYPE, f"{describe(v)} has no property `{e.attr}`", e.span)

    def _eval_Subscript(self, e: ast.Subscript, env: Env, current: Any) -> Any:
        v = self.eval(e.value, env, current)
        idx = [self.static(i, env, "an index") for i in e.index]
        if isinstance(v, Sym) and v.name in DTYPES:
            return self._tensor_type(v.name, idx, e)
        if isinstance(v, tuple) and len(idx) == 1 and isinstance(idx[0], int):
            if -len(v) <= idx[0] < len(v):
                return v[idx[0]]
            raise error(E_VALUE, f"index {idx[0]} is out of range for {show(v)}", e.index[0].span)
        if isinstance(v, ListVal):
            return _list_item(v, idx, e)
        if isinstance(v, Sym):
            hint = did_you_mean(v.name, list(DTYPES)) or "dtypes are " + ", ".join(DTYPES)
            raise error(E_UNKNOWN_NAME, f"unknown dtype `{v.name}`", e.value.span, hint)
        raise error(E_TYPE, f"{describe(v)} cannot be indexed", e.span)

    def _tensor_type(self, dtype: str, dims: list[Any], e: ast.Subscript) -> TensorType:
        for d, x in zip(dims, e.index, strict=True):
            if isinstance(d, bool) or not isinstance(d, int):
                raise error(E_TYPE, f"a dimension must be an int, got {describe(d)}", x.span)
            if d < 1:
                raise error(E_VALUE, f"a dimension must be at least 1, got {d}", x.span)
        if not dims:
            raise error(
                E_VALUE,
                "a tensor type needs at least one dimension",
                e.span,
                f"write e.g. `{dtype}[10]`",
            )
        return TensorType(dtype, tuple(dims))

    def _eval_UnaryOp(self, e: ast.UnaryOp, env: Env, current: Any) -> Any:
        v = self._operand(e.operand, env, current)
        if e.op == "not":
            if not isinstance(v, bool):
                raise error(E_TYPE, f"`not` needs true or false, got {describe(v)}", e.span)
            return not v
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise error(E_TYPE, f"`{e.op}` needs a number, got {describe(v)}", e.span)
        return -v if e.op == "-" else v

    def _eval_BinOp(self, e: ast.BinOp, env: Env, current: Any) -> Any:
        left = self._operand(e.left, env, current)
        if e.op in ("and", "or"):
            if not isinstance(left, bool):
                raise error(
                    E_TYPE, f"`{e.op}` needs true or false, got {describe(left)}", e.left.span
                )
            if (e.op == "and" and not left) or (e.op == "or" and left):
                return left
            right = self._operand(e.right, env, current)
            if not isinstance(right, bool):
                raise error(
                    E_TYPE, f"`{e.op}` needs true or false, got {describe(right)}", e.right.span
                )
            return right
        right = self._operand(e.right, env, current)
        return _binop(e, left, right)

    def _operand(self, e: ast.Expr, env: Env, current: Any) -> Any:
        v = self.eval(e, env, current)
        if isinstance(v, Tensor):
            raise error(
                E_NOT_STATIC,
                "a tensor cannot be used in arithmetic",
                e.span,
                "use a shape property such as `x.channels` or `x.shape[0]`",
            )
        if isinstance(v, Sym):
            self._unknown(v, env)
        return v

    def _unknown(self, v: Sym, env: Env) -> None:
        outer, self.env = self.env, env
        try:
            raise self._unknown_word(v)
        finally:
            self.env = outer

    def _eval_Call(self, e: ast.Call, env: Env, current: Any) -> Any:
        f = self.eval(e.func, env, current)
        args = [(a.name, self.eval(a.value, env, current), a.span) for a in e.args]
        for i, (name, v, span) in enumerate(args):
            if name is not None and isinstance(v, Tensor):
                if v.poisoned:  # an earlier mistake, reported there
                    return POISON
                args[i] = (name, self._layer_ref(f, name, v, span), span)
        tensors = [v for k, v, _ in args if isinstance(v, Tensor)]
        config = [(k, v, s) for k, v, s in args if not isinstance(v, Tensor)]
        if isinstance(f, Sym) and f.name in _BUILTINS and env.lookup(f.name) is _UNDEFINED:
            return self._builtin(f, args if f.name == "len" else config, e)
        if isinstance(f, Tensor):
            raise error(
                E_NOT_A_LAYER,
                "a tensor cannot be called",
                e.func.span,
                "apply a layer to it instead: `layer(...)(x)`",
            )
        if isinstance(f, CallVal) and not tensors:
            for k, v, _ in config:
                if k is None and isinstance(v, Sym) and not self._is_word(v.name):
                    raise self._unknown_word(v)
            raise error(
                E_NOT_A_LAYER,
                f"`{f.name}(...)` already has its arguments",
                e.span,
                f"apply it to a tensor: `{f.name}(...)(x)`",
            )
        if not isinstance(f, Sym | CallVal):
            raise error(E_NOT_A_LAYER, f"{describe(f)} cannot be called", e.func.span)
        if tensors:
            return self.apply(f, tensors, config, e.span)
        return CallVal(f.name, tuple(config), e.func.span)  # errors about the word point at it

    def _layer_ref(self, f: Any, name: str, v: Tensor, span: Span) -> LayerRef:
        """A tensor given by keyword names its layer, where the word takes a layer there
        (`dense(..., tie = tok)`); anywhere else a tensor is an input, given positionally."""
        entry = LAYERS.lookup(f.name) if isinstance(f, Sym | CallVal) else None
        if entry is None or layer_arg(entry, name) is None:
            raise error(
                E_NOT_STATIC,
                f"argument `{name}` cannot be a tensor",
                span,
                "pass tensors positionally, as inputs",
            )
        node = self.g.node(v.node)
        return LayerRef(node.name, node.op, node.args)

    def _is_word(self, name: str) -> bool:
        return (
            name in self.r.blocks
            or name in DTYPES
            or any(name in reg for reg in REGISTRIES.values())
        )

    def _builtin(self, f: Sym, args: list[tuple[str | None, Any, Span]], e: ast.Call) -> Any:
        values = [v for _, v, _ in args]
        if f.name == "len":
            return _len(args, e)
        if (
            any(k is not None for k, _, _ in args)
            or not values
            or any(isinstance(v, bool) or not isinstance(v, int | float) for v in values)
        ):
            raise error(E_TYPE, f"`{f.name}` takes numbers, positionally", e.span)
        if f.name == "abs" and len(values) != 1:
            raise error(E_TYPE, "`abs` takes one number", e.span)
        return _BUILTINS[f.name](*values) if f.name != "abs" else abs(values[0])


def _len(args: list[tuple[str | None, Any, Span]], e: ast.Call) -> int:
    """`len(depths)`, `len(x.shape)`: the length of one list."""
    if len(args) != 1 or args[0][0] is not None:
        raise error(E_TYPE, f"`len` takes one list, got {len(args)} arguments", e.span)
    v = args[0][1]
    if isinstance(v, ListVal):
        return len(v.items)
    if isinstance(v, tuple):  # a shape
        return len(v)
    hint = "a tensor's length is a shape property: `x.rank`, `x.shape[0]`"
    raise error(
        E_TYPE,
        f"`len` takes a list, got {describe(v)}",
        args[0][2],
        hint if isinstance(v, Tensor) else None,
    )


def _list_item(v: ListVal, idx: list[Any], e: ast.Subscript) -> Any:
    """`depths[i]`: one int index, negative from the end as in Python."""
    if len(idx) != 1:
        raise error(
            E_TYPE,
            f"a list takes one index, got {len(idx)}",
            e.span,
            "index nested lists one at a time: `a[i][j]`",
        )
    i, n = idx[0], len(v.items)
    if isinstance(i, bool) or not isinstance(i, int):
        raise error(E_TYPE, f"a list index must be an int, got {describe(i)}", e.index[0].span)
    if not -n <= i < n:
        valid = f"0 to {n - 1}, or -{n} to -1 from the end" if n else "none: the list is empty"
        raise error(
            E_VALUE,
            f"index {i} is out of range for a list of length {n}",
            e.index[0].span,
            f"valid indices are {valid}",
        )
    return v.items[i]


def _layer_like(v: Any) -> bool:
    return isinstance(v, Sym | CallVal)


def _aliases() -> list[str]:
    return [a for reg in (LAYERS, ACTIVATIONS) for e in reg for a in e.aliases]


def _binop(e: ast.BinOp, a: Any, b: Any) -> Any:
    op = e.op
    if op in ("==", "!="):
        return (a == b) == (op == "==")
    numeric = all(not isinstance(x, bool) and isinstance(x, int | float) for x in (a, b))
    if not numeric:
        bad = a if not (not isinstance(a, bool) and isinstance(a, int | float)) else b
        raise error(E_TYPE, f"`{op}` needs numbers, got {describe(bad)}", e.span)
    try:
        return _OPS[op](a, b)
    except ZeroDivisionError:
        raise error(E_EVAL, "division by zero", e.span) from None
    except (OverflowError, ValueError) as exc:
        raise error(E_EVAL, f"cannot compute `{op}`: {exc}", e.span) from None


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "//": lambda a, b: a // b,
    "%": lambda a, b: a % b,
    "**": lambda a, b: (
        a**b if not (isinstance(b, int) and b > 64 and a not in (0, 1, -1)) else math.pow(a, b)
    ),
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}
