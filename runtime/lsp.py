"""`dnn lsp`: the language server, over stdio, on pygls (the `lsp` extra).

Diagnostics are `dnn check`'s, published after each change once edits pause for a moment
(debounced); the check runs on one worker thread with a time limit (E0608 where it stops), so
the server keeps answering while it runs. Hover, completion, go-to-definition, symbols,
inlay hints and formatting are the pure queries of compiler/editor.py; they answer from the
last text that parsed (and the last model that checked) while the current text does not.
Nothing here imports JAX.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dnn.compiler import editor
from dnn.compiler.diagnostics import Diagnostic, Span, SpecError
from dnn.compiler.format import format_text
from dnn.compiler.resolve import read_file
from lsprotocol import types as T
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

DEBOUNCE_S = 0.05  # edits closer together than this are checked once
CHECK_LIMIT_S = 2.0  # the longest one check may take before it stops with E0608
E_INTERNAL = "internal"

_log = logging.getLogger("dnn.lsp")


@dataclass(slots=True)
class _State:
    """What the server knows of one open document."""

    now: editor.Analysis | None = None  # the latest analysis published
    parsed: editor.Analysis | None = None  # the latest whose text parsed
    checked: editor.Analysis | None = None  # the latest whose model checked clean
    task: asyncio.Task[None] | None = None  # the pending (debounced) check
    checks: int = 0  # analyses completed, for tests and the bench


class DnnServer(LanguageServer):
    """The dnn language server: documents, the checking thread, and their analyses."""

    def __init__(self, debounce_s: float = DEBOUNCE_S, limit_s: float = CHECK_LIMIT_S):
        super().__init__(
            "dnn", _version(), text_document_sync_kind=T.TextDocumentSyncKind.Incremental
        )
        self.debounce_s, self.limit_s = debounce_s, limit_s
        self.states: dict[str, _State] = {}
        # one thread: the parser is not reentrant, and checks of one document are sequential
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dnn-check")

    # ---- checking ----------------------------------------------------------

    def state(self, uri: str) -> _State:
        return self.states.setdefault(uri, _State())

    def schedule(self, uri: str) -> None:
        """Check `uri` once edits pause for `debounce_s`; a newer edit replaces the wait."""
        self._forget_finished()
        st = self.state(uri)
        if st.task is not None and not st.task.done():
            st.task.cancel()
        st.task = asyncio.ensure_future(self._check_later(uri))

    def _forget_finished(self) -> None:
        """Drop pygls's finished handler futures: pygls 2.1 files the future of each
        notification that runs through a builtin handler (didOpen, didChange) under a fresh
        id and never removes it, about 2 KiB per edit (bench/lsp_bench.py memory)."""
        futures = getattr(self.protocol, "_request_futures", None)
        if isinstance(futures, dict):
            for key in [k for k, f in futures.items() if f.done()]:
                del futures[key]

    async def _check_later(self, uri: str) -> None:
        await asyncio.sleep(self.debounce_s)
        doc = self.workspace.get_text_document(uri)
        text, version = doc.source, doc.version
        loop = asyncio.get_running_loop()
        previous = self.state(uri).parsed
        analysis = await loop.run_in_executor(self.pool, self.analyze, text, _path(uri), previous)
        if self.workspace.get_text_document(uri).version != version:
            return  # a newer edit has its own check coming
        self._keep(uri, analysis)
        self.text_document_publish_diagnostics(
            T.PublishDiagnosticsParams(
                uri=uri, version=version, diagnostics=self.lsp_diagnostics(analysis)
            )
        )

    def analyze(
        self, text: str, path: str, previous: editor.Analysis | None = None
    ) -> editor.Analysis:
        """`dnn check` of one text, bounded in time; a bug in dnn becomes a diagnostic.
        `previous`: the last analysis that parsed, so an edit of a body's lines reparses them."""
        deadline = time.monotonic() + self.limit_s
        try:
            return editor.analyze(text, path, self._reader, deadline, previous)
        except Exception as e:  # a bug in dnn: say so at the top of the file, keep serving
            _log.error("checking %s failed:\n%s", path, traceback.format_exc())
            message = f"internal error in dnn while checking (a bug): {type(e).__name__}: {e}"
            hint = "please report it with this file; the editor keeps the last good check"
            d = Diagnostic(E_INTERNAL, message[:500], Span(path, 1, 1, 1, 1), hint)
            return editor.Analysis(path, text, None, None, None, (d,))

    def _keep(self, uri: str, a: editor.Analysis) -> None:
        st = self.state(uri)
        st.now, st.checks = a, st.checks + 1
        if a.module is not None:
            st.parsed = a
        if a.model_checked:
            st.checked = a

    def _reader(self, path: str) -> str:
        """Imports read the editor's unsaved text where the file is open, else the disk."""
        uri = from_fs_path(os.path.abspath(path))
        doc = self.workspace.text_documents.get(uri) if uri else None
        return doc.source if doc is not None else read_file(path)

    # ---- positions ---------------------------------------------------------

    def _units(self) -> str:
        """The client's position units: utf-16 (LSP's default) unless it chose another."""
        try:
            encoding = self.workspace.position_encoding
        except RuntimeError:  # not initialized yet
            return "utf-16"
        return str(getattr(encoding, "value", encoding) or "utf-16")

    def to_range(self, lines: Sequence[str], span: Span) -> T.Range:
        """A span (1-based, characters) as an LSP range in the client's units."""
        return T.Range(
            self.to_position(lines, span.line, span.col),
            self.to_position(lines, span.end_line, span.end_col),
        )

    def to_position(self, lines: Sequence[str], line: int, col: int) -> T.Position:
        i = min(max(line, 1), max(len(lines), 1)) - 1
        src = lines[i] if lines else ""
        return T.Position(i, _units(src[: max(col - 1, 0)], self._units()))

    def from_position(self, text: str, pos: T.Position) -> tuple[int, int]:
        """An LSP position as (line, col), 1-based, in characters."""
        lines = text.split("\n")
        src = lines[pos.line] if pos.line < len(lines) else ""
        units, col = 0, 0
        while col < len(src) and units < pos.character:
            units += _units(src[col], self._units())
            col += 1
        return pos.line + 1, col + 1

    # ---- diagnostics -------------------------------------------------------

    def lsp_diagnostics(self, a: editor.Analysis) -> list[T.Diagnostic]:
        lines = a.text.split("\n")
        anchor = _first_import(a.module)
        return [self._diagnostic(d, a.path, lines, anchor) for d in a.diagnostics]

    def _diagnostic(
        self, d: Diagnostic, path: str, lines: list[str], anchor: Span | None
    ) -> T.Diagnostic:
        elsewhere = d.span.path != path
        span = (anchor or Span(path, 1, 1, 1, 1)) if elsewhere else d.span
        message = d.message
        if elsewhere:
            message = f"{os.path.basename(d.span.path)}:{d.span.line}:{d.span.col}: {message}"
        related = [(note, nspan) for note, nspan in d.notes]
        if d.hint:
            related.insert(0, (f"hint: {d.hint}", d.span))
        if elsewhere:
            related.append(("the error is here", d.span))
        return T.Diagnostic(
            range=self.to_range(lines, span),
            message=message,
            severity=T.DiagnosticSeverity.Warning
            if d.severity == "warning"
            else T.DiagnosticSeverity.Error,
            code=d.code,
            source="dnn",
            related_information=[self._related(text, s, path, lines) for text, s in related]
            or None,
        )

    def _related(
        self, message: str, span: Span, path: str, lines: list[str]
    ) -> T.DiagnosticRelatedInformation:
        other = lines if span.path == path else _lines_of(span.path)
        uri = from_fs_path(os.path.abspath(span.path)) or span.path
        location = T.Location(uri=uri, range=self.to_range(other, span))
        return T.DiagnosticRelatedInformation(location=location, message=message)

    # ---- the views the queries read -----------------------------------------

    def views(self, uri: str) -> tuple[editor.Analysis, editor.Analysis | None]:
        """(the last analysis, with the document's current text; the last that parsed)."""
        st = self.state(uri)
        text = self.workspace.get_text_document(uri).source
        base = st.now or editor.Analysis(_path(uri), text, None, None, None, ())
        return dataclasses.replace(base, text=text), st.parsed


