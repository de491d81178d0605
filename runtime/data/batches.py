"""The batches stage: how the transformed examples reach the training step.

In memory (the default where the data fits), every split is placed on the device once and the
jitted step gathers its batch by index (runtime/train.py). Streamed (`data.stream`), a split
stays in its source and Grain reads it batch by batch: an epoch's batches follow the same
permutation of the split an in-memory run draws (`Engine.order`), so a streamed run trains on
the same batches in the same order, and its losses equal the in-memory run's. Reading and the
transforms (normalizer, target scaling, checks) run on Grain's read threads ahead of the step;
the step itself takes the batch as an argument instead of gathering it.

A Grain iterator's state (the next batch of the epoch) is part of a streamed run's checkpoint,
so `--resume` continues a run stopped in mid-epoch at the batch it stopped before.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import Span

from .examples import Skipped
from .table import Block, Table

# Batches read ahead of the step, and the threads that read them: enough to hide a read
# behind a step on two cores without holding many batches in memory.
PREFETCH = 4
THREADS = 2
KEEP_BYTES = 64 << 20  # a streamed split evaluated in order this small is read once and kept


class TableExamples:
    """A table in memory as a source of examples: what a built-in set streams from (the
    random-access protocol of Grain's data sources, as runtime/data/sources.py's readers)."""

    def __init__(self, table: Table, blocks: tuple[Block, ...] = ()):
        self.table, self.blocks = table, blocks  # several outputs: where each one's targets are
        self.origin = table.origin
        self.shape = tuple(table.x.shape[1:])
        self.dtype = table.x.dtype
        self.task, self.classes, self.class_names = table.task, table.classes, table.class_names

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.table.x[i], self.table.y[i]

    def _getitems(self, rows: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(self.table.x[i], self.table.y[i]) for i in rows]

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Several examples at once: one gather per array instead of one read per row."""
        return self.table.x[rows], self.table.y[rows]

    def nbytes(self) -> int:
        return int(self.table.x.nbytes + self.table.y.nbytes)


