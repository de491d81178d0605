"""Keras 3 weight files (`model.save_weights("m.weights.h5")`, and the weights inside a
`.keras` archive) for `init_from` and `--weights` (runtime/weights.py holds the mapping).

A Keras file keeps each layer's variables as `layers/<layer>/vars/<i>`, a layer's sublayers
under their own names (`layers/lstm/cell/vars/0`, `layers/mha/query_dense/vars/0`,
`layers/bidirectional/forward_layer/cell/vars/0`). Here a unit is one top-level layer, its
tensors named by the path below it (`0`, `cell.2`, `query_dense.1`). dnn keeps Keras' layouts
for most kinds (kernels [..., in, out], one LSTM bias, GRU gates z, r, h with the reset gate
after the matmul), so most conversions are reshapes: a depthwise kernel [k, k, c, m] is dnn's
[k, k, 1, c·m], attention's per-head kernels [d, h, k] are dnn's [d, h·k].
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.ir import Graph, Node

from .weights import Leaf, Shape, Unit, WeightsError, directions

SUFFIXES = (".h5", ".hdf5", ".keras")
KERAS_EPS = {"batchnorm": 1e-3, "layernorm": 1e-3, "groupnorm": 1e-3}


def is_keras(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def read(path: Path, shapes_only: bool = False) -> dict[str, Any]:
    """Every variable of a Keras weight file as `<layer>.<path>` (arrays, or shapes)."""
    try:
        import h5py
    except ImportError:
        raise WeightsError(
            "reading Keras weight files needs the h5py package", "pip install 'dnn[weights]'"
        ) from None
    if not path.is_file():
        raise WeightsError(f"{path}: no such file", "check the path (relative to the spec)")
    source: Any = path
    if path.suffix.lower() == ".keras":
        try:
            with zipfile.ZipFile(path) as z:
                source = io.BytesIO(z.read("model.weights.h5"))
        except (zipfile.BadZipFile, KeyError):
            raise WeightsError(
                f"{path}: not a Keras 3 archive (no model.weights.h5 in it)",
                "save it with Keras 3's model.save, or give the .weights.h5 of save_weights",
            ) from None
    out: dict[str, Any] = {}
    try:
        with h5py.File(source, "r") as f:
            if "layers" not in f:
                raise WeightsError(
                    f"{path}: not a Keras 3 weight file (no `layers` group)",
                    "save it with Keras 3's model.save_weights('m.weights.h5')",
                )
            _walk(f, "", out, shapes_only)
    except OSError as e:
        raise WeightsError(f"{path}: not a readable HDF5 file ({e})", "check the file") from None
    return out


def _walk(group: Any, prefix: str, out: dict[str, Any], shapes_only: bool) -> None:
    for name in group["layers"]:
        layer = group["layers"][name]
        _collect(layer, f"{prefix}{name}", "", out, shapes_only)
        if "layers" in layer:  # a model inside the model
            _walk(layer, f"{prefix}{name}/", out, shapes_only)


def _collect(g: Any, unit: str, sfx: str, out: dict[str, Any], shapes_only: bool) -> None:
    if "vars" in g:
        for i in sorted(g["vars"], key=int):
            d = g["vars"][i]
            out[f"{unit}.{sfx}{i}"] = tuple(d.shape) if shapes_only else np.asarray(d[()])
    for sub in g:
        if sub not in ("vars", "layers") and hasattr(g[sub], "keys"):
            _collect(g[sub], unit, f"{sfx}{sub}.", out, shapes_only)


def units(tensors: dict[str, Shape]) -> list[Unit]:
    """One unit per top-level layer, in the order Keras numbers its layers (`dense`, then
    `dense_1`, `dense_2`, ...)."""
    groups: dict[str, dict[str, Shape]] = {}
    for name, shape in tensors.items():
        unit, _, leaf = name.partition(".")
        groups.setdefault(unit, {})[leaf] = shape
    return sorted(
        (Unit(u, tuple(sorted(t.items()))) for u, t in groups.items()),
        key=lambda u: order_key(u.name),
    )


def order_key(name: str) -> tuple[Any, ...]:
    return tuple(
        (int(m.group(1)) if (m := re.search(r"_(\d+)$", seg)) else 0, seg)
        for seg in name.split("/")
    )


# ------------------------------------------------------------------ layouts


def _vars(node: Node, leaves: dict[Leaf, Shape], names: list[tuple[str, str]]) -> list[Leaf]:
    """The Flax leaves a Keras layer keeps, in its variables' order ([(collection, leaf)])."""
    return [(c, node.name, f) for c, f in names if (c, node.name, f) in leaves]


