"""Losses and weight penalties in JAX: what the train step minimizes.

Each loss word has one function here, tagged `@implements("loss", name)`: `(logits, targets,
args) -> scalar`, the mean over the batch (and over output features where the formula says so).
The task a loss implies (its entry's `task`) follows from the output's width, which is static:
one unit is a binary decision, several units classes or labels; class-label targets (N,)
against several units are read as one-hot rows. Penalties (`l1`, `l2`, `l1_l2`, each word
giving its coefficients) are summed over the kernels of the layers that declare them, and over
biases and normalization scales too with `on = all`; the train step reports them as their own
metric. Constraints (`max_norm`, `non_neg`, `unit_norm`) project kernels after each update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from .ir import Graph
from .lower_scan import ScanPlan, frozen
from .registry.core import implements
from .registry.losses import LOSSES
from .registry.weights import CONSTRAINTS, REGULARIZERS
from .values import Ref

Array = Any


# Real-valued targets come as (N, D) rows; an output of another shape with D values per
# example (an autoencoder's image) reads them in its own layout (row-major, as `reshape`).


@implements("loss", "mse")
def mse(z: Array, y: Array, a: dict[str, Any]) -> Array:
    return jnp.mean((y.reshape(z.shape) - z) ** 2)


@implements("loss", "mae")
def mae(z: Array, y: Array, a: dict[str, Any]) -> Array:
    return jnp.mean(jnp.abs(y.reshape(z.shape) - z))


@implements("loss", "huber")
def huber(z: Array, y: Array, a: dict[str, Any]) -> Array:
    r, d = jnp.abs(y.reshape(z.shape) - z), a["delta"]
    return jnp.mean(jnp.where(r <= d, r * r / 2, d * (r - d / 2)))


def _rows(y: Array, z: Array) -> Array:
    """Targets shaped like the logits: class labels (N,) against C > 1 units become one-hot
    rows; 0/1 targets of one unit, and multi-hot rows, keep their values."""
    if z.shape[-1] > 1 and y.ndim == z.ndim - 1:
        return jax.nn.one_hot(y, z.shape[-1], dtype=z.dtype)
    return y.reshape(z.shape).astype(z.dtype)


@implements("loss", "binary_cross_entropy")
def binary_cross_entropy(z: Array, y: Array, a: dict[str, Any]) -> Array:
    y = _rows(y, z)
    y = y * (1 - a["label_smoothing"]) + a["label_smoothing"] / 2
    return jnp.mean(optax.sigmoid_binary_cross_entropy(z, y))


@implements("loss", "cross_entropy")
def cross_entropy(z: Array, y: Array, a: dict[str, Any]) -> Array:
    """From logits; integer labels (N,) or one-hot / probability targets (N, C)."""
    classes = z.shape[-1]
    target = (
        jax.nn.one_hot(y, classes, dtype=z.dtype) if y.ndim == z.ndim - 1 else y.astype(z.dtype)
    )
    target = target * (1 - a["label_smoothing"]) + a["label_smoothing"] / classes
    return jnp.mean(optax.softmax_cross_entropy(z, target))


def _signed(y: Array, z: Array) -> Array:
    y = y.reshape(z.shape).astype(z.dtype)
    return jnp.where(jnp.min(y) >= 0, 2 * y - 1, y)  # 0/1 targets become -1/1


def _hinge_margins(z: Array, y: Array) -> Array:
    """Class labels (N,) against C > 1 units: Crammer & Singer's margin per example,
    max(0, 1 + max_{c != y} z_c - z_y). Otherwise max(0, 1 - y z) per unit: one unit with 0/1
    or -1/1 targets, or multi-hot rows (one decision per unit)."""
    if z.shape[-1] == 1 or y.ndim == z.ndim:
        return jnp.maximum(0, 1 - _signed(y, z) * z)
    onehot = _rows(y, z) > 0
    true = jnp.sum(jnp.where(onehot, z, 0), axis=-1)
    other = jnp.max(jnp.where(onehot, -jnp.inf, z), axis=-1)
    return jnp.maximum(0, 1 + other - true)


@implements("loss", "hinge")
def hinge(z: Array, y: Array, a: dict[str, Any]) -> Array:
    return jnp.mean(_hinge_margins(z, y))


@implements("loss", "squared_hinge")
def squared_hinge(z: Array, y: Array, a: dict[str, Any]) -> Array:
    return jnp.mean(_hinge_margins(z, y) ** 2)


def lower_loss(ref: Ref) -> Callable[[Array, Array], Array]:
    """The `loss = ...` value as `(logits, targets) -> scalar`."""
    fn, a = LOSSES.implementation(ref.name), dict(ref.args)
    return lambda z, y: fn(z, y, a)


# ------------------------------------------------------------------ penalties

_KERNEL_LEAVES = (
    "kernel",
    "recurrent_kernel",
    "embedding",
    "slope",
    "depthwise_kernel",
    "pointwise_kernel",
    "query_kernel",
    "key_kernel",
    "value_kernel",
    "output_kernel",
)


# Each regularizer word gives its coefficients (l1, l2) of the one penalty formula.


@implements("regularizer", "l1")
def l1(a: dict[str, Any]) -> tuple[float, float]:
    return a["l1"], 0.0


@implements("regularizer", "l2")
def l2(a: dict[str, Any]) -> tuple[float, float]:
    return 0.0, a["l2"]


@implements("regularizer", "l1_l2")
def l1_l2(a: dict[str, Any]) -> tuple[float, float]:
    return a["l1"], a["l2"]


def penalty(ref: Ref, leaves: dict[str, Array]) -> Array:
    """l1 · Σ|w| + l2 · Σw² over the chosen leaves of one layer."""
    a: dict[str, Any] = dict(ref.args)
    chosen = [w for k, w in leaves.items() if str(a["on"]) == "all" or k in _KERNEL_LEAVES]
    l1, l2 = REGULARIZERS.implementation(ref.name)(a)
    return sum((l1 * jnp.sum(jnp.abs(w)) + l2 * jnp.sum(w * w) for w in chosen), jnp.zeros(()))


def _path(name: str, scan: ScanPlan | None) -> tuple[str, str | None]:
    """Where a node's weights are: its own key, or (group key, instance-relative name)."""
    hit = scan.group_of(name) if scan else None
    return (hit[0].key, hit[2]) if hit else (name, None)


