"""`dnn data FILE`: what a spec's data section resolves to, without training anything.

`report(program)` runs the data pipeline alone (source → split → fitted statistics and
vocabularies → transforms) and describes the result: the source, the split sizes, the example
and input shapes and dtypes, a typed table's columns, the class balance (or the targets' range),
the normalizer's statistics summarized, and two throughputs measured on this machine: the
pipeline from files to prepared arrays, and batches of the train split through the spec's
augmentations (jitted, on the default device). `grid(program, path)` draws a few augmented
training images to a PNG, as people would rather look than read.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.ir import Program

from . import pipeline
from .data import transforms

GRID = 16  # images in the `-o` grid: 4 x 4


@dataclass(frozen=True)
class Report:
    """What `dnn data` prints (as text or JSON)."""

    source: str
    task: str
    splits: dict[str, int]
    example: dict[str, Any]  # raw shape and dtype, model input shape and dtype
    balance: dict[str, dict[str, int]]  # per split: class name -> count (classification)
    targets: dict[str, dict[str, float]]  # per split: mean, std, min, max (regression)
    normalizer: dict[str, Any]  # name, and per statistic: shape, min, mean, max
    columns: list[dict[str, Any]] = field(default_factory=list)  # a typed table's
    unseen: dict[str, dict[str, Any]] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)  # samples/s
    read: str = "in memory"  # or "streamed": the splits read batch by batch (data.stream);
    # "kept": read whole, batch by batch from memory (`on_error = skip` left examples out)
    cache: dict[str, Any] = field(default_factory=dict)  # data.cache: folder, stored, examples

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def report(program: Program, repeats: int = 3) -> Report:
    """Prepare the data `repeats` times (the fastest counts) and describe it."""
    assert program.data is not None and program.model is not None
    best, prepared = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        prepared = pipeline.prepare(program)
        best = min(best, time.perf_counter() - start)
    assert prepared is not None
    total = sum(prepared.size(s) for s in prepared.splits)
    train = prepared.splits["train"]
    return Report(
        source=str(program.data.source),
        task=prepared.task,
        splits={s: prepared.size(s) for s in prepared.splits},
        example={
            "raw_shape": list(prepared.raw_shape),
            "input_shape": list(train.x.shape[1:]),
            "input_dtype": str(train.x.dtype),
            "inputs": {n: list(s) for n, s in transforms.input_sizes(program)},
        },
        balance=_balance(prepared),
        targets=_targets(prepared),
        normalizer=_normalizer(program, prepared),
        columns=_columns(program, prepared),
        unseen=_unseen(prepared),  # after `balance`: a streamed table's splits were read
        throughput={
            "prepare": total / best if best > 0 else math.inf,
            "batches": _batch_rate(program, prepared),
        },
        read=_read(prepared),
        cache=_cache(prepared),
    )


def _unseen(prepared: pipeline.Prepared) -> dict[str, dict[str, Any]]:
    """Per split and column, the cells the vocabularies did not know (a streamed typed table's
    counted as its batches are read: a split not read whole yet is read now)."""
    for split, tally in prepared.tallies.items():
        if tally.met < prepared.size(split):
            for _ in prepared.streamed[split].in_order(STREAM_BATCH):
                pass
    return {
        s: {c: {"count": n, "values": list(v)} for c, (n, v) in cols.items()}
        for s, cols in prepared.unseen_cells().items()
    }


def _read(prepared: pipeline.Prepared) -> str:
    """How the splits reach training: "in memory", "streamed", or "kept": read whole, then
    batch by batch as a streamed run reads them (`on_error = skip` left examples out)."""
    from .data.skipping import KeptExamples

    if any(isinstance(s.examples, KeptExamples) for s in prepared.streamed.values()):
        return "kept"
    return "streamed" if prepared.streamed else "in memory"


def _cache(prepared: pipeline.Prepared) -> dict[str, Any]:
    """Where a streamed source's `data.cache` is, and how many of its examples it holds."""
    found = {}
    for split in prepared.streamed.values():
        kept = getattr(split.examples, "_cache", None)
        if kept is not None and str(kept.folder) not in found:
            found[str(kept.folder)] = {"stored": kept.filled(), "examples": kept.n}
    return {"folders": found} if found else {}


def _balance(prepared: pipeline.Prepared) -> dict[str, dict[str, int]]:
    if prepared.classes is None or prepared.task in ("regression", transforms.MULTI):
        return {}
    names = prepared.class_names or tuple(str(i) for i in range(prepared.classes))
    out = {}
    for split in prepared.splits:
        y = _labels(prepared, split)
        counts = y.sum(axis=0) if y.ndim == 2 else np.bincount(y, minlength=len(names))
        out[split] = {str(n): int(c) for n, c in zip(names, counts, strict=False)}
    return out


