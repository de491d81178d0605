"""Greedy layer-wise pretraining before step 0 (`train { pretrain = cd(...) }`).

The driver, `pretrain`, takes the `pretrainable` layers (compiler/rules.py
`pretrained_layers`: the `rbm`s) in network order. For each, it computes the layer's inputs on
the train split as the network does (a forward pass in evaluation mode with the weights so
far: earlier rbms already pretrained give their probabilities), checks their range where the
layer needs [0, 1], and hands them to the pretrainer's implementation (`@implements
("pretrainer", name)`), which returns the layer's new weights. The weights go back into the
run's state in its own layout (scanned repeats included, through `Engine.to_disk`), and the
optimizer's state is made again from them.

`cd` is contrastive divergence as Hinton's practical guide (2010) recommends; its exact update
is the formula of its registry entry (compiler/registry/dbn.py) and `cd_update` below, tested
against a float64 NumPy reference fed the same random draws (tests/test_dbn.py).

`plot` draws plots/rbm_reconstructions.png and plots/rbm_filters.png with matplotlib's object
API, as the other plots of a run folder (runtime/rundir.py).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from dnn.compiler.diagnostics import E_PRETRAIN, Diagnostic, SpecError
from dnn.compiler.ir import Node, Program
from dnn.compiler.registry.core import implementation, implements
from dnn.compiler.rules import fed_by_data, needs_unit_interval, pretrained_layers

from .data import transforms
from .rundir import plotting
from .train import ONE_OFF

Array = Any
Record = dict[str, Any]
Report = Callable[[Record], None]
# A stream of randomness of its own: the step keys fold 1-3 into key(seed + member), the
# batch orders an epoch number into key(seed).
STREAM = 0x7FFF_0CD1
FORWARD_ROWS = 512  # rows per forward pass when computing a layer's inputs
PLOTTED = 10  # examples in the reconstructions' figure
MOST_FILTERS = 400  # tiles in the filters' figure


# ------------------------------------------------------------------ contrastive divergence


class CD(NamedTuple):
    """The constants of one CD-k run (static under jit)."""

    k: int
    lr: float
    momentum: float
    weight_decay: float
    gaussian: bool  # visible units: gaussian (unit variance) or bernoulli


def visible_mean(h: Array, p: Mapping[str, Array], gaussian: bool) -> Array:
    """E[v | h]: h Wᵀ + b (gaussian, unit variance) or sigmoid(h Wᵀ + b) (bernoulli)."""
    a = h @ p["kernel"].T + p["visible_bias"]
    return a if gaussian else jax.nn.sigmoid(a)


def hidden_prob(v: Array, p: Mapping[str, Array]) -> Array:
    """p(h = 1 | v) = sigmoid(v W + c)."""
    return jax.nn.sigmoid(v @ p["kernel"] + p["bias"])


def cd_update(
    params: Mapping[str, Array],
    velocity: Mapping[str, Array],
    v0: Array,
    u: Array,
    cfg: CD,
    mask: Array | None = None,
) -> tuple[dict[str, Array], dict[str, Array], Array]:
    """One CD-k update on the mini-batch v0 [N, in], given the uniforms u [k, N, units] that
    sample the hidden states h⁰ .. hᵏ⁻¹; returns (params, velocity, reconstruction error).
    `mask` [N] (1 or 0) leaves padding rows out: N is then the number of 1s.

    Hinton (2010): h⁰ sampled from the data's probabilities (§3.2), reconstructions and the
    last hidden step as probabilities (§3.2-3.3), statistics from probabilities (§3.3),
    momentum (§9) and an L2 weight cost on W (§10). The error is mean (v⁰ - v¹)² (§5)."""
    p0 = hidden_prob(v0, params)
    p, v, v1 = p0, v0, v0
    for t in range(cfg.k):
        h = (u[t] < p).astype(v0.dtype)
        v = visible_mean(h, params, cfg.gaussian)
        v1 = v if t == 0 else v1
        p = hidden_prob(v, params)
    m = jnp.ones(v0.shape[:1], v0.dtype) if mask is None else mask.astype(v0.dtype)
    n = jnp.sum(m)
    w0, wk = v0 * m[:, None], v * m[:, None]
    grads = {
        "kernel": (w0.T @ p0 - wk.T @ p) / n - cfg.weight_decay * params["kernel"],
        "visible_bias": jnp.sum(w0 - wk, axis=0) / n,
        "bias": jnp.sum((p0 - p) * m[:, None], axis=0) / n,
    }
    velocity = {key: cfg.momentum * velocity[key] + cfg.lr * g for key, g in grads.items()}
    params = {key: params[key] + velocity[key] for key in grads}
    err = jnp.sum(jnp.mean((v0 - v1) ** 2, axis=1) * m) / n
    return params, velocity, err


@functools.partial(jax.jit, static_argnames=("n", "batch"), compiler_options=ONE_OFF)
def batches(key: Array, epoch: Array, n: int, batch: int) -> tuple[Array, Array]:
    """An epoch's mini-batches of `batch` examples out of n in a fresh order (from `key` and
    `epoch`): indices [batches, batch], the last batch padded, and a mask [batches, batch] of
    the real rows. One compile per data size, shared by the layers."""
    perm = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, epoch), 0), n)
    count = -(-n // batch)
    pad = count * batch - n
    order = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)]).reshape(count, batch)
    mask = (jnp.arange(count * batch) < n).reshape(count, batch)
    return order, mask


@functools.partial(jax.jit, static_argnames=("cfg",))
def cd_epoch(
    params: Any, vel: Any, x: Array, order: Array, mask: Array, draws: Array, cfg: CD
) -> tuple[Any, Any, Array]:
    """One epoch over the inputs x [N, in] by `lax.scan` over the mini-batches `order` (rows
    of `mask` 0 are padding); returns the weights, the velocity and the sum over examples of
    the reconstruction error. One compile per layer."""
    units = params["bias"].shape[0]

    def body(carry: Any, step: tuple[Array, Array, Array]) -> tuple[Any, Array]:
        idx, m, i = step
        u = jax.random.uniform(jax.random.fold_in(draws, i), (cfg.k, idx.shape[0], units))
        p, v, err = cd_update(carry[0], carry[1], x[idx], u, cfg, m)
        return (p, v), err * jnp.sum(m)

    steps = jnp.arange(order.shape[0])
    (params, vel), errs = jax.lax.scan(body, (params, vel), (order, mask, steps))
    return params, vel, jnp.sum(errs)


@functools.partial(jax.jit, static_argnames=("gaussian",))
def _reconstruction_error(params: Any, v: Array, gaussian: bool) -> Array:
    """mean (v - E[v | p(h | v)])²: the deterministic one-step reconstruction's error."""
    return jnp.mean((v - visible_mean(hidden_prob(v, params), params, gaussian)) ** 2)


