"""`train.scan_repeats`: runs of identical blocks as one `nn.scan`, equal to the unrolled model.

Numerics: both lowerings get the same weights (the unrolled ones, stacked), and give the same
outputs, gradients and batch statistics, for a residual dense block (with dropout, compared in
eval mode) and a residual conv block with batch normalization (in train mode). Dropout draws a
fresh mask per iteration. Penalties, constraints, freeze and lr_scale read the stacked layout.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dnn.compiler.lower_flax import lower_model
from dnn.compiler.lower_loss import lower_constraints, lower_penalties
from dnn.compiler.lower_scan import ScanPlan, find_runs, plan, plan_for, stack, unstack
from dnn.runtime import fit, pipeline
from dnn.runtime.fit import transfer
from dnn.runtime.train import Engine, device_data

import dnn

DENSE = """block res(c) {
  h = dense(c, regularizer = l2(0.01), constraint = max_norm(1.5))(in) -> batchnorm -> relu
  h = dropout(0.3)(h) -> dense(c)
  output relu(add(in, h))
}
model m {
  input x: f32[6]
  dense(8)
  repeat N { res(8) }
  dense(3)
}
"""
CONV = """block res(c) {
  h = conv2d(c, kernel = 3, padding = same, use_bias = false)(in) -> batchnorm -> relu
  h = conv2d(c, kernel = 3, padding = same)(h) -> batchnorm
  output relu(add(in, h))
}
model m {
  input x: f32[5, 5, 4]
  repeat N { res(4) }
  global_avgpool
  dense(3)
}
"""


def load(src: str, n: int = 3, *overrides: str) -> dnn.Program:
    return dnn.loads(src.replace("repeat N", f"repeat {n}"), overrides=list(overrides))


def pair(program: dnn.Program, x: jax.Array) -> tuple:
    """The unrolled and scanned modules, and the same variables in both layouts."""
    scan = plan(program.model, True)
    assert [g.key for g in scan.groups] == ["res..res_2"]
    flat, scanned = lower_model(program.model), lower_model(program.model, scan=scan)
    rng = np.random.default_rng(0)  # random values on the host: no init to compile

    def draw(path: tuple, leaf: jax.ShapeDtypeStruct) -> jax.Array:
        if "var" in str(path[-1]):  # batchnorm's running variance stays positive
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), leaf.dtype)
        return jnp.asarray(rng.normal(0, 0.4, leaf.shape), leaf.dtype)

    shapes = jax.eval_shape(scanned.init, {"params": jax.random.key(0)}, x)
    vs = jax.tree_util.tree_map_with_path(draw, shapes)
    return flat, scanned, {k: unstack(c, scan) for k, c in vs.items()}, vs, scan


def close(a, b) -> None:  # type: ignore[no-untyped-def]
    jax.tree.map(lambda p, q: np.testing.assert_allclose(p, q, rtol=2e-5, atol=1e-5), a, b)


# ---------------------------------------------------------------- finding runs


def test_runs_are_found_and_named_by_first_and_last_instance() -> None:
    g = find_runs(load(CONV, 4).model)[0]
    assert (g.key, g.instances, g.output, g.source) == (
        "res..res_3",
        ("res", "res_1", "res_2", "res_3"),
        "relu_1",
        "x",
    )
    body = ["conv2d", "batchnorm", "h", "conv2d_1", "h_1", "add", "relu_1"]
    assert [n.name for n in g.body] == body


@pytest.mark.parametrize(
    "model",
    [
        # different widths: not identical
        "input x: f32[4]\n  repeat i in 0..3 { blk(4 + i) }",
        # an inside value read from outside (a DenseNet-like skip to a later layer)
        "input x: f32[4]\n  a = blk(4)\n  b = blk(4)\n  concat(a, b)",
        # a single instance
        "input x: f32[4]\n  blk(4)",
    ],
)
def test_no_run_where_instances_differ_or_leak(model: str) -> None:
    src = "block blk(c) {\n  dense(c)\n}\nmodel m {\n  " + model + "\n}\n"
    assert find_runs(dnn.loads(src).model) == []


def test_a_leaked_middle_instance_ends_the_run_there() -> None:
    src = """block blk(c) {
  dense(c)
}
model m {
  input x: f32[4]
  blk(4) -> blk(4)
  b = blk(4)
  c = blk(4) -> blk(4)
  concat(b, c)
}
"""
    # b's output is read by blk_2 and by concat: the run ends there, the next one starts
    # (instances bound to a name take it: `b`, and `c` for the chain's last)
    assert [g.instances for g in find_runs(dnn.loads(src).model)] == [
        ("blk", "blk_1", "b"),
        ("blk_2", "c"),
    ]


def test_auto_rule() -> None:
    dense8, dense4 = load(DENSE, 8).model, load(DENSE, 4).model
    conv8 = load(CONV, 8).model
    assert len(plan(dense8, "auto", "cpu").groups) == 1
    assert plan(dense4, "auto", "cpu").groups == ()  # too short to pay
    assert plan(conv8, "auto", "cpu").groups == ()  # convolutions in a loop body on a CPU
    assert len(plan(conv8, "auto", "gpu").groups) == 1
    assert plan(dense8, False).groups == ()
    # a freeze pattern cuts the run (class 5): auto scans the pieces that are long enough
    partly = load(DENSE, 8, 'train.freeze=["res_1/*"]')
    assert plan_for(partly).groups == ()  # res | res_1 | res_2..res_7: 6 < 8
    assert [g.key for g in plan_for(load(DENSE, 11, 'train.freeze=["res_1/*"]')).groups] == [
        "res_2..res_10"
    ]
    assert len(plan_for(load(DENSE, 8, 'train.freeze=["res*"]')).groups) == 1
    # per-tensor optimizers see each slice on its own (lower_optax.per_slice): auto scans
    assert len(plan_for(load(DENSE, 8, "train.optimizer=lamb")).groups) == 1


def test_program_size_does_not_grow_with_n() -> None:
    """The scanned step traces one body whatever N: what keeps XLA's compile time flat."""

    def size(n: int, scan: bool) -> int:
        p = load(DENSE, n)
        m = lower_model(p.model, scan=plan(p.model, scan))
        x = jnp.ones((2, 6))
        v = jax.eval_shape(lambda: m.init(jax.random.key(0), x))
        return len(jax.make_jaxpr(lambda v: m.apply(v, x))(v).eqns)

    assert size(16, True) == size(4, True) < size(4, False) < size(16, False)


