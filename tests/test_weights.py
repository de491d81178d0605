"""Weight files in and out (issue 16, runtime/weights.py): PyTorch's own forward passes as the
reference (fixtures made by tests/fixtures/make_torch_weights.py with PyTorch, committed), the
mapping and its strictness, pickles refused, `dnn weights`, `--weights`, and the way back out."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from dnn.compiler.diagnostics import SpecError
from dnn.compiler.driver import loads
from dnn.compiler.lower_flax import lower_model
from dnn.runtime import weights
from dnn.runtime.cli import main
from safetensors.numpy import load_file, save_file

FIXTURES = Path(__file__).parent / "fixtures" / "weights"
KERAS = ("keras_cnn", "keras_seq")  # made by tests/fixtures/make_keras_weights.py


def _file(name: str) -> str:
    return f"{name}.weights.h5" if name in KERAS else f"{name}.safetensors"


def _program(name: str, train: str = "", folder: Path = FIXTURES) -> object:
    spec = (FIXTURES / f"{name}.dnn").read_text()
    return loads(spec + f"\ntrain {{\n{train}\n}}\n", str(folder / f"{name}.dnn"))


def _inputs(name: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    z = np.load(FIXTURES / f"{name}.npz")
    return {k[3:]: z[k] for k in z.files if k.startswith("in_")}, z["y"]


def _load(program: object, name: str, source: str | None = None) -> tuple:
    """The spec's model with the fixture's weights loaded: (model, variables, notes)."""
    model = lower_model(program.model, program.train.init)  # type: ignore[attr-defined]
    xs, _ = _inputs(name)
    v = jax.jit(model.init)({"params": jax.random.key(0)}, xs)
    state = {k: x for k, x in v.items() if k != "params"}
    params, state, notes, _ = weights.load_file(
        program,  # type: ignore[arg-type]
        jax.device_get(v["params"]),
        jax.device_get(state),
        source or _file(name),
    )
    return model, {"params": params, **state}, notes


@functools.cache
def _fixture(name: str) -> tuple:
    """The fixture's spec and its model with the fixture's weights, shared by the tests."""
    program = _program(name, f'  init_from = "{_file(name)}"')
    return (program, *_load(program, name))


@pytest.mark.parametrize("name", ["cnn", "convs", "recurrent", "digits", *KERAS])
def test_outputs_equal_the_sources(name: str) -> None:
    """Per layer kind, dnn's forward pass on the converted weights is PyTorch's (1e-5 of the
    largest output): conv 1/2/3-d, grouped, depthwise, transposed, batch norm 1/2-d with
    running statistics, flatten (channel order) into linear, layer norm, embedding, LSTM,
    bidirectional GRU, simple RNN, multi-head attention; and Keras' from `save_weights`:
    conv, batch norm, depthwise, dense, layer norm, embedding, LSTM, bidirectional GRU,
    multi-head attention."""
    program, model, variables, notes = _fixture(name)
    xs, y = _inputs(name)
    out = np.asarray(jax.jit(model.apply)(variables, xs))
    assert out.shape == y.shape
    np.testing.assert_allclose(out, y, rtol=0, atol=1e-5 * max(1.0, np.abs(y).max()))
    assert "loaded" in notes[0]


def test_a_wrong_layout_would_show() -> None:
    """The fixture is sensitive: the flatten rows left in PyTorch's order change the output."""
    program, model, variables, _ = _fixture("digits")
    xs, y = _inputs("digits")
    kernel = variables["params"]["dense"]["kernel"]
    order = weights.flat_order(program.model.node("dense"), program.model)  # type: ignore[attr-defined]
    assert order is not None and not (order == np.arange(len(order))).all()
    unpermuted = np.empty_like(kernel)
    unpermuted[order] = kernel
    params = {
        **variables["params"],
        "dense": {**variables["params"]["dense"], "kernel": unpermuted},
    }
    out = np.asarray(jax.jit(model.apply)({**variables, "params": params}, xs))
    assert np.abs(out - y).max() > 1e-2


