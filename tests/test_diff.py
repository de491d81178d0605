"""`dnn diff`: neutral rewrites are equivalent, every kind of change is reported, and the
parameter delta always equals the difference of the two summaries."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from dnn.compiler.diagnostics import SpecError
from dnn.compiler.diff import (
    ProgramDiff,
    canonical_text,
    diff,
    render_markdown,
    render_text,
)
from dnn.compiler.driver import loads
from dnn.compiler.ir import Program
from dnn.compiler.values import Quantity, Rec, Ref, Symbol
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_cli import dnn

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
# A frozen copy of the digits CNN example (with early stopping): the edits below name its text.
FROZEN = {"digits_cnn": ROOT / "tests" / "fixtures" / "digits_cnn.dnn"}
BASES = ("digits_cnn", "digits_mlp", "resnet_small", "densenet_small", "sequence_lstm")

TWO_TOWER = """dnn 1

model two_tower {
  input a: f32[16]
  input b: f32[32]
  x1 = dense(8)(a) -> relu
  x2 = dense(8)(b) -> relu
  output scores = dense(4)(concat(x1, x2))
}
"""


# ------------------------------------------------------------------ helpers


def text(name: str, *edits: tuple[str, str]) -> str:
    """An example's text with each `old -> new` edit applied (each `old` must be there)."""
    src = FROZEN.get(name, EXAMPLES / f"{name}.dnn").read_text()
    for old, new in edits:
        assert old in src, f"{name}: {old!r} not found"
        src = src.replace(old, new)
    return src


def program(src: str, name: str = "spec") -> Program:
    """Compile as if the text were examples/NAME.dnn (imports resolve from there)."""
    return loads(src, str(EXAMPLES / f"{name}.dnn"))


@cache
def example(name: str) -> Program:
    return program(text(name), name)


def compare(a: Program, b: Program) -> ProgramDiff:
    """diff(a, b), checking the invariants that hold for every pair."""
    d = diff(a, b)
    total = (b.summary().params, a.summary().params)
    assert d.delta == total[0] - total[1]
    assert (d.params_after, d.params_before) == total
    assert sum(x.delta for x in d.layers) == d.delta
    assert d.equivalent == (not d.layers and not d.config)
    json.dumps(d.to_dict())  # always serializable
    render_text(d, color=True), render_markdown(d)
    back = diff(b, a)
    assert back.equivalent == d.equivalent and back.delta == -d.delta
    return d


def variant(name: str, *edits: tuple[str, str]) -> ProgramDiff:
    return compare(example(name), program(text(name, *edits), name))


def statuses(d: ProgramDiff) -> list[tuple[str, str]]:
    return [(x.status, x.path) for x in d.layers]


def changes(d: ProgramDiff, path: str) -> dict[str, tuple[Any, Any]]:
    (layer,) = [x for x in d.layers if x.path == path]
    return {c.field: (c.before, c.after) for c in layer.changes}


def config(d: ProgramDiff) -> dict[str, tuple[Any, Any]]:
    return {c.path: (c.before, c.after) for c in d.config}


def assert_equivalent(a: str, b: str, name: str = "spec") -> None:
    d = compare(program(a, name), program(b, name))
    assert d.equivalent, render_text(d)


# ------------------------------------------------------------------ neutral rewrites


def test_identical_specs_are_equivalent() -> None:
    for name in BASES:
        assert compare(example(name), program(text(name), name)).equivalent


def test_formatting_is_neutral() -> None:
    messy = text(
        "digits_cnn",
        (
            "  conv2d(c, kernel = k, padding = same, use_bias = false, init = he_normal)",
            "      conv2d( c,kernel=k ,\n   padding=same,use_bias=false,\n init=he_normal )",
        ),
        ("dense(128, regularizer = l2(1e-4)) -> relu", "dense(128,regularizer=l2(0.0001))->relu"),
        ("  maxpool(2)\n", "\n\n  maxpool( 2 )\n\n"),
        ("lr = 2e-3", "lr = 0.002"),
    )
    assert_equivalent(text("digits_cnn"), messy, "digits_cnn")


