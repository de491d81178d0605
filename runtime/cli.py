"""The `dnn` command line. Exit status: 0 clean, 1 a mistake in a spec, 2 bad usage.

Front-end commands (check, fmt, summary, help, upgrade) never import JAX.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from collections.abc import Callable, Sequence

from dnn.compiler.diagnostics import Diagnostic, SpecError, render, render_all, to_dict, to_json
from dnn.compiler.ir import Program

EXIT_OK, EXIT_SPEC, EXIT_USAGE = 0, 1, 2


def _color(stream: object) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


def _report(err: SpecError, fmt: str) -> None:
    if fmt == "json":
        print(to_json(err.diagnostics))
    else:
        print(render_all(err.diagnostics, err.sources, _color(sys.stderr)), file=sys.stderr)
        n = sum(d.severity == "error" for d in err.diagnostics)
        print(f"{n} error{'s' * (n != 1)}", file=sys.stderr)


def _warn(ds: Sequence[Diagnostic], sources: dict[str, str]) -> None:
    for d in ds:
        if d.severity == "warning":
            print(render(d, sources, _color(sys.stderr)), file=sys.stderr)


# ------------------------------------------------------------------ commands


def cmd_check(args: argparse.Namespace) -> int:
    from dnn.compiler.driver import load

    status, found = EXIT_OK, []
    for path in args.files:
        try:
            program = load(path, args.set)
        except SpecError as e:
            status = EXIT_SPEC
            if args.format == "json":
                found += [to_dict(d) for d in e.diagnostics]
            else:
                _report(e, "text")
            continue
        if args.format == "json":
            found += [to_dict(d) for d in program.warnings]
        else:
            _warn(program.warnings, program.sources)
            model = program.model
            what = (
                f"{len(model.nodes)} layers, {model.params:,} params"
                if model
                else _library(program)
            )
            print(f"{path}: ok ({what})")
    if args.format == "json":
        print(json.dumps({"diagnostics": found}, indent=2))
    return status


def _library(program: Program) -> str:
    """What a spec without a model holds: blocks and params for other specs to import."""
    from dnn.compiler import ast

    blocks = sum(isinstance(i, ast.BlockDef) for i in program.module.items)
    params = sum(isinstance(i, ast.ParamDef) for i in program.module.items)
    if not blocks and not params:
        return "no model"
    return f"no model; {_count(blocks, 'block')}, {_count(params, 'param')} to import"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def cmd_fmt(args: argparse.Namespace) -> int:
    from dnn.compiler.format import format_text
    from dnn.compiler.resolve import decode, read_file

    status = EXIT_OK
    for path in args.files:
        try:
            text = decode(sys.stdin.buffer.read(), "<stdin>") if path == "-" else read_file(path)
            out = format_text(text, "<stdin>" if path == "-" else path)
        except SpecError as e:
            _report(e, "text")
            status = EXIT_SPEC
            continue
        except OSError as e:
            print(f"{path}: error: cannot read: {e.strerror or e}", file=sys.stderr)
            status = EXIT_SPEC
            continue
        status = max(status, _fmt_result(args, path, text, out))
    return status


def _fmt_result(args: argparse.Namespace, path: str, text: str, out: str) -> int:
    if path == "-":
        sys.stdout.write(out)
        return EXIT_OK
    changed = out != text
    if args.diff and changed:
        sys.stdout.writelines(
            difflib.unified_diff(
                text.splitlines(keepends=True),
                out.splitlines(keepends=True),
                path,
                f"{path} (formatted)",
            )
        )
    if args.check:
        if changed:
            print(f"{path}: would be reformatted", file=sys.stderr)
        return EXIT_SPEC if changed else EXIT_OK
    if changed and not args.diff:
        _write_atomic(path, out)
        print(f"{path}: reformatted", file=sys.stderr)
    return EXIT_OK


def _write_atomic(path: str, text: str) -> None:
    """Write beside the file, then rename over it: a failure never leaves a truncated spec."""
    tmp = f"{path}.dnn-fmt.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cmd_upgrade(args: argparse.Namespace) -> int:
    """Rewrite specs to the current language version: to stdout, or in place with --write."""
    from dnn.compiler.resolve import read_file
    from dnn.compiler.upgrade import upgrade

    status = EXIT_OK
    for path in args.files:
        try:
            text = read_file(path)
            done = upgrade(text, path)
        except SpecError as e:
            _report(e, "text")
            status = EXIT_SPEC
            continue
        except OSError as e:
            print(f"{path}: error: cannot read: {e.strerror or e}", file=sys.stderr)
            status = EXIT_SPEC
            continue
        if not args.write:
            sys.stdout.write(done.text)
            continue
        was = f"version {done.from_version}" if done.from_version else "no `dnn N` line"
        if done.changed(text):
            _write_atomic(path, done.text)
            print(f"{path}: upgraded ({was} -> version {done.to_version})", file=sys.stderr)
        else:
            print(f"{path}: already version {done.to_version}", file=sys.stderr)
    return status


def cmd_summary(args: argparse.Namespace) -> int:
    from dnn.compiler.driver import load

    try:
        program = load(args.file, args.set)
    except SpecError as e:
        _report(e, args.format)
        return EXIT_SPEC
    summary = program.summary()
    if args.format == "json":
        print(summary.to_json())
    else:
        _warn(program.warnings, program.sources)
        print(summary)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    """Semantic diff of two specs; exit 0 equivalent, 1 different, 2 error (as diff(1))."""
    from dnn.runtime.diff_cmd import run

    return run(args)


PICTURE_BOXES = 30  # `--depth auto`: the most boxes a picture gets before blocks collapse


def _depth(text: str) -> int | None:
    """`--depth`: `full` (every layer), `auto` (decided by the caller) or a block depth."""
    if text in ("full", "auto"):
        return None
    return int(text)


def _depth_arg(text: str) -> str:
    if text in ("full", "auto") or (text.isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"`{text}`: give auto, full or a number of blocks >= 0")


def cmd_graph(args: argparse.Namespace) -> int:
    """Draw the model as SVG or PNG (laid out by Graphviz if installed, else built in), DOT, Mermaid."""
    from dnn.compiler.driver import load
    from dnn.compiler.graph import depth_for, describe
    from dnn.runtime import render

    try:
        fmt = render.output_format(args.output, args.format)
        if args.output == "-" and fmt not in render.TEXT_FORMATS:
            raise render.RenderError(f"{fmt} is not text: write it to a file with -o FILE.{fmt}")
        program = load(args.file, args.set)
        if program.model is None:
            print(f"{args.file}: error: no model to draw", file=sys.stderr)
            return EXIT_SPEC
        _warn(program.warnings, program.sources)
        depth = _depth(args.depth)
        if args.depth == "auto" and fmt not in ("svg", "png"):
            depth = None  # text formats list every layer unless asked
        elif args.depth == "auto":
            depth = depth_for(program.model, PICTURE_BOXES)
        drawing = render.draw(describe(program.model, depth), fmt, args.layout)
        if drawing.warning:
            print(f"warning: {drawing.warning}", file=sys.stderr)
        if depth is not None and args.depth == "auto":
            nested = f"nested deeper than {depth}" if depth else "of the model"
            print(
                f"note: blocks {nested} drawn as one box each, to keep the picture under "
                f"{PICTURE_BOXES} boxes (`--depth full` draws every layer)",
                file=sys.stderr,
            )
        if args.output == "-":
            sys.stdout.write(drawing.data.decode())
        else:
            render.write(args.output, drawing.data)
            how = f", {drawing.engine} layout" if drawing.engine != "text" else ""
            print(f"{args.output}: {fmt}{how}", file=sys.stderr)
    except SpecError as e:
        _report(e, "text")
        return EXIT_SPEC
    except render.RenderError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def cmd_help(args: argparse.Namespace) -> int:
    from dnn.compiler import reference as ref
    from dnn.compiler.registry.core import did_you_mean

    if args.format == "json" and not args.name:
        print(ref.help_json())
        return EXIT_OK
    if not args.name:
        print(ref.help_index())
        print(f"\ndnn {version()}")
        return EXIT_OK
    reg = ref.registry_by_title(args.name)
    if reg is not None:
        print(
            json.dumps({e.name: ref.entry_dict(e) for e in reg}, indent=2)
            if args.format == "json"
            else ref.help_kind(reg)
        )
        return EXIT_OK
    found = ref.find(args.name)
    if not found:
        names = [e.name for r in ref.REGISTRIES.values() for e in r]
        hint = did_you_mean(args.name, names) or "run `dnn help` for the list"
        print(f"error: no word `{args.name}` in the language; {hint}", file=sys.stderr)
        return EXIT_SPEC
    if args.format == "json":
        print(json.dumps({r.title: {e.name: ref.entry_dict(e)} for r, e in found}, indent=2))
    else:
        print("\n\n".join(ref.help_entry(r, e) for r, e in found))
    return EXIT_OK


def cmd_lsp(args: argparse.Namespace) -> int:
    """The language server over stdio; needs the `lsp` extra (pygls, lsprotocol)."""
    try:
        from dnn.runtime import lsp
    except ImportError as e:
        if (e.name or "").split(".")[0] not in ("pygls", "lsprotocol"):
            raise
        print(
            f"error: `dnn lsp` needs the `lsp` extra ({(e.name or '').split('.')[0]} is not "
            "installed): "
            "pip install 'dnn[lsp]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return lsp.serve(args)


def _lsp_arguments(c: argparse.ArgumentParser) -> None:
    """`dnn lsp`'s options, declared here so `dnn lsp --help` works without the extra."""
    c.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (the default)")
    c.add_argument(
        "--debounce-ms",
        type=float,
        default=50.0,
        help="wait this long after an edit before checking (default 50)",
    )
    c.add_argument(
        "--check-timeout",
        type=float,
        default=2.0,
        help="stop a check after this many seconds, with E0608 (default 2)",
    )