# ---------------------------------------------------------------- numerics


def run(m, variables: dict, x: jax.Array, train: bool) -> tuple:  # type: ignore[no-untyped-def]
    """(sum of squared outputs, new batch statistics, gradient wrt params), jitted."""

    def loss(params):  # type: ignore[no-untyped-def]
        v = {**variables, "params": params}
        out, new = m.apply(v, x, train=train, mutable=["batch_stats"])
        return jnp.sum(out**2), new["batch_stats"]

    (value, stats), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
    return value, stats, grad


def test_dense_block_equals_unrolled_in_eval_mode() -> None:
    p = load(DENSE)
    x = jax.random.normal(jax.random.key(2), (4, 6))
    flat, scanned, v, vs, scan = pair(p, x)
    l0, _, g0 = run(flat, v, x, False)
    l1, _, g1 = run(scanned, vs, x, False)
    assert jnp.shape(g1["res..res_2"]["dense"]["kernel"]) == (3, 8, 8)
    close(l1, l0)
    close(unstack(g1, scan), g0)
    every = jax.jit(lambda v: flat.apply(v, x, every_value=True))(v)
    every_s = jax.jit(lambda v: scanned.apply(v, x, every_value=True))(vs)
    assert sorted(every) == sorted(every_s)
    close(every_s, every)


