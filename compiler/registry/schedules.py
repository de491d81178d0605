"""Learning-rate schedules: `train { schedule = ... }`.

A schedule gives the learning rate at each optimizer step from the optimizer's `lr` (lr_0 in
the formulas). Durations are written `500 steps` or `2 epochs` (a bare int means steps) and
count optimizer steps; epochs are converted with the known steps per epoch. Argument names
follow PyTorch's `torch.optim.lr_scheduler` where it has the schedule (step, multistep,
one_cycle, cosine_restarts, reduce_on_plateau), Keras/TensorFlow otherwise.

Every schedule except `constant` and `one_cycle` takes `warmup`: the rate first rises linearly
from 0 to lr_0 over `warmup`, then the schedule runs with its step count t starting at 0 where
the warm-up ends:

    lr(s) = lr_0 * s / warmup            for s < warmup
    lr(s) = schedule(t = s - warmup)     otherwise

For `reduce_on_plateau` the schedule after the warm-up is lr_0 times the plateau's factor, and
the plateau watches only the epochs that end after the warm-up (an epoch spent warming up is
neither an improvement nor a stall).
"""

from __future__ import annotations

from collections.abc import Callable

from ..values import Quantity
from .core import Args, Problem, arg, registry
from .metrics import MONITORS, monitor_mode
from .types import (
    Bool,
    Duration,
    EnumT,
    FloatT,
    ListT,
    NonNegFloat,
    NonNegInt,
    OptionalT,
    PosFloat,
    PosInt,
    Prob,
)

SCHEDULES = registry(
    "schedule",
    "schedules",
    "How the learning rate changes over training; lr_0 is the optimizer's `lr`.",
    implemented_in="dnn.compiler.lower_optax",
)

_WARMUP = arg("warmup", Duration, 0, doc="linear warm-up from 0 to lr_0 before the schedule")
_FRACTION = FloatT(min=0.0, max=1.0, min_open=True, max_open=True)


def _positive(*names: str) -> Callable[[Args], None]:
    """A validate rule: the named durations must be longer than zero."""

    def check(a: Args) -> None:
        for name in names:
            q = getattr(a, name)
            if isinstance(q, Quantity) and q.value <= 0:
                raise Problem(f"`{name}` must be longer than 0", arg=name)

    return check


def _increasing(name: str, values: tuple[Quantity, ...]) -> None:
    """Durations in a list must increase (compared only between items of the same unit)."""
    for p, q in zip(values, values[1:], strict=False):
        if p.unit == q.unit and q.value <= p.value:
            raise Problem(
                f"`{name}` must increase: {p} is followed by {q}",
                hint="list the boundaries in training order",
                arg=name,
            )


def _check_multistep(a: Args) -> None:
    _increasing("milestones", a.milestones)


def _check_piecewise(a: Args) -> None:
    _increasing("boundaries", a.boundaries)
    if len(a.values) != len(a.boundaries) + 1:
        raise Problem(
            f"`values` needs one more item than `boundaries` ({len(a.boundaries) + 1}), "
            f"got {len(a.values)}",
            hint="the first value holds before the first boundary, the last after the last",
            arg="values",
        )


def _check_plateau(a: Args) -> None:
    wanted = monitor_mode(a.monitor.name)
    if a.mode.name != wanted:
        raise Problem(
            f"`{a.monitor.name}` improves when it {'rises' if wanted == 'max' else 'falls'}, "
            f"but `mode` is `{a.mode.name}`",
            hint=f"write `mode = {wanted}`",
            arg="mode",
        )


SCHEDULES.add(
    "constant",
    doc="the optimizer's learning rate, unchanged",
    formula="lr_t = lr_0",
)

SCHEDULES.add(
    "step",
    example="step(step_size = 1 epochs)",
    args=(
        arg("step_size", Duration, doc="period of the decay"),
        arg("gamma", PosFloat, 0.1, doc="multiplicative factor of the decay"),
        _WARMUP,
    ),
    aliases=("step_decay",),
    doc="multiply the rate by gamma every step_size",
    formula="lr_t = lr_0 * gamma^floor(t / step_size)",
    validate=_positive("step_size"),
)

SCHEDULES.add(
    "multistep",
    example="multistep(milestones = [1 epochs, 2 epochs])",
    args=(
        arg("milestones", ListT(Duration, min_len=1), doc="when to decay, increasing"),
        arg("gamma", PosFloat, 0.1, doc="multiplicative factor of each decay"),
        _WARMUP,
    ),
    doc="multiply the rate by gamma at each milestone",
    formula="lr_t = lr_0 * gamma^(number of milestones m with m <= t)",
    validate=_check_multistep,
)

