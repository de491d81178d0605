"""IR → Optax: learning-rate schedules and gradient clipping (optimizers land next).

Schedules are functions of the optimizer step `t` (0 for the first update) written with
`jax.numpy`, so they run inside a jitted step and in float64 when x64 is on. Each schedule,
clipper and optimizer word has one function here, tagged `@implements(kind, name)` (the
registry finds it by that tag, DESIGN §7). Durations in epochs are converted with the
known steps per epoch; an epoch unit without it is a positioned diagnostic.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from . import lower_transforms as T
from .diagnostics import E_VALUE, DiagnosticError, InternalError, Span, error
from .lower_scan import ScanPlan, frozen, plan_for
from .registry.clippers import CLIPPERS
from .registry.core import implements
from .registry.optimizers import OPTIMIZERS
from .registry.schedules import SCHEDULES
from .values import Quantity, Ref

Schedule = Callable[[Any], Any]


def steps(q: Quantity, steps_per_epoch: int | None, span: Span, what: str) -> int:
    """A duration in optimizer steps."""
    if q.unit == "steps":
        return int(q.value)
    if steps_per_epoch is None:
        raise error(
            E_VALUE,
            f"`{what}` is in epochs but the steps per epoch are not known",
            span,
            f"write it in steps, e.g. `{what} = 1000 steps`, or pass steps_per_epoch",
        )
    return int(round(q.value * steps_per_epoch))


class _Durations:
    """Reads a schedule's duration arguments in steps."""

    def __init__(self, ref: Ref, steps_per_epoch: int | None, span: Span):
        self.args: dict[str, Any] = dict(ref.args)
        self.spe, self.span = steps_per_epoch, span

    def __call__(self, name: str) -> int:
        return steps(self.args[name], self.spe, self.span, name)

    def many(self, name: str) -> list[int]:
        return [steps(q, self.spe, self.span, name) for q in self.args[name]]


def lower_schedule(
    ref: Ref,
    lr: float,
    steps_per_epoch: int | None = None,
    total_steps: int | None = None,
    span: Span | None = None,
) -> Schedule:
    """The learning rate as a function of the step, for a `schedule = ...` value."""
    span = span or Span("<schedule>", 1, 1, 1, 1)
    d = _Durations(ref, steps_per_epoch, span)
    a = dict(ref.args)
    body = SCHEDULES.implementation(ref.name)(a, d, lr, total_steps, span)
    warmup = d("warmup") if "warmup" in a else 0  # every schedule warms up the same way
    return _with_warmup(body, lr, warmup) if warmup else body


def _with_warmup(body: Schedule, lr: float, warmup: int) -> Schedule:
    """Linear warm-up from 0 over `warmup` steps; the schedule's own count starts after it."""

    def f(t: Any) -> Any:
        t = jnp.asarray(t)
        return jnp.where(t < warmup, lr * t / warmup, body(jnp.maximum(t - warmup, 0)))

    return f


def _const(value: float) -> Schedule:
    return lambda t: jnp.full(jnp.shape(t), value, dtype=jnp.result_type(float))


@implements("schedule", "constant")
def constant(a: dict, d: _Durations, lr: float, total: int | None, span: Span) -> Schedule:
    return _const(lr)


@implements("schedule", "step")
def step(a: dict, d: _Durations, lr: float, total: int | None, span: Span) -> Schedule:
    size, gamma = d("step_size"), a["gamma"]
    return lambda t: lr * gamma ** jnp.floor_divide(t, size)


@implements("schedule", "multistep")
def multistep(a: dict, d: _Durations, lr: float, total: int | None, span: Span) -> Schedule:
    milestones, gamma = jnp.asarray(d.many("milestones")), a["gamma"]
    return lambda t: lr * gamma ** jnp.sum(jnp.asarray(t)[..., None] >= milestones, axis=-1)


def _decay_exponent(a: dict, d: _Durations) -> Callable[[Any], Any]:
    ds, stair = d("decay_steps"), a["staircase"]
    return lambda t: jnp.floor_divide(t, ds) if stair else jnp.asarray(t) / ds


