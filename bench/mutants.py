"""Mutants of spec text: one random edit of a word, a number or a model line (jax-free).

Shared by bench/fuzz_train.py (mutants that check must train) and the language server's
replay (bench/lsp_replay.py, tests/test_lsp_replay.py: mutants as edits never crash it).
"""

from __future__ import annotations

import random
import re

from dnn.compiler.registry import REGISTRIES

KINDS = (
    "layer",
    "activation",
    "loss",
    "metric",
    "optimizer",
    "schedule",
    "normalizer",
    "augmentation",
    "initializer",
    "clipper",
)
WORD = re.compile(r"\b[a-z_][a-z0-9_]*\b")
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?\b")


def words_of() -> dict[str, tuple[str, list[str]]]:
    """Every word of the mutable kinds: name -> (kind, the other words of that kind)."""
    out: dict[str, tuple[str, list[str]]] = {}
    for kind in KINDS:
        names = REGISTRIES[kind].names()
        for n in names:
            out.setdefault(n, (kind, [m for m in names if m != n]))
    return out


WORDS = words_of()


def mutate(text: str, rng: random.Random) -> str:
    """One random edit of the spec text."""
    lines = text.splitlines(keepends=True)
    op = rng.choice(("word", "word", "word", "number", "number", "delete", "duplicate"))
    if op in ("delete", "duplicate"):
        body = [i for i, line in enumerate(lines) if line.startswith("  ") and "=" not in line]
        if body:
            i = rng.choice(body)
            lines[i : i + 1] = [] if op == "delete" else [lines[i], lines[i]]
            return "".join(lines)
    if op == "word":
        hits = [m for m in WORD.finditer(text) if m.group() in WORDS]
        if hits:
            m = rng.choice(hits)
            _, others = WORDS[m.group()]
            return text[: m.start()] + rng.choice(others) + text[m.end() :]
    hits = list(NUMBER.finditer(text))
    if not hits:
        return text
    m = rng.choice(hits)
    v = float(m.group())
    new = rng.choice((v * 2, v / 2, 0, 1, v * 10, -v, v + 1))
    shown = str(int(new)) if float(new).is_integer() and "." not in m.group() else f"{new:g}"
    return text[: m.start()] + shown + text[m.end() :]
