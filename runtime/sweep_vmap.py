"""Trials as one program: K trials whose swept values change no shape, trained as one vmapped
XLA program (`dnn sweep --vmap K`), as `train.ensemble` trains its members.

What may differ between the trials of a group: the optimizer's numbers (`lr`, `weight_decay`,
`momentum`, `b1`, ...), the schedule's numbers (not its durations) and `train.seed`. Inside
the vmapped step each member builds its own Optax chain from its own values (traced numbers
where the spec had constants), so a member computes what its trial run alone computes, to
float rounding; its batches and dropout masks come from its own seed as in a run alone. What
a group refuses, with the reason (E0609 at the swept line): a value that changes the model
(a width, a dropout rate: Flax takes those as static), the data, or any other train field; an
optimizer whose lowering branches on a swept number (`momentum = 0` against `0.9`); and the
runs that keep per-run state between epochs outside the weights: `reduce_on_plateau`,
pretraining, `init_from`, health checks, several devices, an ensemble.

A member's numbers and seed are data in the group's state, not constants of its programs, so
the programs of a group of K are compiled once per sweep, on a side thread begun before the
study is opened (`compile_ahead`), and every later group of K reuses them.

Each member keeps its own history, early stopping, best weights and final weights; the group
trains until every member has stopped (a stopped member's later updates are computed and
dropped). Each trial gets an ordinary run folder (spec, hparams, metrics.jsonl, result.json,
the final checkpoint and the best one, plots), so `dnn eval` and `dnn runs` work on it; a
group is not resumable mid-way (a killed group's trials are run again).
"""

from __future__ import annotations

import copy
import math
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from dnn.compiler.ir import Config, Program
from dnn.compiler.lower_optax import lower_train
from dnn.compiler.values import Quantity, Ref

from . import checkpoint, fit, pipeline, rundir
from .progress import Display
from .train import (
    EVAL_BATCH,
    ONE_OFF,
    Engine,
    Stopper,
    TrainingError,
    device_data,
    train_report,
)

LIFTED = ("optimizer", "schedule")  # train fields whose numeric arguments may differ


# ------------------------------------------------------------------ which trials group


@dataclass(frozen=True)
class Lift:
    """The values that differ between a group's trials: (field, arg) -> K numbers; seeds."""

    values: dict[tuple[str, str], np.ndarray]
    seeds: np.ndarray


def _numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _strip(train: Config, base: Config) -> Config:
    """`train` with the lifted numbers and the seed taken from `base`, to compare the rest."""
    fields = dict(train.fields)
    ref = dict(base.fields)
    for name in LIFTED:
        mine, theirs = fields[name], ref[name]
        if isinstance(mine, Ref) and isinstance(theirs, Ref) and mine.name == theirs.name:
            args = tuple((k, dict(theirs.args)[k] if _numeric(v) else v) for k, v in mine.args)
            fields[name] = replace(mine, args=args)
    fields["seed"] = ref["seed"]
    return replace(train, fields=tuple(fields.items()))


def difference(base: Program, other: Program) -> str | None:
    """Why `other` cannot train in one program with `base` (None: it can)."""
    if other.model != base.model:
        return "it changes the model (a shape, or a layer's setting Flax takes as static)"
    if other.data != base.data:
        return "it changes the data"
    if _strip(other.train, base.train) != base.train:
        a, b = dict(base.train.fields), dict(other.train.fields)
        changed = [k for k in a if a[k] != b[k] and k not in (*LIFTED, "seed")]
        if changed:
            return f"it changes `train.{changed[0]}`"
        return "it changes the optimizer's or schedule's word, or a duration"
    return None


def unsupported(program: Program) -> str | None:
    """Why a spec's runs cannot train as one group whatever the values (None: they can)."""
    t = program.train
    checks = (
        (t.schedule.name == "reduce_on_plateau", "`reduce_on_plateau` keeps per-run state"),
        (t.pretrain is not None, "pretraining runs before the group"),
        (t.init_from is not None, "`init_from` loads weights per run"),
        (t.ensemble > 1, "an ensemble is already vmapped"),
        (str(t.devices) != "1", "a run on several devices"),
        (getattr(t, "health", None) is not None, "health checks"),
    )
    return next((why for bad, why in checks if bad), None)


