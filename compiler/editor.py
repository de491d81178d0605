"""What an editor asks of a spec (`dnn lsp`): one text's analysis, and the queries on it.

`analyze(text, path)` runs the passes as `dnn check` does and keeps what they built (the AST
even when the check fails). The queries (`hover`, `completions`, `definition`, `symbols`,
`inlay_hints`) are pure functions of the text and that analysis. Positions are 1-based lines
and character columns, as in `Span`; runtime/lsp.py turns them into LSP messages. No JAX here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import ast
from .check import check
from .diagnostics import Diagnostic, Diagnostics, Span, SpecError
from .ir import Node, Program
from .parse import parse
from .reference import default_text, find, help_entry
from .registry import REGISTRIES
from .registry.core import Arg, Entry
from .registry.sections import SECTIONS
from .reparse import reparse
from .resolve import Reader, Resolved, read_file, resolve

KEYWORDS = ("dnn", "import", "param", "block", "model", "data", "train", "sweep")
STATEMENT_WORDS = ("input", "output", "repeat")


@dataclass(frozen=True, slots=True)
class Analysis:
    """One text's passes: the AST (None if it does not parse), the IR, every diagnostic."""

    path: str
    text: str
    module: ast.Module | None
    resolved: Resolved | None
    program: Program | None
    diagnostics: tuple[Diagnostic, ...]

    @property
    def model_checked(self) -> bool:
        """The model was checked clean: its IR has every shape and count."""
        return self.program is not None and self.program.model is not None


def analyze(
    text: str,
    path: str,
    reader: Reader = read_file,
    deadline: float | None = None,
    previous: Analysis | None = None,
) -> Analysis:
    """Parse, resolve and check `text` as `dnn check` does, keeping the partial results.

    `deadline` (a `time.monotonic()` value) bounds the check: past it, E0608 at the `repeat`
    being expanded. `previous`, an analysis of an earlier text of the same file, lets an edit
    of a body's statement lines (one line typed, a paste, a deleted line) reparse those lines
    alone (`reparse`).
    """
    module = None
    if previous is not None and previous.module is not None and previous.path == path:
        module = reparse(previous.module, previous.text, text)
    if module is None:
        try:
            module = parse(text, path)
        except SpecError as e:
            return Analysis(path, text, None, None, None, e.diagnostics)
    diags = Diagnostics()
    resolved = resolve(module, text, (), diags, reader)
    program = check(resolved, diags, deadline) if not diags.errors else None
    return Analysis(path, text, module, resolved, program, tuple(diags.items))


# ------------------------------------------------------------------ words and positions

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def word_at(text: str, line: int, col: int) -> tuple[str, Span] | None:
    """The identifier under (or just before) the cursor at `line`:`col`, with its span."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    src = lines[line - 1]
    for m in _WORD.finditer(src):
        if m.start() + 1 <= col <= m.end() + 1 and not _in_comment_or_string(src, m.start()):
            return m.group(), Span("", line, m.start() + 1, line, m.end() + 1)
    return None


def _in_comment_or_string(src: str, index: int) -> bool:
    quoted = False
    for i, ch in enumerate(src[:index]):
        if ch == '"' and (i == 0 or src[i - 1] != "\\"):
            quoted = not quoted
        elif ch == "#" and not quoted:
            return True
    return quoted


def _contains(span: Span, line: int, col: int) -> bool:
    after_start = (line, col) >= (span.line, span.col)
    return after_start and (line, col) <= (span.end_line, span.end_col)


def _items(module: ast.Module | None) -> tuple[ast.Item, ...]:
    return module.items if module is not None else ()


def _item_at(module: ast.Module | None, line: int) -> ast.Item | None:
    return next((i for i in _items(module) if i.span.line <= line <= i.span.end_line), None)


# ------------------------------------------------------------------ shapes by line


def line_nodes(program: Program | None, path: str, line: int) -> list[Node]:
    """The layers a line of `path` builds: a model line's own (a block call's, a repeat's,
    every copy), else the layers a block body's line builds in each instance."""
    model = program.model if program is not None else None
    if model is None:
        return []
    sites = dict(model.sites)
    at_site, own = [], []
    for n in model.nodes:
        anchor = sites.get(n.scope[0], n.span) if n.scope else n.span
        if anchor.path == path and anchor.line <= line <= anchor.end_line:
            at_site.append(n)
        if n.span.path == path and n.span.line == line:
            own.append(n)
    return at_site or own


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def layers_markdown(nodes: list[Node]) -> str:
    """A line's layers for a hover: each one's output shape and parameters, and the total."""
    rows = ["| layer | op | output shape | params |", "| --- | --- | --- | --- |"]
    shown = nodes if len(nodes) <= 12 else [*nodes[:6], *nodes[-6:]]
    for i, n in enumerate(shown):
        if len(nodes) > 12 and i == 6:
            rows.append(f"| ... {len(nodes) - 12} more | | | |")
        rows.append(f"| `{n.name}` | {n.op} | `{_shape(n.shape)}` | {n.total_params:,} |")
    total = sum(n.total_params for n in nodes)
    head = f"**output** `{_shape(nodes[-1].shape)}` · **params** {total:,}"
    return head + "\n\n" + "\n".join(rows)


