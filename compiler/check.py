"""Resolved AST → IR: evaluate compile-time values, expand blocks and repeats, infer shapes.

Entry point: `check(resolved, diags) -> ir.Program`. Errors go to the `Diagnostics` collector
and elaboration carries on with a poisoned value, so one run reports every independent mistake.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from . import ast, rules
from .diagnostics import (
    E_DTYPE,
    E_DUPLICATE,
    E_EVAL,
    E_MODEL,
    E_NO_INPUT,
    E_NOT_A_LAYER,
    E_NOT_STATIC,
    E_SECTION,
    E_SHAPE,
    E_TOO_LARGE,
    E_TYPE,
    E_UNKNOWN_FIELD,
    E_UNKNOWN_LAYER,
    E_UNKNOWN_NAME,
    E_UNKNOWN_SECTION,
    E_VALUE,
    W_NO_MODEL,
    W_NOTHING_TRAINS,
    W_UNUSED,
    Diagnostic,
    DiagnosticError,
    Diagnostics,
    Span,
    error,
)
from .ir import Config, Graph, Node, Program, SweepAxis
from .registry import REGISTRIES
from .registry.core import Entry, Problem, did_you_mean
from .registry.layers import ACTIVATIONS, LAYERS
from .registry.sections import SECTIONS
from .registry.types import RefT, UnknownWord, bind, convert_at, describe
from .resolve import Resolved
from .values import (
    DTYPES,
    CallVal,
    ListVal,
    Quantity,
    RecordVal,
    Sym,
    TensorType,
    is_float_dtype,
    show,
)

# ------------------------------------------------------------------ evaluation values


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


_BUILTINS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "abs": abs}


# The most layers a model may expand to (blocks and repeats unrolled), so that every spec
# checks in bounded time and memory: ~1 s of `dnn check` for a replicated repeat, ~15 s for
# one elaborated layer by layer (docs/performance.md). The largest example has 76 layers.
MAX_LAYERS = 100_000


_SMALLER = "lower the count, or make the body smaller"


class _TooLarge(Exception):
    """The graph reached MAX_LAYERS: the outermost `repeat`, or the model line, reports it."""


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

    def add(self, node: Node) -> None:
        if len(self.nodes) >= MAX_LAYERS:
            raise _TooLarge
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


class Checker:
    """Evaluates one resolved module into a Program."""

    def __init__(self, resolved: Resolved, diags: Diagnostics):
        self.r = resolved
        self.diags = diags
        self.g = _Graph()
        self.menv = Env({})
        self.env = self.menv  # the innermost scope being evaluated, for did-you-mean hints
        self.failed: set[str] = set()  # params whose value had an error: uses stay silent
        self.repeats = 0  # repeats being elaborated around the current statement

    # ---- entry -----------------------------------------------------------

    def program(self) -> Program:
        env = self._params()
        model = self._model(env)
        sections = {s.name: s for s in self._sections()}
        train = self._section("train", sections.get("train"), env)
        data = self._section("data", sections["data"], env) if "data" in sections else None
        sweep: Config | None = None
        axes: tuple[SweepAxis, ...] = ()
        if not any(isinstance(i, ast.ModelDef) for i in self.r.module.items):
            self._no_model()
        if "sweep" in sections:
            sweep, axes = self._sweep(sections["sweep"], env)
        if model is not None and train is not None:
            train = rules.apply(model, data, train, "train" in sections, self.diags)
            self._check_freeze(model, train)
            if "train" in sections or "data" in sections:
                self._check_trains(model, train)
            self._check_monitors(train)
            self._check_memory(model, train, data)
        params = tuple((k, v) for k, v in env.vars.items() if not isinstance(v, Tensor))
        version = next((i.number for i in self.r.module.items if isinstance(i, ast.Version)), 1)
        return Program(
            self.r.module.path,
            version,
            params,
            model,
            train or Config("train", ()),
            data,
            sweep,
            axes,
            dict(self.r.sources),
            self.r.module,
        )

    def _no_model(self) -> None:
        """No model: warn that `dnn train` will refuse the spec, unless it is a block library.

        A block library (blocks and params only, for other specs to import) checks clean. A
        spec of sections only still loads (`dnn.loads(...).build_optimizer()` reads `train`).
        """
        sections = any(isinstance(i, ast.Section) for i in self.r.module.items)
        if sections or not (self.r.blocks or self.r.params):
            d = nothing_to_train(self.r.module)
            self.diags.add(replace(d, code=W_NO_MODEL, severity="warning"))

    def _try(self, f: Callable[[], Any], fallback: Any = None) -> Any:
        try:
            return f()
        except DiagnosticError as e:
            self.diags.add(e.diagnostic)
            return fallback

    # ---- params ----------------------------------------------------------

    def _params(self) -> Env:
        env = self.menv
        for p in self.r.params.values():
            value = self._try(partial(self.static, p.value, env, f"param `{p.name}`"), _UNDEFINED)
            if value is not _UNDEFINED:
                env.vars[p.name] = value
            else:
                self.failed.add(p.name)
        return env

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

    # ---- the model -------------------------------------------------------

    def _model(self, env: Env) -> Graph | None:
        models = [i for i in self.r.module.items if isinstance(i, ast.ModelDef)]
        for extra in models[1:]:
            self.diags.add(
                Diagnostic(
                    E_MODEL,
                    f"a spec holds one model; `{extra.name}` is a second",
                    extra.span,
                    "move it to a file of its own",
                )
            )
        if not models:
            return None
        m = models[0]
        current = self._body(m.body, env.child(), None, top=True)
        if not self.g.inputs and not self.diags.errors:
            self.diags.add(
                Diagnostic(
                    E_MODEL,
                    f"model `{m.name}` has no input",
                    m.span,
                    "declare one first: `input x: f32[28, 28, 1]`",
                )
            )
            return None
        if not self.g.outputs and isinstance(current, Tensor) and not current.poisoned:
            self.g.outputs.append(current.node)
        if self.diags.errors:
            return None
        self._warn_unused()
        return Graph(
            m.name, tuple(self.g.nodes), tuple(self.g.inputs), tuple(self.g.outputs), m.span
        )

    def _warn_unused(self) -> None:
        used = {i for n in self.g.nodes for i in n.inputs} | set(self.g.outputs)
        for n in self.g.nodes:
            if n.name not in used:
                self.diags.add(
                    Diagnostic(
                        W_UNUSED,
                        f"`{n.name}` is computed but never used",
                        n.span,
                        "use it, return it with `output`, or delete it",
                        severity="warning",
                    )
                )

    def _body(self, body: ast.Body, env: Env, current: Any, top: bool = False) -> Any:
        outer, self.env = self.env, env
        try:
            for stmt in body.stmts:
                try:
                    current = self._stmt(stmt, env, current, top)
                except _TooLarge:
                    if not top:
                        raise
                    self.diags.add(
                        _too_large(stmt.span, "this line", "use fewer or smaller blocks").diagnostic
                    )
                    return POISON
                except DiagnosticError as e:
                    self.diags.add(e.diagnostic)
                    if isinstance(stmt, ast.Assign | ast.InputDecl):
                        env.vars[stmt.name] = POISON
                    if not isinstance(stmt, ast.Assign):
                        current = POISON
        finally:
            self.env = outer
        return current

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

    def _stmt(self, stmt: ast.Stmt, env: Env, current: Any, top: bool) -> Any:
        if isinstance(stmt, ast.InputDecl):
            return self._input(stmt, env, top)
        if isinstance(stmt, ast.Repeat):
            return self._repeat(stmt, env, current)
        start = len(self.g.nodes)
        value = self._layer_value(stmt.value, env, current)
        if isinstance(stmt, ast.ExprStmt):
            if not isinstance(value, Tensor):
                raise error(
                    E_NOT_A_LAYER,
                    f"{describe(value)} is a value, not a layer",
                    stmt.value.span,
                    "a model line applies a layer, e.g. `dense(10)`",
                )
            return value
        name = stmt.name
        if name is not None:
            value = self._name_value(name, value, start, stmt.span)
            env.vars[name] = value
        if isinstance(stmt, ast.Output):
            if not isinstance(value, Tensor):
                raise error(E_NOT_A_LAYER, "`output` needs a tensor", stmt.value.span)
            if not value.poisoned:
                self.g.outputs.append(value.node)
        return value if isinstance(value, Tensor) else current

    def _name_value(self, name: str, value: Any, start: int, span: Span) -> Any:
        """Give the user's name to the layer a named statement created."""
        if not isinstance(value, Tensor) or value.poisoned:
            return value
        idx = next(
            (i for i in range(start, len(self.g.nodes)) if self.g.nodes[i].name == value.node), None
        )
        if idx is None or self.g.nodes[idx].scope != tuple(self.g.scope):
            return value
        old = self.g.nodes[idx]
        if old.kind == "input":
            return value
        self.g.discard(old.name)
        new = self.g.rename(idx, self.g.unique(name))
        return replace(value, node=new.name)

    def _input(self, stmt: ast.InputDecl, env: Env, top: bool) -> Tensor:
        if not top:
            raise error(
                E_MODEL,
                "`input` belongs at the top of a model, not in a block or repeat",
                stmt.span,
                "a block's input is `in`",
            )
        t = self.static(stmt.type, env, f"the type of input `{stmt.name}`")
        if not isinstance(t, TensorType):
            raise error(
                E_TYPE,
                f"input `{stmt.name}` needs a tensor type, got {describe(t)}",
                stmt.type.span,
                "write a dtype and shape, e.g. `f32[28, 28, 1]`",
            )
        if stmt.name in self.g.names:
            raise error(E_DUPLICATE, f"input `{stmt.name}` is declared twice", stmt.span)
        self.g.names.add(stmt.name)
        self.g.add(Node(stmt.name, "input", "input", (), (), t.shape, t.dtype, 0, span=stmt.span))
        self.g.inputs.append(stmt.name)
        tensor = Tensor(stmt.name, t.shape, t.dtype)
        env.vars[stmt.name] = tensor
        return tensor

    def _repeat(self, stmt: ast.Repeat, env: Env, current: Any) -> Any:
        start = 0
        if stmt.start is not None:
            start = self._int(stmt.start, env, "the start of the range")
        end = self._int(
            stmt.count, env, "the repeat count" if stmt.var is None else "the range end"
        )
        if end - start < 1:
            what = f"{start}..{end} is empty" if stmt.var else f"repeat count is {end}"
            raise error(
                E_VALUE,
                f"`repeat` must run at least once; {what}",
                stmt.count.span,
                "delete the repeat, or make the count at least 1",
            )
        mark = len(self.g.nodes)
        try:
            return self._iterations(stmt, env, current, start, end)
        except _TooLarge:
            if self.repeats:  # an enclosing repeat reports the whole expansion
                raise
            for node in self.g.nodes[mark:]:  # later lines are checked against a sane graph
                del self.g.index[node.name]
            del self.g.nodes[mark:]
            raise _too_large(stmt.count.span, f"`repeat {end - start:,}`", _SMALLER) from None

    def _iterations(self, stmt: ast.Repeat, env: Env, current: Any, start: int, end: int) -> Any:
        """Elaborate the first iteration; replicate it if the next ones must be the same.

        They are the same when the body keeps its input's shape and dtype and does not read
        the loop index: then each iteration builds the same layers with the same shapes and
        parameters, named as the unrolled loop names them (the first iteration's naming steps,
        replayed). Otherwise each iteration is elaborated, until one fails.
        """
        before, marks = current, (len(self.g.nodes), len(self.diags.items), len(self.g.outputs))
        log: list[_NameOp] = []
        self.g.logs.append(log)
        self.repeats += 1
        try:
            current = self._iteration(stmt, env, current, start)
        finally:
            self.repeats -= 1
            self.g.logs.pop()  # a stack: nested repeats push and pop in turn
        if self._replicable(stmt, env, before, current, marks):
            per = len(self.g.nodes) - marks[0]
            total = len(self.g.nodes) + per * (end - start - 1)
            if total > MAX_LAYERS:
                what = f"`repeat {end - start:,}` of {per:,} layers"
                raise _too_large(stmt.count.span, what, _SMALLER, total)
            return self._replicate(log, self.g.nodes[marks[0] :], before, current, end - start)
        for i in range(start + 1, end):
            if not isinstance(current, Tensor) or current.poisoned:
                break  # the mistakes of one iteration would only repeat
            self.repeats += 1
            try:
                current = self._iteration(stmt, env, current, i)
            finally:
                self.repeats -= 1
        return current

    def _iteration(self, stmt: ast.Repeat, env: Env, current: Any, i: int) -> Any:
        scope = env.child(**({stmt.var: i} if stmt.var else {}))
        scope.vars["in"] = current
        return self._body(stmt.body, scope, current)

    def _replicable(
        self, stmt: ast.Repeat, env: Env, before: Any, after: Any, marks: tuple[int, int, int]
    ) -> bool:
        return (
            isinstance(before, Tensor)
            and isinstance(after, Tensor)
            and not before.poisoned
            and (before.shape, before.dtype) == (after.shape, after.dtype)
            and (len(self.diags.items), len(self.g.outputs)) == marks[1:]
            and (stmt.var is None or stmt.var not in _names_in(stmt.body))
            # the body may read its first input only as `in`: under another name it stays
            # the same tensor in every iteration, which renaming could not tell apart
            and not any(
                isinstance(v := env.lookup(k), Tensor) and v.node == before.node
                for k in env.names()
                if k != "in"  # the body's own `in` hides any outer one
            )
        )

    def _replicate(
        self, log: list[_NameOp], first: list[Node], before: Tensor, after: Tensor, n: int
    ) -> Tensor:
        """Iterations 2..n as copies of the first, renamed as elaboration would name them."""
        current = after
        for _ in range(n - 1):
            renamed = {before.node: current.node}
            for op, prefix, base, full in log:
                if op == "unique":
                    renamed[full] = self.g.unique_in(renamed.get(prefix, prefix), base)
                else:
                    self.g.discard(renamed.get(full, full))
            for node in first:
                scope = renamed.get("/".join(node.scope), "/".join(node.scope))
                self.g.add(
                    replace(
                        node,
                        name=renamed[node.name],
                        inputs=tuple(renamed.get(i, i) for i in node.inputs),
                        scope=tuple(scope.split("/")) if scope else (),
                    )
                )
            current = replace(after, node=renamed.get(after.node, after.node))
        return current

    def _int(self, expr: ast.Expr, env: Env, what: str) -> int:
        v = self.static(expr, env, what)
        if isinstance(v, bool) or not isinstance(v, int):
            raise error(E_TYPE, f"{what} must be an int, got {describe(v)}", expr.span)
        return v

    # ---- expressions -----------------------------------------------------

    def _layer_value(self, expr: ast.Expr, env: Env, current: Any) -> Any:
        """Evaluate a statement's expression; a bare layer applies to the current value."""
        v = self.eval(expr, env, current)
        if _layer_like(v):
            return self.apply(v, [self._current(current, v, expr.span)], [], expr.span)
        return v

    def _current(self, current: Any, layer: Any, span: Span) -> Tensor:
        if isinstance(current, Tensor):
            return current
        raise error(
            E_NO_INPUT,
            f"`{layer.name}` has no input",
            span,
            "declare `input x: f32[...]` before it, or apply it to a value: "
            f"`{layer.name}(...)(x)`",
        )

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
        for name, v, span in args:
            if name is not None and isinstance(v, Tensor):
                raise error(
                    E_NOT_STATIC,
                    f"argument `{name}` cannot be a tensor",
                    span,
                    "pass tensors positionally, as inputs",
                )
        tensors = [v for k, v, _ in args if isinstance(v, Tensor)]
        config = [(k, v, s) for k, v, s in args if not isinstance(v, Tensor)]
        if isinstance(f, Sym) and f.name in _BUILTINS and env.lookup(f.name) is _UNDEFINED:
            return self._builtin(f, config, e)
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

    def _is_word(self, name: str) -> bool:
        return (
            name in self.r.blocks
            or name in DTYPES
            or any(name in reg for reg in REGISTRIES.values())
        )

    def _builtin(self, f: Sym, args: list[tuple[str | None, Any, Span]], e: ast.Call) -> Any:
        values = [v for _, v, _ in args]
        if (
            any(k is not None for k, _, _ in args)
            or not values
            or any(isinstance(v, bool) or not isinstance(v, int | float) for v in values)
        ):
            raise error(E_TYPE, f"`{f.name}` takes numbers, positionally", e.span)
        if f.name == "abs" and len(values) != 1:
            raise error(E_TYPE, "`abs` takes one number", e.span)
        return _BUILTINS[f.name](*values) if f.name != "abs" else abs(values[0])

    # ---- applying layers and blocks ---------------------------------------

    def apply(
        self, f: Any, inputs: list[Tensor], config: list[tuple[str | None, Any, Span]], span: Span
    ) -> Tensor:
        """Apply a layer or block (with its arguments) to input tensors, adding nodes."""
        name = f.name
        all_config = [*(f.args if isinstance(f, CallVal) else ()), *config]
        if name in self.r.blocks:
            return self._expand(name, inputs, all_config, span)
        entry = LAYERS.lookup(name) or ACTIVATIONS.lookup(name)
        if entry is None:
            self._unknown_layer(f, all_config, span)
            return POISON  # the statement goes on: later words in it are still checked
        return self._node(entry, inputs, all_config, span)

    def _unknown_layer(self, f: Any, config: list[Any], span: Span) -> None:
        """Report the unknown layer, and the unknown words among its arguments."""
        words = [*LAYERS.names(), *ACTIVATIONS.names(), *self.r.blocks, *_aliases()]
        self.diags.add(
            Diagnostic(
                E_UNKNOWN_LAYER,
                f"unknown layer `{f.name}`",
                f.span or span,
                did_you_mean(f.name, words) or "see `dnn help layers`",
            )
        )
        for _, v, _ in config:
            if isinstance(v, Sym) and not self._is_word(v.name):
                self.diags.add(self._unknown_word(v).diagnostic)

    def _node(self, entry: Entry, inputs: list[Tensor], config: list[Any], span: Span) -> Tensor:
        pos = [(v, s) for k, v, s in config if k is None]
        kws = [(k, v, s) for k, v, s in config if k is not None]
        a, spans = self.bind(entry, pos, kws, span)
        self._arity(entry, inputs, span)
        if any(t.poisoned for t in inputs):
            return POISON
        self._dtypes(entry, inputs, span)
        xs = tuple(t.shape for t in inputs if t.shape is not None)
        x: Any = xs[0] if entry.arity == 1 else xs
        try:
            if entry.validate is not None:
                entry.validate(a)
            shape = entry.shape(a, x) if entry.shape else xs[0]
            params = entry.params(a, x) if entry.params else 0
            state = entry.state(a, x) if entry.state else 0
        except Problem as p:
            raise error(
                p.code or E_SHAPE, p.message, spans.get(p.arg or "", span), p.hint
            ) from None
        dtype = "f32" if entry.int_input else inputs[0].dtype
        name = self.g.unique(entry.name)
        self.g.add(
            Node(
                name,
                entry.name,
                entry.kind,
                a.items,
                tuple(t.node for t in inputs),
                tuple(shape),
                dtype,
                params,
                state,
                tuple(self.g.scope),
                span,
                written=tuple(spans),
            )
        )
        return Tensor(name, tuple(shape), dtype)

    def _arity(self, entry: Entry, inputs: list[Tensor], span: Span) -> None:
        lo, hi = (1, 1) if entry.arity == 1 else entry.arity  # type: ignore[misc]
        n = len(inputs)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
            raise error(
                E_NOT_A_LAYER,
                f"`{entry.name}` takes {want} input(s), got {n}",
                span,
                f"write `{entry.name}(a, b)`" if lo > 1 else f"chain it: `x -> {entry.name}`",
            )

    def _dtypes(self, entry: Entry, inputs: list[Tensor], span: Span) -> None:
        for t in inputs:
            if entry.int_input and is_float_dtype(t.dtype):
                raise error(
                    E_DTYPE,
                    f"`{entry.name}` takes integer ids, got {t.dtype}",
                    span,
                    "declare the input as `i32[...]`",
                )
            if not entry.int_input and not is_float_dtype(t.dtype):
                raise error(
                    E_DTYPE,
                    f"`{entry.name}` takes a float tensor, got {t.dtype}",
                    span,
                    "insert `embedding(vocab, dim)` first, or declare the input as f32",
                )

    def _expand(self, name: str, inputs: list[Tensor], config: list[Any], span: Span) -> Tensor:
        bdef = self.r.blocks[name]
        if name in self.g.blocks_active:
            chain = " → ".join([*self.g.blocks_active[self.g.blocks_active.index(name) :], name])
            raise error(
                E_MODEL,
                f"block `{name}` uses itself ({chain})",
                span,
                "blocks are expanded at compile time; use `repeat` for repetition",
            )
        if len(inputs) != 1:
            raise error(
                E_NOT_A_LAYER,
                f"block `{name}` takes one input, got {len(inputs)}",
                span,
                "merge them first, e.g. `concat(a, b)`",
            )
        values = self._block_args(bdef, config, span)
        instance = self.g.unique(name).rsplit("/", 1)[-1]
        self.g.scope.append(instance)
        self.g.blocks_active.append(name)
        outputs_before = len(self.g.outputs)
        try:
            env = Env(values, self.menv).child(**{"in": inputs[0]})
            result = self._body(bdef.body, env, inputs[0])
            outs = self.g.outputs[outputs_before:]
            del self.g.outputs[outputs_before:]
        finally:
            self.g.scope.pop()
            self.g.blocks_active.pop()
        if len(outs) > 1:
            raise error(
                E_MODEL, f"block `{name}` has {len(outs)} outputs; a block returns one", bdef.span
            )
        if inputs[0].poisoned:  # the body was walked for its own mistakes (unknown words)
            return POISON
        if outs:
            out = self.g.node(outs[0])
            return Tensor(out.name, out.shape, out.dtype)
        if not isinstance(result, Tensor):
            raise error(E_MODEL, f"block `{name}` produces no tensor", bdef.span)
        return result

    def _block_args(self, bdef: ast.BlockDef, config: list[Any], span: Span) -> dict[str, Any]:
        entry = Entry("block", bdef.name, tuple(_block_arg(p) for p in bdef.params))
        from .registry.types import _match

        given, _ = _match(
            entry,
            [(v, s) for k, v, s in config if k is None],
            [(k, v, s) for k, v, s in config if k is not None],
            span,
            "argument",
        )
        values: dict[str, Any] = {}
        for p in bdef.params:
            if p.name in given:
                values[p.name] = given[p.name]
            elif p.default is not None:
                values[p.name] = self.static(p.default, Env(dict(values), self.menv))
            else:
                raise error(
                    "E0303",
                    f"block `{bdef.name}` needs argument `{p.name}`",
                    span,
                    f"write `{bdef.name}({', '.join(q.name for q in bdef.params)})`",
                )
        return values

    # ---- sections ----------------------------------------------------------

    def _sections(self) -> list[ast.Section]:
        out: list[ast.Section] = []
        for s in (i for i in self.r.module.items if isinstance(i, ast.Section)):
            if SECTIONS.lookup(s.name) is None:
                self.diags.add(
                    Diagnostic(
                        E_UNKNOWN_SECTION,
                        f"unknown section `{s.name}`",
                        s.span,
                        SECTIONS.suggest(s.name) or "sections are data, train and sweep",
                    )
                )
            elif any(o.name == s.name for o in out):
                self.diags.add(
                    Diagnostic(
                        E_DUPLICATE,
                        f"section `{s.name}` appears twice",
                        s.span,
                        "merge the two into one",
                    )
                )
            else:
                out.append(s)
        return out

    def _section(self, name: str, s: ast.Section | None, env: Env) -> Config | None:
        entry = SECTIONS.get(name, s.span if s else Span("<spec>", 1, 1, 1, 1))
        kws: list[tuple[str, Any, Span]] = []
        for f in s.fields if s else ():
            if len(f.path) > 1 or entry.get_arg(f.path[0]) is None:
                self.diags.add(
                    Diagnostic(
                        E_UNKNOWN_FIELD,
                        f"unknown field `{'.'.join(f.path)}` in `{name}`",
                        f.span,
                        did_you_mean(f.path[0], [a.name for a in entry.args])
                        or f"`{name}` has " + ", ".join(f"`{a.name}`" for a in entry.args),
                    )
                )
                continue
            if any(k == f.path[0] for k, _, _ in kws):
                self.diags.add(
                    Diagnostic(
                        E_DUPLICATE,
                        f"field `{f.path[0]}` is set twice",
                        f.span,
                        "delete one of the two lines",
                    )
                )
                continue
            v = self._try(partial(self.static, f.value, env, f"field `{f.path[0]}`"), _UNDEFINED)
            if v is not _UNDEFINED:
                kws.append((f.path[0], v, f.value.span))
        span = s.span if s else Span(self.r.module.path, 1, 1, 1, 1)
        bound = self._try(lambda: self.bind(entry, [], kws, span, noun="field"))
        if bound is None:
            return None
        a, spans = bound
        if entry.validate is not None:
            try:
                entry.validate(a)
            except Problem as p:
                self.diags.add(
                    Diagnostic(E_SECTION, p.message, spans.get(p.arg or "", span), p.hint)
                )
        return Config(name, a.items, tuple(k for k, _, _ in kws), tuple(spans.items()))

    def _sweep(self, s: ast.Section, env: Env) -> tuple[Config | None, tuple[SweepAxis, ...]]:
        own = ast.Section(
            "sweep",
            tuple(f for f in s.fields if f.path[0] in ("method", "objective") and len(f.path) == 1),
            span=s.span,
        )
        config = self._section("sweep", own, env)
        axes = []
        for f in s.fields:
            if f.path[0] in ("method", "objective") and len(f.path) == 1:
                continue
            axis = self._try(partial(self._axis, f, env))
            if axis is not None:
                axes.append(axis)
        if not axes:
            self.diags.add(
                Diagnostic(
                    E_SECTION,
                    "`sweep` searches nothing",
                    s.span,
                    "add e.g. `train.optimizer.lr = loguniform(1e-4, 1e-2)`",
                )
            )
        return config, tuple(axes)

    def _axis(self, f: ast.Field, env: Env) -> SweepAxis:
        path = f.path
        if len(path) == 1 and path[0] not in self.r.params:
            raise error(
                E_UNKNOWN_NAME,
                f"`{path[0]}` is not a param",
                f.span,
                did_you_mean(path[0], list(self.r.params))
                or "search a param or a path such as `train.optimizer.lr`",
            )
        if len(path) > 1:
            self._sweep_target(path, f.span)
        try:
            dist = convert_at(
                RefT("distribution"),
                self.static(f.value, env),
                f.value.span,
                f"the search space of `{'.'.join(path)}`",
            )
        except UnknownWord as u:
            raise self._unknown_word(u.word) from None
        return SweepAxis(path, dist, f.span)

    def _sweep_target(self, path: tuple[str, ...], span: Span) -> None:
        section = SECTIONS.lookup(path[0])
        if section is None or path[0] == "sweep":
            raise error(
                E_UNKNOWN_SECTION,
                f"`{path[0]}` is not a section or param",
                span,
                did_you_mean(path[0], ["data", "train", *self.r.params]),
            )
        field_arg = section.get_arg(path[1])
        if field_arg is None:
            raise error(
                E_UNKNOWN_FIELD,
                f"`{path[0]}` has no field `{path[1]}`",
                span,
                did_you_mean(path[1], [a.name for a in section.args]),
            )
        if len(path) == 3 and isinstance(field_arg.type, RefT):
            reg = REGISTRIES[field_arg.type.kind]
            names = sorted({a.name for e in reg for a in e.args})
            if path[2] not in names:
                raise error(
                    E_UNKNOWN_FIELD,
                    f"no {reg.kind} takes an argument `{path[2]}`",
                    span,
                    did_you_mean(path[2], names),
                )

    # ---- cross-checks between model, data and train ------------------------

    def _check_monitors(self, train: Config) -> None:
        """A monitored metric (early stopping, plateau) must be one the run computes."""
        watched = []
        if train.early_stopping is not None:
            watched.append(("early_stopping", str(train.early_stopping.get("monitor"))))
        if train.schedule.name == "reduce_on_plateau":
            watched.append(("schedule", str(train.schedule.arg("monitor"))))
        computed = {m.name for m in train.metrics}
        for field_name, monitor in watched:
            word = monitor.removeprefix("val_")
            if word not in ("loss", "penalty") and word not in computed:
                self.diags.add(
                    Diagnostic(
                        E_SECTION,
                        f"`{field_name}` watches `{monitor}`, but `{word}` is not in `metrics`",
                        train.span_of(field_name),
                        f"add `{word}` to `metrics = [...]`, or watch `val_loss`",
                    )
                )

    def _check_freeze(self, model: Graph, train: Config) -> None:
        """Every `freeze` pattern must name at least one layer with weights."""
        weighted = [n.name for n in model.nodes if n.params]
        for pattern in train.freeze:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in weighted):
                self.diags.add(
                    Diagnostic(
                        E_UNKNOWN_NAME,
                        f'`freeze` pattern "{pattern}" matches no layer with weights',
                        train.span_of("freeze"),
                        did_you_mean(pattern, weighted)
                        or "layers with weights: " + ", ".join(f"`{n}`" for n in weighted[:8]),
                    )
                )

    def _check_memory(self, model: Graph, train: Config, data: Config | None) -> None:
        """Warn when the memory estimate alone passes a fixed bound (`dnn train` checks the
        device's memory before allocating; compiler/memory.py)."""
        from .memory import estimate, warning

        found = warning(estimate(model, train, data))
        if found is not None:
            self.diags.add(found)

    def _check_trains(self, model: Graph, train: Config) -> None:
        """Warn when training would change no weight (`dnn train` says the same at run time)."""
        weighted = [n.name for n in model.nodes if n.params]
        frozen = [n for n in weighted if any(fnmatch.fnmatchcase(n, p) for p in train.freeze)]
        if frozen == weighted:
            self.diags.add(nothing_trains(model, train))


