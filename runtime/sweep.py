"""`dnn sweep`: the spec's `sweep` section run on Optuna.

Optuna is the engine: its samplers (grid, random, TPE), its study in an RDB storage (SQLite in
the sweep folder by default, any SQLAlchemy URL to share a study between processes or
machines), its heartbeat (a trial whose process died is failed after a grace period, so a
SIGKILL loses at most the running trials). What is ours: the search space read from the spec,
one ordinary run folder per trial (`dnn train`'s, so `dnn eval`, `dnn runs` work on it), a trial
that fails recorded with its reason while the sweep goes on, and the report (runtime/
sweep_report.py).

The sweep folder:

study.db        Optuna's SQLite storage (unless --storage names another)
trials/NNNN/    one run folder per trial
best.dnn        the spec with the best trial's values written in (`dnn fmt`'s form)
results.csv     one row per trial: state, objective, values, epochs, time, run, error
plots/          objective per trial (and, with enough trials, parallel coordinates and the
                importance of each hyperparameter)
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnn.compiler.diagnostics import E_PBT, E_SECTION, E_VMAP, Diagnostic, Span, SpecError
from dnn.compiler.diff import brief
from dnn.compiler.driver import load
from dnn.compiler.ir import Program, SweepAxis
from dnn.compiler.registry.core import implements
from dnn.compiler.registry.sweep import PRUNERS
from dnn.compiler.values import fmt_number

from .train import TrainingError

STUDY_DB = "study.db"
HEARTBEAT_S, GRACE_S = 10, 30  # a trial without a heartbeat for 30 s is failed (died)
INSTALL_HINT = "install it with `pip install 'dnn[sweep]'` (or `pip install optuna`)"


def optuna_module() -> Any:
    """Optuna, or a `TrainingError` that says how to install it."""
    try:
        import optuna
    except ImportError:
        raise TrainingError(
            "`dnn sweep` needs Optuna, which is not installed", INSTALL_HINT
        ) from None
    import warnings

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the sweep prints its own lines
    # the heartbeat (a dead process's trial failed after a grace period) is marked experimental
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# ------------------------------------------------------------------ the search space


@dataclass(frozen=True)
class Axis:
    """One swept value: its `--set` name, its Optuna distribution, the spec text of values."""

    name: str
    kind: str  # the distribution word: choice, uniform, loguniform, int_uniform
    choices: tuple[Any, ...]  # choice: numbers as they are, other values as spec text
    low: float = 0.0
    high: float = 0.0
    span: Span | None = None

    @staticmethod
    def of(axis: SweepAxis) -> Axis:
        d = axis.distribution
        name = ".".join(axis.path)
        if d.name == "choice":
            values = tuple(d.arg("values"))
            plain = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            return Axis(
                name, "choice", values if plain else tuple(brief(v) for v in values), span=axis.span
            )
        return Axis(name, d.name, (), d.arg("low"), d.arg("high"), axis.span)

    def suggest(self, trial: Any) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int_uniform":
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return trial.suggest_float(
            self.name, float(self.low), float(self.high), log=self.kind == "loguniform"
        )

    def grid(self) -> list[Any]:
        if self.kind == "int_uniform":
            return list(range(int(self.low), int(self.high) + 1))
        return list(self.choices)

    def probes(self) -> list[Any]:
        """The values that stand for the whole range when the spec is checked with them."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int_uniform":
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]