def test_comments_are_neutral() -> None:
    src = text("digits_cnn")
    stripped = re.sub(r"\s*#[^\n]*", "", src)
    commented = src.replace("  flatten\n", "  # flatten the maps\n  flatten  # to a vector\n")
    assert_equivalent(src, stripped, "digits_cnn")
    assert_equivalent(src, commented, "digits_cnn")


def test_keyword_order_is_neutral() -> None:
    assert_equivalent(
        text("digits_cnn"),
        text(
            "digits_cnn",
            (
                "conv2d(c, kernel = k, padding = same, use_bias = false, init = he_normal)",
                "conv2d(c, init = he_normal, use_bias = false, padding = same, kernel = k)",
            ),
            (
                "cosine(decay_steps = 30 epochs, warmup = 50 steps)",
                "cosine(warmup = 50 steps, decay_steps = 30 epochs)",
            ),
            ("{ monitor: val_accuracy, patience: 6 }", "{ patience: 6, monitor: val_accuracy }"),
            ("{ train: 0.8, val: 0.1, test: 0.1 }", "{ test: 0.1, train: 0.8, val: 0.1 }"),
        ),
        "digits_cnn",
    )


def test_param_inlined_is_neutral() -> None:
    inlined = text(
        "digits_cnn",
        ("param width = 32  # override with --set width=64\n", ""),
        ("conv_bn(width * 2)", "conv_bn(64)"),
        ("conv_bn(width)", "conv_bn(32)"),
    )
    assert_equivalent(text("digits_cnn"), inlined, "digits_cnn")


def test_block_written_out_is_neutral() -> None:
    body = "  conv2d({c}, kernel = 3, padding = same, use_bias = false, init = he_normal)\n"
    body += "  batchnorm\n  relu\n"
    written = text(
        "digits_cnn",
        ("  conv_bn(width)\n  conv_bn(width)\n", body.format(c="width") * 2),
        ("  conv_bn(width * 2)\n", body.format(c="width * 2")),
    )
    assert_equivalent(text("digits_cnn"), written, "digits_cnn")


def test_residual_block_written_out_with_names_is_neutral() -> None:
    blocks = """dnn 1

block res(c) {
  h = dense(c)(in) -> relu
  h = dense(c)(h)
  output relu(add(in, h))
}

model m {
  input x: f32[16]
  dense(8)
  res(8)
  res(8)
  dense(2)
}
"""
    written = """dnn 1

model m {
  input x: f32[16]
  a = dense(8)(x)
  h = dense(8)(a) -> relu
  h = dense(8)(h)
  b = relu(add(a, h))
  h = dense(8)(b) -> relu
  h = dense(8)(h)
  relu(add(b, h))
  dense(2)
}
"""
    assert_equivalent(blocks, written)


def test_imported_block_written_out_is_neutral() -> None:
    conv_bn = "  conv2d(16, kernel = 3, padding = 1, use_bias = false) -> batchnorm -> relu\n"
    assert_equivalent(
        text("resnet_small"),
        text("resnet_small", ("  conv_bn(16)\n", conv_bn)),
        "resnet_small",
    )


def test_explicit_default_is_neutral() -> None:
    explicit = text(
        "digits_mlp",
        ("dense(256)", "dense(256, use_bias = true, init = glorot_uniform)"),
        ("dropout(0.2)", "dropout(rate = 0.2)"),
        ("optimizer = adam(lr = 1e-3)", "optimizer = adam(lr = 1e-3, b1 = 0.9, amsgrad = false)"),
        ("  seed = 0\n", "  seed = 0\n  clip = none\n"),
    )
    assert_equivalent(text("digits_mlp"), explicit, "digits_mlp")


def test_reordered_independent_statements_are_neutral() -> None:
    swapped = TWO_TOWER.replace(
        "  x1 = dense(8)(a) -> relu\n  x2 = dense(8)(b) -> relu\n",
        "  x2 = dense(8)(b) -> relu\n  x1 = dense(8)(a) -> relu\n",
    )
    assert_equivalent(TWO_TOWER, swapped)


def test_explicit_default_init_matters_under_a_model_wide_init() -> None:
    base = text("digits_mlp", ("  seed = 0\n", "  seed = 0\n  init = he_normal\n"))
    explicit = base.replace("dense(256)", "dense(256, init = glorot_uniform)")
    d = compare(program(base), program(explicit))
    assert statuses(d) == [("changed", "dense")]
    assert [v.name for v in changes(d, "dense")["init"]] == ["he_normal", "glorot_uniform"]


