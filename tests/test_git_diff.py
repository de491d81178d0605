"""`dnn diff` with git: REV:path, the external diff driver and the textconv, in a temporary
repository holding a spec that imports blocks from another file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
DNN = Path(sys.executable).parent / "dnn"  # the installed console script
GIT = shutil.which("git")

pytestmark = pytest.mark.skipif(GIT is None or not DNN.exists(), reason="needs git and `dnn`")


def git(repo: Path, *args: str) -> str:
    r = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, timeout=60, env=_env()
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def _env() -> dict[str, str]:
    """No user or system git configuration, no pager, no colour."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return {**keep, "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "NO_COLOR": "1"}


def dnn(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DNN), *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=_env()
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two commits of models/resnet_small.dnn (the second widens the last block), and a
    working-tree edit of the epochs; `.gitattributes` routes *.dnn to the `dnn` driver."""
    repo = tmp_path_factory.mktemp("repo")
    (repo / "models" / "blocks").mkdir(parents=True)
    shutil.copy(EXAMPLES / "blocks" / "resnet.dnn", repo / "models" / "blocks" / "resnet.dnn")
    spec = repo / "models" / "resnet_small.dnn"
    base = (EXAMPLES / "resnet_small.dnn").read_text()
    spec.write_text(base)
    (repo / ".gitattributes").write_text("*.dnn diff=dnn\n")
    git(repo, "init", "-q")
    git(repo, "config", "user.name", "Test")
    git(repo, "config", "user.email", "test@example.com")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    spec.write_text(base.replace("  basic(32)\n", "  basic(64)\n"))
    git(repo, "commit", "-q", "-am", "wider last block")
    spec.write_text(
        base.replace("  basic(32)\n", "  basic(64)\n").replace("epochs = 20", "epochs = 25")
    )
    return repo


def test_rev_path(repo: Path) -> None:
    r = dnn(repo, "diff", "HEAD~1:models/resnet_small.dnn", "HEAD:models/resnet_small.dnn")
    assert r.returncode == 1, r.stderr
    assert "changed  basic_3/h/conv2d" in r.stdout and "filters 32 → 64" in r.stdout
    assert "added    basic_3/conv2d_1" in r.stdout  # the projection the wider block needs
    assert "43,418 → 83,162 (+39,744)" in r.stdout


def test_rev_path_from_a_subfolder_against_the_working_tree(repo: Path) -> None:
    r = dnn(
        repo / "models", "diff", "--format", "json", "HEAD:resnet_small.dnn", "resnet_small.dnn"
    )
    assert r.returncode == 1, r.stderr
    assert '"path": "train.epochs"' in r.stdout and '"layers": []' in r.stdout
    same = dnn(repo / "models", "diff", "HEAD:./resnet_small.dnn", "HEAD:resnet_small.dnn")
    assert same.returncode == 0 and "equivalent" in same.stdout


def test_rev_path_errors(repo: Path) -> None:
    bad_rev = dnn(repo, "diff", "HEAD~9:models/resnet_small.dnn", "models/resnet_small.dnn")
    assert (
        bad_rev.returncode == 2 and "cannot read `HEAD~9:models/resnet_small.dnn`" in bad_rev.stderr
    )
    bad_path = dnn(repo, "diff", "HEAD:models/nope.dnn", "models/resnet_small.dnn")
    assert bad_path.returncode == 2 and "does not exist in 'HEAD'" in bad_path.stderr
    no_git = subprocess.run(
        [str(DNN), "diff", "HEAD:models/resnet_small.dnn", "models/resnet_small.dnn"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        env={**_env(), "PATH": str(Path(sys.executable).parent)},
    )
    assert no_git.returncode == 2 and "git is not installed" in no_git.stderr


def test_git_diff_with_the_external_driver(repo: Path) -> None:
    cfg = ("-c", f"diff.dnn.command={DNN} diff --git-external")
    between = git(repo, *cfg, "diff", "HEAD~1", "HEAD")
    assert "dnn diff a/models/resnet_small.dnn → b/models/resnet_small.dnn" in between
    assert "filters 32 → 64" in between and "(+39,744)" in between
    worktree = git(repo, *cfg, "diff")
    assert "train.epochs  20 → 25" in worktree and "params  83,162 (unchanged)" in worktree
    log = git(repo, *cfg, "log", "-p", "--ext-diff", "--format=commit %s")
    assert "commit wider last block" in log and "filters 32 → 64" in log
    assert "dnn diff /dev/null → b/models/resnet_small.dnn" in log  # the first commit
    assert re.search(r"added +image +input +input f32\[8, 8, 1\]", log)
    assert "no model in this file (blocks or settings): showing a text diff" in log
    assert "+block basic(c, stride = 1) {" in log  # the imported blocks file, as text


def test_git_log_with_the_textconv(repo: Path) -> None:
    cfg = ("-c", f"diff.dnn.textconv={DNN} diff --textconv")
    log = git(repo, *cfg, "log", "-p", "-1", "--format=commit %s")
    assert "-  basic_3/h/conv2d = conv2d(filters = 32" in log
    assert "+  basic_3/h/conv2d = conv2d(filters = 64" in log
    assert "+  # 83,162 params" in log
    assert "not resolved" not in log  # the old blob's import found through its tracked path


def test_external_driver_falls_back_to_text_on_a_broken_spec(repo: Path, tmp_path: Path) -> None:
    old, new = tmp_path / "old.dnn", tmp_path / "new.dnn"
    old.write_text((EXAMPLES / "digits_mlp.dnn").read_text())
    new.write_text(old.read_text().replace("dropout(0.2)", "dropot(0.2)"))
    args = [
        "diff",
        "--git-external",
        "m.dnn",
        str(old),
        "0" * 40,
        "100644",
        str(new),
        "0" * 40,
        "100644",
    ]
    r = dnn(repo, *args)
    assert r.returncode == 0  # git stops at a driver that fails
    assert "unknown layer `dropot`" in r.stdout and "+  dropot(0.2)" in r.stdout
    seven = dnn(repo, *[a for a in args if a != "--git-external"])  # detected by its shape
    assert seven.returncode == 0 and seven.stdout == r.stdout
