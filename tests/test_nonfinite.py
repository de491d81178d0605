"""The NaN guard names where a non-finite loss came from (issue 21, point 3).

Each spec is built so that its first non-finite value appears at a place known by hand, on
standardized digits (|x| up to about 10, 64 features):

- outputs: `dense(16, init = constant(1e20))` gives values near 1e21-1e22, then
  `dense(4, init = constant(1e20))` sums 16 of them times 1e20: past float32's 3.4e38 (inf);
- loss: outputs near 1e21 are finite, their mse (about 1e42) is not;
- gradients: hidden values near 1e29 (finite), an output near 1e18 through weights of 1e-12
  and its mse (about 1e36) are finite, but the last layer's kernel gradient h * dL/dz is
  about 1e29 * 1e18 (inf), and every layer before it inherits the infinity;
- update: every gradient finite (near 1e4), `sgd(lr = 1e36)` times them overflows: the step's loss is
  still finite, the next one's is not, and the error says where it began.
"""

from __future__ import annotations

from pathlib import Path

from dnn.runtime.cli import main

SPEC = """dnn 1
model m {{
  input x: f32[64]
{layers}
}}
data {{
  source = builtin("digits")
  normalize = standardize
}}
train {{
  loss = {loss}
  epochs = {epochs}
  batch_size = 64
  optimizer = {optimizer}
{extra}}}
"""


def run(
    tmp_path: Path,
    capsys,
    layers: str,
    loss: str = "cross_entropy",
    optimizer: str = "sgd",
    epochs: int = 1,
    extra: str = "",
    args: tuple[str, ...] = (),
) -> list[str]:
    path = tmp_path / "nan.dnn"
    path.write_text(
        SPEC.format(layers=layers, loss=loss, optimizer=optimizer, epochs=epochs, extra=extra)
    )
    code = main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert not (tmp_path / "run" / "result.json").exists()
    return [line.replace(str(path), "nan.dnn") for line in err.splitlines()]


HINT = (
    "  hint: lower the learning rate, add `clip = global_norm(1.0)`, or check the inputs for "
    "extreme values"
)


def test_the_first_layer_whose_outputs_overflow_is_named(tmp_path: Path, capsys) -> None:
    layers = "  dense(16, init = constant(1e20))\n  dense(4, init = constant(1e20))\n  dense(10)"
    err = run(tmp_path, capsys, layers)
    assert err == [
        "nan.dnn:5:3: error[E0605]: the loss is not finite (nan or inf) at epoch 1, step 1 "
        "(batch 1 of 23): the outputs of `dense_1` (dense) are the first that are not (inf; "
        "its inputs are finite); training stopped and no checkpoint had been written yet",
        "5 |   dense(4, init = constant(1e20))",
        "  |   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
        HINT,
        "1 error",
    ]


def test_a_loss_that_overflows_on_finite_outputs_is_named_at_the_loss(
    tmp_path: Path, capsys
) -> None:
    layers = "  dense(16, init = constant(1e20))\n  dense(1, init = constant(0.1))"
    err = run(tmp_path, capsys, layers, loss="mse")
    assert err[0] == (
        "nan.dnn:12:10: error[E0605]: the loss is not finite (nan or inf) at epoch 1, step 1 "
        "(batch 1 of 23): every layer's output is finite, the loss is not (inf); training "
        "stopped and no checkpoint had been written yet"
    )
    assert err[1] == "12 |   loss = mse"


def test_a_gradient_that_overflows_is_named_at_the_layer_nearest_the_outputs(
    tmp_path: Path, capsys
) -> None:
    layers = "  dense(8, init = constant(1e28))\n  dense(1, init = constant(1e-12))"
    err = run(tmp_path, capsys, layers, loss="mse")
    # the loss of step 1 is finite (its gradient is not): step 2's is the first marked
    assert err[0] == (
        "nan.dnn:5:3: error[E0605]: the loss is not finite (nan or inf) at epoch 1, step 2 "
        "(batch 2 of 23); it began at step 1 (batch 1): the forward pass and the loss are "
        "finite; the gradient is first not finite (inf) at `dense_1` (dense), the layer nearest "
        "the outputs where it is not; training stopped and no checkpoint had been written yet"
    )
    assert err[1] == "5 |   dense(1, init = constant(1e-12))"


def test_an_update_that_overflows_is_named_at_the_optimizer_and_the_step_it_began(
    tmp_path: Path, capsys
) -> None:
    # outputs near 8,000 against labels 0-9: kernel gradients near 1e4, times 1e36
    layers = "  dense(8, init = constant(10.0))\n  dense(1, init = constant(10.0))"
    err = run(tmp_path, capsys, layers, loss="mse", optimizer="sgd(lr = 1e36)")
    assert err[0] == (
        "nan.dnn:15:15: error[E0605]: the loss is not finite (nan or inf) at epoch 1, step 2 "
        "(batch 2 of 23); it began at step 1 (batch 1): the gradients are finite; the "
        "optimizer's update is not (inf); training stopped and no checkpoint had been written "
        "yet"
    )
    assert err[1] == "15 |   optimizer = sgd(lr = 1e36)"


def test_a_later_epoch_is_replayed_from_the_last_checkpoint(tmp_path: Path, capsys) -> None:
    # a rate that grows 1e12-fold after the first epoch: epoch 1 trains and is saved, the
    # outputs overflow in epoch 2, found by replaying from that checkpoint
    layers = "  dense(16)\n  dense(10)"
    extra = "  schedule = step(step_size = 1 epochs, gamma = 1e12)\n"
    err = run(
        tmp_path,
        capsys,
        layers,
        optimizer="sgd(lr = 0.5)",
        epochs=3,
        extra=extra,
        args=("--checkpoint-every", "0"),
    )
    assert err[0].startswith("nan.dnn:") and "error[E0605]: the loss is not finite (nan or inf) "
    assert " at epoch 2, step " in err[0]
    assert err[0].endswith("training stopped and the checkpoint of epoch 1 is kept"), err[0]
    assert "(dense)" in err[0] or "the optimizer's update is not" in err[0], err[0]
