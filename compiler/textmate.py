"""The TextMate grammar of `.dnn` files (editors/vscode/syntaxes/), generated from the registries.

A word added to a registry is highlighted with its kind without a hand edit: run
`make editor` (`python -m dnn.compiler.textmate > editors/vscode/syntaxes/dnn.tmLanguage.json`);
a test fails when the checked-in grammar is stale, as for docs/reference.md.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .parse import UNITS
from .registry import REGISTRIES

SCOPE = "source.dnn"

# Each registry kind's scope: layers and activations read as functions, the rest as constants
# of their kind (`support.constant.optimizer.dnn`), so a theme can tell them apart.
_FUNCTION_KINDS = ("layer", "activation")


def _words(kind: str) -> list[str]:
    names = [n for e in REGISTRIES[kind] for n in (e.name, *e.aliases)]
    return sorted(set(names), key=lambda n: (-len(n), n))  # longest first: no prefix wins


def _match(words: list[str]) -> str:
    return r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b"


def _registry_patterns() -> list[dict[str, Any]]:
    """One pattern per kind, in the registries' order; a word in two kinds takes the first."""
    seen: set[str] = set()
    out = []
    for kind in REGISTRIES:
        if kind == "section":
            continue
        words = [w for w in _words(kind) if w not in seen]
        seen.update(words)
        if not words:
            continue
        role = "support.function" if kind in _FUNCTION_KINDS else "support.constant"
        out.append({"name": f"{role}.{kind}.dnn", "match": _match(words)})
    return out


def grammar() -> dict[str, Any]:
    """The grammar as data (JSON-ready)."""
    units = sorted(set(UNITS), key=lambda u: (-len(u), u))
    sections = sorted(e.name for e in REGISTRIES["section"])
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "dnn",
        "scopeName": SCOPE,
        "fileTypes": ["dnn"],
        "comment": "Generated from the registries by `make editor`; do not edit by hand.",
        "patterns": [
            {"include": "#comment"},
            {"include": "#string"},
            {"include": "#definition"},
            {"include": "#section"},
            {"include": "#keyword"},
            {"include": "#number"},
            {"include": "#argument"},
            {"include": "#words"},
            {"include": "#operator"},
        ],
        "repository": {
            "comment": {"name": "comment.line.number-sign.dnn", "match": "#.*$"},
            "string": {
                "name": "string.quoted.double.dnn",
                "begin": '"',
                "end": '"|$',
                "patterns": [
                    {
                        "name": "constant.character.escape.dnn",
                        "match": r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})',
                    }
                ],
            },
            "definition": {
                "patterns": [
                    {
                        "match": r"\b(block)\s+([A-Za-z_]\w*)",
                        "captures": {
                            "1": {"name": "storage.type.block.dnn"},
                            "2": {"name": "entity.name.function.block.dnn"},
                        },
                    },
                    {
                        "match": r"\b(model)\s+([A-Za-z_]\w*)",
                        "captures": {
                            "1": {"name": "storage.type.model.dnn"},
                            "2": {"name": "entity.name.type.model.dnn"},
                        },
                    },
                    {
                        "match": r"\b(param)\s+([A-Za-z_]\w*)",
                        "captures": {
                            "1": {"name": "storage.type.param.dnn"},
                            "2": {"name": "variable.other.constant.param.dnn"},
                        },
                    },
                    {
                        "match": r"\b(input)\s+([A-Za-z_]\w*)",
                        "captures": {
                            "1": {"name": "keyword.other.input.dnn"},
                            "2": {"name": "variable.other.input.dnn"},
                        },
                    },
                ]
            },
            "section": {
                "match": r"^\s*(" + "|".join(sections) + r")(?=\s*\{)",
                "captures": {"1": {"name": "entity.name.section.dnn"}},
            },
            "keyword": {
                "patterns": [
                    {"name": "keyword.other.version.dnn", "match": r"^\s*dnn\b"},
                    {"name": "keyword.control.import.dnn", "match": r"\bimport\b"},
                    {
                        "match": r"\b(repeat)\s+([A-Za-z_]\w*)\s+(in)\b",
                        "captures": {
                            "1": {"name": "keyword.control.dnn"},
                            "2": {"name": "variable.other.index.dnn"},
                            "3": {"name": "keyword.control.dnn"},
                        },
                    },
                    {"name": "keyword.control.dnn", "match": r"\b(?:repeat|if|else|output)\b"},
                    {"name": "keyword.operator.logical.dnn", "match": r"\b(?:and|or|not)\b"},
                    {"name": "constant.language.dnn", "match": r"\b(?:true|false|none)\b"},
                    {"name": "variable.language.in.dnn", "match": r"\bin\b"},
                    {
                        "name": "storage.type.dtype.dnn",
                        "match": r"\b(?:[fi](?:16|32|64)|bf16)(?=\s*\[)",
                    },
                ]
            },
            "number": {
                "patterns": [
                    {
                        "match": r"(?<![\w.])(\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?)\s*("
                        + "|".join(units)
                        + r")\b",
                        "captures": {
                            "1": {"name": "constant.numeric.dnn"},
                            "2": {"name": "keyword.other.unit.dnn"},
                        },
                    },
                    {
                        "name": "constant.numeric.dnn",
                        "match": r"(?<![\w.])\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?\b",
                    },
                ]
            },
            "argument": {
                "match": r"\b([A-Za-z_]\w*)\s*(?==(?!=))",
                "captures": {"1": {"name": "variable.parameter.dnn"}},
            },
            "words": {"patterns": _registry_patterns()},
            "operator": {
                "patterns": [
                    {"name": "keyword.operator.chain.dnn", "match": "->"},
                    {"name": "keyword.operator.range.dnn", "match": r"\.\."},
                    {"name": "keyword.operator.comparison.dnn", "match": "==|!=|<=|>=|<|>"},
                    {"name": "keyword.operator.arithmetic.dnn", "match": r"\*\*|//|[-+*/%]"},
                    {"name": "keyword.operator.assignment.dnn", "match": "="},
                ]
            },
        },
    }


def grammar_json() -> str:
    """The checked-in file's text."""
    return json.dumps(grammar(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(grammar_json(), end="")