@dataclass(frozen=True, slots=True)
class InlayHint:
    line: int
    col: int  # the hint goes before this column (just after the layer's text)
    label: str


def inlay_hints(program: Program | None, path: str) -> list[InlayHint]:
    """Each layer's output shape after its text; a block call or a repeat shows its last."""
    model = program.model if program is not None else None
    if model is None:
        return []
    sites = dict(model.sites)
    at: dict[tuple[int, int], Node] = {}
    for n in model.nodes:
        anchor = sites.get(n.scope[0], n.span) if n.scope else n.span
        if anchor.path == path and n.op != "input":
            at[(anchor.end_line, anchor.end_col)] = n  # the last layer built there wins
    return [InlayHint(line, col, f"→ {_shape(n.shape)}") for (line, col), n in sorted(at.items())]


# ------------------------------------------------------------------ hover


def hover(now: Analysis, good: Analysis | None, line: int, col: int) -> str | None:
    """Markdown for the word under the cursor: its `dnn help` text (or the block, param or
    field it names) and, on a layer line, the layers it builds with their shapes and counts.
    `good` is the last analysis whose model checked, used while `now` does not."""
    found = word_at(now.text, line, col)
    parts = []
    if found is not None:
        parts += _word_docs(now, good, found[0], line, found[1].end_col)
    shapes = now if now.model_checked else good
    nodes = line_nodes(shapes.program if shapes else None, now.path, line)
    if nodes and _item_kind(now, good, line) in ("model", "block"):
        parts.append(layers_markdown(nodes))
    return "\n\n---\n\n".join(parts) if parts else None


def _item_kind(now: Analysis, good: Analysis | None, line: int) -> str | None:
    item = _item_at(now.module or (good.module if good else None), line)
    return {ast.ModelDef: "model", ast.BlockDef: "block"}.get(type(item))


def _word_docs(now: Analysis, good: Analysis | None, word: str, line: int, col: int) -> list[str]:
    scope = now if now.resolved is not None else good
    resolved = scope.resolved if scope else None
    call = enclosing_call(now.text, line, col)  # `col`: just after the word
    rest = now.text.split("\n")[line - 1][col - 1 :]
    if call is not None and re.match(r"\s*=(?!=)", rest):
        arg_doc = _arg_doc(resolved, call.name, word)
        if arg_doc:
            return [arg_doc]
    if resolved is not None and word in resolved.blocks:
        return [_block_doc(resolved.blocks[word])]
    if resolved is not None and word in resolved.params:
        return [_param_doc(resolved.params[word], scope.program if scope else None)]
    section = _section_of(now.text, line)
    if section is not None and (arg := _field(section, word)) is not None:
        return [_arg_markdown(arg, f"{section}.")]
    return [f"```\n{help_entry(reg, e)}\n```" for reg, e in find(word)]


def _block_doc(b: ast.BlockDef) -> str:
    params = ", ".join(p.name + (" = …" if p.default is not None else "") for p in b.params)
    inputs = f"({', '.join(i.name for i in b.inputs)})" if b.inputs else ""
    where = f" — {os.path.basename(b.span.path)}:{b.span.line}"
    doc = "\n".join(c.lstrip("# ").rstrip() for c in b.comments)
    return f"```\nblock {b.name}({params}){inputs}\n```\n{where}" + (f"\n\n{doc}" if doc else "")