def lift(programs: list[Program]) -> Lift:
    """The per-trial values of the lifted numbers (those that differ) and the seeds."""
    base = programs[0]
    values: dict[tuple[str, str], np.ndarray] = {}
    for name in LIFTED:
        ref = getattr(base.train, name)
        for k, v in ref.args:
            if not _numeric(v) or isinstance(v, Quantity):
                continue
            column = [dict(getattr(p.train, name).args)[k] for p in programs]
            if any(c != v for c in column):
                values[(name, k)] = np.asarray(column, np.float32)
    return Lift(values, np.asarray([p.train.seed for p in programs], np.int32))


def with_values(program: Program, values: dict[tuple[str, str], Any]) -> Program:
    """`program` with numbers (traced ones inside the step) in place of the lifted values."""
    fields = dict(program.train.fields)
    for name in LIFTED:
        ref = fields[name]
        mine = {k: v for (f, k), v in values.items() if f == name}
        if mine:
            fields[name] = replace(ref, args=tuple((k, mine.get(k, v)) for k, v in ref.args))
    return replace(program, train=replace(program.train, fields=tuple(fields.items())))


# ------------------------------------------------------------------ the engine


class GroupEngine(Engine):
    """An `Engine` over K trials: member k has its own seed and its own optimizer numbers.

    Both live in the group's state (`seed`, `hp`), not in the programs, so one compiled
    program serves every group of K trials of a sweep (`start` puts a new group's values in),
    and it can be compiled before the trials are drawn (`compile_ahead`)."""

    def __init__(self, program: Program, prepared: pipeline.Prepared, lifted: Lift):
        self.lifted = lifted
        self.seeds = _put(lifted.seeds)
        super().__init__(program, prepared, len(lifted.seeds), None)

    def start(self, lifted: Lift) -> Any:
        """The first state of a new group of as many trials, with the same lifted keys."""
        assert len(lifted.seeds) == self.members and set(lifted.values) == set(self.lifted.values)
        self.lifted, self.seeds = lifted, _put(lifted.seeds)
        return self._init_jit(self.seeds, {k: _put(v) for k, v in lifted.values.items()})

    def lane(self, lifted: Lift) -> tuple[GroupEngine, Any]:
        """A view of this engine over another group of as many trials, sharing its compiled
        programs (its own seeds and numbers are its state's), and that group's first state:
        lanes train side by side on threads (`train_group`)."""
        view = copy.copy(self)
        return view, view.start(lifted)

    def _keys(self, member: Any) -> Any:
        return jax.random.key(member)  # in a group, a member is named by its seed

    def _tx_of(self, hp: dict[tuple[str, str], Any]) -> Any:
        """A member's Optax chain, built in the trace from its (traced) numbers."""
        return lower_train(
            with_values(self.program, hp),
            max(1, self.steps_per_epoch // self.program.train.accumulate),
        )

    # A member's numbers live in its state (`hp`), so a population-based search can change
    # them between epochs without compiling again.

    def _init_member(self, seed: Any, hp: dict[tuple[str, str], Any]) -> dict[str, Any]:
        self.tx = self._tx_of(hp)
        return {**super()._init_one(seed), "hp": hp, "seed": seed}

    def _init_one(self, member: Any) -> dict[str, Any]:
        """The state's shape, for `Engine` (any numbers will do)."""
        return self._init_member(
            member, {k: jnp.zeros((), jnp.float32) for k in self.lifted.values}
        )

    def _train_one(self, st: Any, acc: Any, member: Any, x: Any, y: Any) -> Any:
        self.tx = self._tx_of(st["hp"])
        new, acc = super()._train_one(core(st), acc, st["seed"], x, y)
        return {**new, "hp": st["hp"], "seed": st["seed"]}, acc

    def _build_steps(self) -> None:
        super()._build_steps()
        ids = self.member_ids
        train_one = jax.vmap(self._train_one, in_axes=(0, 0, 0, 0, 0))

        def step(st: Any, acc: Any, xs: Any, ys: Any, order: Any, i: Any) -> Any:
            idx = order[:, i]  # each member's own batch
            return train_one(st, acc, ids, xs[idx], ys[idx])

        self.step = jax.jit(step, donate_argnums=(0, 1))

        def epoch(st: Any, acc: Any, xs: Any, ys: Any, order: Any, tail: Any) -> Any:
            def body(carry: Any, idx: Any) -> tuple[Any, None]:
                return train_one(*carry, ids, xs[idx], ys[idx]), None

            st, acc = jax.lax.scan(body, (st, acc), jnp.swapaxes(order, 0, 1))[0]
            if tail is not None:
                st, acc = train_one(st, acc, ids, xs[tail[:, 0]], ys[tail[:, 0]])
            return st, acc

        self.scan_epoch = jax.jit(epoch, donate_argnums=(0, 1))
        init = jax.jit(jax.vmap(self._init_member), compiler_options=ONE_OFF)
        self.init = lambda: init(self.seeds, {k: _put(v) for k, v in self.lifted.values.items()})
        self._init_jit = init
        self._order = jax.jit(
            lambda seeds, e, n: jax.vmap(lambda s: self._permute_seed(s, e, n))(seeds),
            static_argnums=(2,),
            compiler_options=ONE_OFF,
        )

        def evaluate(st: Any, acc: Any, x: Any, y: Any, mask: Any) -> Any:
            # each member on its own; no ensemble of the trials (an ensemble's `combine`)
            fwd = jax.vmap(lambda p, s: self._forward(p, s, x, False, jax.random.key(0))[0])
            out = fwd(st["params"], st["model_state"])
            return jax.vmap(self._eval_update, in_axes=(0, 0, None, None))(acc, out, y, mask)

        self.evaluate_members = jax.jit(evaluate, donate_argnums=(1,))

    def order(self, epoch: int, n: int) -> tuple[Any, Any]:
        full, tail = self._order(self.seeds, epoch, n)
        return full, (tail if self.tail else None)

    def _permute_seed(self, seed: Any, epoch: Any, n: int) -> tuple[Any, Any]:
        """`Engine._permute` with a member's seed: the batches its run alone would take."""
        data = self.program.data
        assert data is not None
        if not data.shuffle:
            perm = jnp.arange(n)
        else:
            key = jax.random.fold_in(jax.random.key(seed), epoch)
            perm = jax.random.permutation(jax.random.fold_in(key, 7), n)
        full = perm[: self.full * self.batch].reshape(self.full, self.batch)
        return full, perm[self.full * self.batch :][None]


# ------------------------------------------------------------------ evaluation


@dataclass(frozen=True)
class Split:
    """A split cut on the host into EVAL_BATCH-row batches (the last padded, `mask` marking
    real rows) and placed once: slicing and padding on the device would compile a program
    per shape, and slicing the members' results there one per member and epoch."""

    batches: tuple[tuple[Any, Any, Any], ...]  # (x, y, mask) per batch
    n: int


def eval_splits(prepared: pipeline.Prepared) -> dict[str, Split]:
    """Every non-empty split of `prepared`, cut for `evaluate`."""
    return {
        name: _cut(np.asarray(t.x), np.asarray(t.y))
        for name, t in prepared.splits.items()
        if len(t.y)
    }


def _cut(x: np.ndarray, y: np.ndarray) -> Split:
    n = len(y)
    nb = -(-n // EVAL_BATCH)
    mask = np.arange(nb * EVAL_BATCH) < n

    def pad(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.zeros((nb * EVAL_BATCH - n, *a.shape[1:]), a.dtype)])

    xs, ys = pad(x), pad(y)
    cut = [slice(i * EVAL_BATCH, (i + 1) * EVAL_BATCH) for i in range(nb)]
    batches = jax.device_put([(xs[c], ys[c], mask[c]) for c in cut])
    return Split(tuple(tuple(b) for b in batches), n)


def evaluate_members(engine: GroupEngine, st: Any, split: Split) -> list[dict[str, float]]:
    """Each member's loss and metrics on a whole split (eval mode), read back at once."""
    acc = engine.eval_acc()
    for x, y, mask in split.batches:
        acc = engine.evaluate_members(st, acc, x, y, mask)
    host = jax.device_get(acc)
    out = []
    for k in range(engine.members):
        a = jax.tree.map(lambda v, k=k: v[k], host)
        record = {"loss": float(a["loss"]) / max(float(a["count"]), 1.0)}
        record.update({key: float(v) for key, v in engine.metrics.finish(a["metrics"]).items()})
        out.append(record)
    return out


# ------------------------------------------------------------------ the loop


@dataclass
class Member:
    """One trial's bookkeeping in a group."""

    program: Program
    folder: Path
    stopper: Stopper | None
    monitor: str | None
    history: list[dict[str, Any]]
    best_value: float
    best_epoch: int = 0
    best: Any = None  # host copy of the best epoch's weights (checkpoint layout)
    final: Any = None  # host copy of the whole state when it stopped (checkpoint layout)
    done: bool = False
    error: str | None = None


def core(st: dict[str, Any]) -> dict[str, Any]:
    """A group state without the members' numbers and seeds: the state a run alone has."""
    return {k: v for k, v in st.items() if k not in ("hp", "seed")}


def _slice(engine: Engine, tree: Any, k: int) -> Any:
    """Member k's part of a group tree, on the host, in the checkpoint layout."""
    tree = core(tree)
    return jax.tree.map(lambda a: np.asarray(a[k]), jax.device_get(engine.to_disk(tree)))


def _members(result: dict[str, Any], k: int) -> list[dict[str, Any]]:
    """The per-member entries of a report (a group of one has none: the report is its own)."""
    return result["members"] if k > 1 else [result]


def _put(a: Any) -> Any:
    """A host array on the device as `jnp.asarray` puts it, without the small program
    `jnp.asarray` compiles for each new shape (about 20 ms each)."""
    return jax.device_put(np.asarray(a))


def _stack(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *a: _put(np.stack(a)), *trees)


def _weights(st: Any) -> dict[str, Any]:
    return {"params": st["params"], "model_state": st["model_state"]}


def _rates(st: Any, k: int) -> float:
    for path, leaf in jax.tree_util.tree_flatten_with_path(st["opt"])[0]:
        if path and str(getattr(path[-1], "key", "")) == "learning_rate":
            return float(np.asarray(leaf).reshape(-1)[k])
    return math.nan


@dataclass(frozen=True)
class Ready:
    """A group's engine over the prepared data, its programs compiled: what one group of K
    trials needs before its values are known, and every later group of K reuses."""

    engine: GroupEngine
    prepared: pipeline.Prepared
    train: tuple[Any, Any]  # the train split on the device
    splits: dict[str, Split]  # every split, cut for evaluation
    lanes: int = 1  # the group's trials in this many programs side by side (`lanes`)


def lift_as(programs: list[Program], keys: tuple[tuple[str, str], ...]) -> Lift:
    """The trials' values of `keys` (all the numbers a sweep's groups differ in) and seeds."""
    values = {
        key: np.asarray([dict(getattr(p.train, key[0]).args)[key[1]] for p in programs], np.float32)
        for key in keys
    }
    return Lift(values, np.asarray([p.train.seed for p in programs], np.int32))


def prepare_data(base: Program) -> pipeline.Prepared:
    """The group's data, or the refusal of a spec a group cannot train (streamed splits, a
    monitor without its split) at its line, before the sweep writes anything."""
    prepared = pipeline.prepare(base)
    pipeline.in_memory(base, prepared, "`dnn sweep --vmap`")
    fit._check_monitors(base, prepared)
    return prepared


def prepare_group(
    base: Program,
    keys: tuple[tuple[str, str], ...],
    k: int,
    prepared: pipeline.Prepared | None = None,
    lanes: int | None = None,
    most: int | None = None,
) -> Ready:
    """The data, the engine of K members lifting `keys` (of K / `lanes` members, the
    group's trials then training in that many lanes: `lanes` below when not given), and its
    compiled programs: the first state, an epoch and an evaluation, compiled before any
    trial's values are known."""
    fit.enable_compile_cache()
    prepared = prepared or prepare_data(base)
    lanes = lanes or _lanes(k, most)
    size = k // lanes
    zeros = Lift({key: np.zeros(size, np.float32) for key in keys}, np.zeros(size, np.int32))
    engine = GroupEngine(base, prepared, zeros)
    ready = Ready(engine, prepared, device_data(prepared, engine.place)["train"], {}, lanes)
    ready = replace(ready, splits=eval_splits(prepared))
    x, y = ready.train
    # traced here, one after the other (tracing holds the interpreter lock); the epoch (or its
    # steps) and the evaluation against the shapes the first state and the order will have,
    # so that none of the programs waits for another to compile, and none is traced later
    # (the lanes' threads share the engine's tracing state, `tx`: they only run programs)
    init = engine._init_jit.lower(engine.seeds, {k: _put(v) for k, v in zeros.values.items()})
    order = engine._order.lower(engine.seeds, 1, int(x.shape[0]))
    st, (full, tail) = _abstract(init.out_info), _abstract(order.out_info)
    tail = tail if engine.tail else None
    acc = engine.train_acc()
    lowered = []  # jit reuses these for calls of the same signature
    if engine.scanned and engine.full:  # the epoch as one program, its tail batch inside
        lowered.append(engine.scan_epoch.lower(st, acc, x, y, full, tail))
        tail = None
    elif engine.full:  # a step at a time (`fit._one_epoch`): `i` picks the batch
        lowered.append(engine.step.lower(st, acc, x, y, full, 0))
    lowered += [init, order]
    if tail is not None:  # the last, smaller batch
        lowered.append(engine.step.lower(st, acc, x, y, tail, 0))
    if "val" in ready.splits:
        batch = ready.splits["val"].batches[0]
        lowered.append(engine.evaluate_members.lower(st, engine.eval_acc(), *batch))
    # then compiled on two threads (XLA releases the lock): the epoch, the longest, on one;
    # the first state, the order and the evaluation, about as long together, on the other
    with ThreadPoolExecutor(2, thread_name_prefix="dnn-compile") as pool:
        first = pool.submit(lowered[0].compile)
        pool.submit(lambda: [program.compile() for program in lowered[1:]]).result()
        first.result()
    return ready


def _abstract(tree: Any) -> Any:
    """Shapes and dtypes only, as an uncommitted argument has them (a sharding would make jit
    compile again for the arrays the program is called with)."""
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, weak_type=s.weak_type), tree
    )