def _targets(prepared: pipeline.Prepared) -> dict[str, dict[str, float]]:
    if prepared.task != "regression":
        return {}
    out = {}
    for split in prepared.splits:
        if prepared.size(split):
            learned = np.asarray(_labels(prepared, split), np.float64)
            y = prepared.targets.invert(learned)  # in the data's units
            out[split] = {
                "mean": float(y.mean()),
                "std": float(y.std()),
                "min": float(y.min()),
                "max": float(y.max()),
            }
    return out


def _labels(prepared: pipeline.Prepared, split: str) -> np.ndarray:
    """A split's targets as the model learns them; a streamed split read once, whole."""
    if not prepared.streamed:
        return np.asarray(prepared.splits[split].y)
    parts = [y[mask] for _, y, mask in prepared.streamed[split].in_order(STREAM_BATCH)]
    return np.concatenate(parts) if parts else prepared.splits[split].y


STREAM_BATCH = 256  # examples a streamed split is read by, for the report
STREAM_BATCHES = 100  # batches a streamed split's throughput is measured on, at most


def _normalizer(program: Program, prepared: pipeline.Prepared) -> dict[str, Any]:
    assert program.data is not None
    out: dict[str, Any] = {"name": str(program.data.normalize)}
    for k, v in sorted(prepared.stats.items()):
        a = np.asarray(v, np.float64)
        out[k] = {
            "shape": list(a.shape),
            "min": float(a.min()) if a.size else 0.0,
            "mean": float(a.mean()) if a.size else 0.0,
            "max": float(a.max()) if a.size else 0.0,
        }
    return out


def _columns(program: Program, prepared: pipeline.Prepared) -> list[dict[str, Any]]:
    """A typed table's columns: type (given or inferred), what it feeds, its width, the
    train split's missing cells and its vocabulary's head."""
    schema = prepared.schema
    if schema is None:
        return []
    from . import tabular

    assert program.data is not None
    span = program.data.span_of("source")
    slots = tabular.bind(schema, transforms.table_inputs(program), program.sources, span)
    feeds = {c: s for s in slots for c in s.columns}
    out = []
    for col in schema.columns:
        slot = feeds.get(col.name)
        integer = slot.integer if slot else False
        out.append(
            {
                "name": col.name,
                "type": col.type,
                "typed": "inferred" if col.inferred else "given",
                "input": slot.input if slot else None,
                "width": col.width(integer) if slot else 0,
                "encoding": col.describe(integer),
                "vocabulary": list(col.vocab[:5]) + (["..."] if len(col.vocab) > 5 else []),
            }
        )
    return out


def _batch_rate(program: Program, prepared: pipeline.Prepared) -> float:
    """Samples/s of the train split cut into batches and augmented, as the train step gets
    them: the split placed on the device once, each batch sliced and augmented in one
    compiled function (compile excluded; the best of three epochs)."""
    import jax

    from . import augment

    assert program.data is not None
    if prepared.streamed:
        return _stream_rate(program, prepared)
    x = prepared.splits["train"].x
    batch = min(program.train.batch_size, len(x))
    if not batch:
        return 0.0
    aug = augment.build(tuple(program.data.augment), tuple(x.shape[1:]))
    placed = jax.device_put(x)

    @jax.jit
    def step(key: Any, i: Any) -> Any:
        b = jax.lax.dynamic_slice_in_dim(placed, i * batch, batch)
        return aug(jax.random.fold_in(key, i), b)

    key, steps = jax.random.key(0), len(x) // batch
    step(key, 0).block_until_ready()  # compile
    best = math.inf
    for _ in range(3):
        begin = time.perf_counter()
        outs = [step(key, i) for i in range(steps)]
        jax.block_until_ready(outs)
        best = min(best, time.perf_counter() - begin)
    return steps * batch / best if best > 0 else math.inf


def _stream_rate(program: Program, prepared: pipeline.Prepared) -> float:
    """Samples/s of a streamed train split read and transformed in batches by Grain, as a
    streamed run's steps get them (augmentation, on the device, excluded): the best of
    three passes over its first STREAM_BATCHES batches, read by one pipeline after a pass
    that starts it (a run starts its worker processes once, not every epoch)."""
    split = prepared.streamed["train"]
    batch = min(program.train.batch_size, len(split))
    if not batch:
        return 0.0
    steps = min(len(split), batch * STREAM_BATCHES) // batch
    batches = split.epoch(np.tile(np.arange(steps * batch), 4), batch)
    best = math.inf
    try:
        for k in range(4):
            begin = time.perf_counter()
            read = sum(len(next(batches)[0]) for _ in range(steps))
            if k:  # the first pass starts the pipeline and its processes
                best = min(best, time.perf_counter() - begin)
    finally:
        batches.close()
    return read / best if best > 0 else math.inf