def _units(s: str, encoding: str) -> int:
    if encoding == "utf-32":
        return len(s)
    if encoding == "utf-8":
        return len(s.encode("utf-8", "surrogatepass"))
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def _path(uri: str) -> str:
    return to_fs_path(uri) or uri


def _lines_of(path: str) -> list[str]:
    try:
        return read_file(path).split("\n")
    except (OSError, SpecError):
        return []


def _first_import(module: Any) -> Span | None:
    from dnn.compiler import ast

    items = module.items if module is not None else ()
    return next((i.span for i in items if isinstance(i, ast.ImportStmt)), None)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("dnn")
    except metadata.PackageNotFoundError:
        return "0"


# ------------------------------------------------------------------ features

_SYMBOL_KINDS = {
    "model": T.SymbolKind.Class,
    "block": T.SymbolKind.Function,
    "section": T.SymbolKind.Namespace,
    "param": T.SymbolKind.Constant,
    "import": T.SymbolKind.Module,
    "value": T.SymbolKind.Variable,
    "field": T.SymbolKind.Field,
}
_COMPLETION_KINDS = {
    "word": T.CompletionItemKind.Function,
    "argument": T.CompletionItemKind.Property,
    "field": T.CompletionItemKind.Field,
    "block": T.CompletionItemKind.Module,
    "param": T.CompletionItemKind.Constant,
    "keyword": T.CompletionItemKind.Keyword,
    "value": T.CompletionItemKind.Value,
}