def test_conv_block_with_batchnorm_equals_unrolled_in_train_mode() -> None:
    """Outputs, gradients and updated batch statistics; with `remat` too."""
    p = load(CONV)
    x = jax.random.normal(jax.random.key(2), (4, 5, 5, 4))
    flat, scanned, v, vs, scan = pair(p, x)
    remat = lower_model(p.model, scan=ScanPlan(scan.groups, remat=True))
    l0, s0, g0 = run(flat, v, x, True)
    for m in (scanned, remat):
        l1, s1, g1 = run(m, vs, x, True)
        assert s1["res..res_2"]["batchnorm"]["mean"].shape == (3, 4)
        close(l1, l0)
        close(unstack(g1, scan), g0)
        close(unstack(s1, scan), s0)


def test_dropout_draws_a_fresh_mask_per_iteration() -> None:
    src = "block d() {\n  dropout(0.5)\n}\nmodel m {\n  input x: f32[4000]\n  repeat 3 { d() }\n}\n"
    p = dnn.loads(src)
    m = lower_model(p.model, scan=plan(p.model, True))
    every = m.apply(
        {}, jnp.ones((1, 4000)), train=True, every_value=True, rngs={"dropout": jax.random.key(0)}
    )
    kept = [np.asarray(every[k] != 0) for k in ("d/dropout", "d_1/dropout", "d_2/dropout")]
    assert 0.45 < kept[0].mean() < 0.55 and 0.45 < (kept[1][kept[0]]).mean() < 0.55
    assert 0.10 < kept[2].mean() < 0.15  # three independent masks: 1/8 survive


def test_train_init_reaches_the_scanned_body() -> None:
    p = load(DENSE, 3, "train.init=zeros")
    m = lower_model(p.model, p.train.init, plan(p.model, True))
    params = m.init(jax.random.key(0), jnp.ones((1, 6)))["params"]
    assert not np.any(np.asarray(params["res..res_2"]["h_1"]["kernel"]))


# ---------------------------------------------------------------- parameter helpers


def test_penalties_and_constraints_read_the_stacked_layout() -> None:
    p = load(DENSE)
    x = jnp.ones((2, 6))
    _, _, v, vs, scan = pair(p, x)
    pen = float(lower_penalties(p.model)(v["params"]))
    assert float(lower_penalties(p.model, scan=scan)(vs["params"])) == pytest.approx(pen, rel=1e-6)
    big = jax.tree.map(lambda a: 3 * a, v["params"])  # norms past max_norm(1.5)
    flat = lower_constraints(p.model)(big)
    stacked = lower_constraints(p.model, scan)(stack(big, scan))
    close(unstack(stacked, scan), flat)


def updates(program: dnn.Program, grads: dict, params: dict) -> dict:
    tx = program.build_optimizer(steps_per_epoch=1)
    return jax.jit(lambda g, p: tx.update(g, tx.init(p), p)[0])(grads, params)


def test_lr_scale_and_freeze_per_instance() -> None:
    x = jnp.ones((2, 6))
    p_flat = load(DENSE, 3, "train.optimizer=sgd(lr = 1.0)", 'train.lr_scale={"res_1/*": 0.5}')
    p_scan = load(
        DENSE,
        3,
        "train.optimizer=sgd(lr = 1.0)",
        'train.lr_scale={"res_1/*": 0.5}',
        "train.scan_repeats=true",
    )
    _, _, v, vs, scan = pair(p_flat, x)
    g = jax.tree.map(jnp.ones_like, v["params"])
    u_flat = updates(p_flat, g, v["params"])
    u_scan = updates(p_scan, stack(g, scan), vs["params"])
    assert float(u_flat["res_1/dense"]["kernel"][0, 0]) == -0.5
    close(unstack(u_scan, scan), u_flat)
    # freezing one instance of a scanned run freezes that instance only (class 5)
    frozen = load(DENSE, 4, 'train.freeze=["res_1/*"]', "train.scan_repeats=true")
    scan = plan_for(frozen)
    assert [g.key for g in scan.groups] == ["res_2..res_3"]
    g4 = jax.tree.map(jnp.ones_like, lower_model(frozen.model).init(jax.random.key(0), x))
    u = unstack(updates(frozen, stack(g4["params"], scan), stack(g4["params"], scan)), scan)
    assert not np.any(np.asarray(u["res_1/dense"]["kernel"]))
    for layer in ("dense", "res/dense", "res_2/dense", "res_3/dense"):
        assert np.all(np.asarray(u[layer]["kernel"]) != 0)


