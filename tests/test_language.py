"""Language features found by writing architectures (issue 15, point 5): list indexing and
`len`, `repeat 0`, blocks of several tensors, names bound to block outputs.

Each diagnostic is checked whole, as the user sees it: `path:line:col`, code, message, the
source line, the caret and the hint.
"""

from __future__ import annotations

import pytest
from conftest import assert_fmt_identity, assert_summary
from dnn.compiler.diagnostics import SpecError, render
from dnn.compiler.driver import loads


def rendered(src: str) -> list[str]:
    """The one diagnostic `src` fails with, rendered as `dnn check` prints it."""
    with pytest.raises(SpecError) as info:
        loads(src, "spec.dnn")
    (d,) = info.value.diagnostics
    return render(d, info.value.sources).splitlines()


def model(*lines: str, head: str = "") -> str:
    body = "".join(f"  {line}\n" for line in lines)
    return f"dnn 1\n\n{head}model m {{\n  input x: f32[8]\n{body}}}\n"


# ---------------------------------------------------------------- lists: indexing and `len`


def test_list_index_and_len() -> None:
    src = model(
        "repeat i in 0..len(widths) { dense(widths[i]) }",
        "dense(widths[-1] + len(x.shape))",
        head="param widths = [16, 32, 64]\n\n",
    )
    assert_summary(src, params=144 + 544 + 2112 + 4225, shapes=[(16,), (32,), (64,), (65,)])


def test_list_index_out_of_range_names_the_length() -> None:
    src = model("dense(widths[3])", head="param widths = [16, 32, 64]\n\n")
    assert rendered(src) == [
        "spec.dnn:7:16: error[E0306]: index 3 is out of range for a list of length 3",
        "7 |   dense(widths[3])",
        "  |                ^",
        "  hint: valid indices are 0 to 2, or -3 to -1 from the end",
    ]


def test_negative_index_past_the_start() -> None:
    src = model("dense(widths[-4])", head="param widths = [16, 32, 64]\n\n")
    assert rendered(src)[0] == (
        "spec.dnn:7:16: error[E0306]: index -4 is out of range for a list of length 3"
    )


def test_list_index_must_be_an_int() -> None:
    src = model("dense(widths[1.5])", head="param widths = [16, 32, 64]\n\n")
    assert rendered(src) == [
        "spec.dnn:7:16: error[E0305]: a list index must be an int, got `1.5`",
        "7 |   dense(widths[1.5])",
        "  |                ^^^",
    ]


def test_len_of_a_tensor() -> None:
    assert rendered(model("dense(len(x))")) == [
        "spec.dnn:5:13: error[E0305]: `len` takes a list, got a tensor",
        "5 |   dense(len(x))",
        "  |             ^",
        "  hint: a tensor's length is a shape property: `x.rank`, `x.shape[0]`",
    ]


def test_len_takes_one_list() -> None:
    src = model("dense(len(widths, widths))", head="param widths = [16]\n\n")
    assert rendered(src) == [
        "spec.dnn:7:9: error[E0305]: `len` takes one list, got 2 arguments",
        "7 |   dense(len(widths, widths))",
        "  |         ^^^^^^^^^^^^^^^^^^^",
    ]


def test_list_index_formats_to_itself() -> None:
    assert_fmt_identity(model("repeat i in 0..len(depths) { dense(depths[i]) }"))


# ---------------------------------------------------------------- `repeat 0`


def test_repeat_zero_passes_the_value_through() -> None:
    src = model("repeat extra { dense(8) }", "dense(2)", head="param extra = 0\n\n")
    assert_summary(src, params=18, shapes=[(2,)])


def test_empty_range_passes_the_value_through() -> None:
    assert_summary(model("repeat i in 2..2 { dense(8) }", "dense(2)"), params=18)


def test_repeat_negative_count() -> None:
    src = model("repeat extra { dense(8) }", head="param extra = -1\n\n")
    assert rendered(src) == [
        "spec.dnn:7:10: error[E0306]: `repeat` count must be 0 or more, got -1",
        "7 |   repeat extra { dense(8) }",
        "  |          ^^^^^",
        "  hint: `repeat 0 { ... }` skips the body; a negative count has no meaning",
    ]


def test_repeat_backward_range() -> None:
    assert rendered(model("repeat i in 3..1 { dense(8) }")) == [
        "spec.dnn:5:18: error[E0306]: `repeat` range 3..1 runs backwards",
        "5 |   repeat i in 3..1 { dense(8) }",
        "  |                  ^",
        "  hint: write the smaller bound first; `3..3` is empty and skips the body",
    ]
