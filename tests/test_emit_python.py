"""`dnn compile FILE --emit python -o train_model.py` (issue 17, point 3).

The acceptance test of the issue: the emitted scripts of the MLP, the CNN and a residual
network (examples/resnet_small.dnn cut to two blocks, for compile time), run as they are,
start from the same initial variables as `dnn train` on the same seed and take the same
first 5 steps. One subprocess runs the three files as `__main__` (one import of JAX) and
reports that none of them imported dnn; the reference is `Engine.init` and `Engine.step`,
the compiled init and train step `dnn train` runs, on the data `pipeline.prepare` builds.
The scripts are ruff-formatted and pass `ruff check`; a word the emitter does not write out
is refused at its spec line with E0615, and nothing is written.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dnn.runtime import pipeline
from dnn.runtime.cli import main
from dnn.runtime.emit_python import emit, supported_words
from dnn.runtime.train import Engine

import dnn

EXAMPLES = Path(__file__).parent.parent / "examples"
# examples/resnet_small.dnn cut to one block of each kind (an identity skip, a projected one)
# to keep the test's compile time small; its optimizer, schedule and weight decay as there
RESIDUAL = """dnn 1

import "blocks/resnet.dnn"

model tiny_resnet {
  input image: f32[8, 8, 1]
  conv_bn(8)
  basic(8)
  basic(16, stride = 2)
  global_avgpool
  dense(10)
}

data {
  source = builtin("digits")
  normalize = standardize
}

train {
  optimizer = sgd(lr = 0.05, momentum = 0.9, nesterov = true, weight_decay = 5e-4)
  schedule = step(step_size = 8 epochs, gamma = 0.2)
}
"""
SPECS = ("digits_mlp", "digits_cnn", "tiny_resnet")
STEPS = 5

# Runs each script as `python FILE --steps 5 --save-init FILE.npz` would, in one process (one
# import of JAX for the three), then reports whether dnn was imported.
RUNNER = f"""
import json, runpy, sys
for script, init in json.loads(sys.argv[1]):
    sys.argv = [script, "--steps", "{STEPS}", "--save-init", init]
    print("script", script, flush=True)
    runpy.run_path(script, run_name="__main__")
