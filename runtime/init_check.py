"""`dnn init-check SPEC`: one batch through the freshly initialized model (issue 21, point 4).

The lectures' point about initialization, shown on the user's own model: a 20-layer tanh net
drawn from `normal(0, 1)` saturates, the same net from `glorot_normal` keeps its variance, and a
ReLU net needs `he_normal`. One batch (the spec's train split, or unit-variance noise) goes
through the model as `dnn train` initializes it (the spec's seed and `train.init`, training
mode: batch statistics, dropout on), and the loss's gradient comes back. Per layer:

- `mean`, `std`: of its output over the batch and every unit;
- `dead`: for a pointwise activation (the `pointwise` trait), the share of its units whose
  slope f'(x) is 0 for every example of the batch: no gradient reaches what feeds them;
- `saturated`: for a saturating one (`saturating`: bounded, its slope vanishing at both ends),
  the share of its values where the slope is below 1/20 of its slope at 0;
- `grad std`, `weight std`: over the layer's weights, of the loss's gradient and of the
  weights themselves.

Findings, as warnings at the layer's line (W0807), with the lecture's cure as the hint: an
output whose std is below 1/100 of the input's (vanishing) or above 100 times it (exploding);
more than half the units dead or the values saturated; the first weighted layer's gradient std
1,000 times below the last one's (vanishing gradients) or above it (exploding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from dnn.compiler.diagnostics import W_INIT, Diagnostic, Span
from dnn.compiler.ir import Node, Program
from dnn.compiler.rules import heads, target_kind

from . import pipeline
from .data import transforms
from .data.table import Table
from .health import leaves_by_node, slopes
from .train import Engine, TrainingError

VANISH, EXPLODE = 1e-2, 1e2  # output std / the input's
DEAD, SATURATED = 0.5, 0.5  # shares of units, of values
SLOPE = 1 / 20  # saturated: the slope below this share of the slope at 0
GRADIENTS = 1e3  # first / last weighted layer's gradient std


@dataclass(frozen=True)
class LayerStats:
    """One node at initialization (None where a statistic does not apply)."""

    name: str
    op: str
    span: Span
    mean: float
    std: float
    dead: float | None = None
    saturated: float | None = None
    grad_std: float | None = None
    weight_std: float | None = None


@dataclass(frozen=True)
class Report:
    """What one batch did in the initialized model."""

    model: str
    source: str  # where the batch came from, in words
    batch: int
    loss: float
    input_std: float
    layers: tuple[LayerStats, ...]

    def findings(self) -> list[Diagnostic]:
        """Warnings at the lines of the layers that vanish, explode, die or saturate; layers
        of one line (a repeat, a block) with the same finding share one warning."""
        found: dict[tuple[str, Span], list[tuple[LayerStats, str]]] = {}

        def note(kind: str, s: LayerStats, message: str) -> None:
            found.setdefault((kind, s.span), []).append((s, message))

        for s in self.layers:
            ratio = s.std / self.input_std if self.input_std > 0 else 1.0
            if ratio < VANISH:
                note(
                    "vanish",
                    s,
                    f"`{s.name}`'s outputs vanish: std {s.std:.2g}, {ratio:.1e} of the input's",
                )
            elif ratio > EXPLODE:
                note(
                    "explode",
                    s,
                    f"`{s.name}`'s outputs explode: std {s.std:.3g}, {ratio:.3g} times the input's",
                )
            if s.dead is not None and s.dead > DEAD:
                note(
                    "dead",
                    s,
                    f"`{s.name}`: {s.dead:.0%} of its units are dead (slope 0 for "
                    "every example of the batch)",
                )
            if s.saturated is not None and s.saturated > SATURATED:
                note(
                    "saturated",
                    s,
                    f"`{s.name}` saturates: {s.saturated:.0%} of its values "
                    "sit where its slope is below 1/20 of its slope at 0",
                )
        weighted = [s for s in self.layers if s.grad_std is not None]
        if len(weighted) >= 2:
            first, last = weighted[0], weighted[-1]
            g0, g1 = first.grad_std or 0.0, last.grad_std or 0.0
            if g0 * GRADIENTS < g1:
                note(
                    "gradients",
                    first,
                    f"gradients vanish: `{first.name}`'s gradient std "
                    f"{g0:.2g} is {g1 / max(g0, 1e-300):.2g} times below the last weighted "
                    f"layer's (`{last.name}`, {g1:.2g})",
                )
            elif g0 > GRADIENTS * g1:
                note(
                    "gradients",
                    first,
                    f"gradients explode: `{first.name}`'s gradient std "
                    f"{g0:.2g} is {g0 / max(g1, 1e-300):.2g} times the last weighted layer's "
                    f"(`{last.name}`, {g1:.2g})",
                )
        out = []
        for (kind, span), hits in found.items():
            s, message = hits[0]
            if len(hits) > 1:
                more = [h.name for h, _ in hits[1:]]
                listed = f"`{more[0]}`" if len(more) == 1 else f"`{more[0]}` ... `{more[-1]}`"
                message += f"; so do {len(more)} more layers of this line ({listed})"
            out.append(Diagnostic(W_INIT, message, span, _HINTS[kind], severity="warning"))
        return out

    def table(self) -> str:
        """The per-layer statistics as text columns."""
        head = ("layer", "op", "line", "mean", "std", "dead", "saturated", "grad std", "weight std")
        rows = [head]
        for s in self.layers:
            rows.append(
                (
                    s.name,
                    s.op,
                    str(s.span.line) if s.span.line else "",
                    f"{s.mean:.3g}",
                    f"{s.std:.3g}",
                    _share(s.dead),
                    _share(s.saturated),
                    _num(s.grad_std),
                    _num(s.weight_std),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in rows
        ]
        title = (
            f"init-check `{self.model}`: {self.source}, at initialization; loss "
            f"{self.loss:.4g}, input std {self.input_std:.3g}"
        )
        return "\n".join([title, *(" " + line.rstrip() for line in lines)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "source": self.source,
            "batch": self.batch,
            "loss": self.loss,
            "input_std": self.input_std,
            "layers": [
                {k: v for k, v in s.__dict__.items() if k != "span"} | {"line": s.span.line}
                for s in self.layers
            ],
        }


_VARIANCE_HINT = (
    "draw the weights to keep the variance from layer to layer: `he_normal` before ReLUs, "
    "`glorot_normal` before tanh or sigmoid (`init = ...` on the layer or `train.init`); or "
    "add `batchnorm`"
)
_DEAD_HINT = (
    "start ReLUs alive: `he_normal` weights, a small positive bias, `leaky_relu` or `elu`, "
    "or `batchnorm` before the activation"
)
_SATURATION_HINT = (
    "draw smaller weights (`glorot_normal` keeps tanh and sigmoid in their slope), normalize "
    "the inputs (`data.normalize = standardize`), or use `relu` with `he_normal`"
)
_GRADIENT_HINT = (
    "keep the gradient's scale through depth: ReLU with `he_normal`, `batchnorm`, residual "
    "connections (`add`), or `clip = norm(1.0)` against explosion"
)
_HINTS = {
    "vanish": _VARIANCE_HINT,
    "explode": _VARIANCE_HINT,
    "dead": _DEAD_HINT,
    "saturated": _SATURATION_HINT,
    "gradients": _GRADIENT_HINT,
}


def _share(v: float | None) -> str:
    return "" if v is None else f"{v:.0%}"


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.3g}"


# ------------------------------------------------------------------ the measurement


def init_check(program: Program, batch: int = 256, noise: bool = False) -> Report:
    """Push `batch` examples through the initialized model and back (see the module doc).

    `noise`: unit-variance inputs (and random targets) instead of the spec's data; the choice
    when the spec has no data section.
    """
    assert program.model is not None
    use_noise = noise or program.data is None
    prepared = _noise(program, batch) if use_noise else pipeline.prepare(program)
    table = prepared.splits["train"]
    n = min(batch, len(table.y))
    source = (
        f"{n} examples of unit-variance noise"
        if use_noise
        else f"{n} examples of the train split ({table.origin})"
    )
    engine = Engine(program, prepared, 1)
    st = engine.init()
    params = engine.to_disk(st["params"])
    state = engine.to_disk(st["model_state"])
    x = jnp.asarray(table.x[:n])
    y = jnp.asarray(table.y[:n])
    model, graph = engine.init_model, program.model
    key = jax.random.fold_in(jax.random.key(program.train.seed), 2)

    def run(p: Any) -> tuple[Any, dict[str, Any]]:
        values = engine.every_value(p, state, x, key, model)
        outs = tuple(values[o].astype(jnp.float32) for o in graph.outputs)
        return engine.loss(outs[0] if len(outs) == 1 else outs, y), values

    (loss, values), grads = jax.value_and_grad(run, has_aux=True)(params)
    if not np.isfinite(float(loss)):
        raise TrainingError(
            f"the loss of the initialized model is {float(loss)} on this batch",
            "check the inputs for NaN or infinite values, and the weights' scale (`init`)",
        )
    weights, gradients = _by_node(graph.nodes, params), _by_node(graph.nodes, grads)
    stats = []
    inputs = [np.asarray(values[i], np.float64) for i in graph.inputs]
    for node in graph.nodes:
        if node.op == "input":
            continue
        out = np.asarray(values[node.name], np.float64)
        s = LayerStats(node.name, node.op, node.span, float(out.mean()), float(out.std()))
        if node.kind == "activation":
            s = replace(s, **_slopes(node, values[node.inputs[0]]))
        if node.name in weights:
            s = replace(
                s,
                grad_std=_std(gradients[node.name]),
                weight_std=_std(weights[node.name]),
            )
        stats.append(s)
    input_std = float(np.concatenate([a.ravel() for a in inputs]).std())
    return Report(graph.name, source, n, float(loss), input_std, tuple(stats))


def _noise(program: Program, batch: int) -> pipeline.Prepared:
    """A train split of unit-variance inputs and random targets of the loss's task."""
    assert program.model is not None
    head = heads(program.model, program.train)
    if len(program.model.outputs) == 1 and (not head or head[0].task is None):
        raise TrainingError(  # a model file alone is not held to the default loss by check
            f"the gradient needs a loss: `{program.train.loss.name}` (the default) does not fit the "
            f"model's {transforms.outputs(program)} output unit"
            + "s"
            * (transforms.outputs(program) != 1),
            "write the loss the model trains with: `train { loss = mse }`, say",
        )
    task = transforms.task_of(program)
    if task == transforms.MULTI:
        raise TrainingError(
            "init-check on noise needs the targets of one output; this model has "
            f"{len(program.model.outputs)}",
            "give the spec a data section, and leave out --noise",
        )
    rng = np.random.default_rng(program.train.seed)
    shapes = transforms.input_sizes(program)
    if any(program.model.node(n).dtype.startswith(("i", "u")) for n, _ in shapes):
        raise TrainingError(
            "init-check on noise needs real-valued inputs; this model takes integer ids",
            "give the spec a data section with its ids, and leave out --noise",
        )
    width = sum(math.prod(s) for _, s in shapes)
    x = rng.normal(size=(batch, width)).astype(np.float32)
    units = transforms.outputs(program)
    if target_kind(task) == "classification":
        classes = max(units, 2)
        y = rng.integers(0, classes, size=batch).astype(np.int32)
        table = Table(x, y, "classification", classes, tuple(map(str, range(classes))), "noise")
    else:
        y = rng.normal(size=(batch, units)).astype(np.float32)
        table = Table(x, y, "regression", None, (), "noise")
    table = replace(table, x=table.x.reshape(batch, *transforms.model_input_shape(program)))
    return pipeline.Prepared(
        {"train": table}, {}, table.x.shape[1:], task, table.classes, table.class_names
    )


def _slopes(node: Node, pre: Any) -> dict[str, float]:
    """`dead` and `saturated` of a pointwise activation (runtime/health.py `slopes`)."""
    dead, saturated = (float(v) for v in slopes(node, pre))
    out = {"dead": dead, "saturated": saturated}
    return {k: v for k, v in out.items() if np.isfinite(v)}


def _by_node(nodes: tuple[Node, ...], tree: Any) -> dict[str, list[np.ndarray]]:
    """A params-shaped tree's leaves by node, in float64."""
    grouped = leaves_by_node(nodes, tree)
    return {k: [np.asarray(a, np.float64) for a in v] for k, v in grouped.items()}


def _std(leaves: list[np.ndarray]) -> float:
    return float(np.concatenate([a.ravel() for a in leaves]).std())