# ------------------------------------------------------------------ helpers


def _layer_like(v: Any) -> bool:
    return isinstance(v, Sym | CallVal)


def _aliases() -> list[str]:
    return [a for reg in (LAYERS, ACTIVATIONS) for e in reg for a in e.aliases]


def _block_arg(p: ast.BlockParam) -> Any:
    from .registry.core import REQUIRED, Arg
    from .registry.types import AnyT

    return Arg(p.name, AnyT(), REQUIRED if p.default is None else None)


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


def _too_large(span: Span, what: str, fix: str, total: int | None = None) -> DiagnosticError:
    layers = f"{total:,} layers" if total is not None else f"more than {MAX_LAYERS:,} layers"
    return error(
        E_TOO_LARGE,
        f"{what} expands the model to {layers}; the limit is {MAX_LAYERS:,}",
        span,
        f"{fix}; a model this large is beyond what dnn checks in bounded time "
        "(docs/performance.md)",
    )


def _names_in(node: Any) -> set[str]:
    """Every name an AST subtree reads."""
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, tuple):
        return set().union(*(_names_in(x) for x in node))
    if dataclasses.is_dataclass(node) and not isinstance(node, type | Span):
        return set().union(*(_names_in(getattr(node, f.name)) for f in dataclasses.fields(node)))
    return set()


