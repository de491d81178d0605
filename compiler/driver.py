"""The pipeline in one place: text → AST → resolved → IR, raising one `SpecError` at the end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .diagnostics import E_FILE, Diagnostic, Diagnostics, Span, SpecError
from .ir import Program
from .parse import parse
from .resolve import Reader, read_file, resolve

# The passes, in order. Each is a function of data; none prints or touches JAX.
PASSES = ("parse", "resolve", "check")


def loads(
    text: str,
    path: str = "<string>",
    overrides: Sequence[str] = (),
    reader: Reader = read_file,
) -> Program:
    """Compile spec text to a checked Program, or raise `SpecError` with every diagnostic."""
    from .check import check

    module = parse(text, path)
    diags = Diagnostics()
    resolved = resolve(module, text, overrides, diags, reader)
    program = check(resolved, diags) if not diags.errors else None
    if diags.errors or program is None:
        raise SpecError(diags.items, resolved.sources)
    return replace(program, warnings=tuple(diags.items))


def load(path: str, overrides: Sequence[str] = ()) -> Program:
    """Read and compile a `.dnn` file."""
    try:
        text = read_file(path)
    except OSError as e:
        span = Span(path, 1, 1, 1, 1)
        raise SpecError(
            [Diagnostic(E_FILE, f"cannot read `{path}`: {e.strerror or e}", span)]
        ) from None
    return loads(text, path, overrides)