# ------------------------------------------------------------------ parser


def version() -> str:
    """The installed package's version (its metadata), as `dnn --version` prints it."""
    from importlib import metadata

    try:
        return metadata.version("dnn")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        from dnn import __version__

        return __version__


class _Version(argparse.Action):
    """`--version`: print `dnn <version>` and exit 0 (looked up only when asked for)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"dnn {version()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dnn", description="A declarative language for deep networks.")
    p.add_argument("--version", action=_Version, help="print `dnn <version>` and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, fn: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.set_defaults(fn=fn)
        return c

    def overrides(c: argparse.ArgumentParser) -> None:
        c.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="override a param or field, e.g. width=128 or train.optimizer.lr=3e-4",
        )

    c = command("check", cmd_check, "check specs: syntax, names, arguments, shapes")
    c.add_argument("files", nargs="+", metavar="FILE")
    overrides(c)
    c.add_argument("--format", choices=("text", "json"), default="text")

    c = command("fmt", cmd_fmt, "rewrite specs in canonical form (in place; `-` for stdin)")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.add_argument(
        "--check", action="store_true", help="exit 1 if a file would change; write nothing"
    )
    c.add_argument("--diff", action="store_true", help="print the changes as a diff; write nothing")

    c = command("upgrade", cmd_upgrade, "rewrite specs to the current language version")
    c.add_argument("files", nargs="+", metavar="FILE")
    c.add_argument(
        "--write", action="store_true", help="rewrite the files in place (default: print)"
    )

    c = command("summary", cmd_summary, "layers, output shapes and parameter counts")
    c.add_argument("file", metavar="FILE")
    overrides(c)
    c.add_argument("--format", choices=("text", "json"), default="text")

    from .cli_sweep import register as register_search
    from .cli_train import _guard, register
    from .cli_weights import register as register_weights

    register(command, overrides)
    register_search(command, overrides, _guard)
    register_weights(command, overrides, _guard)

    c = command("diff", cmd_diff, "semantic diff of two specs: exit 0 equivalent, 1 different")
    c.add_argument("files", nargs="*", metavar="SPEC", help="A.dnn B.dnn; REV:path reads git")
    overrides(c)
    c.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    c.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    c.add_argument("--textconv", metavar="FILE", help="print a resolved view (git textconv)")
    c.add_argument(
        "--git-external", action="store_true", help="take git's 7 GIT_EXTERNAL_DIFF arguments"
    )

    c = command("graph", cmd_graph, "draw the model: -o model.svg, .png, .dot or .mmd (Mermaid)")
    c.add_argument("file", metavar="FILE")
    c.add_argument(
        "--depth",
        type=_depth_arg,
        default="auto",
        help="draw blocks nested deeper than N as one box each; `full`: every layer; `auto` "
        f"(default): pictures get at most {PICTURE_BOXES} boxes, text formats every layer",
    )
    c.add_argument("-o", "--output", default="-", help="output file; `-` (default): text to stdout")
    c.add_argument("--format", choices=("svg", "png", "dot", "mmd"), help="default: -o's suffix")
    c.add_argument(
        "--layout",
        choices=("auto", "graphviz", "builtin"),
        default="auto",
        help="pictures: Graphviz `dot` if on PATH (auto), required, or the built-in layout",
    )
    overrides(c)

    c = command("lsp", cmd_lsp, "the language server for editors, over stdio (the `lsp` extra)")
    _lsp_arguments(c)

    c = command("help", cmd_help, "the words of the language, their arguments and formulas")
    c.add_argument("name", nargs="?", help="a word (dense, adam) or a kind (layers, optimizers)")
    c.add_argument("--format", choices=("text", "json"), default="text")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


def entry() -> None:
    """The `dnn` executable: `main`, then a quick exit once JAX has run.

    Every file a command writes is closed (run folders are written with renames, Orbax saves
    synchronously and its managers are closed), so after flushing the streams the process
    skips the interpreter's teardown of JAX and Orbax: 0.5 s of a one-epoch `dnn train`
    (docs/performance.md). Commands that never import JAX exit normally.
    """
    quick_exit(main())


def _release_worker_resources() -> None:
    """Where Grain's worker processes ran, free what the interpreter's exit would: the
    batches' shared memory Grain unlinks as it lets go of them (on its deleting threads),
    and the processes' semaphores. Else Python's resource tracker reports them as leaked
    (and frees them then)."""
    import gc

    shm = sys.modules.get("grain._src.python.ipc.shared_memory_array")
    if shm is not None:
        gc.collect()  # batches no longer referenced: their shared memory is let go now
        arrays = getattr(shm, "SharedMemoryArray", None)
        deleting = getattr(arrays, "_del_thread_pool", None)
        if deleting is not None:  # any array let go from now on is freed where it is let go
            arrays._del_thread_pool = None  # type: ignore[union-attr]
            deleting.close()
            deleting.join()
    if "multiprocessing.util" in sys.modules:
        sys.modules["multiprocessing.util"]._exit_function()


def quick_exit(code: int) -> None:
    """Exit with `code`; once JAX has run, without the interpreter's teardown."""
    if "jax" not in sys.modules:
        sys.exit(code)
    import logging

    logging.shutdown()
    _release_worker_resources()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
