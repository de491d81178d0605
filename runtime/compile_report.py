"""`dnn compile FILE`: lower a spec and compile its train step, without training (issue 17).

What it reports, and where each number comes from:

- `summary_params` / `summary_state`: the static counts `dnn summary` prints (trainable
  parameters; batch statistics and other state), from the checked IR;
- `lowered_params` / `lowered_state`: the same counted over the leaves the lowered Flax module
  initializes (`jax.eval_shape` of the engine's init: nothing is allocated), per ensemble
  member. They must be equal; a difference is a bug in a word's parameter rule, and the
  command says so and exits 1;
- `lower_s`, `compile_s`: the trace and lowering of the train step `dnn train` runs
  (`Engine.step`: one batch, forward, loss, gradient, optimizer update, metric accumulation),
  then XLA's compile of it, timed apart;
- `flops`, `bytes_accessed`: XLA's cost analysis of that compiled step (per step, every
  ensemble member and device together);
- `peak_bytes`: XLA's memory analysis of the compiled step per device: arguments + outputs +
  temporaries - what outputs alias (the donated state), beside `estimate_bytes`, the static
  estimate of `dnn summary` (compiler/memory.py).

The data section is read for the shapes of the arrays the step takes (as `dnn train` would);
a spec without one compiles on a batch of noise (as `dnn init-check --noise`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
from dnn.compiler.ir import Program
from dnn.compiler.memory import estimate

from . import pipeline
from .train import Engine


@dataclass(frozen=True)
class CompileReport:
    model: str
    backend: str
    devices: int
    batch: int
    members: int
    summary_params: int
    lowered_params: int
    summary_state: int
    lowered_state: int
    lower_s: float
    compile_s: float
    flops: float | None
    bytes_accessed: float | None
    peak_bytes: int | None
    estimate_bytes: int

    @property
    def equal(self) -> bool:
        return (self.summary_params, self.summary_state) == (
            self.lowered_params,
            self.lowered_state,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"params_equal": self.equal}

    def text(self) -> str:
        def count(a: int, b: int) -> str:
            return f"{a:,} {'=' if a == b else '!='} {b:,}"

        flops = "not reported by this backend" if self.flops is None else _si(self.flops, "")
        moved = "" if self.bytes_accessed is None else f", {_bytes(self.bytes_accessed)} accessed"
        peak = (
            "not reported by this backend" if self.peak_bytes is None else _bytes(self.peak_bytes)
        )
        members = f", {self.members} ensemble members" if self.members > 1 else ""
        return "\n".join(
            [
                f"{self.model}: train step compiled on {self.backend} ({self.devices} "
                f"device{'s' * (self.devices != 1)}), batch {self.batch}{members}",
                f"  parameters   lowered {count(self.lowered_params, self.summary_params)} "
                "in the summary",
                f"  state        lowered {count(self.lowered_state, self.summary_state)} "
                "in the summary",
                f"  trace+lower  {self.lower_s:.2f} s",
                f"  XLA compile  {self.compile_s:.2f} s",
                f"  per step     {flops} FLOPs{moved} (XLA cost analysis)",
                f"  peak memory  {peak} per device (XLA); static estimate "
                f"{_bytes(self.estimate_bytes)} (docs/memory.md)",
            ]
        )


def _si(v: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.2f} {prefix}{unit}"
    return f"{v:.0f} {unit}".rstrip()


def _bytes(v: float) -> str:
    for scale, unit in ((2**30, "GB"), (2**20, "MB"), (2**10, "KB")):
        if v >= scale:
            return f"{v / scale:.2f} {unit}"
    return f"{v:.0f} B"


def _count(tree: Any, members: int) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree)) // members


def _cost(compiled: Any) -> dict[str, float]:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older JAX: one dict per program
        cost = cost[0] if cost else {}
    return dict(cost or {})


def _peak(compiled: Any) -> int | None:
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    peak = getattr(stats, "peak_memory_in_bytes", None)
    if peak:
        return int(peak)
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


def _prepared(program: Program) -> pipeline.Prepared:
    if program.data is not None:
        return pipeline.prepare(program)
    from .init_check import _noise

    return _noise(program, program.train.batch_size)


def compile_report(program: Program) -> CompileReport:
    """Lower and compile `program`'s train step (see the module doc); nothing is trained."""
    assert program.model is not None
    prepared = _prepared(program)
    members = int(program.train.ensemble)
    engine = Engine(program, prepared, members)
    st = jax.eval_shape(engine.init)
    acc = jax.eval_shape(engine.train_acc)
    table = prepared.splits["train"]
    xs = jax.ShapeDtypeStruct(table.x.shape, jnp.asarray(table.x[:1]).dtype)
    ys = jax.ShapeDtypeStruct(table.y.shape, jnp.asarray(table.y[:1]).dtype)
    rows = max(engine.full, 1)
    batch = engine.batch if engine.full else engine.tail
    order = jax.ShapeDtypeStruct((rows, batch), jnp.int32)
    i = jax.ShapeDtypeStruct((), jnp.int32)
    t0 = time.perf_counter()
    lowered = engine.step.lower(st, acc, xs, ys, order, i)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    cost = _cost(compiled)
    nodes = program.model.nodes
    return CompileReport(
        model=program.model.name,
        backend=jax.default_backend(),
        devices=engine.place.count,
        batch=batch,
        members=members,
        summary_params=sum(n.params for n in nodes),
        lowered_params=_count(st["params"], members),
        summary_state=sum(n.state for n in nodes),
        lowered_state=_count(st["model_state"], members),
        lower_s=t1 - t0,
        compile_s=t2 - t1,
        flops=cost.get("flops"),
        bytes_accessed=cost.get("bytes accessed"),
        peak_bytes=_peak(compiled),
        estimate_bytes=estimate(program.model, program.train, program.data).total,
    )
