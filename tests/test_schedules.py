"""Schedules and clipping against hand-computed values (float64), boundaries included."""

from __future__ import annotations

import math

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np
import pytest
from dnn.compiler.diagnostics import SpecError  # noqa: E402
from dnn.compiler.driver import schedule  # noqa: E402

pytestmark = pytest.mark.usefixtures("x64")  # float64 throughout (conftest)


def lrs(text: str, ts: list[int], lr: float = 0.1, **kw: object) -> list[float]:
    f = schedule(text, lr=lr, **kw)
    return [float(f(t)) for t in ts]


def close(a: list[float], b: list[float]) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_constant() -> None:
    close(lrs("constant", [0, 5, 1000]), [0.1, 0.1, 0.1])


def test_step_is_the_lecture_formula() -> None:
    # The lecture's 0.65 ** (epoch // 10), with 3 steps per epoch: step 29 is epoch 9, 30 is 10.
    got = lrs(
        "step(step_size = 10 epochs, gamma = 0.65)", [0, 29, 30, 59, 60], lr=1.0, steps_per_epoch=3
    )
    close(got, [1.0, 1.0, 0.65, 0.65, 0.65**2])


def test_multistep_boundaries() -> None:
    got = lrs("multistep(milestones = [3, 5], gamma = 0.5)", [0, 2, 3, 4, 5, 9], lr=1.0)
    close(got, [1.0, 1.0, 0.5, 0.5, 0.25, 0.25])


def test_exponential_smooth_and_staircase() -> None:
    close(
        lrs("exponential(decay_rate = 0.96, decay_steps = 1000)", [0, 500, 1000]),
        [0.1, 0.1 * 0.96**0.5, 0.1 * 0.96],
    )
    close(
        lrs("exponential(decay_rate = 0.5, decay_steps = 10, staircase = true)", [9, 10, 25]),
        [0.1, 0.05, 0.025],
    )


def test_natural_exp_and_inverse_time() -> None:
    close(
        lrs("natural_exp(decay_rate = 0.5, decay_steps = 10)", [0, 10, 15]),
        [0.1, 0.1 * math.exp(-0.5), 0.1 * math.exp(-0.75)],
    )
    close(
        lrs("inverse_time(decay_rate = 0.5, decay_steps = 10, staircase = true)", [9, 10, 20]),
        [0.1, 0.1 / 1.5, 0.1 / 2.0],
    )


def test_piecewise_constant() -> None:
    got = lrs(
        "piecewise_constant(boundaries = [10, 20], values = [1.0, 0.5, 0.1])",
        [0, 9, 10, 19, 20, 100],
    )
    close(got, [1.0, 1.0, 0.5, 0.5, 0.1, 0.1])


def test_polynomial() -> None:
    got = lrs("polynomial(decay_steps = 10, end_lr = 0.01, power = 2.0)", [0, 5, 10, 50], lr=1.0)
    close(got, [1.0, 0.99 * 0.25 + 0.01, 0.01, 0.01])


def test_cosine() -> None:
    got = lrs("cosine(decay_steps = 100, alpha = 0.1)", [0, 50, 100, 150], lr=1.0)
    close(got, [1.0, 0.1 + 0.9 * 0.5, 0.1, 0.1])


def test_warmup_then_schedule_counts_from_the_end_of_warmup() -> None:
    got = lrs("step(step_size = 10, gamma = 0.5, warmup = 4 steps)", [0, 1, 3, 4, 13, 14], lr=1.0)
    close(got, [0.0, 0.25, 0.75, 1.0, 1.0, 0.5])