# ------------------------------------------------------------------ kinds of change


def test_added_layer() -> None:
    d = variant("digits_mlp", ("dense(128) -> relu\n", "dense(128) -> relu\n  dropout(0.1)\n"))
    assert statuses(d) == [("added", "dropout_1")]
    assert changes(d, "dropout_1")["rate"] == (None, 0.1)
    assert d.delta == 0 and not d.config


def test_removed_layer() -> None:
    d = variant("digits_mlp", ("  dropout(0.2)\n", ""))
    assert statuses(d) == [("removed", "dropout")]
    assert d.layers[0].params_before == d.layers[0].params_after == 0


def test_removed_layer_with_params() -> None:
    d = variant("digits_mlp", ("  dense(128) -> relu\n", ""))
    assert statuses(d) == [("removed", "dense_1"), ("removed", "relu_1"), ("shape", "dense_1")]
    assert d.layers[2].changes[0].field == "input_shape"  # the last dense, renamed dense_1
    assert d.delta == -(256 * 128 + 128) + (256 - 128) * 10


def test_moved_layer() -> None:
    d = variant(
        "digits_mlp",
        ("  dropout(0.2)\n  dense(128) -> relu\n", "  dense(128) -> relu\n  dropout(0.2)\n"),
    )
    assert statuses(d) == [("moved", "dropout")]
    assert changes(d, "dropout") == {"inputs": (("relu",), ("relu_1",)), "shape": ((256,), (128,))}


def test_argument_changed() -> None:
    d = variant("digits_cnn", ("dense(128, regularizer = l2(1e-4))", "dense(256)"))
    assert statuses(d) == [("changed", "dense"), ("shape", "relu"), ("shape", "dropout"),
                           ("shape", "dense_1")]  # fmt: skip
    c = changes(d, "dense")
    assert c["units"] == (128, 256) and c["shape"] == ((128,), (256,))
    assert str(c["regularizer"][0]) == "l2(l2 = 1e-4, on = kernel)" and c["regularizer"][1] is None
    assert changes(d, "dense_1") == {"input_shape": ((128,), (256,))}


def test_change_inside_a_repeated_block() -> None:
    d = variant("densenet_small", ("conv2d(k, kernel = 3", "conv2d(k, kernel = 5"))
    assert [s for s, _ in statuses(d)] == ["changed"] * 8  # 2 repeats x 4 iterations
    assert all(changes(d, p) == {"kernel": ((3, 3), (5, 5))} for _, p in statuses(d))


def test_one_more_repetition_adds_one_block() -> None:
    d = variant("resnet_small", ("repeat 2 { basic(16) }", "repeat 3 { basic(16) }"))
    assert {s for s, _ in statuses(d)} == {"added"}
    assert {p.split("/")[0] for _, p in statuses(d)} == {"basic_2"}  # one whole instance
    assert len(d.layers) == 7 and d.delta == 2 * (16 * 16 * 9) + 2 * 64


def test_block_inserted_between_equal_layers_slides_to_whole_instance() -> None:
    d = variant("resnet_small", ("  basic(32)\n", "  basic(32)\n  basic(32)\n"))
    assert {s for s, _ in statuses(d)} == {"added"}
    assert len({p.split("/")[0] for _, p in statuses(d)}) == 1


def test_shape_change_ripples_downstream() -> None:
    d = variant("digits_cnn", ("conv_bn(width * 2)", "conv_bn(width * 4)"))
    assert statuses(d) == [
        ("changed", "conv_bn_2/conv2d"),
        ("shape", "conv_bn_2/batchnorm"),
        ("shape", "conv_bn_2/relu"),
        ("shape", "maxpool2d_1"),
        ("shape", "flatten"),
        ("shape", "dense"),
    ]
    assert changes(d, "conv_bn_2/relu") == {"shape": ((4, 4, 64), (4, 4, 128))}
    assert changes(d, "dense") == {"input_shape": ((256,), (512,))}
    assert d.layers[-1].delta == 256 * 128