def _param_doc(p: ast.ParamDef, program: Program | None) -> str:
    from .format import format_expr

    value = dict(program.params).get(p.name) if program is not None else None
    shown = f"\n\nvalue: `{value!r}`" if value is not None else ""
    return f"```\nparam {p.name} = {format_expr(p.value)}\n```{shown}"


def _arg_markdown(a: Arg, prefix: str = "") -> str:
    unit = f" ({a.unit})" if a.unit else ""
    doc = f"\n\n{a.doc}" if a.doc else ""
    return f"`{prefix}{a.name}`: {a.type.label}{unit}, default `{default_text(a.default)}`{doc}"


def _arg_doc(resolved: Resolved | None, callee: str, name: str) -> str | None:
    if resolved is not None and callee in resolved.blocks:
        return f"`{name}`: an argument of block `{callee}`"
    for _, e in find(callee):
        if (a := e.get_arg(name)) is not None:
            return _arg_markdown(a, f"{callee}.")
    return None


def _field(section: str, name: str) -> Arg | None:
    entry = SECTIONS.lookup(section)
    return entry.get_arg(name) if entry is not None else None


# ------------------------------------------------------------------ context from the text


@dataclass(frozen=True, slots=True)
class CallContext:
    """The call whose parentheses hold the cursor: `conv2d(32, kernel = |`."""

    name: str
    written_names: tuple[str, ...]  # keyword arguments already written
    arg_name: str | None  # the keyword whose value is being typed, if any


def enclosing_call(text: str, line: int, col: int) -> CallContext | None:
    """The innermost unclosed `name(` before the cursor, on the cursor's statement."""
    before = _before(text, line, col)
    depth, i = 0, len(before) - 1
    while i >= 0:
        ch = before[i]
        if ch in ")]":
            depth += 1
        elif ch in "([":
            if depth == 0:
                if ch == "[" or _new_statement(before, i):
                    return None
                m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", before[:i])
                return _call_context(m.group(1), before[i + 1 :]) if m else None
            depth -= 1
        elif ch in "{}" and depth == 0:
            return None
        i -= 1
    return None


def _new_statement(before: str, i: int) -> bool:
    """The cursor's line starts a statement of its own, though `(` at `i` is unclosed: it is
    indented no deeper than the line of the `(` (a half-typed call above the cursor)."""
    open_line = before[: i + 1].rsplit("\n", 1)[-1]
    if "\n" not in before[i:]:
        return False
    cursor_line = before.rsplit("\n", 1)[-1]
    return _indent(cursor_line) <= _indent(open_line)


def _indent(src: str) -> int:
    return len(src) - len(src.lstrip())


def _call_context(name: str, inside: str) -> CallContext:
    written = tuple(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)", inside))
    current = re.split(r",", inside)[-1]
    m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)", current)
    return CallContext(name, written, m.group(1) if m else None)


def _before(text: str, line: int, col: int) -> str:
    """The text before the cursor, comments blanked (they may hold brackets)."""
    lines = text.split("\n")[: max(line, 1)]
    if lines:
        lines[-1] = lines[-1][: max(col - 1, 0)]
    return "\n".join(_strip_comment(s) for s in lines)


def _strip_comment(src: str) -> str:
    quoted = False
    for i, ch in enumerate(src):
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return src[:i]
    return src


def _enclosing_headers(text: str, line: int) -> list[str]:
    """The lines that open the `{ ... }` around `line`, innermost first (from the text alone,
    so a half-typed file has a context too)."""
    lines = [_strip_comment(s) for s in text.split("\n")[: max(line - 1, 0)]]
    depth, out = 0, []
    for src in reversed(lines):
        for ch in reversed(src):
            if ch == "}":
                depth += 1
            elif ch == "{":
                if depth == 0:
                    out.append(src.strip())
                else:
                    depth -= 1
    return out


def _section_of(text: str, line: int) -> str | None:
    headers = _enclosing_headers(text, line)
    if len(headers) != 1:
        return None
    m = re.match(r"(\w+)\s*\{", headers[0])
    return m.group(1) if m and SECTIONS.lookup(m.group(1)) else None