def test_reduce_on_plateau_warms_up_like_every_other_schedule() -> None:
    # Issue 14, class 6: `reduce_on_plateau` refused `warmup`. The base rate it lowers to is
    # lr_0 * s / warmup for s < warmup, then lr_0 (the runtime multiplies in the plateau factor)
    got = lrs("reduce_on_plateau(monitor = loss, warmup = 4 steps)", [0, 1, 2, 3, 4, 50], lr=1.0)
    close(got, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    got = lrs("plateau(warmup = 1 epochs)", [0, 1, 2, 3], lr=0.1, steps_per_epoch=2)
    close(got, [0.0, 0.05, 0.1, 0.1])


def test_warmup_cosine() -> None:
    got = lrs("warmup_cosine(warmup = 10 steps, decay_steps = 20)", [0, 5, 10, 20, 30, 40], lr=1.0)
    close(got, [0.0, 0.5, 1.0, 0.5, 0.0, 0.0])
    got = lrs(
        "warmup_cosine(warmup = 1 epochs)", [0, 2, 4, 8], lr=1.0, steps_per_epoch=4, total_steps=12
    )
    close(got, [0.0, 0.5, 1.0, 0.5])


def test_cosine_restarts_like_pytorch() -> None:
    # CosineAnnealingWarmRestarts(T_0 = 4, T_mult = 2): restarts at steps 4 and 12.
    got = lrs("cosine_restarts(period = 4, mult = 2)", [0, 2, 4, 8, 12], lr=1.0)
    close(got, [1.0, 0.5, 1.0, 0.5, 1.0])
    close(lrs("cosine_restarts(period = 4)", [0, 2, 4, 6]), [0.1, 0.05, 0.1, 0.05])


def test_one_cycle_like_pytorch() -> None:
    # OneCycleLR(max_lr = 1, total_steps = 11, pct_start = 0.5 ... ): peak at step 4.5, last 10
    got = lrs(
        "one_cycle(max_lr = 1.0, total = 11, pct_start = 0.5, div_factor = 10.0, "
        "final_div_factor = 100.0, anneal_strategy = linear)",
        [0, 9, 10],
        lr=1.0,
    )
    start, low = 0.1, 0.001
    up_end, down_end = 4.5, 10.0
    close(got, [start, 1.0 + (low - 1.0) * (9 - up_end) / (down_end - up_end), low])


def test_epoch_unit_without_steps_per_epoch_is_a_diagnostic() -> None:
    with pytest.raises(SpecError) as info:
        schedule("step(step_size = 2 epochs)", lr=0.1)
    (d,) = info.value.diagnostics
    assert "in epochs but the steps per epoch are not known" in d.message
    assert d.hint and "steps" in d.hint


def test_schedule_text_errors_are_diagnostics() -> None:
    with pytest.raises(SpecError) as info:
        schedule("exponentail(decay_rate = 0.5, decay_steps = 3)", lr=0.1)
    assert info.value.diagnostics[0].hint.startswith("did you mean `exponential`")


def test_schedules_jit() -> None:
    f = schedule("multistep(milestones = [3, 5])", lr=1.0)
    ts = jnp.arange(8)
    np.testing.assert_allclose(jax.jit(jax.vmap(f))(ts), [1, 1, 1, 0.1, 0.1, 0.01, 0.01, 0.01])


# ---------------------------------------------------------------- clipping


def clipped(text: str, grads: dict, params: dict | None = None) -> dict:
    from dnn.compiler.driver import clipper

    t = clipper(text)
    params = params if params is not None else jax.tree.map(jnp.ones_like, grads)
    out, _ = t.update(grads, t.init(params), params)
    return jax.tree.map(np.asarray, out)


def test_clip_value() -> None:
    out = clipped("value(0.5)", {"a": jnp.array([-2.0, 0.1, 3.0])})
    close(list(out["a"]), [-0.5, 0.1, 0.5])


def test_clip_norm_is_per_tensor() -> None:
    out = clipped("norm(1.0)", {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.3, 0.4])})
    close(list(out["a"]), [0.6, 0.8])  # norm 5 → 1
    close(list(out["b"]), [0.3, 0.4])  # norm 0.5 stays


def test_clip_global_norm() -> None:
    out = clipped("global_norm(1.0)", {"a": jnp.array([3.0]), "b": jnp.array([4.0])})
    close([float(out["a"][0]), float(out["b"][0])], [0.6, 0.8])


def test_clip_average_norm() -> None:
    # ||g|| = 5, n = 2: average norm 2.5 > 1, so g · 1 / 2.5
    out = clipped("average_norm(1.0)", {"a": jnp.array([3.0, 4.0])})
    close(list(out["a"]), [1.2, 1.6])


def test_clip_adaptive_unitwise() -> None:
    # one unit: ||W|| = 1, ||G|| = 10 > c·||W|| = 0.1 → G · 0.1 / 10
    out = clipped("adaptive(0.1)", {"w": jnp.array([10.0, 0.0])}, {"w": jnp.array([1.0, 0.0])})
    close(list(out["w"]), [0.1, 0.0])


def test_program_build_optimizer_uses_train_section() -> None:
    import dnn

    program = dnn.load("examples/digits_cnn.dnn")
    tx = program.build_optimizer(steps_per_epoch=10)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    # warm-up of 50 steps from 0 toward adam's lr = 2e-3: the first rate is 0; the state holds
    # the rate of the latest update, so after 25 updates it is that of step 24: 24/50 · 2e-3
    assert float(state.hyperparams["learning_rate"]) == 0.0
    for _ in range(25):
        _, state = tx.update({"w": jnp.ones(3)}, state, params)
    np.testing.assert_allclose(float(state.hyperparams["learning_rate"]), 9.6e-4, rtol=1e-6)
    with pytest.raises(SpecError) as info:
        program.build_optimizer()  # `30 epochs` needs the steps per epoch
    assert info.value.diagnostics[0].span.line == 38


def test_rate_dividing_optimizers_refuse_a_zero_rate() -> None:
    import dnn

    src = "train {\n  optimizer = ftrl(lr = 0.1)\n  schedule = step(step_size = 5, warmup = 10 steps)\n}\n"
    with pytest.raises(SpecError) as info:
        dnn.loads(src, "f.dnn").build_optimizer(steps_per_epoch=10)
    (d,) = info.value.diagnostics
    assert "reaches a learning rate of 0, which `ftrl` divides by" in d.message
    assert (d.span.line, d.span.col) == (3, 14)
    ok = src.replace(", warmup = 10 steps", "")
    assert dnn.loads(ok).build_optimizer(steps_per_epoch=10) is not None
