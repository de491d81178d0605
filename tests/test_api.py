"""The Python API and the resolver: load/loads/format, overrides, imports."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import assert_error
from dnn.compiler.values import Ref

import dnn

ROOT = Path(__file__).parent.parent
CNN = ROOT / "examples" / "digits_cnn.dnn"


def test_load_and_summary() -> None:
    program = dnn.load(str(CNN))
    assert isinstance(program, dnn.Program)
    s = program.summary()
    assert s.params == program.model.params == 62_634
    assert "Total params: 62,634" in str(s)
    assert s.to_dict()["totals"]["trainable"] == program.model.trainable


def test_loads_raises_spec_error_with_diagnostics() -> None:
    with pytest.raises(dnn.SpecError) as info:
        dnn.loads("model m {\n  input x: f32[4]\n  dense(-1)\n}\n", "m.dnn")
    (d,) = info.value.diagnostics
    assert (d.code, d.span.line, d.span.col) == ("E0306", 3, 9)
    assert "m.dnn:3:9: error[E0306]" in str(info.value)


def test_format_api() -> None:
    assert dnn.format("param a=1\n") == "param a = 1\n"


def test_param_override_changes_shapes() -> None:
    program = dnn.load(str(CNN), overrides=["width=48"])
    assert program.model.nodes[1].shape == (8, 8, 48)
    assert dict(program.params)["width"] == 48


def test_field_and_argument_overrides() -> None:
    program = dnn.load(str(CNN), overrides=["train.optimizer.lr=3e-4", "train.epochs=3"])
    opt = program.train.optimizer
    assert isinstance(opt, Ref) and opt.name == "adam" and opt.arg("lr") == 3e-4
    assert program.train.epochs == 3
    # an unwritten field takes its default before the argument is set
    program = dnn.loads(
        "model m {\n  input x: f32[4]\n  dense(2)\n}\n", overrides=["train.optimizer.lr=0.5"]
    )
    assert program.train.optimizer.name == "adam" and program.train.optimizer.arg("lr") == 0.5


def test_override_errors_point_at_the_override() -> None:
    with pytest.raises(dnn.SpecError) as info:
        dnn.load(str(CNN), overrides=["train.optimizer.lr=-1"])
    (d,) = info.value.diagnostics
    assert d.span.path == "--set train.optimizer.lr" and d.code == "E0306"
    with pytest.raises(dnn.SpecError) as info:
        dnn.load(str(CNN), overrides=["trian.epochs=3"])
    assert info.value.diagnostics[0].hint == "did you mean `train`?"


def test_import_is_relative_to_importing_file(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.dnn").write_text(
        'import "b.dnn"\nblock twice(c) {\n  once(c)\n  once(c)\n}\n'
    )
    (tmp_path / "lib" / "b.dnn").write_text("block once(c) {\n  dense(c) -> relu\n}\n")
    main = tmp_path / "main.dnn"
    main.write_text('import "lib/a.dnn"\nmodel m {\n  input x: f32[3]\n  twice(4)\n}\n')
    program = dnn.load(str(main))
    assert program.model.params == (3 * 4 + 4) + (4 * 4 + 4)
    assert [n.name for n in program.model.nodes][1] == "twice/once/dense"


def test_import_cycle_shows_the_chain(tmp_path: Path) -> None:
    (tmp_path / "a.dnn").write_text('import "b.dnn"\n')
    (tmp_path / "b.dnn").write_text('import "a.dnn"\n')
    with pytest.raises(dnn.SpecError) as info:
        dnn.load(str(tmp_path / "a.dnn"))
    (d,) = info.value.diagnostics
    assert d.code == "E0502" and "a.dnn → " in d.message and "b.dnn → " in d.message
    assert (d.span.path, d.span.line) == (str(tmp_path / "b.dnn"), 1)


def test_named_values_name_their_layers() -> None:
    program = dnn.load(str(ROOT / "examples" / "two_tower.dnn"))
    names = [n.name for n in program.model.nodes]
    assert names == ["a", "b", "dense", "x1", "dense_1", "x2", "concat", "scores"]
    assert program.model.outputs == ("scores",)


def test_defaults_are_filled_in_registry_order() -> None:
    program = dnn.loads("model m {\n  input x: f32[4, 4, 1]\n  conv2d(2, 3)\n}\n")
    node = program.model.nodes[1]
    assert [k for k, _ in node.args][:7] == [
        "filters",
        "kernel",
        "stride",
        "padding",
        "dilation",
        "groups",
        "use_bias",
    ]
    assert node.arg("kernel") == (3, 3) and node.arg("stride") == (1, 1)
    assert node.arg("init") == Ref("initializer", "glorot_uniform", (("gain", 1.0),))


def test_compile_time_logic() -> None:
    src = """param n = 3
block stage(c, first = false) {
  conv2d(c, kernel = 3, stride = 1 if first else 2, padding = same)
  skip = in if in.channels == c and first else conv2d(c, kernel = 1, stride = 1 if first else 2)(in)
  output add(in if false else skip, skip)
}
model m {
  input x: f32[16, 16, 4]
  repeat i in 0..n { stage(4 * 2 ** i, first = i == 0) }
  global_maxpool
}
"""
    program = dnn.loads(src)
    assert program.model.node(program.model.outputs[0]).shape == (16,)
    shapes = [n.shape for n in program.model.nodes if n.op == "add"]
    assert shapes == [(16, 16, 4), (8, 8, 8), (4, 4, 16)]


def test_warning_for_unused_value() -> None:
    program = dnn.loads("model m {\n  input x: f32[4]\n  y = dense(3)(x)\n  dense(2)(x)\n}\n")
    (w,) = program.warnings
    assert w.severity == "warning" and "`y` is computed but never used" in w.message


def test_several_errors_in_one_run() -> None:
    src = "model m {\n  input x: f32[4]\n  dropot(0.5)\n  dense(units = 0)\n}\ntrain {\n  epoch = 3\n}\n"
    with pytest.raises(dnn.SpecError) as info:
        dnn.loads(src)
    assert {d.code for d in info.value.diagnostics} == {"E0202", "E0306", "E0204"}


def test_negative_units_message() -> None:
    assert_error(
        "model m {\n  input x: f32[4]\n  dense(0)\n}\n",
        "3:9",
        "E0306",
        "argument `units` of `dense` must be an int > 0, got `0`",
    )


def test_freeze_patterns_must_match_a_layer() -> None:
    src = 'model m {\n  input x: f32[4]\n  encoder = dense(3)\n  dense(2)\n}\ntrain {\n  freeze = ["encodr"]\n}\n'
    assert_error(
        src, "7:12", "E0201", 'pattern "encodr" matches no layer', "did you mean `encoder`?"
    )
    program = dnn.loads(src.replace('"encodr"', '"enc*"'))
    assert program.train.freeze == ("enc*",)
