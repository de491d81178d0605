"""compiler/reparse.py: a range of a body's lines replaced (a paste, a deleted statement line)
gives the module a full parse gives, spans, comments and blank-line hints included."""

from __future__ import annotations

import dataclasses
import random
import sys
from functools import cache
from pathlib import Path

import pytest
from dnn.compiler import ast
from dnn.compiler.diagnostics import SpecError
from dnn.compiler.parse import parse
from dnn.compiler.reparse import reparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
NET = """dnn 1

block res(c) {
  h = dense(c)(in) -> relu
  output add(in, h)
}

model m {
  input x: f32[8]
  # the stem
  dense(8) -> relu

  dense(8)  # trailing
  # two lines about
  # the next one
  relu
  dense(
    4)
  dense(2)
  # at the end
}

train {
  epochs = 1
}
"""


def _same(a: object, b: object) -> bool:
    """Equal, spans, comments and blank-line hints included (`==` leaves spans out)."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            _same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _edit(text: str, at: int, cut: int, pasted: list[str]) -> str:
    """`text` with `cut` lines from line `at` (1-based) replaced by `pasted`."""
    lines = text.split("\n")
    return "\n".join([*lines[: at - 1], *pasted, *lines[at - 1 + cut :]])


def _assert_spliced(text: str, new: str) -> None:
    module = reparse(parse(text, "net.dnn"), text, new)
    assert module is not None, new
    assert _same(module, parse(new, "net.dnn")), new


@pytest.mark.parametrize(
    ("at", "cut", "pasted"),
    [
        (11, 1, []),  # delete `dense(8) -> relu`: the stem comment goes to the next one
        (13, 1, []),  # delete a line with a trailing comment
        (16, 1, []),  # delete `relu`: its two comment lines go to `dense(`
        (19, 1, []),  # delete the last statement: the comment after it stays the body's
        (17, 2, []),  # cut a statement of two lines
        (16, 0, ["  dense(3)", "  relu"]),  # paste between the comments and their statement
        (12, 0, ["  dense(3)", "", "  # pasted", "  h2 = relu(x)  # t"]),  # a paste with comments
        (11, 3, ["  dense(5)"]),  # three lines (one blank) replaced by one
        (9, 1, ["  input y: f32[4]", "  input z: f32[4]"]),  # the first statement by two
        (21, 0, ["  dense(1)"]),  # pasted after the end comment: it takes that comment
        (9, 0, ["", "  relu"]),  # right after the `{`
        (4, 2, ["  output relu(in)"]),  # in a block
        (19, 0, ["  dense(", "    3, use_bias = false)"]),  # a pasted statement of two lines
        (10, 10, []),  # all but the input: the body keeps its `input`
    ],
)
def test_a_range_of_statement_lines_replaced_equals_parsing_the_file(
    at: int, cut: int, pasted: list[str]
) -> None:
    _assert_spliced(NET, _edit(NET, at, cut, pasted))


@pytest.mark.parametrize(
    ("at", "cut", "pasted"),
    [
        (13, 1, ["  repeat 2 { relu }"]),  # a brace
        (24, 1, ["  epochs = 2", "  batch = 3"]),  # a section
        (19, 3, ["  relu"]),  # crosses the body's `}`
        (5, 4, []),  # from one item into the next
        (18, 1, ["  relu"]),  # cuts `dense(` ... `4)` in two
        (13, 1, ["  dense(", "  relu"]),  # does not parse alone
        (2, 0, ["param p = 2"]),  # outside any body
    ],
)
def test_what_does_not_fit_is_left_to_a_full_parse(at: int, cut: int, pasted: list[str]) -> None:
    assert reparse(parse(NET, "net.dnn"), NET, _edit(NET, at, cut, pasted)) is None


def test_an_unchanged_text_keeps_its_module() -> None:
    module = parse(NET, "net.dnn")
    assert reparse(module, NET, NET) is module


# ------------------------------------------------------------------ random edits of the examples

EXAMPLES = ("digits_cnn", "resnet_small", "unet_digits", "zoo/gpt2", "zoo/unet", "deep")


@cache
def _example(name: str) -> tuple[str, str, ast.Module]:
    """(path, text, module) of an example, or of bench/check_speed.py's deep spec."""
    if name == "deep":
        sys.path.insert(0, str(ROOT / "bench"))
        from check_speed import deep_spec

        text, path = deep_spec(60), "deep.dnn"
    else:
        path = str(ROOT / "examples" / f"{name}.dnn")
        text = Path(path).read_text()
    return path, text, parse(text, path)


def _check(name: str, at: int, cut: int, pasted: list[str]) -> bool:
    """Whether the edit was spliced; fails when a splice differs from the full parse."""
    path, text, module = _example(name)
    new = _edit(text, at, cut, pasted)
    got = reparse(module, text, new)
    try:
        full = parse(new, path)
    except SpecError:
        assert got is None, new
        return False
    assert got is None or _same(got, full), new
    return got is not None


def _body_lines(module: ast.Module) -> list[tuple[int, int]]:
    """(first, last) inner line of each model's and block's body."""
    return [
        (x.body.span.line + 1, x.body.span.end_line - 1)
        for x in module.items
        if isinstance(x, ast.ModelDef | ast.BlockDef)
    ]


@pytest.mark.parametrize("name", EXAMPLES)
def test_pastes_and_deletions_in_a_body_equal_parsing_the_file(name: str) -> None:
    """Seeded edits inside a body, pasted lines taken from that body: most are spliced."""
    _, text, module = _example(name)
    lines = text.split("\n")
    rng = random.Random(name)
    spliced = 0
    for _ in range(25):
        first, last = rng.choice(_body_lines(module))
        at = rng.randint(first, last + 1)
        cut = min(rng.choice([0, 1, 1, 2, 3]), last + 1 - at)
        pasted = [rng.choice(lines[first - 1 : last]) for _ in range(rng.choice([0, 1, 2, 4]))]
        spliced += _check(name, at, cut, pasted)
    assert spliced >= 18


PIECES = [
    "",
    "  ",
    "  relu",
    "  # c",
    "  dense(3)  # t",
    "  x = dense(2)(in)",
    "  dense(",
    "    4)",
]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(EXAMPLES))
def test_any_range_of_lines_replaced_is_spliced_right_or_left_to_a_full_parse(
    data: st.DataObject, name: str
) -> None:
    """Anywhere in the file, any lines: a splice equals the full parse (or there is none)."""
    _, text, _ = _example(name)
    lines = text.split("\n")
    at = data.draw(st.integers(1, len(lines) + 1))
    cut = data.draw(st.integers(0, min(4, len(lines) + 1 - at)))
    line = st.one_of(st.sampled_from(lines), st.sampled_from(PIECES), st.just("  }"))
    _check(name, at, cut, data.draw(st.lists(line, max_size=4)))