# ------------------------------------------------------------------ completion


@dataclass(frozen=True, slots=True)
class Completion:
    label: str
    kind: str  # "word", "argument", "field", "block", "param", "keyword", "value"
    detail: str = ""
    doc: str = ""
    insert: str | None = None  # the text to insert, when not the label


def completions(now: Analysis, good: Analysis | None, line: int, col: int) -> list[Completion]:
    """What may be typed at the cursor: a call's argument names (with their defaults) or an
    argument's values, a section's fields or a field's values, layer words and blocks in a
    model or block, top-level keywords outside."""
    scope = now if now.resolved is not None else good
    resolved = scope.resolved if scope else None
    call = enclosing_call(now.text, line, col)
    if call is not None:
        return _call_completions(call, resolved)
    headers = _enclosing_headers(now.text, line)
    if not headers:
        return [Completion(k, "keyword") for k in KEYWORDS]
    section = _section_of(now.text, line)
    if section is not None:
        return _field_completions(section, _before(now.text, line, col).split("\n")[-1])
    if re.match(r"\w+\s*=\s*(\{|$)", headers[0]):
        return []  # inside a record value
    return _layer_completions(resolved, now.text)


def _call_completions(call: CallContext, resolved: Resolved | None) -> list[Completion]:
    if call.arg_name is not None:
        for _, e in find(call.name):
            if (a := e.get_arg(call.arg_name)) is not None:
                return _value_completions(a.type)
        return []
    if resolved is not None and call.name in resolved.blocks:
        b = resolved.blocks[call.name]
        return [
            Completion(p.name, "argument", "block argument", insert=f"{p.name} = ")
            for p in b.params
            if p.name not in call.written_names
        ]
    out: list[Completion] = []
    for _, e in find(call.name):
        out += [
            Completion(
                a.name,
                "argument",
                f"{a.type.label} = {default_text(a.default)}",
                a.doc,
                f"{a.name} = ",
            )
            for a in e.args
            if a.name not in call.written_names and not a.variadic
        ]
    return list({c.label: c for c in out}.values())


def _field_completions(section: str, line_before: str) -> list[Completion]:
    entry = SECTIONS.lookup(section)
    if entry is None:
        return []
    m = re.match(r"\s*([\w.]+)\s*=\s*[\w]*$", line_before)
    if m:
        a = entry.get_arg(m.group(1))
        return _value_completions(a.type) if a is not None else []
    if not re.match(r"\s*\w*$", line_before):
        return []
    return [
        Completion(a.name, "field", f"{a.type.label} = {default_text(a.default)}", a.doc, None)
        for a in entry.args
    ]


def _layer_completions(resolved: Resolved | None, text: str) -> list[Completion]:
    out = [Completion(w, "keyword") for w in STATEMENT_WORDS]
    for kind in ("layer", "activation"):
        out += [_word(e) for e in REGISTRIES[kind]]
    if resolved is not None:
        blocks, params = list(resolved.blocks), list(resolved.params)
    else:  # nothing parsed yet: the names this file's own lines define
        blocks = re.findall(r"^block\s+([A-Za-z_]\w*)", text, re.M)
        params = re.findall(r"^param\s+([A-Za-z_]\w*)", text, re.M)
    out += [Completion(b, "block", "block") for b in blocks]
    out += [Completion(p, "param", "param") for p in params]
    return list({c.label: c for c in out}.values())


def _word(e: Entry) -> Completion:
    sig = ", ".join(
        a.name if a.required else f"{a.name} = {default_text(a.default)}" for a in e.args
    )
    return Completion(e.name, "word", f"{e.kind}: {e.name}({sig})", e.doc)


def _value_completions(t: object) -> list[Completion]:
    return list({c.label: c for c in _values_of(t)}.values())


