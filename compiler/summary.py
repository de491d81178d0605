"""IR → a Keras-like summary: per layer name, op, output shape and parameters, plus totals."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from .ir import Program
from .memory import Estimate, estimate, human

BYTES_PER_PARAM = 4  # parameters are kept in float32, whatever the compute precision


@dataclass(frozen=True, slots=True)
class LayerRow:
    name: str
    op: str
    output_shape: tuple[int | None, ...]  # with the batch axis first, as None
    params: int  # trainable + non-trainable, as Keras counts
    trainable: int
    non_trainable: int
    inputs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Summary:
    """Shapes and parameter counts of every layer, computed statically."""

    model: str
    layers: tuple[LayerRow, ...]
    params: int
    trainable: int
    non_trainable: int
    memory: Estimate | None = None  # per device, one training step (compiler/memory.py)

    @property
    def bytes(self) -> int:
        return self.params * BYTES_PER_PARAM

    def to_dict(self) -> dict[str, Any]:
        layers = [
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(r).items()}
            for r in self.layers
        ]
        totals = {
            "params": self.params,
            "trainable": self.trainable,
            "non_trainable": self.non_trainable,
            "bytes": self.bytes,
        }
        out = {"model": self.model, "layers": layers, "totals": totals}
        if self.memory is not None:
            out["memory"] = self.memory.to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        return render_table(self)


def summarize(program: Program) -> Summary:
    """The summary of a program's model."""
    g = program.model
    if g is None:
        return Summary("(no model)", (), 0, 0, 0)
    rows = tuple(
        LayerRow(n.name, n.op, (None, *n.shape), n.total_params, n.params, n.state, n.inputs)
        for n in g.nodes
    )
    memory = estimate(g, program.train, program.data)
    return Summary(g.name, rows, g.params, g.trainable, g.non_trainable, memory)


def _shape(s: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in s) + ")"


_human = human


def render_table(s: Summary) -> str:
    """A boxed text table like Keras' `model.summary()`."""
    header = ("Layer", "Op", "Output shape", "Params", "Inputs")
    rows = [
        (r.name, r.op, _shape(r.output_shape), f"{r.params:,}", ", ".join(r.inputs))
        for r in s.layers
    ]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    right = {3}

    def line(cells: tuple[str, ...]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "│ " + " │ ".join(parts) + " │"

    def rule(left: str, mid: str, rgt: str) -> str:
        return left + mid.join("─" * (w + 2) for w in widths) + rgt

    out = [f'Model: "{s.model}"', rule("┌", "┬", "┐"), line(header), rule("├", "┼", "┤")]
    out += [line(r) for r in rows]
    out.append(rule("└", "┴", "┘"))
    out.append(f" Total params: {s.params:,} ({_human(s.bytes)})")
    out.append(f" Trainable params: {s.trainable:,} ({_human(s.trainable * BYTES_PER_PARAM)})")
    out.append(
        f" Non-trainable params: {s.non_trainable:,} ({_human(s.non_trainable * BYTES_PER_PARAM)})"
    )
    if s.memory is not None:
        out += memory_lines(s.memory)
    return "\n".join(out)


def memory_lines(m: Estimate) -> list[str]:
    """The estimate's lines under the totals: per device by part, then the largest layers."""
    where = f"{m.devices} devices, " if m.devices > 1 else ""
    lines = [
        f" Memory per device (training estimate, docs/memory.md): {human(m.total)}",
        f"   {m.breakdown()}",
        f"   ({where}batch {m.batch} per device, {m.precision}, {m.slots} optimizer slots)",
    ]
    top = m.largest()
    if top:
        lines.append(
            " Largest: " + ", ".join(f"{t.name} {human(t.total)} (line {t.span.line})" for t in top)
        )
    return lines
