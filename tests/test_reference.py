"""The checked-in reference is generated from the registries and must not go stale."""

from __future__ import annotations

from pathlib import Path

from dnn.compiler.reference import errors_markdown, reference_markdown
from dnn.compiler.registry import REGISTRIES

DOCS = Path(__file__).parent.parent / "docs"


def test_reference_is_current() -> None:
    assert (DOCS / "reference.md").read_text() == reference_markdown(), "run `make reference`"


def test_errors_doc_is_current() -> None:
    assert (DOCS / "errors.md").read_text() == errors_markdown(), "run `make reference`"


def test_every_word_is_documented() -> None:
    text = reference_markdown()
    for reg in REGISTRIES.values():
        for entry in reg:
            assert f"### `{entry.name}`" in text
            assert entry.doc, f"{reg.kind} {entry.name} has no doc"
            assert entry.formula, f"{reg.kind} {entry.name} has no formula"
