"""Training health (issue 21, points 1-3): per-layer statistics inside the compiled step.

`health = { every: 50 steps }` in the train section (or `dnn train --health`) makes every k-th
step also compute, per node of the model (in float32, on that step's batch, in training
mode, from the weights before the step's update):

  mean, std      of its output over the batch and every unit
  dead           pointwise activations: the share of units whose slope is 0 for every example
  saturated      saturating activations: the share of values whose slope is below 1/20 of
                 the slope at 0
  grad_norm      layers with weights: the L2 norm of the loss's gradient over them
  update_ratio   ||the optimizer's update|| / ||the weights||  (about 1e-3 is healthy)

The statistics are taken under `lax.cond` on the step count, so the other steps run as
before (in an ensemble, vmapped, both branches run), and gathered on the device in the
epoch's accumulator; the loop reads them once per epoch and appends them to the run's
`health.jsonl` (and to TensorBoard, `<run>/tensorboard`, when tensorboardX is installed). With
health off the compiled step is the one it always was (nothing is traced).
After the run: one heatmap per statistic (layers x checks) in `plots/health_<name>.png`, and
the diagnoses as warnings at the layers' spec lines (`diagnose`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from dnn.compiler.diagnostics import W_HEALTH, Diagnostic
from dnn.compiler.ir import Node, Program
from dnn.compiler.lower_flax import lowering
from dnn.compiler.lower_optax import steps
from dnn.compiler.lower_scan import relayout
from dnn.compiler.registry.layers import ACTIVATIONS

COLUMNS = ("mean", "std", "dead", "saturated", "grad_norm", "update_ratio")
SLOPE = 1 / 20  # saturated: a slope below this share of the slope at 0


def every(program: Program, steps_per_epoch: int, forced: int | None = None) -> int:
    """Steps between two checks: `train.health.every` (or `forced`, `--health`); 0: off."""
    rec = getattr(program.train, "health", None)
    if rec is None:
        return forced or 0
    span = program.train.span_of("health")
    return max(1, steps(rec.get("every"), steps_per_epoch, span, "health.every"))


def nodes(program: Program) -> tuple[Node, ...]:
    """The nodes health reports on: every one but the inputs, in graph order."""
    assert program.model is not None
    return tuple(n for n in program.model.nodes if n.op != "input")


# ------------------------------------------------------------------ device side


def slopes(node: Node, pre: Any) -> tuple[Any, Any]:
    """(dead, saturated) of an activation node from its input values `pre` (a batch): NaN
    where they do not apply (not pointwise, not saturating). Traceable."""
    nan = jnp.full((), jnp.nan, jnp.float32)
    entry = ACTIVATIONS.lookup(node.op)
    if node.kind != "activation" or entry is None or "pointwise" not in entry.traits:
        return nan, nan
    if node.params:  # prelu: its slope is a weight, not a fixed function
        return nan, nan
    fn = lowering(node)
    pre = pre.astype(jnp.float32)
    slope = jax.jvp(lambda v: fn(node, [v], False), (pre,), (jnp.ones_like(pre),))[1]
    units = slope.reshape(slope.shape[0], -1)
    dead = jnp.mean(jnp.all(units == 0, axis=0).astype(jnp.float32))
    if "saturating" not in entry.traits:
        return dead, nan
    with jax.ensure_compile_time_eval():  # a constant of the function, even inside a trace
        at0 = abs(float(jax.grad(lambda v: jnp.sum(fn(node, [v], False)))(jnp.zeros((1,)))[0]))
    return dead, jnp.mean((jnp.abs(slope) < SLOPE * at0).astype(jnp.float32))


def stats(
    engine: Any, st: Any, x: Any, key: Any, grads: Any, updates: Any, member_axis: bool = False
) -> Any:
    """The statistics of one step: a (nodes, len(COLUMNS)) float32 array, NaN where a column
    does not apply. Traced inside the training step (one member's trees)."""
    program = engine.program
    thawed = engine.thawed(st["step"])
    values = engine.every_value(st["params"], st["model_state"], x, key, thawed=thawed)
    per_node = [_per_node(engine, t) for t in (grads, updates, st["params"])]
    rows = []
    nan = jnp.full((), jnp.nan, jnp.float32)
    for node in nodes(program):
        v = values[node.name].astype(jnp.float32)
        dead, saturated = slopes(node, values[node.inputs[0]]) if node.inputs else (nan, nan)
        g, u, w = (d.get(node.name) for d in per_node)
        grad = _norm(g) if g else nan
        ratio = _norm(u) / jnp.maximum(_norm(w), 1e-30) if u and w else nan
        rows.append(jnp.stack([jnp.mean(v), jnp.std(v), dead, saturated, grad, ratio]))
    return jnp.stack(rows)


def _per_node(engine: Any, tree: Any) -> dict[str, list[Any]]:
    """A params-shaped tree's leaves by node name (scanned runs unstacked)."""
    if engine.scan is not None:
        tree = relayout(tree, engine.scan, False, 0)
    return leaves_by_node(engine.program.model.nodes, tree)


def leaves_by_node(graph_nodes: tuple[Node, ...], tree: Any) -> dict[str, list[Any]]:
    """A per-node params-shaped tree's leaves grouped by the node they belong to: the
    longest prefix of a leaf's path that names a node (`block_1/dense/kernel`)."""
    names = {n.name for n in graph_nodes}
    out: dict[str, list[Any]] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = [str(getattr(k, "key", k)) for k in path]
        for cut in range(len(keys) - 1, 0, -1):
            if "/".join(keys[:cut]) in names:
                out.setdefault("/".join(keys[:cut]), []).append(leaf)
                break
    return out


def _norm(leaves: list[Any]) -> Any:
    return jnp.sqrt(sum(jnp.sum(jnp.square(a.astype(jnp.float32))) for a in leaves))


def empty(program: Program, slots: int) -> dict[str, Any]:
    """The accumulator's health part: `slots` checks of one epoch."""
    return {
        "stats": jnp.full((slots, len(nodes(program)), len(COLUMNS)), jnp.nan, jnp.float32),
        "steps": jnp.full((slots,), -1, jnp.int32),
        "n": jnp.zeros((), jnp.int32),
    }


def record(acc: dict[str, Any], step: Any, row: Any) -> dict[str, Any]:
    i = jnp.minimum(acc["n"], acc["steps"].shape[0] - 1)
    return {
        "stats": acc["stats"].at[i].set(row),
        "steps": acc["steps"].at[i].set(step),
        "n": acc["n"] + 1,
    }


# ------------------------------------------------------------------ host side


def write(path: Path, program: Program, acc: Any, epoch: int, members: int) -> list[dict]:
    """Append the epoch's checks to `health.jsonl` (one line per check and member); returns
    the lines written."""
    got = jax.device_get(acc)
    names = [n.name for n in nodes(program)]
    lines = []
    for m in range(members):
        one = jax.tree.map(lambda a, m=m: np.asarray(a)[m] if members > 1 else np.asarray(a), got)
        for k in range(min(int(one["n"]), len(one["steps"]))):
            layers = {
                name: {c: _json(v) for c, v in zip(COLUMNS, row, strict=True)}
                for name, row in zip(names, one["stats"][k], strict=True)
            }
            line: dict[str, Any] = {"epoch": epoch, "step": int(one["steps"][k]) + 1}
            if members > 1:
                line["member"] = m
            lines.append(line | {"layers": layers})
    with path.open("a") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    return lines


def to_tensorboard(folder: Path, lines: list[dict[str, Any]]) -> bool:
    """Send checks to TensorBoard (`<run>/tensorboard`, scalars `health/<stat>/<layer>`, one
    folder per ensemble member) when tensorboardX is installed (the `tensorboard` extra);
    False when it is not."""
    from . import tensorboard

    if not tensorboard.available():
        return False
    writers: dict[int, Any] = {}
    try:
        for line in lines:
            m = line.get("member", 0)
            if m not in writers:
                sub = folder / tensorboard.FOLDER / (f"member_{m}" if "member" in line else "")
                writers[m] = tensorboard.writer(sub)
            for layer, row in line["layers"].items():
                for col, v in row.items():
                    if v is not None:
                        writers[m].add_scalar(f"health/{col}/{layer}", v, line["step"])
    finally:
        for w in writers.values():
            w.close()
    return True


def _json(v: float) -> float | None:
    return None if not math.isfinite(float(v)) else float(v)


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot(lines: list[dict[str, Any]], folder: Path) -> list[Path]:
    """One heatmap per statistic: layers (rows, graph order) x checks (columns); the norms
    and ratios on a log10 scale."""
    from .rundir import plotting

    lines = [ln for ln in lines if ln.get("member", 0) == 0]
    if not lines:
        return []
    Figure, FigureCanvasAgg = plotting()
    folder.mkdir(parents=True, exist_ok=True)
    names = list(lines[0]["layers"])
    written = []
    for col in COLUMNS:
        grid = np.array([[_nan(ln["layers"][n][col]) for ln in lines] for n in names], np.float64)
        if np.all(np.isnan(grid)):
            continue
        log = col in ("grad_norm", "update_ratio")
        shown = np.log10(np.where(grid > 0, grid, np.nan)) if log else grid
        rows = [i for i in range(len(names)) if not np.all(np.isnan(grid[i]))]
        fig = Figure(
            figsize=(max(6, len(lines) * 0.12 + 3), max(3, len(rows) * 0.22 + 1.5)), dpi=100
        )
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        image = ax.imshow(shown[rows], aspect="auto", interpolation="nearest", cmap="viridis")
        ax.set_yticks(range(len(rows)), [names[i] for i in rows], fontsize=7)
        ticks = np.linspace(0, len(lines) - 1, min(len(lines), 8)).astype(int)
        ax.set_xticks(ticks, [str(lines[i]["step"]) for i in ticks], fontsize=7)
        ax.set_xlabel("step")
        ax.set_title(f"{col} (log10)" if log else col)
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        path = folder / f"health_{col}.png"
        fig.savefig(path)
        written.append(path)
    return written


def _nan(v: float | None) -> float:
    return math.nan if v is None else float(v)


# ------------------------------------------------------------------ diagnoses

VANISHING = 1e3  # first / last weighted layer's gradient norm
EXPLODING = 1e3  # growth of a layer's gradient norm from its first check to its last
DYING = SATURATING = 0.5  # in most checks
RATIO_LOW, RATIO_HIGH = 1e-5, 1e-1  # the update ratio's median, around the healthy 1e-3


def diagnose(program: Program, lines: list[dict[str, Any]]) -> list[Diagnostic]:
    """The lectures' failure modes in a run's health checks, as warnings at the layers' lines
    (member 0 of an ensemble; layers of one line with one finding share a warning)."""
    lines = [ln for ln in lines if ln.get("member", 0) == 0]
    if not lines:
        return []
    found: dict[tuple[str, Any], list[tuple[str, str]]] = {}
    by_name = {n.name: n for n in nodes(program)}

    def series(name: str, col: str) -> np.ndarray:
        return np.array([_nan(ln["layers"].get(name, {}).get(col)) for ln in lines])

    def note(kind: str, node: Node, message: str) -> None:
        found.setdefault((kind, node.span), []).append((node.name, message))

    most = len(lines) // 2 + 1
    weighted = [n for n in by_name.values() if not np.all(np.isnan(series(n.name, "grad_norm")))]
    if len(weighted) >= 2:
        first, last = series(weighted[0].name, "grad_norm"), series(weighted[-1].name, "grad_norm")
        low = np.sum(first * VANISHING < last)
        if low >= min(3, len(lines)):
            note(
                "vanishing",
                weighted[0],
                f"gradients vanish: `{weighted[0].name}`'s gradient "
                f"norm is {VANISHING:.0e} times below the last weighted layer's (`"
                f"{weighted[-1].name}`) in {low} of {len(lines)} checks (median "
                f"{np.nanmedian(first):.2g} against {np.nanmedian(last):.2g})",
            )
    for node in by_name.values():
        g = series(node.name, "grad_norm")
        ok = g[np.isfinite(g) & (g > 0)]
        if len(ok) >= 2 and ok[-1] > EXPLODING * ok[0]:
            note(
                "exploding",
                node,
                f"gradients explode: `{node.name}`'s gradient norm grew "
                f"from {ok[0]:.2g} to {ok[-1]:.2g}",
            )
        dead = series(node.name, "dead")
        if np.sum(dead > DYING) >= most:
            note(
                "dying",
                node,
                f"`{node.name}`: more than half of its units are dead in "
                f"{int(np.sum(dead > DYING))} of {len(lines)} checks (last {dead[-1]:.0%})",
            )
        sat = series(node.name, "saturated")
        if np.sum(sat > SATURATING) >= most:
            note(
                "saturating",
                node,
                f"`{node.name}` saturates: more than half of its values "
                f"in {int(np.sum(sat > SATURATING))} of {len(lines)} checks (last {sat[-1]:.0%})",
            )
        r = series(node.name, "update_ratio")
        if np.any(np.isfinite(r)):
            med = float(np.nanmedian(r))
            if med < RATIO_LOW or med > RATIO_HIGH:
                note(
                    "ratio",
                    node,
                    f"`{node.name}`'s updates are {med:.1e} of its weights per "
                    "step (median), far from the healthy 1e-3",
                )
    out = []
    for (kind, span), hits in found.items():
        message = hits[0][1]
        if len(hits) > 1:
            more = [h for h, _ in hits[1:]]
            listed = f"`{more[0]}`" if len(more) == 1 else f"`{more[0]}` ... `{more[-1]}`"
            message += f"; so do {len(more)} more layers of this line ({listed})"
        out.append(Diagnostic(W_HEALTH, message, span, _HINTS[kind], severity="warning"))
    return out


_HINTS = {
    "vanishing": "keep the gradient's scale through depth: ReLU with `he_normal`, `batchnorm`, "
    "or residual connections (`add`)",
    "exploding": "lower the learning rate, add `clip = global_norm(1.0)`, or `batchnorm`",
    "dying": "lower the learning rate; start ReLUs alive with `he_normal`, or use `leaky_relu` "
    "or `elu`",
    "saturating": "draw smaller weights (`glorot_normal`), normalize the inputs, add "
    "`batchnorm`, or use `relu`",
    "ratio": "the learning rate is off for this layer: about 1e-3 of the weights per step is "
    "the rule of thumb (CS231n); change `lr`, or this layer's `lr_scale`",
}
