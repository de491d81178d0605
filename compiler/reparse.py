"""Reparse one edited line: the editor's fast path (`dnn lsp`, compiler/editor.py).

Typing changes one line at a time. When that line is a whole statement of a model or block,
parsing it alone and splicing it into the last AST gives the module a full parse would,
spans included, at the cost of one line instead of the whole file.
"""

from __future__ import annotations

import dataclasses

from . import ast
from .diagnostics import SpecError
from .parse import parse


def reparse(old_module: ast.Module, old_text: str, text: str) -> ast.Module | None:
    """The module of `text`, by parsing one line, when `text` is `old_text` (whose module is
    `old_module`) with one line of a model's or block's statement changed; None when that
    cannot be done safely.

    The statement must fill its line alone, in a body of a model or block; the new line must
    parse, on its own, as exactly one statement (no braces). It is parsed at the same line and
    columns (behind blank lines and a `model _ {` header), so its spans are the full parse's;
    the comments above it and the blank line before it are kept. Typing inside a 2,000-layer
    model then costs a line's parse instead of the file's (tests/test_editor.py checks the
    result equals a full parse, spans included).
    """
    found = _changed_line(old_text, text)
    if found is None:
        return None
    line, src = found
    where = _statement_on(old_module, line)
    if where is None or "{" in src or "}" in src or line < 2:
        return None
    i, j, old = where
    try:
        mini = parse("\n" * (line - 2) + "model _ {\n" + src + "\n}\n", old_module.path)
    except SpecError:
        return None
    body = mini.items[0].body if len(mini.items) == 1 else None  # type: ignore[union-attr]
    if body is None or len(body.stmts) != 1 or body.end_comments or body.stmts[0].comments:
        return None
    new = dataclasses.replace(body.stmts[0], comments=old.comments, blank_before=old.blank_before)
    if new.span.line != line or new.span.end_line != line:
        return None
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
