"""`train.unfreeze`: two-phase fine-tuning (issue 16, point 6).

The checks (E0611, E0612) with their text and spans; the optimizer of the two phases against
a float64 NumPy Adam written from the formula (the held layers' moments and bias correction
start at zero at the boundary, the schedule runs on, clipping sees the trainable gradients,
phase 2 multiplies every update by `lr_factor`); phase 1 equal to `freeze` alone; a frozen
batchnorm in inference mode until the phase turns, then in training mode, in one compiled
model; and a run (batchnorms inside a scanned repeat) stopped before and after the boundary
and resumed, equal bit for bit to the uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import assert_error
from dnn.compiler.diagnostics import SpecError, render
from dnn.compiler.lower_flax import lower_model
from dnn.compiler.lower_scan import plan_for, stack
from dnn.compiler.lower_unfreeze import unfreeze_at
from dnn.runtime import pipeline
from dnn.runtime.fit import Loop, train
from dnn.runtime.train import Engine

import dnn

TWO_LAYERS = """model m {{
  input x: f32[3]
  enc = dense(2)
  head = dense(2)
}}
train {{
  epochs = 4
{extra}
}}
"""


def two_layers(extra: str) -> str:
    return TWO_LAYERS.format(extra=extra)


# ------------------------------------------------------------------ checks


@pytest.mark.parametrize(
    ("extra", "where", "code", "message", "hint"),
    [
        (
            '  freeze = ["enc"]\n  unfreeze = { after: 4 epochs }',
            "9:16",
            "E0611",
            "`unfreeze` after `4 epochs` never happens: training runs 4 epochs",
            "unfreeze before the last epoch (`after: 3 epochs` at most), or raise `epochs`",
        ),
        (
            '  freeze = ["enc"]\n  unfreeze = { after: 2 }',
            "9:16",
            "E0611",
            "key `after` of `unfreeze` must be a duration with its unit (`5 epochs`, "
            "`300 steps`), got `2`",
            "write `2 epochs` (or `2 steps`)",
        ),
        (
            '  freeze = ["enc"]\n  unfreeze = { after: 0 epochs, lr_factor: 0.1 }',
            "9:16",
            "E0611",
            "`unfreeze` after `0 epochs`: the layers of `freeze` are never held",
            "remove `freeze` and `unfreeze` to train every layer from the start",
        ),
        (
            "  unfreeze = { after: 1 epochs }",
            "8:14",
            "E0612",
            "`unfreeze` has nothing to release: `freeze` holds no layer",
            'name the layers to hold during the first phase: `freeze = ["conv*"]`',
        ),
        (
            '  freeze = ["enc"]\n  unfreeze = { after: 1 epochs, lr_factor: 0 }',
            "9:33",
            "E0306",
            "key `lr_factor` of `unfreeze` must be a number > 0, got `0`",
            "",
        ),
    ],
)
def test_unfreeze_checks(extra: str, where: str, code: str, message: str, hint: str) -> None:
    assert_error(two_layers(extra), where, code, message, hint)


def test_the_error_shows_the_line_and_a_caret_under_after() -> None:
    src = two_layers('  freeze = ["enc"]\n  unfreeze = { after: 5 epochs, lr_factor: 0.1 }')
    with pytest.raises(SpecError) as info:
        dnn.loads(src, "spec.dnn")
    (d,) = info.value.diagnostics
    assert render(d, {"spec.dnn": src}).splitlines() == [
        "spec.dnn:9:16: error[E0611]: `unfreeze` after `5 epochs` never happens: training runs "
        "4 epochs",
        "9 |   unfreeze = { after: 5 epochs, lr_factor: 0.1 }",
        "  |                ^^^^^^^^^^^^^^^",
        "  hint: unfreeze before the last epoch (`after: 3 epochs` at most), or raise `epochs`",
    ]


def test_a_time_in_steps_past_the_end_is_refused_when_the_steps_are_known() -> None:
    program = dnn.loads(two_layers('  freeze = ["enc"]\n  unfreeze = { after: 40 steps }'), "s")
    with pytest.raises(SpecError) as info:
        program.build_optimizer(steps_per_epoch=10)  # 4 epochs of 10 updates: 40 is the end
    (d,) = info.value.diagnostics
    assert (d.code, d.span.line, d.span.col) == ("E0611", 9, 16)
    assert (
        d.message == "`unfreeze` after `40 steps` never happens: training runs 40 optimizer updates"
    )
    assert program.build_optimizer(steps_per_epoch=11) is not None


def test_freezing_every_layer_until_unfreeze_warns_about_phase_1() -> None:
    src = "dnn 1\n" + two_layers('  freeze = ["enc", "head"]\n  unfreeze = { after: 1 epochs }')
    (w,) = dnn.loads(src, "s").warnings
    assert w.code == "W0804" and w.message == (
        "`freeze` covers every layer with weights: training changes no weight before "
        "`unfreeze` (after `1 epochs`)"
    )


def test_the_held_layers_keep_optimizer_memory_from_the_start() -> None:
    from dnn.compiler.memory import estimate

    def optimizer_bytes(extra: str) -> int:
        program = dnn.loads(two_layers(extra), "s")
        return estimate(program.model, program.train).optimizer

    both = optimizer_bytes("")
    assert optimizer_bytes('  freeze = ["enc"]') == both - 2 * 4 * 8  # adam: 2 slots, 8 weights
    assert optimizer_bytes('  freeze = ["enc"]\n  unfreeze = { after: 1 epochs }') == both


# ------------------------------------------------------------------ the optimizer


def adam_reference(
    grads: list[dict[str, np.ndarray]],
    held: set[str],
    at: int,
    lr: Any,
    factor: float,
    clip: float,
    scale: dict[str, float],
) -> list[dict[str, np.ndarray]]:
    """Float64 Adam (PyTorch's, docs/reference.md) per parameter group: the free leaves from
    update 0, the held ones from update `at` with zero moments and their own count; gradients
    clipped to a global norm over the leaves that train; updates times `lr_scale` and, from
    `at` on, times `factor`."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = {k: np.zeros_like(v) for k, v in grads[0].items()}
    v = {k: np.zeros_like(x) for k, x in grads[0].items()}
    out = []
    for t, g in enumerate(grads):
        live = {k for k in g if k not in held or t >= at}
        norm = np.sqrt(sum(np.sum(g[k] ** 2) for k in live))
        c = min(1.0, clip / norm)
        u = {}
        for k in g:
            if k not in live:
                u[k] = np.zeros_like(g[k])
                continue
            n = t + 1 - (at if k in held else 0)  # the group's own count
            m[k] = b1 * m[k] + (1 - b1) * c * g[k]
            v[k] = b2 * v[k] + (1 - b2) * (c * g[k]) ** 2
            step = lr(t) / (1 - b1**n) * m[k] / (np.sqrt(v[k]) / np.sqrt(1 - b2**n) + eps)
            u[k] = -step * scale.get(k.split("/")[0], 1.0) * (factor if t >= at else 1.0)
        out.append(u)
    return out


OPT = (
    "  optimizer = adam(lr = 0.1)\n  schedule = step(step_size = 2 steps, gamma = 0.5)\n"
    "  clip = global_norm(0.5)\n  lr_scale = { head: 2.0 }\n"
    '  freeze = ["enc"]\n'
)


def _grads(steps: int) -> list[dict]:
    rng = np.random.default_rng(0)
    shapes = {"enc": {"kernel": (3, 2), "bias": (2,)}, "head": {"kernel": (2, 2), "bias": (2,)}}
    return [
        {name: {r: rng.normal(size=s) for r, s in roles.items()} for name, roles in shapes.items()}
        for _ in range(steps)
    ]


def _updates(tx, grads: list[dict]) -> list[dict]:  # type: ignore[no-untyped-def]
    params = jax.tree.map(lambda g: jnp.zeros(g.shape, jnp.float32), grads[0])
    state, out = tx.init(params), []
    update = jax.jit(tx.update)
    for g in grads:
        u, state = update(jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), g), state, params)
        out.append(jax.tree.map(np.asarray, u))
    return out