@implements("schedule", "exponential")
def exponential(a: dict, d: _Durations, lr: float, total: int | None, span: Span) -> Schedule:
    p, rate = _decay_exponent(a, d), a["decay_rate"]
    return lambda t: lr * rate ** p(t)


@implements("schedule", "natural_exp")
def natural_exp(a: dict, d: _Durations, lr: float, total: int | None, span: Span) -> Schedule:
    p, rate = _decay_exponent(a, d), a["decay_rate"]
    return lambda t: lr * jnp.exp(-rate * p(t))


@implements("schedule", "inverse_time")
def inverse_time(a: dict, d: _Durations, lr: float, total: int | None, span: Span) -> Schedule:
    p, rate = _decay_exponent(a, d), a["decay_rate"]
    return lambda t: lr / (1 + rate * p(t))


@implements("schedule", "piecewise_constant")
def piecewise_constant(
    a: dict, d: _Durations, lr: float, total: int | None, span: Span
) -> Schedule:
    bounds, values = d.many("boundaries"), a["values"]
    if len(values) != len(bounds) + 1:
        raise error(
            E_VALUE,
            f"`piecewise_constant` needs {len(bounds) + 1} values for "
            f"{len(bounds)} boundaries, got {len(values)}",
            span,
            "give one value before the first boundary and one after each",
        )
    b, v = jnp.asarray(bounds), jnp.asarray(values)
    return lambda t: v[jnp.sum(jnp.asarray(t)[..., None] >= b, axis=-1)]


@implements("schedule", "polynomial")
def polynomial(a: dict, d: _Durations, lr: float, total: int | None, span: Span) -> Schedule:
    ds, end, power = d("decay_steps"), a["end_lr"], a["power"]
    return lambda t: (lr - end) * (1 - jnp.minimum(t, ds) / ds) ** power + end


@implements("schedule", "cosine")
def cosine(a: dict, d: _Durations, lr: float, total: int | None, span: Span) -> Schedule:
    return _cosine(lr, d("decay_steps"), a["alpha"])


def _cosine(lr: float, ds: int, alpha: float) -> Schedule:
    return lambda t: (
        lr * (alpha + (1 - alpha) * (1 + jnp.cos(math.pi * jnp.minimum(t, ds) / ds)) / 2)
    )


@implements("schedule", "cosine_restarts")
def cosine_restarts(a: dict, d: _Durations, lr: float, total: int | None, span: Span) -> Schedule:
    period, mult, low = d("period"), a["mult"], a["min_lr"]

    def f(t: Any) -> Any:
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        if mult == 1:
            t_cur, t_i = jnp.mod(t, period), period
        else:  # PyTorch CosineAnnealingWarmRestarts: n = floor(log(t/T0·(m-1) + 1, m))
            n = jnp.floor(jnp.log(t / period * (mult - 1) + 1) / math.log(mult))
            t_cur = t - period * (mult**n - 1) / (mult - 1)
            t_i = period * mult**n
        return low + (lr - low) * (1 + jnp.cos(math.pi * t_cur / t_i)) / 2

    return f


@implements("schedule", "one_cycle")
def one_cycle(a: dict, d: _Durations, lr: float, total: int | None, span: Span) -> Schedule:
    """PyTorch OneCycleLR (two phases); its phase ends are step pct·total - 1 and total - 1."""
    n = d("total")
    top = a["max_lr"]
    start = top / a["div_factor"]
    low = start / a["final_div_factor"]
    up_end = float(a["pct_start"] * n) - 1
    down_end = float(n - 1)
    anneal = _cos_anneal if str(a["anneal_strategy"]) == "cos" else _lin_anneal

    def f(t: Any) -> Any:
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        up = anneal(start, top, t / up_end)
        down = anneal(top, low, (t - up_end) / (down_end - up_end))
        return jnp.where(t <= up_end, up, down)

    return f


def _cos_anneal(a: float, b: float, p: Any) -> Any:
    return b + (a - b) / 2 * (1 + jnp.cos(math.pi * p))


def _lin_anneal(a: float, b: float, p: Any) -> Any:
    return a + (b - a) * p


