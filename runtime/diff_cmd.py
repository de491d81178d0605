"""`dnn diff`: read two specs (files, git revisions, or git's external-diff arguments) and diff.

Exit status as diff(1): 0 equivalent, 1 different, 2 an error (a spec that does not check,
a file or revision that cannot be read, bad usage). Called by git (`--git-external`, or
`--textconv`), it always exits 0 so git carries on, and falls back to text where it must.
No JAX is imported here or by the passes it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from dnn.compiler.diagnostics import E_FILE, Diagnostic, Span, SpecError, render_all
from dnn.compiler.diff import (
    ProgramDiff,
    canonical_text,
    diff,
    render_markdown,
    render_text,
    to_json,
)
from dnn.compiler.driver import loads
from dnn.compiler.ir import Program
from dnn.compiler.resolve import Reader, decode, read_file

EXIT_SAME, EXIT_DIFFERENT, EXIT_ERROR = 0, 1, 2
NULL = "/dev/null"  # what git passes for the missing side of an added or deleted file


@dataclass(frozen=True, slots=True)
class Source:
    """Spec text to compile: what the user called it, the working-tree path, how to import."""

    label: str
    path: str  # imports resolve relative to this path, as if the file were there
    text: str
    reader: Reader = read_file


def _fail(label: str, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(E_FILE, message, Span(label, 1, 1, 1, 1), hint)])


# ------------------------------------------------------------------ reading sources


def read_source(arg: str) -> Source:
    """A file path, or `REV:path` read with `git show` (imports read from the same revision)."""
    if os.path.exists(arg) or ":" not in arg:
        try:
            return Source(arg, arg, read_file(arg))
        except OSError as e:
            raise _fail(arg, f"cannot read `{arg}`: {e.strerror or e}") from None
    rev, _, rel = arg.partition(":")
    return read_revision(arg, rev, rel)


def read_revision(label: str, rev: str, rel: str) -> Source:
    """`git show REV:path`, the path taken relative to the current directory."""
    if shutil.which("git") is None:
        raise _fail(label, f"cannot read `{label}`: git is not installed", "install git")
    work = os.path.realpath(rel)
    top = _toplevel(label, os.path.dirname(work))
    show = _shower(top, rev)
    try:
        text = show(work)
    except OSError as e:
        raise _fail(label, f"cannot read `{label}` from git: {e}", _rev_hint(rev)) from None
    return Source(label, os.path.relpath(work), text, lambda p: show(os.path.realpath(p)))


def _rev_hint(rev: str) -> str:
    return f"check the revision with `git log {rev or 'HEAD'} -- PATH`; paths are relative to here"


def _toplevel(label: str, directory: str) -> str:
    while directory and not os.path.isdir(directory):
        directory = os.path.dirname(directory)
    r = _git(directory, "rev-parse", "--show-toplevel")
    if r.returncode != 0:
        raise _fail(label, f"cannot read `{label}`: `{directory}` is not in a git repository")
    return r.stdout.strip()


def _shower(top: str, rev: str) -> Reader:
    """A reader of files as they are in revision `rev` of the repository at `top`."""

    def show(path: str) -> str:
        inside = os.path.relpath(path, top)
        cmd = ["git", "show", f"{rev}:{inside}"]
        r = subprocess.run(cmd, cwd=top, capture_output=True, check=False)  # bytes: see decode
        if r.returncode != 0:
            why = r.stderr.decode(errors="replace").strip().removeprefix("fatal: ")
            raise OSError(why or f"`{rev}:{inside}` not found")
        return decode(r.stdout, f"{rev}:{inside}")

    return show


def _git(cwd: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def external_sources(argv: list[str]) -> tuple[Source, Source]:
    """Git's 7 external-diff arguments: path old-file old-hex old-mode new-file new-hex new-mode.

    Both sides compile as if they were at `path` in the working tree (imports from there).
    """
    path, old, new = argv[0], argv[1], argv[4]

    def side(file: str, prefix: str) -> Source:
        if file == NULL:  # an added or deleted file: an empty spec on that side
            return Source(NULL, path, "")
        return Source(f"{prefix}/{path}", path, read_file(file))

    return side(old, "a"), side(new, "b")


def looks_external(files: list[str]) -> bool:
    """Seven arguments whose 4th and 7th are file modes: git calling us as GIT_EXTERNAL_DIFF."""
    return len(files) == 7 and all(m == "." or m.isdigit() for m in (files[3], files[6]))


# ------------------------------------------------------------------ the command


def run(args: argparse.Namespace) -> int:
    """Run `dnn diff` for parsed arguments; returns the exit status."""
    if args.textconv:
        return textconv(args.textconv, args.set)
    files: list[str] = args.files
    if args.git_external or looks_external(files):
        if len(files) != 7:
            print("dnn diff: --git-external takes git's 7 arguments", file=sys.stderr)
            return EXIT_ERROR
        return git_external(files, args)
    if len(files) != 2:
        print("dnn diff: give two specs: A.dnn B.dnn (or REV:path)", file=sys.stderr)
        return EXIT_ERROR
    try:
        a, b = read_source(files[0]), read_source(files[1])
    except SpecError as e:
        return _error(e, args.format)
    return compare(a, b, args)


def compare(a: Source, b: Source, args: argparse.Namespace) -> int:
    """Compile both sides, print the diff in the chosen format; 0 equivalent, 1 different."""
    try:
        d = diff(_compile(a, args.set), _compile(b, args.set))
    except SpecError as e:
        return _error(e, args.format)
    d = dataclasses.replace(d, before=a.label, after=b.label)
    print(_render(d, args.format, _wants_color(args.color)))
    return EXIT_SAME if d.equivalent else EXIT_DIFFERENT


def _compile(s: Source, overrides: list[str]) -> Program:
    return loads(s.text, s.path, overrides, s.reader)


def _render(d: ProgramDiff, fmt: str, color: bool) -> str:
    if fmt == "json":
        return to_json(d)
    if fmt == "markdown":
        return render_markdown(d)
    return render_text(d, color)


def _wants_color(choice: str) -> bool:
    from dnn.runtime.cli import _color

    return choice == "always" or (choice == "auto" and _color(sys.stdout))


def _error(e: SpecError, fmt: str) -> int:
    from dnn.runtime.cli import _report

    _report(e, "json" if fmt == "json" else "text")
    return EXIT_ERROR


# ------------------------------------------------------------------ called by git


def git_external(files: list[str], args: argparse.Namespace) -> int:
    """`diff.dnn.command`: print the semantic diff; on a spec error, say so and diff the text."""
    try:
        a, b = external_sources(files)
    except OSError as e:
        print(f"dnn diff: cannot read a side of `{files[0]}`: {e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    header = f"dnn diff {a.label} → {b.label}"
    try:
        pa, pb = _compile(a, args.set), _compile(b, args.set)
    except SpecError as e:
        print(f"{header}\n{render_all(e.diagnostics, e.sources)}\n(showing a text diff)")
        sys.stdout.writelines(_text_diff(a, b))
        return EXIT_SAME
    if pa.model is None and pb.model is None:  # a library of blocks: its text is what changed
        print(f"{header}\nno model in this file (blocks or settings): showing a text diff")
        sys.stdout.writelines(_text_diff(a, b))
        return EXIT_SAME
    d = dataclasses.replace(diff(pa, pb), before=a.label, after=b.label)
    print(_render(d, args.format, _wants_color(args.color)))
    return EXIT_SAME  # git treats any other status as a failure of the driver


def _text_diff(a: Source, b: Source) -> list[str]:
    lines = difflib.unified_diff(
        a.text.splitlines(keepends=True), b.text.splitlines(keepends=True), a.label, b.label
    )
    return [line if line.endswith("\n") else line + "\n" for line in lines]


def textconv(path: str, overrides: list[str]) -> int:
    """`diff.dnn.textconv`: the canonical text of the resolved spec, or the text as it is.

    Git passes an old revision as a temporary copy (same base name, other folder), so its
    imports are resolved as if it were a tracked file of that name in the working tree; if
    none fits, the spec's own text is printed, with the reason as a comment.
    """
    try:
        text = read_file(path)
    except OSError as e:
        print(f"dnn diff: cannot read `{path}`: {e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR
    reason = "it does not check"
    for place in (path, *_tracked_namesakes(path)):
        try:
            program = _compile(Source(path, place, text), overrides)
        except SpecError as e:
            reason = e.diagnostics[0].message if e.diagnostics and place == path else reason
            continue
        sys.stdout.write(canonical_text(program))
        return EXIT_SAME
    sys.stdout.write(f"# dnn: not resolved ({reason}); the text as written:\n{text}")
    return EXIT_SAME


def _tracked_namesakes(path: str) -> list[str]:
    """Tracked files with the base name of `path`, relative to here (git runs us at the top)."""
    if shutil.which("git") is None:
        return []
    r = _git(".", "ls-files", "-z", "--", f":(glob)**/{os.path.basename(path)}")
    found = [p for p in r.stdout.split("\0") if p] if r.returncode == 0 else []
    return [p for p in found if os.path.realpath(p) != os.path.realpath(path)]