def _flat(tree: dict) -> dict[str, np.ndarray]:
    return {
        f"{name}/{r}": np.asarray(v, np.float64)
        for name, roles in tree.items()
        for r, v in roles.items()
    }


def test_two_phases_match_a_float64_adam_with_fresh_moments_for_the_held_layers() -> None:
    program = dnn.loads(two_layers(OPT + "  unfreeze = { after: 3 steps, lr_factor: 0.25 }"), "s")
    grads = _grads(7)
    got = _updates(program.build_optimizer(steps_per_epoch=2), grads)
    want = adam_reference(
        [_flat(g) for g in grads],
        {"enc/kernel", "enc/bias"},
        at=3,
        lr=lambda t: 0.1 * 0.5 ** (t // 2),  # the schedule of the global update, both groups
        factor=0.25,
        clip=0.5,
        scale={"head": 2.0},
    )
    for t, (g, w) in enumerate(zip(got, want, strict=True)):
        for k, value in _flat(g).items():
            np.testing.assert_allclose(value, w[k], rtol=2e-5, atol=1e-8, err_msg=f"{t} {k}")
    assert all(not np.any(_flat(g)["enc/kernel"]) for g in got[:3])  # held in phase 1
    assert np.all(_flat(got[3])["enc/kernel"] != 0)


def test_phase_1_updates_as_freeze_alone() -> None:
    grads = _grads(4)
    plain = dnn.loads(two_layers(OPT), "s").build_optimizer(steps_per_epoch=2)
    phased = dnn.loads(two_layers(OPT + "  unfreeze = { after: 2 epochs }"), "s")
    for a, b in zip(
        _updates(plain, grads), _updates(phased.build_optimizer(2), grads), strict=True
    ):
        for k, value in _flat(a).items():
            np.testing.assert_allclose(_flat(b)[k], value, rtol=1e-6, atol=0, err_msg=k)


def test_with_accumulation_the_phase_counts_updates_as_the_model_does() -> None:
    """`accumulate = 2`, 4 micro-batches an epoch: 2 updates an epoch, so `after: 1 epochs`
    releases the encoder at the third update (micro-batches 4 and 5, applied at the sixth),
    the step from which `Engine.thawed` puts its batchnorms in training mode."""
    src = two_layers('  accumulate = 2\n  freeze = ["enc"]\n  unfreeze = { after: 1 epochs }')
    program = dnn.loads(src, "s")
    got = _updates(program.build_optimizer(steps_per_epoch=2), _grads(8))
    assert [bool(np.any(_flat(u)["enc/kernel"])) for u in got] == [False] * 5 + [True, False, True]
    assert [bool(np.any(_flat(u)["head/kernel"])) for u in got] == [False, True] * 4
    engine = SimpleNamespace(program=program, thaw_at=unfreeze_at(program, 2))
    assert list(Engine.thawed(engine, jnp.arange(8))) == [False] * 4 + [True] * 4  # type: ignore[arg-type]


# ------------------------------------------------------------------ frozen batchnorms

NORM = """block unit(c) {
  dense(c)
  batchnorm
}
model m {
  input x: f32[5]
  stem = dense(4)
  batchnorm
  repeat 2 { unit(4) }
  dense(3)
}
train {
  loss = mse
  epochs = 2
  scan_repeats = true
  freeze = ["stem", "batchnorm", "unit*"]
  unfreeze = { after: 1 epochs }
}
"""


def test_a_frozen_batchnorm_runs_in_inference_mode_until_the_phase_turns() -> None:
    """One model with a traced phase flag: inference mode (the running averages normalize
    and stay) while it is false, training mode (batch statistics, averages updated) once it
    is true; the batchnorms of a scanned repeat's body as well."""
    program = dnn.loads(NORM, "s")
    plan = plan_for(program)
    assert [g.key for g in plan.groups] == ["unit..unit_1"]
    x = jax.random.normal(jax.random.key(0), (16, 5)) * 2.0 + 1.0
    start = lower_model(program.model).init(jax.random.key(1), x)
    variables = {k: stack(dict(v), plan) for k, v in start.items()}
    variables["batch_stats"] = jax.tree.map(lambda a: a + 0.5, variables["batch_stats"])
    phased = lower_model(program.model, scan=plan, freeze=program.train.freeze)
    run = jax.jit(
        lambda v, flag: phased.apply(v, x, train=True, thawed=flag, mutable=["batch_stats"])
    )
    still = lower_model(program.model, scan=plan, freeze=program.train.freeze)
    moving = lower_model(program.model, scan=plan)  # every layer in training mode
    before = jax.tree.leaves(variables["batch_stats"])
    for flag, reference in ((False, still), (True, moving)):
        out, state = run(variables, jnp.asarray(flag))
        want, want_state = reference.apply(variables, x, train=True, mutable=["batch_stats"])
        np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
        after = jax.tree.leaves(state)
        for a, b in zip(after, jax.tree.leaves(want_state), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        moved = [not np.array_equal(a, b) for a, b in zip(after, before, strict=True)]
        assert moved == [flag] * 4  # 2 batchnorms (one of them stacked) x (mean, var)


# ------------------------------------------------------------------ a run, resumed

SPEC = """dnn 1

model tiny {
  input pixels: f32[64]
  stem = dense(16)
  batchnorm
  relu
  head = dense(10)
}

data {
  source = builtin("digits")
  split = { train: 0.8, val: 0.2 }
  normalize = standardize
  drop_last = true
}

train {
  batch_size = 128
  epochs = 3
  optimizer = adam(lr = 3e-3)
  clip = global_norm(1.0)
  freeze = ["stem", "batchnorm"]
  unfreeze = { after: 1 epochs, lr_factor: 0.5 }
  early_stopping = { monitor: val_accuracy, patience: 2 }
  seed = 1
}
"""


def _state(run: Path) -> dict[str, np.ndarray]:
    folder = run / "checkpoints" / "last"
    step = max(int(p.name) for p in folder.iterdir() if p.name.isdigit())
    tree = ocp.StandardCheckpointer().restore((folder / str(step) / "state").resolve())
    return _leaves({"params": tree["params"], "model_state": tree["model_state"]})


def _leaves(tree: object, prefix: str = "") -> dict[str, np.ndarray]:
    if isinstance(tree, dict):
        out: dict[str, np.ndarray] = {}
        for k, v in tree.items():
            out.update(_leaves(v, f"{prefix}/{k}"))
        return out
    return {prefix: np.asarray(tree)}


def _history(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [
        {k: v for k, v in json.loads(x).items() if k not in ("time", "samples_per_s")}
        for x in lines
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted run, and one stopped after epoch 1 (the last of phase 1), resumed and
    stopped after epoch 2 (the first of phase 2), resumed again; with what it had saved."""
    tmp = tmp_path_factory.mktemp("unfreeze")
    path = tmp / "tiny.dnn"
    path.write_text(SPEC)
    program = dnn.load(str(path))
    engine = Engine(program, pipeline.prepare(program), 1)
    start = jax.device_get(engine.to_disk(engine.init()))
    out: dict = {"init": _leaves({k: start[k] for k in ("params", "model_state")})}
    out["straight"] = train(program, tmp / "straight", mode="quiet")
    out["folder"] = tmp
    train(dnn.load(str(path)), tmp / "stopped", stop_after=1, mode="quiet")
    out["saved1"] = _state(tmp / "stopped")
    train(dnn.load(str(path)), tmp / "stopped", resume=True, stop_after=2, mode="quiet")
    out["resumed"] = train(dnn.load(str(path)), tmp / "stopped", resume=True, mode="quiet")
    return out


def test_resumed_across_the_boundary_equals_the_uninterrupted_run(runs: dict) -> None:
    """Stopped before the boundary and after it: the weights, the batch statistics, every
    epoch's record (phase included) and the final scores equal the uninterrupted run's."""
    tmp = runs["folder"]
    straight, resumed = _state(tmp / "straight"), _state(tmp / "stopped")
    assert resumed.keys() == straight.keys()
    for k, value in straight.items():
        np.testing.assert_array_equal(resumed[k], value, err_msg=k)
    assert _history(tmp / "stopped") == _history(tmp / "straight")
    for split in ("train", "val"):
        assert runs["resumed"][split] == runs["straight"][split]


def test_the_metrics_name_the_phase_and_its_rate(runs: dict) -> None:
    history = _history(runs["folder"] / "straight")
    assert [r["phase"] for r in history] == [1, 2, 2]
    plots = sorted(p.name for p in (runs["folder"] / "straight" / "plots").iterdir())
    # the phase is a line on them, not a curve; lr.png: the rate changes at the unfreeze
    assert plots == ["accuracy.png", "loss.png", "lr.png"]
    assert [r["lr"] for r in history] == pytest.approx([3e-3, 1.5e-3, 1.5e-3], rel=1e-6)


def test_held_layers_and_their_batchnorms_wait_for_phase_2(runs: dict) -> None:
    init, first, last = runs["init"], runs["saved1"], _state(runs["folder"] / "straight")
    held = [k for k in init if any(f"/{layer}/" in k for layer in ("stem", "batchnorm"))]
    norms = [k for k in held if "batch_stats" in k]
    assert len(norms) == 2 and len(held) == 6  # stem: w, b; batchnorm: scale, bias, mean, var
    for k in held:  # phase 1: as initialized (running averages included)
        np.testing.assert_array_equal(first[k], init[k], err_msg=k)
        assert not np.array_equal(last[k], init[k]), k  # phase 2 trains them
    assert not np.array_equal(first["/params/head/kernel"], init["/params/head/kernel"])


def test_phase_1_never_stops_a_run_and_phase_2_counts_its_own_patience(tmp_path: Path) -> None:
    """Early stopping with patience 1: worse epochs in phase 1 do not stop the run; in phase
    2 the count starts afresh, against the best value so far (which carries over)."""
    program = dnn.loads(SPEC.replace("patience: 2", "patience: 1"), "tiny.dnn")
    metrics = SimpleNamespace(lookup=lambda word: word)
    engine = SimpleNamespace(plateau=None, copy=lambda tree: tree, metrics=metrics)

    def stops(accuracies: list[float]) -> list[bool]:
        loop = Loop(program, engine, tmp_path, has_val=True)  # type: ignore[arg-type]
        st = {"params": {}, "model_state": {}}
        phases = [1, 1, 1, 2]
        return [
            loop.end_epoch(st, epoch, {"phase": phase, "val_accuracy": value})[1]
            for epoch, (phase, value) in enumerate(zip(phases, accuracies, strict=True), 1)
        ]

    assert stops([0.5, 0.4, 0.3, 0.6]) == [False, False, False, False]
    assert stops([0.5, 0.4, 0.3, 0.45]) == [False, False, False, True]  # below phase 1's best
