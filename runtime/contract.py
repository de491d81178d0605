"""The checks-implies-trains contract, exercised on one checked spec (DESIGN §2.9).

`exercise(program)` does what `dnn train`, `dnn eval` and `dnn predict` do with a spec, on the
engine those commands drive, and reports every breach of the contract: a lowered parameter
count other than the one `dnn check` computed, a validation loss that does not move when the
weights do (a loss constant in the weights trains silently to nothing), non-finite reports or
predictions of the wrong shape. tests/test_contract.py runs it over a minimal spec per registry
word; bench/fuzz_train.py over thousands of mutated examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import numpy as np
from dnn.compiler.ir import Program

from . import infer, pipeline
from .fit import _one_epoch, _stream_epoch, enable_compile_cache, fresh_start
from .progress import Display
from .train import Engine, batched, device_data, evaluate_split


@dataclass
class Exercise:
    """What one spec did: parameter counts, val loss before and after training, test report."""

    checked_params: int
    lowered_params: int
    before: dict[str, float]
    after: dict[str, float]
    test: dict[str, float]
    predictions: tuple[tuple[int, ...], ...]  # one shape per output
    expected: tuple[tuple[int, ...], ...]
    notes: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Every breach of the contract, as a sentence; empty when it holds."""
        out = []
        if self.lowered_params != self.checked_params:
            out.append(
                f"lowered {self.lowered_params} parameters, check said {self.checked_params}"
            )
        for name, report in (("before", self.before), ("after", self.after), ("test", self.test)):
            bad = [k for k, v in report.items() if not np.isfinite(v)]
            if bad:
                out.append(f"non-finite {', '.join(bad)} {name} training")
        if self.before.get("loss") == self.after.get("loss") and self.lowered_params:
            out.append("the loss does not change with the weights")
        if self.predictions != self.expected:
            out.append(f"predictions of shape {self.predictions}, expected {self.expected}")
        return out + self.notes


def exercise(program: Program, epochs: int = 2, limit: int | None = None) -> Exercise:
    """Train `epochs` epochs (on at most `limit` examples per split), evaluate, predict.

    Raises what `dnn train` would raise: a `SpecError` for what the data tells, anything
    else is a bug the caller counts.
    """
    enable_compile_cache()  # as `dnn train`: a word that leaves the step alone reuses its program
    prepared = pipeline.prepare(program)
    if limit is not None:
        splits = {k: _head(t, limit) for k, t in prepared.splits.items()}
        streamed = {k: replace(t, rows=t.rows[:limit]) for k, t in prepared.streamed.items()}
        prepared = replace(prepared, splits=splits, streamed=streamed)
    engine = Engine(program, prepared, 1)
    st = engine.init()
    assert program.model is not None
    notes = []
    if program.train.pretrain is not None or program.train.init_from:  # as `dnn train` does
        started = st["params"]
        st, records = fresh_start(program, engine, st)
        if program.train.pretrain is not None:
            notes = _pretrain_notes(started, st["params"], records)
    lowered = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(st["params"]))
    placed = device_data(prepared, engine.place)  # none where the splits are streamed
    data: dict[str, Any] = prepared.streamed or {k: batched(*v) for k, v in placed.items()}
    watched = "val" if prepared.size("val") else "train"
    before = _report(engine, st, data[watched])
    with Display(epochs, engine.steps_per_epoch, "quiet") as display:
        for epoch in range(1, epochs + 1):
            if prepared.streamed:
                st, _, _ = _stream_epoch(engine, st, epoch, data["train"], display)
            else:
                st, _ = _one_epoch(engine, st, epoch, *placed["train"], display)
    after = _report(engine, st, data[watched])
    test = _report(engine, st, data["test"]) if prepared.size("test") else {}
    x = prepared.splits["test" if prepared.size("test") else "train"].x
    out = infer._forward_all(engine, st, x)
    outs = out if isinstance(out, tuple) else (out,)  # several outputs: one array each
    nodes = [program.model.node(o) for o in program.model.outputs]
    return Exercise(
        program.model.trainable,
        lowered,
        before,
        after,
        test,
        tuple(tuple(o.shape) for o in outs),
        tuple((len(x), *n.shape) for n in nodes),
        notes,
    )


def _pretrain_notes(before: Any, after: Any, records: list[dict[str, Any]]) -> list[str]:
    """A pretraining that reported nothing, a non-finite error, or left the weights as they
    were breaks the contract."""
    if not records:
        return ["pretraining reported no epoch"]
    out = [
        f"non-finite reconstruction error: {r}"
        for r in records
        if not math.isfinite(r["recon_error"])
    ]
    changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), before, after)
    if not any(jax.tree.leaves(changed)):
        out.append("pretraining left every weight as it was")
    return out


def _head(table: Any, n: int) -> Any:
    return replace(table, x=table.x[:n], y=table.y[:n], index=None)


def _report(engine: Engine, st: Any, split: Any) -> dict[str, float]:
    return {k: float(v) for k, v in evaluate_split(engine, st, split).items()}
