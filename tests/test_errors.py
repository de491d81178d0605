"""Error fixtures: one mistake per file in tests/errors/, whose first line states the diagnostic.

A fixture's first line reads

    # expect: LINE:COL CODE message text | hint: hint text

(the `| hint: ...` part is optional). The spec must fail with a `SpecError`, and one of its
diagnostics must point at LINE:COL with CODE, contain the message text in its message and the
hint text in its hint. Files named `todo_*.dnn` state the behaviour we want but do not have yet:
they are strict xfails, so fixing the compiler turns them into failures until renamed. Files in
tests/errors/support/ are imported by fixtures and are not fixtures themselves.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from dnn.compiler.diagnostics import Diagnostic, Span, SpecError, render
from dnn.compiler.driver import load, loads
from test_cli import dnn as dnn_cli

ROOT = Path(__file__).parent.parent
ERRORS = Path(__file__).parent / "errors"
FIXTURES = sorted(ERRORS.glob("*.dnn"))
KNOWN_GOOD = [p for p in FIXTURES if not p.name.startswith("todo_")]
EXPECT = re.compile(r"# expect: (\d+):(\d+) ([EW]\d{4}) (.+)")
TODO = pytest.mark.xfail(strict=True, reason="known gap, see file")


@dataclass(frozen=True)
class Expect:
    """What a fixture's first line says must happen."""

    line: int
    col: int
    code: str
    message: str
    hint: str | None

    def matches(self, d: Diagnostic) -> bool:
        return (
            (d.span.line, d.span.col, d.code) == (self.line, self.col, self.code)
            and self.message in d.message
            and (self.hint is None or self.hint in (d.hint or ""))
        )


def read_expect(path: Path) -> Expect:
    """Parse the `# expect:` first line of a fixture."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    m = EXPECT.fullmatch(first)
    assert m, f"{path.name}: first line must be `# expect: LINE:COL CODE message`, got {first!r}"
    message, _, hint = m[4].partition(" | hint: ")
    return Expect(int(m[1]), int(m[2]), m[3], message, hint or None)


def shown(ds: tuple[Diagnostic, ...]) -> str:
    return "\n".join(
        f"{d.span.line}:{d.span.col} {d.code} {d.message} | hint: {d.hint}" for d in ds
    )


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, id=p.stem, marks=[TODO] if p.name.startswith("todo_") else [])
        for p in FIXTURES
    ],
)
def test_fixture(path: Path) -> None:
    expect = read_expect(path)
    with pytest.raises(SpecError) as info:
        load(str(path))
    found = info.value.diagnostics
    assert any(expect.matches(d) for d in found), f"expected {expect}\ngot:\n{shown(found)}"


def test_every_fixture_states_its_expectation() -> None:
    for path in FIXTURES:  # checked here too, so a malformed todo_ line is not hidden by xfail
        read_expect(path)


def test_at_least_40_fixtures() -> None:
    assert len(FIXTURES) >= 40, len(FIXTURES)
    assert not any(p.parent.name == "support" for p in FIXTURES)


def test_render_is_compiler_style() -> None:
    src = "dnn 1\nmodel m {\n  input x: f32[8]\n  dense(unit = 4)\n}\n"
    hint = "did you mean `units`?"
    d = Diagnostic("E0301", "unknown argument `unit` for `dense`", Span("s.dnn", 4, 9, 4, 13), hint)
    assert render(d, {"s.dnn": src}).splitlines() == [
        "s.dnn:4:9: error[E0301]: unknown argument `unit` for `dense`",
        "4 |   dense(unit = 4)",
        "  |         ^^^^",
        "  hint: did you mean `units`?",
    ]


def test_render_of_a_loaded_fixture() -> None:
    path = str(ERRORS / "unknown_layer.dnn")
    with pytest.raises(SpecError) as info:
        load(path)
    (d,) = info.value.diagnostics
    first, source, caret, *rest = render(d, info.value.sources).splitlines()
    assert first == f"{path}:6:3: error[E0202]: unknown layer `dropot`"
    assert source == "6 |   dropot(0.5)"
    assert caret.startswith("  |   ^^^^^^") and set(caret[6:]) == {"^"}
    assert rest == ["  hint: did you mean `dropout`?"]


def test_check_exits_1_without_traceback() -> None:
    path = str(ERRORS / "unknown_layer.dnn")
    r = dnn_cli("check", path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert f"{path}:6:3: error[E0202]: unknown layer `dropot`" in r.stderr


def test_check_all_known_good_fixtures_without_traceback() -> None:
    r = dnn_cli("check", *map(str, KNOWN_GOOD))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-3000:]


def test_check_json() -> None:
    path = str(ERRORS / "unknown_layer.dnn")
    r = dnn_cli("check", "--format", "json", path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    (d,) = json.loads(r.stdout)["diagnostics"]
    assert {"file", "line", "col", "severity", "message", "hint"} <= d.keys()
    assert (d["file"], d["line"], d["col"], d["severity"]) == (path, 6, 3, "error")
    assert d["message"] == "unknown layer `dropot`"
    assert d["hint"] == "did you mean `dropout`?"


def test_three_independent_mistakes_reported_together() -> None:
    src = (
        "dnn 1\n"
        "model m {\n"
        "  input x: f32[8]\n"
        "  dropot(0.5)\n"
        "  dense(4, init = he_norml)\n"
        "}\n"
        "train {\n"
        "  epoch = 3\n"
        "}\n"
    )
    with pytest.raises(SpecError) as info:
        loads(src, "three.dnn")
    found = {(d.span.line, d.code) for d in info.value.diagnostics}
    assert {(4, "E0202"), (5, "E0205"), (8, "E0204")} <= found, shown(info.value.diagnostics)