def setting(name: str, value: Any) -> str:
    """A `--set` override for a swept value."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{name}={value}"
    return f"{name}={fmt_number(value)}"


def axes_of(program: Program) -> list[Axis]:
    return [Axis.of(a) for a in program.sweep_axes]


def check_values(path: str, sets: list[str], axes: list[Axis]) -> None:
    """Every choice, and both ends of every range, must make a spec that checks: a value the
    field refuses is reported at the swept line, before any trial runs."""
    for axis in axes:
        for value in axis.probes():
            try:
                load(path, [*sets, setting(axis.name, value)])
            except SpecError as e:
                first = next(d for d in e.diagnostics if d.severity == "error")
                raise SpecError(
                    [
                        Diagnostic(
                            E_SECTION,
                            f"`{axis.name} = {value}` makes the spec wrong: {first.message}",
                            axis.span or first.span,
                            first.hint or "search only values the field accepts",
                        )
                    ],
                    e.sources,
                ) from None


def trial_budget(program: Program, axes: list[Axis], asked: int | None) -> int:
    method = program.sweep.method if program.sweep is not None else None
    if method is not None and method.name == "grid":
        points = math.prod(len(a.grid()) for a in axes)
        return min(points, asked) if asked else points
    if method is not None and method.name == "best_ball":  # a trial per member and round
        from .sweep_pbt import rounds_of

        return int(method.arg("population")) * rounds_of(program)[1]
    return asked or int(method.arg("trials") if method is not None else 20)


def sampler(optuna: Any, program: Program, axes: list[Axis], salt: tuple[int, ...] = ()) -> Any:
    """Optuna's sampler for the spec's method, seeded with `train.seed`; `salt` (a process id
    and the trials done) gives a resumed or shared sweep's processes their own draws: with the
    seed alone, each would draw the first sweep's values again."""
    assert program.sweep is not None
    name, seed = program.sweep.method.name, program.train.seed
    if salt:
        import numpy as np

        seed = int(np.random.SeedSequence([seed, *salt]).generate_state(1)[0])
    if name == "grid":
        return optuna.samplers.GridSampler({a.name: a.grid() for a in axes}, seed=seed)
    if name == "bayes":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random" and program.sweep.method.arg("rounds") > 1:
        from .sweep_tighten import Tightening

        method = program.sweep.method
        per_round = -(-trial_budget(program, axes, None) // method.arg("rounds"))
        direction = objective_of(program)[1]
        return Tightening(
            axes, per_round, method.arg("rounds"), method.arg("keep"), direction, seed
        )
    if name in ("random", "best_ball"):  # best_ball draws its population itself
        return optuna.samplers.RandomSampler(seed=seed)
    raise SpecError(
        [
            Diagnostic(
                E_SECTION,
                f"`dnn sweep` does not run `{name}` yet",
                program.sweep.span_of("method"),
                "use `grid`, `random`, `bayes` or `best_ball`",
            )
        ],
        program.sources,
    )


# ------------------------------------------------------------------ pruners


def pruner(optuna: Any, program: Program) -> Any:
    """Optuna's pruner for the spec's `pruner` (`none`: Optuna's NopPruner)."""
    assert program.sweep is not None
    ref = program.sweep.pruner
    make = PRUNERS.implementation(ref.name)
    return make(optuna, dict(ref.args), program.train.epochs)


@implements("pruner", "none")
def _no_pruner(optuna: Any, a: dict[str, Any], epochs: int) -> Any:
    return optuna.pruners.NopPruner()


@implements("pruner", "median")
def _median(optuna: Any, a: dict[str, Any], epochs: int) -> Any:
    # Optuna prunes from step `n_warmup_steps` on; epochs are reported as steps 1, 2, ..
    return optuna.pruners.MedianPruner(n_startup_trials=a["startup"], n_warmup_steps=a["warmup"])


@implements("pruner", "successive_halving")
def _successive_halving(optuna: Any, a: dict[str, Any], epochs: int) -> Any:
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=a["min_epochs"], reduction_factor=a["reduction"], min_early_stopping_rate=0
    )


@implements("pruner", "hyperband")
def _hyperband(optuna: Any, a: dict[str, Any], epochs: int) -> Any:
    return optuna.pruners.HyperbandPruner(
        min_resource=a["min_epochs"],
        max_resource=max(epochs, a["min_epochs"]),
        reduction_factor=a["reduction"],
    )


