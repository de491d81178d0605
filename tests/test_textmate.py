"""The TextMate grammar is generated from the registries and must not go stale."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dnn.compiler.registry import REGISTRIES
from dnn.compiler.textmate import grammar, grammar_json

ROOT = Path(__file__).parent.parent
CHECKED_IN = ROOT / "editors" / "vscode" / "syntaxes" / "dnn.tmLanguage.json"


def test_grammar_is_current() -> None:
    assert CHECKED_IN.read_text() == grammar_json(), "run `make editor`"


def test_the_extension_points_at_the_grammar() -> None:
    package = json.loads((ROOT / "editors" / "vscode" / "package.json").read_text())
    (g,) = package["contributes"]["grammars"]
    assert (g["scopeName"], g["path"]) == (grammar()["scopeName"], "./syntaxes/dnn.tmLanguage.json")
    assert package["contributes"]["languages"][0]["extensions"] == [".dnn"]


def _patterns(g: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten includes and nested pattern lists, in order (first match wins, as in TextMate)."""
    if "include" in node:
        return _patterns(g, g["repository"][node["include"][1:]])
    if "patterns" in node and "begin" not in node:
        return [p for sub in node["patterns"] for p in _patterns(g, sub)]
    return [node]


def scopes(line: str) -> dict[str, str]:
    """A small TextMate-like scanner (single-line rules): each token -> its scope."""
    g = grammar()
    rules = [p for top in g["patterns"] for p in _patterns(g, top)]
    out, pos = {}, 0
    while pos < len(line):
        for rule in rules:
            m = re.compile(rule.get("match") or rule["begin"]).match(line, pos)
            if m and m.end() > pos:
                if "captures" in rule:
                    for k, c in rule["captures"].items():
                        if m.group(int(k)):
                            out[m.group(int(k))] = c["name"]
                else:
                    out[m.group()] = rule["name"]
                pos = m.end()
                break
        else:
            pos += 1
    return out


def test_each_kind_of_word_gets_its_scope() -> None:
    s = scopes("  dense(128, init = he_normal, regularizer = l2(1e-4)) -> relu  # head")
    assert s["dense"] == "support.function.layer.dnn"
    assert s["relu"] == "support.function.activation.dnn"
    assert s["he_normal"] == "support.constant.initializer.dnn"
    assert s["l2"] == "support.constant.regularizer.dnn"
    assert s["init"] == "variable.parameter.dnn" and s["128"] == "constant.numeric.dnn"
    assert s["# head"] == "comment.line.number-sign.dnn"
    s = scopes("  schedule = cosine(decay_steps = 30 epochs, warmup = 50 steps)")
    assert (
        s["cosine"] == "support.constant.schedule.dnn" and s["epochs"] == "keyword.other.unit.dnn"
    )
    s = scopes("block conv_bn(c, k = 3) {")
    assert (
        s["block"] == "storage.type.block.dnn" and s["conv_bn"] == "entity.name.function.block.dnn"
    )
    s = scopes("  repeat i in 0..4 { basic(64) }")
    assert s["repeat"] == s["in"] == "keyword.control.dnn" and s["i"] == "variable.other.index.dnn"


def test_every_word_and_alias_is_highlighted() -> None:
    text = json.dumps(grammar()["repository"]["words"])
    for kind, reg in REGISTRIES.items():
        if kind == "section":
            continue
        for e in reg:
            for name in (e.name, *e.aliases):
                assert re.escape(name).replace("\\", "\\\\") in text, (kind, name)
