"""Hyperparameter search: the `sweep { ... }` section.

`method = ...` names a search strategy (SEARCHES), each swept field takes a distribution
(DISTRIBUTIONS) and `objective = ...` says what to optimize (OBJECTIVES), a quantity from
`metrics.MONITORS` measured at the end of each trial (best epoch when early stopping restores
the best weights).
"""

from __future__ import annotations

from collections.abc import Callable

from ..values import Quantity
from .core import Args, Problem, arg, registry
from .metrics import MONITORS, monitor_mode
from .types import (
    Any_,
    Duration,
    EnumT,
    Float,
    FloatT,
    Int,
    IntT,
    ListT,
    NonNegInt,
    PosFloat,
    PosInt,
    Prob,
)

# ----------------------------------------------------------------------------- strategies

SEARCHES = registry(
    "search",
    "searches",
    "How the sweep picks the settings of each trial.",
)

_TRIALS = arg("trials", PosInt, 20, doc="number of trials (training runs)")

SEARCHES.add(
    "grid",
    args=(
        arg(
            "max_trials",
            PosInt,
            100,
            doc="the largest grid accepted (a guard against a grid that would run for days)",
        ),
    ),
    doc="every combination of the swept values (each `choice`, or every integer of an "
    "`int_uniform`; continuous ranges are refused)",
    formula="trials = product over swept fields of the number of values",
)


def _rounds_fit(a: Args) -> None:
    if a.rounds > a.trials:
        raise Problem(
            f"{a.rounds} rounds need at least {a.rounds} trials, not {a.trials}",
            hint=f"write `trials = {a.rounds * 5}` or fewer rounds",
            arg="rounds",
        )


SEARCHES.add(
    "random",
    args=(
        _TRIALS,
        arg(
            "rounds",
            PosInt,
            1,
            doc="coarse-to-fine tightening: the trials in this many rounds, each drawing from "
            "ranges narrowed around the best trials of the rounds before (1: plain random search)",
        ),
        arg(
            "keep",
            FloatT(min=0.0, max=1.0, min_open=True),
            0.25,
            doc="the share of the trials so far (at least 2) whose values the next round's "
            "ranges must hold",
        ),
    ),
    doc="independent random draws from each field's distribution (Bergstra & Bengio 2012); "
    "with `rounds > 1`, coarse-to-fine: each round searches the neighbourhood of the best so far",
    formula=(
        "setting_k ~ product of the fields' distributions, k = 1 .. trials, independently; "
        "rounds: range_r = range_(r-1) ∩ [min - w/10, max + w/10] over the best `keep` share "
        "of the trials of rounds < r (w = width of range_(r-1); on log scale for `loguniform`), "
        "a `choice` keeps the values the best trials took"
    ),
    validate=_rounds_fit,
)

SEARCHES.add(
    "bayes",
    args=(_TRIALS,),
    aliases=("tpe", "bayesian"),
    doc="Bayesian optimization with Optuna's tree-structured Parzen estimator (TPE)",
    formula=(
        "split past trials at a quantile of the objective into good (l) and bad (g) densities; "
        "next setting = argmax over candidates of l(x) / g(x)"
    ),
    info={"library": "optuna"},
)


def _interval_in_epochs(a: Args) -> None:
    if a.interval.value < 1:
        raise Problem("a round must train at least 1 epoch", arg="interval")
    if a.interval.unit != "epochs":
        raise Problem(
            "a population is compared at the end of epochs (its validation metric)",
            hint=f"write `interval = {a.interval.value} epochs`",
            arg="interval",
        )


SEARCHES.add(
    "best_ball",
    args=(
        arg("population", IntT(min=2), 8, doc="members trained side by side (one program)"),
        arg(
            "perturb",
            FloatT(min=0.0, max=1.0, min_open=True, max_open=True),
            0.2,
            doc="explore: a number is multiplied by 1 - perturb or 1 + perturb (0.8 or 1.2)",
        ),
        arg(
            "interval",
            Duration,
            Quantity(1, "epochs"),
            doc="training between two exploit/explore steps (a round), in epochs",
        ),
        arg(
            "truncate",
            FloatT(min=0.0, max=0.5, min_open=True),
            0.25,
            doc="exploit: the worst share of the population copies a member of the best share",
        ),
        arg(
            "resample",
            Prob,
            0.25,
            doc="explore: the chance a value is drawn anew from its distribution instead",
        ),
    ),
    aliases=("bestball", "pbt"),
    doc="population-based training (Jaderberg et al. 2017): a population trains as one "
    "vmapped program; every `interval`, the worst members copy the weights and optimizer "
    "state of better ones (exploit) and perturb their hyperparameters (explore); searches the "
    "optimizer's and schedule's numbers and the seed",
    formula=(
        "every interval: rank members by the objective; each of the worst "
        "ceil(truncate · population) takes the state of a random one of the best as many, and "
        "its values v ← v · (1 ± perturb) (a choice: a neighbouring value), or, with "
        "probability `resample`, a fresh draw; for train.epochs in all"
    ),
    validate=_interval_in_epochs,
)

# ----------------------------------------------------------------------------- pruners

