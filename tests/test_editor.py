"""compiler/editor.py: the editor's queries as pure functions, and the check's time bound."""

from __future__ import annotations

import dataclasses
import random
import sys
import time
from pathlib import Path

import pytest
from dnn.compiler import editor
from dnn.compiler.diagnostics import SpecError
from dnn.compiler.parse import parse
from dnn.compiler.reparse import reparse
from dnn.runtime.cli import main

import dnn

ROOT = Path(__file__).resolve().parent.parent
NET = """dnn 1

block res(c) {
  h = dense(c)(in) -> relu
  output add(in, h)
}

model m {
  input x: f32[8]
  repeat 3 { res(8) }  # three copies
  dense(2)
}
"""


def test_a_deadline_stops_a_huge_repeat_at_its_count() -> None:
    text = "dnn 1\nmodel m {\n  input x: f32[4]\n  repeat i in 0..99999 { dense(4 + i % 2) }\n}\n"
    editor.analyze(NET, "n.dnn")  # the parser's tables load once: not part of the bound
    started = time.monotonic()
    a = editor.analyze(text, "a.dnn", deadline=time.monotonic() + 0.5)
    assert time.monotonic() - started < 3.0  # 5 s without the bound
    (d,) = a.diagnostics
    assert (d.code, d.span.line, d.span.col) == ("E0608", 4, 18)
    assert d.message == "checking stopped at `repeat 99,999`: it ran past the editor's time limit"
    assert a.module is not None and a.program is not None and a.program.model is None


def test_a_repeat_that_builds_nothing_is_bounded_too() -> None:
    text = "dnn 1\nmodel m {\n  input x: f32[4]\n  repeat 100000000 { h = in }\n  dense(2)\n}\n"
    a = editor.analyze(text, "a.dnn", deadline=time.monotonic() + 0.5)
    assert [d.code for d in a.diagnostics] == ["E0608"]


def test_a_replicated_repeat_that_builds_nothing_is_not_copied_n_times() -> None:
    text = "dnn 1\nmodel m {\n  input x: f32[4]\n  dense(4)\n  repeat 100000000 { in }\n}\n"
    started = time.monotonic()
    assert [n.name for n in dnn.loads(text).model.nodes] == ["x", "dense"]
    assert time.monotonic() - started < 2.0  # minutes before: 10**8 empty copies


def test_without_a_deadline_check_is_unchanged() -> None:
    assert dnn.loads(NET).model.params == 3 * 72 + 18


def test_a_repeat_line_shows_every_copy_and_the_last_shape() -> None:
    a = editor.analyze(NET, "n.dnn")
    nodes = editor.line_nodes(a.program, "n.dnn", 10)
    assert [n.name for n in nodes][:3] == ["res/dense", "res/h", "res/add"]
    assert len(nodes) == 9 and sum(n.params for n in nodes) == 216
    hints = editor.inlay_hints(a.program, "n.dnn")
    assert [(h.line, h.col, h.label) for h in hints] == [(10, 20, "→ (8,)"), (11, 11, "→ (2,)")]
    # a line of a block's body: the layers it builds in each instance
    body_line = editor.line_nodes(a.program, "n.dnn", 4)
    assert [n.name for n in body_line][:3] == ["res/dense", "res/h", "res_1/dense"]


def test_words_in_comments_and_strings_are_not_words() -> None:
    assert editor.word_at(NET, 10, 27) is None  # `three`, in a comment
    assert editor.word_at('source = builtin("digits")', 1, 20) is None
    assert editor.word_at(NET, 10, 15)[0] == "res"


def test_hover_and_completion_answer_from_the_last_parse() -> None:
    good = editor.analyze(NET, "n.dnn")
    broken = NET.replace("  dense(2)\n", "  dense(2, \n")
    now = editor.analyze(broken, "n.dnn")
    assert now.module is None
    assert "block res(c)" in editor.hover(now, good, 10, 15)
    assert "**output** `(8,)`" in editor.hover(now, good, 10, 15)
    labels = [c.label for c in editor.completions(now, good, 11, 13)]
    assert labels[:2] == ["units", "tie"]
    labels = [c.label for c in editor.completions(now, good, 12, 3)]
    assert "res" in labels and "dense" in labels


def test_call_context_reads_half_typed_calls() -> None:
    call = editor.enclosing_call("  conv2d(8, kernel = 3, init = he", 1, 34)
    assert call == editor.CallContext("conv2d", ("kernel", "init"), "init")
    assert editor.enclosing_call("  dense(8)\n  rel", 2, 6) is None
    # a call left open above: the cursor's line, indented as that line, is a new statement
    assert editor.enclosing_call("  conv2d(8,\n  rel", 2, 6) is None
    assert editor.enclosing_call("  conv2d(8,\n      kern", 2, 11).name == "conv2d"