print("dnn imported:", any(m == "dnn" or m.startswith("dnn.") for m in sys.modules))
"""


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The three scripts written by `dnn compile --emit python`, run for 5 steps."""
    out = tmp_path_factory.mktemp("emit")
    (out / "blocks").mkdir()
    shutil.copy(EXAMPLES / "blocks" / "resnet.dnn", out / "blocks" / "resnet.dnn")
    (out / "tiny_resnet.dnn").write_text(RESIDUAL)
    specs = {n: EXAMPLES / f"{n}.dnn" for n in SPECS[:2]} | {SPECS[2]: out / "tiny_resnet.dnn"}
    jobs = []
    for name in SPECS:
        script = out / f"train_{name}.py"
        assert main(["compile", str(specs[name]), "--emit", "python", "-o", str(script)]) == 0
        jobs.append((str(script), str(out / f"{name}_init.npz")))
    # the scripts run on the other core while this process computes dnn's reference
    # (os.environ holds conftest's XLA_FLAGS: cheap compiles there too)
    run = subprocess.Popen(
        [sys.executable, "-c", RUNNER, json.dumps(jobs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=out,
    )
    try:
        references = {name: _reference(specs[name]) for name in SPECS}
        stdout, stderr = run.communicate(timeout=300)
    finally:
        run.kill()
    done = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    losses: dict[str, list[float]] = {}
    current = ""
    for line in done.stdout.splitlines():
        if line.startswith("script "):
            current = Path(line.split()[1]).stem.removeprefix("train_")
            losses[current] = []
        elif line.startswith("step "):
            losses[current].append(float(line.split()[-1]))
    return {
        "losses": losses,
        "inits": {n: dict(np.load(init)) for n, (_, init) in zip(SPECS, jobs, strict=True)},
        "scripts": {n: Path(s) for n, (s, _) in zip(SPECS, jobs, strict=True)},
        "specs": specs,
        "stdout": done.stdout,
        "references": references,
    }


def _reference(spec: Path) -> tuple[dict[str, np.ndarray], list[float]]:
    """`dnn train`'s initial variables (by "collection/layer/leaf") and first 5 losses."""
    program = dnn.load(str(spec))
    prepared = pipeline.prepare(program)
    engine = Engine(program, prepared, 1)
    st = engine.init()
    variables = {"params": engine.to_disk(st["params"]), **engine.to_disk(st["model_state"])}
    flat = {
        "/".join(str(k.key) for k in path): np.asarray(v)
        for path, v in jax.tree_util.tree_flatten_with_path(variables)[0]
    }
    x, y = (jnp.asarray(a) for a in (prepared.splits["train"].x, prepared.splits["train"].y))
    order, _ = engine.order(1, int(x.shape[0]))
    losses = []
    for i in range(STEPS):
        st, acc = engine.step(st, engine.train_acc(), x, y, order, i)
        losses.append(float(acc["loss"] / acc["count"]))
    return flat, losses


@pytest.mark.parametrize("name", SPECS)
def test_the_script_starts_and_steps_as_dnn_train(emitted: dict[str, Any], name: str) -> None:
    want_init, want_losses = emitted["references"][name]
    got = emitted["inits"][name]
    assert sorted(got) == sorted(want_init)  # same layers, leaves and batch statistics
    for key, value in want_init.items():
        assert got[key].shape == value.shape, key
        np.testing.assert_allclose(got[key], value, rtol=1e-6, atol=1e-7, err_msg=key)
    assert len(emitted["losses"][name]) == STEPS
    np.testing.assert_allclose(emitted["losses"][name], want_losses, rtol=1e-5)
    assert want_losses[0] != want_losses[-1]  # the steps moved the weights


def test_the_scripts_do_not_import_dnn(emitted: dict[str, Any]) -> None:
    assert "dnn imported: False" in emitted["stdout"]
    for script in emitted["scripts"].values():
        text = script.read_text()
        assert not re.search(r"^\s*(import|from) dnn\b", text, re.MULTILINE)


def _ruff(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """ruff with its default settings (not this project's) on files or folders."""
    return subprocess.run(
        [sys.executable, "-m", "ruff", *map(str, args), "--isolated"],
        capture_output=True,
        text=True,
    )


def test_the_scripts_are_ruff_formatted_and_clean(emitted: dict[str, Any], tmp_path: Path) -> None:
    scripts = list(emitted["scripts"].values())
    # without ruff at emit time the script is written unformatted: it must pass ruff check too
    raw = tmp_path / "raw_tiny_resnet.py"
    raw.write_text(emit(dnn.load(str(emitted["specs"]["tiny_resnet"])), format_code=False))
    fmt = _ruff("format", "--check", *scripts)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    check = _ruff("check", *scripts, raw)
    assert check.returncode == 0, check.stdout


def test_every_branch_of_the_templates_is_ruff_clean(tmp_path: Path) -> None:
    """The bench's variant specs take the other branches (normalizers, target scaling, early
    stopping without restore, regression, the other optimizers and schedules): emitted,
    formatted or not, they pass ruff check (running them is bench/emit_check.py's job)."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
    try:
        from emit_check import VARIANTS
    finally:
        sys.path.pop(0)
    formatted, raw = tmp_path / "formatted", tmp_path / "raw"
    formatted.mkdir()
    raw.mkdir()
    for name, text in VARIANTS.items():
        spec = tmp_path / f"{name}.dnn"
        spec.write_text(text)
        program = dnn.load(str(spec))
        (formatted / f"{name}.py").write_text(emit(program))
        (raw / f"{name}.py").write_text(emit(program, format_code=False))
    fmt = _ruff("format", "--check", formatted)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    check = _ruff("check", formatted, raw)
    assert check.returncode == 0, check.stdout
    assert len(list(raw.iterdir())) == len(VARIANTS) == 7


def test_the_mlp_script_reads_as_the_spec(emitted: dict[str, Any]) -> None:
    text = emitted["scripts"]["digits_mlp"].read_text()
    assert "class DigitsMlp(nn.Module):" in text
    assert 'x = nn.Dense(256, kernel_init=glorot_uniform, name="dense")(pixels)' in text
    assert 'x = nn.Dropout(0.2, deterministic=not train, name="dropout")(x)' in text
    assert "optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-08)" in text
    assert "optax.inject_hyperparams(chain)(learning_rate=0.001)" in text
    assert "x, y = load_digits(return_X_y=True)" in text
    assert "if bad_epochs >= 8:" in text  # early_stopping = { ..., patience: 8 }


LSTM = """dnn 1
model m {
  input x: f32[20, 1]
  lstm(8)
  dense(2)
}
data { source = builtin("sequence") }
"""

FTRL = """dnn 1
model m {
  input x: f32[64]
  dense(10)
}
data { source = builtin("digits") }
train { optimizer = ftrl(lr = 0.1) }
"""


@pytest.mark.parametrize(
    ("src", "where", "message"),
    [
        (LSTM, "4:3", "`--emit python` cannot write out the layer `lstm` yet"),
        (FTRL, "7:21", "`--emit python` cannot write out the optimizer `ftrl` yet"),
    ],
)
def test_an_unsupported_word_is_named_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], src: str, where: str, message: str
) -> None:
    spec, out = tmp_path / "m.dnn", tmp_path / "train_m.py"
    spec.write_text(src)
    assert main(["compile", str(spec), "--emit", "python", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{spec}:{where}: error[E0615]: {message}" in err, err
    line = src.splitlines()[int(where.split(":")[0]) - 1]
    assert line in err and "^" in err
    assert "hint: see docs/emit.md" in err
    assert not out.exists()


def test_emit_needs_an_output_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(EXAMPLES / "digits_mlp.dnn"), "--emit", "python"]) == 2
    assert "--emit python needs -o FILE.py" in capsys.readouterr().err


def test_the_docs_list_every_word_the_emitter_covers() -> None:
    page = (Path(__file__).parent.parent / "docs" / "emit.md").read_text()
    covered = page[page.index("## What it covers") :]
    for kind, words in supported_words().items():
        for word in words:
            stem = word.rstrip("123d") if word[:-2] in ("maxpool", "avgpool") else word
            assert f"`{stem}" in covered, (kind, word)