PRUNERS = registry(
    "pruner",
    "pruners",
    "Stopping a sweep's unpromising trials early, from the objective measured after each epoch "
    "(Optuna's pruners; a stopped trial is recorded as `pruned`).",
    implemented_in="dnn.runtime.sweep",
)

PRUNERS.add(
    "none",
    doc="every trial trains to its end",
    formula="no trial is stopped early",
)

_MIN_EPOCHS = arg(
    "min_epochs", PosInt, 1, doc="epochs every trial trains before it may be stopped (the rung 0)"
)
_REDUCTION = arg(
    "reduction",
    IntT(min=2),
    3,
    doc="η: a rung keeps the best 1/η of the trials that reached it",
)

PRUNERS.add(
    "median",
    args=(
        arg("startup", NonNegInt, 5, doc="trials that finish before any is stopped"),
        arg("warmup", NonNegInt, 1, doc="epochs a trial trains before it may be stopped"),
    ),
    doc="stop a trial whose best objective so far is worse than the median of the other "
    "trials at the same epoch (Optuna's MedianPruner; Golovin et al. 2017)",
    formula="stop at epoch e if best_(t<=e) objective is worse than median over earlier trials "
    "of their objective at epoch e",
    info={"library": "optuna"},
)

PRUNERS.add(
    "successive_halving",
    args=(_MIN_EPOCHS, _REDUCTION),
    aliases=("asha",),
    doc="asynchronous successive halving: at epochs min_epochs · η^k, keep only the best "
    "1/η of the trials that got there (Li et al. 2020; Optuna's SuccessiveHalvingPruner)",
    formula="rung k at epoch min_epochs · η^k: continue only if in the top 1/η of the "
    "objectives reported at that rung",
    info={"library": "optuna"},
)

PRUNERS.add(
    "hyperband",
    args=(_MIN_EPOCHS, _REDUCTION),
    doc="Hyperband: several successive-halving brackets with different starting budgets, up "
    "to `train.epochs` (Li et al. 2018; Optuna's HyperbandPruner)",
    formula="brackets s = 0 .. floor(log_η(epochs / min_epochs)), each successive halving "
    "from min_epochs · η^s epochs; a trial is assigned a bracket by its number",
    info={"library": "optuna"},
)

# ----------------------------------------------------------------------------- distributions

DISTRIBUTIONS = registry(
    "distribution",
    "distributions",
    "The values a swept field may take.",
)


def _low_below_high(a: Args) -> None:
    if a.low >= a.high:
        raise Problem("`low` must be less than `high`", arg="high")


DISTRIBUTIONS.add(
    "choice",
    example="choice(32, 64)",
    args=(arg("values", ListT(Any_, min_len=1), doc="the values to choose from", variadic=True),),
    aliases=("categorical",),
    doc="one of the listed values",
    formula="x = values[k],  k ~ U{0 .. len(values) - 1}  (grid: every value in turn)",
)

DISTRIBUTIONS.add(
    "uniform",
    example="uniform(0.0, 0.5)",
    args=(arg("low", Float, doc="lower bound"), arg("high", Float, doc="upper bound")),
    doc="a real number drawn uniformly between low and high",
    formula="x ~ U(low, high)",
    validate=_low_below_high,
)

DISTRIBUTIONS.add(
    "loguniform",
    example="loguniform(1e-4, 1e-2)",
    args=(
        arg("low", PosFloat, doc="lower bound, > 0"),
        arg("high", PosFloat, doc="upper bound"),
    ),
    aliases=("log_uniform",),
    doc="a positive number whose logarithm is uniform (for rates and penalties)",
    formula="log x ~ U(log low, log high)",
    validate=_low_below_high,
)

DISTRIBUTIONS.add(
    "int_uniform",
    example="int_uniform(1, 4)",
    args=(arg("low", Int, doc="smallest value"), arg("high", Int, doc="largest value (included)")),
    aliases=("randint",),
    doc="an integer drawn uniformly from low to high, both included",
    formula="x ~ U{low, low + 1, .., high}",
    validate=_low_below_high,
)

# ----------------------------------------------------------------------------- objectives

OBJECTIVES = registry(
    "objective",
    "objectives",
    "What the sweep optimizes: a monitored quantity and a direction.",
)


def _direction(want: str) -> Callable[[Args], None]:
    """A validate rule: refuse minimizing a quantity that is better high, and the reverse."""

    def check(a: Args) -> None:
        name = a.metric.name
        if monitor_mode(name) != want:
            better, other = ("higher", "maximize") if want == "min" else ("lower", "minimize")
            raise Problem(
                f"`{name}` is better when {better}",
                hint=f"write `{other}({name})`",
                arg="metric",
            )

    return check


OBJECTIVES.add(
    "minimize",
    args=(arg("metric", EnumT(MONITORS), "val_loss", doc="the quantity to make small"),),
    doc="find the setting with the smallest value of a monitored quantity",
    formula="best = argmin over trials of metric",
    validate=_direction("min"),
    info={"mode": "min"},
)

OBJECTIVES.add(
    "maximize",
    args=(arg("metric", EnumT(MONITORS), "val_accuracy", doc="the quantity to make large"),),
    doc="find the setting with the largest value of a monitored quantity",
    formula="best = argmax over trials of metric",
    validate=_direction("max"),
    info={"mode": "max"},
)
