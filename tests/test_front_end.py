"""Issue 14, class 10 (the front end itself): what no spec may do to `check`, `fmt`, `summary`.

Each case was first reproduced from the command line: a traceback, a silent "ok", a missed
error, a message that contradicts itself, or a check that runs for minutes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dnn.compiler import check
from dnn.compiler.diagnostics import E_FILE, E_MODEL, W_NO_MODEL
from test_cli import dnn as run

import dnn

ROOT = Path(__file__).parent.parent
NOT_UTF8 = b"dnn 1\nmodel m {\n  input x: f32[4]  # caf\xe9\n  dense(2)\n}\n"


def launch(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m dnn ARGS` in a new process, reading `stdin` (bytes as they are)."""
    r = subprocess.run(
        [sys.executable, "-m", "dnn", *args],
        capture_output=True,
        input=stdin,
        cwd=ROOT,
        timeout=60,
    )
    out, err = r.stdout.decode(), r.stderr.decode()
    return subprocess.CompletedProcess(r.args, r.returncode, out, err)


# ---------------------------------------------------------------- files that are not UTF-8 text


EXTRA = {
    "graph": ["-o", "{tmp}/g.svg"],
    "eval": ["--run", "{tmp}"],
    "predict": ["--run", "{tmp}", "--input", "{tmp}/x.npy", "--output", "{tmp}/y.csv"],
    "diff": ["{tmp}/latin1.dnn"],
}
EXIT = {"diff": 2}  # diff(1)'s convention: 1 means "different"


@pytest.mark.parametrize(
    "command", ["check", "fmt", "summary", "graph", "diff", "train", "eval", "predict"]
)
def test_a_file_that_is_not_utf8_is_a_diagnostic_in_every_command(
    tmp_path: Path, command: str
) -> None:
    spec = tmp_path / "latin1.dnn"
    spec.write_bytes(NOT_UTF8)
    extra = [a.format(tmp=tmp_path) for a in EXTRA.get(command, [])]
    r = run(command, str(spec), *extra)
    assert "Traceback" not in r.stderr and r.returncode == EXIT.get(command, 1), r.stderr
    assert f"{spec}:3:25: error[{E_FILE}]: cannot read `{spec}`: not UTF-8 text (byte 0xe9)" in (
        r.stderr
    )
    assert "3 |   input x: f32[4]  # caf\ufffd\n  | " + " " * 24 + "^\n" in r.stderr
    assert "hint: a spec is a UTF-8 text file" in r.stderr


def test_binary_input_is_shown_without_control_characters(tmp_path: Path) -> None:
    spec = tmp_path / "blob.dnn"
    spec.write_bytes(b"\x1b[31m\x00\x01\xff" + bytes(range(256)) * 40)
    r = run("check", str(spec))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{spec}:1:8: error[{E_FILE}]" in r.stderr and "\x1b" not in r.stderr
    shown = r.stderr.splitlines()[1]
    assert shown.startswith("1 | \ufffd[31m") and len(shown) < 100  # cut, not 10 kB of noise


def test_fmt_of_stdin_that_is_not_utf8(tmp_path: Path) -> None:
    r = launch("fmt", "-", stdin=NOT_UTF8)
    assert r.returncode == 1 and f"<stdin>:3:25: error[{E_FILE}]" in r.stderr


def test_load_raises_spec_error_for_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    spec = tmp_path / "latin1.dnn"
    spec.write_bytes(NOT_UTF8.replace(b"\n", b"\r\n"))  # CRLF: columns count characters
    with pytest.raises(dnn.SpecError) as info:
        dnn.load(str(spec))
    (d,) = info.value.diagnostics
    assert (d.code, d.span.line, d.span.col) == (E_FILE, 3, 25)
    assert d.message == f"cannot read `{spec}`: not UTF-8 text (byte 0xe9)"


def test_an_import_that_is_not_utf8_is_reported_where_it_is_imported(tmp_path: Path) -> None:
    (tmp_path / "lib.dnn").write_bytes(b"block b() {\n  dense(2) # \xff\n}\n")
    main = tmp_path / "main.dnn"
    main.write_text('import "lib.dnn"\nmodel m {\n  input x: f32[4]\n  b()\n}\n')
    with pytest.raises(dnn.SpecError) as info:
        dnn.load(str(main))
    d = info.value.diagnostics[0]
    assert (d.code, d.span.path, d.span.line, d.span.col) == (
        E_FILE,
        str(tmp_path / "lib.dnn"),
        2,
        14,
    )
    assert [(n, s.path, s.line) for n, s in d.notes] == [("imported here", str(main), 1)]