@implements("pretrainer", "cd")
def cd(
    args: Mapping[str, Any],
    node: Node,
    params: Mapping[str, Array],
    x: np.ndarray,
    val: np.ndarray | None,
    key: Array,
    batch: int,
    report: Report,
) -> dict[str, Array]:
    """Pretrain one `rbm` by CD-k on its inputs `x` [N, in]; `report` gets each epoch's
    record (train and, with `val`, validation reconstruction error)."""
    gaussian = str(node.arg("visible")) == "gaussian"
    cfg = CD(
        int(args["k"]),
        float(args["lr"]),
        float(args["momentum"]),
        float(args["weight_decay"]),
        gaussian,
    )
    p = {k: np.asarray(params[k], np.float32) for k in ("kernel", "bias", "visible_bias")}
    p["visible_bias"] = _visible_start(x, gaussian)
    vel = {k: np.zeros_like(a) for k, a in p.items()}
    xs, n = jnp.asarray(x, jnp.float32), len(x)
    for epoch in range(1, int(args["epochs"]) + 1):
        t0 = time.perf_counter()
        order, mask = batches(key, epoch, n, min(batch, n))
        draws = jax.random.fold_in(jax.random.fold_in(key, epoch), 1)
        p, vel, total = cd_epoch(p, vel, xs, order, mask, draws, cfg)
        record: Record = {"layer": node.name, "epoch": epoch, "recon_error": float(total) / n}
        if val is not None and len(val):
            record["val_recon_error"] = float(_reconstruction_error(p, val, gaussian))
        record["time"] = time.perf_counter() - t0
        report(record)
        if not math.isfinite(record["recon_error"]):
            break
    return p


