"""The pipeline in one place: text → AST → resolved → IR, raising one `SpecError` at the end."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .diagnostics import E_FILE, Diagnostic, DiagnosticError, Diagnostics, Span, SpecError
from .ir import Program
from .parse import parse, parse_expr
from .resolve import Reader, missing_version, read_file, resolve
from .values import Ref

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
    unversioned = missing_version(module)  # once the spec is otherwise clean of errors
    if unversioned is not None:
        diags.add(unversioned)
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


def value(text: str, kind: str, path: str | None = None) -> tuple[Ref, Span]:
    """A registry word written as in a spec (`adam(lr = 1e-3)`), validated: (Ref, its span)."""
    from . import ast
    from .check import Checker
    from .registry.types import RefT, UnknownWord, convert_at
    from .resolve import Resolved

    path = path or f"<{kind}>"
    expr = parse_expr(text, path)
    checker = Checker(Resolved(ast.Module(()), {}, {}, {path: text}), Diagnostics())
    try:
        try:
            ref = convert_at(RefT(kind), checker.static(expr, checker.menv), expr.span, kind)
        except UnknownWord as u:
            raise checker._unknown_word(u.word) from None
    except DiagnosticError as e:
        raise SpecError([e.diagnostic], {path: text}) from None
    assert isinstance(ref, Ref)
    return ref, expr.span


def schedule(
    text: str, lr: float, steps_per_epoch: int | None = None, total_steps: int | None = None
) -> Callable[[Any], Any]:
    """`dnn.schedule("cosine(decay_steps = 1000)", lr=0.1)`: step (0 = first update) → rate."""
    from .lower_optax import lower_schedule

    ref, span = value(text, "schedule")
    try:
        return lower_schedule(ref, lr, steps_per_epoch, total_steps, span)
    except DiagnosticError as e:
        raise SpecError([e.diagnostic], {span.path: text}) from None


def clipper(text: str) -> Any:
    """`dnn.clipper("global_norm(1.0)")`: an Optax gradient transformation."""
    from .lower_optax import lower_clip

    return lower_clip(value(text, "clipper")[0])


def optimizer(text: str, steps_per_epoch: int | None = None) -> Any:
    """`dnn.optimizer("adam(lr = 1e-3, amsgrad = true)")`: an Optax transformation.

    The learning rate is injected: `state.hyperparams["learning_rate"]` can be set.
    """
    from .lower_optax import lower_optimizer

    return lower_optimizer(value(text, "optimizer")[0])


def rewrite(text: str, path: str, overrides: Sequence[str]) -> str:
    """The spec text with `--set`-style overrides written in, in canonical form (`dnn fmt`):
    comments kept, imports left as imports (a param defined in an imported file is set there
    only through `--set`, so it is not written here)."""
    from .format import format_module

    module = parse(text, path)
    diags = Diagnostics()
    resolved = resolve(module, text, overrides, diags)
    if diags.errors:
        raise SpecError(diags.items, resolved.sources)
    return format_module(resolved.module)
