"""Round trips through the parser and the formatter (STYLE.md §5).

- Generated ASTs print to text that parses back to the same AST (`==` ignores spans, blank-line
  hints and the order of keyword arguments), and that text is a fixed point of `format_text`.
- Text from the grammar (`from_lark`) and arbitrary text parse to a `Module` or raise
  `SpecError`, nothing else; text that parses formats to a fixed point with the same AST.
- Tables of tricky snippets: canonical ones pass through `format_text` unchanged, messy ones
  reach their canonical form.

Bugs these tests found are kept as regression rows at the end.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import resources

import pytest
from conftest import assert_fmt_identity
from dnn.compiler import ast
from dnn.compiler.diagnostics import SpecError
from dnn.compiler.format import format_module, format_text
from dnn.compiler.parse import parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from lark import Lark

KEYWORDS = frozenset(
    "dnn import param block model input output repeat in if else and or not true false none".split()
)
# The repr of the deep expression strategy is long; Hypothesis warns when it builds it.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- AST strategies

IDENTS = st.one_of(
    st.sampled_from(["x", "h", "relu", "steps", "in_", "model_", "_"]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True),
).filter(lambda s: s not in KEYWORDS)
# Registry words too: the formatter sorts their keyword arguments, which `Call.__eq__` ignores.
CALLEES = st.one_of(IDENTS, st.sampled_from(["dense", "conv2d", "adam", "dropout", "cosine"]))

# Any text but lone surrogates, which are not characters; `\u2028` and `\x85` are line breaks
# to `str.splitlines` but not to Lark.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
STRINGS = st.one_of(st.sampled_from(['"', "\\", '\\"', 'a "b" \\n', "", "\u2028", "\x85"]), TEXT)
# Comments keep their `#` and lose trailing white space when parsed; they end at a newline.
COMMENT_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\n")
COMMENTS = st.text(COMMENT_CHARS, max_size=12).map(lambda s: ("# " + s).rstrip())
OPT_COMMENT = st.none() | COMMENTS
COMMENT_LINES = st.lists(COMMENTS, max_size=2).map(tuple)
DECORATION = {"comments": COMMENT_LINES, "trailing": OPT_COMMENT, "blank_before": st.booleans()}

INTS = st.integers(min_value=0, max_value=10**12)
FLOATS = st.floats(min_value=0, allow_nan=False, allow_infinity=False)
# Operators by precedence level, each level a choice of its own: precedence bugs live there.
OPERATORS = ["+ -", "* / // %", "**", "== != < > <= >=", "and or"]

LEAVES: st.SearchStrategy[ast.Expr] = st.one_of(
    INTS.map(ast.IntLit),
    FLOATS.map(ast.FloatLit),
    STRINGS.map(ast.StringLit),
    st.booleans().map(ast.BoolLit),
    st.just(ast.NoneLit()),
    IDENTS.map(ast.Name),
    st.builds(ast.Quantity, INTS | FLOATS, st.sampled_from(["steps", "epochs"])),
)


def _record(sub: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Record]:
    keys = st.one_of(IDENTS, st.sampled_from(sorted(KEYWORDS)), STRINGS)
    pairs = st.lists(st.tuples(keys, sub), max_size=3, unique_by=lambda kv: kv[0])
    return pairs.map(lambda kvs: ast.Record(tuple(ast.Pair(k, v) for k, v in kvs)))


def _call(sub: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Call]:
    func = st.one_of(CALLEES.map(ast.Name), sub.filter(lambda e: not isinstance(e, ast.Name)))
    arg = st.builds(ast.Arg, st.none() | IDENTS, sub)
    return st.builds(ast.Call, func, st.lists(arg, max_size=3).map(tuple))


@functools.cache
def exprs(depth: int) -> st.SearchStrategy[ast.Expr]:
    """Expressions at most `depth` levels above the leaves, three in four of them compound."""
    if depth == 0:
        return LEAVES
    sub = exprs(depth - 1)
    items = st.lists(sub, max_size=3).map(tuple)
    compound = st.one_of(
        items.map(ast.ListLit),
        _record(sub),
        _call(sub),
        st.builds(ast.Attr, sub, IDENTS),
        st.builds(ast.Subscript, sub, items),
        *(st.builds(ast.BinOp, st.sampled_from(ops.split()), sub, sub) for ops in OPERATORS),
        st.builds(ast.UnaryOp, st.sampled_from(["-", "+", "not"]), sub),
        st.builds(ast.Cond, sub, sub, sub),
        st.lists(sub, min_size=2, max_size=3).map(lambda xs: ast.Chain(tuple(xs))),
    )
    # one_of would flatten LEAVES into the compound choices, and pick a leaf half the time.
    return st.integers(0, 3).flatmap(lambda i: LEAVES if i == 0 else compound)


EXPRS = exprs(3)
SMALL_EXPRS = exprs(2)


@functools.cache
def stmts(depth: int) -> st.SearchStrategy[ast.Stmt]:
    """Statements; `repeat` nests at most `depth` deep."""
    e = SMALL_EXPRS
    options: list[st.SearchStrategy[ast.Stmt]] = [
        st.builds(ast.InputDecl, IDENTS, e, **DECORATION),
        st.builds(ast.Assign, IDENTS, e, **DECORATION),
        st.builds(ast.Output, st.none() | IDENTS, e, **DECORATION),
        st.builds(ast.ExprStmt, e, **DECORATION),
    ]
    if depth > 0:
        body = bodies(depth - 1)
        options.append(st.builds(ast.Repeat, e, body, **DECORATION))
        options.append(st.builds(ast.Repeat, e, body, var=IDENTS, start=e, **DECORATION))
    return st.one_of(options)


@functools.cache
def bodies(depth: int) -> st.SearchStrategy[ast.Body]:
    stmt_list = st.lists(stmts(depth), max_size=3).map(tuple)
    return st.builds(ast.Body, stmt_list, OPT_COMMENT, COMMENT_LINES)


DOTTED = st.lists(IDENTS, min_size=1, max_size=3).map(tuple)
BLOCK_PARAMS = st.lists(st.builds(ast.BlockParam, IDENTS, st.none() | SMALL_EXPRS), max_size=3)
BLOCK_INPUTS = st.lists(st.builds(ast.BlockInput, IDENTS), max_size=3).map(tuple)
FIELDS = st.lists(st.builds(ast.Field, DOTTED, EXPRS, **DECORATION), max_size=3)
ITEMS: st.SearchStrategy[ast.Item] = st.one_of(
    st.builds(ast.Version, INTS, **DECORATION),
    st.builds(ast.ImportStmt, STRINGS, **DECORATION),
    st.builds(ast.ParamDef, IDENTS, EXPRS, **DECORATION),
    st.builds(ast.BlockDef, IDENTS, BLOCK_PARAMS.map(tuple), bodies(1), BLOCK_INPUTS, **DECORATION),
    st.builds(ast.ModelDef, IDENTS, bodies(1), **DECORATION),
    st.builds(ast.Section, IDENTS, FIELDS.map(tuple), OPT_COMMENT, COMMENT_LINES, **DECORATION),
)
MODULES = st.builds(ast.Module, st.lists(ITEMS, max_size=4).map(tuple), COMMENT_LINES)


@SETTINGS
@given(MODULES)
def test_printed_module_parses_back_to_the_same_ast(module: ast.Module) -> None:
    text = format_module(module)
    assert parse(text) == module, text


@SETTINGS
@given(MODULES)
def test_printed_module_is_canonical(module: ast.Module) -> None:
    text = format_module(module)
    assert format_text(text) == text


@SETTINGS
@given(exprs(4))
def test_printed_expression_parses_back(e: ast.Expr) -> None:
    module = ast.Module((ast.ParamDef("p", e),))
    assert parse(format_module(module)) == module


# Operators only, so that operators often meet operators: parentheses by precedence.
OPERATOR_TREES = st.recursive(
    st.sampled_from([ast.Name("a"), ast.Name("b"), ast.IntLit(1)]),
    lambda sub: st.one_of(
        *(st.builds(ast.BinOp, st.sampled_from(ops.split()), sub, sub) for ops in OPERATORS),
        st.builds(ast.UnaryOp, st.sampled_from(["-", "+", "not"]), sub),
        st.builds(ast.Cond, sub, sub, sub),
        st.lists(sub, min_size=2, max_size=3).map(lambda xs: ast.Chain(tuple(xs))),
    ),
    max_leaves=30,
)


@SETTINGS
@given(OPERATOR_TREES)
def test_printed_operators_parse_back(e: ast.Expr) -> None:
    module = ast.Module((ast.ParamDef("p", e),))
    assert parse(format_module(module)) == module


# Every expression form in every slot: one level of nesting, where precedence bugs show.
_A, _B = ast.Name("a"), ast.Name("b")
_OPS = [op for level in OPERATORS for op in level.split()]
_ONE = ast.Body((ast.ExprStmt(_A),))
CHILDREN: list[ast.Expr] = [
    *(ast.BinOp(op, _A, _B) for op in _OPS),
    *(ast.UnaryOp(op, _A) for op in ("-", "+", "not")),
    ast.Cond(_A, _B, _A),
    ast.Chain((_A, _B)),
    ast.Call(_A, (ast.Arg("k", _B),)),
    ast.Attr(_A, "x"),
    ast.Subscript(_A, (_B,)),
    ast.IntLit(1),
    ast.FloatLit(0.5),
    ast.Quantity(3, "steps"),
    ast.StringLit("s"),
    ast.BoolLit(True),
    ast.NoneLit(),
    ast.ListLit(()),
    ast.Record(()),
    ast.Record((ast.Pair("if", _A),)),
]
EXPR_SLOTS: list[Callable[[ast.Expr], ast.Expr]] = [
    *(lambda x, op=op: ast.BinOp(op, x, _A) for op in _OPS),
    *(lambda x, op=op: ast.BinOp(op, _A, x) for op in _OPS),
    *(lambda x, op=op: ast.UnaryOp(op, x) for op in ("-", "+", "not")),
    lambda x: ast.Cond(x, _A, _A),
    lambda x: ast.Cond(_A, x, _A),
    lambda x: ast.Cond(_A, _A, x),
    lambda x: ast.Chain((x, _A)),
    lambda x: ast.Chain((_A, x)),
    lambda x: ast.Call(x, ()),
    lambda x: ast.Call(_A, (ast.Arg(None, x), ast.Arg("k", x))),
    lambda x: ast.Attr(x, "y"),
    lambda x: ast.Subscript(x, (x,)),
    lambda x: ast.ListLit((x, x)),
    lambda x: ast.Record((ast.Pair("k", x),)),
]
STMT_SLOTS: list[Callable[[ast.Expr], ast.Stmt]] = [
    ast.ExprStmt,
    lambda x: ast.Output(None, x),
    lambda x: ast.Output("o", x),
    lambda x: ast.InputDecl("i", x),
    lambda x: ast.Assign("h", x),
    lambda x: ast.Repeat(x, _ONE),
    lambda x: ast.Repeat(x, _ONE, var="i", start=_A),
    lambda x: ast.Repeat(_A, _ONE, var="i", start=x),
]
ITEM_SLOTS: list[Callable[[ast.Expr], ast.Item]] = [
    lambda x: ast.ParamDef("p", x),
    lambda x: ast.Section("s", (ast.Field(("k", "j"), x),)),
    lambda x: ast.BlockDef("b", (ast.BlockParam("c", x),), _ONE),
    *(lambda x, f=f: ast.ModelDef("m", ast.Body((f(x),))) for f in STMT_SLOTS),
    *(lambda x, f=f: ast.ParamDef("p", f(x)) for f in EXPR_SLOTS),
]


def test_every_expression_in_every_slot_parses_back() -> None:
    wrong = []
    for slot in ITEM_SLOTS:
        for child in CHILDREN:
            module = ast.Module((slot(child),))
            text = format_module(module)
            try:
                same = parse(text) == module and format_text(text) == text
            except SpecError:
                same = False
            if not same:
                wrong.append(text)
    assert not wrong, "".join(wrong)


# ---------------------------------------------------------------- fuzzing text


def check_text(text: str) -> None:
    """`parse` gives a Module or a SpecError; what parses formats to a fixed point, same AST."""
    try:
        module = parse(text)
    except SpecError:
        return
    assert isinstance(module, ast.Module)
    once = format_text(text)
    assert format_text(once) == once
    assert parse(once) == module
    once.encode("utf-8")  # `dnn fmt` writes UTF-8


# Strings with valid escapes only; the grammar's STRING also admits `\x`, which parse refuses.
VALID_STRING = r'"([^"\\\n\x00-\x1f]|\\["\\/bfnrt]|\\u00[0-9a-f]{2})*"'


@functools.cache
def grammar_texts(start: str) -> st.SearchStrategy[str]:
    """Text for the grammar rule `start`, with spaces around tokens so words stay apart."""
    source = resources.files("dnn.grammar").joinpath("dnn.lark").read_text(encoding="utf-8")
    lark = Lark(source, parser="lalr", lexer="basic", start=start)
    terminals, _, _ = lark.grammar.compile([start], ())
    explicit = {
        t.name: st.from_regex(t.pattern.to_regexp(), fullmatch=True)
        for t in terminals
        if not t.name.startswith("__IGNORE") and t.name != "_NL"
    }
    explicit["STRING"] |= st.from_regex(VALID_STRING, fullmatch=True)
    explicit = {name: s.map(lambda tok: f" {tok} ") for name, s in explicit.items()}
    explicit["_LREC"] = st.just("{")
    explicit["_NL"] = st.sampled_from(["\n", "\n\n", "  # note\n", "\n  # c\n", "\r\n"])
    return from_lark(lark, start=start, explicit=explicit)


# Characters and words of the language, so that arbitrary text gets some way into the parser.
PIECES = list('{}()[]=:,.-+*/<!#"\\ \n\t_xy01') + ["model m {", "repeat", "->", " if ", "**"]
ARBITRARY = st.text() | st.lists(st.sampled_from(PIECES)).map("".join)


@st.composite
def damaged_texts(draw: st.DrawFn) -> str:
    """Canonical text of a generated module with a few slices replaced: almost valid text."""
    text = format_module(draw(MODULES))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 6)))
        text = text[:i] + draw(st.sampled_from(["", *PIECES])) + text[j:]
    return text


# from_lark abandons most deep draws (the expression rules branch more than once on average).
@settings(SETTINGS, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.deferred(lambda: grammar_texts("start")))
def test_grammar_text_parses_or_reports(text: str) -> None:
    check_text(text)


@SETTINGS
@given(ARBITRARY)
def test_arbitrary_text_parses_or_reports(text: str) -> None:
    check_text(text)


@SETTINGS
@given(damaged_texts())
def test_damaged_text_parses_or_reports(text: str) -> None:
    check_text(text)


# ---------------------------------------------------------------- fixed snippets

CANONICAL = [
    "param p = a if b else c if d else e\n",
    "param p = (a if b else c) if d else e\n",
    "param p = a if (b if c else d) else e\n",
    "param p = (a if b else c) + 1\n",
    "param p = a -> (b if c else d)\n",
    "param p = (a -> b) -> c\n",
    "model m {\n  input in: f32[8, 8, 3]\n  skip = in if c else conv2d(8, 1)(in) -> batchnorm\n"
    "  output skip\n}\n",
    "param p = 2 ** -1\n",
    "param p = a ** b ** c\n",
    "param p = (a ** b) ** c\n",
    "param p = -a ** b\n",
    "param p = (-a) ** b\n",
    "param p = -(a + b)\n",
    "param p = --a\n",
    "param p = a - (b - c)\n",
    "param p = a * -b\n",
    "param p = (a < b) == c\n",
    "param p = a < (b < c)\n",
    "param p = not a == b\n",
    "param p = (not a) == b\n",
    "param p = not not a\n",
    "param p = a or b and c\n",
    "param p = (a or b) and c\n",
    "param p = (a + b).c\n",
    "param p = f(x)(y).z[0, 1]\n",
    "param p = 5.x\n",
    "param p = 3 steps\n",
    "param p = 1e-4\n",
    "param p = []\n",
    "param p = {}\n",
    "param p = [{}, { a: {} }]\n",
    'data {\n  split = { "train set": 0.8, val: 0.2, "if": 1, "\\"": [] }\n}\n',
    "model m {\n  repeat 3 { conv(8) }\n  repeat i in 0..4 {\n    x = i\n\n    y = x\n  }\n}\n",
    "model m {\n  x = 1\n\n  # about y\n  y = 2  # two\n  # end of body\n}\n",
    "model m {  # opening\n}\n\n# end of file\n",
    "param a = 1\nparam b = 2\n\nparam c = 3\n",
    "train {\n  optimizer.lr = 1e-3\n  # end of section\n}\n",
    "model m {\n  repeat 2 {\n    repeat 3 { x }\n  }\n  output logits = dense(10)\n}\n",
    "model m {\n  dense(4, use_bias = false, init = he_normal)\n}\n",
    "block conv_bn(c, k = 3) {\n  conv2d(c, k) -> batchnorm\n}\n",
]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_snippet_is_unchanged(text: str) -> None:
    assert_fmt_identity(text)


NOT_CANONICAL = [
    ("model m {\n  x = f(\n    1,\n    2,\n  )\n}\n", "model m {\n  x = f(1, 2)\n}\n"),
    (
        "param p = g(a = [\n  1,\n  2\n], b = {\n  k: 1\n})\n",
        "param p = g(a = [1, 2], b = { k: 1 })\n",
    ),
    ("param p = ((a))\n", "param p = a\n"),
    ("param p = 0.0001\n", "param p = 1e-4\n"),
    ("param p = f(a = 1, 2)\n", "param p = f(2, a = 1)\n"),
    ("param p = 1 +\\\n  2\n", "param p = 1 + 2\n"),
    ("param p = 1_000.5 step\n", "param p = 1000.5 steps\n"),
    (
        "model m {\r\n  x = 1  # c\r\n\r\n  y = 2\r\n}\r\n",
        "model m {\n  x = 1  # c\n\n  y = 2\n}\n",
    ),
    ("model m {\n  repeat 3 {\n    x\n  }\n}\n", "model m {\n  repeat 3 { x }\n}\n"),
    (
        "model m {\n  dense(4, init = he_normal, use_bias = false)\n}\n",
        "model m {\n  dense(4, use_bias = false, init = he_normal)\n}\n",
    ),
    (
        "block b(c, k = 3) {\n}\nmodel m {\n  b(k = 1, c = 2)\n}\n",
        "block b(c, k = 3) {\n}\n\nmodel m {\n  b(c = 2, k = 1)\n}\n",
    ),
]


@pytest.mark.parametrize(("text", "expected"), NOT_CANONICAL)
def test_snippet_formats_to_canonical(text: str, expected: str) -> None:
    assert format_text(text) == expected


def test_nested_comparison_is_parenthesized() -> None:
    a, b, c = ast.Name("a"), ast.Name("b"), ast.Name("c")
    left = ast.Module((ast.ParamDef("p", ast.BinOp("<", ast.BinOp("<", a, b), c)),))
    right = ast.Module((ast.ParamDef("p", ast.BinOp("<", a, ast.BinOp("<", b, c))),))
    assert format_module(left) == "param p = (a < b) < c\n"
    assert format_module(right) == "param p = a < (b < c)\n"
    with pytest.raises(SpecError):
        parse("param p = a < b < c\n")


# ---------------------------------------------------------------- bugs these tests found

RECORDS_AFTER_OPERATORS = [
    "data {\n  split = { a: 1 } if c else { b: 2 }\n}\n",
    "param p = a -> {}\n",
    "param p = not {}\n",
    "param p = -{}\n",
    "param p = a + {}\n",
    "param p = a == {}\n",
    "model m {\n  output {}\n}\n",
    "model m {\n  {}.x\n}\n",
    "model m {\n  repeat {} { x }\n  repeat i in {}..3 { x }\n}\n",
]


@pytest.mark.parametrize("text", RECORDS_AFTER_OPERATORS)
def test_record_after_operator_or_keyword(text: str) -> None:
    """The postlexer once took every `{` after an operator or a keyword for a block brace."""
    assert_fmt_identity(text)


def test_comment_after_one_line_repeat_stays_with_the_repeat() -> None:
    """It once went to the statement inside the braces, and the repeat no longer fit one line."""
    inner = ast.Body((ast.ExprStmt(ast.Name("x")),))
    model = ast.ModelDef("m", ast.Body((ast.Repeat(ast.IntLit(3), inner, trailing="# c"),)))
    module = ast.Module((model,))
    assert format_module(module) == "model m {\n  repeat 3 { x }  # c\n}\n"
    assert parse(format_module(module)) == module


OTHER_LINE_BREAKS = [
    "# a\rb\nparam a = 1\n\nparam b = 2\nparam c = 3\n",
    "# a\x0cb\nparam a = 1\n\nparam b = 2\nparam c = 3\n",
    'param a = "\x85"\n\nparam b = 2\nparam c = 3\n',
    'param a = "\u2028"\n\nparam b = 2\nparam c = 3\n',
    'model m {\n  x = "\u2029"\n\n  y = 1\n  z = 2\n}\n',
]


@pytest.mark.parametrize("text", OTHER_LINE_BREAKS)
def test_blank_lines_after_other_line_breaks(text: str) -> None:
    """Blank lines were once found with `str.splitlines`, which breaks lines where Lark does not."""
    assert_fmt_identity(text)


UNWRITABLE = [
    pytest.param("param p = 1e999\n", id="float-overflow"),
    pytest.param("param p = 1e999 steps\n", id="quantity-overflow"),
    pytest.param("param p = 1" + "0" * 5000 + "\n", id="5001-digit-int"),
    pytest.param("dnn " + "9" * 5000 + "\n", id="5000-digit-version"),
    pytest.param('param p = "\\ud800"\n', id="lone-surrogate"),
]


@pytest.mark.parametrize("text", UNWRITABLE)
def test_value_that_cannot_be_printed_back_is_a_diagnostic(text: str) -> None:
    """`1e999` once became the name `inf`; `\\ud800` could not be written as UTF-8."""
    with pytest.raises(SpecError):
        parse(text)