def _visible_start(x: np.ndarray, gaussian: bool) -> np.ndarray:
    """Hinton (2010) §8.1: b_i = log(p_i / (1 - p_i)), p_i the mean of visible unit i (clipped
    to [0.001, 0.999]); for gaussian units, the mean."""
    mean = np.mean(np.asarray(x, np.float64), axis=0)
    if gaussian:
        return mean.astype(np.float32)
    p = np.clip(mean, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p)).astype(np.float32)


# ------------------------------------------------------------------ the driver


def pretrain(
    program: Program,
    engine: Any,
    st: Any,
    report: Report | None = None,
    skip: frozenset[str] = frozenset(),
) -> tuple[Any, list[Record]]:
    """Pretrain the model's pretrainable layers in network order (those in `skip`, loaded by
    `init_from`, are used as they are); returns the run's state and one record per layer and
    epoch. Raises a `SpecError` at the spec line for inputs outside [0, 1] of a layer that
    needs them, or a pretraining that diverges."""
    ref, model = program.train.pretrain, program.model
    assert ref is not None and model is not None
    if jax.process_count() > 1:  # the layers' inputs and weights are gathered to one host
        raise SpecError(
            [
                Diagnostic(
                    E_PRETRAIN,
                    "`pretrain` is not supported in a multi-host run",
                    program.train.span_of("pretrain"),
                    "pretrain in a one-host run, then start this one from its weights with "
                    "`init_from` and without `pretrain`",
                )
            ],
            program.sources,
        )
    run = implementation("pretrainer", ref.name)
    splits = engine.prepared.splits
    train = splits["train"].x
    val = splits["val"].x if "val" in splits else train[:0]
    base = jax.random.fold_in(jax.random.key(program.train.seed), STREAM)
    records: list[Record] = []

    def keep(record: Record) -> None:
        records.append(record)
        if report is not None:
            report(record)

    for i, (node, entry) in enumerate(pretrained_layers(model)):
        if node.name in skip:
            continue
        inputs = forward_to(program, engine, node)
        x = inputs(st, train)
        if needs_unit_interval(node, entry):
            _check_range(program, node, x)
        v = inputs(st, val) if len(val) else None
        disk = engine.to_disk(st["params"])
        key = jax.random.fold_in(base, i)
        new = run(dict(ref.args), node, disk[node.name], x, v, key, engine.batch, keep)
        _check_finite(program, node, new, records)
        params = engine.from_disk({**disk, node.name: {**disk[node.name], **new}})
        st = {**st, "params": params}
    # made again from the new weights: an optimizer state may hold a copy of them
    opt = jax.jit(engine.tx.init, compiler_options=ONE_OFF)(st["params"])
    return jax.device_put({**st, "opt": opt}, engine.state_sharding), records


def forward_to(
    program: Program, engine: Any, node: Node
) -> Callable[[Any, np.ndarray], np.ndarray]:
    """A function (state, examples) -> the inputs of `node`, as the network computes them in
    evaluation mode with the state's weights (float32, whatever `precision`)."""
    source = node.inputs[0]

    @functools.partial(jax.jit, compiler_options=ONE_OFF)  # run a few times: compile fast
    def forward(params: Any, state: Any, xb: Array) -> Array:
        values = engine.model.apply(
            {"params": params, **state}, transforms.model_inputs(program, xb), every_value=True
        )
        return values[source].astype(jnp.float32)

    def inputs(st: Any, x: np.ndarray) -> np.ndarray:
        n, rows = len(x), FORWARD_ROWS
        pad = -n % rows  # one compiled shape for every split: the last chunk padded
        xp = np.concatenate([x, np.repeat(x[:1], pad, axis=0)]) if pad else x
        parts = [
            np.asarray(forward(st["params"], st["model_state"], xp[i : i + rows]))
            for i in range(0, len(xp), rows)
        ]
        return np.concatenate(parts)[:n]

    return inputs