def nothing_to_train(module: ast.Module) -> Diagnostic:
    """Why a spec without a model cannot train: `dnn train`'s error, `dnn check`'s warning."""
    sections = [i for i in module.items if isinstance(i, ast.Section)]
    span = sections[0].span if sections else Span(module.path, 1, 1, 1, 1)
    what = f"a `{sections[0].name}` section but no model" if sections else "no model"
    return Diagnostic(
        E_MODEL,
        f"nothing to train: the spec has {what}",
        span,
        "define one in this file: `model NAME { input x: f32[N] ... }` "
        "(imported files bring blocks and params only)",
    )


def nothing_trains(model: Graph, train: Config) -> Diagnostic:
    """Why a run changes no weight: at `freeze` when it covers every layer with weights, else
    at the model, which has none. `dnn check`'s warning and `dnn train`'s."""
    if any(n.params for n in model.nodes):
        return Diagnostic(
            W_NOTHING_TRAINS,
            "`freeze` covers every layer with weights: training changes no weight",
            train.span_of("freeze"),
            "leave out of `freeze` the layers to train (`dnn summary` lists the layers)",
            severity="warning",
        )
    return Diagnostic(
        W_NOTHING_TRAINS,
        f"model `{model.name}` has no weights: training changes nothing",
        model.span,
        "add a layer with weights, such as `dense(N)`",
        severity="warning",
    )


def check(resolved: Resolved, diags: Diagnostics) -> Program:
    """Evaluate and shape-check a resolved module."""
    return Checker(resolved, diags).program()
