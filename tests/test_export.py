"""`dnn export RUN --format stablehlo|onnx` (issue 17, points 1 and 2).

The exported program takes raw examples (the run's normalize, reshape and target scaling folded
in) and must give what `dnn predict` computes, to 1e-5 relative in float32: checked on the
test split for a CNN with batch norm and standardized inputs (both formats), for a regression
on scaled targets (ONNX in onnxruntime, in the data's units), and for StableHLO reloaded in a
process that never imports dnn. bench/export_examples.py runs every example the same way.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import onnxruntime as ort
import pytest
from dnn.runtime import export, pipeline
from dnn.runtime.cli import main
from dnn.runtime.fit import train
from jax import export as jax_export

import dnn

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
from export_examples import reference, worst  # noqa: E402

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dnn.Program, Path]:
    program = dnn.load(str(EXAMPLES / "digits_cnn.dnn"), ["train.epochs=1"])
    run = tmp_path_factory.mktemp("cnn") / "run"
    train(program, run, mode="quiet")
    return program, run


def onnx_outputs(model: bytes, x: np.ndarray) -> tuple[np.ndarray, ...]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return tuple(session.run(None, {session.get_inputs()[0].name: x}))


def test_the_cnn_exports_in_both_formats_equal_to_predict(
    cnn_run: tuple[dnn.Program, Path],
) -> None:
    program, run = cnn_run
    raw = pipeline.raw_splits(program)["test"].x.astype(np.float32)  # 64 raw pixels, 0..16
    assert raw.shape == (180, 64) and raw.max() == 16.0
    want = reference(program, run, raw)
    inf = export.inference(program, run)
    assert (inf.input_name, inf.output_names, inf.raw_shape) == ("image", ("dense_1",), (64,))
    hlo = jax_export.deserialize(bytearray(export.to_stablehlo(inf)))
    assert worst((np.asarray(hlo.call(jnp.asarray(raw))),), want) <= 1e-5
    assert worst((np.asarray(hlo.call(jnp.asarray(raw[:7]))),), (want[0][:7],)) <= 1e-5
    model = export.to_onnx(inf)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert session.get_inputs()[0].shape == ["batch", 64]  # a dynamic batch dimension
    assert [o.name for o in session.get_outputs()] == ["dense_1"]
    assert worst(onnx_outputs(model, raw), want) <= 1e-5
    assert worst(onnx_outputs(model, raw[:3]), (want[0][:3],)) <= 1e-5


def test_regression_outputs_come_back_in_the_datas_units(tmp_path: Path) -> None:
    program = dnn.load(str(EXAMPLES / "diabetes_regression.dnn"), ["train.epochs=2"])
    run = tmp_path / "run"
    train(program, run, mode="quiet")
    raw = pipeline.raw_splits(program)["test"].x.astype(np.float32)
    want = reference(program, run, raw)
    assert 100 < want[0].mean() < 200  # disease progression (mean 152), not standardized units
    model = export.to_onnx(export.inference(program, run))
    assert worst(onnx_outputs(model, raw), want) <= 1e-5


def test_stablehlo_reloads_without_dnn(
    cnn_run: tuple[dnn.Program, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program, run = cnn_run
    out = tmp_path / "model.stablehlo"
    assert main(["export", str(run), "--format", "stablehlo", "-o", str(out)]) == 0
    assert capsys.readouterr().err == (
        f"{out}: stablehlo, input `image` [batch, 64] f32 -> `dense_1`\n"
    )
    raw = pipeline.raw_splits(program)["test"].x.astype(np.float32)[:20]
    np.save(tmp_path / "x.npy", raw)
    script = (
        "import sys, numpy as np, jax\n"
        "from jax import export\n"
        f"e = export.deserialize(bytearray(open({str(out)!r}, 'rb').read()))\n"
        f"y = np.asarray(e.call(np.load({str(tmp_path / 'x.npy')!r})))\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, y)\n"
        "assert not any(m == 'dnn' or m.startswith('dnn.') for m in sys.modules), 'dnn imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=120)
    assert worst((np.load(tmp_path / "y.npy"),), (reference(program, run, raw)[0],)) <= 1e-5


def test_the_onnx_command_checks_its_output(
    cnn_run: tuple[dnn.Program, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run = cnn_run
    out = tmp_path / "model.onnx"
    assert main(["export", str(run), "--format", "onnx", "-o", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{out}: onnx, input `image` [batch, 64] f32 -> `dense_1`"
    assert err[1].startswith("  checked in onnxruntime: outputs within ")
    assert err[1].endswith(" (relative) of dnn's on 64 examples") and len(err) == 2
    assert [i.name for i in ort.InferenceSession(str(out)).get_inputs()] == ["image"]


def test_a_conversion_failure_names_the_problem(
    cnn_run: tuple[dnn.Program, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import jax2onnx

    def refuse(*args: object, **kwargs: object) -> None:
        raise NotImplementedError("No ONNX handler for primitive 'erf_inv'\nmore detail")

    monkeypatch.setattr(jax2onnx, "to_onnx", refuse)
    _, run = cnn_run
    out = tmp_path / "m.onnx"
    assert main(["export", str(run), "--format", "onnx", "-o", str(out)]) == 1
    assert capsys.readouterr().err == (
        f"{run / 'spec.dnn'}: error: jax2onnx cannot convert this model: No ONNX handler for "
        "primitive 'erf_inv'\n"
        "  hint: export --format stablehlo instead (every model converts), or report the layer\n"
    )
    assert not out.exists()


def test_a_layer_the_converter_refuses_is_named_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the converter fails inside the model, the layer being lowered is named at its
    spec line (found on the traceback). Here the converter traces the model with `dense`'s
    lowering made to raise as jax2onnx does for a primitive it has no handler for."""
    import jax
    import jax2onnx
    from dnn.compiler import lower_flax

    spec = tmp_path / "m.dnn"
    spec.write_text(
        "dnn 1\nmodel m {\n  input x: f32[4]\n  dense(5) -> relu\n  dense(3)\n}\n"
        'data {\n  source = builtin("iris")\n}\ntrain {\n  epochs = 1\n}\n'
    )
    run = tmp_path / "run"
    train(dnn.load(str(spec)), run, mode="quiet")
    real = lower_flax.lowering

    def refusing(node: object) -> object:
        if getattr(node, "name", "") == "dense_1":

            def fail(*args: object) -> None:
                raise NotImplementedError("No ONNX handler for primitive 'dot_general'")

            return fail
        return real(node)  # type: ignore[arg-type]

    def convert(fn: object, args: list, **kwargs: object) -> None:
        monkeypatch.setattr(lower_flax, "lowering", refusing)
        jax.make_jaxpr(fn)(*[jax.ShapeDtypeStruct((3, *a.shape[1:]), a.dtype) for a in args])

    monkeypatch.setattr(jax2onnx, "to_onnx", convert)
    assert main(["export", str(run), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{run / 'spec.dnn'}:6:3: error[E0607]: jax2onnx cannot convert `dense_1` (dense): No "
        "ONNX handler for primitive 'dot_general'",
        "6 |   dense(3)",
        "  |   ^^^^^^^^",
        "  hint: export --format stablehlo instead (every model converts), or a model without "
        "this layer",
        "1 error",
    ]


def test_a_folder_that_is_no_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path), "--format", "onnx", "-o", str(tmp_path / "m")]) == 1
    assert capsys.readouterr().err == (
        f"{tmp_path}: error: not a run folder: it holds no spec.dnn\n"
        "  hint: export a run folder made by `dnn train`\n"
    )
