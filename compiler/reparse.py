"""Reparse the edited lines only: the editor's fast path (`dnn lsp`, compiler/editor.py).

Typing changes one line at a time, a paste or a deleted line a few. When those lines are
whole statements of a model or block, parsing them alone and splicing them into the last AST
gives the module a full parse would, spans included, at the cost of a few lines instead of
the whole file.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import ast
from .diagnostics import Span, SpecError
from .parse import parse


def reparse(old_module: ast.Module, old_text: str, text: str) -> ast.Module | None:
    """The module of `text`, reparsing only what changed since `old_text` (whose module is
    `old_module`); None when that cannot be done safely (the caller parses the file).

    Tried in order, each giving what a full parse gives, spans included (tests/test_editor.py,
    tests/test_reparse.py):

    - a blank line inserted into, or deleted from, a body between its statements (Enter,
      Backspace): the spans after it move by a line, nothing is parsed;
    - one line changed: a statement alone on its line, or one typed on a blank line of a
      body, parsed alone at its own line and columns (behind blank lines and a `model _ {`
      header); the comments above it and the blank line before it are kept;
    - a range of a body's lines replaced by other lines (a paste, a deleted statement line,
      k lines replaced by m): the lines between the statements around the range are parsed
      alone, and the spans after them move (`_replaced`).

    The new lines hold no brace, and the edit stays inside one model's or block's body (not
    inside a `repeat`'s). Typing or pasting inside a 2,000-layer model then costs the parse
    of a few lines instead of the file's.
    """
    if text == old_text:
        return old_module
    blank = _blank_line(old_text, text)
    module = _shifted(old_module, text, *blank) if blank is not None else None
    if module is None:
        module = _one_line(old_module, old_text, text)
    return module if module is not None else _replaced(old_module, old_text, text)


def _one_line(old_module: ast.Module, old_text: str, text: str) -> ast.Module | None:
    """`reparse` when one line changed: the statement on it, or one typed on a blank line."""
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


_LEAVES = (str, int, float, bool, type(None))
_FIELDS: dict[type, tuple[str, ...]] = {}  # a node class's field names, looked up once


def _shift(node: object, at: int, delta: int) -> Any:
    """`node` with every position on or after line `at` moved by `delta` lines."""
    kind = type(node)
    if kind in _LEAVES:
        return node
    if kind is Span:
        span: Span = node  # type: ignore[assignment]
        if span.end_line < at:
            return span
        start = span.line + delta if span.line >= at else span.line
        return Span(span.path, start, span.col, span.end_line + delta, span.end_col)
    if kind is tuple:
        return tuple([_shift(x, at, delta) for x in node])  # type: ignore[attr-defined]
    names = _FIELDS.get(kind)
    if names is None:
        if not dataclasses.is_dataclass(node) or isinstance(node, type):
            return node
        names = _FIELDS.setdefault(kind, tuple(f.name for f in dataclasses.fields(node)))
    own = getattr(node, "span", None)
    if isinstance(own, Span) and own.end_line < at:
        return node
    return kind(**{name: _shift(getattr(node, name), at, delta) for name in names})


# ------------------------------------------------------------------ a range of lines replaced


def _replaced(module: ast.Module, old_text: str, text: str) -> ast.Module | None:
    """`module` with a range of a body's lines replaced by other lines (a paste, a statement
    line deleted, k lines replaced by m), or None when that does not fit.

    The old lines from just after the statement before the range to just before the one
    after it hold only whole statements, comments and blank lines; those lines of `text`
    (no brace among the new ones) are parsed alone at their own lines, as a body's statements,
    so their spans and comments are the full parse's. The statements after them move by the
    change in line count, and the next one takes the comments left at the end of the range.
    """
    a, b = old_text.split("\n"), text.split("\n")
    lo, hi_a, hi_b = _changed_range(a, b)
    if any("{" in s or "}" in s for s in b[lo:hi_b]):
        return None
    where = _region(module, lo + 1, hi_a)
    if where is None:
        return None
    i, j0, j1, start, end = where
    delta = len(b) - len(a)
    parsed = _statements(module.path, start, b[start - 1 : end + delta])
    if parsed is None:
        return None
    item = module.items[i]
    body = item.body  # type: ignore[union-attr]
    tail = body.stmts[j1 - 1].span.end_line + 1 if j1 > j0 else start
    ended = tuple(s.strip() for s in a[tail - 1 : end] if s.strip())  # comment lines
    body = _spliced(body, (j0, j1), parsed, ended, (end + 1, delta), b)
    if body is None:
        return None
    item = dataclasses.replace(item, body=body, span=_moved(item.span, end + 1, delta))  # type: ignore[arg-type]
    rest = _moved(module.items[i + 1 :], end + 1, delta)
    return dataclasses.replace(module, items=(*module.items[:i], item, *rest))


def _spliced(
    body: ast.Body,
    cut: tuple[int, int],
    parsed: tuple[tuple[ast.Stmt, ...], tuple[str, ...]],
    ended: tuple[str, ...],
    move: tuple[int, int],
    lines: list[str],
) -> ast.Body | None:
    """`body` with its statements `cut` replaced by the `parsed` ones (and the comments after
    them), those after moved by `move` (from line, by lines). `ended`: the old comments after
    the cut statements, which the next statement (or the body's end) holds first."""
    (j0, j1), (new, left) = cut, parsed
    stmts = [*body.stmts[:j0], *new, *_moved(body.stmts[j1:], *move)]
    nxt = j0 + len(new)  # the statement after them, if any
    owner = stmts[nxt].comments if nxt < len(stmts) else body.end_comments
    if ended != owner[: len(ended)]:  # a comment line is one comment: not expected to happen
        return None
    comments = (*left, *owner[len(ended) :])
    if nxt < len(stmts):
        stmts[nxt] = dataclasses.replace(stmts[nxt], comments=comments)
    for k in range(j0, min(nxt + 1, len(stmts))):  # the parser's hint, from the new text
        stmts[k] = dataclasses.replace(stmts[k], blank_before=_blank_before(stmts[k], k, lines))
    return dataclasses.replace(
        body,
        stmts=tuple(stmts),
        end_comments=body.end_comments if nxt < len(stmts) else comments,
        span=_moved(body.span, *move),
    )


def _moved(node: Any, at: int, delta: int) -> Any:
    """`_shift`, skipped when nothing moves."""
    return _shift(node, at, delta) if delta else node


def _changed_range(a: list[str], b: list[str]) -> tuple[int, int, int]:
    """(lo, hi_a, hi_b): `b` is `a` with `a[lo:hi_a]` replaced by `b[lo:hi_b]`, the lines
    before and after kept as long as they can be."""
    n = min(len(a), len(b))
    lo = 0
    while lo < n and a[lo] == b[lo]:
        lo += 1
    kept = 0
    while kept < n - lo and a[-1 - kept] == b[-1 - kept]:
        kept += 1
    return lo, len(a) - kept, len(b) - kept


def _region(module: ast.Module, first: int, last: int) -> tuple[int, int, int, int, int] | None:
    """(item, j0, j1, start, end) when old lines `first`..`last` (none when `last` is
    `first - 1`) lie inside a model's or block's body and cut no statement in two: the
    statements `j0`..`j1 - 1` lie inside those lines, and lines `start`..`end` run from just
    after statement `j0 - 1` (or the `{`) to just before statement `j1` (or the `}`)."""
    for i, item in enumerate(module.items):
        if not isinstance(item, ast.ModelDef | ast.BlockDef):
            continue
        body = item.body
        if not body.span.line < first or not last < body.span.end_line:
            continue
        stmts = body.stmts
        j0 = next((k for k, s in enumerate(stmts) if s.span.end_line >= first), len(stmts))
        j1 = next((k for k in range(j0, len(stmts)) if stmts[k].span.line > last), len(stmts))
        if any(s.span.line < first or s.span.end_line > last for s in stmts[j0:j1]):
            return None
        start = stmts[j0 - 1].span.end_line + 1 if j0 else body.span.line + 1
        end = stmts[j1].span.line - 1 if j1 < len(stmts) else body.span.end_line - 1
        return i, j0, j1, start, end
    return None


def _statements(
    path: str, start: int, lines: list[str]
) -> tuple[tuple[ast.Stmt, ...], tuple[str, ...]] | None:
    """`lines` parsed as a body's statements from line `start` on, and the comments after
    the last of them; None when they do not parse so."""
    try:
        mini = parse("\n" * (start - 2) + "model _ {\n" + "\n".join(lines) + "\n}\n", path)
    except SpecError:
        return None
    if len(mini.items) != 1 or not isinstance(mini.items[0], ast.ModelDef):
        return None
    body = mini.items[0].body
    return body.stmts, body.end_comments


def _blank_before(stmt: ast.Stmt, index: int, lines: list[str]) -> bool:
    """The parser's blank-line hint: a blank line above the statement's comments (the first
    statement of a body has none)."""
    first = min(stmt.span.line - len(stmt.comments), stmt.span.line) - 1
    return index > 0 and 1 <= first <= len(lines) and not lines[first - 1].strip()