# ---------------------------------------------------------------- class 5: scanned = unrolled
# Issue 14, class 5: a compiled form means what the plain form means. Every per-layer option
# of the train section, on a scanned run, trains to the losses and weights of the unrolled
# run; a frozen batchnorm runs in inference mode (Keras's `trainable = False`).

# No bias before a batchnorm: its gradient is 0 in exact arithmetic, so what reaches it is
# rounding noise, which Adam scales up to steps of about lr; scanned and unrolled round
# differently, and such a bias drifts apart by ~1e-3 in three steps (measured) though both
# runs compute the same thing.
TRAINED = """dnn 1
block res(c) {
  h = dense(c, use_bias = false, regularizer = l2(0.01), constraint = max_norm(1.0))(in) -> batchnorm -> relu
  output relu(add(in, dense(c)(h)))
}
model m {
  input pixels: f32[64]
  dense(8)
  repeat 4 { res(8) }
  dense(10)
}
data {
  source = builtin("digits")
  normalize = standardize
}
train {
  batch_size = 128
  epochs = 1
  optimizer = adam(lr = 0.01)
  loop = steps
  seed = 3
}
"""


def trained(program: dnn.Program, steps: int = 3) -> tuple[list[float], dict, dict, Engine]:
    """Losses of `steps` train steps, and the state before and after them as checkpoints
    hold it (per node, scanned runs unstacked); `init_from` is applied first."""
    engine = Engine(program, pipeline.prepare(program), 1)
    st = engine.init()
    if program.train.init_from:
        st, _, _ = transfer(program, st, engine)
    start = engine.to_disk(engine.copy(st))
    x, y = device_data(engine.prepared, engine.place)["train"]
    order, _ = engine.order(1, int(x.shape[0]))
    losses = []
    for i in range(steps):
        st, acc = engine.step(st, engine.train_acc(), x, y, order, i)
        losses.append(float(acc["loss"] / acc["count"]))
    return losses, start, engine.to_disk(st), engine


@functools.cache
def scanned_and_unrolled(*options: str) -> dict[bool, tuple]:
    """`trained` with `scan_repeats = true` and `false` (the scanned one does scan); cached,
    since several tests read the same pair."""
    runs = {}
    for scan in (True, False):
        program = dnn.loads(TRAINED, overrides=[*options, f"train.scan_repeats={scan}".lower()])
        assert bool(plan_for(program).groups) == scan
        runs[scan] = trained(program)
    return runs


def assert_same_training(runs: dict[bool, tuple]) -> None:
    (l1, _, s1, _), (l0, _, s0, _) = runs[True], runs[False]
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    for part in ("params", "model_state"):
        assert sorted(s1[part]) == sorted(s0[part])
        close(s1[part], s0[part])


def unchanged(before: dict, after: dict, *path: str) -> bool:
    """The subtree at `path` is bit for bit the same."""
    for key in path:
        before, after = before[key], after[key]
    return all(jax.tree.leaves(jax.tree.map(np.array_equal, before, after)))


FREEZE_BLOCKS = 'train.freeze=["res_1/*", "res_2/*"]'  # two instances, batchnorm included
# the first three: what reaches them is the same in train and eval mode (no dropout)
FREEZE_NORMS = 'train.freeze=["res/batchnorm", "res_1/batchnorm", "res_2/batchnorm"]'
SCALES = 'train.lr_scale={"res_1/*": 0.1, "res_3/dense": 3.0}'
PENALTY = "train.regularizer=l1(0.001)"  # the second dense; the first has its own l2, max_norm


@pytest.mark.parametrize("options", [(FREEZE_BLOCKS,), (FREEZE_NORMS,), (SCALES, PENALTY)])
def test_class5_per_layer_options_train_the_same_scanned_and_unrolled(options: tuple) -> None:
    assert_same_training(scanned_and_unrolled(*options))


