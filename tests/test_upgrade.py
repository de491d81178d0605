"""`dnn upgrade` and the `dnn N` line (issue 17, point 8).

Version 1 is the only language version, so every example upgrades to itself; the machinery
(rewrites chained version by version, the version line renumbered) is checked with rewrites
registered here for made-up versions 2 and 3.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from dnn.compiler import ast, upgrade
from dnn.compiler.diagnostics import E_VERSION, W_NO_VERSION, SpecError
from dnn.compiler.driver import loads
from dnn.runtime.cli import main

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.dnn"))
SPEC = """# a comment on top
model m {
  input x: f32[4]
  dense(8) -> relu
  dense(2)
}
"""


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_upgrades_to_itself(path: Path) -> None:
    text = path.read_text()
    done = upgrade.upgrade(text, str(path))
    assert done.text == text
    assert (done.from_version, done.to_version, done.rewrites) == (1, 1, 0)


def test_a_file_without_the_version_line_warns_and_upgrade_adds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "old.dnn"
    spec.write_text(SPEC)
    assert main(["check", str(spec)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(
        f"{spec}:1:1: warning[{W_NO_VERSION}]: no `dnn N` line: read as language version 1\n"
        "1 | # a comment on top\n"
        "  | ^\n"
        "  hint: start the file with `dnn 1` (`dnn upgrade FILE --write` adds it)"
    )
    assert main(["upgrade", str(spec)]) == 0  # prints, writes nothing
    assert capsys.readouterr().out == "dnn 1\n\n" + SPEC and spec.read_text() == SPEC
    assert main(["upgrade", str(spec), "--write"]) == 0
    assert capsys.readouterr().err == f"{spec}: upgraded (no `dnn N` line -> version 1)\n"
    assert spec.read_text() == "dnn 1\n\n" + SPEC
    assert loads(spec.read_text(), str(spec)).warnings == ()
    assert main(["upgrade", str(spec), "--write"]) == 0
    assert capsys.readouterr().err == f"{spec}: already version 1\n"


def test_a_version_newer_than_this_dnn_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "new.dnn"
    spec.write_text("dnn 7\n" + SPEC)
    assert main(["upgrade", str(spec), "--write"]) == 1
    assert capsys.readouterr().err == (
        f"{spec}:1:1: error[{E_VERSION}]: this spec is written in language version 7, newer "
        "than this dnn reads (version 1)\n"
        "1 | dnn 7\n"
        "  | ^^^^^\n"
        "  hint: upgrade dnn to read it (`pip install --upgrade dnn`); `dnn upgrade` only "
        "moves specs forward\n"
        "1 error\n"
    )
    assert spec.read_text() == "dnn 7\n" + SPEC
    with pytest.raises(SpecError) as info:
        upgrade.upgrade("dnn 0\n" + SPEC, "zero.dnn")
    (d,) = info.value.diagnostics
    assert (d.code, d.message, d.hint) == (
        E_VERSION,
        "there is no language version 0: versions start at 1",
        "write `dnn 1`",
    )


def _rename(old: str, new: str) -> upgrade.Rewrite:
    """A rewrite: the word `old` (a layer called, or bare in a chain) becomes `new`."""

    def fn(node: object) -> object:
        if isinstance(node, ast.Name) and node.id == old:
            return ast.Name(new, node.span)
        return node

    return lambda module: upgrade.replace_nodes(module, fn)


def test_rewrites_run_version_by_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Made-up versions: 1 -> 2 renames `dense` to `linear`, 2 -> 3 `linear` to `affine` and
    `relu` to `rectify`; a version-1 file comes out at version 3 with both applied, in order;
    a version-2 file gets only the second."""
    monkeypatch.setitem(upgrade.REWRITES, 1, (_rename("dense", "linear"),))
    monkeypatch.setitem(
        upgrade.REWRITES, 2, (_rename("linear", "affine"), _rename("relu", "rectify"))
    )
    monkeypatch.setattr(upgrade, "CURRENT", 3)
    spec = tmp_path / "v1.dnn"
    spec.write_text("dnn 1\n\n" + SPEC)
    assert main(["upgrade", str(spec), "--write"]) == 0
    assert capsys.readouterr().err == f"{spec}: upgraded (version 1 -> version 3)\n"
    want = "dnn 3\n\n" + SPEC.replace("dense(8) -> relu", "affine(8) -> rectify").replace(
        "dense(2)", "affine(2)"
    )
    assert spec.read_text() == want
    two = upgrade.upgrade("dnn 2\n\n" + SPEC.replace("dense", "linear"), "v2.dnn")
    assert two.text == want
    assert (two.from_version, two.rewrites) == (2, 2)
    # no rewrite for a version: only the number changes, the text is kept as written
    monkeypatch.setattr(upgrade, "REWRITES", {})
    messy = "dnn   1   # the version\nmodel m {\n    input x: f32[4]\n}\n"
    assert upgrade.upgrade(messy).text == messy.replace("dnn   1", "dnn   3")


def test_upgrade_does_not_import_jax(tmp_path: Path) -> None:
    spec = tmp_path / "s.dnn"
    spec.write_text(SPEC)
    code = (
        "import sys\nfrom dnn.runtime.cli import main\n"
        f"assert main(['upgrade', {str(spec)!r}]) == 0\n"
        "assert 'jax' not in sys.modules, 'jax imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "dnn 1\n\n" + SPEC
