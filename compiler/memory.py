"""IR → a static estimate of the memory one training run holds per device (issue 14, class 9).

Computed from the IR alone (shapes, dtypes, parameter counts, the `train` and `data` sections)
without JAX, so `dnn summary` shows it and `dnn train` can refuse a run that cannot fit before
anything is allocated (runtime/memory_limit.py). What it counts, per device:

- weights: every parameter and running statistic, in float32 whatever the precision;
- optimizer: the optimizer's parameter-sized slots (`Slots` on its registry entry: Adam 2,
  SGD 0) times the trainable parameters not frozen, plus one for `accumulate` > 1 (Optax's
  MultiSteps keeps the summed gradient);
- gradients: one float32 array per trainable parameter;
- activations: every node's output for one batch, kept for the backward pass (batch × output
  size × bytes of its dtype; 2 bytes for floats under `precision = bf16`, which also keeps a
  bfloat16 copy of the weights); a layer whose entry says it keeps more (`keeps`: recurrent
  layers keep every step's gates and states) counts that instead;
- data: every split of the data set, which the run places whole on each device (replicated
  over a mesh; runtime/train.py `device_data`). Known up front for built-in sets; for files
  `dnn train` passes the loaded arrays' size.

Weights, optimizer state and gradients are exact for the parameter-sized arrays (a test
compares them with what JAX allocates; Optax's scalars, a step counter and the injected rate,
are left out). Activations are an estimate: an upper bound where XLA fuses element-wise layers
into their producer and keeps one buffer for both, a lower bound in that XLA's temporaries
(the backward pass's activation gradients, convolution workspaces) are not counted. `remat`
is not modelled (its repeats count as stored). docs/memory.md gives the measured ratio.

Over devices (`train.devices`): the batch is split when the device count divides it
(runtime/placement.py), so activations are per device; `shard = fsdp` also splits weights,
optimizer state and gradients (counted as an even split: a parameter no axis of which the
count divides stays whole); the data is replicated. `devices = all` is counted as one device
in the front end, which does not know the machine.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any

from .diagnostics import E_MEMORY, NO_SPAN, W_MEMORY, Diagnostic, Span
from .ir import Config, Graph, Node
from .registry.core import Args
from .registry.data import BUILTIN_DATA
from .registry.layers import LAYERS
from .registry.optimizers import OPTIMIZERS
from .values import DTYPE_BYTES

F32 = 4
BF16 = 2
# `dnn check` warns above this per-device estimate: 80 GiB, the memory of the largest common
# single accelerators (A100/H100 80 GB); it cannot know the device a run will use.
WARN_BYTES = 80 * 2**30
PARTS = ("weights", "optimizer", "gradients", "activations", "data")


@dataclass(frozen=True, slots=True)
class LayerMemory:
    """One node's share of the estimate, in bytes per device."""

    name: str
    op: str
    weights: int
    optimizer: int
    gradients: int
    activations: int
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    @property
    def total(self) -> int:
        return self.weights + self.optimizer + self.gradients + self.activations


@dataclass(frozen=True, slots=True)
class Estimate:
    """The memory one training step holds on each device, by part and by layer (bytes)."""

    model: str
    weights: int
    optimizer: int
    gradients: int
    activations: int
    data: int | None  # None: known only once the files are read (`dnn train` knows it)
    devices: int
    batch: int  # examples per device in one step
    precision: str
    slots: int  # parameter-sized optimizer slots per trainable parameter
    layers: tuple[LayerMemory, ...]

    @property
    def total(self) -> int:
        return self.weights + self.optimizer + self.gradients + self.activations + (self.data or 0)

    def part(self, name: str) -> int | None:
        return getattr(self, name)  # type: ignore[no-any-return]

    def largest(self, k: int = 3) -> tuple[LayerMemory, ...]:
        """Up to k layers that hold the most, largest first (spec order among equals); after
        the first, only those holding at least 1% of the layers' total."""
        ranked = sorted(self.layers, key=lambda m: -m.total)
        floor = sum(m.total for m in self.layers) / 100
        return tuple(
            m for i, m in enumerate(ranked[:k]) if m.total > 0 and (i == 0 or m.total >= floor)
        )

    def breakdown(self) -> str:
        """`weights 1.2 MB, optimizer 2.4 MB, ...`."""
        items = []
        for p in PARTS:
            v = self.part(p)
            items.append(f"{p} {human(v)}" if v is not None else f"{p} not counted (read at run)")
        return ", ".join(items)

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_device": self.total,
            **{p: self.part(p) for p in PARTS},
            "devices": self.devices,
            "batch_per_device": self.batch,
            "precision": self.precision,
            "optimizer_slots": self.slots,
            "largest": [
                {"name": m.name, "op": m.op, "bytes": m.total, "line": m.span.line}
                for m in self.largest()
            ],
        }