@implements("schedule", "warmup_cosine")
def warmup_cosine(a: dict, d: _Durations, lr: float, total: int | None, span: Span) -> Schedule:
    warm = d("warmup")
    if a["decay_steps"] is not None:
        ds = d("decay_steps")
    elif total is not None:
        ds = max(total - warm, 1)
    else:
        raise error(
            E_VALUE,
            "`warmup_cosine` without `decay_steps` needs the length of training",
            span,
            "give `decay_steps`, or build it with the total number of steps",
        )
    return _cosine(lr, ds, a["alpha"])  # after the warm-up, which `lower_schedule` adds


@implements("schedule", "reduce_on_plateau")
def reduce_on_plateau(a: dict, d: _Durations, lr: float, total: int | None, span: Span) -> Schedule:
    """The base rate (warmed up by `lower_schedule`); the runtime multiplies it by
    `Plateau.scale` (see `plateau_step`) once the warm-up is over (`plateau_watches`)."""
    return _const(lr)


# ------------------------------------------------------------------ clipping


def lower_clip(ref: Ref, scan: ScanPlan | None = None) -> optax.GradientTransformation:
    """A `clip = ...` value as an Optax transformation (applied first in the chain).

    The per-tensor clippers see each slice of a scanned run's stacked leaf as its own tensor.
    """
    return CLIPPERS.implementation(ref.name)(float(ref.arg("c")), dict(ref.args), scan)


@implements("clipper", "value")
def clip_value(c: float, a: dict[str, Any], scan: ScanPlan | None) -> optax.GradientTransformation:
    return optax.clip(c)


@implements("clipper", "norm")
def clip_norm(c: float, a: dict[str, Any], scan: ScanPlan | None) -> optax.GradientTransformation:
    return per_slice(_per_tensor(lambda g: jnp.sqrt(jnp.sum(g * g)), c), scan)


@implements("clipper", "average_norm")
def clip_average_norm(
    c: float, a: dict[str, Any], scan: ScanPlan | None
) -> optax.GradientTransformation:
    """TF's average norm: the norm divided by the tensor's size."""
    return per_slice(_per_tensor(lambda g: jnp.sqrt(jnp.sum(g * g)) / g.size, c), scan)


@implements("clipper", "global_norm")
def clip_global_norm(
    c: float, a: dict[str, Any], scan: ScanPlan | None
) -> optax.GradientTransformation:
    return optax.clip_by_global_norm(c)


@implements("clipper", "adaptive")
def clip_adaptive(
    c: float, a: dict[str, Any], scan: ScanPlan | None
) -> optax.GradientTransformation:
    return per_slice(optax.adaptive_grad_clip(c, eps=float(a["eps"])), scan)


