"""Shared test helpers: each test reads as one line."""

from __future__ import annotations

import os

import pytest

# Four CPU devices for the multi-device tests (set before JAX loads). The suite is mostly XLA
# compiles of small programs: compile them without the backend's expensive optimization passes
# (as bench/fuzz_train.py does), which XLA's results do not depend on beyond rounding.
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0 "
    "--xla_llvm_disable_expensive_passes=true",
)

from dnn.compiler.diagnostics import SpecError  # noqa: E402
from dnn.compiler.driver import loads  # noqa: E402
from dnn.compiler.format import format_text  # noqa: E402


def assert_fmt_identity(src: str) -> None:
    """Canonical text formats to itself."""
    assert format_text(src) == src


def assert_error(src: str, where: str, code: str, message: str = "", hint: str = "") -> None:
    """`src` fails with a diagnostic at `where` ("line:col") with this code, message and hint."""
    with pytest.raises(SpecError) as info:
        loads(src, "spec.dnn")
    found = [
        f"{d.span.line}:{d.span.col} {d.code} {d.message} | {d.hint}"
        for d in info.value.diagnostics
    ]
    assert any(
        f"{d.span.line}:{d.span.col}" == where
        and d.code == code
        and message in d.message
        and (hint in (d.hint or ""))
        for d in info.value.diagnostics
    ), found


def assert_summary(
    src: str,
    params: int,
    shapes: list[tuple[int, ...]] | None = None,
    per_layer: list[int] | None = None,
) -> None:
    """The model's total parameters (and optionally output shapes / per-layer counts)."""
    program = loads(src, "spec.dnn")
    s = program.summary()
    layers = [r for r in s.layers if r.op != "input"]
    assert s.params == params, [(r.name, r.params) for r in layers]
    if shapes is not None:
        assert [r.output_shape[1:] for r in layers] == shapes
    if per_layer is not None:
        assert [r.params for r in layers] == per_layer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden outputs")


@pytest.fixture
def x64():  # type: ignore[no-untyped-def]
    """Run a test with JAX in float64, restoring the previous setting after."""
    import jax

    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


@pytest.fixture(scope="session", autouse=True)
def _compile_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One XLA compilation cache per test session (not the user's ~/.cache): the training
    tests compile the same small programs many times."""
    os.environ.setdefault("DNN_CACHE_DIR", str(tmp_path_factory.mktemp("xla-cache")))