@pytest.mark.parametrize("name", ["cnn", "convs", "digits", "recurrent"])
def test_round_trip_is_the_identity(name: str) -> None:
    """PyTorch -> dnn -> PyTorch gives back every tensor under its name, except what dnn does
    not keep: batch norm's step counter (written as 0) and an LSTM's or RNN's split of its two
    biases (their sum, which is all the cell reads, is kept)."""
    program, _, variables, _ = _fixture(name)
    state = {k: v for k, v in variables.items() if k != "params"}
    names = weights.file_names(program)  # type: ignore[arg-type]
    back = weights.to_torch(program, variables["params"], state, names)  # type: ignore[arg-type]
    original = load_file(str(FIXTURES / f"{name}.safetensors"))
    assert set(back) == set(original)
    summed = ("lstm.", "rnn.")
    for k, v in original.items():
        if k.endswith("num_batches_tracked"):
            assert back[k].dtype == np.int64 and back[k].shape == ()
        elif k.startswith(summed) and "bias_" in k:
            ih = k.replace("bias_hh", "bias_ih")
            hh = k.replace("bias_ih", "bias_hh")
            np.testing.assert_allclose(back[ih] + back[hh], original[ih] + original[hh], atol=1e-6)
        else:
            np.testing.assert_array_equal(back[k], v, err_msg=k)


def test_structural_order() -> None:
    """Sequence indices as numbers, a named child by the number in its name, children without
    a number after those with one."""
    names = [
        "features.transition1.norm",
        "features.denseblock2.denselayer1.norm1",
        "features.denseblock1.denselayer10.norm1",
        "features.denseblock1.denselayer2.norm1",
        "features.norm5",
        "features.norm0",
    ]
    assert sorted(names, key=weights.structural_key) == [
        "features.norm0",
        "features.denseblock1.denselayer2.norm1",
        "features.denseblock1.denselayer10.norm1",
        "features.transition1.norm",
        "features.denseblock2.denselayer1.norm1",
        "features.norm5",
    ]
    assert sorted(["f.10.conv", "f.9.conv"], key=weights.structural_key) == [
        "f.9.conv",
        "f.10.conv",
    ]
    resnet = ["fc", "layer1.0.downsample.1", "layer1.0.bn2", "bn1", "layer1.0.bn1", "conv1"]
    assert sorted(resnet, key=weights.structural_key) == [
        "bn1",
        "conv1",
        "layer1.0.bn1",
        "layer1.0.bn2",
        "layer1.0.downsample.1",
        "fc",
    ]


def test_a_new_head_must_be_skipped(tmp_path: Path) -> None:
    """Strict by default: the file's 10-class head does not fit a 3-class one; the message
    names the layer's line, the tensor and both shapes, and `init_skip` makes it a new head."""
    spec = (FIXTURES / "digits.dnn").read_text().replace("head = dense(10)", "head = dense(3)")
    shutil.copy(FIXTURES / "digits.safetensors", tmp_path)
    path = tmp_path / "digits.dnn"
    program = loads(spec + '\ntrain { init_from = "digits.safetensors" }\n', str(path))
    with pytest.raises(SpecError) as e:
        _load(program, "digits", str(tmp_path / "digits.safetensors"))
    text = str(e.value)
    assert "digits.dnn:8:10: error[E0703]" in text
    assert "`head`" in text and "fc2" in text and "[10, 32]" in text and "[3, 32]" in text
    assert 'init_skip = ["head"]' in text
    skipped = loads(
        spec
        + '\ntrain {\n  init_from = "digits.safetensors"\n  init_skip = ["fc2.*", "head"]\n}\n',
        str(path),
    )
    _, variables, notes = _load(skipped, "digits", str(tmp_path / "digits.safetensors"))
    assert any("fc2" in n for n in notes) and any("head" in n for n in notes)
    assert variables["params"]["head"]["kernel"].shape == (32, 3)