def _check_range(program: Program, node: Node, x: np.ndarray) -> None:
    assert program.model is not None
    lo, hi = float(np.min(x)), float(np.max(x))
    if lo >= -1e-6 and hi <= 1 + 1e-6:
        return
    raise SpecError(
        [
            Diagnostic(
                E_PRETRAIN,
                f"`{node.name}` has {node.arg('visible')} visible units, which take values in "
                f"[0, 1], but its inputs on the train split range from {lo:.4g} to {hi:.4g}",
                node.span,
                "add `normalize = minmax` to the data section (each feature to [0, 1]), or "
                "use `visible = gaussian` for standardized inputs"
                if fed_by_data(program.model, node)
                else "end the layers before it with `sigmoid` (outputs in [0, 1]), or use "
                "`visible = gaussian`",
            )
        ],
        program.sources,
    )


def _check_finite(program: Program, node: Node, new: Any, records: list[Record]) -> None:
    last = next((r for r in reversed(records) if r["layer"] == node.name), None)
    finite = all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(new))
    if finite and (last is None or math.isfinite(last["recon_error"])):
        return
    when = f" at epoch {last['epoch']}" if last is not None else ""
    raise SpecError(
        [
            Diagnostic(
                E_PRETRAIN,
                f"pretraining `{node.name}` diverged{when}: its reconstruction error or weights "
                "are not finite",
                program.train.span_of("pretrain"),
                "lower `lr` (gaussian visible units want 0.01 or less), or standardize the inputs",
            )
        ],
        program.sources,
    )


def describe(program: Program, record: Record, epochs: int) -> str:
    """One progress line: `pretrain rbm (64 -> 256, bernoulli) epoch 3/10  recon_error ...`."""
    assert program.model is not None
    node = program.model.node(record["layer"])
    src = program.model.node(node.inputs[0])
    what = f"{math.prod(src.shape)} -> {math.prod(node.shape)}, {node.arg('visible')}"
    errors = "  ".join(
        f"{k} {record[k]:.4f}" for k in ("recon_error", "val_recon_error") if k in record
    )
    return (
        f"pretrain {node.name} ({what}) epoch {record['epoch']}/{epochs}  {errors}  "
        f"({record['time']:.1f} s)"
    )


# ------------------------------------------------------------------ pictures


class Pictures(NamedTuple):
    """What the figures show, as host arrays."""

    inputs: np.ndarray  # [examples, in]: the first rbm's inputs
    rows: tuple[tuple[str, np.ndarray], ...]  # (label, reconstructions [examples, in])
    kernel: np.ndarray  # the first rbm's W [in, units]
    image: tuple[int, ...]  # how one input vector is drawn: (h, w) or (h, w, 3)
    layer: str


def pictures(program: Program, engine: Any, st: Any) -> Pictures:
    """The first rbm's inputs for a few test examples (val, or train, without a test split),
    their reconstructions by it and by the chain of rbms stacked on it, and its weights."""
    assert program.model is not None
    layers = [n for n, _ in pretrained_layers(program.model)]
    splits = engine.prepared.splits
    x = next(splits[s].x for s in ("test", "val", "train") if len(splits[s].x))[:PLOTTED]
    disk = jax.device_get(engine.to_disk(st["params"]))
    first = layers[0]
    v = forward_to(program, engine, first)(st, x)
    chain = [first]
    for node in layers[1:]:
        if node.inputs[0] != chain[-1].name:
            break
        chain.append(node)
    rows = [(f"{first.name}", _reconstruct(v, chain[:1], disk))]
    if len(chain) > 1:
        rows.append((f"through {len(chain)} rbms", _reconstruct(v, chain, disk)))
    kernel = np.asarray(disk[first.name]["kernel"])
    return Pictures(v, tuple(rows), kernel, image_shape(program, first), first.name)


def _reconstruct(v: np.ndarray, chain: list[Node], disk: Any) -> np.ndarray:
    """Up the chain with probabilities, down with the visible means."""
    h = np.asarray(v, np.float64)
    for node in chain:
        h = _np_sigmoid(h @ disk[node.name]["kernel"] + disk[node.name]["bias"])
    for node in reversed(chain):
        p = disk[node.name]
        a = h @ np.asarray(p["kernel"]).T + p["visible_bias"]
        h = a if str(node.arg("visible")) == "gaussian" else _np_sigmoid(a)
    return h