def grid(program: Program, path: Path, prepared: pipeline.Prepared | None = None) -> int:
    """A PNG of up to 16 training images after the spec's augmentations (their first channel
    in grey, or RGB); returns how many it drew, 0 where the inputs are not images."""
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import augment

    assert program.data is not None
    prepared = prepared or pipeline.prepare(program)
    x = prepared.splits["train"].x
    if x.ndim != 4 or not len(x):
        return 0
    n = min(GRID, len(x))
    aug = augment.build(tuple(program.data.augment), tuple(x.shape[1:]))
    images = np.asarray(aug(jax.random.key(0), jnp.asarray(x[:n])), np.float64)
    side = math.ceil(math.sqrt(n))
    fig, axes = plt.subplots(side, side, figsize=(2 * side, 2 * side))
    names = prepared.class_names
    for k, ax in enumerate(np.asarray(axes).reshape(-1)):
        ax.axis("off")
        if k >= n:
            continue
        img = images[k]
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)  # each image in [0, 1]
        rgb = img.shape[-1] == 3
        ax.imshow(img if rgb else img[..., 0], cmap=None if rgb else "gray")
        y = prepared.splits["train"].y[k]
        if np.ndim(y) == 0 and names:
            ax.set_title(names[int(y)], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return n


def render(r: Report) -> str:
    """The report as text, one fact per line."""
    lines = [f"source: {r.source}", f"task: {r.task}"]
    lines.append("splits: " + ", ".join(f"{s} {n:,}" for s, n in r.splits.items()))
    ex = r.example
    ins = ", ".join(f"{n} {s}" for n, s in ex["inputs"].items())
    lines.append(f"examples: raw {ex['raw_shape']}, model input {ex['input_dtype']} ({ins})")
    if r.columns:
        lines.append("columns:")
        for c in r.columns:
            feeds = f"-> {c['input']} [{c['width']}]" if c["input"] else "(not read)"
            lines.append(f"  {c['name']}: {c['encoding']} ({c['typed']}) {feeds}")
    for split, cols in r.unseen.items():
        shown = "; ".join(
            f"{c}: {u['count']} ({', '.join(u['values'])})" for c, u in sorted(cols.items())
        )
        lines.append(f"unseen in {split} (out-of-vocabulary bucket): {shown}")
    for split, counts in r.balance.items():
        total = sum(counts.values()) or 1
        parts = ", ".join(f"{n} {c} ({c / total:.0%})" for n, c in counts.items())
        lines.append(f"classes in {split}: {parts}")
    for split, t in r.targets.items():
        lines.append(
            f"targets in {split}: mean {t['mean']:.4g}, std {t['std']:.4g}, "
            f"range [{t['min']:.4g}, {t['max']:.4g}]"
        )
    stats = {k: v for k, v in r.normalizer.items() if k != "name"}
    lines.append(f"normalize: {r.normalizer['name']}")
    for k, v in stats.items():
        lines.append(
            f"  {k} {v['shape']}: min {v['min']:.4g}, mean {v['mean']:.4g}, max {v['max']:.4g}"
        )
    t = r.throughput
    if r.read == "kept":
        lines.append(
            "read: whole, then batch by batch from memory as a streamed run reads it "
            "(data.on_error = skip left examples out)"
        )
        lines.append(
            f"throughput: prepare {t['prepare']:,.0f} samples/s (files to arrays), batches "
            f"{t['batches']:,.0f} samples/s (train split read and transformed by Grain)"
        )
        return "\n".join(lines)
    if r.read == "streamed":
        lines.append("read: streamed, batch by batch from the files (data.stream)")
        for folder, c in r.cache.get("folders", {}).items():
            lines.append(
                f"cache: {c['stored']:,} of {c['examples']:,} examples decoded and stored in "
                f"{folder} (data.cache)"
            )
        lines.append(
            f"throughput: batches {t['batches']:,.0f} samples/s (train split read and "
            "transformed by Grain; augmented on the device)"
        )
        return "\n".join(lines)
    lines.append(
        f"throughput: prepare {t['prepare']:,.0f} samples/s (files to arrays), "
        f"batches {t['batches']:,.0f} samples/s (train split, augmented)"
    )
    return "\n".join(lines)


def write_shards(program: Program, folder: Path, per_shard: int) -> tuple[int, int, int]:
    """Write the spec's `data.source` to ArrayRecord shards in `folder` (runtime/data/shards.py),
    every example in source order; returns (examples written, shards, examples skipped)."""
    from dnn.compiler.rules import target_kind

    from .data import batches, sources
    from .data.table import _Where

    data = program.data
    assert data is not None
    base = Path(program.path).resolve().parent
    span = data.span_of("source")
    where = _Where(span, program.sources, span)
    task = target_kind(transforms.task_of(program))
    if sources.streams(data.source):
        examples = sources.open_examples(data.source, task, base, where, data.on_error)
    else:  # a built-in set: read whole, then written as any other
        found = sources.load_source(
            data.source, task=task, base_dir=base, span=span, sources=program.sources
        )
        examples = batches.TableExamples(found)
    paths, skipped = sources.write_shards(examples, folder, per_shard)
    return len(examples) - len(skipped), len(paths), len(skipped)