def _per_tensor(norm: Callable[[Any], Any], c: float) -> optax.GradientTransformation:
    """g <- g · c / max(norm(g), c), for each tensor on its own."""

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        def one(g: Any) -> Any:
            n = norm(g)
            return jnp.where(n > c, g * (c / n), g)

        return jax.tree.map(one, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def per_slice(
    inner: optax.GradientTransformation, scan: ScanPlan | None
) -> optax.GradientTransformation:
    """`inner`, a stateless transformation that looks at each tensor on its own (a norm, a
    trust ratio), applied to each slice of a scanned run's stacked leaf as to its own tensor:
    what it computes for the unrolled instances (lower_scan.py)."""
    if scan is None or not scan.groups:
        return inner

    def init(params: Any) -> Any:
        state = inner.init(params)
        assert not jax.tree.leaves(state), "per_slice needs a stateless transformation"
        return state

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        def one(path: Any, u: Any, p: Any) -> Any:
            def f(u: Any, p: Any) -> Any:
                return inner.update(u, state, p)[0]

            return jax.vmap(f)(u, p) if scan.stacked(_layer_and_role(path)[0]) else f(u, p)

        if params is None:
            return jax.tree_util.tree_map_with_path(lambda k, u: one(k, u, None), updates), state
        return jax.tree_util.tree_map_with_path(one, updates, params), state

    return optax.GradientTransformation(init, update)


# ------------------------------------------------------------------ optimizers
# The chain, in this fixed order: clipping → coupled L2 (`weight_decay` of the PyTorch
# optimizers that add it to the gradient) → the optimizer's direction → decoupled decay
# (AdamW, Lion, LAMB) → learning rate. The whole chain is wrapped in `inject_hyperparams`, so
# schedules and plateau reduction set `learning_rate` in the optimizer state.

Parts = list[optax.GradientTransformation]


def _coupled(a: dict[str, Any]) -> Parts:
    wd = a.get("weight_decay", 0.0)
    return [optax.add_decayed_weights(wd, mask=a.get("_mask"))] if _on(wd) else []


def _on(v: Any) -> bool:
    """Whether an optional step (weight decay, momentum) is in the chain: a number other than 0.
    A traced number (trials trained as one vmapped program, runtime/sweep_vmap.py) keeps it in;
    at 0 it then computes what leaving it out does."""
    return isinstance(v, jax.core.Tracer) or bool(v)


def _decoupled(a: dict[str, Any]) -> Parts:
    wd = a["weight_decay"]
    return [optax.add_decayed_weights(wd, mask=a.get("_mask"))] if _on(wd) else []


@implements("optimizer", "sgd", "momentum", "nesterov")
def sgd(a: dict[str, Any], lr: Any) -> Parts:
    momentum = (
        [T.scale_by_sgd_momentum(a["momentum"], a["dampening"], a["nesterov"])]
        if _on(a["momentum"])
        else []
    )
    return [*_coupled(a), *momentum, optax.scale_by_learning_rate(lr)]


@implements("optimizer", "adagrad")
def adagrad(a: dict[str, Any], lr: Any) -> Parts:
    return [
        *_coupled(a),
        T.scale_by_torch_adagrad(a["lr_decay"], a["initial_accumulator_value"], a["eps"]),
        optax.scale_by_learning_rate(lr),
    ]


@implements("optimizer", "rmsprop")
def rmsprop(a: dict[str, Any], lr: Any) -> Parts:
    scale = optax.scale_by_stddev if a["centered"] else optax.scale_by_rms
    momentum = [optax.trace(decay=a["momentum"])] if _on(a["momentum"]) else []
    return [
        *_coupled(a),
        scale(decay=a["alpha"], eps=a["eps"], eps_in_sqrt=False),
        *momentum,
        optax.scale_by_learning_rate(lr),
    ]


@implements("optimizer", "adadelta")
def adadelta(a: dict[str, Any], lr: Any) -> Parts:
    return [
        *_coupled(a),
        optax.scale_by_adadelta(a["rho"], a["eps"]),
        optax.scale_by_learning_rate(lr),
    ]


def _adam_direction(a: dict[str, Any]) -> optax.GradientTransformation:
    # torch.optim.Adam's amsgrad keeps the maximum of the raw v, Optax's of the corrected vhat.
    if a.get("amsgrad"):
        return T.scale_by_torch_amsgrad(a["b1"], a["b2"], a["eps"])
    return optax.scale_by_adam(b1=a["b1"], b2=a["b2"], eps=a["eps"])


@implements("optimizer", "adam", "amsgrad")
def adam(a: dict[str, Any], lr: Any) -> Parts:
    return [*_coupled(a), _adam_direction(a), optax.scale_by_learning_rate(lr)]


@implements("optimizer", "adamw")
def adamw(a: dict[str, Any], lr: Any) -> Parts:
    return [_adam_direction(a), *_decoupled(a), optax.scale_by_learning_rate(lr)]


@implements("optimizer", "adamax")
def adamax(a: dict[str, Any], lr: Any) -> Parts:
    return [
        *_coupled(a),
        T.scale_by_torch_adamax(a["b1"], a["b2"], a["eps"]),
        optax.scale_by_learning_rate(lr),
    ]


@implements("optimizer", "nadam")
def nadam(a: dict[str, Any], lr: Any) -> Parts:
    return [
        *_coupled(a),
        T.scale_by_torch_nadam(a["b1"], a["b2"], a["eps"], a["momentum_decay"]),
        optax.scale_by_learning_rate(lr),
    ]


@implements("optimizer", "radam")
def radam(a: dict[str, Any], lr: Any) -> Parts:
    return [
        *_coupled(a),
        T.scale_by_torch_radam(a["b1"], a["b2"], a["eps"]),
        optax.scale_by_learning_rate(lr),
    ]


@implements("optimizer", "lion")
def lion(a: dict[str, Any], lr: Any) -> Parts:
    return [
        optax.scale_by_lion(b1=a["b1"], b2=a["b2"]),
        *_decoupled(a),
        optax.scale_by_learning_rate(lr),
    ]


@implements("optimizer", "lamb")
def lamb(a: dict[str, Any], lr: Any) -> Parts:
    return [
        optax.scale_by_adam(b1=a["b1"], b2=a["b2"], eps=a["eps"]),
        *_decoupled(a),
        per_slice(optax.scale_by_trust_ratio(), a["_scan"]),
        optax.scale_by_learning_rate(lr),
    ]


@implements("optimizer", "lars")
def lars(a: dict[str, Any], lr: Any) -> Parts:
    return [
        *_coupled(a),
        per_slice(
            optax.scale_by_trust_ratio(trust_coefficient=a["trust_coefficient"], eps=a["eps"]),
            a["_scan"],
        ),
        optax.trace(decay=a["momentum"], nesterov=a["nesterov"]),
        optax.scale_by_learning_rate(lr),
    ]


# The optimizers whose own transformation takes the learning rate (lower_transforms.py).


@implements("optimizer", "ftrl")
def ftrl(a: dict[str, Any], lr: Any) -> Parts:
    return [T.ftrl(lr, a["lr_power"], a["initial_accumulator_value"], a["l1"], a["l2"])]


@implements("optimizer", "proximal_sgd")
def proximal_sgd(a: dict[str, Any], lr: Any) -> Parts:
    return [T.proximal_sgd(lr, a["l1"], a["l2"])]


@implements("optimizer", "proximal_adagrad")
def proximal_adagrad(a: dict[str, Any], lr: Any) -> Parts:
    return [T.proximal_adagrad(lr, a["initial_accumulator_value"], a["l1"], a["l2"])]


@implements("optimizer", "adagrad_da")
def adagrad_da(a: dict[str, Any], lr: Any) -> Parts:
    return [T.adagrad_da(lr, a["initial_gradient_squared_accumulator_value"], a["l1"], a["l2"])]


def lower_optimizer(
    ref: Ref,
    learning_rate: float | Schedule | None = None,
    clip: Ref | None = None,
    decay_all: bool = True,
    scan: ScanPlan | None = None,
) -> optax.GradientTransformation:
    """An `optimizer = ...` value (with an optional schedule and clipping) as one Optax chain.

    `learning_rate` defaults to the optimizer's `lr`; a schedule (step → rate) may replace it.
    The result's state holds `hyperparams["learning_rate"]`, which the runtime may overwrite.
    `decay_all = False` keeps weight decay off biases and normalization scales. `scan`: the
    stacked layout the parameters come in, whose slices per-tensor steps treat one by one.
    """
    a = dict(ref.args)
    a["_mask"] = None if decay_all else decay_mask
    a["_scan"] = scan
    build = OPTIMIZERS.implementation(ref.name)
    prefix = [lower_clip(clip, scan)] if clip is not None else []

    def chain(learning_rate: Any) -> optax.GradientTransformation:
        return optax.chain(*prefix, *build(a, learning_rate))

    rate = a["lr"] if learning_rate is None else learning_rate
    return optax.inject_hyperparams(chain)(learning_rate=rate)


# How far a rate-dividing optimizer's schedule is checked for a rate of 0 when the length of
# training is unknown: `build_optimizer()` without steps per epoch (the Python API). `dnn train`
# always knows it and checks every step. A bound, not a proof: a decay reaching 0 later passes.
UNKNOWN_LENGTH_STEPS = 10_000


def _never_zero(sched: Schedule, total: int | None, name: str, span: Span) -> None:
    """Refuse a schedule whose rate reaches 0 at a step of training (all of it when its length
    is known, else the first `UNKNOWN_LENGTH_STEPS`) for an optimizer that divides by it."""
    steps_ = jnp.arange(total if total else UNKNOWN_LENGTH_STEPS)
    if float(jnp.min(sched(steps_))) <= 0:
        raise error(
            E_VALUE,
            f"this schedule reaches a learning rate of 0, which `{name}` divides by",
            span,
            "drop the warm-up, keep a floor (`alpha`, `end_lr`, `min_lr` > 0), "
            "or choose another optimizer",
        )


def lower_train(program: Any, steps_per_epoch: int | None = None) -> optax.GradientTransformation:
    """The `train` section's optimizer, schedule and clipping as one injected Optax chain."""
    from .diagnostics import SpecError

    train = program.train
    total = train.epochs * steps_per_epoch if steps_per_epoch else None
    try:
        sched = lower_schedule(
            train.schedule,
            train.optimizer.arg("lr"),
            steps_per_epoch,
            total,
            train.span_of("schedule"),
        )
        # the `rate_divides` trait: the rate is in a denominator, so a rate of 0 is undefined
        entry = OPTIMIZERS.get(train.optimizer.name, train.span_of("optimizer"))
        if "rate_divides" in entry.traits:
            _never_zero(sched, total, train.optimizer.name, train.span_of("schedule"))
    except DiagnosticError as e:
        raise SpecError([e.diagnostic], program.sources) from None
    scan = plan_for(program)  # the layout of the weights: stacked where repeats are scanned
    if train.unfreeze is not None:
        tx = _two_phases(program, sched, steps_per_epoch, scan)
    else:
        tx = lower_optimizer(train.optimizer, sched, train.clip, train.decay_all, scan)
        if train.lr_scale:
            tx = optax.chain(tx, scale_layers(train.lr_scale, scan))
        tx = freeze(tx, train.freeze, scan)
    if train.accumulate > 1:  # one update from the mean gradient of k micro-batches
        return optax.MultiSteps(tx, every_k_schedule=train.accumulate).gradient_transformation()
    return tx


def _two_phases(
    program: Any, sched: Schedule, spe: int | None, scan: ScanPlan | None
) -> optax.GradientTransformation:
    """`freeze` until `unfreeze.after`, then every layer at `lr_factor` times the rate
    (compiler/lower_unfreeze.py): one transformation, the phase read from its count."""
    from .lower_unfreeze import shifted, thaw, unfreeze_at

    train = program.train
    at = unfreeze_at(program, spe)
    assert at is not None

    def build(shift: int) -> optax.GradientTransformation:
        tx = lower_optimizer(train.optimizer, shifted(sched, shift), None, train.decay_all, scan)
        return optax.chain(tx, scale_layers(train.lr_scale, scan)) if train.lr_scale else tx

    def held(params: Any) -> Any:
        labels = frozen_labels(params, train.freeze, scan)
        return jax.tree.map(lambda label: label == "frozen", labels)

    clip = lower_clip(train.clip, scan) if train.clip is not None else None
    return thaw(build, clip, held, at, float(train.unfreeze.get("lr_factor")))


# ------------------------------------------------------------------ reduce on plateau


@dataclass(frozen=True, slots=True)
class Plateau:
    """State of `reduce_on_plateau`, stepped once per epoch with the monitored value.

    PyTorch's ReduceLROnPlateau: after more than `patience` epochs without improvement
    (outside the cooldown), the rate is multiplied by `factor`, not going below `min_lr`.
    """

    best: float
    bad_epochs: int = 0
    cooldown_left: int = 0
    scale: float = 1.0  # the multiplier on the base rate so far


def plateau_watches(ref: Ref, updates: int, steps_per_epoch: int) -> bool:
    """Whether the epoch that ended after `updates` optimizer steps counts for the plateau:
    not while warming up (the rate was still rising), so the first watched epoch is the first
    one that ends after the warm-up."""
    q = dict(ref.args).get("warmup")
    if not isinstance(q, Quantity):
        return True
    return updates > steps(q, steps_per_epoch, Span("<schedule>", 1, 1, 1, 1), "warmup")


def plateau_start(ref: Ref) -> Plateau:
    return Plateau(math.inf if str(ref.arg("mode")) == "min" else -math.inf)


def plateau_step(ref: Ref, state: Plateau, value: float, base_lr: float) -> Plateau:
    """The state after an epoch whose monitored quantity is `value`."""
    a: dict[str, Any] = dict(ref.args)
    best, bad = state.best, state.bad_epochs + 1
    if _improved(a, value, best):
        best, bad = value, 0
    cooldown = state.cooldown_left
    if cooldown > 0:
        cooldown, bad = cooldown - 1, 0
    scale = state.scale
    if bad > a["patience"]:
        old = base_lr * scale
        new = max(old * a["factor"], a["min_lr"])
        if old - new > 1e-8:  # PyTorch's eps: changes smaller than this are ignored
            scale = new / base_lr
        cooldown, bad = a["cooldown"], 0
    return Plateau(best, bad, cooldown, scale)


def _improved(a: dict[str, Any], value: float, best: float) -> bool:
    rel, th = str(a["threshold_mode"]) == "rel", a["threshold"]
    if str(a["mode"]) == "min":
        return value < (best * (1 - th) if rel else best - th)
    return value > (best * (1 + th) if rel else best + th)


# ------------------------------------------------------------------ parameter groups
# The contract with the Flax lowering: a parameter's layer is the path of keys above its leaf,
# joined with "/" (the node names of the IR, e.g. "basic_1/conv_bn/conv2d"); the leaf's key is
# its role: "kernel", "bias", "scale", "embedding", ... A scanned run's leaves sit under its
# group key (`"res..res_63/dense"`, lower_scan.py) and stack one slice per instance: patterns
# are matched against the instance names (`"res_5/dense"`).

NO_DECAY_LEAVES = ("bias", "scale")


def _decays(role: str) -> bool:
    """Biases (`bias`, and `query_bias`, `recurrent_bias`: a role ending in `_bias`) and
    normalization scales take no weight decay."""
    return role not in NO_DECAY_LEAVES and not role.endswith("_bias")


def _layer_and_role(path: Any) -> tuple[str, str]:
    keys = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    return "/".join(keys[:-1]), (keys[-1] if keys else "")


def decay_mask(params: Any) -> Any:
    """True where weight decay applies: not on biases and normalization scales."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: _decays(_layer_and_role(path)[1]), params
    )


def frozen_labels(params: Any, patterns: tuple[str, ...], scan: ScanPlan | None = None) -> Any:
    """ "frozen" for parameters of layers matching a `freeze` pattern, else "train".

    A stacked leaf of a scanned run is one leaf: `lower_scan.split` cuts runs so that the
    pattern matches all of its instances or none.
    """
    scan = scan or ScanPlan()

    def label(path: Any, _: Any) -> str:
        hits = {frozen(x, patterns) for x in scan.instance_layers(_layer_and_role(path)[0])}
        if len(hits) > 1:
            raise InternalError(f"`freeze` splits the scanned layer {_layer_and_role(path)[0]}")
        return "frozen" if hits == {True} else "train"

    return jax.tree_util.tree_map_with_path(label, params)


def freeze(
    tx: optax.GradientTransformation, patterns: tuple[str, ...], scan: ScanPlan | None = None
) -> Any:
    """Zero the updates of frozen layers (their optimizer state is not even kept)."""
    if not patterns:
        return tx
    return optax.multi_transform(
        {"train": tx, "frozen": optax.set_to_zero()},
        lambda params: frozen_labels(params, patterns, scan),
    )


def scale_layers(
    scales: tuple[tuple[str, float], ...], scan: ScanPlan | None = None
) -> optax.GradientTransformation:
    """Multiply each layer's update by the factor of the first pattern matching it.

    A stacked leaf of a scanned run gets one factor per slice (per instance).
    """
    scan = scan or ScanPlan()

    def factor(layer: str) -> float:
        return next((f for pat, f in scales if fnmatch.fnmatchcase(layer, pat)), 1.0)

    def one(path: Any, u: Any) -> Any:
        layer = _layer_and_role(path)[0]
        if scan.stacked(layer) is None:
            return u * factor(layer)
        f = jnp.asarray([factor(x) for x in scan.instance_layers(layer)], u.dtype)
        return u * f.reshape((-1,) + (1,) * (u.ndim - 1))

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        return jax.tree_util.tree_map_with_path(one, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
