"""Contract tests for the training-side registries: optimizers, schedules, clippers, losses,
metrics, data sets, normalizers, augmentations and the sweep tables.

Every entry is documented, has a formula, and binds with its defaults (required arguments get
a value from `REQUIRED_VALUES`); defaults shared with PyTorch match PyTorch; the `validate`
rules refuse what they should.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from dnn.compiler.diagnostics import E_MISSING_ARG, E_VALUE, DiagnosticError, Span
from dnn.compiler.registry import clippers, data, losses, metrics, optimizers, schedules, sweep
from dnn.compiler.registry.core import TASKS, Entry, Problem, Registry
from dnn.compiler.registry.types import bind
from dnn.compiler.values import ListVal, Quantity, Sym, Symbol

SPAN = Span("<t>", 1, 1, 1, 2)

REGISTRIES: dict[str, Registry] = {
    "optimizer": optimizers.OPTIMIZERS,
    "schedule": schedules.SCHEDULES,
    "clipper": clippers.CLIPPERS,
    "loss": losses.LOSSES,
    "metric": metrics.METRICS,
    "dataset": data.DATASETS,
    "normalizer": data.NORMALIZERS,
    "augmentation": data.AUGMENTATIONS,
    "search": sweep.SEARCHES,
    "distribution": sweep.DISTRIBUTIONS,
    "objective": sweep.OBJECTIVES,
}

ENTRIES = [pytest.param(e, id=f"{k}:{e.name}") for k, reg in REGISTRIES.items() for e in reg]

# A valid value (as the evaluator produces it) for every required argument.
REQUIRED_VALUES: dict[str, dict[str, Any]] = {
    "optimizer:proximal_sgd": {"lr": 0.1},
    "optimizer:adagrad_da": {"lr": 0.1},
    "optimizer:proximal_adagrad": {"lr": 0.1},
    "optimizer:lars": {"lr": 0.1},
    "schedule:step": {"step_size": Quantity(10, "epochs")},
    "schedule:multistep": {"milestones": ListVal((100, 200))},
    "schedule:exponential": {"decay_rate": 0.96, "decay_steps": 1000},
    "schedule:natural_exp": {"decay_rate": 0.5, "decay_steps": 1000},
    "schedule:inverse_time": {"decay_rate": 0.5, "decay_steps": 1000},
    "schedule:piecewise_constant": {
        "boundaries": ListVal((100, 200)),
        "values": ListVal((0.1, 0.01, 0.001)),
    },
    "schedule:polynomial": {"decay_steps": 1000},
    "schedule:cosine": {"decay_steps": Quantity(20, "epochs")},
    "schedule:cosine_restarts": {"period": 500},
    "schedule:one_cycle": {"max_lr": 0.1, "total": 1000},
    "schedule:warmup_cosine": {"warmup": 200},
    "clipper:value": {"c": 1.0},
    "clipper:norm": {"c": 1.0},
    "clipper:average_norm": {"c": 0.1},
    "clipper:global_norm": {"c": 1.0},
    "clipper:adaptive": {"c": 0.01},
    "dataset:builtin": {"name": Sym("digits")},
    "dataset:csv": {"path": "data.csv"},
    "dataset:npz": {"path": "data.npz"},
    "dataset:images": {"dir": "images/"},
    "dataset:npy": {"x": "x.npy", "y": "y.npy"},
    "dataset:parquet": {"path": "data.parquet"},
    "dataset:shards": {"pattern": "shards/*.array_record"},
    "normalizer:pca": {"n": 2},
    "distribution:choice": {"values": (32, 64, 128)},  # variadic: given positionally
    "distribution:uniform": {"low": 0.0, "high": 1.0},
    "distribution:loguniform": {"low": 1e-4, "high": 1e-2},
    "distribution:int_uniform": {"low": 1, "high": 8},
}


def _bind(entry: Entry, values: dict[str, Any]):
    """Bind `values` to `entry` the way a call in a spec would, then run its validate rule."""
    pos: list[tuple[Any, Span]] = []
    kws: list[tuple[str, Any, Span]] = []
    for name, v in values.items():
        a = entry.get_arg(name)
        assert a is not None, f"{entry.name} has no argument {name}"
        if a.variadic:
            pos.extend((x, SPAN) for x in v)
        else:
            kws.append((name, v, SPAN))
    args, _ = bind(entry, pos, kws, SPAN)
    if entry.validate is not None:
        entry.validate(args)
    return args


@pytest.mark.parametrize("entry", ENTRIES)
def test_entry_is_documented(entry: Entry) -> None:
    assert isinstance(entry.doc, str) and entry.doc.strip()
    assert isinstance(entry.formula, str) and entry.formula.strip()
    assert entry.lower is None  # the front end names no lowering yet
    for a in entry.args:
        assert a.doc.strip(), f"argument `{a.name}` of `{entry.name}` has no doc"


@pytest.mark.parametrize("entry", ENTRIES)
def test_defaults_bind(entry: Entry) -> None:
    values = REQUIRED_VALUES.get(f"{entry.kind}:{entry.name}", {})
    args = _bind(entry, values)
    assert [k for k, _ in args.items] == [a.name for a in entry.args]


def test_required_values_table_is_exact() -> None:
    needed = {
        f"{e.kind}:{e.name}": {a.name for a in e.args if a.required}
        for reg in REGISTRIES.values()
        for e in reg
    }
    needed = {k: v for k, v in needed.items() if v}
    assert {k: set(v) for k, v in REQUIRED_VALUES.items()} == needed


def test_missing_required_argument_is_reported() -> None:
    with pytest.raises(DiagnosticError) as exc:
        _bind(schedules.SCHEDULES.lookup("step"), {})
    assert exc.value.diagnostic.code == E_MISSING_ARG


# (kind, entry, argument, default): PyTorch's defaults where the concept is shared, the
# TensorFlow/Keras one otherwise; the Adam family's betas are (b1, b2).
REFERENCE_DEFAULTS = [
    ("optimizer", "sgd", "lr", 1e-3),
    ("optimizer", "sgd", "momentum", 0.0),
    ("optimizer", "sgd", "dampening", 0.0),
    ("optimizer", "sgd", "nesterov", False),
    ("optimizer", "sgd", "weight_decay", 0.0),
    ("optimizer", "momentum", "momentum", 0.9),
    ("optimizer", "nesterov", "momentum", 0.9),
    ("optimizer", "nesterov", "nesterov", True),
    ("optimizer", "adagrad", "lr", 0.01),
    ("optimizer", "adagrad", "lr_decay", 0.0),
    ("optimizer", "adagrad", "initial_accumulator_value", 0.0),
    ("optimizer", "adagrad", "eps", 1e-10),
    ("optimizer", "adagrad_da", "initial_gradient_squared_accumulator_value", 0.1),
    ("optimizer", "rmsprop", "lr", 0.01),
    ("optimizer", "rmsprop", "alpha", 0.99),
    ("optimizer", "rmsprop", "eps", 1e-8),
    ("optimizer", "rmsprop", "momentum", 0.0),
    ("optimizer", "rmsprop", "centered", False),
    ("optimizer", "adadelta", "lr", 1.0),
    ("optimizer", "adadelta", "rho", 0.9),
    ("optimizer", "adadelta", "eps", 1e-6),
    ("optimizer", "adam", "lr", 1e-3),
    ("optimizer", "adam", "b1", 0.9),
    ("optimizer", "adam", "b2", 0.999),
    ("optimizer", "adam", "eps", 1e-8),
    ("optimizer", "adam", "weight_decay", 0.0),
    ("optimizer", "adam", "amsgrad", False),
    ("optimizer", "amsgrad", "amsgrad", True),
    ("optimizer", "adamw", "weight_decay", 0.01),
    ("optimizer", "adamax", "lr", 2e-3),
    ("optimizer", "nadam", "lr", 2e-3),
    ("optimizer", "nadam", "momentum_decay", 4e-3),
    ("optimizer", "radam", "lr", 1e-3),
    ("optimizer", "lion", "lr", 1e-4),
    ("optimizer", "lion", "b2", 0.99),
    ("optimizer", "ftrl", "lr_power", -0.5),
    ("optimizer", "ftrl", "initial_accumulator_value", 0.1),
    ("optimizer", "proximal_adagrad", "initial_accumulator_value", 0.1),
    ("schedule", "step", "gamma", 0.1),
    ("schedule", "multistep", "gamma", 0.1),
    ("schedule", "polynomial", "end_lr", 1e-4),
    ("schedule", "polynomial", "power", 1.0),
    ("schedule", "cosine_restarts", "mult", 1),
    ("schedule", "cosine_restarts", "min_lr", 0.0),
    ("schedule", "one_cycle", "pct_start", 0.3),
    ("schedule", "one_cycle", "div_factor", 25.0),
    ("schedule", "one_cycle", "final_div_factor", 1e4),
    ("schedule", "one_cycle", "anneal_strategy", Symbol("cos")),
    ("schedule", "reduce_on_plateau", "mode", Symbol("min")),
    ("schedule", "reduce_on_plateau", "factor", 0.1),
    ("schedule", "reduce_on_plateau", "patience", 10),
    ("schedule", "reduce_on_plateau", "threshold", 1e-4),
    ("schedule", "reduce_on_plateau", "threshold_mode", Symbol("rel")),
    ("schedule", "reduce_on_plateau", "cooldown", 0),
    ("schedule", "reduce_on_plateau", "min_lr", 0.0),
    ("schedule", "exponential", "warmup", Quantity(0, "steps")),
    ("schedule", "warmup_cosine", "decay_steps", None),
    ("clipper", "adaptive", "eps", 1e-3),
    ("loss", "huber", "delta", 1.0),
    ("loss", "cross_entropy", "label_smoothing", 0.0),
    ("metric", "top_k", "k", 5),
    ("metric", "f1", "average", Symbol("macro")),
    ("search", "random", "trials", 20),
    ("search", "best_ball", "interval", Quantity(1, "epochs")),
    ("normalizer", "zca", "eps", 1e-5),
    ("augmentation", "random_crop", "padding", 4),
    ("augmentation", "random_flip", "direction", Symbol("horizontal")),
]


@pytest.mark.parametrize(("kind", "name", "arg", "value"), REFERENCE_DEFAULTS)
def test_reference_default(kind: str, name: str, arg: str, value: Any) -> None:
    entry = REGISTRIES[kind].lookup(name)
    args = _bind(entry, REQUIRED_VALUES.get(f"{kind}:{name}", {}))
    got = getattr(args, arg)
    assert got == value and type(got) is type(value)


# (kind, entry, given arguments, argument the problem points at)
REFUSED = [
    ("optimizer", "sgd", {"nesterov": True}, "nesterov"),
    ("optimizer", "nesterov", {"dampening": 0.1}, "nesterov"),
    ("schedule", "multistep", {"milestones": ListVal((200, 100))}, "milestones"),
    (
        "schedule",
        "piecewise_constant",
        {"boundaries": ListVal((100, 200)), "values": ListVal((0.1, 0.01))},
        "values",
    ),
    ("schedule", "step", {"step_size": 0}, "step_size"),
    ("schedule", "warmup_cosine", {"warmup": 100, "decay_steps": 0}, "decay_steps"),
    ("schedule", "reduce_on_plateau", {"monitor": Sym("val_accuracy")}, "mode"),
    ("dataset", "images", {"dir": "x/", "size": ListVal((32, 32, 3))}, "size"),
    ("distribution", "uniform", {"low": 1.0, "high": 0.5}, "high"),
    ("distribution", "loguniform", {"low": 1e-2, "high": 1e-2}, "high"),
    ("distribution", "int_uniform", {"low": 4, "high": 2}, "high"),
    ("objective", "minimize", {"metric": Sym("val_accuracy")}, "metric"),
    ("objective", "maximize", {"metric": Sym("val_loss")}, "metric"),
]


@pytest.mark.parametrize(("kind", "name", "given", "at"), REFUSED)
def test_validate_refuses(kind: str, name: str, given: dict[str, Any], at: str) -> None:
    entry = REGISTRIES[kind].lookup(name)
    with pytest.raises(Problem) as exc:
        _bind(entry, {**REQUIRED_VALUES.get(f"{kind}:{name}", {}), **given})
    assert exc.value.arg == at


# (kind, entry, given arguments): values outside an argument's range are a value error.
OUT_OF_RANGE = [
    ("optimizer", "adam", {"b1": 1.0}),
    ("optimizer", "adam", {"lr": 0.0}),
    ("optimizer", "adam", {"eps": 0.0}),
    ("optimizer", "sgd", {"weight_decay": -1e-4}),
    ("optimizer", "ftrl", {"lr_power": 0.5}),
    ("schedule", "reduce_on_plateau", {"factor": 1.0}),
    ("schedule", "one_cycle", {"max_lr": 0.1, "total": 1000, "pct_start": 0.0}),
    ("loss", "cross_entropy", {"label_smoothing": 1.5}),
    ("metric", "top_k", {"k": 0}),
    ("dataset", "builtin", {"name": Sym("mnist")}),
    ("augmentation", "random_flip", {"direction": Sym("diagonal")}),
    ("search", "random", {"trials": 0}),
]


@pytest.mark.parametrize(("kind", "name", "given"), OUT_OF_RANGE)
def test_out_of_range(kind: str, name: str, given: dict[str, Any]) -> None:
    entry = REGISTRIES[kind].lookup(name)
    with pytest.raises(DiagnosticError) as exc:
        _bind(entry, given)
    assert exc.value.diagnostic.code == E_VALUE


def test_choice_takes_its_values_positionally() -> None:
    args = _bind(sweep.DISTRIBUTIONS.lookup("choice"), {"values": (32, "relu", Sym("gelu"))})
    assert args.values == (32, "relu", Symbol("gelu"))


def test_duration_units_survive() -> None:
    args = _bind(schedules.SCHEDULES.lookup("cosine"), {"decay_steps": Quantity(20, "epochs")})
    assert args.decay_steps == Quantity(20, "epochs")
    assert args.warmup == Quantity(0, "steps")


@pytest.mark.parametrize(
    ("kind", "alias", "name"),
    [
        ("schedule", "sgdr", "cosine_restarts"),
        ("distribution", "randint", "int_uniform"),
        ("optimizer", "nag", "nesterov"),
        ("loss", "bce", "binary_cross_entropy"),
        ("clipper", "clip_by_global_norm", "global_norm"),
        ("search", "tpe", "bayes"),
    ],
)
def test_alias(kind: str, alias: str, name: str) -> None:
    assert REGISTRIES[kind].lookup(alias).name == name


def test_derived_optimizers_share_the_base_rule() -> None:
    sgd = optimizers.OPTIMIZERS.lookup("sgd")
    for name in ("momentum", "nesterov"):
        e = optimizers.OPTIMIZERS.lookup(name)
        assert e.formula == sgd.formula and e.validate is sgd.validate
        assert [a.name for a in e.args] == [a.name for a in sgd.args]
    adam = optimizers.OPTIMIZERS.lookup("adam")
    assert optimizers.OPTIMIZERS.lookup("amsgrad").formula == adam.formula
    assert adam.info["weight_decay"] == "coupled"
    assert optimizers.OPTIMIZERS.lookup("adamw").info["weight_decay"] == "decoupled"


def test_every_optimizer_takes_lr() -> None:
    for e in optimizers.OPTIMIZERS:
        assert e.get_arg("lr") is not None, e.name


def test_warmup_on_every_decaying_schedule() -> None:
    without = {"constant", "one_cycle"}  # reduce_on_plateau warms up too (issue 14, class 6)
    for e in schedules.SCHEDULES:
        assert (e.get_arg("warmup") is None) == (e.name in without), e.name


def test_losses_and_metrics_declare_task_and_mode() -> None:
    for e in losses.LOSSES:
        assert e.task is not None and (e.task.one or e.task.several), e.name
        for units in (1, 10):  # a refused width says why
            assert e.task.of(units) in TASKS or e.task.refusal(units), (e.name, units)
    for e in metrics.METRICS:
        assert e.info["mode"] in ("min", "max"), e.name
        assert e.needs.tasks and set(e.needs.tasks) <= set(TASKS), e.name
    assert set(metrics.DEFAULT_METRICS) == set(TASKS)
    for task, words in metrics.DEFAULT_METRICS.items():  # every default fits its task
        assert all(metrics.METRICS.lookup(w).needs.fits(task) for w in words), task


def test_monitors() -> None:
    names = ("val_loss", "val_accuracy", "val_top_k", "val_f1", "val_mse", "val_mae", "val_r2")
    assert set(names) | {"loss", "accuracy"} <= set(metrics.MONITORS)
    assert len(set(metrics.MONITORS)) == len(metrics.MONITORS)
    assert metrics.monitor_mode("val_loss") == "min"
    assert metrics.monitor_mode("val_r2") == "max"
    assert metrics.monitor_mode("mae") == "min"


def test_builtin_data_table() -> None:
    builtin = data.DATASETS.lookup("builtin")
    assert builtin.get_arg("name").type.choices == tuple(data.BUILTIN_DATA)
    for name, d in data.BUILTIN_DATA.items():
        assert isinstance(d["shape"], tuple) and all(isinstance(n, int) for n in d["shape"])
        assert (d["classes"] is None) == (d["task"] == "regression"), name
        assert d["samples"] > 0 and d["source"] and d["doc"], name
    assert data.BUILTIN_DATA["digits"]["shape"] == (64,)
    assert data.BUILTIN_DATA["sequence"]["shape"] == (20, 1)


def test_augmentations_declare_their_input() -> None:
    for e in data.AUGMENTATIONS:
        assert e.needs.input in ("image", "any"), e.name
    assert {e.name for e in data.AUGMENTATIONS if e.needs.input == "any"} == {"noise"}


def test_front_end_imports_no_jax() -> None:
    mods = ", ".join(
        f"dnn.compiler.registry.{m}"
        for m in ("optimizers", "schedules", "clippers", "losses", "metrics", "data", "sweep")
    )
    code = (
        f"import sys, {mods}\n"
        "bad = [m for m in ('jax', 'flax', 'optax') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
