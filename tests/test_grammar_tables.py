"""The shipped LALR tables (grammar/tables.py) are fresh and parse exactly as the grammar does."""

from __future__ import annotations

from pathlib import Path

import pytest
from dnn.compiler import grammar_tables, parse
from dnn.grammar import tables
from lark import Lark
from lark.exceptions import UnexpectedInput

ROOT = Path(__file__).parent.parent
SPECS = sorted(
    [*ROOT.glob("examples/*.dnn"), *ROOT.glob("tests/errors/*.dnn"), *ROOT.glob("bench/specs/*")]
)


def test_tables_match_the_grammar() -> None:
    grammar = parse.grammar_text()
    assert tables.FINGERPRINT == grammar_tables.fingerprint(grammar), (
        "grammar/tables.py is stale: run `make grammar` after editing grammar/dnn.lark"
    )
    assert grammar_tables.load(grammar, parse._PostLex()) is not None


def test_the_parser_in_use_is_the_loaded_one() -> None:
    lark, _ = parse._parser()
    assert lark.source_path == "<deserialized>"


def test_stale_tables_are_not_used() -> None:
    assert grammar_tables.load(parse.grammar_text() + "\n// edited\n", parse._PostLex()) is None


def _outcome(lark: Lark, text: str, start: str) -> object:
    try:
        return lark.parse(text, start=start)
    except UnexpectedInput as e:
        return (type(e).__name__, e.line, e.column, sorted(getattr(e, "expected", None) or []))


@pytest.mark.parametrize("path", [p for p in SPECS if p.suffix == ".dnn"], ids=lambda p: p.name)
def test_loaded_tables_parse_like_the_grammar(path: Path) -> None:
    grammar = parse.grammar_text()
    built, post_built = parse.build_parser(grammar)
    post_loaded = parse._PostLex()
    loaded = grammar_tables.load(grammar, post_loaded)
    assert loaded is not None
    text = path.read_text(encoding="utf-8")
    assert _outcome(loaded, text, "start") == _outcome(built, text, "start")
    assert post_loaded.comments == post_built.comments