def human(n: float) -> str:
    """Bytes in powers of 1024, as the summary's totals: `1.50 MB`."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


# ------------------------------------------------------------------ the estimate


def estimate(
    model: Graph,
    train: Config,
    data: Config | None = None,
    *,
    data_bytes: int | None = None,
    devices: int | None = None,
) -> Estimate:
    """The per-device memory of training `model` as `train` says.

    `data_bytes`: the loaded data set's size (else worked out for built-in sets, or None);
    `devices`: the device count (else `train.devices`, `all` counted as 1).
    """
    n = devices if devices is not None else _devices(train)
    members = int(_get(train, "ensemble", 1))
    batch = int(_get(train, "batch_size", 32))
    per_device = batch // n if n > 1 and batch % n == 0 else batch  # runtime/placement.py
    split = n if str(_get(train, "shard", "data")) == "fsdp" else 1
    bf16 = str(_get(train, "precision", "f32")) == "bf16"
    slots = optimizer_slots(train)
    # layers `unfreeze` releases later keep optimizer state from the start (lower_unfreeze.py)
    frozen = () if _get(train, "unfreeze", None) else tuple(_get(train, "freeze", ()))
    layers = tuple(
        _layer(node, _kept(model, node), slots, frozen, per_device, members, split, bf16)
        for node in model.nodes
    )
    if data_bytes is None and data is not None:
        data_bytes = builtin_data_bytes(model, data)
    return Estimate(
        model=model.name,
        weights=sum(m.weights for m in layers),
        optimizer=sum(m.optimizer for m in layers),
        gradients=sum(m.gradients for m in layers),
        activations=sum(m.activations for m in layers),
        data=data_bytes,
        devices=n,
        batch=per_device,
        precision="bf16" if bf16 else "f32",
        slots=slots,
        layers=layers,
    )


def optimizer_slots(train: Config) -> int:
    """Parameter-sized arrays the optimizer keeps, plus MultiSteps' summed gradient."""
    ref = _get(train, "optimizer", None)
    entry = OPTIMIZERS.lookup(ref.name) if ref is not None else OPTIMIZERS.lookup("adam")
    assert entry is not None and entry.slots is not None, "every optimizer declares its slots"
    args = dict(ref.args) if ref is not None else {a.name: a.default for a in entry.args}
    return entry.slots.count(args) + (1 if int(_get(train, "accumulate", 1)) > 1 else 0)


def _kept(model: Graph, node: Node) -> int:
    """Values per example the training step keeps for `node`: its output, or what its entry
    says it keeps (`keeps`: a recurrent layer keeps every step's gates and states, attention
    its weights). `keeps` takes the input shape, or the tuple of them for a word of several
    inputs, as the entry's shape rule does."""
    entry = LAYERS.lookup(node.op) if node.kind == "layer" else None
    if entry is None or entry.keeps is None:
        return math.prod(node.shape)
    xs = tuple(model.node(i).shape for i in node.inputs)
    x = xs[0] if entry.arity == 1 else xs
    return int(entry.keeps(Args(node.args), x, node.shape))