@dataclass(frozen=True)
class OnePass:
    """The batches of one pass over a split: its `positions` in this order, `batch` at a
    time (the last may be smaller)."""

    positions: np.ndarray
    batch: int

    def __len__(self) -> int:
        return -(-len(self.positions) // self.batch)

    def take(self, k: int) -> np.ndarray:
        return self.positions[k * self.batch : (k + 1) * self.batch]


@dataclass(frozen=True)
class Epochs:
    """The batches of a whole run: `steps` an epoch, epoch e's positions the permutation an
    in-memory run draws for it (`Engine.order`, computed the same way wherever a batch is
    read: in a Grain worker process too, so one pipeline serves every epoch)."""

    seed: int
    shuffle: bool
    n: int
    batch: int
    steps: int
    epochs: int

    def __len__(self) -> int:
        return self.steps * self.epochs

    def take(self, k: int) -> np.ndarray:
        epoch, i = divmod(k, self.steps)
        order = permutation(self.seed, self.shuffle, epoch + 1, self.n)
        return order[i * self.batch : (i + 1) * self.batch]


@functools.lru_cache(maxsize=2)
def permutation(seed: int, shuffle: bool, epoch: int, n: int) -> np.ndarray:
    """Epoch `epoch`'s order of a split of `n` examples, as `Engine._permute` draws it."""
    if not shuffle:
        return np.arange(n)
    import jax

    key = jax.random.fold_in(jax.random.key(seed), epoch)
    return np.asarray(jax.random.permutation(jax.random.fold_in(key, 7), n))


@dataclass(frozen=True)
class _Batches:
    """Grain's source of a split read a batch at a time: element k is the rows `plan`
    takes for batch k (this process's share where `part` splits them), read at once: with
    `read` where the source has it (one gather), else row by row; with the rows, and the
    whole batch's size where this is a share of it."""

    examples: Any
    rows: np.ndarray
    plan: OnePass | Epochs
    part: tuple[int, int, int] = (0, 1, 1)
    skip: bool = False  # `on_error = skip`: a bad example leaves its batch, which shrinks

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, k: int) -> tuple[Any, ...]:
        """(x, y, rows, the whole batch's size where this is a share of it, skipped)."""
        rows = self.rows[self.plan.take(k)]
        process, processes, devices = self.part
        # a share of a batch that may shrink would not fit the other processes' shares
        split = processes > 1 and len(rows) % devices == 0 and not self.skip
        whole = len(rows) if split else None
        if whole is not None:
            rows = rows[process * whole // processes : (process + 1) * whole // processes]
        read = getattr(self.examples, "read", None)
        if read is not None and not self.skip:
            x, y = read(rows)
            return x, y, rows, whole, []
        raw = getattr(self.examples, "raw_dtype", None) is not None  # finished when cut
        items = read_rows(self.examples, rows, raw)
        x, y, rows = stack(items, self.examples, raw)
        return x, y, rows, whole, [i for i in items if isinstance(i, Skipped)]


def _worker_init(index: int, count: int) -> None:
    """A Grain worker process computes epochs' permutations on the CPU (never taking a GPU),
    and leaves Ctrl-C to the training process, which stops the run and then the workers
    (else each worker prints its own `KeyboardInterrupt` traceback)."""
    import signal

    import jax

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    jax.config.update("jax_platforms", "cpu")


def read_rows(examples: Any, rows: np.ndarray, raw: bool = False) -> list[Any]:
    """The examples of `rows`, each with its row (a skipped one as the source gives it);
    `raw`: as the source stores them (`Examples.raw`), to be finished a batch at a time."""
    read = getattr(examples, "_getitems", None)
    if raw:
        items = [examples.raw(int(r)) for r in rows]
    else:
        items = read(rows) if read is not None else [examples[int(r)] for r in rows]
    return [_with_row(item, r) for item, r in zip(items, rows, strict=True)]


def _with_row(item: Any, row: Any) -> Any:
    if isinstance(item, Skipped):
        return item
    return item[0], item[1], np.int64(row)


def _skipped(item: Any) -> bool:
    return isinstance(item, Skipped)


@dataclass(eq=False)
class Streamed:
    """A split read from its source when needed: the source rows it takes, in split order,
    and the transforms that make a batch of them what the model reads.

    `cut(x, y, rows)` turns raw examples (as the source stores them) into the model's
    (x, y); `head` is the split's first examples, transformed (shapes and dtypes for the
    engine, a look at the data for `dnn data`)."""

    examples: Any
    rows: np.ndarray
    cut: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    head: Table
    on_error: str = "fail"
    skipped: list[Any] = field(default_factory=list)  # the skipped examples met so far
    waited: float = 0.0  # seconds the training steps of this epoch waited for a batch
    workers: int = 0  # Grain worker processes reading the examples (0: threads only)
    _kept: dict[int, list[Any]] = field(default_factory=dict, repr=False)  # `in_order`'s

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def n(self) -> int:
        return len(self.rows)

    def epoch(
        self,
        positions: np.ndarray,
        batch: int,
        state: dict[str, Any] | None = None,
        part: tuple[int, int, int] = (0, 1, 1),
        workers: bool = True,
    ) -> Any:
        """An iterator over one pass's batches: the split's `positions` in this order,
        `batch` at a time (the last may be smaller), each as (x, y, rows in the whole
        batch or None); `state`: where a stopped pass was (`iterator.get_state()`).

        `part = (process, processes, devices)`: in a multi-host run each process reads only
        its share of a batch whose rows divide over the devices (the whole batch is the
        processes' shares end to end, in process order); the batches that do not divide,
        and every batch where examples may be skipped, are read whole by each process.
        `workers`: False reads with threads only (a pass too short to start processes for)."""
        plan = OnePass(np.asarray(positions, np.int64), batch)
        return self._pipeline(plan, 0, state, part, workers, self._cut)

    def run(
        self,
        plan: Epochs,
        start: int,
        state: dict[str, Any] | None = None,
        part: tuple[int, int, int] = (0, 1, 1),
        put: Callable[[np.ndarray], Any] | None = None,
    ) -> Any:
        """One iterator over a whole run's training batches from batch `start` of the run
        (a run resumed after some epochs starts there): the worker processes, where there
        are any, start once, not every epoch. `put`: where a batch goes once cut, on the
        reading thread (a one-device run: onto the device, so the step's dispatch does not
        copy it)."""
        cut = self._cut if put is None else functools.partial(self._cut_and_put, put)
        return self._pipeline(plan, start, state, part, True, cut)

    def _pipeline(
        self,
        plan: OnePass | Epochs,
        start: int,
        state: dict[str, Any] | None,
        part: tuple[int, int, int],
        workers: bool,
        cut: Callable[[Any], Any],
    ) -> Any:
        import grain
        from grain.experimental import ThreadPrefetchIterDataset

        source = _Batches(self.examples, self.rows, plan, part, self.on_error == "skip")
        ds = grain.MapDataset.source(source)[start:]
        if self.workers and workers:  # read and decoded in worker processes, cut here
            _absl_flags_parsed()
            options = grain.MultiprocessingOptions(self.workers, per_worker_buffer_size=2)
            ds = ds.to_iter_dataset(_options()).mp_prefetch(options, _worker_init)
            ds = ThreadPrefetchIterDataset(ds.map(cut), prefetch_buffer_size=PREFETCH)
        else:  # read and cut by Grain's threads
            ds = ds.map(cut).to_iter_dataset(_options())
        return _started(ds, state)

    def _cut(self, b: Any) -> tuple[np.ndarray, np.ndarray, int | None]:
        x, y, rows, whole, skipped = b
        self.skipped.extend(skipped)
        if getattr(self.examples, "raw_dtype", None) is not None:  # read as stored: finish
            x = self.examples.finish_batch(x)
        return (*self.cut(x, y, rows), whole)

    def _cut_and_put(self, put: Callable[[np.ndarray], Any], b: Any) -> tuple[Any, Any, None]:
        x, y, whole = self._cut(b)
        return put(x), put(y), whole

    def in_order(self, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The whole split in its order, `batch` rows at a time, the last padded with zeros:
        (x, y, mask of real rows) — one compiled evaluation serves every batch. A split
        whose batches take at most `KEEP_BYTES` is read once and kept (a validation split
        evaluated every epoch), so later passes start no pipeline."""
        kept = self._kept.get(batch)
        if kept is not None:
            yield from kept
            return
        keep = self.n * (self.head.x[:1].nbytes + self.head.y[:1].nbytes) <= KEEP_BYTES
        passed = []
        for x, y, _ in self.epoch(np.arange(self.n), batch, workers=False):
            k = len(x)
            mask = np.arange(batch) < k
            if k < batch:
                x, y = _pad(x, batch), _pad(y, batch)
            if keep:
                passed.append((x, y, mask))
            yield x, y, mask
        if keep:
            self._kept[batch] = passed


def _options() -> Any:
    import grain

    return grain.ReadOptions(num_threads=THREADS, prefetch_buffer_size=PREFETCH)


def _started(ds: Any, state: dict[str, Any] | None) -> Any:
    it = iter(ds)
    if state is not None:
        it.set_state(state)
    return it


def _absl_flags_parsed() -> None:
    """Grain 0.2.18's worker processes read an Abseil flag, which raises where no program
    parsed Abseil's flags (google/grain#1355, fixed after that release): dnn has none to
    parse, so the defaults stand."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([a, np.zeros((n - len(a), *a.shape[1:]), a.dtype)])


def head_rows(n: int) -> int:
    """How many examples a streamed split's `head` holds."""
    return min(n, 64)


def stack(
    items: list[Any], like: Any, raw: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Examples read one by one (with their rows) as a batch; `like`: their source (the
    shapes of an empty batch: as the source stores them where `raw`)."""
    kept = [i for i in items if not _skipped(i)]
    if not kept:
        table = getattr(like, "table", None)
        width = sum(b.width for b in getattr(like, "blocks", ()))  # several outputs' targets
        y = np.zeros((0, width) if width else (0,), np.float32 if width else np.int32)
        y = table.y[:0] if table is not None else y
        dtype = like.raw_dtype if raw else like.dtype
        return np.zeros((0, *like.shape), dtype), y, np.zeros((0,), np.int64)
    x, y, rows = zip(*kept, strict=True)
    return np.stack(x), np.stack(y), np.asarray(rows, np.int64)


def read_table(examples: Any, rows: np.ndarray, span: Span | None) -> Table:
    """The examples of `rows` read as a table (a skipped one left out); `span`: the spec
    field that names their source."""
    x, y, got = stack(read_rows(examples, rows), examples)
    return as_table(examples, span, x, y, got)


def as_table(
    examples: Any, span: Span | None, x: np.ndarray, y: np.ndarray, rows: np.ndarray
) -> Table:
    """A batch of a source's examples as a table, its rows named as the source numbers them."""
    table = getattr(examples, "table", None)
    return Table(
        x=x,
        y=y,
        task=table.task if table is not None else getattr(examples, "task", "classification"),
        classes=getattr(examples, "classes", None),
        class_names=tuple(getattr(examples, "class_names", ())),
        origin=examples.origin,
        kind=table.kind if table is not None else getattr(examples, "kind", "array"),
        span=span,
        index=np.asarray(rows, np.int64),
        places=table.places if table is not None else None,
        text=table.text if table is not None else None,
    )


def nbytes(examples: Any) -> int:
    """The bytes a source's examples take decoded in memory (its own estimate, else one
    example times the count)."""
    own = getattr(examples, "nbytes", None)
    if own is not None:
        return int(own())
    return int(len(examples) * math.prod(examples.shape) * np.dtype(examples.dtype).itemsize)
