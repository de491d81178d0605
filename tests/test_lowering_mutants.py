"""Tests that close what the mutation run of the lowering modules found (issue 14).

Each checks real values against an independent reference: a float64 NumPy computation of the
documented formula, or a hand-worked example. docs/soundness.md lists the mutants each kills.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dnn.compiler.diagnostics import SpecError
from dnn.compiler.driver import value
from dnn.compiler.lower_loss import lower_constraints, lower_loss, lower_penalties
from dnn.compiler.lower_optax import plateau_start, plateau_step, plateau_watches
from dnn.compiler.lower_scan import plan, stack, unstack

import dnn

pytestmark = pytest.mark.usefixtures("x64")  # float64 throughout (conftest)

RNG = np.random.default_rng(14)


def loss(text: str, z: np.ndarray, y: np.ndarray) -> float:
    return float(lower_loss(value(text, "loss")[0])(jnp.asarray(z), jnp.asarray(y)))


def bce(z: np.ndarray, y: np.ndarray) -> float:
    p = 1 / (1 + np.exp(-z))
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def crammer_singer(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    true = z[np.arange(len(labels)), labels]
    other = np.array([np.delete(row, c).max() for row, c in zip(z, labels, strict=True)])
    return np.maximum(0, 1 + other - true)


# ---------------------------------------------------------------- losses: the target layouts


def test_one_unit_with_a_vector_of_0_1_targets() -> None:
    """One output unit, targets (N,): a binary decision, never one-hot rows of width 1."""
    z, y = RNG.normal(size=(5, 1)), np.array([1, 0, 1, 1, 0])
    assert loss("binary_cross_entropy", z, y) == pytest.approx(bce(z[:, 0], y), rel=1e-12)
    margin = np.maximum(0, 1 - (2 * y - 1) * z[:, 0])
    assert loss("hinge", z, y) == pytest.approx(margin.mean(), rel=1e-12)
    assert loss("squared_hinge", z, y) == pytest.approx((margin**2).mean(), rel=1e-12)


def test_two_units_with_class_labels_are_one_hot_rows() -> None:
    z, labels = RNG.normal(size=(5, 2)), np.array([0, 1, 1, 0, 1])
    onehot = np.eye(2)[labels]
    assert loss("binary_cross_entropy", z, labels) == pytest.approx(bce(z, onehot), rel=1e-12)
    margin = crammer_singer(z, labels)
    assert loss("hinge", z, labels) == pytest.approx(margin.mean(), rel=1e-12)


def test_a_batch_of_one_example() -> None:
    """The batch axis is never read as the class axis (a batch of one row)."""
    z, labels = np.array([[2.0, 0.5, -1.0]]), np.array([2])
    # hand-worked: class 2 scores -1, the best other 2: max(0, 1 + 2 + 1) = 4
    assert loss("hinge", z, labels) == pytest.approx(4.0, rel=1e-12)
    assert loss("binary_cross_entropy", z, labels) == pytest.approx(
        bce(z, np.array([[0.0, 0.0, 1.0]])), rel=1e-12
    )


# ---------------------------------------------------------------- penalties


PENALIZED = """model m {
  input x: f32[3]
  dense(4, regularizer = l1_l2(l1 = 0.1, l2 = 0.01))
  dense(2, regularizer = l2(0.5, on = all))
}
"""


def test_penalties_read_biases_only_with_on_all() -> None:
    """Random biases (initialized ones are zero and hide the choice of leaves)."""
    program = dnn.loads(PENALIZED)
    p = {
        n: {"kernel": RNG.normal(size=shape), "bias": RNG.normal(size=shape[1])}
        for n, shape in (("dense", (3, 4)), ("dense_1", (4, 2)))
    }
    k0, k1, b1 = p["dense"]["kernel"], p["dense_1"]["kernel"], p["dense_1"]["bias"]
    want = 0.1 * np.abs(k0).sum() + 0.01 * (k0**2).sum() + 0.5 * ((k1**2).sum() + (b1**2).sum())
    params = jax.tree.map(jnp.asarray, p)
    assert float(lower_penalties(program.model)(params)) == pytest.approx(want, rel=1e-12)


# ---------------------------------------------------------------- constraints


SCANNED = """block res(c) {
  h = dense(c, regularizer = l2(0.1), constraint = max_norm(1.5))(in) -> relu
  output add(in, h)
}
model m {
  input x: f32[3]
  repeat 3 { res(3) }
  dense(2, constraint = unit_norm)
}
"""


def max_norm(w: np.ndarray, c: float) -> np.ndarray:
    """Keras' MaxNorm(axis=0): each unit's incoming weights (a column) scaled to norm <= c."""
    n = np.sqrt((w * w).sum(axis=0, keepdims=True))
    return w * np.minimum(1.0, c / n)


def scanned_params() -> tuple[dnn.Program, dict, dict]:
    program = dnn.loads(SCANNED)
    shapes = {"res/dense": (3, 3), "res_1/dense": (3, 3), "res_2/dense": (3, 3), "dense": (3, 2)}
    flat = {
        n: {"kernel": 3 * RNG.normal(size=s), "bias": RNG.normal(size=s[1])}
        for n, s in shapes.items()
    }
    return program, flat, jax.tree.map(jnp.asarray, flat)


def test_constraints_project_each_slice_of_a_scanned_run() -> None:
    program, flat, params = scanned_params()
    scan = plan(program.model, True)
    assert [g.key for g in scan.groups] == ["res..res_2"]
    out = unstack(lower_constraints(program.model, scan)(stack(params, scan)), scan)
    for name in ("res/dense", "res_1/dense", "res_2/dense"):
        np.testing.assert_allclose(out[name]["kernel"], max_norm(flat[name]["kernel"], 1.5))
        np.testing.assert_array_equal(out[name]["bias"], flat[name]["bias"])
    k = flat["dense"]["kernel"]
    np.testing.assert_allclose(out["dense"]["kernel"], k / np.linalg.norm(k, axis=0))


def test_a_frozen_layer_keeps_its_constrained_kernel() -> None:
    program, flat, params = scanned_params()
    out = lower_constraints(program.model, freeze=("dense",))(params)
    np.testing.assert_array_equal(out["dense"]["kernel"], flat["dense"]["kernel"])
    np.testing.assert_allclose(
        out["res/dense"]["kernel"], max_norm(flat["res/dense"]["kernel"], 1.5)
    )


def test_penalties_sum_over_the_slices_of_a_scanned_run() -> None:
    program, flat, params = scanned_params()
    scan = plan(program.model, True)
    want = 0.1 * sum(
        (flat[n]["kernel"] ** 2).sum() for n in ("res/dense", "res_1/dense", "res_2/dense")
    )
    got = float(lower_penalties(program.model, scan=scan)(stack(params, scan)))
    assert got == pytest.approx(want, rel=1e-12)
    assert float(lower_penalties(program.model)(params)) == pytest.approx(want, rel=1e-12)


# ---------------------------------------------------------------- reduce on plateau


def torch_plateau(values: list[float], lr: float, a: dict) -> list[float]:
    """torch.optim.lr_scheduler.ReduceLROnPlateau.step, transcribed (eps = 1e-8): the rate
    after each epoch."""
    sign = 1 if a["mode"] == "min" else -1
    best, bad, cooldown, out = math.inf * sign, 0, 0, []
    for v in values:
        if a["mode"] == "min" and a["threshold_mode"] == "rel":
            better = v < best * (1 - a["threshold"])
        elif a["mode"] == "min":
            better = v < best - a["threshold"]
        elif a["threshold_mode"] == "rel":
            better = v > best * (a["threshold"] + 1)
        else:
            better = v > best + a["threshold"]
        if better:
            best, bad = v, 0
        else:
            bad += 1
        if cooldown > 0:
            cooldown, bad = cooldown - 1, 0
        if bad > a["patience"]:
            new = max(lr * a["factor"], a["min_lr"])
            if lr - new > 1e-8:
                lr = new
            cooldown, bad = a["cooldown"], 0
        out.append(lr)
    return out


def plateau_rates(a: dict, values: list[float], base_lr: float) -> list[float]:
    text = ", ".join(f"{k} = {v}" for k, v in a.items())
    monitor = "val_loss" if a["mode"] == "min" else "val_accuracy"
    ref, _ = value(f"reduce_on_plateau(monitor = {monitor}, {text})", "schedule")
    state, got = plateau_start(ref), []
    for v in values:
        state = plateau_step(ref, state, v, base_lr=base_lr)
        got.append(base_lr * state.scale)
    return got


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
@pytest.mark.parametrize(
    ("patience", "cooldown", "seed"), [(0, 0, 0), (1, 0, 1), (2, 1, 2), (1, 3, 3)]
)
def test_plateau_matches_pytorch(
    mode: str, threshold_mode: str, patience: int, cooldown: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    a = {
        "mode": mode,
        "threshold_mode": threshold_mode,
        "factor": 0.5,
        "patience": patience,
        "cooldown": cooldown,
        "threshold": 0.1,
        "min_lr": 1e-3,
    }
    # a noisy walk from 5 that drifts the better way and stalls: a relative threshold of 0.1
    # is about 0.5 there, five times the absolute one
    drift = 0.1 if mode == "max" else -0.1
    values = [float(v) for v in np.round(5 + np.cumsum(drift + rng.normal(0, 0.2, 60)), 3)]
    want = torch_plateau(values, 0.4, a)
    np.testing.assert_allclose(plateau_rates(a, values, 0.4), want, rtol=1e-12)
    assert len(set(want)) > 2  # the sequence reduces the rate at least twice
    other = {**a, "threshold_mode": "abs" if threshold_mode == "rel" else "rel"}
    assert torch_plateau(values, 0.4, other) != want  # and tells the threshold modes apart


def test_plateau_ignores_changes_of_at_most_1e_8() -> None:
    """PyTorch's eps: 2e-8 halved is a change of exactly 1e-8 (powers of two), not applied;
    a floor 5e-9 below the rate is not applied either."""
    a = {"mode": "min", "threshold_mode": "abs", "factor": 0.5, "patience": 0, "cooldown": 0}
    a |= {"threshold": 0.0, "min_lr": 0.0}
    assert plateau_rates(a, [1.0, 1.0, 1.0], 2e-8) == [2e-8] * 3
    a["min_lr"] = 1 - 5e-9
    assert plateau_rates(a, [1.0, 1.0, 1.0], 1.0) == [1.0] * 3
    assert torch_plateau([1.0, 1.0, 1.0], 1.0, a) == [1.0] * 3


def test_plateau_max_mode_starts_from_minus_infinity() -> None:
    ref, _ = value("reduce_on_plateau(monitor = val_accuracy, mode = max)", "schedule")
    assert plateau_start(ref).best == -math.inf
    ref, _ = value("reduce_on_plateau", "schedule")
    assert plateau_start(ref).best == math.inf


def test_plateau_watches_the_epochs_that_end_after_the_warmup() -> None:
    """Hand-worked: 3 steps an epoch; a warm-up of 2 epochs is steps 0..5, so the epoch ending
    at step 6 was all warm-up and the one ending at step 9 is the first watched."""
    ref, _ = value("reduce_on_plateau(warmup = 2 epochs)", "schedule")
    assert [plateau_watches(ref, u, 3) for u in (3, 6, 9)] == [False, False, True]
    ref, _ = value("reduce_on_plateau(warmup = 4 steps)", "schedule")
    assert [plateau_watches(ref, u, 3) for u in (3, 6)] == [False, True]
    ref, _ = value("reduce_on_plateau", "schedule")
    assert plateau_watches(ref, 1, 3)


# ---------------------------------------------------------------- parameter groups


def group_params(rng: np.random.Generator) -> dict:
    def leaf(*shape: int) -> jax.Array:
        return jnp.asarray(rng.normal(size=shape))

    return {
        "dense": {"kernel": leaf(2, 3), "bias": leaf(3)},
        "block/batchnorm": {"scale": leaf(3), "bias": leaf(3)},
        "head": {"kernel": leaf(3, 1), "bias": leaf(1)},
        "other": {"kernel": leaf(2)},
    }


def sgd_updates(train: str, params: dict, grads: dict | None = None) -> dict:
    tx = dnn.loads("train {\n" + train + "\n}\n").build_optimizer(steps_per_epoch=1)
    grads = grads if grads is not None else jax.tree.map(jnp.zeros_like, params)
    out, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    return jax.tree.map(np.asarray, out)


def test_freeze_and_the_first_matching_lr_scale() -> None:
    """Zero gradients and SGD(lr 1) with coupled decay 0.5: the update is -0.5·p, times the
    first matching scale, and 0 for a frozen layer."""
    params = group_params(np.random.default_rng(3))
    train = (
        "  optimizer = sgd(lr = 1.0, weight_decay = 0.5)\n  decay_all = true\n"
        '  freeze = ["head"]\n'
        '  lr_scale = { "block/*": 0.1, "block/batchnorm": 5.0, "d*": 3.0 }'
    )
    out = sgd_updates(train, params)
    factor = {"dense": 3.0, "block/batchnorm": 0.1, "head": 0.0, "other": 1.0}
    for layer, leaves in params.items():
        for role, p in leaves.items():
            want = -0.5 * np.asarray(p) * factor[layer]
            np.testing.assert_allclose(out[layer][role], want, rtol=1e-12, err_msg=layer)


def test_decay_skips_biases_and_scales_unless_decay_all() -> None:
    params = group_params(np.random.default_rng(4))
    out = sgd_updates("  optimizer = sgd(lr = 1.0, weight_decay = 0.5)", params)
    for layer, leaves in params.items():
        for role, p in leaves.items():
            want = 0.0 if role in ("bias", "scale") else -0.5 * np.asarray(p)
            np.testing.assert_allclose(out[layer][role], want, rtol=1e-12, err_msg=layer)


def test_accumulate_three_micro_batches() -> None:
    tx = dnn.loads("train {\n  optimizer = sgd(lr = 1.0)\n  accumulate = 3\n}\n").build_optimizer(
        steps_per_epoch=1
    )
    p = {"w": jnp.zeros(2)}
    s, got, update = tx.init(p), [], jax.jit(tx.update)
    for g in ([1.0, -2.0], [3.0, 0.5], [-1.0, 4.0]):
        u, s = update({"w": jnp.asarray(g)}, s, p)
        got.append(np.asarray(u["w"]))
    np.testing.assert_allclose(got, [[0, 0], [0, 0], [-1.0, -2.5 / 3]], rtol=1e-12)


# ---------------------------------------------------------------- schedules


def test_one_cycle_cosine_like_pytorch() -> None:
    """OneCycleLR(max_lr = 1, total_steps = 11, pct_start = 0.5, div_factor = 10,
    final_div_factor = 100), anneal_strategy 'cos': PyTorch's _annealing_cos(start, end, pct)
    = end + (start - end) / 2 · (cos(pi · pct) + 1); the phases end at step
    pct_start · total - 1 = 4.5 and total - 1 = 10."""
    from dnn.compiler.driver import schedule

    f = schedule(
        "one_cycle(max_lr = 1.0, total = 11, pct_start = 0.5, div_factor = 10.0, "
        "final_div_factor = 100.0)",
        lr=1.0,
    )

    def cos(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)

    want = [
        cos(0.1, 1.0, t / 4.5) if t <= 4.5 else cos(1.0, 0.001, (t - 4.5) / 5.5) for t in range(11)
    ]
    np.testing.assert_allclose([float(f(t)) for t in range(11)], want, rtol=1e-12)
    assert float(f(0)) == pytest.approx(0.1) and float(f(10)) == pytest.approx(0.001)


def test_multistep_milestones_in_epochs() -> None:
    from dnn.compiler.driver import schedule

    f = schedule("multistep(milestones = [1 epochs, 2 epochs], gamma = 0.5)", 1.0, 3)
    np.testing.assert_allclose(
        [float(f(t)) for t in range(8)], [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    )
    with pytest.raises(SpecError) as info:
        schedule("multistep(milestones = [1 epochs])", 1.0)
    (d,) = info.value.diagnostics
    assert (d.span.line, d.span.col, d.code) == (1, 1, "E0306")
    assert d.message == "`milestones` is in epochs but the steps per epoch are not known"


def test_warmup_ends_on_the_schedules_first_value() -> None:
    """Hand-worked: lr 1, warm-up of 2 steps (0, 0.5), then piecewise_constant from its own
    step 0: 0.5 until its step 3 (step 5 overall), then 0.25."""
    from dnn.compiler.driver import schedule

    f = schedule(
        "piecewise_constant(boundaries = [3], values = [0.5, 0.25], warmup = 2 steps)", lr=1.0
    )
    np.testing.assert_allclose([float(f(t)) for t in range(7)], [0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25])


def test_constant_maps_an_array_of_steps() -> None:
    from dnn.compiler.driver import schedule

    for text in ("constant", "reduce_on_plateau"):
        got = np.asarray(schedule(text, lr=0.3)(jnp.arange(4)))
        assert got.shape == (4,)
        np.testing.assert_allclose(got, [0.3] * 4, rtol=1e-12)


# ---------------------------------------------------------------- the train section's chain


def rates(train: str, steps: int, steps_per_epoch: int | None) -> list[float]:
    """The rate of each step: SGD updates of a unit gradient are -rate."""
    tx = dnn.loads("train {\n" + train + "\n}\n").build_optimizer(steps_per_epoch)
    p = {"w": jnp.zeros(())}
    s, out, update = tx.init(p), [], jax.jit(tx.update)
    for _ in range(steps):
        u, s = update({"w": jnp.ones(())}, s, p)
        out.append(-float(u["w"]))
    return out


def test_warmup_cosine_reads_the_length_of_training() -> None:
    """3 epochs of 4 steps = 12 steps: warm-up over 4, cosine over the remaining 8."""
    got = rates(
        "  optimizer = sgd(lr = 1.0)\n  epochs = 3\n  schedule = warmup_cosine(warmup = 1 epochs)",
        12,
        4,
    )
    want = [t / 4 if t < 4 else (1 + math.cos(math.pi * (t - 4) / 8)) / 2 for t in range(12)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


POLY = "  optimizer = ftrl(lr = 0.1)\n  epochs = 10\n  schedule = polynomial(decay_steps = {}, end_lr = 0.0)"


def test_a_rate_dividing_optimizer_refuses_a_schedule_reaching_0_within_training() -> None:
    """polynomial reaches 0 at its decay_steps: 40 is within 10 epochs of 5 steps, 100 is not;
    without steps per epoch the length is unknown and 40 is refused as well."""
    rates(POLY.format(100), 1, 5)  # never 0 within 50 steps: accepted
    for spe in (5, None):
        src = "train {\n" + POLY.format(40) + "\n}\n"
        with pytest.raises(SpecError) as info:
            dnn.loads(src, "spec.dnn").build_optimizer(spe)
        (d,) = info.value.diagnostics
        assert (d.code, d.span.line, d.span.col) == ("E0306", 4, 14)
        assert d.message == "this schedule reaches a learning rate of 0, which `ftrl` divides by"
        assert d.hint == (
            "drop the warm-up, keep a floor (`alpha`, `end_lr`, `min_lr` > 0), "
            "or choose another optimizer"
        )
        assert "4 |   schedule = polynomial(decay_steps = 40" in str(info.value)


def test_clipping_comes_first_in_the_chain() -> None:
    tx = dnn.loads(
        "train {\n  optimizer = sgd(lr = 0.5)\n  clip = value(0.25)\n}\n"
    ).build_optimizer(1)
    p = {"w": jnp.zeros(3)}
    u, _ = tx.update({"w": jnp.asarray([2.0, -0.1, -3.0])}, tx.init(p), p)
    np.testing.assert_allclose(np.asarray(u["w"]), [-0.125, 0.05, 0.125], rtol=1e-12)


def test_accumulate_two_micro_batches() -> None:
    tx = dnn.loads("train {\n  optimizer = sgd(lr = 1.0)\n  accumulate = 2\n}\n").build_optimizer(1)
    p = {"w": jnp.zeros(1)}
    s = tx.init(p)
    u1, s = tx.update({"w": jnp.asarray([1.0])}, s, p)
    u2, s = tx.update({"w": jnp.asarray([4.0])}, s, p)
    assert (float(u1["w"][0]), float(u2["w"][0])) == (0.0, -2.5)


def scanned_updates(train: str, grads: dict, params: dict) -> dict:
    program = dnn.loads(SCANNED + "train {\n  scan_repeats = true\n" + train + "\n}\n")
    scan = plan(program.model, True)
    tx = program.build_optimizer(1)
    g, p = stack(grads, scan), stack(params, scan)
    u, _ = jax.jit(tx.update)(g, tx.init(p), p)
    return jax.tree.map(np.asarray, unstack(u, scan))


def clip_norm(g: np.ndarray, c: float) -> np.ndarray:
    return g * c / max(np.sqrt((g * g).sum()), c)


def test_a_scanned_run_clips_and_scales_each_instance() -> None:
    """Per-tensor clipping and `lr_scale` see each instance of the stacked leaf on its own."""
    _, flat, params = scanned_params()
    rng = np.random.default_rng(5)
    gflat = {
        n: {k: rng.normal(size=v.shape) * (i + 1) for k, v in leaves.items()}
        for i, (n, leaves) in enumerate(flat.items())
    }
    grads = jax.tree.map(jnp.asarray, gflat)
    out = scanned_updates(
        '  optimizer = sgd(lr = 1.0)\n  clip = norm(1.0)\n  lr_scale = { "res_1/*": 2.0 }',
        grads,
        params,
    )
    for name, leaves in gflat.items():
        factor = 2.0 if name.startswith("res_1/") else 1.0
        for role, g in leaves.items():
            want = -factor * clip_norm(g, 1.0)
            np.testing.assert_allclose(out[name][role], want, rtol=1e-12, err_msg=name)


def test_a_scanned_run_frozen_in_every_instance() -> None:
    _, flat, params = scanned_params()
    grads = jax.tree.map(jnp.ones_like, params)
    out = scanned_updates(
        '  optimizer = sgd(lr = 1.0)\n  freeze = ["res/dense", "res_1/dense", "res_2/dense"]',
        grads,
        params,
    )
    for name in flat:
        want = 0.0 if name.startswith("res") else -1.0
        np.testing.assert_allclose(out[name]["kernel"], want, err_msg=name)


def test_decoupled_decay_skips_biases_and_scales_unless_decay_all() -> None:
    """AdamW with zero gradients: the direction is 0, so the update is -lr·wd·p (kernels)."""
    params = group_params(np.random.default_rng(6))
    for decay_all in ("false", "true"):
        train = f"  optimizer = adamw(lr = 0.1, weight_decay = 0.5)\n  decay_all = {decay_all}"
        out = sgd_updates(train, params)
        for layer, leaves in params.items():
            for role, p in leaves.items():
                skip = role in ("bias", "scale") and decay_all == "false"
                want = 0.0 if skip else -0.05 * np.asarray(p)
                np.testing.assert_allclose(out[layer][role], want, rtol=1e-12, err_msg=layer)


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        (
            "step(step_size = 2 epochs)",
            "`step_size` is in epochs but the steps per epoch are not known",
            "write it in steps, e.g. `step_size = 1000 steps`, or pass steps_per_epoch",
        ),
        (
            "warmup_cosine(warmup = 10 steps)",
            "`warmup_cosine` without `decay_steps` needs the length of training",
            "give `decay_steps`, or build it with the total number of steps",
        ),
    ],
)
def test_schedule_diagnostics_in_full(text: str, message: str, hint: str) -> None:
    from dnn.compiler.driver import schedule

    with pytest.raises(SpecError) as info:
        schedule(text, lr=0.1)
    (d,) = info.value.diagnostics
    assert (d.span.path, d.span.line, d.span.col, d.code) == ("<schedule>", 1, 1, "E0306")
    assert (d.message, d.hint) == (message, hint)


def trust_ratio(p: np.ndarray, u: np.ndarray, coefficient: float = 1.0) -> float:
    """Optax's scale_by_trust_ratio: coefficient·||p|| / ||u||, 1 where either norm is 0."""
    pn, un = np.linalg.norm(p), np.linalg.norm(u)
    return 1.0 if pn == 0 or un == 0 else coefficient * pn / un


