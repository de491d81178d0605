"""AST → canonical text (`dnn fmt`): idempotent, comment preserving, one fact per line.

Canonical choices: two-space indent; spaces around `=`, `->` and binary operators; keyword
arguments in registry (or block-parameter) order after the positional ones; numbers in
shortest form (`1e-4`, not `0.0001`); minimal parentheses; one blank line between top-level
definitions; the user's blank lines inside bodies kept (at most one).
"""

from __future__ import annotations

import json
from typing import Any

from . import ast
from .registry import REGISTRIES
from .values import fmt_number

INDENT = "  "
MAX_INLINE = 100

# Binding strength of each expression form; a child weaker than its slot gets parentheses.
_PREC = {
    "cond": 0,
    "chain": 1,
    "or": 2,
    "and": 3,
    "not": 4,
    "cmp": 5,
    "add": 6,
    "mul": 7,
    "unary": 8,
    "pow": 9,
    "postfix": 10,
    "atom": 11,
}
_BIN = {
    "or": "or",
    "and": "and",
    "+": "add",
    "-": "add",
    "*": "mul",
    "/": "mul",
    "//": "mul",
    "%": "mul",
    "**": "pow",
}


def format_module(module: ast.Module) -> str:
    """The canonical text of a module."""
    return _Printer(module).module()


def format_text(text: str, path: str = "<string>") -> str:
    """Parse and print canonically (`dnn.format`). Raises `SpecError` on a syntax error."""
    from .parse import parse

    return format_module(parse(text, path))


def format_expr(e: ast.Expr, blocks: dict[str, tuple[str, ...]] | None = None) -> str:
    return _Printer(ast.Module(()), blocks).expr(e)


