"""Statements: the model graph, inputs, named values, repeats, blocks, layer nodes."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any

from .. import ast
from ..diagnostics import (
    E_DTYPE,
    E_DUPLICATE,
    E_MODEL,
    E_NO_INPUT,
    E_NOT_A_LAYER,
    E_SHAPE,
    E_TOO_LARGE,
    E_TOO_SLOW,
    E_TYPE,
    E_UNKNOWN_LAYER,
    E_VALUE,
    NO_SPAN,
    W_UNUSED,
    Diagnostic,
    DiagnosticError,
    Span,
    error,
)
from ..ir import Graph, Node
from ..registry.core import Entry, Problem, did_you_mean
from ..registry.layers import ACTIVATIONS, LAYERS
from ..registry.types import describe
from ..values import (
    CallVal,
    LayerRef,
    Sym,
    TensorType,
    is_float_dtype,
)
from .evaluate import _aliases, _layer_like
from .state import (
    _SMALLER,
    MAX_LAYERS,
    POISON,
    Base,
    Env,
    NamedInputs,
    Tensor,
    _NameOp,
    _TooLarge,
    _TooSlow,
)


class Graphs(Base):
    """Statements: the model graph, inputs, named values, repeats, blocks, layer nodes."""

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
        scopes = {n.scope[:k] for n in self.g.nodes for k in range(1, len(n.scope) + 1)}
        blocks = tuple((p, b) for p, b in self.g.blocks.items() if tuple(p.split("/")) in scopes)
        sites = tuple((p, s) for p, s in self.g.sites.items() if tuple(p.split("/")) in scopes)
        return Graph(
            m.name,
            tuple(self.g.nodes),
            tuple(self.g.inputs),
            tuple(self.g.outputs),
            m.span,
            blocks,
            sites,
        )

    def _warn_unused(self) -> None:
        used = {i for n in self.g.nodes for i in n.inputs} | set(self.g.outputs)
        used |= {v.node for n in self.g.nodes for _, v in n.args if isinstance(v, LayerRef)}
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
                except _TooLarge as e:
                    if not top:
                        raise
                    self.diags.add(
                        _too_slow(stmt.span, "this line").diagnostic
                        if isinstance(e, _TooSlow)
                        else _too_large(
                            stmt.span, "this line", "use fewer or smaller blocks"
                        ).diagnostic
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

    def _stmt(self, stmt: ast.Stmt, env: Env, current: Any, top: bool) -> Any:
        if isinstance(stmt, ast.InputDecl):
            return self._input(stmt, env, top)
        if isinstance(stmt, ast.Repeat):
            return self._repeat(stmt, env, current)
        start = len(self.g.nodes)
        outer = self.binding
        name = stmt.name if not isinstance(stmt, ast.ExprStmt) else None
        self.binding = (name, frozenset(_bound_spans(stmt.value))) if name is not None else None
        try:
            value = self._layer_value(stmt.value, env, current)
        finally:
            self.binding = outer
        if isinstance(stmt, ast.ExprStmt):
            if not isinstance(value, Tensor):
                raise error(
                    E_NOT_A_LAYER,
                    f"{describe(value)} is a value, not a layer",
                    stmt.value.span,
                    "a model line applies a layer, e.g. `dense(10)`",
                )
            return value
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
        if end < start:
            raise _negative_repeat(stmt, start, end)
        if end == start:  # `repeat 0`, `repeat i in 2..2`: the value flows through unchanged
            return current
        mark = len(self.g.nodes)
        try:
            return self._iterations(stmt, env, current, start, end)
        except _TooLarge as e:
            if self.repeats:  # an enclosing repeat reports the whole expansion
                raise
            for node in self.g.nodes[mark:]:  # later lines are checked against a sane graph
                del self.g.index[node.name]
            del self.g.nodes[mark:]
            what = f"`repeat {end - start:,}`"
            if isinstance(e, _TooSlow):
                raise _too_slow(stmt.count.span, what) from None
            raise _too_large(stmt.count.span, what, _SMALLER) from None

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
            self.g.tick()
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
        if not first and not log:  # a body that builds and names nothing: every copy is the same
            n = min(n, 2)
        for _ in range(n - 1):
            self.g.tick()
            renamed = {before.node: current.node}
            for op, prefix, base, full in log:
                if op == "unique":
                    renamed[full] = self.g.unique_in(renamed.get(prefix, prefix), base)
                    if full in self.g.blocks:
                        self.g.blocks[renamed[full]] = self.g.blocks[full]
                        self.g.sites[renamed[full]] = self.g.sites[full]
                else:
                    self.g.discard(renamed.get(full, full))
            for node in first:
                scope = renamed.get("/".join(node.scope), "/".join(node.scope))
                self.g.add(
                    replace(
                        node,
                        name=renamed[node.name],
                        inputs=tuple(renamed.get(i, i) for i in node.inputs),
                        args=tuple((k, _renamed_ref(v, renamed)) for k, v in node.args),
                        scope=tuple(scope.split("/")) if scope else (),
                    )
                )
            current = replace(after, node=renamed.get(after.node, after.node))
        return current

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
                LAYERS.known(f.name)
                or ACTIVATIONS.known(f.name)
                or did_you_mean(f.name, words)
                or "see `dnn help layers`",
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
        _block_arity(bdef, inputs, span)
        values = self._block_args(bdef, config, span)
        instance = self.g.unique(self._instance_name(name, span)).rsplit("/", 1)[-1]
        self.g.blocks["/".join([*self.g.scope, instance])] = name
        self.g.sites["/".join([*self.g.scope, instance])] = span
        self.g.scope.append(instance)
        self.g.blocks_active.append(name)
        outputs_before = len(self.g.outputs)
        try:
            names = {i.name: t for i, t in zip(bdef.inputs, inputs, strict=bool(bdef.inputs))}
            env = Env(values, self.menv).child(**(names or {"in": inputs[0]}))
            if names:  # `in` would be ambiguous: say which names to use
                env.vars.setdefault("in", NamedInputs(name, tuple(names)))
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
        if any(t.poisoned for t in inputs):  # the body was walked for its own mistakes
            return POISON
        if outs:
            out = self.g.node(outs[0])
            return Tensor(out.name, out.shape, out.dtype)
        if not isinstance(result, Tensor):
            raise error(E_MODEL, f"block `{name}` produces no tensor", bdef.span)
        return result

    def _instance_name(self, block: str, span: Span) -> str:
        """A block whose output a statement names is named so (`u2 = up(32)(b, d2)` → `u2/...`),
        as a named layer is; other instances are named after the block (`up`, `up_1`)."""
        if self.binding is None or span == NO_SPAN or span not in self.binding[1]:
            return block
        name, self.binding = self.binding[0], None
        return name

    def _block_args(self, bdef: ast.BlockDef, config: list[Any], span: Span) -> dict[str, Any]:
        entry = Entry("block", bdef.name, tuple(_block_arg(p) for p in bdef.params))
        from ..registry.types import _match

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


def _renamed_ref(v: Any, renamed: dict[str, str]) -> Any:
    """A layer named by an argument (`tie = t`), renamed as its replicated copy is."""
    return replace(v, node=renamed.get(v.node, v.node)) if isinstance(v, LayerRef) else v


def _bound_spans(e: ast.Expr) -> list[Span]:
    """The expressions whose value a statement binds: a chain's last link, both branches."""
    if isinstance(e, ast.Chain):
        return _bound_spans(e.items[-1])
    if isinstance(e, ast.Cond):  # a bare layer chosen by a condition applies at the whole
        return [e.span, *_bound_spans(e.then), *_bound_spans(e.orelse)]
    return [e.span]


