"""Language features found by writing architectures (issue 15, point 5): list indexing and
`len`, `repeat 0`, blocks of several tensors, names bound to block outputs.

Each diagnostic is checked whole, as the user sees it: `path:line:col`, code, message, the
source line, the caret and the hint.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_fmt_identity, assert_summary
from dnn.compiler.diagnostics import SpecError, render
from dnn.compiler.diff import diff, render_text
from dnn.compiler.driver import load, loads
from dnn.compiler.graph import describe

UNET = Path(__file__).parent.parent / "examples" / "unet_digits.dnn"


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


# ---------------------------------------------------------------- blocks of several tensors

UP = (
    "block up(c)(deep, skip) {\n"
    "  h = upsample(2)(deep)\n"
    "  concat(h, skip)\n"
    "  conv2d(c, kernel = 3, padding = same)\n"
    "}\n"
    "\n"
)


def unet(*lines: str) -> str:
    body = "".join(f"  {line}\n" for line in lines)
    return f"dnn 1\n\n{UP}model m {{\n  input x: f32[8, 8, 1]\n{body}}}\n"


def test_block_of_two_tensors() -> None:
    src = unet("d = conv2d(4, kernel = 3, padding = same)", "b = maxpool(2)", "up(8)(b, d)")
    program = loads(src, "spec.dnn")
    g = program.model
    assert g.node("up/concat").inputs == ("up/h", "d")
    assert g.node("up/h").inputs == ("b",)
    assert g.node(g.outputs[0]).shape == (8, 8, 8)
    # the tensors may also follow the arguments in one call, as for layers
    assert loads(src.replace("up(8)(b, d)", "up(8, b, d)"), "spec.dnn").model == g


def test_block_of_two_tensors_formats_to_itself() -> None:
    assert_fmt_identity(
        unet("d = conv2d(4, kernel = 3, padding = same)", "up(8)(maxpool(2)(d), d)")
    )
    assert_fmt_identity("dnn 1\n\nblock b()(x) {\n  dense(2)(x)\n}\n")


def test_block_given_too_few_tensors() -> None:
    assert rendered(unet("d = maxpool(2)", "up(8)(d)")) == [
        "spec.dnn:12:3: error[E0307]: block `up` takes 2 tensors (`deep`, `skip`), got 1",
        "12 |   up(8)(d)",
        "   |   ^^^^^^^^",
        "  hint: pass them in order: `up(...)(deep, skip)`",
    ]


def test_block_of_two_tensors_cannot_be_chained() -> None:
    assert rendered(unet("d = maxpool(2)", "d -> up(8)")) == [
        "spec.dnn:12:8: error[E0307]: block `up` takes 2 tensors (`deep`, `skip`), got 1",
        "12 |   d -> up(8)",
        "   |        ^^^^^",
        "  hint: pass them in order: `up(...)(deep, skip)`",
    ]


def test_block_of_one_tensor_given_two() -> None:
    src = "dnn 1\n\nblock b(c) {\n  dense(c)\n}\n\nmodel m {\n  input x: f32[8]\n  b(4)(x, x)\n}\n"
    assert rendered(src) == [
        "spec.dnn:9:3: error[E0307]: block `b` takes 1 tensor, got 2",
        "9 |   b(4)(x, x)",
        "  |   ^^^^^^^^^^",
        "  hint: merge them first, e.g. `concat(a, b)`, or name the block's inputs: "
        "`block b(...)(a, b)`",
    ]


def test_in_is_undefined_in_a_block_that_names_its_inputs() -> None:
    src = unet("d = maxpool(2)", "up(8)(d, x)").replace("upsample(2)(deep)", "upsample(2)(in)")
    assert rendered(src) == [
        "spec.dnn:4:19: error[E0201]: block `up` names its inputs, so `in` is not defined",
        "4 |   h = upsample(2)(in)",
        "  |                   ^^",
        "  hint: use one of `deep`, `skip`",
    ]


def test_block_input_named_twice() -> None:
    src = "dnn 1\n\nblock b(c)(x, c) {\n  dense(c)(x)\n}\n"
    assert rendered(src) == [
        "spec.dnn:3:15: error[E0206]: `c` is already a name in block `b`",
        "3 | block b(c)(x, c) {",
        "  |               ^",
        "  hint: give each argument and input its own name",
    ]


def test_unet_example_in_diff_and_graph() -> None:
    before = load(str(UNET))
    src = UNET.read_text().replace("u2 = up(32)(bottom, d2)", "u2 = up(48)(bottom, d2)")
    d = diff(before, loads(src, str(UNET)))
    assert [(x.status, x.path) for x in d.layers][:2] == [
        ("changed", "u2/double_conv/conv2d"),
        ("shape", "u2/double_conv/batchnorm"),
    ]
    assert "params  119,098 → 146,874 (+27,776)" in render_text(d)
    g = describe(before.model)
    concat = next(b for b in g.boxes if b.name == "u2/concat")
    sources = {g.boxes[int(a[1:])].name for a, b in g.edges if b == concat.id}
    assert sources == {"u2/h", "d2/relu_1"}  # the skip enters the block's cluster


# ---------------------------------------------------------------- names bound to block outputs

PAIR = "block pair(c) {\n  dense(c) -> relu\n  dense(c)\n}\n\n"


def names(src: str) -> list[str]:
    return [n.name for n in loads(src, "spec.dnn").model.nodes]


def test_a_bound_block_instance_takes_the_name() -> None:
    src = model("enc = pair(4)", "pair(2)", "head = dense(1)", head=PAIR)
    assert names(src) == [
        "x",
        "enc/dense",
        "enc/relu",
        "enc/dense_1",
        "pair/dense",
        "pair/relu",
        "pair/dense_1",
        "head",
    ]


def test_the_binding_goes_to_the_block_that_makes_the_value() -> None:
    # the last link of a chain, whichever branch a condition takes; not a block in an argument
    src = model("a = dense(4) -> pair(4)", "b = pair(3) if true else pair(5)", head=PAIR)
    assert names(src)[1:3] == ["dense", "a/dense"] and names(src)[-1] == "b/dense_1"
    src = model("s = add(pair(8)(x), x)", head=PAIR)
    assert names(src) == ["x", "pair/dense", "pair/relu", "pair/dense_1", "s"]


def test_bound_names_in_summary_and_graph() -> None:
    program = loads(model("enc = pair(4)", "dense(1)", head=PAIR), "spec.dnn")
    assert [r.name for r in program.summary().layers][1:4] == [
        "enc/dense",
        "enc/relu",
        "enc/dense_1",
    ]
    (cluster,) = describe(program.model).clusters
    assert cluster.label == "enc = pair · 56 params"


def test_bound_names_in_a_replicated_repeat() -> None:
    # the repeat's later iterations are copies of the first, named as elaboration names them
    src = model("repeat 3 { h = pair(8) }", head=PAIR)
    program = loads(src, "spec.dnn")
    assert [n.name for n in program.model.nodes][-3:] == ["h_2/dense", "h_2/relu", "h_2/dense_1"]
    assert dict(program.model.blocks)["h_2"] == "pair"
    assert [c.label for c in describe(program.model).clusters] == [
        f"{h} = pair · 144 params" for h in ("h", "h_1", "h_2")
    ]


def test_a_name_clash_numbers_the_instance() -> None:
    src = model("h = dense(4)", "h = pair(2)", head=PAIR)
    assert names(src) == ["x", "h", "h_1/dense", "h_1/relu", "h_1/dense_1"]