def test_lamb_and_lars_take_a_trust_ratio_per_instance() -> None:
    """First step, per instance i: LAMB u_i = g/(|g| + eps) (Adam's bias-corrected first
    step), scaled by ||theta_i|| / ||u_i||; LARS scales g_i by eta·||theta_i|| / ||g_i||
    (its momentum trace is g on the first step)."""
    _, flat, params = scanned_params()
    rng = np.random.default_rng(7)
    gflat = {
        n: {k: rng.normal(size=v.shape) for k, v in leaves.items()} for n, leaves in flat.items()
    }
    grads = jax.tree.map(jnp.asarray, gflat)
    lamb = scanned_updates("  optimizer = lamb(lr = 0.1, eps = 1e-6)", grads, params)
    lars = scanned_updates("  optimizer = lars(lr = 0.1, trust_coefficient = 0.01)", grads, params)
    for name, leaves in gflat.items():
        for role, g in leaves.items():
            p = flat[name][role]
            u = g / (np.abs(g) + 1e-6)
            np.testing.assert_allclose(lamb[name][role], -0.1 * trust_ratio(p, u) * u, rtol=1e-9)
            want = -0.1 * trust_ratio(p, g, 0.01) * g
            np.testing.assert_allclose(lars[name][role], want, rtol=1e-9, err_msg=name)


