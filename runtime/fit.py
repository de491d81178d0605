"""`dnn train`: run the loop of `train.Engine` over epochs, with validation, early stopping,
plateau reduction, checkpoints, resume, the run folder and the final test evaluation."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from dnn.compiler.check import nothing_to_train
from dnn.compiler.diagnostics import E_NONFINITE, Diagnostic, SpecError
from dnn.compiler.ir import Program
from dnn.compiler.lower_optax import plateau_watches

from . import checkpoint, health, memory_limit, pipeline, rundir, tabular, tensorboard
from .data.batches import Epochs
from .progress import Display
from .train import (
    Engine,
    Stopper,
    TrainingError,
    bad_step,
    batched,
    device_data,
    evaluate_split,
    json_float,
    plateau_begin,
    plateau_json,
    plateau_monitor,
    plateau_next,
    plateau_state,
    record_key,
    run_dir_default,
    set_plateau_scale,
    spec_error,
    train_report,
)

BAR_EVERY_S = 0.5  # how often the bar reads the running loss back from the device
CHECKPOINT_EVERY_S = 30.0  # the resumable checkpoint's period (and at the end, always)


def train(
    program: Program,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    quiet: bool = False,
    mode: str | None = None,
    checkpoint_every: float = CHECKPOINT_EVERY_S,
    argv: list[str] | None = None,
    health_every: int | None = None,
    histograms: bool = False,
    on_epoch: Callable[[dict[str, Any]], bool] | None = None,
    stop_after_steps: int | None = None,
) -> dict[str, Any]:
    """Train a checked spec; write the run folder; return the contents of `result.json`.

    `stop_after_steps = k` (streamed data only) stops after step k of the run, in mid-epoch,
    saving where its data iterator was, as SIGTERM does (`resume = True` continues there).

    `on_epoch(record)` is called after each epoch but the last; True stops the run there as
    `stop_after` would (a sweep's pruner stopping a trial).

    `health_every`: per-layer health checks every k steps when the spec's `train.health`
    does not say (`dnn train --health`). `histograms`: TensorBoard histograms of every
    weight once per epoch (`dnn train --histograms`; the scalars are always written).

    `stop_after = k` ends the run after epoch k as if it had been interrupted (continue it
    with `resume = True`); `mode` is 'bar', 'lines' or 'quiet' (default: from the terminal);
    the resumable checkpoint is written at most every `checkpoint_every` seconds and when the
    run ends or stops.

    A side thread takes work off the run's critical path: it imports Orbax and matplotlib
    while XLA compiles (the compiler releases the interpreter), and draws the plots while the
    final evaluation runs — together 0.5-1 s of a short run (docs/performance.md).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dnn-side") as side:
        return _train(
            program,
            out,
            resume,
            stop_after,
            quiet,
            mode,
            checkpoint_every,
            argv,
            side,
            health_every,
            histograms,
            on_epoch,
            stop_after_steps,
        )


def _train(
    program: Program,
    out: str | Path | None,
    resume: bool,
    stop_after: int | None,
    quiet: bool,
    mode: str | None,
    checkpoint_every: float,
    argv: list[str] | None,
    side: ThreadPoolExecutor,
    health_every: int | None = None,
    histograms: bool = False,
    on_epoch: Callable[[dict[str, Any]], bool] | None = None,
    stop_after_steps: int | None = None,
) -> dict[str, Any]:
    t_start = time.perf_counter()
    if program.model is None:
        raise SpecError([nothing_to_train(program.module)], program.sources)  # as `dnn check` says
    enable_compile_cache()
    prepared = pipeline.prepare(program)
    if stop_after_steps is not None and not prepared.streamed:
        raise TrainingError(
            "--stop-after-steps stops in mid-epoch, which only a streamed run can resume",
            "stream the data (`data { stream = true }`), or stop after an epoch: --stop-after",
        )
    _check_monitors(program, prepared)
    memory_limit.check_fits(program, prepared)  # before the run folder and any allocation
    folder = Path(out) if out is not None else run_dir_default(program)
    resume_asked = resume
    lead = jax.process_index() == 0  # in a multi-host run, process 0 writes the run folder
    # --resume on a run stopped before its first checkpoint starts it again (every process
    # reads this before the lead replaces the folder)
    resume = resume and checkpoint.exists(folder / "checkpoints" / "last")
    if lead:
        _claim(folder, program, resume_asked, argv)
        if not resume:
            pipeline.save(prepared, program, folder)
    _barrier("run folder")
    engine = Engine(program, prepared, program.train.ensemble, health_every)
    streamed = prepared.streamed
    data: dict[str, Any]
    if streamed:  # read from the sources batch by batch (runtime/data/batches.py)
        data = {k: v for k, v in streamed.items() if len(v)}
        x_train = y_train = None
    else:
        data = device_data(prepared, engine.place)
        x_train, y_train = data["train"]
        data = {k: batched(*v) for k, v in data.items()}
    side.submit(_warm_imports, bool(streamed))
    n, epochs = prepared.size("train"), program.train.epochs
    loop = Loop(program, engine, folder, "val" in data, bool(streamed))
    feed: _Feed | None = None  # a streamed run's batches, every epoch's
    if streamed and not resume:  # its first batches are read while XLA compiles
        feed = _Feed(engine, data["train"], loop, epochs, 1)
    st = engine.init()
    if lead:
        _warn_if_nothing_trains(program, st["params"])
    if resume:
        st = loop.resume(st)
    finished, last_save = True, time.perf_counter()
    pause: _Pause | None = None
    shown = (mode or Display.choose(quiet)) if lead else "quiet"
    pictures: Future[Any] | None = None
    board = _board(program, folder, loop.start, histograms, resume) if lead else None
    with (
        Display(epochs, engine.steps_per_epoch, shown) as display,
        _on_interrupt(loop, folder),
        _on_sigterm(),
        contextlib.closing(board) if board is not None else contextlib.nullcontext(),
    ):
        if not resume:
            st, records = fresh_start(program, engine, st, display)
            if lead and program.train.pretrain is not None:
                pictures = _pretrain_outputs(program, engine, st, records, folder, side)
        for epoch in range(loop.start, epochs + 1):
            t0 = time.perf_counter()
            if streamed:
                pause = _Pause(stop_after_steps, checkpoint_every, last_save, t_start)
                data["train"].waited = 0.0
                feed = feed or _Feed(engine, data["train"], loop, epochs, loop.start)
                st, acc, paused = _stream_epoch(
                    engine, st, epoch, data["train"], display, loop, pause, feed
                )
                last_save = pause.last_save
                if paused:
                    finished = False
                    if _TERMINATED.is_set():  # `dnn train` says where a step stop was
                        display.message(pause.message(folder, epoch))
                    break
            else:
                st, acc = _one_epoch(engine, st, epoch, x_train, y_train, display)
            bad = bad_step(acc)
            if bad >= 0:
                replay = None if streamed else (x_train, y_train, data)
                _fail(folder, loop, epoch, bad, engine, replay)
            if engine.health_every and lead:
                checks = health.write(
                    folder / HEALTH, program, acc["health"], epoch, engine.members
                )
                health.to_tensorboard(folder, checks)
            record = _record(engine, st, acc, data, epoch, n, t0)
            if streamed:  # how long the steps waited for their batches, in all
                record["data_wait_s"] = data["train"].waited
                if lead:
                    _write_skipped(folder, data)
                    _write_unseen(folder, prepared)
                _none_trained(acc, data["train"])
            if board is not None:
                board.epoch(record)
                if board.histograms:  # per layer, as checkpoints hold them (scans unstacked)
                    board.weights(engine.to_disk(st["params"]), epoch)
            st, stop = loop.end_epoch(st, epoch, record)
            interrupted = stop_after is not None and epoch >= stop_after and epoch < epochs
            if _TERMINATED.is_set() and epoch < epochs:  # preempted: save, then stop
                interrupted = True
                display.message(
                    f"stopped by SIGTERM after epoch {epoch}; `dnn train ... --out {folder} "
                    "--resume` continues from there"
                )
            if not (stop or interrupted) and epoch < epochs and on_epoch is not None:
                interrupted = on_epoch(record)
            done = (stop or epoch == epochs) and not interrupted
            if done or interrupted or time.perf_counter() - last_save >= checkpoint_every:
                loop.save(st, epoch, done, time.perf_counter() - t_start)
                last_save = time.perf_counter()
            if lead:
                rundir.write_history(folder / "metrics.jsonl", loop.history)
            display.end_epoch(record)
            if stop:
                display.message(loop.stop_message())
                break
            if interrupted:
                finished = False
                break
    loop.close()
    if feed is not None:
        feed.close()
    plots: Future[Any] | None = None
    if lead:
        plots = side.submit(
            rundir.plot_history, list(loop.history), folder / "plots", loop.best_epoch
        )
    if lead and engine.health_every:
        _health_report(program, folder)
    _wait(pictures)
    if not finished:
        _wait(plots)
        done = loop.history[-1]["epoch"] if loop.history else 0
        stopped = {"stopped_after": done, "finished": False, "run": str(folder)}
        return {**stopped, "step": pause.step} if pause is not None and pause.step else stopped
    st, restored = loop.final_weights(st)
    wall = loop.wall_before + time.perf_counter() - t_start
    result = _result(engine, st, data, loop.history, wall, loop.best_epoch, restored, program)
    result["run"] = str(folder)
    if streamed and lead:  # the final evaluation met the test split's too
        _write_skipped(folder, data)
        _write_unseen(folder, prepared)
    if (streamed or prepared.skipped) and (folder / SKIPPED).exists():  # `on_error = skip`
        result["skipped"] = json.loads((folder / SKIPPED).read_text())["counts"]
    _wait(plots)
    if lead:
        rundir.write_json(folder / "result.json", result)
    return result


HEALTH = "health.jsonl"
PRETRAIN = "pretrain.jsonl"


def _board(
    program: Program, folder: Path, start: int, histograms: bool, resume: bool
) -> tensorboard.Board:
    """The run's TensorBoard writers (`<run>/tensorboard`); a fresh run's model summary and
    spec as text."""
    board = tensorboard.Board(folder, start, histograms)
    if not resume:
        board.text("model/summary", str(program.summary()))
        board.text("model/spec", rundir.spec_text(program))
    return board


def fresh_start(
    program: Program, engine: Engine, st: Any, display: Display | None = None
) -> tuple[Any, list[dict[str, Any]]]:
    """The state a fresh run (not a resumed one) starts from: the layers `init_from` names
    loaded, then the other pretrainable layers pretrained (`train.pretrain`); with the
    pretraining's records (one per layer and epoch). `display` shows what happens."""
    loaded: list[str] = []
    if program.train.init_from:
        st, notes, loaded = transfer(program, st, engine)
        if display is not None:
            for note in notes:
                display.message(note)
    if program.train.pretrain is None:
        return st, []
    from . import pretrain

    epochs = int(program.train.pretrain.arg("epochs"))
    report = (
        (lambda r: display.message(pretrain.describe(program, r, epochs)))
        if display is not None
        else None
    )
    return pretrain.pretrain(program, engine, st, report, frozenset(loaded))


def _pretrain_outputs(
    program: Program,
    engine: Engine,
    st: Any,
    records: list[dict[str, Any]],
    folder: Path,
    side: ThreadPoolExecutor,
) -> Future[Any] | None:
    """pretrain.jsonl, and the reconstructions' and filters' figures drawn on the side thread
    (None when `init_from` left no layer to pretrain)."""
    from . import pretrain

    rundir.write_history(folder / PRETRAIN, records)
    if not records:
        return None
    return side.submit(pretrain.plot, pretrain.pictures(program, engine, st), folder / "plots")


def _health_report(program: Program, folder: Path) -> None:
    """The run's health checks as heatmaps, and the lectures' diagnoses as warnings."""
    from . import cli

    lines = health.read(folder / HEALTH)
    health.plot(lines, folder / "plots")
    cli._warn(health.diagnose(program, lines), program.sources)


def _warn_if_nothing_trains(program: Program, params: Any) -> None:
    """Say, at the spec line, that the run changes no weight: no parameter, or all frozen.

    Read from the weights the run built (a frozen stacked repeat freezes all its instances);
    `dnn check` warns the same where the spec alone tells (compiler/check.py).
    """
    from dnn.compiler.check import nothing_trains
    from dnn.compiler.lower_optax import frozen_labels
    from dnn.compiler.lower_scan import plan_for

    from . import cli

    freeze = program.train.freeze
    if freeze:
        trained = "train" in jax.tree.leaves(frozen_labels(params, freeze, plan_for(program)))
    else:
        trained = bool(jax.tree.leaves(params))
    if trained:
        return
    assert program.model is not None
    cli._warn([nothing_trains(program.model, program.train)], program.sources)


def _warm_imports(streamed: bool = False) -> None:
    """Import what the end of a run needs while the main thread waits on XLA (and Grain,
    0.6 s, where the first epoch reads a streamed split)."""
    if streamed:
        import grain  # noqa: F401
    checkpoint.orbax()
    rundir.plotting()
    tensorboard.available()


def _wait(job: Future[Any] | None) -> None:
    if job is not None:
        job.result()  # the plots' errors are the run's errors


@contextlib.contextmanager
def _on_interrupt(loop: Loop, folder: Path) -> Iterator[None]:
    """Ctrl-C: say where the run can be resumed from, then let the interrupt through."""
    try:
        yield
    except KeyboardInterrupt:
        loop.close()
        where = f"epoch {loop.saved_epoch}" if loop.saved_epoch else "the start (no checkpoint yet)"
        print(
            f"\ninterrupted; `dnn train ... --out {folder} --resume` continues from {where}",
            file=sys.stderr,
        )
        raise


@contextlib.contextmanager
def _on_sigterm() -> Iterator[None]:
    """SIGTERM (a scheduler preempting the machine) stops the run at the next step of a
    streamed epoch, or at the epoch's end, after saving a checkpoint to resume from."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread (a sweep's trials run elsewhere)
        return
    _TERMINATED.clear()
    before = signal.signal(signal.SIGTERM, lambda *_: _TERMINATED.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
        _TERMINATED.clear()


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def enable_compile_cache() -> None:
    """Keep XLA's compiled programs on disk so a repeated run skips compilation.

    JAX's persistent cache, in $DNN_CACHE_DIR or ~/.cache/dnn/xla; DNN_CACHE_DIR=off disables it.
    A cache the user configured through JAX is left alone.
    """
    where = os.environ.get("DNN_CACHE_DIR", "")
    if where == "off" or jax.config.jax_compilation_cache_dir:
        return
    if not where:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        where = os.path.join(base, "dnn", "xla")
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def _placed_as(restored: Any, fresh: Any) -> Any:
    """A restored array placed as the fresh one was: Orbax commits what it restores to a
    device, the one-device engine's arrays are not, and jit compiles its programs again for
    arguments placed otherwise (every program of a resumed run: about 3 s of CPU here)."""
    if getattr(fresh, "committed", True) or not getattr(restored, "committed", False):
        return restored
    return jax.device_put(np.asarray(restored))


class Loop:
    """The bookkeeping between epochs: history, best weights, early stopping, plateau, saves."""

    def __init__(
        self, program: Program, engine: Engine, folder: Path, has_val: bool, streamed: bool = False
    ):
        self.program, self.engine, self.folder = program, engine, folder
        # a streamed run's checkpoint may be of an epoch in progress: its record says where
        # its data iterator was and holds its metrics so far (`within`), to resume there
        self.streamed = streamed
        self.within: dict[str, Any] | None = None  # a resumed run's epoch in progress
        self.last = checkpoint.Slot(folder / "checkpoints" / "last")
        # two kept: a run killed between saving `best` and `last` resumes from `last` and
        # still finds the best epoch it knew of (the newer one is dropped on resume)
        self.best = checkpoint.Slot(folder / "checkpoints" / "best", keep=2)
        self.stopper = Stopper.of(program)
        monitor = self.stopper.monitor if self.stopper else ("val_loss" if has_val else None)
        self.monitor = monitor
        self.key = record_key(engine, monitor) if monitor else None
        self.best_value = self.stopper.best if self.stopper else math.inf
        self.best_epoch = 0
        self.best_weights: Any = None  # a device copy of the best epoch's weights
        self.best_dirty = False  # best_weights not yet on disk
        self.plateau = plateau_begin(program) if engine.plateau else None
        self.history: list[dict[str, Any]] = []
        self.start, self.wall_before = 1, 0.0
        self.saved_epoch = 0

    def resume(self, st: Any) -> Any:
        disk, meta = self.last.restore(self.engine.to_disk(st))
        within = meta.get("within")
        if within is not None:  # a streamed run stopped in mid-epoch
            fresh = self.engine.train_acc()
            leaves = [_from_json(leaf) for leaf in within["acc"]]
            acc = jax.tree.unflatten(jax.tree.structure(fresh), leaves)
            self.within = {**within, "acc": jax.tree.map(_placed_as, acc, fresh)}
        st = jax.tree.map(_placed_as, self.engine.from_disk(disk), st)
        if meta.get("done"):
            raise TrainingError(
                f"the run in {self.folder} already finished (epoch {meta['epoch']})",
                "start a new run with another --out, or evaluate it with `dnn eval`",
            )
        self.history, self.start = meta["history"], meta["epoch"] + 1
        self.saved_epoch = meta["epoch"]
        self.wall_before = meta["wall"]
        self.best_epoch, self.best_value = meta["best_epoch"], float(meta["best_value"])
        if self.stopper is not None:
            self.stopper.load(meta["stopper"])
        if self.plateau is not None:
            self.plateau = plateau_state(meta["plateau"], self.plateau)
        if checkpoint.exists(self.best.folder):
            self.best.drop_after(self.saved_epoch)
        if self.best_epoch and self.best_epoch in self.best.steps():
            like = self.engine.to_disk(_weights(st))
            best, _ = self.best.restore(like, epoch=self.best_epoch)
            self.best_weights = self.engine.from_disk(best)
        return st

    def end_epoch(self, st: Any, epoch: int, record: dict[str, Any]) -> tuple[Any, bool]:
        """Record an epoch; keep the best weights; step plateau; True when stopping early."""
        self.history.append(record)
        stop = False
        if self.key is not None and self.monitor is not None:
            value = float(record[self.key])
            if _better(self.stopper, self.monitor, value, self.best_value):
                self.best_value, self.best_epoch = value, epoch
                self.best_weights = self.engine.copy(_weights(st))
                self.best_dirty = True
            if self.stopper is not None:
                stop = self.stopper.update(epoch, value)
                if record.get("phase") == 1:  # phase 1 never stops a run; phase 2's patience
                    self.stopper.bad_epochs, stop = 0, False  # counts from its own start
        if self.plateau is not None and self._plateau_watches(epoch):
            watched = record[record_key(self.engine, plateau_monitor(self.program))]
            self.plateau = plateau_next(self.program, self.plateau, float(watched))
            st = set_plateau_scale(st, self.plateau.scale)
        return st, stop

    def _plateau_watches(self, epoch: int) -> bool:
        """False for the epochs of the schedule's warm-up (see `plateau_watches`)."""
        k = self.program.train.accumulate  # one update per k micro-batches, across epochs
        spe = self.engine.steps_per_epoch
        updates = epoch * spe // k
        return plateau_watches(self.program.train.schedule, updates, max(1, spe // k))

    def save(
        self,
        st: Any,
        epoch: int,
        done: bool,
        elapsed: float,
        within: tuple[Any, dict[str, Any]] | None = None,
    ) -> None:
        """The best weights (if changed) first, then the resumable state: they always agree.

        `within`: a streamed run stopped in epoch `epoch + 1`: that epoch's metrics so far and
        where it was (its batches done, its data iterator's state)."""
        if self.best_dirty:
            weights = self.engine.to_disk(self.best_weights)
            self.best.save(self.best_epoch, weights, {"epoch": self.best_epoch})
            self.best_dirty = False
        meta = {
            "epoch": epoch,
            "history": self.history,
            "wall": self.wall_before + elapsed,
            "best_epoch": self.best_epoch,
            "best_value": json_float(self.best_value),
            "stopper": self.stopper.to_json() if self.stopper else None,
            "plateau": plateau_json(self.plateau) if self.plateau else None,
            "done": done,
            "within": _within_json(*within) if within is not None else None,
        }
        self.last.save(epoch, self.engine.to_disk(st), meta)
        self.saved_epoch = epoch

    def stop_message(self) -> str:
        s = self.stopper
        assert s is not None
        return (
            f"early stopping: {s.monitor} has not improved for {s.patience} epochs "
            f"(best {s.best:.4f} at epoch {s.best_epoch})"
        )

    def final_weights(self, st: Any) -> tuple[Any, bool]:
        """Early stopping's best epoch's weights when `restore_best`, else the last ones."""
        if self.stopper is not None and _restore_best(self.program) and self.best_weights:
            return {**st, **self.best_weights}, True
        return st, False

    def close(self) -> None:
        self.last.close()
        self.best.close()


# ------------------------------------------------------------------ one epoch


def _one_epoch(
    engine: Engine, st: Any, epoch: int, x: Any, y: Any, display: Display
) -> tuple[Any, Any]:
    display.start_epoch(epoch)
    n = int(x.shape[0])
    full, tail = engine.order(epoch, n)
    acc = engine.train_acc()
    last_read = time.perf_counter()
    if engine.scanned and engine.full:
        st, acc = engine.scan_epoch(st, acc, x, y, full, tail)
        tail = None
    for i in range(0 if engine.scanned else engine.full):
        st, acc = engine.step(st, acc, x, y, full, i)
        if display.progress is not None and time.perf_counter() - last_read > BAR_EVERY_S:
            last_read = time.perf_counter()
            loss = float(jnp.mean(acc["loss"] / jnp.maximum(acc["count"], 1)))
            display.step(i + 1, (i + 1) * engine.batch, loss)
    if tail is not None:
        st, acc = engine.step(st, acc, x, y, tail, 0)
    return st, acc


def _within_json(acc: Any, where: dict[str, Any]) -> dict[str, Any]:
    """Where a streamed epoch stopped, and its metrics so far (exact: each float32 and int
    is a JSON number that reads back to the same value)."""
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(acc))]
    encoded = [
        {"dtype": a.dtype.str, "shape": list(a.shape), "values": a.ravel().tolist()} for a in leaves
    ]
    return {**where, "acc": encoded}


def _from_json(leaf: dict[str, Any]) -> np.ndarray:
    return np.asarray(leaf["values"], np.dtype(leaf["dtype"])).reshape(leaf["shape"])


@dataclass
class _Pause:
    """When a streamed epoch saves in mid-epoch, and when it stops there: after
    `stop_after_steps` steps of the run, or on SIGTERM (a preempted machine), saving first;
    every `every` seconds it saves and goes on."""

    stop_after_steps: int | None
    every: float
    last_save: float
    t_start: float
    why: str = ""
    step: int = 0  # the run's step where it stopped

    def stop(self, step: int) -> bool:
        if self.stop_after_steps is not None and step >= self.stop_after_steps:
            self.why = f"stopped after step {step}"
        elif _TERMINATED.is_set():
            self.why = f"stopped by SIGTERM after step {step}"
        self.step = step if self.why else 0
        return bool(self.why)

    def save(self) -> bool:
        return time.perf_counter() - self.last_save >= self.every

    def message(self, folder: Path, epoch: int) -> str:
        return (
            f"{self.why}, in epoch {epoch}; `dnn train ... --out {folder} --resume` "
            "continues from that step"
        )


_TERMINATED = threading.Event()  # set by SIGTERM while a run trains (see `_on_sigterm`)


class _Feed:
    """A streamed run's training batches: one Grain iterator over every epoch's batches,
    from where the run starts (or where a run resumed in mid-epoch was)."""

    def __init__(self, engine: Engine, split: Any, loop: Loop | None, epochs: int, first: int):
        data = engine.program.data
        assert data is not None
        steps = engine.steps_per_epoch
        plan = Epochs(
            engine.program.train.seed, data.shuffle, len(split), engine.batch, steps, epochs
        )
        within = loop.within if loop is not None else None
        self.start, state = (
            (within["start"], within["data"]) if within else ((first - 1) * steps, None)
        )
        part = (jax.process_index(), jax.process_count(), engine.place.count)  # a host's share
        put = jax.device_put if engine.place.mesh is None else None  # one device: there
        self.batches = split.run(plan, self.start, state, part, put)
        # the pipeline (and its worker processes, which take seconds to start) gets going
        # now, while XLA compiles the step
        self.batches.start_prefetch()

    def next(self) -> Any:
        return next(self.batches)

    def close(self) -> None:
        """Stop the reading threads and worker processes (and free their shared memory)."""
        self.batches.close()


SKIPPED = "skipped.json"


def _none_trained(acc: Any, train: Any) -> None:
    """A streamed epoch that trained on no example: `on_error = skip` left out every one."""
    if train.n and not np.any(np.asarray(jax.device_get(acc["count"]))):
        raise TrainingError(
            f"every example of the train split ({train.n}) was skipped as bad "
            "(`data.on_error = skip`): nothing was trained",
            f"{SKIPPED} in the run folder says why each was left out",
        )


def _write_skipped(folder: Path, data: dict[str, Any]) -> None:
    """The examples `on_error = skip` left out so far, per split, each once: file, where in
    it, why (the same example is met again every epoch), in `Skipped.order`."""
    found = {}
    for name, split in data.items():
        seen = {(s.origin, s.where): s for s in split.skipped}
        if seen:
            found[name] = [s._asdict() for s in sorted(seen.values(), key=lambda s: s.order())]
    if found:
        counts = {name: len(v) for name, v in found.items()}
        rundir.write_json(folder / SKIPPED, {"counts": counts, "skipped": found})


def _write_unseen(folder: Path, prepared: pipeline.Prepared) -> None:
    """A streamed typed table's `columns.json` again, with the cells its vocabularies did not
    know among the batches read so far (each split read whole by the run's end)."""
    if prepared.tallies and prepared.schema is not None:
        tabular.save(prepared.schema, folder, prepared.unseen_cells())


# Streamed batches a scanned model (`Engine.scanned`: an in-memory epoch is one scan) takes
# in one call: the dispatch of one step is most of a small model's step on a CPU.
CHUNK = 16


def _chunk(engine: Engine, done: int, before: int, pause: _Pause | None) -> int:
    """How many batches the next call takes: up to CHUNK full batches of a scanned
    one-process run (not past a stop asked for after some step); the tail batch, and every
    batch of another run, alone."""
    if not engine.scanned or jax.process_count() > 1 or done >= engine.full:
        return 1
    k = min(CHUNK, engine.full - done)
    if pause is not None and pause.stop_after_steps is not None:
        k = min(k, max(1, pause.stop_after_steps - before - done))
    return k


def _steps(engine: Engine, st: Any, acc: Any, got: list[Any]) -> tuple[Any, Any]:
    """Train on batches read: stacked and scanned where they are several of one size, else
    one step each (a batch every example of which was skipped takes none)."""
    place = engine.place
    kept = [(x, y, whole) for x, y, whole in got if len(x)]  # `on_error = skip` may empty one
    if len(kept) > 1 and len({len(x) for x, _, _ in kept}) == 1:
        xs = jnp.stack([jnp.asarray(x) for x, _, _ in kept])
        ys = jnp.stack([jnp.asarray(y) for _, y, _ in kept])
        return engine.scan_batches(st, acc, xs, ys)
    for x, y, whole in kept:
        st, acc = engine.batch_step(st, acc, place.from_host(x, whole), place.from_host(y, whole))
    return st, acc


def _stream_epoch(
    engine: Engine,
    st: Any,
    epoch: int,
    split: Any,
    display: Display,
    loop: Loop | None = None,
    pause: _Pause | None = None,
    feed: _Feed | None = None,
) -> tuple[Any, Any, bool]:
    """One epoch of a streamed split: Grain reads its batches, in the order an in-memory
    epoch takes them, while the step runs; a run resumed in this epoch continues at the
    batch it stopped before. True when the run pauses here (saved, to resume)."""
    display.start_epoch(epoch)
    feed = feed or _Feed(engine, split, None, epoch, epoch)
    acc, done = engine.train_acc(), 0
    if loop is not None and loop.within is not None and loop.within["epoch"] == epoch:
        acc, done = loop.within["acc"], loop.within["batches"]
        loop.within = None
    steps = engine.steps_per_epoch
    last_read = time.perf_counter()
    before = (epoch - 1) * steps
    while done < steps:
        k = _chunk(engine, done, before, pause)
        got = []
        for _ in range(k):
            waited = time.perf_counter()
            got.append(feed.next())
            split.waited += time.perf_counter() - waited  # the step had to wait for its batch
        st, acc = _steps(engine, st, acc, got)
        done += k
        if display.progress is not None and time.perf_counter() - last_read > BAR_EVERY_S:
            last_read = time.perf_counter()
            loss = float(jnp.mean(acc["loss"] / jnp.maximum(acc["count"], 1)))
            display.step(done, done * engine.batch, loss)
        if done >= steps or loop is None or pause is None:
            continue  # the epoch's end: the run saves as any epoch's end
        stopping = pause.stop(before + done)
        if stopping or pause.save():
            where = {"epoch": epoch, "batches": done, "start": feed.start}
            where["data"] = feed.batches.get_state()
            elapsed = time.perf_counter() - pause.t_start
            loop.save(st, epoch - 1, False, elapsed, (acc, where))
            pause.last_save = time.perf_counter()
            if stopping:
                return st, acc, True
    return st, acc, False


def _record(
    engine: Engine, st: Any, acc: Any, data: dict[str, Any], epoch: int, n: int, t0: float
) -> dict[str, Any]:
    train = train_report(engine, acc)
    train.pop("members", None)
    record: dict[str, Any] = {"epoch": epoch, **train}
    if "val" in data:
        val = evaluate_split(engine, st, data["val"])
        val.pop("members", None)
        record.update({f"val_{k}": v for k, v in val.items()})
    record["lr"] = learning_rate(st)
    phase = engine.phase(st)
    if phase is not None:  # `unfreeze`: which layers trained, and phase 2's rate factor
        record["phase"] = phase
        record["lr"] *= float(engine.program.train.unfreeze.get("lr_factor")) if phase == 2 else 1
    dt = time.perf_counter() - t0
    record["time"] = dt
    record["samples_per_s"] = n * engine.members / dt
    return record


def learning_rate(st: Any) -> float:
    """The rate of the last update: the injected `learning_rate` times a plateau factor (the
    first one: under `unfreeze`, the held layers' own comes later and waits for phase 2)."""
    rate, scale = math.nan, 1.0
    for path, leaf in jax.tree_util.tree_flatten_with_path(st["opt"])[0]:
        key = str(getattr(path[-1], "key", "")) if path else ""
        if key == "learning_rate" and math.isnan(rate):
            rate = float(np.asarray(leaf).reshape(-1)[0])
        elif key == "step_size":
            scale = float(np.asarray(leaf).reshape(-1)[0])
    return rate * scale


def _weights(st: Any) -> dict[str, Any]:
    return {"params": st["params"], "model_state": st["model_state"]}


def _better(stopper: Stopper | None, monitor: str, value: float, best: float) -> bool:
    if stopper is not None:
        return stopper.improved(value)
    from dnn.compiler.registry.metrics import monitor_mode

    return value < best if monitor_mode(monitor) == "min" else value > best


def _restore_best(program: Program) -> bool:
    rec = program.train.early_stopping
    return bool(rec.get("restore_best")) if rec is not None else False


def _fail(
    folder: Path,
    loop: Loop,
    epoch: int,
    step: int,
    engine: Engine,
    replay: tuple[Any, Any, Any] | None,
) -> None:
    """Stop on a non-finite loss: name the epoch and step, and, by replaying the run to that
    step (runtime/nonfinite.py), the layer where the first non-finite value appeared."""
    from .nonfinite import locate

    loop.close()
    rundir.plot_history(loop.history, folder / "plots", loop.best_epoch)
    in_epoch = step - (epoch - 1) * engine.steps_per_epoch + 1
    kept = (
        f"the checkpoint of epoch {loop.saved_epoch} is kept"
        if loop.saved_epoch
        else "no checkpoint had been written yet"
    )
    message = (
        f"the loss is not finite (nan or inf) at epoch {epoch}, step {step + 1} "
        f"(batch {in_epoch} of {engine.steps_per_epoch})"
    )
    hint = (
        "lower the learning rate, add `clip = global_norm(1.0)`, or check the inputs for "
        "extreme values"
    )
    program = engine.program
    try:
        if replay is None:  # streamed data: the replay reads the train split on the device
            origin, failed = None, " (the layer is not located when the data is streamed)"
        else:
            origin, failed = locate(program, engine, folder, epoch, *replay), ""
    except Exception as e:  # the diagnosis must not hide the error it explains; say it failed
        origin, failed = None, f" (finding where it began failed, a bug in dnn: {e!r})"
    if origin is None:
        raise TrainingError(f"{message}; training stopped and {kept}{failed}", hint)
    span = origin.span(program)
    if span is None:  # the batch: data, not a layer
        raise TrainingError(f"{message}: {origin.sentence()}; training stopped and {kept}", hint)
    if origin.step != step:  # an update that overflowed, or a replay that rounded apart
        began = origin.step - (origin.epoch - 1) * engine.steps_per_epoch + 1
        message += f"; it began at step {origin.step + 1} (batch {began})"
    raise SpecError(
        [
            Diagnostic(
                E_NONFINITE,
                f"{message}: {origin.sentence()}; training stopped and {kept}",
                span,
                hint,
            )
        ],
        program.sources,
    )


def _result(
    engine: Engine,
    st: Any,
    data: dict[str, Any],
    history: list[dict[str, Any]],
    wall: float,
    best_epoch: int,
    restored: bool,
    program: Program,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        if split in data:
            out[split] = evaluate_split(engine, st, data[split])
    steps = sum(1 for _ in history) * engine.steps_per_epoch
    train_time = sum(r["time"] for r in history)
    assert program.model is not None
    return {
        "spec": program.path,
        "model": program.model.name,
        "params": program.model.params,
        "epochs_run": len(history),
        "epochs": program.train.epochs,
        "best_epoch": best_epoch,
        "restored_best": restored,
        "members": engine.members,
        **out,
        "wall_time_s": wall,
        "train_time_s": train_time,
        "steps_per_s": steps / train_time if train_time else None,
        "samples_per_s": engine.prepared.size("train") * len(history) / train_time
        if train_time
        else None,
    }


# ------------------------------------------------------------------ run folder


def _claim(folder: Path, program: Program, resume: bool, argv: list[str] | None) -> None:
    """Create the run folder, or check that `--resume` finds the same spec's checkpoint there.

    A dnn run folder without a checkpoint (a run stopped before its first save) is replaced,
    with or without `--resume`, and one line says so; a folder that holds a checkpoint, or that
    is not a dnn run folder, is never deleted.
    """
    if resume and checkpoint.exists(folder / "checkpoints" / "last"):
        _same_spec(folder, program)
        return
    if resume and not folder.is_dir():
        raise TrainingError(
            f"nothing to resume in {folder}: no such folder",
            "run without --resume to start this run",
        )
    if folder.is_dir() and any(folder.iterdir()):
        _replace(folder, resume)
    folder.mkdir(parents=True, exist_ok=True)
    # env.yaml first: it marks the folder as a dnn run folder (see `run_folder_start`)
    rundir.write_yaml(folder / "env.yaml", rundir.environment(program, argv))
    (folder / "spec.dnn").write_text(rundir.spec_text(program))
    rundir.write_yaml(folder / "hparams.yaml", rundir.hparams(program))


def _replace(folder: Path, resume: bool) -> None:
    """Empty a dnn run folder that holds no checkpoint; refuse any other non-empty folder."""
    started = rundir.run_folder_start(folder)
    if started is None:
        raise TrainingError(
            f"{folder} is not empty and is not a dnn run folder; dnn writes only into an "
            "empty folder or one of its own runs",
            "pass another --out",
        )
    saved = [s for s in ("last", "best") if checkpoint.exists(folder / "checkpoints" / s)]
    if saved:
        # only `best` can be here with --resume: a run killed between its first two saves
        raise TrainingError(
            f"the run folder {folder} already holds a checkpoint ({saved[0]})"
            + (", but none to resume from" if resume else ""),
            "pass another --out"
            if resume
            else "pass --resume to continue that run, or another --out",
        )
    rundir.empty_run_folder(folder)
    line = (
        f"{folder}: nothing to resume (the run started {started} stopped before its first "
        "checkpoint); starting it again"
        if resume
        else f"{folder}: replaced the run started {started}, which stopped before its first "
        "checkpoint"
    )
    print(line, file=sys.stderr, flush=True)


def _same_spec(folder: Path, program: Program) -> None:
    import yaml

    saved = yaml.safe_load((folder / "hparams.yaml").read_text())
    now = rundir.hparams(program)
    if saved != now:
        diffs = [
            f"{section}.{k}: {saved.get(section, {}).get(k)!r} -> {v!r}"
            for section, fields in now.items()
            for k, v in fields.items()
            if saved.get(section, {}).get(k) != v
        ]
        raise TrainingError(
            f"cannot resume {folder}: the spec differs from the one it was trained with ("
            + "; ".join(diffs[:4])
            + ")",
            "resume with the same spec and --set values",
        )
    if (folder / "spec.dnn").read_text() != rundir.spec_text(program):
        raise TrainingError(
            f"cannot resume {folder}: the model differs from the one it was trained with",
            f"compare with `dnn diff {folder / 'spec.dnn'} {program.path}`",
        )


# ------------------------------------------------------------------ checks and transfer


def _check_monitors(program: Program, prepared: pipeline.Prepared) -> None:
    has_val = prepared.size("val") > 0
    watched = []
    if program.train.early_stopping is not None:
        watched.append(("early_stopping", str(program.train.early_stopping.get("monitor"))))
    if program.train.schedule.name == "reduce_on_plateau":
        watched.append(("schedule", plateau_monitor(program)))
    for field, monitor in watched:
        if monitor.startswith("val_") and not has_val:
            raise spec_error(
                program,
                field,
                f"`{monitor}` needs validation data, but the validation split is empty",
                "give `split` a `val` share, or monitor a training quantity such as `loss`",
            )


def transfer(program: Program, st: Any, engine: Engine) -> tuple[Any, list[str], list[str]]:
    """Initialize layers from another run's weights, by layer name and shape; returns the
    state, lines that say what was loaded, and the names of the layers loaded.

    Both sides are matched in the per-node layout checkpoints hold (scanned runs unstacked).
    A layer's running statistics (batchnorm's `batch_stats`) come with it, as Keras's
    `load_weights` and PyTorch's `load_state_dict` bring them: a frozen batchnorm normalizes
    with the statistics of the data it was trained on.
    """
    import orbax.checkpoint as ocp

    source = Path(str(program.train.init_from))
    if not source.is_absolute():
        candidates = [Path(program.path).resolve().parent / source, Path.cwd() / source]
        source = next((c for c in candidates if c.exists()), candidates[-1])
    if source.is_file() or source.suffix.lower() in WEIGHT_SUFFIXES:  # runtime/weights.py
        return _from_file(program, st, engine)
    slot_dir = next(
        (
            source / "checkpoints" / s
            for s in ("best", "last")
            if checkpoint.exists(source / "checkpoints" / s)
        ),
        None,
    )
    if slot_dir is None:
        raise spec_error(
            program,
            "init_from",
            f"`init_from`: no checkpoint in {source}",
            "give the folder of a finished `dnn train` run (it holds checkpoints/)",
        )
    step = max(int(p.name) for p in slot_dir.iterdir() if p.name.isdigit())
    raw = ocp.StandardCheckpointer().restore((slot_dir / str(step) / "state").resolve())
    src_members = _members_of(raw)
    here = engine.to_disk(st["params"])
    params, loaded, skipped = _matching(here, raw["params"], src_members, engine.members)
    if not loaded:
        raise spec_error(
            program,
            "init_from",
            f"`init_from`: no layer of this model matches a layer of {source} by name and shape",
            "name the layers to transfer the same in both specs",
        )
    src_state = raw.get("model_state") or {}
    stats = {
        kind: _matching(tree, src_state.get(kind, {}), src_members, engine.members)[0]
        for kind, tree in engine.to_disk(st["model_state"]).items()
    }
    notes = [f"init_from {source}: loaded {len(loaded)} layers ({', '.join(loaded)})"]
    notes += [f"  not loaded: {s}" for s in skipped]
    missing = [k for k in here if k not in raw["params"]]
    if missing:
        notes.append(f"  new layers (initialized fresh): {', '.join(missing)}")
    new = {"params": engine.from_disk(params), "model_state": engine.from_disk(stats)}
    return {**st, **new}, notes, loaded


# what `init_from` reads as a weight file even when it is missing (to say so, not to look for
# a run folder): PyTorch's and Keras' files, and the pickles runtime/weights.py refuses
WEIGHT_SUFFIXES = (".safetensors", ".h5", ".hdf5", ".keras", ".pth", ".pt", ".ckpt", ".bin")


def _from_file(
    program: Program, st: Any, engine: Engine, source: str | None = None
) -> tuple[Any, list[str], list[str]]:
    """`st` with the layers a weight file fills loaded from it (`source`, or `init_from`),
    placed as the state they replace was."""
    from . import weights

    params = jax.device_get(engine.to_disk(st["params"]))
    state = jax.device_get(engine.to_disk(st["model_state"]))
    params, state, notes, loaded = weights.load_file(
        program, params, state, source or str(program.train.init_from)
    )
    new = {"params": engine.from_disk(params), "model_state": engine.from_disk(state)}
    placed = {
        k: jax.tree.map(lambda v, old: jax.device_put(v, old.sharding), new[k], st[k]) for k in new
    }
    return {**st, **placed}, notes, loaded


def _matching(
    here: dict[str, Any], source: dict[str, Any], src_members: int, members: int
) -> tuple[dict[str, Any], list[str], list[str]]:
    """`here` with each layer that `source` has by the same name and shapes taken from it
    (the first member of an ensemble source, broadcast to this run's members); the layers
    loaded, and those skipped for their shapes."""
    out, loaded, skipped = dict(here), [], []
    for layer, leaves in here.items():
        if layer not in source:
            continue
        src = source[layer]
        if src_members > 1:
            src = jax.tree.map(lambda a: a[0], src)
        want = jax.tree.map(lambda a: a.shape[1:] if members > 1 else a.shape, leaves)
        have = jax.tree.map(lambda a: tuple(a.shape), src)
        if jax.tree.structure(want) != jax.tree.structure(have) or jax.tree.leaves(
            want
        ) != jax.tree.leaves(have):
            skipped.append(f"{layer} (shapes {_shapes(have)} in the source, {_shapes(want)} here)")
            continue
        out[layer] = jax.tree.map(
            lambda new, old: jnp.broadcast_to(jnp.asarray(new, old.dtype), old.shape), src, leaves
        )
        loaded.append(layer)
    return out, loaded, skipped


def _members_of(raw: Any) -> int:
    step = raw.get("step")
    shape = np.shape(step) if step is not None else ()
    return int(shape[0]) if shape else 1


def _shapes(tree: Any) -> str:
    return ", ".join(
        str(tuple(s)) for s in jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, tuple))
    )