class _Printer:
    def __init__(self, module: ast.Module, blocks: dict[str, tuple[str, ...]] | None = None):
        self.m = module
        self.blocks = (
            blocks
            if blocks is not None
            else {
                i.name: tuple(p.name for p in i.params)
                for i in module.items
                if isinstance(i, ast.BlockDef)
            }
        )

    # ---- items -----------------------------------------------------------

    def module(self) -> str:
        out: list[str] = []
        prev: Any = None
        for item in self.m.items:
            if prev is not None and _separate(prev, item):
                out.append("")
            out += self.item(item)
            prev = item
        if self.m.end_comments:
            if out:
                out.append("")
            out += list(self.m.end_comments)
        return "\n".join(out) + "\n" if out else ""

    def item(self, it: ast.Item) -> list[str]:
        lead = list(it.comments)
        if isinstance(it, ast.Version):
            return lead + [_trail(f"dnn {it.number}", it.trailing)]
        if isinstance(it, ast.ImportStmt):
            return lead + [_trail(f"import {_string(it.path)}", it.trailing)]
        if isinstance(it, ast.ParamDef):
            return lead + [_trail(f"param {it.name} = {self.expr(it.value)}", it.trailing)]
        if isinstance(it, ast.BlockDef):
            params = ", ".join(
                p.name if p.default is None else f"{p.name} = {self.expr(p.default)}"
                for p in it.params
            )
            inputs = f"({', '.join(i.name for i in it.inputs)})" if it.inputs else ""
            head = f"block {it.name}({params}){inputs}"
            return lead + self.body(head, it.body, "", it.trailing)
        if isinstance(it, ast.ModelDef):
            return lead + self.body(f"model {it.name}", it.body, "", it.trailing)
        return lead + self.section(it)

    def section(self, s: ast.Section) -> list[str]:
        out = [_trail(f"{s.name} {{", s.open_comment)]
        for i, f in enumerate(s.fields):
            if i and f.blank_before:
                out.append("")
            out += [INDENT + c for c in f.comments]
            out.append(INDENT + _trail(f"{'.'.join(f.path)} = {self.expr(f.value)}", f.trailing))
        out += [INDENT + c for c in s.end_comments]
        out.append(_trail("}", s.trailing))
        return out

    # ---- statements ------------------------------------------------------

    def body(self, head: str, body: ast.Body, indent: str, trailing: str | None) -> list[str]:
        inline = self._inline(head, body, indent, trailing)
        if inline is not None:
            return [inline]
        out = [indent + _trail(f"{head} {{", body.open_comment)]
        inner = indent + INDENT
        for i, s in enumerate(body.stmts):
            if i and s.blank_before:
                out.append("")
            out += self.stmt(s, inner)
        out += [inner + c for c in body.end_comments]
        out.append(indent + _trail("}", trailing))
        return out

    def _inline(self, head: str, body: ast.Body, indent: str, trailing: str | None) -> str | None:
        """`repeat 3 { residual(16) }`: a repeat of one plain statement stays on one line."""
        if not head.startswith("repeat") or len(body.stmts) != 1:
            return None
        s = body.stmts[0]
        if (
            body.open_comment
            or body.end_comments
            or s.comments
            or s.trailing
            or isinstance(s, ast.Repeat)
        ):
            return None
        line = f"{indent}{head} {{ {self.stmt(s, '')[0]} }}"
        return _trail(line, trailing) if len(line) <= MAX_INLINE else None

    def stmt(self, s: ast.Stmt, indent: str) -> list[str]:
        lead = [indent + c for c in s.comments]
        if isinstance(s, ast.Repeat):
            head = f"repeat {self.expr(s.count)}"
            if s.var is not None:
                assert s.start is not None
                head = f"repeat {s.var} in {self.expr(s.start)}..{self.expr(s.count)}"
            return lead + self.body(head, s.body, indent, s.trailing)
        if isinstance(s, ast.InputDecl):
            code = f"input {s.name}: {self.expr(s.type)}"
        elif isinstance(s, ast.Assign):
            code = f"{s.name} = {self.expr(s.value)}"
        elif isinstance(s, ast.Output):
            name = f"{s.name} = " if s.name is not None else ""
            code = f"output {name}{self.expr(s.value)}"
        else:
            code = self.expr(s.value)
        return lead + [indent + _trail(code, s.trailing)]

    # ---- expressions -----------------------------------------------------

    def expr(self, e: ast.Expr, min_prec: int = 0) -> str:
        text, prec = self._expr(e)
        return f"({text})" if prec < min_prec else text

    def _expr(self, e: ast.Expr) -> tuple[str, int]:
        atom = _PREC["atom"]
        if isinstance(e, ast.IntLit | ast.FloatLit):
            return fmt_number(e.value), atom
        if isinstance(e, ast.StringLit):
            return _string(e.value), atom
        if isinstance(e, ast.BoolLit):
            return ("true" if e.value else "false"), atom
        if isinstance(e, ast.NoneLit):
            return "none", atom
        if isinstance(e, ast.Name):
            return e.id, atom
        if isinstance(e, ast.Quantity):
            return f"{fmt_number(e.value)} {e.unit}", atom
        if isinstance(e, ast.ListLit):
            return "[" + ", ".join(self.expr(x) for x in e.items) + "]", atom
        if isinstance(e, ast.Record):
            if not e.pairs:
                return "{}", atom
            return "{ " + ", ".join(
                f"{_key(p.key)}: {self.expr(p.value)}" for p in e.pairs
            ) + " }", atom
        return self._compound(e)

    def _compound(self, e: ast.Expr) -> tuple[str, int]:
        post = _PREC["postfix"]
        if isinstance(e, ast.Call):
            return f"{self.expr(e.func, post)}({self.args(e)})", post
        if isinstance(e, ast.Attr):
            return f"{self.expr(e.value, post)}.{e.attr}", post
        if isinstance(e, ast.Subscript):
            return f"{self.expr(e.value, post)}[{', '.join(self.expr(i) for i in e.index)}]", post
        if isinstance(e, ast.Cond):
            p = _PREC["cond"]
            return (
                f"{self.expr(e.then, _PREC['chain'])} if {self.expr(e.test, _PREC['or'])} "
                f"else {self.expr(e.orelse, p)}"
            ), p
        if isinstance(e, ast.Chain):
            return " -> ".join(self.expr(x, _PREC["or"]) for x in e.items), _PREC["chain"]
        if isinstance(e, ast.UnaryOp):
            if e.op == "not":
                return f"not {self.expr(e.operand, _PREC['not'])}", _PREC["not"]
            return f"{e.op}{self.expr(e.operand, _PREC['unary'])}", _PREC["unary"]
        assert isinstance(e, ast.BinOp)
        return self._binop(e)

    def _binop(self, e: ast.BinOp) -> tuple[str, int]:
        kind = _BIN.get(e.op, "cmp")
        p = _PREC[kind]
        if kind == "pow":
            return (
                f"{self.expr(e.left, _PREC['postfix'])} ** {self.expr(e.right, _PREC['unary'])}",
                p,
            )
        if kind == "cmp":
            return f"{self.expr(e.left, _PREC['add'])} {e.op} {self.expr(e.right, _PREC['add'])}", p
        return f"{self.expr(e.left, p)} {e.op} {self.expr(e.right, p + 1)}", p

    def args(self, call: ast.Call) -> str:
        order = self._order(call.func)
        pos = [a for a in call.args if a.name is None]
        kws = [a for a in call.args if a.name is not None]
        kws.sort(key=lambda a: order.index(a.name) if a.name in order else len(order))
        return ", ".join(
            self.expr(a.value) if a.name is None else f"{a.name} = {self.expr(a.value)}"
            for a in [*pos, *kws]
        )

    def _order(self, func: ast.Expr) -> list[str]:
        if not isinstance(func, ast.Name):
            return []
        if func.id in self.blocks:
            return list(self.blocks[func.id])
        for reg in REGISTRIES.values():
            entry = reg.lookup(func.id)
            if entry is not None:
                return [a.name for a in entry.args]
        return []


def _separate(prev: ast.Item, cur: ast.Item) -> bool:
    grouped = (ast.ImportStmt, ast.ParamDef)
    if type(prev) is type(cur) and isinstance(cur, grouped):
        return cur.blank_before
    return True


def _trail(code: str, comment: str | None) -> str:
    return f"{code}  {comment}" if comment else code


def _string(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _key(k: str) -> str:
    import re

    return k if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k) and k not in _KEYWORDS else _string(k)


_KEYWORDS = {
    "dnn",
    "import",
    "param",
    "block",
    "model",
    "input",
    "output",
    "repeat",
    "in",
    "if",
    "else",
    "and",
    "or",
    "not",
    "true",
    "false",
    "none",
}
