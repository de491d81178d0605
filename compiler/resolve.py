"""Imports and overrides: one parsed file → the module plus every block and param in scope.

Entry point: `resolve(module, text, overrides, diags) -> Resolved`. Imports are read relative
to the importing file; a cycle is reported with the whole chain. `--set` overrides replace
params and section fields at the AST level, so every later pass sees one consistent spec.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from . import ast
from .diagnostics import (
    E_DUPLICATE,
    E_FILE,
    E_IMPORT_CONTENT,
    E_IMPORT_CYCLE,
    E_IMPORT_MISSING,
    E_OVERRIDE,
    E_VERSION,
    W_NO_VERSION,
    Diagnostic,
    Diagnostics,
    Span,
    SpecError,
)
from .parse import parse, parse_expr
from .registry.core import did_you_mean
from .registry.sections import SECTIONS

SUPPORTED_VERSIONS = (1,)
Reader = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Resolved:
    """The main module (overrides applied) and what imports bring into scope."""

    module: ast.Module
    blocks: dict[str, ast.BlockDef]
    params: dict[str, ast.ParamDef]
    sources: dict[str, str] = field(default_factory=dict)


def read_file(path: str) -> str:
    """A spec file's text; `SpecError` where it is not UTF-8 (OSError where it cannot be read)."""
    with open(path, "rb") as f:
        return decode(f.read(), path)