def build(debounce_s: float = DEBOUNCE_S, limit_s: float = CHECK_LIMIT_S) -> DnnServer:
    """The server with every feature registered."""
    server = DnnServer(debounce_s, limit_s)

    @server.feature(T.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: DnnServer, params: T.DidOpenTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri)

    @server.feature(T.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: DnnServer, params: T.DidChangeTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri)

    @server.feature(T.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: DnnServer, params: T.DidCloseTextDocumentParams) -> None:
        st = ls.states.pop(params.text_document.uri, None)
        if st is not None and st.task is not None:
            st.task.cancel()
        ls.text_document_publish_diagnostics(
            T.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[])
        )

    @server.feature(T.TEXT_DOCUMENT_HOVER)
    def hover(ls: DnnServer, params: T.HoverParams) -> T.Hover | None:
        now, _ = ls.views(params.text_document.uri)
        line, col = ls.from_position(now.text, params.position)
        text = editor.hover(now, ls.state(params.text_document.uri).checked, line, col)
        if text is None:
            return None
        return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=text))

    @server.feature(
        T.TEXT_DOCUMENT_COMPLETION,
        T.CompletionOptions(trigger_characters=["(", ",", "=", " ", ">"]),
    )
    def completion(ls: DnnServer, params: T.CompletionParams) -> T.CompletionList:
        now, parsed = ls.views(params.text_document.uri)
        line, col = ls.from_position(now.text, params.position)
        items = [
            T.CompletionItem(
                label=c.label,
                kind=_COMPLETION_KINDS[c.kind],
                detail=c.detail or None,
                documentation=T.MarkupContent(kind=T.MarkupKind.Markdown, value=c.doc)
                if c.doc
                else None,
                insert_text=c.insert,
                sort_text=f"{i:05d}",
            )
            for i, c in enumerate(editor.completions(now, parsed, line, col))
        ]
        return T.CompletionList(is_incomplete=False, items=items)

    @server.feature(T.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: DnnServer, params: T.DefinitionParams) -> T.Location | None:
        now, parsed = ls.views(params.text_document.uri)
        line, col = ls.from_position(now.text, params.position)
        span = editor.definition(now, parsed, line, col)
        if span is None:
            return None
        lines = now.text.split("\n") if span.path == now.path else _lines_of(span.path)
        uri = from_fs_path(os.path.abspath(span.path)) or span.path
        return T.Location(uri=uri, range=ls.to_range(lines, span))

    @server.feature(T.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def document_symbol(ls: DnnServer, params: T.DocumentSymbolParams) -> list[T.DocumentSymbol]:
        now, parsed = ls.views(params.text_document.uri)
        source = now if now.module is not None else parsed
        if source is None:
            return []
        lines = source.text.split("\n")
        return [_lsp_symbol(ls, s, lines) for s in editor.symbols(source.module, source.text)]

    @server.feature(T.TEXT_DOCUMENT_INLAY_HINT, T.InlayHintOptions(resolve_provider=False))
    def inlay_hint(ls: DnnServer, params: T.InlayHintParams) -> list[T.InlayHint]:
        now, _ = ls.views(params.text_document.uri)
        checked = ls.state(params.text_document.uri).checked
        if checked is None:
            return []
        lines, old = now.text.split("\n"), checked.text.split("\n")
        first, last = params.range.start.line + 1, params.range.end.line + 1
        return [
            T.InlayHint(
                position=ls.to_position(lines, h.line, h.col),
                label=h.label,
                kind=T.InlayHintKind.Type,
                padding_left=True,
            )
            for h in editor.inlay_hints(checked.program, checked.path)
            if first <= h.line <= last and _same_line(lines, old, h.line)
        ]

    @server.feature(T.TEXT_DOCUMENT_FORMATTING)
    async def formatting(
        ls: DnnServer, params: T.DocumentFormattingParams
    ) -> list[T.TextEdit] | None:
        uri = params.text_document.uri
        text = ls.workspace.get_text_document(uri).source
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(ls.pool, _format, text, _path(uri))
        if out is None or out == text:
            return None if out is None else []
        lines = text.split("\n")
        end = ls.to_position(lines, len(lines), len(lines[-1]) + 1)
        return [T.TextEdit(range=T.Range(T.Position(0, 0), end), new_text=out)]

    @server.feature(T.SHUTDOWN)
    def shutdown(ls: DnnServer, params: None) -> None:
        ls.pool.shutdown(wait=False, cancel_futures=True)

    return server


def _same_line(now: list[str], old: list[str], line: int) -> bool:
    """A hint from an older check still belongs where the line's text is unchanged."""
    return line <= len(now) and line <= len(old) and now[line - 1] == old[line - 1]


def _format(text: str, path: str) -> str | None:
    try:
        return format_text(text, path)
    except SpecError:
        return None  # fmt formats only what parses; the diagnostics say why
    except Exception:
        _log.error("formatting %s failed:\n%s", path, traceback.format_exc())
        return None


def _lsp_symbol(ls: DnnServer, s: editor.Symbol, lines: list[str]) -> T.DocumentSymbol:
    return T.DocumentSymbol(
        name=s.name,
        kind=_SYMBOL_KINDS[s.kind],
        range=ls.to_range(lines, s.span),
        selection_range=ls.to_range(lines, s.name_span),
        children=[_lsp_symbol(ls, c, lines) for c in s.children] or None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m dnn.runtime.lsp`: as `dnn lsp`."""
    from dnn.runtime.cli import _lsp_arguments

    p = argparse.ArgumentParser(prog="dnn lsp", description="the dnn language server (stdio)")
    _lsp_arguments(p)
    return serve(p.parse_args(argv))


def serve(args: argparse.Namespace) -> int:
    """Serve on stdin/stdout until the client says exit."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    build(args.debounce_ms / 1000, args.check_timeout).start_io()
    return 0


if __name__ == "__main__":
    sys.exit(main())