def epoch_value(record: dict[str, Any], metric: str) -> float | None:
    """The objective in an epoch's record (`val_top_k` may be recorded as `val_top_k_3`)."""
    if metric in record:
        return float(record[metric])
    for key, v in record.items():
        if key.startswith(f"{metric}_") and isinstance(v, int | float):
            return float(v)
    return None


# ------------------------------------------------------------------ the objective


def objective_of(program: Program) -> tuple[str, str]:
    """(metric, direction): `val_loss`, `minimize`."""
    assert program.sweep is not None
    obj = program.sweep.objective
    return str(obj.arg("metric")), obj.name


def objective_value(program: Program, result: dict[str, Any], metric: str) -> float:
    """The objective read from a run's result (the final weights: the best epoch's when early
    stopping restores them)."""
    split = "val" if metric.startswith("val_") else "train"
    word = metric.removeprefix("val_")
    values = result.get(split)
    if values is not None:
        if word in values:
            return float(values[word])
        for key, v in values.items():  # `top_k` is reported as `top_k_3`
            if key.startswith(f"{word}_") and isinstance(v, int | float):
                return float(v)
    assert program.sweep is not None
    why = (
        "the validation split is empty"
        if split == "val" and values is None
        else f"`train.metrics` does not compute `{word}`"
    )
    raise SpecError(
        [
            Diagnostic(
                E_SECTION,
                f"the objective `{metric}` is not measured: {why}",
                program.sweep.span_of("objective") or program.sweep.span_of("method"),
                "give `split` a `val` share, or add the metric to `train.metrics`",
            )
        ],
        program.sources,
    )


class TrialFailed(Exception):
    """A trial that could not finish (diverged, a value the run refused): recorded, skipped."""


# ------------------------------------------------------------------ the storage


def storage_url(folder: Path, given: str | None) -> str:
    return given or f"sqlite:///{(folder / STUDY_DB).resolve()}"