def decode(data: bytes, path: str) -> str:
    """Spec bytes as text, newlines translated as `open` does; `SpecError` if not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_utf8(data, e.start, path) from None
    return _newlines(text)


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _not_utf8(data: bytes, start: int, path: str) -> SpecError:
    """Points at the first byte that is not UTF-8 (line and column in characters, as spans are).

    The source kept for the excerpt is the text up to that line, cut 60 characters past the
    byte, with control characters shown as U+FFFD: a binary file must not drive the terminal.
    """
    before = _newlines(data[:start].decode("utf-8"))
    line = before.count("\n") + 1
    col = len(before) - before.rfind("\n")
    rest = _newlines(data[start:].decode("utf-8", "replace")).split("\n", 1)[0]
    shown = "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in before + rest)
    d = Diagnostic(
        E_FILE,
        f"cannot read `{path}`: not UTF-8 text (byte 0x{data[start]:02x})",
        Span(path, line, col, line, col + 1),
        "a spec is a UTF-8 text file: check that this is the file you meant, or re-save it "
        "as UTF-8",
    )
    return SpecError([d], {path: shown[: len(before) + 60]})


def resolve(
    module: ast.Module,
    text: str,
    overrides: Sequence[str] = (),
    diags: Diagnostics | None = None,
    reader: Reader = read_file,
) -> Resolved:
    """Load imports, collect blocks and params, apply `--set` overrides."""
    diags = diags if diags is not None else Diagnostics()
    r = _Resolver(diags, reader)
    r.sources[module.path] = text
    r.visit(module, [])
    module = r.override(module, overrides)
    r.check_version(module)
    return Resolved(module, r.blocks, r.params, r.sources)


def missing_version(module: ast.Module) -> Diagnostic | None:
    """The warning for a file without its `dnn N` line (W0809), or None. Text handed over in
    Python (`dnn.loads(text)`'s `<string>`) is not a file and is not warned about."""
    named = not (module.path.startswith("<") and module.path.endswith(">"))
    if not named or any(isinstance(item, ast.Version) for item in module.items):
        return None
    return Diagnostic(
        W_NO_VERSION,
        f"no `dnn N` line: read as language version {SUPPORTED_VERSIONS[0]}",
        Span(module.path, 1, 1, 1, 1),
        f"start the file with `dnn {SUPPORTED_VERSIONS[-1]}` (`dnn upgrade FILE --write` adds "
        "it), so a later dnn knows which language it is written in",
        severity="warning",
    )


class _Resolver:
    def __init__(self, diags: Diagnostics, reader: Reader):
        self.diags, self.reader = diags, reader
        self.blocks: dict[str, ast.BlockDef] = {}
        self.params: dict[str, ast.ParamDef] = {}
        self.sources: dict[str, str] = {}
        self.loaded: set[str] = set()

    def visit(self, module: ast.Module, stack: list[str]) -> None:
        key = os.path.abspath(module.path)
        self.loaded.add(key)
        for item in module.items:
            if isinstance(item, ast.ImportStmt):
                self._import(module.path, item, [*stack, key])
            elif isinstance(item, ast.BlockDef):
                self._define(self.blocks, "block", item)
                self._unique_params(item)
            elif isinstance(item, ast.ParamDef):
                self._define(self.params, "param", item)

    def _unique_params(self, block: ast.BlockDef) -> None:
        seen: set[str] = set()
        for p in block.params:
            if p.name in seen:
                self.diags.add(
                    Diagnostic(
                        E_DUPLICATE,
                        f"argument `{p.name}` appears twice in block `{block.name}`",
                        p.span,
                        "rename one of them",
                    )
                )
            seen.add(p.name)
        for i in block.inputs:
            if i.name in seen:
                self.diags.add(
                    Diagnostic(
                        E_DUPLICATE,
                        f"`{i.name}` is already a name in block `{block.name}`",
                        i.span,
                        "give each argument and input its own name",
                    )
                )
            seen.add(i.name)

    def _define(self, table: dict, kind: str, item: ast.BlockDef | ast.ParamDef) -> None:
        other = table.get(item.name)
        if other is not None:
            self.diags.add(
                Diagnostic(
                    E_DUPLICATE,
                    f"{kind} `{item.name}` is defined twice",
                    item.span,
                    "rename one of them, or delete one",
                    notes=(("first defined here", other.span),),
                )
            )
            return
        table[item.name] = item

    def _import(self, importer: str, item: ast.ImportStmt, stack: list[str]) -> None:
        path = os.path.normpath(os.path.join(os.path.dirname(importer), item.path))
        key = os.path.abspath(path)
        if key in stack:
            names = [os.path.relpath(p) for p in stack[stack.index(key) :]] + [os.path.relpath(key)]
            self.diags.add(
                Diagnostic(
                    E_IMPORT_CYCLE,
                    "import cycle: " + " → ".join(names),
                    item.span,
                    "move the shared blocks into a third file",
                )
            )
            return
        if key in self.loaded:
            return
        try:
            text = self.reader(path)
        except SpecError as e:  # not UTF-8: reported in the imported file, noted at the import
            self.sources.update(e.sources)
            for d in e.diagnostics:
                self.diags.add(replace(d, notes=(*d.notes, ("imported here", item.span))))
            return
        except OSError as e:
            self.diags.add(
                Diagnostic(
                    E_IMPORT_MISSING,
                    f"cannot read imported file `{path}`: {e.strerror or e}",
                    item.span,
                    "import paths are relative to the importing file",
                )
            )
            return
        self.sources[path] = text
        try:
            module = parse(text, path)
        except SpecError as e:
            self.diags.extend(e.diagnostics)
            self.sources.update(e.sources)
            return
        for other in module.items:
            if isinstance(other, ast.ModelDef | ast.Section):
                what = (
                    f"model `{other.name}`"
                    if isinstance(other, ast.ModelDef)
                    else (f"section `{other.name}`")
                )
                self.diags.add(
                    Diagnostic(
                        E_IMPORT_CONTENT,
                        f"`{item.path}` defines {what}; "
                        "imported files may define only blocks and params",
                        item.span,
                        f"move {what} out of `{item.path}`",
                        notes=((f"{what} is here", other.span),),
                    )
                )
        self.visit(module, stack)

    def check_version(self, module: ast.Module) -> None:
        for i, item in enumerate(module.items):
            if isinstance(item, ast.Version) and i > 0:
                self.diags.add(
                    Diagnostic(
                        E_VERSION,
                        "the version line `dnn N` must come first",
                        item.span,
                        f"move `dnn {item.number}` to the top",
                    )
                )
            if isinstance(item, ast.Version) and item.number not in SUPPORTED_VERSIONS:
                self.diags.add(
                    Diagnostic(
                        E_VERSION,
                        f"language version {item.number} is not supported",
                        item.span,
                        f"this dnn reads version {SUPPORTED_VERSIONS[-1]}",
                    )
                )

    # ---- overrides -------------------------------------------------------

    def override(self, module: ast.Module, overrides: Sequence[str]) -> ast.Module:
        for text in overrides:
            key, sep, value_text = text.partition("=")
            label = f"--set {key.strip()}"
            self.sources[label] = value_text
            span = Span(label, 1, 1, 1, max(2, len(value_text) + 1))
            if not sep or not key.strip():
                self.diags.add(
                    Diagnostic(
                        E_OVERRIDE,
                        f"`--set {text}` is not `name=value`",
                        span,
                        "write e.g. `--set width=128`",
                    )
                )
                continue
            try:
                value = parse_expr(value_text, label)
            except SpecError as e:
                self.diags.extend(e.diagnostics)
                continue
            path = tuple(p.strip() for p in key.strip().split("."))
            module = self._apply(module, path, value, span)
        return module

    def _apply(
        self, module: ast.Module, path: tuple[str, ...], value: ast.Expr, span: Span
    ) -> ast.Module:
        if len(path) == 1:
            if path[0] not in self.params:
                self.diags.add(
                    Diagnostic(
                        E_OVERRIDE,
                        f"`--set {path[0]}`: no param `{path[0]}`",
                        span,
                        did_you_mean(path[0], list(self.params))
                        or "set a param, or a field such as `train.epochs`",
                    )
                )
                return module
            self.params[path[0]] = replace(self.params[path[0]], value=value)
            items = tuple(
                replace(i, value=value) if isinstance(i, ast.ParamDef) and i.name == path[0] else i
                for i in module.items
            )
            return replace(module, items=items)
        if SECTIONS.lookup(path[0]) is None:
            self.diags.add(
                Diagnostic(
                    E_OVERRIDE,
                    f"`--set {'.'.join(path)}`: no section `{path[0]}`",
                    span,
                    did_you_mean(path[0], SECTIONS.names()),
                )
            )
            return module
        return _set_field(module, path, value, span, self.diags)


def _set_field(
    module: ast.Module, path: tuple[str, ...], value: ast.Expr, span: Span, diags: Diagnostics
) -> ast.Module:
    items = list(module.items)
    idx = next(
        (i for i, it in enumerate(items) if isinstance(it, ast.Section) and it.name == path[0]),
        None,
    )
    if idx is None:
        items.append(ast.Section(path[0], (), span=span))
        idx = len(items) - 1
    section = items[idx]
    assert isinstance(section, ast.Section)
    fields = list(section.fields)
    fi = next((i for i, f in enumerate(fields) if f.path == (path[1],)), None)
    if len(path) == 2:
        new = ast.Field((path[1],), value, span=span)
        if fi is None:
            fields.append(new)
        else:
            fields[fi] = replace(fields[fi], value=value)
    else:
        current = fields[fi].value if fi is not None else _default_expr(path, span)
        if current is None:
            diags.add(
                Diagnostic(
                    E_OVERRIDE,
                    f"`--set {'.'.join(path)}`: `{path[0]}.{path[1]}` is not set",
                    span,
                    f"set it whole: `--set {path[0]}.{path[1]}=...`",
                )
            )
            return module
        updated = _set_arg(current, path[2:], value, span, diags)
        if updated is None:
            return module
        if fi is None:
            fields.append(ast.Field((path[1],), updated, span=span))
        else:
            fields[fi] = replace(fields[fi], value=updated)
    items[idx] = replace(section, fields=tuple(fields))
    return replace(module, items=tuple(items))


def _default_expr(path: tuple[str, ...], span: Span) -> ast.Expr | None:
    entry = SECTIONS.lookup(path[0])
    a = entry.get_arg(path[1]) if entry else None
    if a is not None and isinstance(a.default, str):
        return ast.Name(a.default, span=span)
    return None


def _set_arg(
    expr: ast.Expr, rest: tuple[str, ...], value: ast.Expr, span: Span, diags: Diagnostics
) -> ast.Expr | None:
    name = rest[0]
    if len(rest) > 1:
        diags.add(
            Diagnostic(
                E_OVERRIDE,
                f"`{'.'.join(rest)}`: overrides reach one level into a field",
                span,
                "set the inner value whole",
            )
        )
        return None
    if isinstance(expr, ast.Name):
        return ast.Call(expr, (ast.Arg(name, value, span=span),), span=expr.span)
    if isinstance(expr, ast.Call):
        args = [a for a in expr.args if a.name != name] + [ast.Arg(name, value, span=span)]
        return replace(expr, args=tuple(args))
    if isinstance(expr, ast.Record):
        pairs = [p for p in expr.pairs if p.key != name] + [ast.Pair(name, value, span=span)]
        return replace(expr, pairs=tuple(pairs))
    diags.add(
        Diagnostic(
            E_OVERRIDE,
            f"cannot set `{name}` inside this value",
            span,
            "set the whole field instead",
        )
    )
    return None