def test_an_optimizer_alone_decays_every_leaf() -> None:
    """`dnn.optimizer(...)` has no train section: weight decay applies to biases too."""
    from dnn.compiler.driver import optimizer

    params = group_params(np.random.default_rng(8))
    tx = optimizer("sgd(lr = 1.0, weight_decay = 0.5)")
    out, _ = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    for layer, leaves in params.items():
        for role, p in leaves.items():
            np.testing.assert_allclose(out[layer][role], -0.5 * np.asarray(p), rtol=1e-12)


def test_a_scanned_run_keeps_decay_off_its_biases() -> None:
    """decay_all = false: the role of a stacked leaf is its last key, under the group and the
    instance-relative layer (`res..res_2` / `dense` / `bias`)."""
    _, flat, params = scanned_params()
    out = scanned_updates(
        "  optimizer = sgd(lr = 1.0, weight_decay = 0.5)",
        jax.tree.map(jnp.zeros_like, params),
        params,
    )
    for name, leaves in flat.items():
        np.testing.assert_allclose(out[name]["kernel"], -0.5 * leaves["kernel"], rtol=1e-12)
        np.testing.assert_allclose(out[name]["bias"], 0.0, err_msg=name)


def test_a_bare_array_parameter_is_decayed() -> None:
    """decay_all = false spares biases and scales only: a parameter that is one array (no
    layer, no role) is decayed."""
    tx = dnn.loads("train {\n  optimizer = sgd(lr = 1.0, weight_decay = 0.5)\n}\n").build_optimizer(
        1
    )
    p = jnp.asarray([2.0, -4.0])
    u, _ = jax.jit(tx.update)(jnp.zeros(2), tx.init(p), p)
    np.testing.assert_allclose(np.asarray(u), [-1.0, 2.0], rtol=1e-12)


def test_a_scanned_run_clips_each_instance_without_params() -> None:
    """`update(grads, state)` with no params (SGD needs none): per-tensor clipping still sees
    each instance of the stacked leaf on its own."""
    _, flat, params = scanned_params()
    train = "train {\n  scan_repeats = true\n  optimizer = sgd(lr = 0.5)\n  clip = norm(1.0)\n}\n"
    program = dnn.loads(SCANNED + train)
    scan = plan(program.model, True)
    tx = program.build_optimizer(1)
    g = stack(jax.tree.map(lambda p: 2 * p, params), scan)
    u, _ = jax.jit(tx.update)(g, tx.init(stack(params, scan)))
    out = jax.tree.map(np.asarray, unstack(u, scan))
    for name, leaves in flat.items():
        for role, p in leaves.items():
            np.testing.assert_allclose(out[name][role], -0.5 * clip_norm(2 * p, 1.0), rtol=1e-12)