def test_crlf_files_still_read_as_before(tmp_path: Path) -> None:
    spec = tmp_path / "crlf.dnn"
    spec.write_bytes(b"model m {\r\n  input x: f32[4]\r\n  dense(2)\r\n}\r\n")
    assert dnn.load(str(spec)).model.params == 10


# ---------------------------------------------------------------- specs without a model
# `dnn train` refuses them; `dnn check` says the same as a warning, except for a block library
# (blocks and params that other specs import), which checks clean.


@pytest.mark.parametrize(
    ("src", "where", "message"),
    [
        ("", "1:1", "nothing to train: the spec has no model"),
        ("dnn 1\n# a comment\n", "1:1", "nothing to train: the spec has no model"),
        (
            "dnn 1\ntrain {\n  epochs = 3\n}\n",
            "2:1",
            "nothing to train: the spec has a `train` section but no model",
        ),
    ],
)
def test_check_warns_where_train_refuses(
    tmp_path: Path, src: str, where: str, message: str
) -> None:
    spec = tmp_path / "s.dnn"
    spec.write_text(src)
    r = run("check", str(spec))
    assert r.returncode == 0 and r.stdout == f"{spec}: ok (no model)\n", r.stderr
    assert f"{spec}:{where}: warning[{W_NO_MODEL}]: {message}\n" in r.stderr
    assert "hint: define one in this file: `model NAME {" in r.stderr
    r = run("train", str(spec), "--out", str(tmp_path / "run"))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{spec}:{where}: error[{E_MODEL}]: {message}\n" in r.stderr


def test_a_block_library_checks_clean_and_does_not_train(tmp_path: Path) -> None:
    lib = tmp_path / "lib.dnn"
    lib.write_text("dnn 1\nparam width = 8\nblock b(c) {\n  dense(c)\n}\n")
    r = run("check", str(lib))
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == f"{lib}: ok (no model; 1 block, 1 param to import)\n"
    assert dnn.load(str(lib)).warnings == ()
    r = run("train", str(lib), "--out", str(tmp_path / "run"))
    assert r.returncode == 1
    assert f"{lib}:1:1: error[{E_MODEL}]: nothing to train: the spec has no model" in r.stderr
    r = run("check", str(ROOT / "examples" / "blocks" / "resnet.dnn"))
    assert (r.returncode, r.stderr) == (0, ""), r.stderr


def test_a_spec_of_sections_only_still_builds_its_optimizer() -> None:
    program = dnn.loads("train {\n  optimizer = sgd(lr = 0.1)\n}\n")
    assert [d.code for d in program.warnings] == [W_NO_MODEL]


# ---------------------------------------------------------------- every unknown word in one run

UNKNOWN_WORDS = """\
dnn 1
block b(c) {
  dense(c) -> relux
  dropot(0.1)
}
model m {
  input x: f32[8]
  h = foo(3, widht)
  y = dense(in.channels)(h) -> gelux
  z = b(4)(h)
  w = add(y, zzz)
  q = b(unitz)
  output o = dense(2)(w) -> softmaxx
}
"""


def diagnostics(src: str) -> list[str]:
    with pytest.raises(dnn.SpecError) as info:
        dnn.loads(src, "spec.dnn")
    return [
        f"{d.span.line}:{d.span.col} {d.code} {d.message} | {d.hint}"
        for d in info.value.diagnostics
    ]


def test_every_unknown_word_is_reported_past_the_first() -> None:
    # After `foo`, the values that depend on it are poisoned; the checker walks on through
    # the chain, the block's body and the later statements, reporting each unknown word
    # once, and nothing that only follows from the first mistake.
    assert diagnostics(UNKNOWN_WORDS) == [
        "3:15 E0202 unknown layer `relux` | did you mean `relu`, `relu6` or `prelu`?",
        "4:3 E0202 unknown layer `dropot` | did you mean `dropout`?",
        "8:7 E0202 unknown layer `foo` | see `dnn help layers`",
        "8:14 E0201 unknown name `widht` | values in scope: `x`",
        "9:13 E0201 `in` is only defined inside a block or repeat"
        " | refer to a named value or input instead",
        "9:32 E0202 unknown layer `gelux` | did you mean `gelu`, `elu` or `selu`?",
        "11:14 E0201 unknown name `zzz` | values in scope: `x`, `h`, `y`, `z`",
        "12:9 E0201 unknown name `unitz` | define it with `param` or as a block argument",
        "13:29 E0202 unknown layer `softmaxx` | did you mean `softmax` or `log_softmax`?",
    ]


def test_a_shape_property_of_a_poisoned_value_is_not_a_second_error() -> None:
    src = "model m {\n  input x: f32[8]\n  h = foo(3)(x)\n  dense(h.channels)(x) -> gelux\n}\n"
    assert [d.split(" |")[0] for d in diagnostics(src)] == [
        "3:7 E0202 unknown layer `foo`",
        "4:27 E0202 unknown layer `gelux`",
    ]


