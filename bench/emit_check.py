"""Every spec `--emit python` accepts, run as emitted and compared with `dnn train`'s engine.

    python bench/emit_check.py [--steps 5] [NAME ...]

For each example the emitter writes out, and for variants that use the other words it covers
(optimizers, schedules, clipping, augmentations, normalizers, losses, merges, activations,
pooling, penalties, `train.init`, `drop_last`, `shuffle = false`), the script is emitted, run
in a subprocess as `python FILE --steps N --save-init FILE.npz`, and its initial variables
and first N losses are compared with those of `Engine.init` and `Engine.step` (what `dnn
train` runs) on the same seed. Prints one line per spec: the largest initial-variable
difference, the largest relative loss difference; the last line is JSON. The examples the
emitter refuses are listed with their E0615 message. Not part of the tests (about a minute
per ten specs on 2 cores); tests/test_emit_python.py checks the MLP, the CNN and a residual
network.

`--flax-ops` computes the reference with XLA's convolution in place of dnn's one-channel
convolution (`lower_flax.one_channel_conv`, a sum of shifted inputs on the CPU) and with
Flax's pooling in place of dnn's tiled pooling (`lower_flax._tiled_pool`, slices combined
elementwise), both exact up to the order of a sum: the script calls `nn.Conv` and
`nn.avg_pool`, so with them the two compute the same sums and any difference left would be
the emitter's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from dnn.compiler.diagnostics import SpecError
from dnn.runtime import pipeline
from dnn.runtime.emit_python import write
from dnn.runtime.train import Engine

import dnn

ROOT = Path(__file__).resolve().parent.parent

IMAGE = """dnn 1
model variant {
  input image: f32[8, 8, 1]
  %s
}
data {
  source = builtin("digits")
  normalize = %s
  augment = [%s]
  drop_last = %s
  shuffle = %s
}
train {
  loss = %s
  batch_size = 50
  optimizer = %s
  schedule = %s
  %s
}
"""

VARIANTS = {
    "v_adamw_flip_noise": IMAGE
    % (
        "conv2d(8, kernel = 3, stride = 2, padding = 1, dilation = 1) -> leaky_relu(0.1)\n"
        "  avgpool(2, padding = same)\n  flatten\n  dense(16, init = he_uniform) -> gelu\n"
        "  layernorm\n  dense(10, init = lecun_normal, bias_init = constant(0.1))",
        "minmax",
        "random_flip(horizontal), noise(std = 0.1)",
        "true",
        "true",
        "cross_entropy(label_smoothing = 0.1)",
        "adamw(lr = 3e-3, weight_decay = 0.05)",
        "multistep(milestones = [3 steps, 1 epochs], gamma = 0.5, warmup = 2 steps)",
        "clip = value(0.5)",
    ),
    "v_rmsprop_merges": IMAGE
    % (
        "a = conv2d(4, kernel = 3, padding = same, init = orthogonal)(image) -> tanh\n"
        "  b = conv2d(4, kernel = 1, groups = 1, init = glorot_normal)(image) -> elu\n"
        "  c = concat(a, b)\n"
        "  m = maximum(a, b)\n  s = subtract(a, b)\n  p = multiply(a, b)\n"
        "  v = average(m, s, p)\n"
        "  h = concat(c, v) -> maxpool(2, stride = 1)\n"
        "  global_maxpool(h)\n  dense(10) -> log_softmax",
        "scale",
        "",
        "false",
        "false",
        "cross_entropy",
        "rmsprop(lr = 1e-3, centered = true, momentum = 0.5, weight_decay = 1e-4)",
        "exponential(decay_steps = 2 steps, decay_rate = 0.9, staircase = true)",
        "init = variance_scaling(scale = 2.0, mode = fan_out, distribution = uniform)",
    ),
    "v_sgd_polynomial_l1": IMAGE
    % (
        "flatten\n  dense(32, regularizer = l1_l2(l1 = 1e-4, l2 = 1e-3)) -> selu\n"
        "  dropout(0.1)\n  dense(10, regularizer = l1(1e-3, on = all))",
        "mean_subtraction",
        "random_crop(padding = 2)",
        "false",
        "true",
        "cross_entropy",
        "sgd(lr = 0.1)",
        "polynomial(decay_steps = 1 epochs, end_lr = 0.01, power = 2.0)",
        "regularizer = l2(1e-4)",
    ),
    "v_lion_bce": """dnn 1
model variant {
  input x: f32[30]
  dense(16, init = uniform(low = -0.1, high = 0.1)) -> silu
  batchnorm(momentum = 0.9)
  dense(8, init = normal(mean = 0.01, std = 0.1)) -> mish
  reshape([2, 4])
  flatten
  dense(1, init = truncated_normal(std = 0.05)) -> hard_tanh
}
data {
  source = builtin("breast_cancer")
  normalize = standardize
}
train {
  loss = binary_cross_entropy
  optimizer = lion(lr = 1e-4, weight_decay = 0.1)
  schedule = cosine(decay_steps = 3 epochs, alpha = 0.1)
  clip = global_norm(0.5)
  early_stopping = { monitor: loss, patience: 3, restore_best: false }
}
""",
    "v_warmup_cosine": """dnn 1
model variant {
  input x: f32[13]
  dense(16) -> relu
  dense(3)
}
data {
  source = builtin("wine")
  normalize = standardize
}
train {
  batch_size = 16
  epochs = 6
  optimizer = adam(lr = 1e-2)
  schedule = warmup_cosine(warmup = 5 steps, alpha = 0.1)
}
""",
    "v_adadelta_huber": """dnn 1