def check_sqlite(url: str) -> None:
    """A SQLite file named by the URL must be an Optuna study (or empty): Optuna would add its
    tables to a foreign database, and a damaged one fails deep inside SQLAlchemy."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    if not path.is_file() or path.stat().st_size == 0:
        return
    hint = "give the sweep another --out (or --storage), or move the file away"
    where = str(path)
    with path.open("rb") as f:
        head = f.read(16)
    if head != b"SQLite format 3\x00":
        raise TrainingError(
            "not an SQLite database (damaged, or another kind of file)", hint, where
        )
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        raise TrainingError(f"a damaged SQLite database ({e})", hint, where) from None
    if tables and not {"studies", "trials", "version_info"} <= tables:
        raise TrainingError("an SQLite database, but not an Optuna study", hint, where)


def open_study(
    optuna: Any, url: str, name: str, direction: str, sampler_: Any, resume: bool
) -> Any:
    """Create the study, or with `resume` load it (it must exist)."""
    check_sqlite(url)
    storage = optuna.storages.RDBStorage(
        url,
        engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
        heartbeat_interval=HEARTBEAT_S,
        grace_period=GRACE_S,
    )
    exists = name in [s.study_name for s in storage.get_all_studies()]
    if exists and not resume:
        raise TrainingError(
            f"the study `{name}` already exists in {url}",
            "continue it with --resume, or give another --out (or --study)",
        )
    if not exists and resume:
        raise TrainingError(
            f"nothing to resume: no study `{name}` in {url}", "run without --resume to start it"
        )
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction=direction,
        sampler=sampler_,
        load_if_exists=True,
    )


def spec_digest(program: Program) -> str:
    """A fingerprint of the spec as swept (overrides applied): a resumed sweep must match."""
    from .rundir import spec_text

    return hashlib.sha256(spec_text(program).encode()).hexdigest()[:16]


def counted(optuna: Any, trial: Any) -> bool:
    """Trials that use up the budget: finished, pruned, or failed for a reason of their own
    (not those the heartbeat failed because their process died: they are run again)."""
    state = optuna.trial.TrialState
    if trial.state in (state.COMPLETE, state.PRUNED):
        return True
    return bool(trial.state == state.FAIL and "error" in trial.user_attrs)


def done(optuna: Any, study: Any) -> int:
    return sum(counted(optuna, t) for t in study.get_trials(deepcopy=False))


# ------------------------------------------------------------------ the loop


@dataclass
class Sweep:
    """One process's part in a sweep: which spec, where, with what overrides."""

    path: str
    folder: Path
    sets: list[str]
    program: Program
    axes: list[Axis]
    total: int
    metric: str
    direction: str
    quiet: bool = False

    def objective(self, trial: Any) -> float:
        from .fit import train

        values = {a.name: a.suggest(trial) for a in self.axes}
        run = self.folder / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run", str(run))
        sets = [*self.sets, *(setting(k, v) for k, v in values.items())]
        t0 = time.perf_counter()
        round_ = getattr(trial.study.sampler, "round_of", lambda _n: None)(trial.number)
        if round_ is not None:
            trial.set_user_attr("round", round_)
            if trial.number % trial.study.sampler.per_round == 0 and not self.quiet:
                space = trial.study.sampler.space_for(trial.study, trial.number)
                print(f"round {round_ + 1}: {space.describe(self.axes)}", file=sys.stderr)

        def report(record: dict[str, Any]) -> bool:
            """Tell the pruner the epoch's objective; True stops the run (pruned)."""
            value = epoch_value(record, self.metric)
            if value is None or not math.isfinite(value):
                return False
            trial.report(value, int(record["epoch"]))
            return bool(trial.should_prune())

        try:
            program = load(self.path, sets)
            result = train(program, run, mode="quiet", argv=sys.argv, on_epoch=report)
            if not result.get("finished", True):
                epochs = int(result["stopped_after"])
                trial.set_user_attr("epochs", epochs)
                trial.set_user_attr("wall_s", round(time.perf_counter() - t0, 3))
                self.say(trial.number, values, f"pruned after epoch {epochs}", t0)
                raise optuna_module().TrialPruned()
            value = objective_value(program, result, self.metric)
        except (TrainingError, SpecError) as e:
            if isinstance(e, SpecError) and "is not measured" in str(e.diagnostics[0].message):
                raise
            why = str(e) if isinstance(e, TrainingError) else e.diagnostics[0].message
            trial.set_user_attr("error", why)
            self.say(trial.number, values, f"failed: {why}", t0)
            raise TrialFailed(why) from None
        trial.set_user_attr("epochs", result["epochs_run"])
        trial.set_user_attr("wall_s", round(result["wall_time_s"], 3))
        if not math.isfinite(value):
            why = f"the objective `{self.metric}` is not finite ({value})"
            trial.set_user_attr("error", why)
            self.say(trial.number, values, f"failed: {why}", t0)
            raise TrialFailed(why)
        self.say(trial.number, values, f"{self.metric} {value:.4f}", t0)
        return value

    def say(self, number: int, values: dict[str, Any], what: str, t0: float) -> None:
        if self.quiet:
            return
        seconds = time.perf_counter() - t0
        shown = "  ".join(f"{k}={_short(v)}" for k, v in values.items())
        print(f"trial {number:>3}  {shown}  {what}  ({seconds:.1f} s)", file=sys.stderr, flush=True)

    def run(self, study: Any, optuna: Any) -> None:
        left = self.total - done(optuna, study)

        def stop_at_budget(study: Any, _trial: Any) -> None:
            if done(optuna, study) >= self.total:
                study.stop()

        if left > 0:
            study.optimize(
                self.objective,
                n_trials=left,
                catch=(TrialFailed,),
                callbacks=[stop_at_budget],
                gc_after_trial=False,
            )


