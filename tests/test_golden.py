"""Golden files: examples stay canonical, messy inputs format to checked-in outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_fmt_identity
from dnn.compiler.format import format_text
from dnn.compiler.parse import parse

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.dnn"))
GOLDEN = sorted((ROOT / "tests" / "golden" / "fmt").glob("*.in.dnn"))
IDENTITY = (ROOT / "tests" / "fixtures" / "identity.dnn").read_text().split("# ----\n")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_canonical(path: Path) -> None:
    assert_fmt_identity(path.read_text())


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_golden_fmt(path: Path, request: pytest.FixtureRequest) -> None:
    out_path = path.with_name(path.name.replace(".in.dnn", ".out.dnn"))
    text = path.read_text()
    formatted = format_text(text, str(path))
    if request.config.getoption("--update-golden"):
        out_path.write_text(formatted)
    assert formatted == out_path.read_text()
    assert format_text(formatted) == formatted  # fmt(fmt(x)) == fmt(x)
    assert parse(formatted) == parse(text)  # formatting never changes meaning


@pytest.mark.parametrize("snippet", IDENTITY, ids=[f"case{i}" for i in range(len(IDENTITY))])
def test_identity_snippets(snippet: str) -> None:
    assert_fmt_identity(snippet)


def test_identity_has_many_cases() -> None:
    assert len(IDENTITY) >= 8


def test_comments_survive_formatting() -> None:
    text = (ROOT / "tests" / "golden" / "fmt" / "messy.in.dnn").read_text()
    comments = [ln.split("#", 1)[1].strip() for ln in text.splitlines() if "#" in ln]
    out = format_text(text)
    assert all(c in out for c in comments)
