"""The command line as a user runs it: exit codes, output formats, no JAX in the front end
(through `main`, the `dnn` executable's own function; a few tests launch the executable)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

from dnn.runtime.cli import main

ROOT = Path(__file__).parent.parent
CNN = str(ROOT / "examples" / "digits_cnn.dnn")


def dnn(*args: str) -> subprocess.CompletedProcess[str]:
    """`dnn ARGS` in this process: its exit status and what it wrote (a launch costs about
    0.6 s; `launch` keeps the tests of the executable itself). A traceback fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse: usage errors, --version
            code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(["dnn", *args], code, out.getvalue(), err.getvalue())


def launch(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m dnn ARGS` as a user runs it, in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "dnn", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=ROOT,
        timeout=60,
    )


def test_check_ok() -> None:
    r = dnn("check", CNN)
    assert r.returncode == 0, r.stderr
    assert "ok (17 layers, 62,634 params)" in r.stdout


def test_check_error_exit_1_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dnn"
    bad.write_text("model m {\n  input x: f32[4]\n  dropot(0.5)\n}\n")
    r = launch("check", str(bad))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert f"{bad}:3:3: error[E0202]: unknown layer `dropot`" in r.stderr
    assert "3 |   dropot(0.5)\n  |   ^^^^^^" in r.stderr
    assert "hint: did you mean `dropout`?" in r.stderr


def test_check_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dnn"
    bad.write_text("model m {\n  input x: f32[4]\n  dense(unit = 3)\n}\n")
    r = dnn("check", "--format", "json", str(bad))
    assert r.returncode == 1
    (d,) = json.loads(r.stdout)["diagnostics"]
    assert (d["file"], d["line"], d["col"], d["severity"]) == (str(bad), 3, 9, "error")
    assert d["message"] == "unknown argument `unit` for `dense`"
    assert d["hint"].startswith("did you mean `units`")
    assert d["end_line"] == 3 and d["end_col"] > d["col"]


def test_usage_error_exit_2() -> None:
    assert launch("check").returncode == 2
    assert launch("frobnicate").returncode == 2
    assert dnn("summary", CNN, "--format", "yaml").returncode == 2


def test_missing_file_is_a_user_error() -> None:
    r = dnn("check", "no/such/file.dnn")
    assert r.returncode == 1 and "cannot read `no/such/file.dnn`" in r.stderr
    assert "Traceback" not in r.stderr


def test_set_override() -> None:
    r = dnn("summary", CNN, "--set", "width=64", "--format", "json")
    assert r.returncode == 0, r.stderr
    layers = json.loads(r.stdout)["layers"]
    assert layers[1]["op"] == "conv2d" and layers[1]["output_shape"] == [None, 8, 8, 64]
    r = dnn("check", CNN, "--set", "widht=64")
    assert r.returncode == 1 and "did you mean `width`?" in r.stderr


def test_summary_json_shape() -> None:
    r = dnn(
        "summary", str(ROOT / "tests" / "fixtures" / "lecture_two_tower.dnn"), "--format", "json"
    )
    data = json.loads(r.stdout)
    assert data["totals"] == {"params": 468, "trainable": 468, "non_trainable": 0, "bytes": 1872}
    assert {"name", "op", "output_shape", "params"} <= set(data["layers"][0])


def test_summary_text_table() -> None:
    r = dnn("summary", str(ROOT / "tests" / "fixtures" / "lecture_two_tower.dnn"))
    assert r.returncode == 0
    assert "Total params: 468" in r.stdout and "(None, 4)" in r.stdout


def test_fmt_check_and_diff(tmp_path: Path) -> None:
    f = tmp_path / "m.dnn"
    f.write_text("model m{\n input x:f32[4]\n dense(2)\n}\n")
    r = dnn("fmt", "--check", str(f))
    assert r.returncode == 1 and "would be reformatted" in r.stderr
    r = dnn("fmt", "--diff", str(f))
    assert r.returncode == 0 and "+  input x: f32[4]" in r.stdout
    assert f.read_text().startswith("model m{")  # --diff writes nothing
    assert dnn("fmt", str(f)).returncode == 0
    assert f.read_text() == "model m {\n  input x: f32[4]\n  dense(2)\n}\n"
    assert dnn("fmt", "--check", str(f)).returncode == 0
    assert launch("fmt", "-", stdin="param a=1\n").stdout == "param a = 1\n"


def test_help() -> None:
    r = dnn("help", "dense")
    assert r.returncode == 0 and "units" in r.stdout and "y = x W + b" in r.stdout
    r = dnn("help", "--format", "json")
    data = json.loads(r.stdout)
    assert data["layers"]["dense"]["args"]["units"]["required"] is True
    assert "swish" in data["activations"]["silu"]["aliases"]
    assert data["optimizers"]["adam"]["args"]["lr"]["default"] == "1e-3"
    r = dnn("help", "dropot")
    assert r.returncode == 1 and "did you mean `dropout`?" in r.stderr


# Issue 14, class 6 (runs and interruption): `dnn --version` was missing.


def test_version_prints_the_package_version() -> None:
    from importlib import metadata

    r = launch("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"dnn {metadata.version('dnn')}\n"
    assert dnn("help").stdout.endswith(f"\ndnn {metadata.version('dnn')}\n")


# Issue 14, class 6: a run that trains nothing (every layer with weights frozen, or a model
# without weights) was silent; `dnn check` warns where the spec alone tells.

DIGITS_MLP = """dnn 1
model m {
  input x: f32[64]
  dense(16) -> relu
  dense(10)
}
data {
  source = builtin("digits")
}
train {
  epochs = 1
  freeze = ["dense*"]
}
"""


def test_check_warns_when_freeze_covers_every_layer_with_weights(tmp_path: Path) -> None:
    spec = tmp_path / "frozen.dnn"
    spec.write_text(DIGITS_MLP)
    r = dnn("check", str(spec))
    assert r.returncode == 0 and r.stdout == f"{spec}: ok (4 layers, 1,210 params)\n"
    assert r.stderr.splitlines() == [
        f"{spec}:12:12: warning[W0804]: `freeze` covers every layer with weights: "
        "training changes no weight",
        '12 |   freeze = ["dense*"]',
        "   |            ^^^^^^^^^^",
        "  hint: leave out of `freeze` the layers to train (`dnn summary` lists the layers)",
    ]
    r = dnn("check", str(spec), "--set", 'train.freeze=["dense"]')  # `dense_1` still trains
    assert r.returncode == 0 and r.stderr == ""


def test_check_warns_when_the_model_has_no_weights(tmp_path: Path) -> None:
    spec = tmp_path / "none.dnn"
    spec.write_text(
        'dnn 1\nmodel m {\n  input x: f32[2]\n  relu\n}\ndata {\n  source = builtin("moons")\n}\n'
    )
    r = dnn("check", str(spec))
    assert r.returncode == 0 and r.stderr.splitlines() == [
        f"{spec}:2:1: warning[W0804]: model `m` has no weights: training changes nothing",
        "2 | model m {",
        "  | ^^^^^^^^^",
        "  hint: add a layer with weights, such as `dense(N)`",
    ]
    model_only = tmp_path / "model_only.dnn"  # a model to summarize, not to train: no warning
    model_only.write_text("dnn 1\nmodel m {\n  input x: f32[2]\n  relu\n}\n")
    r = dnn("check", str(model_only))
    assert r.returncode == 0 and r.stderr == ""


def test_front_end_never_imports_jax(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from dnn.runtime.cli import main\n"
        f"for argv in (['check', {CNN!r}], ['summary', {CNN!r}], ['fmt', '--check', {CNN!r}],"
        " ['help', 'adam']):\n"
        "    main(argv)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax')]\n"
        "print('clean')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "clean" in r.stdout, r.stderr