# ------------------------------------------------------------------ trials as one program


def vmap_error(axis: Axis | None, program: Program, message: str, pbt: bool = False) -> SpecError:
    span = (axis.span if axis is not None else None) or program.sweep.span_of("method")  # type: ignore[union-attr]
    if pbt:
        code, head = E_PBT, "`best_ball` trains its population as one program"
        hint = "search only the optimizer's and schedule's numbers and `train.seed` with it"
    else:
        code, head = E_VMAP, "`--vmap` cannot train these trials as one program"
        hint = (
            "sweep only the optimizer's and schedule's numbers and `train.seed` with --vmap, "
            "or leave --vmap out (one process per trial)"
        )
    return SpecError([Diagnostic(code, f"{head}: {message}", span, hint)], program.sources)


def check_pbt(path: str, sets: list[str], program: Program, axes: list[Axis]) -> None:
    """Refuse a population search over values it cannot explore, before anything runs."""
    from .sweep_pbt import unsearchable

    axis = unsearchable(axes)
    if axis is not None:
        raise vmap_error(
            axis,
            program,
            f"`{axis.name}` is not a number of the optimizer or schedule, nor the seed",
            pbt=True,
        )
    try:
        check_vmap(path, sets, program, axes)
    except SpecError as e:
        d = e.diagnostics[0]
        why = d.message.split(": ", 1)[1]
        axis = next((a for a in axes if a.span == d.span), None)
        raise vmap_error(axis, program, why, pbt=True) from None


def check_vmap(
    path: str, sets: list[str], program: Program, axes: list[Axis]
) -> tuple[tuple[str, str], ...]:
    """Refuse `--vmap` before any trial runs where the trials cannot share a program: a run
    with per-run state, or a swept value (either end of its range, every choice) that changes
    more than the optimizer's and schedule's numbers and the seed. Returns the (field, arg)
    numbers the trials differ in: a group's program takes them as data."""
    from .sweep_vmap import difference, unsupported

    why = unsupported(program)
    if why is not None:
        raise vmap_error(None, program, why)
    if program.sweep is not None and program.sweep.pruner.name != "none":
        raise vmap_error(None, program, "a pruner stops trials one by one")
    from .sweep_vmap import lift

    keys: set[tuple[str, str]] = set()
    for axis in axes:
        for value in axis.probes():
            other = load(path, [*sets, setting(axis.name, value)])
            why = difference(program, other)
            if why is not None:
                raise vmap_error(axis, program, f"`{axis.name} = {value}`: {why}")
            lifted = lift([program, other])
            if culprit(program, lifted) is not None:
                raise vmap_error(
                    axis,
                    program,
                    f"the lowering of `{program.train.optimizer.name}` decides on "
                    f"`{axis.name}`'s value (`{axis.name} = {value}` against the spec's), so "
                    "the trials differ in more than numbers",
                )
            keys.update(lifted.values)
    return tuple(sorted(keys))


def _heartbeats(storage: Any, trial_ids: list[int]) -> Any:
    """A thread recording the trials' heartbeats while a group trains (`study.optimize` does
    this for one trial), so other processes do not fail them as dead."""
    import threading

    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            for i in trial_ids:
                storage.record_heartbeat(i)

    for i in trial_ids:
        storage.record_heartbeat(i)
    thread = threading.Thread(target=beat, daemon=True, name="dnn-heartbeat")
    thread.start()
    return stop


