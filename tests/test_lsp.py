"""`dnn lsp` end to end: a real LSP client (pytest-lsp) drives the server over stdio."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import pytest_lsp  # the test extra installs it: a missing install must fail, not skip
from dnn.compiler.format import format_text
from lsprotocol import types as T
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVER = [sys.executable, "-m", "dnn.runtime.lsp", "--debounce-ms", "10", "--check-timeout", "1"]

SPEC = textwrap.dedent(
    """\
    dnn 1

    param width = 16

    block conv_bn(c, k = 3) {
      conv2d(c, kernel = k, padding = same)
      batchnorm
      relu
    }

    model m {
      input image: f32[8, 8, 1]
      conv_bn(width)
      flatten
      dense(10)
    }

    train {
      optimizer = adam(lr = 1e-3)
    }
    """
)


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient):
    caps = client_capabilities("visual-studio-code")
    await lsp_client.initialize_session(T.InitializeParams(capabilities=caps))
    yield
    await lsp_client.shutdown_session()


async def _open(client: LanguageClient, path: Path, text: str) -> str:
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(
        T.DidOpenTextDocumentParams(
            T.TextDocumentItem(uri=uri, language_id="dnn", version=1, text=text)
        )
    )
    await _diagnostics(client, uri)
    return uri


async def _diagnostics(client: LanguageClient, uri: str) -> list[T.Diagnostic]:
    while True:
        await client.wait_for_notification(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        if uri in client.diagnostics:
            return list(client.diagnostics.pop(uri))


def _at(uri: str, line: int, char: int) -> tuple[T.TextDocumentIdentifier, T.Position]:
    return T.TextDocumentIdentifier(uri), T.Position(line, char)


async def test_error_is_published_at_its_range_with_code_and_hint(
    client: LanguageClient, tmp_path: Path
) -> None:
    text = SPEC.replace("  flatten\n", "  flatten\n  dropot(0.5)\n")
    path = tmp_path / "bad.dnn"
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(
        T.DidOpenTextDocumentParams(
            T.TextDocumentItem(uri=uri, language_id="dnn", version=1, text=text)
        )
    )
    (d,) = await _diagnostics(client, uri)
    assert d.range == T.Range(T.Position(14, 2), T.Position(14, 8))
    assert (d.code, d.severity, d.source) == ("E0202", T.DiagnosticSeverity.Error, "dnn")
    assert d.message == "unknown layer `dropot`"
    assert d.related_information[0].message == "hint: did you mean `dropout`?"
    assert d.related_information[0].location.uri == uri
    # an incremental edit fixes it: `dropot` -> `dropout`
    change = T.TextDocumentContentChangePartial(
        range=T.Range(T.Position(14, 7), T.Position(14, 7)), text="u"
    )
    client.text_document_did_change(
        T.DidChangeTextDocumentParams(
            T.VersionedTextDocumentIdentifier(uri=uri, version=2), [change]
        )
    )
    assert await _diagnostics(client, uri) == []


async def test_syntax_error_and_a_huge_repeat_are_diagnostics(
    client: LanguageClient, tmp_path: Path
) -> None:
    path = tmp_path / "half.dnn"
    path.write_text(SPEC)
    uri = path.as_uri()
    half = SPEC.replace("  dense(10)\n", "  dense(10, \n")
    client.text_document_did_open(
        T.DidOpenTextDocumentParams(
            T.TextDocumentItem(uri=uri, language_id="dnn", version=1, text=half)
        )
    )
    (d,) = await _diagnostics(client, uri)
    assert d.code in ("E0101", "E0102")
    slow = SPEC.replace("  flatten\n", "  repeat i in 0..90000 { dense(4 + i % 2) }\n  flatten\n")
    client.text_document_did_change(
        T.DidChangeTextDocumentParams(
            T.VersionedTextDocumentIdentifier(uri=uri, version=2),
            [T.TextDocumentContentChangeWholeDocument(slow)],
        )
    )
    (d,) = await _diagnostics(client, uri)
    assert d.code == "E0608" and "repeat 90,000" in d.message
    assert d.range.start == T.Position(13, 17)
    # the server still answers
    hover = await client.text_document_hover_async(T.HoverParams(*_at(uri, 14, 3)))
    assert hover is not None and "flatten" in hover.contents.value


async def test_hover_gives_help_and_the_line_shape(client: LanguageClient, tmp_path: Path) -> None:
    uri = await _open(client, tmp_path / "a.dnn", SPEC)
    hover = await client.text_document_hover_async(T.HoverParams(*_at(uri, 14, 3)))
    value = hover.contents.value
    assert "dense(units" in value and "formula: y = x W + b" in value and "arguments:" in value
    assert "**output** `(10,)` · **params** 10,250" in value
    block_line = await client.text_document_hover_async(T.HoverParams(*_at(uri, 12, 3)))
    assert "block conv_bn(c, k = …)" in block_line.contents.value
    assert "**output** `(8, 8, 16)` · **params** 224" in block_line.contents.value
    arg = await client.text_document_hover_async(T.HoverParams(*_at(uri, 5, 13)))
    assert arg.contents.value.startswith("`conv2d.kernel`")


async def test_completion_of_words_arguments_and_values(
    client: LanguageClient, tmp_path: Path
) -> None:
    text = SPEC.replace("  flatten\n", "  conv2d(8, \n  flatten\n").replace(
        "  optimizer = adam(lr = 1e-3)\n", "  optimizer = adam(lr = 1e-3)\n  schedule = \n"
    )
    uri = await _open(client, tmp_path / "c.dnn", text)
    args = await client.text_document_completion_async(T.CompletionParams(*_at(uri, 13, 12)))
    kernel = next(i for i in args.items if i.label == "kernel")
    assert kernel.insert_text == "kernel = " and kernel.detail.endswith("= required")
    stride = next(i for i in args.items if i.label == "stride")
    assert stride.detail.endswith("= 1")
    sched = await client.text_document_completion_async(T.CompletionParams(*_at(uri, 20, 13)))
    assert {"cosine", "warmup_cosine", "constant"} <= {i.label for i in sched.items}
    layers = await client.text_document_completion_async(T.CompletionParams(*_at(uri, 14, 2)))
    assert {"dense", "conv2d", "relu", "conv_bn", "repeat"} <= {i.label for i in layers.items}


async def test_formatting_is_dnn_fmt(client: LanguageClient, tmp_path: Path) -> None:
    messy = SPEC.replace("  dense(10)", "  dense( 10 )   # head").replace("lr = 1e-3", "lr=1e-3")
    uri = await _open(client, tmp_path / "f.dnn", messy)
    edits = await client.text_document_formatting_async(
        T.DocumentFormattingParams(T.TextDocumentIdentifier(uri), T.FormattingOptions(2, True))
    )
    assert len(edits) == 1 and edits[0].new_text == format_text(messy)
    assert edits[0].range.start == T.Position(0, 0)


async def test_definition_of_blocks_params_and_imports(
    client: LanguageClient, tmp_path: Path
) -> None:
    (tmp_path / "lib.dnn").write_text("dnn 1\n\nblock head(n) {\n  dense(n)\n}\n")
    text = SPEC.replace("param width", 'import "lib.dnn"\n\nparam width').replace(
        "  dense(10)\n", "  head(10)\n"
    )
    uri = await _open(client, tmp_path / "d.dnn", text)
    lib = (tmp_path / "lib.dnn").as_uri()
    where = await client.text_document_definition_async(T.DefinitionParams(*_at(uri, 16, 4)))
    assert where.uri == lib and where.range.start == T.Position(2, 0)
    where = await client.text_document_definition_async(T.DefinitionParams(*_at(uri, 14, 12)))
    assert where.uri == uri and where.range.start == T.Position(4, 0)
    where = await client.text_document_definition_async(T.DefinitionParams(*_at(uri, 14, 4)))
    assert where.uri == uri and where.range.start == T.Position(6, 0)
    where = await client.text_document_definition_async(T.DefinitionParams(*_at(uri, 2, 10)))
    assert where.uri == lib
    where = await client.text_document_definition_async(T.DefinitionParams(*_at(uri, 7, 21)))
    assert where.range.start == T.Position(6, 17)  # `k`: the block's argument


async def test_symbols_and_inlay_hints(client: LanguageClient, tmp_path: Path) -> None:
    uri = await _open(client, tmp_path / "s.dnn", SPEC)
    syms = await client.text_document_document_symbol_async(
        T.DocumentSymbolParams(T.TextDocumentIdentifier(uri))
    )
    assert [(s.name, s.kind) for s in syms] == [
        ("width", T.SymbolKind.Constant),
        ("conv_bn", T.SymbolKind.Function),
        ("m", T.SymbolKind.Class),
        ("train", T.SymbolKind.Namespace),
    ]
    assert syms[2].selection_range == T.Range(T.Position(10, 6), T.Position(10, 7))
    assert [c.name for c in syms[2].children] == ["image"]
    hints = await client.text_document_inlay_hint_async(
        T.InlayHintParams(
            T.TextDocumentIdentifier(uri), T.Range(T.Position(0, 0), T.Position(30, 0))
        )
    )
    assert [(h.position.line, h.position.character, h.label) for h in hints] == [
        (12, 16, "→ (8, 8, 16)"),
        (13, 9, "→ (1024,)"),
        (14, 11, "→ (10,)"),
    ]


async def test_an_error_in_an_imported_file_is_shown_at_the_import(
    client: LanguageClient, tmp_path: Path
) -> None:
    (tmp_path / "lib.dnn").write_text("dnn 1\n\nblock head(n) {\n  dens(n)\n}\n")
    text = 'dnn 1\nimport "lib.dnn"\nmodel m {\n  input x: f32[4]\n  head(3)\n}\n'
    path = tmp_path / "i.dnn"
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(
        T.DidOpenTextDocumentParams(
            T.TextDocumentItem(uri=uri, language_id="dnn", version=1, text=text)
        )
    )
    (d,) = await _diagnostics(client, uri)
    assert d.range.start.line == 1 and d.message.startswith("lib.dnn:4:3: unknown layer `dens`")
    assert d.related_information[-1].location.uri == (tmp_path / "lib.dnn").as_uri()


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")  # the module's asyncio mark
def test_the_server_never_imports_jax(tmp_path: Path) -> None:
    """Diagnostics, hover, completion, definitions, symbols, hints and fmt without JAX."""
    spec = tmp_path / "a.dnn"
    spec.write_text(SPEC)
    code = textwrap.dedent(
        f"""
        import sys
        from dnn.runtime import lsp
        from dnn.compiler import editor
        server = lsp.build()
        text = open({str(spec)!r}).read()
        a = server.analyze(text, {str(spec)!r})
        server.lsp_diagnostics(a)
        editor.hover(a, a, 15, 4); editor.completions(a, a, 14, 3)
        editor.definition(a, a, 13, 4); editor.symbols(a.module, text)
        editor.inlay_hints(a.program, a.path); lsp._format(text, "a.dnn")
        assert a.model_checked, a.diagnostics
        print("jax" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")  # the module's asyncio mark
def test_finished_handler_futures_are_forgotten() -> None:
    """pygls 2.1 keeps each didChange's future forever (2 KiB an edit): the server drops them."""
    from concurrent.futures import Future

    from dnn.runtime.lsp import build

    server = build()
    done, pending = Future(), Future()
    done.set_result(None)
    server.protocol._request_futures.update({"a": done, "b": pending})
    server._forget_finished()
    assert server.protocol._request_futures == {"b": pending}


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")  # the module's asyncio mark
def test_positions_are_utf16_units_for_the_client() -> None:
    from dnn.runtime.lsp import build

    server = build()  # LSP's default encoding: UTF-16 code units; a character above U+FFFF is 2
    assert server.to_position(["a😀bc"], 1, 4) == T.Position(0, 4)
    assert server.from_position("a😀bc", T.Position(0, 4)) == (1, 4)
    assert server.to_position(["x"], 9, 1) == T.Position(0, 0)  # past the end: clamped
