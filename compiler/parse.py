"""Text → AST. The raw Lark tree never leaves this module.

Entry points: `parse(text, path) -> ast.Module` and `parse_expr(text, path) -> ast.Expr`.
Both raise `SpecError` with positioned diagnostics for syntax errors.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError

from . import ast
from .diagnostics import (
    E_BAD_CHAR,
    E_BAD_UNIT,
    E_SYNTAX,
    E_UNEXPECTED_EOF,
    Diagnostic,
    DiagnosticError,
    Span,
    SpecError,
)

UNITS = {"step": "steps", "steps": "steps", "epoch": "epochs", "epochs": "epochs"}

# What users type, for the terminal names Lark reports.
_TERMINALS = {
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "_LREC": "`{`",
    "COMMA": "`,`",
    "COLON": "`:`",
    "EQUAL": "`=`",
    "DOT": "`.`",
    "__ANON_0": "`->`",
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": 'a string in double quotes ("...")',
    "_NL": "a new line",
    "$END": "the end of the file",
    "COMP_OP": "a comparison",
    "ADD_OP": "`+` or `-`",
    "MUL_OP": "`*`, `/`, `//` or `%`",
}


class _PostLex:
    """Make newlines significant only between statements; split `{` into block and record."""

    always_accept = ("COMMENT", "_NL", "LBRACE")
    _OPEN = {"LPAR": "(", "LSQB": "["}
    _CLOSE = {"RPAR", "RSQB"}
    # A `{` right after the end of an expression or a name opens a block (`model m {`,
    # `block b(c) {`, `repeat 3 {`, `train {`); anywhere else it opens a record.
    _BLOCK_AFTER = {
        "NAME",
        "INT",
        "FLOAT",
        "STRING",
        "RPAR",
        "RSQB",
        "RBRACE",
        "TRUE",
        "FALSE",
        "NONE",
    }

    def __init__(self) -> None:
        self.comments: list[Token] = []
        self.expr_mode = False
        self.open: list[Token] = []  # unclosed brackets, for hints about the missing closer

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        self.comments = []
        self.open = []
        stack: list[str] = []
        prev: str | None = "EQUAL" if self.expr_mode else "_NL"
        for tok in stream:
            if tok.type == "COMMENT":
                self.comments.append(tok)
                continue
            if tok.type == "_NL":
                if (not stack or stack[-1] == "{") and prev not in ("LBRACE", "_NL"):
                    prev = "_NL"
                    yield tok
                continue
            if tok.type == "LBRACE" and (
                prev not in self._BLOCK_AFTER or (stack and stack[-1] != "{")
            ):
                tok = Token.new_borrow_pos("_LREC", tok.value, tok)
            self._track(tok, stack)
            prev = tok.type
            yield tok

    def _track(self, tok: Token, stack: list[str]) -> None:
        kind = {"LPAR": "(", "LSQB": "(", "_LREC": "rec", "LBRACE": "{"}.get(tok.type)
        if kind is not None:
            stack.append(kind)
            self.open.append(tok)
        elif (tok.type in self._CLOSE or tok.type == "RBRACE") and stack:
            stack.pop()
            self.open.pop()


def grammar_text() -> str:
    """The grammar as Lark reads it: grammar/dnn.lark plus the start rule for one expression."""
    grammar = resources.files("dnn.grammar").joinpath("dnn.lark").read_text(encoding="utf-8")
    return grammar + "\nexpr_start: expr\n"


def build_parser(grammar: str) -> tuple[Lark, _PostLex]:
    """Analyse the grammar (LALR tables): about 0.2 s; `_parser` loads shipped tables instead."""
    post = _PostLex()
    lark = Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        postlex=post,
        start=["start", "expr_start"],
        propagate_positions=True,
        maybe_placeholders=True,
    )
    return lark, post


@functools.cache
def _parser() -> tuple[Lark, _PostLex]:
    from . import grammar_tables  # imported here: `python -m` runs it as a script

    grammar = grammar_text()
    post = _PostLex()
    lark = grammar_tables.load(grammar, post)
    return (lark, post) if lark is not None else build_parser(grammar)


def parse(text: str, path: str = "<string>") -> ast.Module:
    """Parse a whole `.dnn` file."""
    tree, comments = _run(text, path, "start")
    builder = _Builder(text, path, comments)
    module = _transform(builder, tree, text, path)
    return ast.Module(module.items, module.end_comments, path)


def parse_expr(text: str, path: str = "<string>") -> ast.Expr:
    """Parse one expression, as written after `=` (used for `--set k=v` overrides)."""
    tree, comments = _run(text, path, "expr_start", expr_mode=True)
    builder = _Builder(text, path, comments)
    result: ast.Expr = _transform(builder, tree, text, path)
    return result


def _run(text: str, path: str, start: str, expr_mode: bool = False) -> tuple[Any, list[Token]]:
    lark, post = _parser()
    post.expr_mode = expr_mode
    try:
        tree = lark.parse(text, start=start)
    except UnexpectedInput as e:
        raise SpecError([_syntax_diagnostic(e, text, path, start)], {path: text}) from None
    finally:
        post.expr_mode = False
    return tree, list(post.comments)


def _transform(builder: _Builder, tree: Any, text: str, path: str) -> Any:
    try:
        result = builder.transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, DiagnosticError):
            raise SpecError([e.orig_exc.diagnostic], {path: text}) from None
        raise
    if builder.diagnostics:
        raise SpecError(builder.diagnostics, {path: text})
    return result


# ------------------------------------------------------------------ syntax errors

_EXAMPLES: dict[str, list[str]] = {
    "a section field is written `name = value`; `:` is for records": [
        "train {\n  epochs: 3\n}",
        'data {\n  source: builtin("digits")\n}',
    ],
    "keyword arguments are written `name = value`": ["model m {\n  dense(units: 4)\n}"],
    "put one statement per line, or join layers with `->`": [
        "model m {\n  dense(4) relu\n}",
        "model m {\n  relu relu\n}",
    ],
    "separate arguments with `,`": ["model m {\n  f(4 k = 3)\n}"],
    "a block declares its arguments in parentheses: `block name(arg, ...) {`": [
        "block b {\n}",
    ],
    "a shape is written with its dtype, e.g. `f32[28, 28, 1]`": [
        "model m {\n  input x: [28, 28]\n}",
        "model m {\n  input x: (28, 28)\n}",
    ],
}


@functools.cache
def _labels() -> list[tuple[str, Any, str | None]]:
    """(label, parser state, token type) of each known-bad snippet."""
    lark, _ = _parser()
    out: list[tuple[str, Any, str | None]] = []
    for label, snippets in _EXAMPLES.items():
        for snippet in snippets:
            try:
                lark.parse(snippet, start="start")
            except UnexpectedInput as e:
                out.append((label, _position(e), _token_type(e)))
    return out


def _token_type(e: UnexpectedInput) -> str | None:
    tok = getattr(e, "token", None)
    return tok.type if tok is not None else None


def _position(e: UnexpectedInput) -> Any:
    """The LALR state the parser was in (not the whole stack, which depends on context)."""
    state = getattr(e, "state", None)
    return getattr(state, "position", None)


def _hint_for(e: UnexpectedInput) -> str | None:
    state, ttype = _position(e), _token_type(e)
    if state is None:
        return None
    for label, s, t in _labels():
        if s == state and t == ttype:
            return label
    return None


def _syntax_diagnostic(e: UnexpectedInput, text: str, path: str, start: str) -> Diagnostic:
    opened = list(_parser()[1].open)  # before _hint_for parses its examples with the same parser
    if isinstance(e, UnexpectedCharacters):
        line, col, pos = int(e.line or 1), int(e.column or 1), int(e.pos_in_stream or 0)
        span = Span(path, line, col, line, col + 1)
        ch = text[pos] if 0 <= pos < len(text) else "?"
        if ch == '"':
            return Diagnostic(
                E_BAD_CHAR,
                "unterminated string",
                span,
                'add the missing `"` (a string ends on the line it starts)',
            )
        hint = 'strings use double quotes: "..."' if ch == "'" else None
        return Diagnostic(E_BAD_CHAR, f"unexpected character `{ch}`", span, hint)
    tok = getattr(e, "token", None)
    expected = sorted(getattr(e, "expected", None) or getattr(e, "accepts", None) or ())
    expected = _plausible(expected, opened)
    if isinstance(e, UnexpectedEOF) or tok is None or tok.type == "$END":
        return Diagnostic(
            E_UNEXPECTED_EOF,
            "unexpected end of file" + _expected_text(expected),
            _end_span(text, path),
            _unclosed_hint(opened) or "the file ends in the middle of a statement",
        )
    span = Span(
        path, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + 1
    )
    shown = "a new line" if tok.type == "_NL" else f"`{tok.value}`"
    hint = (_hint_for(e) if start == "start" else None) or _unclosed_hint(opened, tok)
    return Diagnostic(E_SYNTAX, f"unexpected {shown}" + _expected_text(expected), span, hint)


def _expected_text(expected: list[str]) -> str:
    names = sorted({_TERMINALS.get(t, f"`{t.lower()}`") for t in expected if t != "COMMENT"})
    if not names or len(names) > 6:
        return ""
    if len(names) == 1:
        return f", expected {names[0]}"
    return f", expected {', '.join(names[:-1])} or {names[-1]}"


def _end_span(text: str, path: str) -> Span:
    stripped = text.rstrip()
    lines = stripped.splitlines() or [""]
    line, col = len(lines), max(1, len(lines[-1]))
    return Span(path, line, col, line, col + 1)


def _unclosed_hint(opened: list[Token], at: Token | None = None) -> str | None:
    """`add the missing `)` for the `(` on line 3` when a bracket is still open."""
    if not opened:
        return None
    opener = opened[-1]
    if at is not None and (opener.line == at.line or at.type in ("RPAR", "RSQB", "RBRACE")):
        return None  # the error is on the opener's own line: a missing comma, not a closer
    closer = {"(": ")", "[": "]"}.get(str(opener), "}")
    return f"add the missing `{closer}` for the `{opener}` on line {opener.line}"


def _plausible(expected: list[str], opened: list[Token]) -> list[str]:
    """Drop closers that do not match the innermost open bracket (LALR merges states)."""
    if not opened:
        return expected
    want = {"(": "RPAR", "[": "RSQB"}.get(str(opened[-1]), "RBRACE")
    return [t for t in expected if t not in {"RPAR", "RSQB", "RBRACE"} - {want}]


# ------------------------------------------------------------------ tree → AST


def _span(path: str, meta: Any) -> Span:
    if getattr(meta, "empty", True):
        return Span(path, 1, 1, 1, 1)
    return Span(path, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(path: str, t: Token) -> Span:
    return Span(path, t.line or 1, t.column or 1, t.end_line or 1, t.end_column or 1)


def _number(text: str) -> str:
    return text.replace("_", "")


@v_args(meta=True)
class _Builder(Transformer):  # type: ignore[type-arg]
    """Builds AST nodes bottom-up and attaches comments to the statements that own them."""

    def __init__(self, text: str, path: str, comments: list[Token]):
        super().__init__()
        self.text_lines = text.split("\n")  # Lark counts only \n as a line break
        self.path = path
        self.comments = sorted(comments, key=lambda t: (t.line, t.column))
        self.claimed: set[int] = set()
        self.diagnostics: list[Diagnostic] = []

    # -- comments --------------------------------------------------------

    def _take(self, lo: int, hi: int) -> list[str]:
        out = []
        for i, c in enumerate(self.comments):
            if i not in self.claimed and lo <= (c.line or 0) <= hi:
                self.claimed.add(i)
                out.append(str(c.value).rstrip())
        return out

    def _attach(
        self, stmts: list[Any], first_line: int, last_line: int, closing: int = 0
    ) -> tuple[list[Any], list[str]]:
        """Give each statement its leading and trailing comments; return the leftovers."""
        out: list[Any] = []
        prev = first_line
        for s in stmts:
            lead = self._take(prev + 1, s.span.end_line - 1)
            trail = (
                [] if s.span.end_line == closing else self._take(s.span.end_line, s.span.end_line)
            )
            first = s.span.line - (len(lead) if lead else 0)
            blank = bool(out) and self._blank(min(first, s.span.line) - 1)
            extra = {"comments": tuple(lead), "blank_before": blank}
            if trail:
                extra["trailing"] = trail[0] if getattr(s, "trailing", None) is None else s.trailing
            out.append(_replace(s, **extra))
            prev = s.span.end_line
        return out, self._take(prev + 1, last_line)

    def _blank(self, line: int) -> bool:
        return 1 <= line <= len(self.text_lines) and not self.text_lines[line - 1].strip()

    # -- top level ---------------------------------------------------------

    def start(self, meta: Any, children: list[Any]) -> ast.Module:
        items = [c for c in children if c is not None]
        items, rest = self._attach(items, 0, 10**9)
        return ast.Module(tuple(items), tuple(rest), self.path)

    def version(self, meta: Any, c: list[Any]) -> ast.Version:
        return ast.Version(self._int(c[0]), span=_span(self.path, meta))

    def import_stmt(self, meta: Any, c: list[Any]) -> ast.ImportStmt:
        return ast.ImportStmt(self._string(c[0]), span=_span(self.path, meta))

    def param_def(self, meta: Any, c: list[Any]) -> ast.ParamDef:
        return ast.ParamDef(str(c[0]), c[1], span=_span(self.path, meta))

    def block_param(self, meta: Any, c: list[Any]) -> ast.BlockParam:
        return ast.BlockParam(str(c[0]), c[1], span=_span(self.path, meta))

    def block_def(self, meta: Any, c: list[Any]) -> ast.BlockDef:
        params = tuple(p for p in c[1:-1] if isinstance(p, ast.BlockParam))
        inputs = c[-2] if isinstance(c[-2], tuple) else ()
        return ast.BlockDef(str(c[0]), params, c[-1], inputs, span=_span(self.path, meta))

    def block_inputs(self, meta: Any, c: list[Any]) -> tuple[ast.BlockInput, ...]:
        return tuple(c)

    def block_input(self, meta: Any, c: list[Any]) -> ast.BlockInput:
        return ast.BlockInput(str(c[0]), span=_span(self.path, meta))

    def model_def(self, meta: Any, c: list[Any]) -> ast.ModelDef:
        return ast.ModelDef(str(c[0]), c[1], span=_span(self.path, meta))

    def section(self, meta: Any, c: list[Any]) -> ast.Section:
        span = _span(self.path, meta)
        opening = self._take(c[0].line, c[0].line)
        fields, rest = self._attach(
            [f for f in c[1:] if f is not None], c[0].line, span.end_line - 1
        )
        return ast.Section(
            str(c[0]),
            tuple(fields),
            opening[0] if opening else None,
            tuple(rest),
            span=span,
        )

    def field(self, meta: Any, c: list[Any]) -> ast.Field:
        return ast.Field(c[0], c[1], span=_span(self.path, meta))

    def dotted(self, meta: Any, c: list[Any]) -> tuple[str, ...]:
        return tuple(str(t) for t in c)

    # -- statements ------------------------------------------------------

    def body(self, meta: Any, c: list[Any]) -> ast.Body:
        span = _span(self.path, meta)
        opening = self._take(span.line, span.line) if span.end_line > span.line else []
        stmts, rest = self._attach(
            [s for s in c if s is not None], span.line, span.end_line - 1, span.end_line
        )
        return ast.Body(tuple(stmts), opening[0] if opening else None, tuple(rest), span=span)

    def input_decl(self, meta: Any, c: list[Any]) -> ast.InputDecl:
        return ast.InputDecl(str(c[0]), c[1], span=_span(self.path, meta))

    def assign(self, meta: Any, c: list[Any]) -> ast.Assign:
        return ast.Assign(str(c[0]), c[1], span=_span(self.path, meta))

    def output(self, meta: Any, c: list[Any]) -> ast.Output:
        name = str(c[0]) if c[0] is not None else None
        return ast.Output(name, c[1], span=_span(self.path, meta))

    def repeat(self, meta: Any, c: list[Any]) -> ast.Repeat:
        return ast.Repeat(c[0], c[1], span=_span(self.path, meta))

    def repeat_range(self, meta: Any, c: list[Any]) -> ast.Repeat:
        span = _span(self.path, meta)
        return ast.Repeat(c[2], c[3], var=str(c[0]), start=c[1], span=span)

    def expr_stmt(self, meta: Any, c: list[Any]) -> ast.ExprStmt:
        return ast.ExprStmt(c[0], span=_span(self.path, meta))

    def expr_start(self, meta: Any, c: list[Any]) -> ast.Expr:
        result: ast.Expr = c[0]
        return result

    # -- expressions -------------------------------------------------------

    def cond(self, meta: Any, c: list[Any]) -> ast.Cond:
        return ast.Cond(c[0], c[1], c[2], span=_span(self.path, meta))

    def chain(self, meta: Any, c: list[Any]) -> ast.Chain:
        return ast.Chain(tuple(c), span=_span(self.path, meta))

    def or_op(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return ast.BinOp("or", c[0], c[1], span=_span(self.path, meta))

    def and_op(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return ast.BinOp("and", c[0], c[1], span=_span(self.path, meta))

    def not_op(self, meta: Any, c: list[Any]) -> ast.UnaryOp:
        return ast.UnaryOp("not", c[0], span=_span(self.path, meta))

    def compare(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return ast.BinOp(str(c[1]), c[0], c[2], span=_span(self.path, meta))

    def binop(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return ast.BinOp(str(c[1]), c[0], c[2], span=_span(self.path, meta))

    def unary(self, meta: Any, c: list[Any]) -> ast.UnaryOp:
        return ast.UnaryOp(str(c[0]), c[1], span=_span(self.path, meta))

    def pow_op(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return ast.BinOp("**", c[0], c[2], span=_span(self.path, meta))

    def call(self, meta: Any, c: list[Any]) -> ast.Call:
        args = tuple(
            a if isinstance(a, ast.Arg) else _positional(a) for a in c[1:] if a is not None
        )
        return ast.Call(c[0], args, span=_span(self.path, meta))

    def kwarg(self, meta: Any, c: list[Any]) -> ast.Arg:
        return ast.Arg(str(c[0]), c[1], span=_span(self.path, meta))

    def attr(self, meta: Any, c: list[Any]) -> ast.Attr:
        return ast.Attr(c[0], str(c[1]), span=_span(self.path, meta))

    def subscript(self, meta: Any, c: list[Any]) -> ast.Subscript:
        index = []
        for a in c[1:]:
            if isinstance(a, ast.Arg):
                self.diagnostics.append(
                    Diagnostic(
                        E_SYNTAX, "unexpected keyword in `[...]`", a.span, "write values only"
                    )
                )
            elif a is not None:
                index.append(a)
        return ast.Subscript(c[0], tuple(index), span=_span(self.path, meta))

    def int_lit(self, meta: Any, c: list[Any]) -> ast.IntLit:
        return ast.IntLit(self._int(c[0]), span=_span(self.path, meta))

    def float_lit(self, meta: Any, c: list[Any]) -> ast.FloatLit:
        return ast.FloatLit(self._float(c[0]), span=_span(self.path, meta))

    def _float(self, tok: Token) -> float:
        value = float(_number(tok))
        if not math.isfinite(value):
            self._too_large(tok)
            return 0.0
        return value

    def _int(self, tok: Token) -> int:
        digits = _number(tok)
        if len(digits) > 30:
            self._too_large(tok)
            return 0
        return int(digits)

    def _too_large(self, tok: Token) -> None:
        self.diagnostics.append(
            Diagnostic(
                E_SYNTAX,
                f"number `{tok}` is too large",
                _tok_span(self.path, tok),
                "write a smaller number",
            )
        )

    def string_lit(self, meta: Any, c: list[Any]) -> ast.StringLit:
        return ast.StringLit(self._string(c[0]), span=_span(self.path, meta))

    def true_lit(self, meta: Any, c: list[Any]) -> ast.BoolLit:
        return ast.BoolLit(True, span=_span(self.path, meta))

    def false_lit(self, meta: Any, c: list[Any]) -> ast.BoolLit:
        return ast.BoolLit(False, span=_span(self.path, meta))

    def none_lit(self, meta: Any, c: list[Any]) -> ast.NoneLit:
        return ast.NoneLit(span=_span(self.path, meta))

    def name(self, meta: Any, c: list[Any]) -> ast.Name:
        return ast.Name(str(c[0]), span=_span(self.path, meta))

    def quantity(self, meta: Any, c: list[Any]) -> ast.Quantity:
        num, unit = c
        value: int | float = self._int(num) if num.type == "INT" else self._float(num)
        canonical = UNITS.get(str(unit))
        if canonical is None:
            self.diagnostics.append(
                Diagnostic(
                    E_BAD_UNIT,
                    f"unknown unit `{unit}`",
                    _tok_span(self.path, unit),
                    "units are `steps` and `epochs`",
                )
            )
            canonical = "steps"
        return ast.Quantity(value, canonical, span=_span(self.path, meta))

    def list_lit(self, meta: Any, c: list[Any]) -> ast.ListLit:
        return ast.ListLit(tuple(x for x in c if x is not None), span=_span(self.path, meta))

    def record(self, meta: Any, c: list[Any]) -> ast.Record:
        pairs = [p for p in c if isinstance(p, ast.Pair)]
        seen: set[str] = set()
        for p in pairs:
            if p.key in seen:
                self.diagnostics.append(
                    Diagnostic("E0206", f"key `{p.key}` appears twice in the record", p.span)
                )
            seen.add(p.key)
        return ast.Record(tuple(pairs), span=_span(self.path, meta))

    def pair(self, meta: Any, c: list[Any]) -> ast.Pair:
        key = self._string(c[0]) if c[0].type == "STRING" else str(c[0])
        return ast.Pair(key, c[1], span=_span(self.path, meta))

    def _string(self, tok: Token) -> str:
        try:
            value = json.loads(str(tok))  # JSON string escapes; spec text is never evaluated
            value.encode("utf-8")  # a lone surrogate (`\ud800`) is no character
        except (ValueError, UnicodeEncodeError):
            raw_control = any(ord(ch) < 32 for ch in str(tok))
            message = "control character in string" if raw_control else "invalid escape in string"
            hint = "write a tab as `\\t`" if "\t" in str(tok) else None
            self.diagnostics.append(Diagnostic(E_SYNTAX, message, _tok_span(self.path, tok), hint))
            return str(tok)[1:-1]
        return str(value)


def _positional(value: ast.Expr) -> ast.Arg:
    return ast.Arg(None, value, span=value.span)


def _replace(node: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(node, **changes)