SCHEDULES.add(
    "exponential",
    example="exponential(decay_rate = 0.5, decay_steps = 1 epochs)",
    args=(
        arg("decay_rate", PosFloat, doc="factor per decay_steps"),
        arg(
            "decay_steps",
            Duration,
            doc="the period over which the rate is multiplied by decay_rate",
        ),
        arg("staircase", Bool, False, doc="decay in discrete steps (integer division)"),
        _WARMUP,
    ),
    aliases=("exponential_decay",),
    doc="exponential decay by decay_rate every decay_steps",
    formula="lr_t = lr_0 * decay_rate^(t / decay_steps)   (floor(t / decay_steps) if staircase)",
    validate=_positive("decay_steps"),
)

SCHEDULES.add(
    "natural_exp",
    example="natural_exp(decay_rate = 0.5, decay_steps = 1 epochs)",
    args=(
        arg("decay_rate", NonNegFloat, doc="rate in the exponent"),
        arg("decay_steps", Duration, doc="time scale of the decay"),
        arg("staircase", Bool, False, doc="decay in discrete steps (integer division)"),
        _WARMUP,
    ),
    aliases=("natural_exp_decay",),
    doc="exponential decay with base e",
    formula="lr_t = lr_0 * exp(-decay_rate * t / decay_steps)   (floor(t / decay_steps) if staircase)",
    validate=_positive("decay_steps"),
)

SCHEDULES.add(
    "inverse_time",
    example="inverse_time(decay_rate = 0.5, decay_steps = 1 epochs)",
    args=(
        arg("decay_rate", NonNegFloat, doc="rate of the decay"),
        arg("decay_steps", Duration, doc="time scale of the decay"),
        arg("staircase", Bool, False, doc="decay in discrete steps (integer division)"),
        _WARMUP,
    ),
    aliases=("inverse_time_decay",),
    doc="decay inversely proportional to time",
    formula="lr_t = lr_0 / (1 + decay_rate * t / decay_steps)   (floor(t / decay_steps) if staircase)",
    validate=_positive("decay_steps"),
)

SCHEDULES.add(
    "piecewise_constant",
    example="piecewise_constant(boundaries = [2 steps], values = [1.0, 0.1])",
    args=(
        arg("boundaries", ListT(Duration, min_len=1), doc="where the rate changes, increasing"),
        arg("values", ListT(PosFloat, min_len=2), doc="the rates, one more than the boundaries"),
        _WARMUP,
    ),
    doc="fixed rates between boundaries; values[0] takes the place of lr_0, also for the warm-up",
    formula="lr_t = values[i] where i = number of boundaries b with b <= t",
    validate=_check_piecewise,
)

SCHEDULES.add(
    "polynomial",
    example="polynomial(decay_steps = 2 epochs)",
    args=(
        arg("decay_steps", Duration, doc="length of the decay"),
        arg("end_lr", NonNegFloat, 1e-4, doc="rate at the end of the decay and after it"),
        arg("power", PosFloat, 1.0, doc="power of the polynomial (1 is linear)"),
        _WARMUP,
    ),
    aliases=("polynomial_decay",),
    doc="polynomial decay from lr_0 to end_lr over decay_steps",
    formula="lr_t = (lr_0 - end_lr) * (1 - min(t, decay_steps) / decay_steps)^power + end_lr",
    validate=_positive("decay_steps"),
)

SCHEDULES.add(
    "cosine",
    example="cosine(decay_steps = 2 epochs)",
    args=(
        arg("decay_steps", Duration, doc="length of the decay"),
        arg("alpha", Prob, 0.0, doc="final rate as a fraction of lr_0"),
        _WARMUP,
    ),
    aliases=("cosine_decay",),
    doc="half a cosine from lr_0 down to alpha * lr_0 over decay_steps",
    formula=(
        "lr_t = lr_0 * (alpha + (1 - alpha) * (1 + cos(pi * min(t, decay_steps) / decay_steps)) / 2)"
    ),
    validate=_positive("decay_steps"),
)