def _lanes(k: int, most: int | None = None) -> int:
    """How many programs a group of K trials trains in, side by side on threads: on a CPU,
    the most lanes of at least 2 trials each that divide K and the cores (or `most`, as
    `dnn sweep --lanes` or `--parallel` set it) do not outnumber.
    XLA runs a small vmapped program's operations one after the other on one core; two
    lanes of 4 digits-MLP trials train 40 epochs in about half the wall time of one
    program of 8, and with less CPU (docs/sweep.md). One lane on a GPU or TPU, where one
    device runs one program at a time."""
    if jax.default_backend() != "cpu":
        return 1
    fits = [n for n in range(1, (most or cores()) + 1) if k % n == 0 and k // n >= 2]
    return max(fits, default=1)


def cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its CPU affinity, bounded by a container's CPU quota
    (cgroup v2 `cpu.max`, v1 `cpu/cpu.cfs_quota_us` and `cpu.cfs_period_us`), which the
    affinity does not show."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for files in (("cpu.max",), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):
        try:
            quota, period = " ".join((cgroup / f).read_text() for f in files).split()[:2]
            if quota not in ("max", "-1") and int(period) > 0:
                n = min(n, max(1, math.ceil(int(quota) / int(period))))
        except (OSError, ValueError):
            continue
    return n


def compile_ahead(
    base: Program,
    keys: tuple[tuple[str, str], ...],
    k: int,
    prepared: pipeline.Prepared | None = None,
    most: int | None = None,
) -> Future[Ready]:
    """`prepare_group` on a side thread: XLA compiles (without the interpreter lock) while
    the sweep opens its study and draws the trials; `most`: lanes at most (`_lanes`). A
    daemon thread: a sweep refused in the meantime exits without waiting for it."""
    future: Future[Ready] = Future()

    def run() -> None:
        try:
            future.set_result(prepare_group(base, keys, k, prepared, most=most))
        except BaseException as e:  # raised where the sweep takes the result
            future.set_exception(e)

    threading.Thread(target=run, daemon=True, name="dnn-compile-group").start()
    return future


def train_group(
    programs: list[Program],
    folders: list[Path],
    argv: list[str] | None = None,
    ready: Ready | None = None,
    started: Any = None,
) -> list[dict[str, Any] | TrainingError]:
    """Train K trials as one vmapped program; each trial's `result.json` contents (or the
    `TrainingError` that failed it), in the order given. `ready`: the group's engine, made
    (and compiled) beforehand by `prepare_group`; `started`: called once the group trains."""
    base = programs[0]
    t_start = time.perf_counter()
    if ready is None:
        ready = prepare_group(base, tuple(lift(programs).values), len(programs))
    engine, splits = ready.engine, ready.splits
    members = []
    for program, folder in zip(programs, folders, strict=True):
        fit._claim(folder, program, False, argv)
        pipeline.save(ready.prepared, program, folder)
        stopper = Stopper.of(program)
        monitor = stopper.monitor if stopper else ("val_loss" if "val" in splits else None)
        best = stopper.best if stopper else math.inf
        members.append(Member(program, folder, stopper, monitor, [], best))
    size, keys = engine.members, tuple(engine.lifted.values)
    assert size * ready.lanes == len(programs)
    lanes = [
        (lift_as(programs[i : i + size], keys), members[i : i + size])
        for i in range(0, len(programs), size)
    ]
    views = [(*engine.lane(lifted), group) for lifted, group in lanes]
    if started is not None:
        started()

    halt = threading.Event()  # set: the lanes stop at their next epoch

    def train(view: GroupEngine, st: Any, group: list[Member]) -> list[Any]:
        display = Display(base.train.epochs, view.steps_per_epoch, "quiet")
        st = _train_epochs(view, st, group, splits, ready.train, display, side, halt, len(views))
        wall = time.perf_counter() - t_start
        return _finish(view, st, group, splits, wall, base, len(views))  # while the last write

    with Writers() as side:
        if len(views) == 1:
            results = train(*views[0])
        else:  # XLA releases the interpreter: the lanes' programs run on cores of their own
            results = _side_by_side(train, views, halt)
        side.wait()  # a failed write is the sweep's error
    return results


class _Halted(Exception):
    """A lane stopped at an epoch's start because another lane failed or the sweep was
    interrupted."""


def _side_by_side(train: Any, views: list[Any], halt: threading.Event) -> list[Any]:
    """Each lane's results, in lane order; the first failure (or Ctrl-C) stops every lane at
    its next epoch, and is raised once they have stopped."""
    with ThreadPoolExecutor(len(views), thread_name_prefix="dnn-lane") as pool:
        done = [pool.submit(train, *lane) for lane in views]
        try:
            wait(done, return_when=FIRST_EXCEPTION)
            failed = [f.exception() for f in done if f.done() and f.exception() is not None]
            if failed:
                halt.set()
                raise next((e for e in failed if not isinstance(e, _Halted)), failed[0])
            return [r for lane in done for r in lane.result()]
        except BaseException:
            halt.set()  # the pool's exit waits for the lanes, each at most an epoch
            raise


class Writers:
    """A stopped member's files, written on side threads as soon as it stops while the group
    trains on (XLA releases the interpreter): its history and plots on one thread, its
    checkpoints on another (Orbax's saves mostly wait on the disk, 5x their CPU time
    measured), so neither waits for the other."""

    def __init__(self) -> None:
        self.plots = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dnn-trial-plots")
        self.saves = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dnn-trial-saves")
        self.jobs: list[Future[None]] = []

    def submit(self, m: Member) -> None:
        self.jobs.append(self.plots.submit(_write_history, m))
        if m.error is None:
            self.jobs.append(self.saves.submit(_save, m))

    def wait(self) -> None:
        for job in self.jobs:
            job.result()

    def __enter__(self) -> Writers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.plots.shutdown()
        self.saves.shutdown()


def _train_epochs(
    engine: GroupEngine,
    st: Any,
    members: list[Member],
    splits: dict[str, Any],
    train_data: tuple[Any, Any],
    display: Display,
    side: Writers,
    halt: threading.Event | None = None,
    lanes: int = 1,
) -> Any:
    """The group's (a lane's) epochs until every member has stopped: the final state."""
    x_train, y_train = train_data
    n, epochs = int(x_train.shape[0]), engine.program.train.epochs
    for epoch in range(1, epochs + 1):
        if halt is not None and halt.is_set():
            raise _Halted
        t0 = time.perf_counter()
        st, acc = fit._one_epoch(engine, st, epoch, x_train, y_train, display)
        report = _members(train_report(engine, acc), engine.members)
        val = evaluate_members(engine, st, splits["val"]) if "val" in splits else None
        bad = np.asarray(jax.device_get(acc["bad_step"])).reshape(-1)
        dt = time.perf_counter() - t0
        for k, m in enumerate(members):
            if m.done:
                continue
            if bad[k] >= 0:
                m.done, m.error = True, _diverged(engine, epoch, int(bad[k]))
                side.submit(m)
                continue
            record: dict[str, Any] = {"epoch": epoch, **report[k]}
            if val is not None:
                record.update({f"val_{key}": v for key, v in val[k].items()})
            record["lr"] = _rates(st, k)
            record["time"] = dt
            record["samples_per_s"] = n * engine.members * lanes / dt  # the group's
            m.history.append(record)
            stop = _end_epoch(engine, m, st, k, epoch, record)
            if stop or epoch == epochs:
                m.done, m.final = True, _slice(engine, st, k)
                side.submit(m)
        if all(m.done for m in members):
            break
    return st


def _write_files(m: Member) -> None:
    """A stopped member's history, plots and checkpoints (result.json comes at the end)."""
    _write_history(m)
    if m.error is None:
        _save(m)


def _write_history(m: Member) -> None:
    rundir.write_history(m.folder / "metrics.jsonl", m.history)
    rundir.plot_history(m.history, m.folder / "plots", m.best_epoch)  # as a run alone draws


def _end_epoch(engine: Engine, m: Member, st: Any, k: int, epoch: int, record: Any) -> bool:
    """Member k's best weights and early stopping after an epoch; True when it stops."""
    if m.monitor is None:
        return False
    value = float(record[fit.record_key(engine, m.monitor)])
    if fit._better(m.stopper, m.monitor, value, m.best_value):
        m.best_value, m.best_epoch = value, epoch
        m.best = _slice(engine, _weights(st), k)
    return m.stopper.update(epoch, value) if m.stopper is not None else False


def _diverged(engine: Engine, epoch: int, step: int) -> str:
    in_epoch = step - (epoch - 1) * engine.steps_per_epoch + 1
    return (
        f"the loss is not finite (nan or inf) at epoch {epoch}, step {step + 1} "
        f"(batch {in_epoch} of {engine.steps_per_epoch}); training stopped"
    )


def _finish(
    engine: GroupEngine,
    st: Any,
    members: list[Member],
    splits: dict[str, Any],
    wall: float,
    base: Program,
    lanes: int = 1,
) -> list[dict[str, Any] | TrainingError]:
    """Evaluate each member's final weights (all at once), write each run folder."""
    restored = [
        m.stopper is not None and fit._restore_best(m.program) and m.best is not None
        for m in members
    ]
    now = _slice(engine, st, 0)
    finals = [
        _weights(m.best if r else m.final) if m.final is not None else _weights(now)
        for m, r in zip(members, restored, strict=True)
    ]
    final_st = {**st, **engine.from_disk(_stack(finals))}
    evaluated = {name: evaluate_members(engine, final_st, split) for name, split in splits.items()}
    out: list[dict[str, Any] | TrainingError] = []
    for k, m in enumerate(members):
        if m.error is not None:
            out.append(TrainingError(m.error))
            continue
        train_time = sum(r["time"] for r in m.history)
        assert m.program.model is not None
        steps = len(m.history) * engine.steps_per_epoch
        result = {
            "spec": m.program.path,
            "model": m.program.model.name,
            "params": m.program.model.params,
            "epochs_run": len(m.history),
            "epochs": m.program.train.epochs,
            "best_epoch": m.best_epoch,
            "restored_best": restored[k],
            "members": 1,
            **{name: evaluated[name][k] for name in splits},
            "wall_time_s": wall,
            "train_time_s": train_time,
            "steps_per_s": steps / train_time if train_time else None,
            "samples_per_s": engine.prepared.size("train") * len(m.history) / train_time
            if train_time
            else None,
            "run": str(m.folder),
            "vmapped_trials": engine.members * lanes,  # the group
            "lanes": lanes,  # programs of engine.members trials each, side by side
        }
        rundir.write_json(m.folder / "result.json", result)
        out.append(result)
    return out


def _save(m: Member) -> None:
    """The member's checkpoints as a run alone writes them: `last` (its state at the end of
    the group, marked done) and `best` (its best epoch's weights)."""
    last = checkpoint.Slot(m.folder / "checkpoints" / "last")
    best = checkpoint.Slot(m.folder / "checkpoints" / "best", keep=2)
    try:
        if m.best is not None:
            best.save(m.best_epoch, m.best, {"epoch": m.best_epoch})
        epoch = len(m.history)
        meta = {
            "epoch": epoch,
            "history": m.history,
            "wall": 0.0,
            "best_epoch": m.best_epoch,
            "best_value": fit.json_float(m.best_value),
            "stopper": m.stopper.to_json() if m.stopper else None,
            "plateau": None,
            "done": True,
        }
        last.save(epoch, m.final, meta)
    finally:
        last.close()
        best.close()