def test_class5_freeze_keeps_exactly_the_instances_it_names() -> None:
    _, before, after, engine = scanned_and_unrolled(FREEZE_BLOCKS)[True]
    assert [g.key for g in engine.scan.groups] == ["res_1..res_2"]  # res and res_3: unrolled
    for layer in ("res_1/dense", "res_1/batchnorm", "res_2/dense_1"):
        assert unchanged(before, after, "params", layer)
    for layer in ("res/dense", "res_3/dense", "res_3/batchnorm"):
        assert not unchanged(before, after, "params", layer)


@pytest.mark.parametrize("scan", [True, False])
def test_class5_a_frozen_batchnorm_runs_in_inference_mode(scan: bool) -> None:
    """Its running statistics stay as they were, and its train-mode forward is its eval one."""
    _, before, after, engine = scanned_and_unrolled(FREEZE_NORMS)[scan]
    assert [g.key for g in engine.scan.groups] == ["res..res_2"] if scan else engine.scan is None
    frozen = ("res/batchnorm", "res_1/batchnorm", "res_2/batchnorm")
    for layer in frozen:
        assert unchanged(before, after, "model_state", "batch_stats", layer)
        assert unchanged(before, after, "params", layer)
    assert not unchanged(before, after, "model_state", "batch_stats", "res_3/batchnorm")
    st = engine.from_disk(after)
    variables = {"params": st["params"], **st["model_state"]}
    x = jnp.asarray(engine.prepared.splits["train"].x[:64])
    in_train, _ = engine.model.apply(
        variables, x, train=True, every_value=True, mutable=["batch_stats"]
    )
    in_eval = engine.model.apply(variables, x, every_value=True)
    for layer in frozen:
        np.testing.assert_array_equal(in_train[layer], in_eval[layer])
    assert not np.allclose(in_train["res_3/batchnorm"], in_eval["res_3/batchnorm"])


@pytest.mark.parametrize(
    "option",
    [
        "train.optimizer=lamb(lr = 0.01)",
        "train.optimizer=lars(lr = 0.01)",
        "train.clip=norm(0.1)",  # with sgd: Adam's first step would undo any scaling
        "train.clip=average_norm(0.001)",
        "train.clip=adaptive(0.01)",
    ],
)
def test_class5_per_tensor_steps_see_each_slice_as_its_own_tensor(option: str) -> None:
    """A trust ratio or a clipping norm per tensor: per instance when the run is scanned."""
    options = (option, "train.optimizer=sgd(lr = 1.0)") if "clip" in option else (option,)
    p_flat = load(DENSE, 3, *options)
    p_scan = load(DENSE, 3, *options, "train.scan_repeats=true")
    _, _, v, vs, scan = pair(p_flat, jnp.ones((2, 6)))
    g = jax.tree.map(lambda a: a * jnp.arange(1, a.size + 1).reshape(a.shape), v["params"])
    u_flat = updates(p_flat, g, v["params"])
    u_scan = unstack(updates(p_scan, stack(g, scan), vs["params"]), scan)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=0), u_scan, u_flat)


def test_class5_init_from_loads_weights_and_running_statistics_scanned_or_not(
    tmp_path: Path,
) -> None:
    """Transferred into a run whose frozen instances are scanned or unrolled: the same
    training, and the frozen layers keep the source's weights and batch statistics exactly."""
    import orbax.checkpoint as ocp

    source = tmp_path / "source"
    fit.train(dnn.loads(TRAINED, overrides=["train.seed=4"]), source, mode="quiet")
    slot = source / "checkpoints" / "last"
    step = max(int(p.name) for p in slot.iterdir() if p.name.isdigit())
    saved = ocp.StandardCheckpointer().restore((slot / str(step) / "state").resolve())
    runs = scanned_and_unrolled(f'train.init_from="{source}"', FREEZE_BLOCKS)
    assert_same_training(runs)
    for _, before, after, _ in runs.values():
        for layer in ("res_1/dense", "res_1/batchnorm", "res_2/dense_1"):
            assert unchanged(saved, after, "params", layer)
        for layer in ("res_1/batchnorm", "res_2/batchnorm"):
            assert unchanged(saved, after, "model_state", "batch_stats", layer)
        assert not unchanged(before, after, "model_state", "batch_stats", "res/batchnorm")