def _values_of(t: object) -> Iterator[Completion]:
    name = type(t).__name__
    if name == "RefT":
        for e in REGISTRIES[t.kind]:  # type: ignore[attr-defined]
            yield _word(e)
    elif name == "EnumT":
        for c in t.choices:  # type: ignore[attr-defined]
            yield Completion(c, "value")
    elif name == "BoolT":
        yield from (Completion("true", "value"), Completion("false", "value"))
    elif name in ("ListT", "OptionalT"):
        yield from _values_of(t.inner)  # type: ignore[attr-defined]
        if name == "OptionalT":
            yield Completion("none", "value")
    elif name == "UnionT":
        for o in t.options:  # type: ignore[attr-defined]
            yield from _values_of(o)


# ------------------------------------------------------------------ definitions


def definition(now: Analysis, good: Analysis | None, line: int, col: int) -> Span | None:
    """Where the name under the cursor is defined: a block, a param, a block's argument or
    input, a named value of the model or block, or the file an `import` names."""
    scope = now if now.module is not None else good
    if scope is None or scope.module is None:
        return None
    item = _item_at(scope.module, line)
    if isinstance(item, ast.ImportStmt):
        target = os.path.join(os.path.dirname(now.path), item.path)
        return Span(os.path.normpath(target), 1, 1, 1, 1)
    found = word_at(now.text, line, col)
    if found is None:
        return None
    word = found[0]
    if isinstance(item, ast.BlockDef | ast.ModelDef):
        local = _local_definition(item, word, line)
        if local is not None:
            return local
    resolved = scope.resolved
    if resolved is not None and word in resolved.blocks:
        return resolved.blocks[word].span
    if resolved is not None and word in resolved.params:
        return resolved.params[word].span
    return None


def _local_definition(item: ast.BlockDef | ast.ModelDef, word: str, line: int) -> Span | None:
    if isinstance(item, ast.BlockDef):
        params: list[ast.BlockParam | ast.BlockInput] = [*item.params, *item.inputs]
        for p in params:
            if p.name == word:
                return p.span
    named = [s for s in _statements(item.body) if getattr(s, "name", None) == word]
    before = [s for s in named if s.span.line < line]
    pick = before[-1] if before else (named[0] if named else None)
    return pick.span if pick is not None else None


def _statements(body: ast.Body) -> Iterator[ast.Stmt]:
    for s in body.stmts:
        yield s
        if isinstance(s, ast.Repeat):
            yield from _statements(s.body)


# ------------------------------------------------------------------ symbols


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    kind: str  # "model", "block", "section", "param", "import", "value", "field", "version"
    span: Span
    name_span: Span
    children: tuple[Symbol, ...] = ()


def symbols(module: ast.Module | None, text: str) -> list[Symbol]:
    """The outline: imports, params, blocks, models (with inputs and named values) and
    sections (with their fields)."""
    lines = text.split("\n")
    return [s for i in _items(module) if (s := _symbol(i, lines)) is not None]


def _symbol(item: ast.Item, lines: list[str]) -> Symbol | None:
    at: Callable[[str, Span], Span] = lambda name, span: _name_span(lines, name, span)  # noqa: E731
    if isinstance(item, ast.ImportStmt):
        return Symbol(item.path, "import", item.span, item.span)
    if isinstance(item, ast.ParamDef):
        return Symbol(item.name, "param", item.span, at(item.name, item.span))
    if isinstance(item, ast.BlockDef | ast.ModelDef):
        kids = tuple(
            Symbol(s.name, "value", s.span, at(s.name, s.span))
            for s in _statements(item.body)
            if isinstance(s, ast.InputDecl | ast.Assign | ast.Output) and s.name
        )
        kind = "block" if isinstance(item, ast.BlockDef) else "model"
        return Symbol(item.name, kind, item.span, at(item.name, item.span), kids)
    if isinstance(item, ast.Section):
        fields = tuple(
            Symbol(".".join(f.path), "field", f.span, at(f.path[0], f.span)) for f in item.fields
        )
        return Symbol(item.name, "section", item.span, at(item.name, item.span), fields)
    return None


def _name_span(lines: list[str], name: str, span: Span) -> Span:
    """The first `name` as a whole word on the span's first line; the span itself if none."""
    src = lines[span.line - 1] if 1 <= span.line <= len(lines) else ""
    m = re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", src[span.col - 1 :])
    if m is None:
        return span
    start = span.col + m.start()
    return Span(span.path, span.line, start, span.line, start + len(name))