def _block_arity(bdef: ast.BlockDef, inputs: list[Tensor], span: Span) -> None:
    """A block takes one tensor (`in`), or as many as it names: `block up(c)(deep, skip)`."""
    names = [i.name for i in bdef.inputs]
    want = max(len(names), 1)
    if len(inputs) == want:
        return
    if not names:
        raise error(
            E_NOT_A_LAYER,
            f"block `{bdef.name}` takes 1 tensor, got {len(inputs)}",
            span,
            "merge them first, e.g. `concat(a, b)`, or name the block's inputs: "
            f"`block {bdef.name}(...)(a, b)`",
        )
    listed = ", ".join(f"`{n}`" for n in names)
    raise error(
        E_NOT_A_LAYER,
        f"block `{bdef.name}` takes {want} tensors ({listed}), got {len(inputs)}",
        span,
        f"pass them in order: `{bdef.name}(...)({', '.join(names)})`",
    )


def _negative_repeat(stmt: ast.Repeat, start: int, end: int) -> DiagnosticError:
    if stmt.var is None:
        return error(
            E_VALUE,
            f"`repeat` count must be 0 or more, got {end}",
            stmt.count.span,
            "`repeat 0 { ... }` skips the body; a negative count has no meaning",
        )
    return error(
        E_VALUE,
        f"`repeat` range {start}..{end} runs backwards",
        stmt.count.span,
        f"write the smaller bound first; `{start}..{start}` is empty and skips the body",
    )


def _block_arg(p: ast.BlockParam) -> Any:
    from ..registry.core import REQUIRED, Arg
    from ..registry.types import AnyT

    return Arg(p.name, AnyT(), REQUIRED if p.default is None else None)


def _too_large(span: Span, what: str, fix: str, total: int | None = None) -> DiagnosticError:
    layers = f"{total:,} layers" if total is not None else f"more than {MAX_LAYERS:,} layers"
    return error(
        E_TOO_LARGE,
        f"{what} expands the model to {layers}; the limit is {MAX_LAYERS:,}",
        span,
        f"{fix}; a model this large is beyond what dnn checks in bounded time "
        "(docs/performance.md)",
    )


def _too_slow(span: Span, what: str) -> DiagnosticError:
    return error(
        E_TOO_SLOW,
        f"checking stopped at {what}: it ran past the editor's time limit",
        span,
        "lower the count while editing; `dnn check` checks the whole spec without a time limit",
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