def _leaves(params: dict, path: tuple[str, str | None]) -> Any:
    key, local = path
    return params[key] if local is None else params[key][local]


def lower_penalties(
    graph: Graph, default: Ref | None = None, scan: ScanPlan | None = None
) -> Callable[[dict], Array]:
    """`params -> total penalty` from each layer's `regularizer` (or the model-wide one).

    A scanned run's stacked leaf is penalized once over all its slices: the sum over the
    instances, as unscanned.
    """
    rules: dict[tuple[str, str | None], Ref] = {}
    for n in graph.nodes:
        args = dict(n.args)
        rule = args.get("regularizer") or default
        if "regularizer" in args and rule is not None:
            rules[_path(n.name, scan)] = rule  # every instance of a body layer: one path

    def total(params: dict) -> Array:
        return sum((penalty(r, _leaves(params, path)) for path, r in rules.items()), jnp.zeros(()))

    return total


# ------------------------------------------------------------------ weight constraints


@implements("constraint", "max_norm")
def max_norm(w: Array, a: dict[str, Any]) -> Array:
    axes = tuple(range(w.ndim - 1)) if str(a["axis"]) == "inputs" and w.ndim > 1 else None
    norm = jnp.sqrt(jnp.sum(w * w, axis=axes, keepdims=axes is not None))
    return w * jnp.minimum(1.0, a["value"] / jnp.maximum(norm, 1e-12))


@implements("constraint", "non_neg")
def non_neg(w: Array, a: dict[str, Any]) -> Array:
    return jnp.maximum(w, 0)


@implements("constraint", "unit_norm")
def unit_norm(w: Array, a: dict[str, Any]) -> Array:
    axes = tuple(range(w.ndim - 1)) if w.ndim > 1 else None
    return w / jnp.maximum(jnp.sqrt(jnp.sum(w * w, axis=axes, keepdims=axes is not None)), 1e-12)


def _projector(ref: Ref) -> Callable[[Array], Array]:
    rule, a = CONSTRAINTS.implementation(ref.name), dict(ref.args)
    return lambda w: rule(w, a)


def lower_constraints(
    graph: Graph, scan: ScanPlan | None = None, freeze: tuple[str, ...] = ()
) -> Callable[[dict], dict]:
    """`params -> params` projecting each constrained kernel; applied after every update.

    A unit's incoming weights are a kernel column: all axes but the last (Keras' axis=0 for
    dense, [0, 1, 2] for conv2d). A scanned run's stacked kernel is projected slice by slice.
    A frozen layer (`freeze`) is left as it is, as Keras projects trainable weights only (a
    scanned run freezes all its instances or none: `lower_scan.split`).
    """
    rules = {
        _path(n.name, scan): dict(n.args)["constraint"]
        for n in graph.nodes
        if dict(n.args).get("constraint") is not None and not frozen(n.name, freeze)
    }

    def project(params: dict) -> dict:
        out = dict(params)
        for (key, local), ref in rules.items():
            fn = _projector(ref)
            if local is None:
                out[key] = {**out[key], "kernel": fn(out[key]["kernel"])}
            else:
                layer = out[key][local]
                kernel = jax.vmap(fn)(layer["kernel"])
                out[key] = {**out[key], local: {**layer, "kernel": kernel}}
        return out

    return project