# ---------------------------------------------------------------- explicit padding, per rank

PADDING = "argument `padding` of `{layer}` must be same | valid | int >= 0 | list of {n} ({axes})"
BOTH_SIDES = "padding is zeros added on both sides of each spatial axis"


@pytest.mark.parametrize(
    ("layer", "shape", "padding", "n", "axes", "got", "hint"),
    [
        (
            "conv1d(4, 3",
            "16, 3",
            "[1, 1]",
            "1 int",
            "length",
            "a list of 2 ints",
            f"{BOTH_SIDES} (length): write `padding = 1`",
        ),
        (
            "conv1d(4, 3",
            "16, 3",
            "[[1, 1]]",
            "1 int",
            "length",
            "a list of 1 list",
            f"{BOTH_SIDES}: write `padding = [1]` (length)",
        ),
        (
            "conv2d(4, 3",
            "16, 16, 3",
            "[[1, 1], [2, 2]]",
            "2 ints",
            "height, width",
            "a list of 2 lists",
            f"{BOTH_SIDES}: write `padding = [1, 2]` (height, width)",
        ),
        (
            "conv2d(4, 3",
            "16, 16, 3",
            "[[0, 1], [1, 1]]",
            "2 ints",
            "height, width",
            "a list of 2 lists",
            f"{BOTH_SIDES}, the same before and after; per-side pairs are not taken",
        ),
        (
            "conv3d(4, 3",
            "8, 8, 8, 3",
            "[1, 2]",
            "3 ints",
            "depth, height, width",
            "a list of 2 ints",
            f"{BOTH_SIDES}: one int per axis (depth, height, width), or one int for all",
        ),
        (
            "maxpool1d(2",
            "16, 3",
            "[1, 1]",
            "1 int",
            "length",
            "a list of 2 ints",
            f"{BOTH_SIDES} (length): write `padding = 1`",
        ),
    ],
)
def test_padding_message_states_one_int_per_spatial_axis(
    layer: str, shape: str, padding: str, n: str, axes: str, got: str, hint: str
) -> None:
    src = f"model m {{\n  input x: f32[{shape}]\n  {layer}, padding = {padding})\n}}\n"
    col = len(f"  {layer}, ") + 1
    name = layer.split("(")[0]
    message = PADDING.format(layer=name, n=n, axes=axes)
    assert diagnostics(src) == [f"3:{col} E0305 {message}, got {got} | {hint}"]


@pytest.mark.parametrize(
    ("layer", "shape", "padding", "out"),
    [
        ("conv1d(4, 3", "16, 3", "1", (16, 4)),
        ("conv1d(4, 3", "16, 3", "[2]", (18, 4)),
        ("conv2d(4, 3", "16, 16, 3", "[1, 2]", (16, 18, 4)),
        ("conv3d(4, 3", "8, 8, 8, 3", "[0, 1, 2]", (6, 8, 10, 4)),
    ],
)
def test_padding_that_the_message_offers_is_taken(
    layer: str, shape: str, padding: str, out: tuple[int, ...]
) -> None:
    src = f"model m {{\n  input x: f32[{shape}]\n  {layer}, padding = {padding})\n}}\n"
    assert dnn.loads(src).model.nodes[-1].shape == out


# ---------------------------------------------------------------- repeat: bounded check time

RESNET = str(ROOT / "examples" / "blocks" / "resnet.dnn")
REPEATS = {
    "nested blocks, named values": (
        'import "' + RESNET + '"\nmodel r {{\n  input image: f32[8, 8, 1]\n  conv_bn(16)\n'
        "  repeat {n} {{ basic(16) }}\n  basic(16)\n  global_avgpool\n  dense(10)\n}}\n"
    ),
    "layers at the top, counters shared": (
        "model m {{\n  input x: f32[8]\n  dense(8)\n"
        "  repeat {n} {{\n    h = dense(8)(in) -> relu\n    dense(8)(add(in, h))\n  }}\n"
        "  h = dense(8) -> relu\n  dense(2)\n}}\n"
    ),
    "nested repeats in a block used twice": (
        "block stack(c) {{\n  repeat 2 {{\n    repeat {n} {{ dense(c) -> relu }}\n"
        "    batchnorm\n  }}\n}}\nmodel m {{\n  input x: f32[8]\n  stack(8)\n  stack(8)\n}}\n"
    ),
    "a skip from outside the repeat": (
        "model m {{\n  input x: f32[8]\n  s = dense(8)(x)\n  dense(8)\n"
        "  repeat {n} {{ add(in, s) -> dense(8) }}\n  dense(1)\n}}\n"
    ),
    # `in` is also `s` in the first iteration only: elaborated, not replicated
    "its first input also named": (
        "model m {{\n  input x: f32[8]\n  s = dense(8)(x)\n"
        "  repeat {n} {{ add(in, s) -> dense(8) }}\n  dense(1)\n}}\n"
    ),
}


