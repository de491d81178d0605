"""Where a non-finite loss came from (issue 21, point 3: the NaN guard names the layer).

The training step only marks the first step whose loss is not finite (nan or inf): nothing is
read back per step, and the compiled step stays as it is. When a run stops on that mark,
`locate` replays the run up to that step — from its last checkpoint, or from the start, as
`--resume` would: the batches of epoch e and the randomness of step s depend only on the seed,
e and s — and, before each step of the failing epoch, checks with one compiled function what
that step computes, in the order it computes it:

1. the batch itself (a data problem, not a layer one);
2. every node's output, forward in graph order: the first that is not finite, its inputs being
   finite, is where it appeared (an overflow, a log of 0);
3. the loss of finite outputs;
4. the gradient, which flows from the outputs back: the non-finite layer nearest the outputs
   is where it appeared, every layer before it inheriting it;
5. the optimizer's update of finite gradients (a rate-dividing optimizer, say).

A replay that finds every step of the epoch finite (a step compiled on its own can round
differently from a scanned epoch) says so, and the run's error stands without a layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from dnn.compiler.diagnostics import Span
from dnn.compiler.ir import Node, Program

from .health import leaves_by_node
from .progress import Display
from .train import Engine


@dataclass(frozen=True)
class Origin:
    """Where a non-finite value first appeared at one step."""

    what: str  # batch | outputs | loss | gradients | update
    epoch: int
    step: int  # 0-based, counted from the start of training
    member: int = 0  # ensembles: the member
    node: Node | None = None  # outputs, gradients: the layer
    value: str = "nan"  # nan | inf

    def sentence(self) -> str:
        """How it appeared, for the error message."""
        name = f"`{self.node.name}` ({self.node.op})" if self.node is not None else ""
        member = f" in ensemble member {self.member}" if self.member else ""
        return {
            "batch": f"the batch itself holds {self.value}{member}",
            "outputs": f"the outputs of {name} are the first that are not ({self.value}; its "
            f"inputs are finite){member}",
            "loss": f"every layer's output is finite, the loss is not ({self.value}){member}",
            "gradients": f"the forward pass and the loss are finite; the gradient is first not "
            f"finite ({self.value}) at {name}, the layer nearest the outputs where it is not"
            f"{member}",
            "update": f"the gradients are finite; the optimizer's update is not "
            f"({self.value}){member}",
        }[self.what]

    def span(self, program: Program) -> Span | None:
        if self.node is not None:
            return self.node.span
        if self.what == "loss":
            return program.train.span_of("loss")
        if self.what == "update":
            return program.train.span_of("optimizer")
        return None


def locate(
    program: Program,
    engine: Engine,
    folder: Path,
    epoch: int,
    x: Any,
    y: Any,
    data: dict[str, Any],
) -> Origin | None:
    """Replay the run to the failing `epoch` and find where its first non-finite value
    appeared (None where the replay finds none). `x`, `y`: the train split on the device;
    `data`: the run's batched splits (the epochs' validation, as the run did it)."""
    from . import checkpoint
    from .fit import Loop, _one_epoch, _record, fresh_start

    loop = Loop(program, engine, folder, "val" in data)
    st = engine.init()  # a seed gives the same start (and the same transfer and pretraining)
    if checkpoint.exists(folder / "checkpoints" / "last"):
        st = loop.resume(st)
    else:
        st, _ = fresh_start(program, engine, st)
    n = int(x.shape[0])
    with Display(max(epoch, 1), engine.steps_per_epoch, "quiet") as display:
        for e in range(loop.start, epoch):
            st, acc = _one_epoch(engine, st, e, x, y, display)
            st, _ = loop.end_epoch(st, e, _record(engine, st, acc, data, e, n, 0.0))
    check = _checker(program, engine)
    full, tail = engine.order(epoch, n)
    batches = [(full, i) for i in range(engine.full)] + ([(tail, 0)] if tail is not None else [])
    first = (epoch - 1) * engine.steps_per_epoch
    for k, (order, i) in enumerate(batches):
        idx = order[i]
        found = _first(program, jax.device_get(check(st, x[idx], y[idx])), epoch, first + k)
        if found is not None:
            return found
        st, _ = engine.step(st, engine.train_acc(), x, y, order, i)
    return None


def _checker(program: Program, engine: Engine) -> Any:
    """One compiled function: the finiteness of everything a step computes, per member."""
    graph = program.model
    assert graph is not None
    names = [n.name for n in graph.nodes]

    def one(st: Any, member: Any, xb: Any, yb: Any) -> dict[str, Any]:
        key = jax.random.fold_in(jax.random.fold_in(engine._keys(member), 3), st["step"])
        _, k_drop = jax.random.split(key)
        thawed = engine.thawed(st["step"])
        values = engine.every_value(st["params"], st["model_state"], xb, k_drop, thawed=thawed)

        def objective(params: Any) -> Any:
            out, _ = engine._forward(params, st["model_state"], xb, True, k_drop, thawed)
            return engine.loss(out, yb) + engine.penalty(params)

        loss, grads = jax.value_and_grad(objective)(st["params"])
        updates, _ = engine.tx.update(grads, st["opt"], st["params"])
        return {
            "batch": _state(xb),
            "outputs": jnp.stack([_state(values[n]) for n in names]),
            "loss": _state(loss),
            "gradients": jax.tree.map(_state, engine.to_disk(grads)),
            "update": jnp.max(jnp.stack([_state(u) for u in jax.tree.leaves(updates)] or [0])),
        }

    def check(st: Any, xb: Any, yb: Any) -> Any:
        if engine.members == 1:
            return one(st, engine.member_ids, xb, yb)
        return jax.vmap(one, in_axes=(0, 0, None, None))(st, engine.member_ids, xb, yb)

    return jax.jit(check)


def _state(a: Any) -> Any:
    """0 finite, 1 holds an infinity (and no nan), 2 holds a nan."""
    a = jnp.asarray(a)
    if not jnp.issubdtype(a.dtype, jnp.floating):
        return jnp.zeros((), jnp.int32)
    return jnp.where(jnp.isnan(a).any(), 2, jnp.where(jnp.isinf(a).any(), 1, 0)).astype(jnp.int32)


_VALUE = {1: "inf", 2: "nan"}


def _first(program: Program, found: dict[str, Any], epoch: int, step: int) -> Origin | None:
    """The first non-finite thing of one step, in the order the step computes them."""
    graph = program.model
    assert graph is not None
    members = np.asarray(found["loss"]).size  # ensembles: a leading member axis
    for m in range(members):
        at = jax.tree.map(lambda a, m=m: np.asarray(a)[m] if members > 1 else np.asarray(a), found)
        base = {"epoch": epoch, "step": step, "member": m}
        if at["batch"]:
            return Origin("batch", value=_VALUE[int(at["batch"])], **base)
        for node, s in zip(graph.nodes, np.asarray(at["outputs"]).reshape(-1), strict=True):
            if s:
                return Origin("outputs", node=node, value=_VALUE[int(s)], **base)
        if at["loss"]:
            return Origin("loss", value=_VALUE[int(at["loss"])], **base)
        bad = _layers_with(graph.nodes, at["gradients"])
        if bad:
            node, s = bad[-1]  # nearest the outputs: the gradient flows back from there
            return Origin("gradients", node=node, value=_VALUE[s], **base)
        if at["update"]:
            return Origin("update", value=_VALUE[int(at["update"])], **base)
    return None


def _layers_with(nodes: tuple[Node, ...], tree: Any) -> list[tuple[Node, int]]:
    """The nodes (graph order) whose gradient leaves are not finite, with the worst state."""
    grouped = leaves_by_node(nodes, tree)
    worst = {name: max(int(np.max(a)) for a in leaves) for name, leaves in grouped.items()}
    return [(n, worst[n.name]) for n in nodes if worst.get(n.name, 0)]