def test_unused_tensors_are_an_error() -> None:
    """A file with a module no layer takes fails at `init_from`, naming the module."""
    spec = (FIXTURES / "digits.dnn").read_text().replace("  head = dense(10)\n", "")
    spec = spec.replace("dense(32) -> relu", "dense(32)")
    program = loads(
        spec + '\ntrain {\n  init_from = "digits.safetensors"\n}\n', str(FIXTURES / "d.dnn")
    )
    with pytest.raises(SpecError) as e:
        weights.load_file(program, *_shapes_only(program), "digits.safetensors")  # type: ignore[arg-type]
    text = str(e.value)
    assert "error[E0703]" in text and "fit no layer of the spec: `fc2`" in text
    assert 'init_skip = ["fc2.*"]' in text


def _shapes_only(program: object) -> tuple[dict, dict]:
    params, state = weights.spec_shapes(program)  # type: ignore[arg-type]
    zeros = lambda t: jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), t)  # noqa: E731
    return zeros(params), zeros(state)


def test_map_pins_a_module(tmp_path: Path) -> None:
    """`init_map` overrides the order: the two dense layers of the same shape swapped."""
    spec = """dnn 1
model m {
  input x: f32[4]
  dense(4) -> relu
  dense(4)
}
"""
    rng = np.random.default_rng(0)
    tensors = {
        f"{m}.{k}": rng.normal(size=s).astype(np.float32)
        for m in ("a", "b")
        for k, s in (("weight", (4, 4)), ("bias", (4,)))
    }
    save_file(tensors, str(tmp_path / "w.safetensors"))
    base = 'init_from = "w.safetensors"'
    for mapping, first in (("", "a"), ('init_map = { "b": "dense", "a": "dense_1" }', "b")):
        program = loads(spec + f"train {{\n  {base}\n  {mapping}\n}}\n", str(tmp_path / "m.dnn"))
        params, state, _, _ = weights.load_file(program, *_shapes_only(program), "w.safetensors")
        np.testing.assert_array_equal(params["dense"]["kernel"], tensors[f"{first}.weight"].T)
    pattern = 'init_map = { "*": "*" }'
    program = loads(spec + f"train {{\n  {base}\n  {pattern}\n}}\n", str(tmp_path / "m.dnn"))
    plan, _ = weights.plan_for(program, tmp_path / "w.safetensors")  # type: ignore[arg-type]
    assert [(s.name, u.name, how) for s, u, how in plan.pairs] == [
        ("dense", "a", "map"),
        ("dense_1", "b", "map"),
    ]


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("model.pth", b"PK\x03\x04rest", "a PyTorch zip archive (pickled)"),
        ("model.bin", b"\x80\x04\x95rest", "pickled"),
        ("model.pt", b"anything", "pickled"),
        (
            "model.safetensors",
            b"\x10\x00\x00\x00\x00\x00\x00\x00not json here...",
            "not a safetensors file",
        ),
    ],
)
def test_pickles_are_refused(tmp_path: Path, name: str, content: bytes, what: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(weights.WeightsError) as e:
        weights.read(path)
    assert f"{path}: {what}" in str(e.value)
    if what != "not a safetensors file":
        assert "weights_only=True" in str(e.value.hint) and "save_file" in str(e.value.hint)


def test_dnn_weights_prints_the_mapping(capsys: pytest.CaptureFixture[str]) -> None:
    file, spec = FIXTURES / "cnn.safetensors", FIXTURES / "cnn.dnn"
    assert main(["weights", str(file)]) == 0
    out = capsys.readouterr().out
    assert "PyTorch, 16 tensors, 1,350 values, 7 modules" in out
    assert "running_var            [4]" in out
    assert main(["weights", str(file), str(spec)]) == 0
    out = capsys.readouterr().out
    assert "cnn: 7 of 7 layers with weights filled" in out
    assert "dense             <- fc" in out and "(order)" in out
    assert "every layer filled and every tensor used" in out
    keras = FIXTURES / "keras_seq.weights.h5"
    assert main(["weights", str(keras), str(FIXTURES / "keras_seq.dnn")]) == 0
    out = capsys.readouterr().out
    assert "Keras, 20 tensors, 1,211 values, 5 modules" in out
    assert "gru                   <- bidirectional" in out
    assert main(["weights", str(FIXTURES / "digits.safetensors"), str(spec)]) == 1
    err = capsys.readouterr().err
    assert "error[E0703]" in err and "has no module for" in err


def test_predict_eval_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`dnn predict/eval --weights` run the file's network untrained (batch norm on its running
    statistics): PyTorch's classes on the fixture's inputs. Then a fine-tuned run exports back
    under the file's names, and that file predicts what the run predicts."""
    shutil.copy(FIXTURES / "digits.safetensors", tmp_path)
    spec = tmp_path / "digits.dnn"
    spec.write_text(
        (FIXTURES / "digits.dnn").read_text()
        + '\ndata {\n  source = builtin("digits")\n  normalize = none\n}\n'
        + 'train {\n  epochs = 1\n  init_from = "digits.safetensors"\n  freeze = ["conv2d"]\n}\n'
    )
    xs, y = _inputs("digits")
    np.save(tmp_path / "x.npy", xs["x"])
    file = str(tmp_path / "digits.safetensors")
    pred = tmp_path / "p.npy"
    assert (
        main(
            [
                "predict",
                str(spec),
                "--weights",
                file,
                "--input",
                str(tmp_path / "x.npy"),
                "--output",
                str(pred),
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(np.load(pred), y.argmax(1))
    assert main(["eval", str(spec), "--weights", file, "--format", "json"]) == 0
    assert '"accuracy"' in capsys.readouterr().out
    run = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(run), "--quiet"]) == 0
    out = tmp_path / "back.safetensors"
    assert main(["export", str(run), "--format", "safetensors", "-o", str(out)]) == 0
    back = load_file(str(out))
    assert set(back) == set(load_file(file))  # PyTorch's names: loads with strict=True
    np.testing.assert_array_equal(back["conv.weight"], load_file(file)["conv.weight"])  # frozen
    assert not np.array_equal(back["fc2.weight"], load_file(file)["fc2.weight"])  # trained
    ran, again = tmp_path / "ran.npy", tmp_path / "again.npy"
    args = ["--input", str(tmp_path / "x.npy"), "--probabilities"]
    assert main(["predict", "--run", str(run), *args, "--output", str(ran)]) == 0
    assert main(["predict", str(spec), "--weights", str(out), *args, "--output", str(again)]) == 0
    np.testing.assert_allclose(np.load(again), np.load(ran), atol=1e-6)


def test_check_reads_init_map() -> None:
    """`dnn check` knows the spec's side of the map: its targets are layers with weights, a
    name pairs with a name and a pattern with a pattern, and a map needs a file to map."""
    base = "dnn 1\nmodel m {\n  input x: f32[4]\n  dense(4) -> relu\n  head = dense(2)\n}\n"
    bad = (
        base
        + 'train {\n  init_from = "w.safetensors"\n  init_map = { "fc": "hed", "a.*": "dense" }\n}\n'
    )
    with pytest.raises(SpecError) as e:
        loads(bad, "m.dnn")
    text = str(e.value)
    assert 'm.dnn:9:14: error[E0201]: `init_map` target "hed" is no layer with weights' in text
    assert "did you mean `head`?" in text
    assert '`init_map`: "a.*" -> "dense" mixes a pattern and a name' in text
    with pytest.raises(SpecError) as e:
        loads(base + 'train {\n  init_map = { "fc": "head" }\n}\n', "m.dnn")
    assert "`init_from` names no file" in str(e.value)
    ok = (
        base
        + 'train {\n  init_from = "w.safetensors"\n  init_map = { "fc": "head", "b.*": "d*" }\n}\n'
    )
    assert loads(ok, "m.dnn").train.init_map == (("fc", "head"), ("b.*", "d*"))