SCHEDULES.add(
    "cosine_restarts",
    example="cosine_restarts(period = 1 epochs)",
    args=(
        arg("period", Duration, doc="length of the first cycle (PyTorch's T_0)"),
        arg("mult", PosInt, 1, doc="factor by which each cycle is longer than the last (T_mult)"),
        arg("min_lr", NonNegFloat, 0.0, doc="rate at the end of each cycle (eta_min)"),
        _WARMUP,
    ),
    aliases=("sgdr",),
    doc="cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017)",
    formula=(
        "lr_t = min_lr + (lr_0 - min_lr) * (1 + cos(pi * T_cur / T_i)) / 2, "
        "T_cur = steps since the last restart, T_0 = period, T_{i+1} = mult * T_i"
    ),
    validate=_positive("period"),
)

SCHEDULES.add(
    "one_cycle",
    example="one_cycle(max_lr = 0.01, total = 2 epochs)",
    args=(
        arg("max_lr", PosFloat, doc="peak rate (replaces lr_0)"),
        arg("total", Duration, doc="length of the cycle (usually the whole training)"),
        arg("pct_start", _FRACTION, 0.3, doc="fraction of the cycle spent increasing the rate"),
        arg("div_factor", PosFloat, 25.0, doc="initial rate = max_lr / div_factor"),
        arg("final_div_factor", PosFloat, 1e4, doc="final rate = initial rate / final_div_factor"),
        arg("anneal_strategy", EnumT(("cos", "linear")), "cos", doc="shape of both phases"),
    ),
    aliases=("onecycle",),
    doc="the 1cycle policy (Smith & Topin 2019): up to max_lr, then far below the start",
    formula=(
        "lr_init = max_lr / div_factor, lr_min = lr_init / final_div_factor, "
        "T_up = pct_start * total; anneal from lr_init to max_lr over [0, T_up], "
        "then from max_lr to lr_min over [T_up, total]; "
        "cos: a + (b - a) * (1 - cos(pi * p)) / 2, linear: a + (b - a) * p, p = phase progress"
    ),
    validate=_positive("total"),
)

SCHEDULES.add(
    "warmup_cosine",
    example="warmup_cosine(warmup = 1 steps)",
    args=(
        arg("warmup", Duration, doc="linear warm-up from 0 to lr_0"),
        arg(
            "decay_steps",
            OptionalT(Duration),
            None,
            doc="length of the cosine decay after the warm-up; none: until the end of training",
        ),
        arg("alpha", Prob, 0.0, doc="final rate as a fraction of lr_0"),
    ),
    doc="linear warm-up, then a cosine decay to alpha * lr_0",
    formula=(
        "lr_s = lr_0 * s / warmup for s < warmup; then with t = s - warmup, "
        "T = decay_steps (or the steps left in training), "
        "lr_t = lr_0 * (alpha + (1 - alpha) * (1 + cos(pi * min(t, T) / T)) / 2)"
    ),
    validate=_positive("decay_steps"),
)

SCHEDULES.add(
    "reduce_on_plateau",
    args=(
        arg("monitor", EnumT(MONITORS), "val_loss", doc="the quantity watched after each epoch"),
        arg("factor", _FRACTION, 0.1, doc="new rate = rate * factor"),
        arg("patience", NonNegInt, 10, doc="epochs without improvement before reducing"),
        arg("cooldown", NonNegInt, 0, doc="epochs to wait after a reduction before watching again"),
        arg("min_lr", NonNegFloat, 0.0, doc="lower bound on the rate"),
        arg(
            "mode", EnumT(("min", "max")), "min", doc="min: lower is better; max: higher is better"
        ),
        arg("threshold", NonNegFloat, 1e-4, doc="least change that counts as an improvement"),
        arg(
            "threshold_mode",
            EnumT(("rel", "abs")),
            "rel",
            doc="rel: relative to the best value; abs: absolute",
        ),
        arg(
            "warmup",
            Duration,
            0,
            doc="linear warm-up from 0 to lr_0; the plateau watches the epochs that end after it",
        ),
    ),
    aliases=("plateau",),
    doc="divide the rate when a monitored quantity stops improving (checked once per epoch)",
    formula=(
        "improved (mode min) if x < best * (1 - threshold) [rel] or x < best - threshold [abs] "
        "(mode max: x > best * (1 + threshold) or x > best + threshold); "
        "after more than patience epochs without improvement, outside cooldown: "
        "lr <- max(lr * factor, min_lr); with warmup: lr_s = lr_0 * s / warmup for s < warmup, "
        "and epochs ending at or before step warmup are not watched"
    ),
    validate=_check_plateau,
)