def _in_order(names: list[tuple[str, str]]) -> Any:
    """A layout whose variables are the Flax leaves in this order, same shapes."""

    def expect(node: Node, leaves: dict[Leaf, Shape], graph: Graph) -> dict[str, Shape]:
        return {str(i): leaves[k] for i, k in enumerate(_vars(node, leaves, names))}

    def load(
        node: Node, t: dict[str, np.ndarray], leaves: dict[Leaf, Shape], graph: Graph
    ) -> dict[Leaf, np.ndarray]:
        return {k: t[str(i)] for i, k in enumerate(_vars(node, leaves, names))}

    def save(node: Node, w: dict[Leaf, np.ndarray], graph: Graph) -> dict[str, np.ndarray]:
        shapes = {k: tuple(v.shape) for k, v in w.items()}
        return {str(i): w[k] for i, k in enumerate(_vars(node, shapes, names))}

    return expect, load, save


_KERNEL_BIAS = [("params", "kernel"), ("params", "bias")]
_BATCHNORM = [
    ("params", "scale"),
    ("params", "bias"),
    ("batch_stats", "mean"),
    ("batch_stats", "var"),
]
_NORM = [("params", "scale"), ("params", "bias")]


def _depthwise() -> Any:
    def expect(node: Node, leaves: dict[Leaf, Shape], graph: Graph) -> dict[str, Shape]:
        *k, _, cm = leaves[("params", node.name, "kernel")]
        m = int(node.arg("depth_multiplier"))
        out = {"0": (*k, cm // m, m)}
        if ("params", node.name, "bias") in leaves:
            out["1"] = leaves[("params", node.name, "bias")]
        return out

    def load(
        node: Node, t: dict[str, np.ndarray], leaves: dict[Leaf, Shape], graph: Graph
    ) -> dict[Leaf, np.ndarray]:
        shape = leaves[("params", node.name, "kernel")]
        out = {("params", node.name, "kernel"): t["0"].reshape(shape)}
        if "1" in t:
            out[("params", node.name, "bias")] = t["1"]
        return out

    def save(node: Node, w: dict[Leaf, np.ndarray], graph: Graph) -> dict[str, np.ndarray]:
        kernel = w[("params", node.name, "kernel")]
        m = int(node.arg("depth_multiplier"))
        out = {"0": kernel.reshape(*kernel.shape[:-2], kernel.shape[-1] // m, m)}
        if ("params", node.name, "bias") in w:
            out["1"] = w[("params", node.name, "bias")]
        return out

    return expect, load, save


def _directions(node: Node, leaves: Any) -> list[tuple[str, str]]:
    return directions(node, leaves, ("forward_layer.", "backward_layer."))


def _recurrent() -> Any:
    def expect(node: Node, leaves: dict[Leaf, Shape], graph: Graph) -> dict[str, Shape]:
        out = {}
        for m, pre in _directions(node, leaves):
            out[f"{pre}cell.0"] = leaves[("params", m, "kernel")]
            out[f"{pre}cell.1"] = leaves[("params", m, "recurrent_kernel")]
            b = leaves[("params", m, "bias")]
            out[f"{pre}cell.2"] = (2, *b) if node.op == "gru" else b
        return out

    def load(
        node: Node, t: dict[str, np.ndarray], leaves: dict[Leaf, Shape], graph: Graph
    ) -> dict[Leaf, np.ndarray]:
        out = {}
        for m, pre in _directions(node, leaves):
            out[("params", m, "kernel")] = t[f"{pre}cell.0"]
            out[("params", m, "recurrent_kernel")] = t[f"{pre}cell.1"]
            b = t[f"{pre}cell.2"]
            if node.op == "gru":  # [input bias; recurrent bias] (reset_after = True)
                out[("params", m, "bias")], out[("params", m, "recurrent_bias")] = b[0], b[1]
            else:
                out[("params", m, "bias")] = b
        return out

    def save(node: Node, w: dict[Leaf, np.ndarray], graph: Graph) -> dict[str, np.ndarray]:
        out = {}
        for m, pre in _directions(node, w):
            out[f"{pre}cell.0"] = w[("params", m, "kernel")]
            out[f"{pre}cell.1"] = w[("params", m, "recurrent_kernel")]
            b = w[("params", m, "bias")]
            out[f"{pre}cell.2"] = (
                np.stack([b, w[("params", m, "recurrent_bias")]]) if node.op == "gru" else b
            )
        return out

    return expect, load, save


_ROLES = (("query", "query_dense"), ("key", "key_dense"), ("value", "value_dense"))


def _attention() -> Any:
    def heads(node: Node) -> int:
        return int(node.arg("heads"))

    def expect(node: Node, leaves: dict[Leaf, Shape], graph: Graph) -> dict[str, Shape]:
        h, n, out = heads(node), node.name, {}
        for role, sub in _ROLES:
            d, hk = leaves[("params", n, f"{role}_kernel")]
            out[f"{sub}.0"] = (d, h, hk // h)
            if ("params", n, f"{role}_bias") in leaves:
                out[f"{sub}.1"] = (h, hk // h)
        hv, d = leaves[("params", n, "output_kernel")]
        out["output_dense.0"] = (h, hv // h, d)
        if ("params", n, "output_bias") in leaves:
            out["output_dense.1"] = (d,)
        return out

    def load(
        node: Node, t: dict[str, np.ndarray], leaves: dict[Leaf, Shape], graph: Graph
    ) -> dict[Leaf, np.ndarray]:
        n, out = node.name, {}
        for role, sub in _ROLES:
            k = t[f"{sub}.0"]
            out[("params", n, f"{role}_kernel")] = k.reshape(k.shape[0], -1)
            if f"{sub}.1" in t:
                out[("params", n, f"{role}_bias")] = t[f"{sub}.1"].reshape(-1)
        o = t["output_dense.0"]
        out[("params", n, "output_kernel")] = o.reshape(-1, o.shape[-1])
        if "output_dense.1" in t:
            out[("params", n, "output_bias")] = t["output_dense.1"]
        return out

    def save(node: Node, w: dict[Leaf, np.ndarray], graph: Graph) -> dict[str, np.ndarray]:
        h, n, out = heads(node), node.name, {}
        for role, sub in _ROLES:
            k = w[("params", n, f"{role}_kernel")]
            out[f"{sub}.0"] = k.reshape(k.shape[0], h, -1)
            if ("params", n, f"{role}_bias") in w:
                out[f"{sub}.1"] = w[("params", n, f"{role}_bias")].reshape(h, -1)
        o = w[("params", n, "output_kernel")]
        out["output_dense.0"] = o.reshape(h, -1, o.shape[-1])
        if ("params", n, "output_bias") in w:
            out["output_dense.1"] = w[("params", n, "output_bias")]
        return out

    return expect, load, save


def layouts() -> dict[str, Any]:
    from .weights import Layout

    plain = Layout(*_in_order(_KERNEL_BIAS))
    norm = Layout(*_in_order(_NORM))
    recurrent = Layout(*_recurrent())
    return {
        "dense": plain,
        **{f"conv{d}d": plain for d in (1, 2, 3)},
        "depthwise_conv2d": Layout(*_depthwise()),
        "batchnorm": Layout(*_in_order(_BATCHNORM)),
        "layernorm": norm,
        "groupnorm": norm,
        "embedding": Layout(*_in_order([("params", "embedding")])),
        **{op: recurrent for op in ("simple_rnn", "lstm", "gru")},
        "multi_head_attention": Layout(*_attention()),
    }
