"""Weight files in and out (issue 16): PyTorch's `.safetensors` (torchvision, timm, Hugging
Face) mapped onto a spec's layers, and a run's weights written back in PyTorch's layout.

    train { init_from = "resnet18.safetensors"  init_skip = ["fc.*", "dense"] }
    dnn weights resnet18.safetensors examples/resnet18.dnn   # the mapping, before training
    dnn export RUN --format safetensors -o out.safetensors    # loads with strict=True

A file is read as *units*: the tensors of one PyTorch module (`layer1.0.conv1.weight` is the
`weight` of unit `layer1.0.conv1`). A spec layer with weights is a *slot*: its Flax leaves and
the tensors they are in PyTorch's layout (`layouts`, one entry per layer kind). A unit fits a
slot when it has exactly the slot's tensor names with the slot's shapes. Slots are filled:

1. by `init_map` entries: `"features.0": "stem"` pins a unit to a layer; a pattern pair
   `"backbone.*": "encoder/*"` matches those units to those layers by rule 3 among themselves;
2. by name: the unit's name with `.` read as `/` is the layer's name;
3. by structure: each slot in network order takes the first unit that fits, units taken in
   the file's structural order (`structural_key`).

Strict as `load_state_dict`: every slot is filled and every unit used, except what matches an
`init_skip` pattern (a tensor name on the file's side, a layer name on the spec's). Nothing is
ever unpickled: `.pth`, `.pt`, `.ckpt` and pickled `.bin` files are refused with the one line
that converts them.

Layouts (PyTorch -> Flax), done once here and tested per kind against PyTorch's own forward
passes (tests/test_weights.py, fixtures from tests/fixtures/make_torch_weights.py):
convolutions OIHW -> HWIO (grouped and depthwise alike), transposed convolutions IOHW -> HWIO,
linear (out, in) -> (in, out) with the rows of a layer fed by a flattened feature map permuted
from PyTorch's channel-first order to dnn's channel-last one, batch norm weight, bias,
running_mean, running_var -> scale, bias, mean, var, recurrent cells with their two bias
vectors (LSTM and simple RNN: summed into dnn's one bias; GRU: r, z, n -> dnn's z, r, n with
the recurrent bias kept), attention's packed `in_proj` -> query, key and value kernels.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from dnn.compiler.diagnostics import E_WEIGHTS, Diagnostic, SpecError
from dnn.compiler.ir import Graph, Node, Program

from .train import TrainingError

Shape = tuple[int, ...]
Leaf = tuple[str, str, str]  # (collection, Flax module name, leaf): ("params", "conv", "kernel")

PICKLED = (".pth", ".pt", ".ckpt", ".pkl", ".pickle", ".bin")
CONVERT_HINT = (
    'convert it once where PyTorch is installed: python -c "import torch; from '
    "safetensors.torch import save_file; save_file(torch.load('{name}', weights_only=True), "
    "'{stem}.safetensors')\" (dnn never unpickles files)"
)
# tensors PyTorch keeps that no dnn layer reads: ignored on the way in, written on the way out
OPTIONAL = ("num_batches_tracked",)


class WeightsError(TrainingError):
    """A weight file that cannot be read or does not fit; `hint` says what to do."""


# ------------------------------------------------------------------ reading files


@dataclass(frozen=True)
class Format:
    """A kind of weight file: how its tensors group into units, and its layouts."""

    name: str  # torch | keras
    layouts: dict[str, Layout]
    eps: dict[str, float]  # the library's default eps per normalization kind
    group: Callable[[dict[str, Shape]], list[Unit]]


def file_format(path: Path) -> Format:
    from . import weights_keras

    if weights_keras.is_keras(path):
        return Format(
            "keras", weights_keras.layouts(), weights_keras.KERAS_EPS, weights_keras.units
        )
    return TORCH


def read(path: Path) -> tuple[Format, dict[str, np.ndarray]]:
    """The file's format and every tensor by name, as NumPy arrays (float32 where they are
    floating point: half and bfloat16 files too)."""
    fmt = file_format(path)
    if fmt.name == "keras":
        from . import weights_keras

        return fmt, {k: _float32(v) for k, v in weights_keras.read(path).items()}
    return fmt, _read_safetensors(path)


def shapes(path: Path) -> tuple[Format, dict[str, tuple[Shape, str]]]:
    """The file's format and each tensor's shape and dtype (for safetensors, from the header
    alone: nothing else is loaded)."""
    fmt = file_format(path)
    if fmt.name == "keras":
        from . import weights_keras

        found = weights_keras.read(path, shapes_only=True)
        return fmt, {k: (s, "float32") for k, s in found.items()}
    return fmt, _safetensors_shapes(path)


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    _refuse_pickles(path)
    load_file = _safetensors().load_file

    try:
        raw = load_file(str(path))
    except Exception as e:  # the library's errors carry no type of their own
        raise WeightsError(
            f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})",
            "give a .safetensors file as PyTorch's safetensors.torch.save_file writes it",
        ) from None
    return {k: _float32(v) for k, v in raw.items()}


def _safetensors_shapes(path: Path) -> dict[str, tuple[Shape, str]]:
    _refuse_pickles(path)
    header = _header(path)
    return {
        k: (tuple(int(d) for d in v["shape"]), str(v["dtype"]))
        for k, v in header.items()
        if k != "__metadata__"
    }


def _header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        head = f.read(8)
        size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        if not 2 <= size <= 100_000_000:
            raise WeightsError(
                f"{path}: not a safetensors file (no header)",
                "give a .safetensors file as PyTorch's safetensors.torch.save_file writes it",
            )
        text = f.read(size)
    try:
        header = json.loads(text)
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise WeightsError(
            f"{path}: not a safetensors file (its header is not JSON)",
            "give a .safetensors file as PyTorch's safetensors.torch.save_file writes it",
        )
    return header


def _refuse_pickles(path: Path) -> None:
    """A file that is not safetensors: refused, with the conversion for a pickled one."""
    if not path.is_file():
        raise WeightsError(f"{path}: no such file", "check the path (relative to the spec)")
    suffix = path.suffix.lower()
    if suffix not in PICKLED or suffix == ".bin":
        try:
            _header(path)
            return
        except WeightsError:
            if suffix == ".safetensors":
                raise
    with open(path, "rb") as f:
        magic = f.read(4)
    what = (
        "a PyTorch zip archive (pickled)"
        if magic[:2] == b"PK"
        else "pickled"
        if magic[:1] == b"\x80" or suffix in PICKLED
        else "not a safetensors file"
    )
    raise WeightsError(
        f"{path}: {what}; dnn reads weights from .safetensors files only",
        CONVERT_HINT.format(name=path.name, stem=path.stem),
    )


def _safetensors() -> Any:
    try:
        import safetensors.numpy
    except ImportError:
        raise WeightsError(
            "reading and writing weight files needs the safetensors package",
            "pip install 'dnn[weights]'",
        ) from None
    return safetensors.numpy


def _float32(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f" or a.dtype.name == "bfloat16":
        return np.asarray(a, np.float32)
    return a


def write(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    save_file = _safetensors().save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata)
    tmp.replace(path)


# ------------------------------------------------------------------ units of a file


@dataclass(frozen=True)
class Unit:
    """The tensors of one PyTorch module, by their name inside it (`weight`, `running_mean`,
    `weight_ih_l0_reverse`, `out_proj.weight`)."""

    name: str
    shapes: tuple[tuple[str, Shape], ...]

    @property
    def tensors(self) -> dict[str, Shape]:
        return dict(self.shapes)

    def full(self, suffix: str) -> str:
        return f"{self.name}.{suffix}" if self.name else suffix

    def signature(self) -> dict[str, Shape]:
        return {k: s for k, s in self.shapes if k not in OPTIONAL}


def units(tensors: dict[str, Shape]) -> list[Unit]:
    """The file's tensors grouped by module, in structural order. An attention module's
    `out_proj` belongs to it (PyTorch's MultiheadAttention keeps it as a child module)."""
    groups: dict[str, dict[str, Shape]] = {}
    for name, shape in tensors.items():
        module, _, leaf = name.rpartition(".")
        groups.setdefault(module, {})[leaf] = shape
    for module in [m for m in groups if m.endswith("out_proj")]:
        parent = module[: -len("out_proj")].rstrip(".")
        if "in_proj_weight" in groups.get(parent, {}) or "q_proj_weight" in groups.get(parent, {}):
            for leaf, shape in groups.pop(module).items():
                groups[parent][f"out_proj.{leaf}"] = shape
    return sorted(
        (Unit(m, tuple(sorted(t.items()))) for m, t in groups.items()),
        key=lambda u: structural_key(u.name),
    )


def structural_key(name: str) -> tuple[Any, ...]:
    """Where a module comes in a network, from its name alone. Indices of sequences count as
    numbers (`features.10` after `features.9`), and a named child counts by the number in its
    name first (`denseblock2` after `transition1`, `norm5` after `denseblock4`, `conv1` with
    `bn1`), children without a number after those with one (`downsample` after `conv2`)."""
    key: list[Any] = []
    for seg in name.split("."):
        digits = re.findall(r"\d+", seg)
        number = int(digits[0]) if digits else math.inf
        key.append((number, re.sub(r"\d+", "", seg), seg))
    return tuple(key)


# ------------------------------------------------------------------ slots of a spec


@dataclass(frozen=True)
class Slot:
    """A spec layer with weights: its leaves' shapes (per-node checkpoint layout, no member
    axis) and the tensors PyTorch keeps for it."""

    node: Node
    leaves: tuple[tuple[Leaf, Shape], ...]
    expect: tuple[tuple[str, Shape], ...] | None  # None: no PyTorch layout for this layer kind

    @property
    def name(self) -> str:
        return self.node.name


def slots(
    graph: Graph, params: dict[str, Any], state: dict[str, Any], fmt: Format | None = None
) -> list[Slot]:
    """One slot per layer with weights, in network order. `params` and `state` are per-node
    trees of shapes (`params[name][leaf]`, `state[collection][name][leaf]`)."""
    out = []
    for node in graph.nodes:
        modules = [node.name, f"{node.name}/forward", f"{node.name}/backward"]
        leaves: list[tuple[Leaf, Shape]] = []
        for m in modules:
            for leaf, shape in sorted(params.get(m, {}).items()):
                leaves.append((("params", m, leaf), tuple(shape)))
            for coll, tree in sorted(state.items()):
                for leaf, shape in sorted(tree.get(m, {}).items()):
                    leaves.append(((coll, m, leaf), tuple(shape)))
        if not leaves:
            continue
        layout = (fmt or TORCH).layouts.get(node.op)
        expect = None
        if layout is not None:
            expect = layout.expect(node, dict(leaves), graph)
        out.append(Slot(node, tuple(leaves), None if expect is None else tuple(expect.items())))
    return out


# ------------------------------------------------------------------ layouts


@dataclass(frozen=True)
class Layout:
    """One layer kind in PyTorch's layout: the tensors it keeps (`expect`), and the two
    conversions, from its tensors to the Flax leaves and back."""

    expect: Callable[[Node, dict[Leaf, Shape], Graph], dict[str, Shape] | None]
    load: Callable[[Node, dict[str, np.ndarray], dict[Leaf, Shape], Graph], dict[Leaf, np.ndarray]]
    save: Callable[[Node, dict[Leaf, np.ndarray], Graph], dict[str, np.ndarray]]


def _conv_axes(nd: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(Flax -> PyTorch, PyTorch -> Flax) axis orders of an nd-dimensional kernel."""
    to_torch = (nd + 1, nd, *range(nd))  # (*k, I, O) -> (O, I, *k)
    return to_torch, tuple(int(i) for i in np.argsort(to_torch))


def _kernel_nd(leaves: dict[Leaf, Shape], name: str) -> int:
    return len(leaves[("params", name, "kernel")]) - 2


def _conv_expect(transpose: bool) -> Callable[..., dict[str, Shape] | None]:
    def expect(node: Node, leaves: dict[Leaf, Shape], graph: Graph) -> dict[str, Shape] | None:
        k = leaves.get(("params", node.name, "kernel"))
        if k is None:
            return None
        nd = len(k) - 2
        axes = (nd, nd + 1, *range(nd)) if transpose else _conv_axes(nd)[0]
        out = {"weight": tuple(k[a] for a in axes)}
        b = leaves.get(("params", node.name, "bias"))
        if b is not None:
            out["bias"] = b
        return out

    return expect


def _conv_load(transpose: bool) -> Callable[..., dict[Leaf, np.ndarray]]:
    def load(
        node: Node, t: dict[str, np.ndarray], leaves: dict[Leaf, Shape], graph: Graph
    ) -> dict[Leaf, np.ndarray]:
        nd = _kernel_nd(leaves, node.name)
        back = (*range(2, nd + 2), 0, 1) if transpose else _conv_axes(nd)[1]
        out = {("params", node.name, "kernel"): t["weight"].transpose(back)}
        if "bias" in t:
            out[("params", node.name, "bias")] = t["bias"]
        return out

    return load


def _conv_save(transpose: bool) -> Callable[..., dict[str, np.ndarray]]:
    def save(node: Node, w: dict[Leaf, np.ndarray], graph: Graph) -> dict[str, np.ndarray]:
        k = w[("params", node.name, "kernel")]
        nd = k.ndim - 2
        axes = (nd, nd + 1, *range(nd)) if transpose else _conv_axes(nd)[0]
        out = {"weight": k.transpose(axes)}
        if ("params", node.name, "bias") in w:
            out["bias"] = w[("params", node.name, "bias")]
        return out

    return save


def flat_order(node: Node, graph: Graph) -> np.ndarray | None:
    """For a dense layer fed by flattened feature maps (through dropout, activations and
    concatenations): for each of its input rows in dnn's channel-last order, the row PyTorch's
    channel-first flatten puts there; None when no input is a flattened map."""
    if not node.inputs:
        return None
    order = _rows(graph.node(node.inputs[0]), graph)
    return None if order is None or (order == np.arange(len(order))).all() else order


def _rows(src: Node, graph: Graph) -> np.ndarray | None:
    while src.kind == "activation" or src.op == "dropout":
        src = graph.node(src.inputs[0])
    if src.op == "flatten" and src.inputs:
        shape = tuple(graph.node(src.inputs[0]).shape)
        if len(shape) < 2:
            return np.arange(math.prod(shape))
        *space, c = shape
        torch_index = np.arange(math.prod(shape)).reshape(c, *space)
        return torch_index.transpose((*range(1, len(shape)), 0)).reshape(-1)
    if src.op == "concat" and len(src.shape) == 1:
        parts, offset = [], 0
        for name in src.inputs:
            part = graph.node(name)
            rows = _rows(part, graph)
            if rows is None:
                rows = np.arange(math.prod(part.shape))
            parts.append(rows + offset)
            offset += len(rows)
        return np.concatenate(parts)
    return None if len(src.shape) != 1 else np.arange(src.shape[0])


def _dense_expect(node: Node, leaves: dict[Leaf, Shape], graph: Graph) -> dict[str, Shape] | None:
    out: dict[str, Shape] = {}
    k = leaves.get(("params", node.name, "kernel"))
    if k is not None:
        out["weight"] = (k[1], k[0])
    b = leaves.get(("params", node.name, "bias"))
    if b is not None:
        out["bias"] = b
    return out


def _dense_load(
    node: Node, t: dict[str, np.ndarray], leaves: dict[Leaf, Shape], graph: Graph
) -> dict[Leaf, np.ndarray]:
    out = {}
    if "weight" in t:
        kernel = t["weight"].T
        order = flat_order(node, graph)
        out[("params", node.name, "kernel")] = kernel if order is None else kernel[order]
    if "bias" in t:
        out[("params", node.name, "bias")] = t["bias"]
    return out


def _dense_save(node: Node, w: dict[Leaf, np.ndarray], graph: Graph) -> dict[str, np.ndarray]:
    out = {}
    if ("params", node.name, "kernel") in w:
        kernel = w[("params", node.name, "kernel")]
        order = flat_order(node, graph)
        if order is not None:
            unpermuted = np.empty_like(kernel)
            unpermuted[order] = kernel
            kernel = unpermuted
        out["weight"] = kernel.T
    if ("params", node.name, "bias") in w:
        out["bias"] = w[("params", node.name, "bias")]
    return out


def _renaming(
    pairs: Sequence[tuple[str, str, str]],
) -> tuple[Callable[..., dict[str, Shape] | None], Callable[..., Any], Callable[..., Any]]:
    """A layout that only renames: (collection, Flax leaf, PyTorch tensor) triples."""

    def expect(node: Node, leaves: dict[Leaf, Shape], graph: Graph) -> dict[str, Shape] | None:
        return {t: leaves[(c, node.name, f)] for c, f, t in pairs if (c, node.name, f) in leaves}

    def load(
        node: Node, t: dict[str, np.ndarray], leaves: dict[Leaf, Shape], graph: Graph
    ) -> dict[Leaf, np.ndarray]:
        return {(c, node.name, f): t[name] for c, f, name in pairs if name in t}

    def save(node: Node, w: dict[Leaf, np.ndarray], graph: Graph) -> dict[str, np.ndarray]:
        return {name: w[(c, node.name, f)] for c, f, name in pairs if (c, node.name, f) in w}

    return expect, load, save


def _batchnorm_save(node: Node, w: dict[Leaf, np.ndarray], graph: Graph) -> dict[str, np.ndarray]:
    out = _BATCHNORM[2](node, w, graph)
    out["num_batches_tracked"] = np.zeros((), np.int64)  # PyTorch's buffer; dnn keeps none
    return out


_BATCHNORM = _renaming(
    (
        ("params", "scale", "weight"),
        ("params", "bias", "bias"),
        ("batch_stats", "mean", "running_mean"),
        ("batch_stats", "var", "running_var"),
    )
)
_NORM = _renaming((("params", "scale", "weight"), ("params", "bias", "bias")))
_EMBEDDING = _renaming((("params", "embedding", "weight"),))
_PRELU = _renaming((("params", "slope", "weight"),))

# ---- recurrent cells: dnn keeps Keras' layout (one bias; GRU gates z, r, n)

_GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


def _gate_order(op: str, a: np.ndarray, axis: int) -> np.ndarray:
    """PyTorch's GRU gates r, z, n as dnn's z, r, n (and back: the swap is its own inverse)."""
    if op != "gru":
        return a
    r, z, n = np.split(a, 3, axis=axis)
    return np.concatenate([z, r, n], axis=axis)


def directions(
    node: Node, leaves: Iterable[Leaf], names: tuple[str, str] = ("", "_reverse")
) -> list[tuple[str, str]]:
    """(Flax module, the file's name for the direction) per direction of a recurrent layer:
    PyTorch's suffixes by default, Keras' `Bidirectional` prefixes in runtime/weights_keras.py."""
    modules = {m for _, m, _ in leaves}
    if f"{node.name}/forward" in modules:
        return [(f"{node.name}/forward", names[0]), (f"{node.name}/backward", names[1])]
    return [(node.name, "")]


def _rnn_expect(node: Node, leaves: dict[Leaf, Shape], graph: Graph) -> dict[str, Shape] | None:
    out = {}
    for m, sfx in directions(node, leaves):
        i, g = leaves[("params", m, "kernel")]
        u = leaves[("params", m, "recurrent_kernel")][0]
        out |= {f"weight_ih_l0{sfx}": (g, i), f"weight_hh_l0{sfx}": (g, u)}
        out |= {f"bias_ih_l0{sfx}": (g,), f"bias_hh_l0{sfx}": (g,)}
    return out


def _rnn_load(
    node: Node, t: dict[str, np.ndarray], leaves: dict[Leaf, Shape], graph: Graph
) -> dict[Leaf, np.ndarray]:
    out = {}
    for m, sfx in directions(node, leaves):
        ih, hh = t[f"bias_ih_l0{sfx}"], t[f"bias_hh_l0{sfx}"]
        out[("params", m, "kernel")] = _gate_order(node.op, t[f"weight_ih_l0{sfx}"], 0).T
        out[("params", m, "recurrent_kernel")] = _gate_order(node.op, t[f"weight_hh_l0{sfx}"], 0).T
        if node.op == "gru":  # the reset gate multiplies W_hn h + b_hn: two biases, as PyTorch
            out[("params", m, "bias")] = _gate_order("gru", ih, 0)
            out[("params", m, "recurrent_bias")] = _gate_order("gru", hh, 0)
        else:  # both biases are added to the same sum
            out[("params", m, "bias")] = ih + hh
    return out


def _rnn_save(node: Node, w: dict[Leaf, np.ndarray], graph: Graph) -> dict[str, np.ndarray]:
    out = {}
    for m, sfx in directions(node, w):
        out[f"weight_ih_l0{sfx}"] = _gate_order(node.op, w[("params", m, "kernel")].T, 0)
        out[f"weight_hh_l0{sfx}"] = _gate_order(node.op, w[("params", m, "recurrent_kernel")].T, 0)
        b = w[("params", m, "bias")]
        if node.op == "gru":
            out[f"bias_ih_l0{sfx}"] = _gate_order("gru", b, 0)
            out[f"bias_hh_l0{sfx}"] = _gate_order("gru", w[("params", m, "recurrent_bias")], 0)
        else:  # dnn keeps the sum; PyTorch's second bias starts at zero
            out[f"bias_ih_l0{sfx}"] = b
            out[f"bias_hh_l0{sfx}"] = np.zeros_like(b)
    return out


# ---- attention: PyTorch's MultiheadAttention packs the three input projections


def _packed(leaves: dict[Leaf, Shape], name: str) -> bool:
    q = leaves[("params", name, "query_kernel")]
    k = leaves[("params", name, "key_kernel")]
    v = leaves[("params", name, "value_kernel")]
    return q == k == v and q[0] == q[1]


def _attention_expect(
    node: Node, leaves: dict[Leaf, Shape], graph: Graph
) -> dict[str, Shape] | None:
    n = node.name
    q = leaves[("params", n, "query_kernel")]
    bias = ("params", n, "query_bias") in leaves
    o = leaves[("params", n, "output_kernel")]
    out: dict[str, Shape] = {}
    if _packed(leaves, n):
        out["in_proj_weight"] = (3 * q[1], q[0])
        if bias:
            out["in_proj_bias"] = (3 * q[1],)
    else:
        for role in ("query", "key", "value"):
            k = leaves[("params", n, f"{role}_kernel")]
            out[f"{role[0]}_proj_weight"] = (k[1], k[0])
        if bias:
            sizes = [leaves[("params", n, f"{r}_kernel")][1] for r in ("query", "key", "value")]
            out["in_proj_bias"] = (sum(sizes),)
    out["out_proj.weight"] = (o[1], o[0])
    if bias:
        out["out_proj.bias"] = (o[1],)
    return out


def _attention_load(
    node: Node, t: dict[str, np.ndarray], leaves: dict[Leaf, Shape], graph: Graph
) -> dict[Leaf, np.ndarray]:
    n, roles = node.name, ("query", "key", "value")
    sizes = [leaves[("params", n, f"{r}_kernel")][1] for r in roles]
    cuts = np.cumsum(sizes)[:-1]
    if "in_proj_weight" in t:
        ws = np.split(t["in_proj_weight"], cuts, axis=0)
    else:
        ws = [t[f"{r[0]}_proj_weight"] for r in roles]
    out = {("params", n, f"{r}_kernel"): w.T for r, w in zip(roles, ws, strict=True)}
    out[("params", n, "output_kernel")] = t["out_proj.weight"].T
    if "in_proj_bias" in t:
        for r, b in zip(roles, np.split(t["in_proj_bias"], cuts), strict=True):
            out[("params", n, f"{r}_bias")] = b
        out[("params", n, "output_bias")] = t["out_proj.bias"]
    return out


def _attention_save(node: Node, w: dict[Leaf, np.ndarray], graph: Graph) -> dict[str, np.ndarray]:
    n, roles = node.name, ("query", "key", "value")
    leaves = {k: tuple(v.shape) for k, v in w.items()}
    ks = [w[("params", n, f"{r}_kernel")].T for r in roles]
    out = (
        {"in_proj_weight": np.concatenate(ks, axis=0)}
        if _packed(leaves, n)
        else {f"{r[0]}_proj_weight": k for r, k in zip(roles, ks, strict=True)}
    )
    out["out_proj.weight"] = w[("params", n, "output_kernel")].T
    if ("params", n, "query_bias") in w:
        out["in_proj_bias"] = np.concatenate([w[("params", n, f"{r}_bias")] for r in roles])
        out["out_proj.bias"] = w[("params", n, "output_bias")]
    return out


def _layouts() -> dict[str, Layout]:
    conv = Layout(_conv_expect(False), _conv_load(False), _conv_save(False))
    transposed = Layout(_conv_expect(True), _conv_load(True), _conv_save(True))
    norm = Layout(*_NORM)
    return {
        "dense": Layout(_dense_expect, _dense_load, _dense_save),
        **{f"conv{d}d": conv for d in (1, 2, 3)},
        "depthwise_conv2d": conv,
        **{f"conv_transpose{d}d": transposed for d in (1, 2, 3)},
        "batchnorm": Layout(_BATCHNORM[0], _BATCHNORM[1], _batchnorm_save),
        "layernorm": norm,
        "groupnorm": norm,
        "instancenorm": norm,
        "rmsnorm": norm,
        "embedding": Layout(*_EMBEDDING),
        "prelu": Layout(*_PRELU),
        **{op: Layout(_rnn_expect, _rnn_load, _rnn_save) for op in _GATES},
        "multi_head_attention": Layout(_attention_expect, _attention_load, _attention_save),
    }


LAYOUTS = _layouts()

# PyTorch's default eps of the layers whose eps dnn reads from the spec
TORCH_EPS = {"batchnorm": 1e-5, "layernorm": 1e-5, "groupnorm": 1e-5, "instancenorm": 1e-5}
TORCH = Format("torch", LAYOUTS, TORCH_EPS, lambda t: units(t))


# ------------------------------------------------------------------ the mapping


@dataclass
class Plan:
    """Which unit fills which slot, and how; what is left on either side."""

    pairs: list[tuple[Slot, Unit, str]] = field(default_factory=list)  # how: map, name, order
    unfilled: list[Slot] = field(default_factory=list)
    unused: list[Unit] = field(default_factory=list)
    skipped_slots: list[Slot] = field(default_factory=list)
    skipped_units: list[Unit] = field(default_factory=list)
    mismatches: list[tuple[Slot, Unit, str]] = field(default_factory=list)  # pinned, not fitting
    unsupported: list[Slot] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.unfilled or self.unused or self.mismatches or self.unsupported)


def fits(slot: Slot, unit: Unit) -> bool:
    return slot.expect is not None and dict(slot.expect) == unit.signature()


def _matches(patterns: Sequence[str], *names: str) -> bool:
    return any(fnmatch.fnmatchcase(n, p) for p in patterns for n in names)


def plan(
    all_slots: list[Slot],
    all_units: list[Unit],
    mapping: Sequence[tuple[str, str]] = (),
    skip: Sequence[str] = (),
) -> Plan:
    """Match units to slots (see the module doc)."""
    out = Plan()
    slots_left: list[Slot] = []
    for s in all_slots:
        if _matches(skip, s.name):
            out.skipped_slots.append(s)
        elif s.expect is None:
            out.unsupported.append(s)
        else:
            slots_left.append(s)
    units_left: list[Unit] = []
    for u in all_units:
        names = [u.full(k) for k in u.tensors] + [u.name]
        if all(_matches(skip, n) for n in names[:-1]) or _matches(skip, u.name):
            out.skipped_units.append(u)
        else:
            units_left.append(u)

    def take(s: Slot, u: Unit, how: str) -> None:
        slots_left.remove(s)
        units_left.remove(u)
        if fits(s, u):
            out.pairs.append((s, u, how))
        else:
            out.mismatches.append((s, u, how))

    by_slot = {s.name: s for s in slots_left}
    by_unit = {u.name: u for u in units_left}
    for key, target in mapping:
        if "*" in key or "*" in target:
            continue
        if key in by_unit and target in by_slot:
            take(by_slot[target], by_unit[key], "map")
    for key, target in mapping:  # pattern pairs: structure within the named parts
        if "*" in key or "*" in target:
            sub_units = [u for u in units_left if fnmatch.fnmatchcase(u.name, key)]
            sub_slots = [s for s in slots_left if fnmatch.fnmatchcase(s.name, target)]
            _by_order(sub_slots, sub_units, lambda s, u: take(s, u, "map"))
    for u in list(units_left):  # a name alone pins only what fits (auto names may collide)
        s = by_slot.get(u.name.replace(".", "/"))
        if s is not None and s in slots_left and fits(s, u):
            take(s, u, "name")
    _by_order(list(slots_left), list(units_left), lambda s, u: take(s, u, "order"))
    out.pairs.sort(key=lambda p: all_slots.index(p[0]))
    out.unfilled, out.unused = slots_left, units_left
    return out


def _by_order(slots_: list[Slot], units_: list[Unit], take: Callable[[Slot, Unit], None]) -> None:
    free = list(units_)
    for s in slots_:
        u = next((u for u in free if fits(s, u)), None)
        if u is not None:
            free.remove(u)
            take(s, u)


# ------------------------------------------------------------------ applying a plan


def _source_path(program: Program, text: str) -> Path:
    p = Path(text)
    if p.is_absolute():
        return p
    candidates = [Path(program.path).resolve().parent / p, Path.cwd() / p]
    return next((c for c in candidates if c.exists()), candidates[0])


def spec_slots(
    program: Program,
    params: Any,
    state: Any,
    members: int | None = None,
    fmt: Format | None = None,
) -> list[Slot]:
    """The spec's slots from per-node weight trees (arrays or shapes; an ensemble's member
    axis taken off, unless `members` is 1)."""
    assert program.model is not None
    members = int(program.train.ensemble) if members is None else members

    def shape(a: Any) -> Shape:
        s = tuple(a.shape)
        return s[1:] if members > 1 else s

    p = {m: {k: shape(v) for k, v in leaves.items()} for m, leaves in params.items()}
    st = {
        c: {m: {k: shape(v) for k, v in leaves.items()} for m, leaves in tree.items()}
        for c, tree in state.items()
    }
    return slots(program.model, p, st, fmt)


def load_file(
    program: Program, params: dict[str, Any], state: dict[str, Any], source: str
) -> tuple[dict[str, Any], dict[str, Any], list[str], list[str]]:
    """`params` and `state` (per-node trees, as checkpoints hold them) with every slot the
    file fills replaced by the file's tensors in dnn's layout; the lines that say what was
    loaded, and the layers loaded. A file that does not fit raises a SpecError at the spec
    line of the cause."""
    assert program.model is not None
    path = _source_path(program, source)
    try:
        fmt, tensors = read(path)
    except WeightsError as e:
        raise _at(program, "init_from", str(e), e.hint) from None
    all_units = fmt.group({k: tuple(v.shape) for k, v in tensors.items()})
    the_slots = spec_slots(program, params, state, fmt=fmt)
    mapping, skip = program.train.init_map, program.train.init_skip
    p = plan(the_slots, all_units, mapping, skip)
    _strict(program, p, path)
    members = int(program.train.ensemble)
    params, state = (
        {k: dict(v) for k, v in params.items()},
        {c: {k: dict(v) for k, v in tree.items()} for c, tree in state.items()},
    )
    graph = program.model
    for slot, unit, _ in p.pairs:
        t = {k: tensors[unit.full(k)] for k in unit.tensors}
        leaves = fmt.layouts[slot.node.op].load(slot.node, t, dict(slot.leaves), graph)
        for (coll, module, leaf), value in leaves.items():
            tree = params if coll == "params" else state[coll]
            old = tree[module][leaf]
            v = np.asarray(value, np.float32)
            tree[module][leaf] = (
                np.broadcast_to(v, old.shape).astype(old.dtype)
                if members > 1
                else (v.astype(old.dtype))
            )
    notes = [f"init_from {path}: loaded {len(p.pairs)} layers from {len(all_units)} modules"]
    if p.skipped_units:
        notes.append(f"  file modules skipped: {', '.join(u.name for u in p.skipped_units)}")
    if p.skipped_slots:
        notes.append(
            f"  new layers (initialized fresh): {', '.join(s.name for s in p.skipped_slots)}"
        )
    notes += eps_notes(fmt, [s for s, _, _ in p.pairs])
    return params, state, notes, [s.name for s, _, _ in p.pairs]


def eps_notes(fmt: Format, loaded: list[Slot]) -> list[str]:
    """A note per normalization layer whose eps is not the file's library's default (a weight
    file does not say which eps it was trained with)."""
    out = []
    lib = {"torch": "PyTorch", "keras": "Keras"}[fmt.name]
    for s in loaded:
        eps = fmt.eps.get(s.node.op)
        if eps is not None and not math.isclose(float(s.node.arg("eps")), eps):
            out.append(
                f"  note: `{s.name}` uses eps = {s.node.arg('eps'):g}; {lib}'s {s.node.op} "
                f"default is {eps:g} (set `eps = {eps:g}` if the file was trained with it)"
            )
    return out


def _shape(s: Shape) -> str:
    return "[" + ", ".join(map(str, s)) + "]"


def _strict(program: Program, p: Plan, path: Path) -> None:
    """Every slot filled and every unit used, else one diagnostic per cause."""
    diags = []
    for slot, unit, how in p.mismatches:
        want, have = dict(slot.expect or ()), unit.signature()
        diffs = [
            f"`{unit.full(k)}` is {_shape(have[k])}, `{slot.name}` needs {_shape(want[k])}"
            for k in want
            if k in have and have[k] != want[k]
        ]
        names = set(want) ^ set(have)
        what = "; ".join(diffs) or (
            f"its tensors are {', '.join(sorted(have))}, `{slot.name}` needs "
            f"{', '.join(sorted(want))}"
        )
        diags.append(
            Diagnostic(
                E_WEIGHTS,
                f"{path.name}: module `{unit.name}` ({how}) does not fit: {what}",
                slot.node.span,
                "fix the layer's arguments, or map another module to it in `init_map`"
                if not names
                else "map a module of this kind to it in `init_map`",
            )
        )
    for slot in p.unsupported:
        diags.append(
            Diagnostic(
                E_WEIGHTS,
                f"`{slot.name}`: dnn knows no PyTorch layout for `{slot.node.op}` weights",
                slot.node.span,
                f'start it fresh: add "{slot.name}" to `init_skip`',
            )
        )
    for slot in p.unfilled:
        near = [u for u in p.unused if set(u.signature()) == set(dict(slot.expect or ()))]
        extra = (
            f"; the file's unused `{near[0].name}` has "
            + ", ".join(f"{k} {_shape(s)}" for k, s in near[0].signature().items())
            if near
            else ""
        )
        diags.append(
            Diagnostic(
                E_WEIGHTS,
                f"{path.name} has no module for `{slot.name}` (needs "
                + ", ".join(f"{k} {_shape(s)}" for k, s in (slot.expect or ()))
                + f"){extra}",
                slot.node.span,
                f'a new layer starts fresh when `init_skip` names it: init_skip = ["{slot.name}"]'
                + (f' (and "{near[0].name}.*" for the file\'s)' if near else ""),
            )
        )
    if p.unused and not p.unfilled:
        names = ", ".join(f"`{u.name}`" for u in p.unused[:8])
        more = f" and {len(p.unused) - 8} more" if len(p.unused) > 8 else ""
        diags.append(
            Diagnostic(
                E_WEIGHTS,
                f"{path.name}: {len(p.unused)} module(s) fit no layer of the spec: {names}{more}",
                program.train.span_of("init_from"),
                'leave them out with `init_skip = ["' + p.unused[0].name + '.*"]`, or see '
                f"`dnn weights {path.name} {Path(program.path).name}`",
            )
        )
    if diags:
        raise SpecError(diags, program.sources)


def _at(program: Program, field_name: str, message: str, hint: str) -> SpecError:
    return SpecError(
        [Diagnostic(E_WEIGHTS, message, program.train.span_of(field_name), hint)],
        program.sources,
    )


# ------------------------------------------------------------------ out


def to_torch(
    program: Program,
    params: dict[str, Any],
    state: dict[str, Any],
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A run's weights (per-node trees, one member) as PyTorch tensors: a layer filled from
    a weight file under its module's name there (`names`), the others under their spec name
    with `/` read as `.`."""
    assert program.model is not None
    names = names or {}
    graph = program.model
    out: dict[str, np.ndarray] = {}
    for slot in spec_slots(program, params, state):
        if slot.expect is None:
            raise WeightsError(
                f"`{slot.name}`: dnn knows no PyTorch layout for `{slot.node.op}` weights",
                "export with --layout flax",
            )
        w = {
            leaf: np.asarray((params if leaf[0] == "params" else state[leaf[0]])[leaf[1]][leaf[2]])
            for leaf, _ in slot.leaves
        }
        for k, v in LAYOUTS[slot.node.op].save(slot.node, w, graph).items():
            out[f"{names.get(slot.name, slot.name.replace('/', '.'))}.{k}"] = v
    return out


def to_flax(params: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """A run's weights under their Flax names: `params/<layer>/<leaf>`, `batch_stats/...`."""
    out = {
        f"params/{m}/{k}": np.asarray(v) for m, leaves in params.items() for k, v in leaves.items()
    }
    for c, tree in state.items():
        out |= {
            f"{c}/{m}/{k}": np.asarray(v) for m, leaves in tree.items() for k, v in leaves.items()
        }
    return out


def export_run(program: Program, run: Path, layout: str, out: Path) -> dict[str, np.ndarray]:
    """Write a trained run's final weights to `out` (.safetensors) in PyTorch's layout (a
    PyTorch module with the spec's layer names loads them with `strict=True`) or Flax's."""
    import jax

    from . import infer

    engine, st, _, _ = infer.loaded(program, run, "export")
    params = jax.device_get(engine.to_disk(st["params"]))
    state = jax.device_get(engine.to_disk(st["model_state"]))
    if layout == "torch":
        if engine.members > 1:
            raise WeightsError(
                f"the run trained an ensemble of {engine.members} members; PyTorch's layout "
                "holds one network",
                "export with --layout flax (every member, on a leading axis)",
            )
        tensors = to_torch(program, params, state, file_names(program))
    else:
        tensors = to_flax(params, state)
    assert program.model is not None
    meta = {"format": "pt" if layout == "torch" else "flax", "dnn_model": program.model.name}
    write(out, tensors, meta)
    return tensors


def file_names(program: Program) -> dict[str, str]:
    """Layer -> module name in the weight file `init_from` read, for the layers it filled
    (none when `init_from` is a run folder, or the file is gone)."""
    if not program.train.init_from:
        return {}
    path = _source_path(program, str(program.train.init_from))
    if not path.is_file():
        return {}
    try:
        p, _ = plan_for(program, path)
    except WeightsError:
        return {}
    return {s.name: u.name for s, u, _ in p.pairs}


def _describe(unit: Unit) -> str:
    """The unit's tensors in a few words: two in full, then a count."""
    ordered = sorted(unit.signature().items(), key=lambda kv: ("bias" in kv[0], kv[0]))
    shown = [f"{k} {_shape(s)}" for k, s in ordered]
    return ", ".join(shown[:2]) + (f" +{len(shown) - 2} more" if len(shown) > 2 else "")


def report(p: Plan, tensors: dict[str, tuple[Shape, str]] | None = None) -> list[str]:
    """The lines `dnn weights FILE SPEC` prints."""
    lines = []
    width = max((len(s.name) for s, _, _ in p.pairs), default=10)
    for s, u, how in p.pairs:
        lines.append(f"  {s.name:<{width}}  <- {u.name:<24} ({how}) {_describe(u)}")
    for s, u, how in p.mismatches:
        lines.append(f"  {s.name:<{width}}  <- {u.name} ({how}) DOES NOT FIT: {_describe(u)}")
    if p.unfilled or p.unsupported:
        lines.append("spec layers with no module in the file:")
        lines += [
            f"  {s.name} ({s.node.op}, needs "
            + (", ".join(f"{k} {_shape(v)}" for k, v in s.expect) if s.expect else "no layout")
            + ")"
            for s in p.unfilled + p.unsupported
        ]
    if p.unused:
        lines.append("file modules used by no layer:")
        lines += [f"  {u.name}: {_describe(u)}" for u in p.unused]
    if p.skipped_slots:
        lines.append(
            "skipped (`init_skip`), initialized fresh: "
            + ", ".join(s.name for s in p.skipped_slots)
        )
    if p.skipped_units:
        lines.append(
            "skipped (`init_skip`) in the file: " + ", ".join(u.name for u in p.skipped_units)
        )
    return lines


def spec_shapes(program: Program) -> tuple[dict[str, Any], dict[str, Any]]:
    """The spec's weights as per-node trees of shapes, traced (nothing is allocated)."""
    import jax
    import jax.numpy as jnp
    from dnn.compiler.lower_flax import lower_model

    graph = program.model
    assert graph is not None
    model = lower_model(graph, program.train.init)
    xs = {
        n: jax.ShapeDtypeStruct(
            (1, *graph.node(n).shape),
            jnp.int32 if graph.node(n).dtype.startswith(("i", "u")) else jnp.float32,
        )
        for n in graph.inputs
    }
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    variables = jax.eval_shape(lambda x: model.init(keys, x), xs)
    params = variables.get("params", {})
    return params, {k: v for k, v in variables.items() if k != "params"}


def plan_for(program: Program, path: Path) -> tuple[Plan, list[Unit]]:
    """The mapping `init_from` would make from `path` into the spec (only headers read)."""
    fmt, found = shapes(path)
    all_units = fmt.group({k: s for k, (s, _) in found.items()})
    params, state = spec_shapes(program)
    the_slots = spec_slots(program, params, state, members=1, fmt=fmt)
    return plan(the_slots, all_units, program.train.init_map, program.train.init_skip), all_units