def test_input_shape_change_is_a_change_of_the_input() -> None:
    d = compare(program(TWO_TOWER), program(TWO_TOWER.replace("f32[16]", "f32[20]")))
    assert statuses(d) == [("changed", "a"), ("shape", "dense")]
    assert changes(d, "a") == {"shape": ((16,), (20,))}


def test_renamed_layer() -> None:
    d = compare(program(TWO_TOWER), program(TWO_TOWER.replace("x1", "left")))
    assert statuses(d) == [("renamed", "left")]
    assert changes(d, "left") == {"name": ("x1", "left")}


def test_rewired_inputs() -> None:
    d = compare(program(TWO_TOWER), program(TWO_TOWER.replace("concat(x1, x2)", "concat(x2, x1)")))
    assert statuses(d) == [("changed", "concat")]
    assert changes(d, "concat") == {"inputs": (("x1", "x2"), ("x2", "x1"))}


def test_output_changed() -> None:
    d = compare(
        program(TWO_TOWER),
        program(TWO_TOWER.replace("  output scores", "  output x2\n  scores")),
    )
    assert config(d)["model.outputs"] == ((Symbol("scores"),), (Symbol("x2"),))


def test_config_changes() -> None:
    d = variant(
        "digits_cnn",
        ("lr = 2e-3", "lr = 3e-4"),
        ("batch_size = 64", "batch_size = 128"),
        ("  augment = [random_crop(padding = 1)]\n", ""),
        ("patience: 6", "patience: 8"),
        ("clip = global_norm(1.0)", "clip = norm(1.0)"),
        ("param width = 32", "param width = 32\nparam unused = 1"),
    )
    assert not d.layers
    got = config(d)
    assert got["train.optimizer.lr"] == (2e-3, 3e-4)
    assert got["train.batch_size"] == (64, 128)
    assert got["train.early_stopping.patience"] == (6, 8)
    assert (
        got["data.augment"][1] == ()
        and str(got["data.augment"][0][0]) == "random_crop(padding = 1)"
    )
    assert [str(v) for v in got["train.clip"]] == ["global_norm(c = 1.0)", "norm(c = 1.0)"]
    assert list(got) == [
        "data.augment",
        "train.batch_size",
        "train.optimizer.lr",
        "train.clip",
        "train.early_stopping.patience",
    ]  # sections in order, fields in schema order; a param on one side only is no change


def test_optimizer_replaced_is_one_change() -> None:
    d = variant("digits_mlp", ("adam(lr = 1e-3)", "sgd(lr = 0.1, momentum = 0.9)"))
    (c,) = d.config
    assert c.path == "train.optimizer" and (c.before.name, c.after.name) == ("adam", "sgd")
    assert "sgd(lr = 0.1, momentum = 0.9)" in render_text(d)


def test_param_value_change_shows_in_params_and_layers() -> None:
    d = variant("digits_cnn", ("param width = 32", "param width = 48"))
    assert config(d) == {"params.width": (32, 48)}
    assert ("changed", "conv_bn/conv2d") in statuses(d)


def test_sweep_and_sections_added() -> None:
    sweep = "\nsweep {\n  method = random(trials = 5)\n  train.optimizer.lr = loguniform(1e-4, 1e-2)\n}\n"
    d = variant("sequence_lstm", ('data {\n  source = builtin("sequence")\n}\n', sweep))
    got = config(d)
    assert got["data.source"][1] is None and got["sweep.method"][0] is None
    assert str(got["sweep.train.optimizer.lr"][1]).startswith("loguniform(")


def test_set_overrides_apply_like_edits() -> None:
    a = example("digits_cnn")
    b = loads(text("digits_cnn"), str(EXAMPLES / "digits_cnn.dnn"), ["width=64"])
    assert config(compare(a, b)) == {"params.width": (32, 64)}


def test_layer_json_shape() -> None:
    d = variant("digits_cnn", ("dropout(0.3)", "dropout(0.5)"), ("epochs = 30", "epochs = 10"))
    out = json.loads(json.dumps(d.to_dict()))
    assert list(out) == ["equivalent", "layers", "params", "config"]
    (layer,) = out["layers"]
    assert layer == {
        "status": "changed",
        "name": "dropout",
        "path": "dropout",
        "changes": [{"field": "rate", "before": 0.3, "after": 0.5}],
        "params_before": 0,
        "params_after": 0,
    }
    assert out["params"] == {"before": 62634, "after": 62634, "delta": 0}
    assert out["config"] == [{"path": "train.epochs", "before": 30, "after": 10}]


