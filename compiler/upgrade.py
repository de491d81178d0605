"""`dnn upgrade`: a spec rewritten to the current language version (issue 17, point 8).

The `dnn N` line says which version of the language a file is written in. When a version
changes the meaning or the spelling of something, its rewrites go in `REWRITES[N]`: functions
from an AST of version N to one of version N + 1, applied in order, then the next version's,
up to `CURRENT`. Language version 1 is the only one so far, so the table is empty and
upgrading a version-1 file gives it back unchanged; a file without the `dnn N` line is read as
version 1 and gets the line.

A rewrite is a pure function of the AST (`replace_nodes` helps: `dense` renamed `linear`
would be `replace_nodes(module, rename)` with `rename` returning a new `ast.Name` for the
old one). The upgraded text is printed by `dnn fmt`'s printer when a rewrite ran; otherwise
the file's own text is kept and only its version line is written or renumbered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import ast
from .diagnostics import E_VERSION, Diagnostic, Span, SpecError
from .format import format_module
from .parse import parse
from .resolve import SUPPORTED_VERSIONS

Rewrite = Callable[[ast.Module], ast.Module]

CURRENT = SUPPORTED_VERSIONS[-1]
# version N -> the rewrites that turn a version-N module into a version N + 1 one, in order
REWRITES: dict[int, tuple[Rewrite, ...]] = {}


@dataclass(frozen=True)
class Upgraded:
    """The text of a spec at `to_version`; `from_version` is None where it had no `dnn N`."""

    text: str
    from_version: int | None
    to_version: int
    rewrites: int  # how many rewrites ran

    def changed(self, before: str) -> bool:
        return self.text != before


def upgrade(text: str, path: str = "<string>", current: int | None = None) -> Upgraded:
    """`text` at the language version `current` (default: this dnn's). Raises `SpecError`
    for a syntax error, or a version newer than `current` or below 1."""
    target = CURRENT if current is None else current
    module = parse(text, path)
    header = next((i for i in module.items if isinstance(i, ast.Version)), None)
    version = header.number if header is not None else None
    start = version if version is not None else 1
    if header is not None and not 1 <= start <= target:
        raise SpecError([_bad_version(header, target)], {path: text})
    chain = [fn for v in range(start, target) for fn in REWRITES.get(v, ())]
    if chain:
        for fn in chain:
            module = fn(module)
        out = format_module(_with_version(module, target))
    else:
        out = _renumber(text, header, target)
    return Upgraded(out, version, target, len(chain))


def _bad_version(header: ast.Version, target: int) -> Diagnostic:
    s = header.span
    at = Span(s.path, s.line, s.col, s.end_line, s.end_col)
    if header.number > target:
        return Diagnostic(
            E_VERSION,
            f"this spec is written in language version {header.number}, newer than this dnn "
            f"reads (version {target})",
            at,
            "upgrade dnn to read it (`pip install --upgrade dnn`); `dnn upgrade` only moves "
            "specs forward",
        )
    return Diagnostic(
        E_VERSION,
        f"there is no language version {header.number}: versions start at 1",
        at,
        f"write `dnn {target}`",
    )


def _with_version(module: ast.Module, target: int) -> ast.Module:
    """The module with its `dnn N` line set to `target` (added first if it had none)."""
    items = list(module.items)
    for i, item in enumerate(items):
        if isinstance(item, ast.Version):
            items[i] = dataclasses.replace(item, number=target)
            return dataclasses.replace(module, items=tuple(items))
    return dataclasses.replace(module, items=(ast.Version(target), *items))


def _renumber(text: str, header: ast.Version | None, target: int) -> str:
    """The file's own text with its version line renumbered, or `dnn N` added on top."""
    if header is None:
        return f"dnn {target}\n\n{text}" if text.strip() else f"dnn {target}\n"
    if header.number == target:
        return text
    lines = text.splitlines(keepends=True)
    s = header.span
    line = lines[s.line - 1]
    before, rest = line[: s.col - 1], line[s.col - 1 :]
    lines[s.line - 1] = before + rest.replace(str(header.number), str(target), 1)
    return "".join(lines)


def replace_nodes(node: Any, fn: Callable[[Any], Any]) -> Any:
    """Rebuild an AST bottom-up, each node (children first) passed through `fn`, which
    returns it or its replacement: what a rewrite is written with."""
    if isinstance(node, tuple):
        return tuple(replace_nodes(n, fn) for n in node)
    if not dataclasses.is_dataclass(node) or isinstance(node, type) or isinstance(node, Span):
        return node
    changes = {}
    for f in dataclasses.fields(node):
        old = getattr(node, f.name)
        new = replace_nodes(old, fn)
        if new is not old:
            changes[f.name] = new
    return fn(dataclasses.replace(node, **changes) if changes else node)