def run_vmapped(
    self: Sweep,
    study: Any,
    optuna: Any,
    k: int,
    keys: tuple[tuple[str, str], ...],
    ahead: Any = None,
    started: Any = None,
    most: int | None = None,
) -> None:
    """The sweep's trials asked K at a time and trained as one vmapped program each: the
    program of a group of K, compiled once (`ahead`: on a side thread, begun before the
    study was opened) serves every group of K; the numbers in `keys` are its data; `most`:
    lanes at most (runtime/sweep_vmap.py)."""
    import jax

    from .sweep_vmap import compile_ahead, lift, train_group

    state = optuna.trial.TrialState
    ready: dict[int, Any] = {}
    while (left := self.total - done(optuna, study)) > 0:
        if ahead is None or ahead[0] != min(k, left):
            ahead = (min(k, left), compile_ahead(self.program, keys, min(k, left), most=most))
        with warnings.catch_warnings():  # the heartbeat is ours here (see _heartbeats)
            warnings.simplefilter("ignore", UserWarning)
            trials = [study.ask() for _ in range(min(k, left))]
        values = [{a.name: a.suggest(t) for a in self.axes} for t in trials]
        programs, runs = [], []
        for t, v in zip(trials, values, strict=True):
            run = self.folder / "trials" / f"{t.number:04d}"
            t.set_user_attr("run", str(run))
            t.set_user_attr("group", trials[0].number)
            runs.append(run)
            programs.append(load(self.path, [*self.sets, *(setting(n, x) for n, x in v.items())]))
        t0 = time.perf_counter()
        beat = _heartbeats(study._storage, [t._trial_id for t in trials])
        try:
            group = ready.get(len(trials)) or ahead[1].result()
            ready[len(trials)] = group
            results = train_group(programs, runs, sys.argv, group, started)
            started = None
        except jax.errors.JAXTypeError:  # a lowering that branches on a swept number
            for t in trials:
                _tell(study, t, state=state.FAIL)
            key = culprit(programs[0], lift(programs))
            name = ".".join(("train", *key)) if key else None
            axis = next((a for a in self.axes if a.name == name), None)
            what = f"`{name}`" if name else "a swept number"
            raise vmap_error(
                axis,
                self.program,
                f"the lowering of `{self.program.train.optimizer.name}` decides on {what}'s "
                "value (0 or not, say), so its trials differ in more than numbers",
            ) from None
        finally:
            beat.set()
        wall = round(time.perf_counter() - t0, 3)
        for t, v, result in zip(trials, values, results, strict=True):
            if isinstance(result, TrainingError):
                t.set_user_attr("error", str(result))
                _tell(study, t, state=state.FAIL)
                self.say(t.number, v, f"failed: {result}", t0)
                continue
            t.set_user_attr("epochs", result["epochs_run"])
            t.set_user_attr("wall_s", wall)
            value = objective_value(self.program, result, self.metric)
            if not math.isfinite(value):
                why = f"the objective `{self.metric}` is not finite ({value})"
                t.set_user_attr("error", why)
                _tell(study, t, state=state.FAIL)
                self.say(t.number, v, f"failed: {why}", t0)
                continue
            _tell(study, t, value)
            self.say(t.number, v, f"{self.metric} {value:.4f} (group of {len(trials)})", t0)


def _tell(study: Any, trial: Any, *args: Any, **kwargs: Any) -> None:
    """`study.tell` outside `study.optimize`: Optuna's grid sampler calls `study.stop()` when
    the grid is used up, which raises there; the trial's state is stored before (Optuna
    writes it in a `finally`), and the loop stops on the budget anyway."""
    try:
        study.tell(trial, *args, **kwargs)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise


def culprit(program: Program, lifted: Any) -> tuple[str, str] | None:
    """The lifted value the optimizer's lowering cannot take traced (it branches on it)."""
    import jax
    import jax.numpy as jnp
    from dnn.compiler.lower_optax import lower_train

    from .sweep_vmap import with_values

    params = {"w": jnp.zeros((2,))}
    for key in lifted.values:

        def build(v: Any, key: tuple[str, str] = key) -> Any:
            tx = lower_train(with_values(program, {key: v}), 1)
            state = tx.init(params)
            return tx.update(params, state, params)

        try:
            jax.eval_shape(build, jnp.float32(1.0))
        except jax.errors.JAXTypeError:
            return key
    return None


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