def test_every_pair_of_examples() -> None:
    """Unrelated models: the report still balances (delta = difference of the summaries)."""
    for a in BASES:
        for b in BASES:
            d = compare(example(a), example(b))
            assert d.equivalent == (a == b)


def test_renderers() -> None:
    d = variant(
        "digits_cnn", ("conv_bn(width * 2)", "conv_bn(width * 4)"), ("lr = 2e-3", "lr = 1e-3")
    )
    plain, coloured, md = render_text(d), render_text(d, color=True), render_markdown(d)
    assert "\x1b[" not in plain and "\x1b[33mchanged" in coloured
    assert "filters 64 → 128" in plain and "train.optimizer.lr  2e-3 → 1e-3" in plain
    assert "62,634 → 114,090 (+51,456)" in plain
    assert "| changed | `conv_bn_2/conv2d` | conv2d | filters 64 → 128" in md
    assert "| `train.optimizer.lr` | `2e-3` | `1e-3` |" in md
    same = render_text(compare(example("digits_cnn"), example("digits_cnn")))
    assert "equivalent" in same


def test_canonical_text() -> None:
    out = canonical_text(example("digits_cnn"))
    assert "  conv_bn/conv2d = conv2d(filters = 32, kernel = [3, 3], padding = same" in out
    assert "  dense_1 = dense(units = 10)  # (10,), 1,290 params\n" in out
    assert "train.optimizer = adam(lr = 2e-3)\n" in out
    assert canonical_text(program(text("two_tower"), "two_tower")).count("concat(x1, x2)") <= 1


# ------------------------------------------------------------------ a real change is never neutral


def mutate(v: Any) -> Any:
    """A different value of the same kind."""
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 1
    if isinstance(v, float):
        return v * 2 + 0.5
    if isinstance(v, tuple):
        return (mutate(v[0]), *v[1:]) if v else (1,)
    if isinstance(v, Symbol):
        return Symbol(v.name + "_x")
    if isinstance(v, Ref):
        return dataclasses.replace(v, args=(*v.args, ("extra", 1)))
    if isinstance(v, Quantity):
        return Quantity(v.value + 1, v.unit)
    if isinstance(v, Rec):
        return Rec((*v.items, ("extra", 1)))
    return Symbol("other") if v is None else v + "x"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BASES), st.data())
def test_mutating_one_argument_is_never_equivalent(name: str, data: st.DataObject) -> None:
    a = example(name)
    assert a.model is not None
    nodes = [i for i, n in enumerate(a.model.nodes) if n.args]
    i = data.draw(st.sampled_from(nodes), "node")
    node = a.model.nodes[i]
    k = data.draw(st.integers(0, len(node.args) - 1), "arg")
    args = list(node.args)
    args[k] = (args[k][0], mutate(args[k][1]))
    nodes_b = (
        *a.model.nodes[:i],
        dataclasses.replace(node, args=tuple(args)),
        *a.model.nodes[i + 1 :],
    )
    b = dataclasses.replace(a, model=dataclasses.replace(a.model, nodes=nodes_b))
    d = diff(a, b)
    assert not d.equivalent
    assert [(x.status, x.path) for x in d.layers] == [("changed", node.name)]
    assert [c.field for c in d.layers[0].changes] == [args[k][0]]


_NUMBER = re.compile(r"(?<![\w.])\d+(\.\d+)?(?![\w.])")


def _model_numbers(src: str) -> list[tuple[int, int, str]]:
    """(start, end, text) of the numbers in block and model bodies, outside comments."""
    start = min(i for i in (src.find("\nblock "), src.find("\nmodel ")) if i >= 0)
    end = src.index("\n}\n", src.index("\nmodel "))
    found, offset = [], 0
    for line in src.splitlines(keepends=True):
        if start <= offset < end:
            code = line.split("#")[0]
            found += [
                (offset + m.start(), offset + m.end(), m.group()) for m in _NUMBER.finditer(code)
            ]
        offset += len(line)
    return found


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])  # fmt: skip
@given(st.sampled_from(BASES), st.data())
def test_editing_a_number_in_a_model_is_never_equivalent(name: str, data: st.DataObject) -> None:
    src = text(name)
    start, end, old = data.draw(st.sampled_from(_model_numbers(src)), "number")
    new = data.draw(st.sampled_from(["1", "2", "3", "7", "0.25"]), "value")
    assume(new != old)
    try:
        b = program(src[:start] + new + src[end:], name)
    except SpecError:
        assume(False)
        return
    a = example(name)
    assume(a.model != b.model)  # the edit changed the graph (not only dead code)
    assert not compare(a, b).equivalent


