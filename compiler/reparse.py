"""Reparse one edited line: the editor's fast path (`dnn lsp`, compiler/editor.py).

Typing changes one line at a time. When that line is a whole statement of a model or block,
parsing it alone and splicing it into the last AST gives the module a full parse would,
spans included, at the cost of one line instead of the whole file.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import ast
from .diagnostics import Span, SpecError
from .parse import parse


def reparse(old_module: ast.Module, old_text: str, text: str) -> ast.Module | None:
    """The module of `text`, by parsing one line, when `text` is `old_text` (whose module is
    `old_module`) with one line of a model's or block's statement changed; None when that
    cannot be done safely.

    Also when a blank line is inserted into, or deleted from, a model's or block's body
    between its statements (Enter, Backspace): the spans after it move by a line.

    The statement must fill its line alone, in a body of a model or block; the new line must
    parse, on its own, as exactly one statement (no braces). It is parsed at the same line and
    columns (behind blank lines and a `model _ {` header), so its spans are the full parse's;
    the comments above it and the blank line before it are kept. Typing inside a 2,000-layer
    model then costs a line's parse instead of the file's (tests/test_editor.py checks the
    result equals a full parse, spans included).
    """
    blank = _blank_line(old_text, text)
    if blank is not None:
        return _shifted(old_module, text, *blank)
    found = _changed_line(old_text, text)
    if found is None:
        return None
    line, src = found
    if "{" in src or "}" in src or line < 2:
        return None
    if not old_text.split("\n")[line - 1].strip():  # typing on a blank line of a body
        return _typed(old_module, text, line, src)
    where = _statement_on(old_module, line)
    if where is None:
        return None
    i, j, old = where
    stmt = _statement(old_module.path, line, src)
    if stmt is None:
        return None
    new = dataclasses.replace(stmt, comments=old.comments, blank_before=old.blank_before)
    item = old_module.items[i]
    stmts = (*item.body.stmts[:j], new, *item.body.stmts[j + 1 :])  # type: ignore[union-attr]
    item = dataclasses.replace(item, body=dataclasses.replace(item.body, stmts=stmts))  # type: ignore[union-attr,arg-type]
    items = (*old_module.items[:i], item, *old_module.items[i + 1 :])
    return dataclasses.replace(old_module, items=items)


def _changed_line(old: str, new: str) -> tuple[int, str] | None:
    """(line, its new text) when the two texts differ in exactly one line."""
    a, b = old.split("\n"), new.split("\n")
    if len(a) != len(b):
        return None
    first = next((k for k in range(len(a)) if a[k] != b[k]), None)
    if first is None or a[first + 1 :] != b[first + 1 :]:
        return None
    return first + 1, b[first]


def _statement_on(module: ast.Module, line: int) -> tuple[int, int, ast.Stmt] | None:
    """(item index, statement index, statement) of the body statement alone on `line`."""
    for i, item in enumerate(module.items):
        if not isinstance(item, ast.ModelDef | ast.BlockDef):
            continue
        body = item.body
        if not body.span.line < line < body.span.end_line:
            continue
        for j, stmt in enumerate(body.stmts):
            if stmt.span.line <= line <= stmt.span.end_line:
                alone = stmt.span.line == stmt.span.end_line == line
                fits = not isinstance(stmt, ast.Repeat) and _alone(body.stmts, j, line)
                return (i, j, stmt) if alone and fits else None
    return None


def _alone(stmts: tuple[ast.Stmt, ...], j: int, line: int) -> bool:
    neighbours = [s for k, s in enumerate(stmts) if k != j and abs(k - j) == 1]
    return all(line not in (s.span.line, s.span.end_line) for s in neighbours)


def _typed(module: ast.Module, text: str, line: int, src: str) -> ast.Module | None:
    """`module` with the statement `src` typed on the blank `line` of a body."""
    where = _gap(module, line, -1)
    new = _statement(module.path, line, src)
    if where is None or new is None:
        return None
    i, j = where
    item = module.items[i]
    stmts = list(item.body.stmts)  # type: ignore[union-attr]
    stmts.insert(j, new)
    lines = text.split("\n")
    for k in (j, j + 1):  # the new statement's blank line before, and the next one's
        if k < len(stmts):
            first = stmts[k].span.line - len(stmts[k].comments)
            blank = k > 0 and first >= 2 and not lines[first - 2].strip()
            stmts[k] = dataclasses.replace(stmts[k], blank_before=blank)
    body = dataclasses.replace(item.body, stmts=tuple(stmts))  # type: ignore[union-attr]
    items = list(module.items)
    items[i] = dataclasses.replace(item, body=body)  # type: ignore[arg-type]
    return dataclasses.replace(module, items=tuple(items))


def _statement(path: str, line: int, src: str) -> ast.Stmt | None:
    """`src` parsed as the one statement of `line`, at its own line and columns."""
    try:
        mini = parse("\n" * (line - 2) + "model _ {\n" + src + "\n}\n", path)
    except SpecError:
        return None
    body = mini.items[0].body if len(mini.items) == 1 else None  # type: ignore[union-attr]
    if body is None or len(body.stmts) != 1 or body.end_comments or body.stmts[0].comments:
        return None
    stmt = body.stmts[0]
    return stmt if stmt.span.line == stmt.span.end_line == line else None


# ------------------------------------------------------------------ a blank line in or out


def _blank_line(old: str, new: str) -> tuple[int, int] | None:
    """(line, +1) when `new` is `old` with a blank line inserted at that line (numbered in
    `new`), (line, -1) when the blank line at that line of `old` is deleted; else None."""
    a, b = old.split("\n"), new.split("\n")
    if abs(len(a) - len(b)) != 1:
        return None
    longer, shorter, delta = (b, a, 1) if len(b) > len(a) else (a, b, -1)
    k = next((k for k in range(len(shorter)) if longer[k] != shorter[k]), len(shorter))
    if longer[k].strip() or longer[k + 1 :] != shorter[k:]:
        return None
    return k + 1, delta


def _shifted(module: ast.Module, text: str, line: int, delta: int) -> ast.Module | None:
    """`module` with the blank `line` inserted (delta 1) or deleted (delta -1)."""
    where = _gap(module, line, delta)
    if where is None:
        return None
    i, j = where
    at = line if delta > 0 else line + 1  # the first line (of the old text) that moves
    items = list(module.items)
    item = _shift(items[i], at, delta)
    stmts = list(item.body.stmts)  # type: ignore[union-attr]
    if j < len(stmts):  # the statement after the gap: its blank line before may change
        s = stmts[j]
        first = s.span.line - len(s.comments)
        lines = text.split("\n")
        blank = j > 0 and 1 <= first - 1 <= len(lines) and not lines[first - 2].strip()
        stmts[j] = dataclasses.replace(s, blank_before=blank)
    body = dataclasses.replace(item.body, stmts=tuple(stmts))  # type: ignore[union-attr]
    items[i] = dataclasses.replace(item, body=body)  # type: ignore[arg-type]
    items[i + 1 :] = [_shift(x, at, delta) for x in items[i + 1 :]]
    return dataclasses.replace(module, items=tuple(items))


def _gap(module: ast.Module, line: int, delta: int) -> tuple[int, int] | None:
    """(item, index of the next statement) when the blank line goes into (delta 1: before old
    line `line`) or out of (delta -1: old line `line`) a model's or block's body, between its
    statements or before the first or after the last, where no comment is; None otherwise."""
    inserted = delta > 0
    for i, item in enumerate(module.items):
        if not item.span.line <= line <= item.span.end_line:
            continue
        if not isinstance(item, ast.ModelDef | ast.BlockDef):
            return None
        body = item.body
        last = body.span.end_line if inserted else body.span.end_line - 1
        if not body.span.line < line <= last or body.end_comments:
            return None
        j = next((k for k, s in enumerate(body.stmts) if s.span.end_line >= line), None)
        if j is None:
            return i, len(body.stmts)
        s = body.stmts[j]
        after = s.span.line >= line if inserted else s.span.line > line
        return (i, j) if after and not s.comments else None
    return None


def _shift(node: object, at: int, delta: int) -> Any:
    """`node` with every position on or after line `at` moved by `delta` lines."""
    if isinstance(node, Span):
        if node.end_line < at:
            return node
        start = node.line + delta if node.line >= at else node.line
        return Span(node.path, start, node.col, node.end_line + delta, node.end_col)
    if isinstance(node, tuple):
        return tuple(_shift(x, at, delta) for x in node)
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return node
    span = getattr(node, "span", None)
    if isinstance(span, Span) and span.end_line < at:
        return node
    values = {f.name: _shift(getattr(node, f.name), at, delta) for f in dataclasses.fields(node)}
    return type(node)(**values)