def _np_sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(a, np.float64)))


def image_shape(program: Program, node: Node) -> tuple[int, ...]:
    """How to draw one input vector of `node`: the model input's image shape when the vector
    is that image flattened ([8, 8, 1] or a gray square such as digits' 64 pixels: 8 x 8),
    else one row."""
    assert program.model is not None
    size = math.prod(program.model.node(node.inputs[0]).shape)
    inputs = [program.model.node(i).shape for i in program.model.inputs]
    if len(inputs) == 1 and len(inputs[0]) == 3 and math.prod(inputs[0]) == size:
        h, w, c = inputs[0]
        if c == 1:
            return (h, w)
        if c == 3:
            return (h, w, 3)
    side = math.isqrt(size)
    return (side, side) if side * side == size else (1, size)


def plot(pics: Pictures, folder: Path) -> list[Path]:
    """plots/rbm_reconstructions.png and plots/rbm_filters.png."""
    folder.mkdir(parents=True, exist_ok=True)
    return [_plot_reconstructions(pics, folder), _plot_filters(pics, folder)]


def _plot_reconstructions(pics: Pictures, folder: Path) -> Path:
    Figure, FigureCanvasAgg = plotting()
    rows = (("input", pics.inputs), *pics.rows)
    n = len(pics.inputs)
    strip = pics.image[0] == 1
    fig = Figure(
        figsize=(1.1 * n, 1.25 * len(rows)) if not strip else (8, 1.6 * len(rows)), dpi=100
    )
    FigureCanvasAgg(fig)
    lo, hi = float(np.min(pics.inputs)), float(np.max(pics.inputs))
    for r, (label, values) in enumerate(rows):
        if strip:  # vectors that are not images: one heat map row per example
            ax = fig.add_subplot(len(rows), 1, r + 1)
            ax.imshow(values, aspect="auto", cmap="viridis", vmin=lo, vmax=hi)
            ax.set_ylabel(label, fontsize=8)
            ax.set_xticks([])
            continue
        for j in range(n):
            ax = fig.add_subplot(len(rows), n, r * n + j + 1)
            ax.imshow(_as_image(values[j], pics.image), cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"{pics.layer}: test inputs and their reconstructions", fontsize=10)
    fig.tight_layout()
    path = folder / "rbm_reconstructions.png"
    fig.savefig(path)
    return path


def _plot_filters(pics: Pictures, folder: Path) -> Path:
    Figure, FigureCanvasAgg = plotting()
    w = pics.kernel[:, :MOST_FILTERS]
    units = w.shape[1]
    path = folder / "rbm_filters.png"
    if pics.image[0] == 1:  # not images: the weights as one heat map
        fig = Figure(figsize=(8, 5), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        shown = ax.imshow(w.T, aspect="auto", cmap="RdBu_r")
        fig.colorbar(shown, ax=ax)
        ax.set_xlabel("visible unit")
        ax.set_ylabel("hidden unit")
    else:
        cols = math.ceil(math.sqrt(units))
        rows = math.ceil(units / cols)
        fig = Figure(figsize=(0.6 * cols + 1, 0.6 * rows + 1), dpi=100)
        FigureCanvasAgg(fig)
        for j in range(units):
            ax = fig.add_subplot(rows, cols, j + 1)
            tile = np.asarray(w[:, j], np.float64).reshape(pics.image)
            m = float(np.max(np.abs(tile))) or 1.0  # each tile on its own symmetric scale
            if tile.ndim == 3:
                ax.imshow(tile / (2 * m) + 0.5)
            else:
                ax.imshow(tile, cmap="gray", vmin=-m, vmax=m)
            ax.set_xticks([])
            ax.set_yticks([])
    more = (
        f" (first {MOST_FILTERS} of {pics.kernel.shape[1]})" if pics.kernel.shape[1] > units else ""
    )
    fig.suptitle(f"{pics.layer}: weights of each hidden unit{more}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _as_image(v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    img = np.asarray(v, np.float64).reshape(shape)
    return np.clip(img, 0.0, 1.0) if img.ndim == 3 else img