def test_dnn_lsp_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pygls", None)
    monkeypatch.setitem(sys.modules, "lsprotocol", None)
    monkeypatch.delitem(sys.modules, "dnn.runtime.lsp", raising=False)
    import dnn.runtime

    # an earlier test in this process may have imported it: `from dnn.runtime import lsp`
    # would find the package's attribute without importing again
    monkeypatch.delattr(dnn.runtime, "lsp", raising=False)
    assert main(["lsp"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: `dnn lsp` needs the `lsp` extra") and "dnn[lsp]" in err
    assert "Traceback" not in err


def _same(a: object, b: object) -> bool:
    """Equal, spans, comments and blank-line hints included (`==` leaves spans out)."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            _same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _one_line_edits(text: str, rng: random.Random, n: int) -> list[str]:
    lines = text.split("\n")
    out = []
    for _ in range(n):
        i = rng.randrange(len(lines))
        src = lines[i]
        k = rng.randrange(len(src) + 1)
        piece = rng.choice(["", "8", ", use_bias = false", "relu", " -> relu", "(", ")", "#x", "{"])
        new = list(lines)
        new[i] = src[:k] + piece + src[k + rng.randrange(4) :]
        out.append("\n".join(new))
    return out


@pytest.mark.parametrize("example", ["digits_cnn", "resnet_small", "unet_digits", "zoo/gpt2"])
def test_reparsing_one_line_equals_parsing_the_file(example: str) -> None:
    path = str(ROOT / "examples" / f"{example}.dnn")
    text = (ROOT / "examples" / f"{example}.dnn").read_text()
    previous = parse(text, path)
    reparsed = 0
    for new in _one_line_edits(text, random.Random(example), 150):
        module = reparse(previous, text, new)
        try:
            full = parse(new, path)
        except SpecError:
            assert module is None, new
            continue
        if module is not None:
            reparsed += 1
            assert _same(module, full), new
    assert reparsed >= 3


def _blank_line_edits(text: str, rng: random.Random, n: int) -> list[str]:
    """Enter and Backspace: a blank line inserted anywhere, or a blank line deleted."""
    lines = text.split("\n")
    out = []
    for _ in range(n):
        new = list(lines)
        blanks = [k for k, s in enumerate(lines) if not s.strip()]
        if blanks and rng.random() < 0.3:
            del new[rng.choice(blanks)]
        else:
            new.insert(rng.randrange(len(lines) + 1), rng.choice(["", "  ", "    "]))
        out.append("\n".join(new))
    return out


@pytest.mark.parametrize("example", ["digits_cnn", "resnet_small", "zoo/unet", "deep"])
def test_a_blank_line_in_or_out_equals_parsing_the_file(example: str) -> None:
    if example == "deep":
        sys.path.insert(0, str(ROOT / "bench"))
        from check_speed import deep_spec

        text, path = deep_spec(60), "deep.dnn"
    else:
        path = str(ROOT / "examples" / f"{example}.dnn")
        text = (ROOT / "examples" / f"{example}.dnn").read_text()
    previous = parse(text, path)
    shifted = 0
    for new in _blank_line_edits(text, random.Random(example), 60):
        module = reparse(previous, text, new)
        full = parse(new, path)
        if module is not None:
            shifted += 1
            assert _same(module, full), new
    assert shifted >= 5


@pytest.mark.parametrize("example", ["digits_cnn", "resnet_small", "unet_digits"])
def test_typing_on_a_new_line_equals_parsing_the_file(example: str) -> None:
    path = str(ROOT / "examples" / f"{example}.dnn")
    lines = (ROOT / "examples" / f"{example}.dnn").read_text().split("\n")
    rng = random.Random(example)
    typed = 0
    for _ in range(80):
        k = rng.randrange(1, len(lines))
        before = "\n".join([*lines[:k], "  ", *lines[k:]])
        line = rng.choice(["  relu", "  dense(3)  # c", "  x = dense(2)(in)", "  dense(", "  #"])
        after = "\n".join([*lines[:k], line, *lines[k:]])
        try:
            previous = parse(before, path)
        except SpecError:
            continue
        module = reparse(previous, before, after)
        try:
            full = parse(after, path)
        except SpecError:
            assert module is None, after
            continue
        if module is not None:
            typed += 1
            assert _same(module, full), after
    assert typed >= 5