model variant {
  input x: f32[10]
  dense(16, init = he_normal(mode = fan_out, nonlinearity = tanh)) -> softplus
  dense(16, init = lecun_uniform) -> hard_sigmoid
  dense(1, init = ones, bias_init = zeros)
}
data {
  source = builtin("diabetes")
  normalize = standardize
  targets = minmax
}
train {
  loss = huber(delta = 0.5)
  metrics = [mae]
  optimizer = adadelta(lr = 1.0, weight_decay = 1e-3)
}
""",
    "v_momentum_mae": """dnn 1
model variant {
  input x: f32[10]
  dense(8, init = zeros) -> relu6
  dense(8, init = glorot_uniform(gain = 2.0)) -> softsign
  dense(1) -> sigmoid
}
data {
  source = builtin("diabetes")
  normalize = none
  targets = scale
  split = { train: 0.6, val: 0.2, test: 0.2 }
}
train {
  loss = mae
  optimizer = momentum(lr = 0.01, dampening = 0.1)
  early_stopping = { monitor: val_loss, patience: 2 }
  schedule = step(step_size = 3 steps, gamma = 0.5, warmup = 1 epochs)
  batch_size = 16
}
""",
}


def reference(program: dnn.Program, steps: int) -> tuple[dict[str, np.ndarray], list[float]]:
    prepared = pipeline.prepare(program)
    engine = Engine(program, prepared, 1)
    st = engine.init()
    variables = {"params": engine.to_disk(st["params"]), **engine.to_disk(st["model_state"])}
    flat = {
        "/".join(str(k.key) for k in path): np.asarray(v)
        for path, v in jax.tree_util.tree_flatten_with_path(variables)[0]
    }
    x = jnp.asarray(prepared.splits["train"].x)
    y = jnp.asarray(prepared.splits["train"].y)
    losses: list[float] = []
    epoch = 1
    while len(losses) < steps and epoch <= program.train.epochs:  # the script stops there too
        full, tail = engine.order(epoch, int(x.shape[0]))
        batches = [(full, i) for i in range(engine.full)] + (
            [(tail, 0)] if tail is not None else []
        )
        for order, i in batches:
            st, acc = engine.step(st, engine.train_acc(), x, y, order, i)
            losses.append(float(acc["loss"] / acc["count"]))
            if len(losses) == steps:
                break
        epoch += 1
    return flat, losses


def check(name: str, spec: Path, steps: int, folder: Path) -> dict[str, object]:
    program = dnn.load(str(spec))
    script = folder / f"train_{name}.py"
    try:
        write(program, script)
    except SpecError as e:
        d = e.diagnostics[0]
        return {"spec": name, "refused": f"{d.span.line}:{d.span.col} {d.message}"}
    init = folder / f"{name}.npz"
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script), "--steps", str(steps), "--save-init", str(init)],
        capture_output=True,
        text=True,
        cwd=folder,
        env=os.environ,
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        return {"spec": name, "failed": done.stderr[-800:]}
    got_losses = [float(s.split()[-1]) for s in done.stdout.splitlines() if s.startswith("step ")]
    want, want_losses = reference(program, steps)
    got = dict(np.load(init))
    if sorted(got) != sorted(want):
        return {"spec": name, "failed": f"variables differ: {sorted(set(got) ^ set(want))}"}
    init_diff = max(float(np.max(np.abs(got[k] - want[k]), initial=0.0)) for k in want)
    rel = np.abs(np.subtract(got_losses, want_losses)) / np.abs(want_losses)
    loss_rel = float(np.max(rel))
    # the first step whose loss differs by more than 1e-5 (relative): where float rounding,
    # amplified by training, shows
    apart = next((i + 1 for i, r in enumerate(rel) if r > 1e-5), None)
    return {
        "spec": name,
        "init_max_abs": init_diff,
        "loss_max_rel": loss_rel,
        "first_step_over_1e-5": apart,
        "losses": want_losses,
        "script_s": round(wall, 1),
        "lines": len(script.read_text().splitlines()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument(
        "--flax-ops",
        action="store_true",
        help="compute dnn's reference with XLA's convolution and Flax's pooling where dnn "
        "computes them its own way on the CPU (the script calls nn.Conv and nn.avg_pool)",
    )
    args = ap.parse_args()
    if args.flax_ops:
        from dnn.compiler import lower_flax
        from jax import lax

        lower_flax.one_channel_conv = lax.conv_general_dilated  # type: ignore[assignment]
        lower_flax._tiles = lambda *a: False  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        specs = {p.stem: p for p in sorted((ROOT / "examples").glob("*.dnn"))}
        for name, text in VARIANTS.items():
            specs[name] = folder / f"{name}.dnn"
            specs[name].write_text(text)
        chosen = args.names or list(specs)
        rows = []
        for name in chosen:
            row = check(name, specs[name], args.steps, folder)
            rows.append(row)
            if "refused" in row:
                print(f"{name:24} refused: {row['refused']}", flush=True)
            elif "failed" in row:
                print(f"{name:24} FAILED: {row['failed']}", flush=True)
            else:
                print(
                    f"{name:24} init max |diff| {row['init_max_abs']:.1e}  losses max rel "
                    f"{row['loss_max_rel']:.1e} (first over 1e-5: step {row['first_step_over_1e-5']})"
                    f"  ({row['lines']} lines, ran {row['script_s']} s)",
                    flush=True,
                )
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