# ------------------------------------------------------------------ the command


def launch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m dnn ARGS` in a new process, with `env` added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "dnn", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_cli_exit_status_and_formats(tmp_path: Path) -> None:
    cnn = str(EXAMPLES / "digits_cnn.dnn")
    wide = tmp_path / "wide.dnn"
    wide.write_text(text("digits_cnn", ("conv_bn(width * 2)", "conv_bn(width * 4)")))
    (tmp_path / "bad.dnn").write_text("dnn 1\nmodel m {\n  input x: f32[4]\n  dropot(0.5)\n}\n")
    same = dnn("diff", cnn, cnn)
    assert same.returncode == 0 and "equivalent" in same.stdout
    r = dnn("diff", "--format", "json", cnn, str(wide))
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["params"]["delta"] == 51456 and out["layers"][0]["status"] == "changed"
    md = dnn("diff", "--format", "markdown", cnn, str(wide))
    assert md.returncode == 1 and md.stdout.startswith("#### `dnn diff`")
    bad = dnn("diff", cnn, str(tmp_path / "bad.dnn"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "bad.dnn:4:3: error[E0202]: unknown layer `dropot`" in bad.stderr
    missing = dnn("diff", cnn, str(tmp_path / "nope.dnn"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert dnn("diff", cnn).returncode == 2
    coloured = dnn("diff", "--color", "always", cnn, str(wide))
    assert "\x1b[" in coloured.stdout
    piped = launch("diff", cnn, str(wide), env={"NO_COLOR": "1"})
    assert "\x1b[" not in piped.stdout
    overridden = dnn("diff", "--set", "width=64", cnn, cnn)
    assert overridden.returncode == 0


def test_cli_500_layers_fast_and_without_jax(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from diff_speed import deep_spec
    finally:
        sys.path.remove(str(ROOT / "bench"))
    a, b = tmp_path / "a.dnn", tmp_path / "b.dnn"
    a.write_text(deep_spec(500))
    b.write_text(deep_spec(500, variant=True))
    code = (
        "import sys\n"
        "from dnn.runtime.cli import main\n"
        f"assert main(['diff', {str(a)!r}, {str(b)!r}]) == 1\n"
        f"assert main(['diff', '--format', 'json', {str(a)!r}, {str(a)!r}]) == 0\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax')]\n"
        "print('clean')\n"
    )
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    assert r.returncode == 0 and "clean" in r.stdout, r.stderr
    assert wall < 5.0  # two diffs of 500 layers; bench/diff_speed.py measures the 1 s target


def test_rev_path_outside_git_is_a_clear_error(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "dnn", "diff", "HEAD:a.dnn", "HEAD:b.dnn"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        env={**os.environ, "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)},
    )
    assert r.returncode == 2 and "not in a git repository" in r.stderr


def test_bad_usage() -> None:
    assert dnn("diff", "a", "b", "c").returncode == 2
    assert dnn("diff", "--format", "yaml", "a", "b").returncode == 2


@pytest.mark.parametrize("name", BASES)
def test_textconv_is_stable(name: str) -> None:
    assert canonical_text(example(name)) == canonical_text(program(text(name), name))


def test_specs_without_a_model() -> None:
    a, b = (loads(f"dnn 1\ntrain {{\n  epochs = {n}\n}}\n") for n in (3, 4))
    d = compare(a, b)
    assert config(d) == {"train.epochs": (3, 4)} and not d.layers
    assert "model" not in render_text(d) and "model" not in render_markdown(d)
    e = compare(a, example("digits_mlp"))
    assert {x.status for x in e.layers} == {"added"} and config(e)["model"] == (
        None,
        Symbol("digits_mlp"),
    )