def graph(src: str) -> list[tuple[Any, ...]]:
    model = dnn.loads(src, "spec.dnn").model
    assert model is not None
    return [
        (n.name, n.op, n.args, n.inputs, n.shape, n.dtype, n.params, n.state, n.scope, n.span)
        for n in model.nodes
    ] + [model.outputs, model.params]


@pytest.mark.parametrize("case", sorted(REPEATS))
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_a_replicated_repeat_is_its_full_expansion(
    case: str, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = REPEATS[case].format(n=n)
    iterations = []
    monkeypatch.setattr(
        check.Checker, "_iteration", spy(check.Checker._iteration, iterations), raising=True
    )
    fast = graph(src)
    elaborated = len(iterations)
    monkeypatch.setattr(check.Checker, "_replicable", lambda *a: False)
    iterations.clear()
    assert fast == graph(src)  # names, ops, arguments, inputs, shapes, params, scopes, spans
    replicated = elaborated < len(iterations)
    assert replicated == (case != "its first input also named" and (n > 1 or "repeat 2" in src))


def spy(f: Any, calls: list[Any]) -> Any:
    def wrapped(*a: Any, **k: Any) -> Any:
        calls.append(a)
        return f(*a, **k)

    return wrapped


@pytest.mark.parametrize(
    "body",
    [
        "repeat {n} {{ dense(8) }}",  # changes the shape: [4] -> [8]
        "repeat i in 0..{n} {{ dense(4 + i) }}",  # reads the loop index
    ],
)
def test_a_repeat_that_varies_is_elaborated_each_time(
    body: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    iterations: list[Any] = []
    monkeypatch.setattr(check.Checker, "_iteration", spy(check.Checker._iteration, iterations))
    src = f"model m {{{{\n  input x: f32[4]\n  {body}\n}}}}\n".format(n=3)
    shapes = [n.shape for n in dnn.loads(src).model.nodes]
    assert len(iterations) == 3 and len(shapes) == 4


def test_repeat_100000_basic_blocks_is_refused_at_once() -> None:
    src = REPEATS["nested blocks, named values"].format(n=100000)
    t = time.perf_counter()
    found = diagnostics(src)
    assert time.perf_counter() - t < 10  # minutes before (3,000 repeats took 8 s)
    assert found == [
        "5:10 E0603 `repeat 100,000` of 7 layers expands the model to 700,004 layers;"
        " the limit is 100,000 | lower the count, or make the body smaller; a model this large"
        " is beyond what dnn checks in bounded time (docs/performance.md)"
    ]


def test_the_limit_is_exact() -> None:
    # 4 layers before, 7 per basic block, 2 after (+ 7 for the extra basic): 100,000 fits
    def layers(n: int) -> str:
        return REPEATS["nested blocks, named values"].format(n=n)

    assert len(dnn.loads(layers(14283)).model.nodes) == check.MAX_LAYERS - 6
    assert diagnostics(layers(14285))[0].startswith(
        "6:3 E0603 this line expands the model to more than 100,000 layers"
    )


def test_a_varying_repeat_and_a_block_explosion_stop_at_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The mechanism at a limit of 2,000 (test_the_limit_is_exact holds the real one): a repeat
    # of 200,000 stops once the graph passes the limit, instead of elaborating 200,000 layers
    # (at 100,000 this took 16 s of the suite).
    for module in ("state", "graph"):
        monkeypatch.setattr(f"dnn.compiler.elaborate.{module}.MAX_LAYERS", 2_000)
    src = "model m {\n  input x: f32[4]\n  repeat i in 0..200000 { dense(4 + i % 2) }\n  dense(2)\n}\n"
    started = time.perf_counter()
    assert [d.split(" |")[0] for d in diagnostics(src)] == [
        "3:18 E0603 `repeat 200,000` expands the model to more than 2,000 layers;"
        " the limit is 2,000"
    ]
    assert time.perf_counter() - started < 5  # 2,000 layers, not 200,000 (about 30 s)
    blocks = "block b0() {\n  dense(4)\n}\n" + "".join(
        f"block b{k}() {{\n  b{k - 1}()\n  b{k - 1}()\n}}\n" for k in range(1, 18)
    )
    src = blocks + "model m {\n  input x: f32[4]\n  b17()\n}\n"
    (d,) = diagnostics(src)
    assert d.startswith("74:3 E0603 this line expands the model to more than 2,000 layers")
    assert "| use fewer or smaller blocks;" in d