def _layer(
    node: Node,
    kept: int,
    slots: int,
    frozen: tuple[str, ...],
    batch: int,
    members: int,
    split: int,
    bf16: bool,
) -> LayerMemory:
    trained = 0 if any(fnmatch.fnmatchcase(node.name, p) for p in frozen) else node.params
    out = DTYPE_BYTES.get(node.dtype, F32)
    if bf16 and node.dtype.startswith("f"):
        out = BF16
    activations = kept * batch * out + (node.params * BF16 if bf16 else 0)
    return LayerMemory(
        node.name,
        node.op,
        weights=_ceil(node.total_params * F32 * members, split),
        optimizer=_ceil(trained * slots * F32 * members, split),
        gradients=_ceil(node.params * F32 * members, split),
        activations=activations * members,
        span=node.span,
    )


def builtin_data_bytes(model: Graph, data: Config) -> int | None:
    """Every split of a built-in data set as the run places it: inputs as the model takes
    them, labels as int32 (class sets) or float32 per output (regression); None for files."""
    source = _get(data, "source", None)
    extra = [_get(data, "val", None), _get(data, "test", None)]
    if source is None or source.name != "builtin" or any(e is not None for e in extra):
        return None
    info = BUILTIN_DATA[str(dict(source.args)["name"])]
    x = sum(
        math.prod(model.node(i).shape) * DTYPE_BYTES.get(model.node(i).dtype, F32)
        for i in model.inputs
    )
    outputs = math.prod(model.node(model.outputs[0]).shape) if model.outputs else 1
    y = F32 if info["classes"] is not None else F32 * outputs
    return int(info["samples"]) * (x + y)


def _devices(train: Config) -> int:
    d = _get(train, "devices", 1)
    return 1 if str(d) == "all" else int(d)


def _get(config: Config, name: str, default: Any) -> Any:
    try:
        return getattr(config, name)
    except AttributeError:  # a spec without that section: its defaults
        return default


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


# ------------------------------------------------------------------ diagnostics


def warning(est: Estimate) -> Diagnostic | None:
    """`dnn check`'s warning when the estimate alone passes `WARN_BYTES` (no device known)."""
    if est.total <= WARN_BYTES:
        return None
    top = est.largest()
    return Diagnostic(
        W_MEMORY,
        f"training `{est.model}` needs about {human(est.total)} per device "
        f"({est.breakdown()}), more than the {human(WARN_BYTES)} that the largest common single "
        "accelerators hold",
        top[0].span,
        _hint(est),
        severity="warning",
        notes=_notes(top),
    )


def refusal(est: Estimate, limit: int, where: str) -> Diagnostic:
    """`dnn train`'s error when the estimate exceeds the memory `limit` of `where`."""
    top = est.largest()
    return Diagnostic(
        E_MEMORY,
        f"training `{est.model}` needs about {human(est.total)} per device "
        f"({est.breakdown()}), more than the {human(limit)} {where}",
        top[0].span if top else NO_SPAN,
        _hint(est),
        notes=_notes(top),
    )


def _notes(top: tuple[LayerMemory, ...]) -> tuple[tuple[str, Span], ...]:
    return tuple(
        (
            f"{'largest' if i == 0 else 'next'} layer `{m.name}` ({m.op}): {human(m.total)} "
            f"(weights {human(m.weights)}, optimizer {human(m.optimizer)}, "
            f"gradients {human(m.gradients)}, activations {human(m.activations)})",
            m.span,
        )
        for i, m in enumerate(top)
    )


def _hint(est: Estimate) -> str:
    weights = est.weights + est.optimizer + est.gradients
    if weights >= est.activations:
        return (
            f"make the largest layers smaller; choose an optimizer with fewer slots (this one "
            f"keeps {est.slots} per parameter; `sgd` keeps 0); or split the weights over "
            "devices with `devices = N` and `shard = fsdp`"
        )
    return (
        "lower `batch_size`, train in `precision = bf16`, recompute scanned repeats with "
        "`remat = true`, or split each batch over devices with `devices = N`"
    )
