"""IR × IR → a semantic diff (`dnn diff`): layers added, removed, moved, changed, and config.

Entry point: `diff(before, after) -> ProgramDiff`, a pure function of two checked programs.
Formatting, comments, keyword order, named params and blocks are gone from the IR already;
this pass compares what remains. Renderers (`render_text`, `render_markdown`, `to_json`) and
`canonical_text` (the git textconv view) are pure functions of the result or the program.

How layers are aligned (compiler/diff_align.py; docs/diff.md says the same for users):

1. Each graph is put in a canonical order: inputs as declared, then a depth-first post-order
   from the outputs, so statements that only reorder independent branches compare equal.
2. Each node gets a key. A layer the user named (`h = ...`, an input) is keyed by that name
   with any `_N` suffix dropped; an auto-named one (`dense_1`, `res_1/conv2d`) by its op,
   resolved arguments and the names of named layers it reads. Block paths and auto-generated names never take part, so a block and
   its body written out align.
3. The key sequences are aligned by a longest common subsequence (Myers' diff, as git's;
   difflib past 400 edits). Inside each stretch between matches, a second alignment by op
   alone pairs layers whose arguments changed. A run of added or removed layers that could
   sit one place earlier or later slides to where it spans the fewest block instances.
4. Left-over removed and added layers with equal keys are paired as moved; a pair whose
   inputs are still the same layers is only reordered, not moved.

Two programs are equivalent when every layer pairs with one of identical op, arguments,
inputs, shape, dtype and parameter count (and the same name, where both were named by the
user), and every config field is equal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from .diagnostics import NO_SPAN
from .diff_align import Side, Slot, canonical_order, own_facts, pair_layers, side, user_name
from .ir import Config, Graph, Node, Program
from .registry import REGISTRIES
from .registry.core import SameAs
from .values import Quantity, Rec, Ref, Symbol, TensorType, show

STATUSES = ("added", "removed", "moved", "changed", "renamed", "shape")
SHAPE_FIELDS = ("shape", "input_shape")


# ------------------------------------------------------------------ result


@dataclass(frozen=True, slots=True)
class Change:
    """One fact of a layer that differs: an argument, `op`, `shape`, `inputs`, `name`..."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class LayerDiff:
    """One layer that differs; `status` is one of STATUSES."""

    status: str
    name: str  # the local name (last path component), of the after side when there is one
    path: str  # the full path ("res_1/conv2d")
    op: str
    changes: tuple[Change, ...]
    params_before: int  # trainable + non-trainable, as the summary counts; 0 when absent
    params_after: int

    @property
    def delta(self) -> int:
        return self.params_after - self.params_before


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """A config value that differs: `train.optimizer.lr`, `data.augment`, `params.width`..."""

    path: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class ProgramDiff:
    """The semantic difference between two programs."""

    before: str  # the paths, for headers
    after: str
    model: str  # the model name (after side, else before side)
    layers: tuple[LayerDiff, ...]
    config: tuple[ConfigChange, ...]
    params_before: int
    params_after: int

    @property
    def equivalent(self) -> bool:
        return not self.layers and not self.config

    @property
    def delta(self) -> int:
        return self.params_after - self.params_before

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape: equivalent, layers, params, config."""
        return {
            "equivalent": self.equivalent,
            "layers": [_layer_dict(d) for d in self.layers],
            "params": {
                "before": self.params_before,
                "after": self.params_after,
                "delta": self.delta,
            },
            "config": [
                {"path": c.path, "before": json_value(c.before), "after": json_value(c.after)}
                for c in self.config
            ],
        }


def _layer_dict(d: LayerDiff) -> dict[str, Any]:
    changes = [
        {"field": c.field, "before": json_value(c.before), "after": json_value(c.after)}
        for c in d.changes
    ]
    return {
        "status": d.status,
        "name": d.name,
        "path": d.path,
        "changes": changes,
        "params_before": d.params_before,
        "params_after": d.params_after,
    }


def json_value(v: Any) -> Any:
    """A resolved value for JSON: numbers, booleans, strings and lists as such, words as text."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, tuple | list):
        return [json_value(x) for x in v]
    return brief(v)


# ------------------------------------------------------------------ the pass


def diff(before: Program, after: Program) -> ProgramDiff:
    """Compare two checked programs."""
    layers, pairs = _layer_diffs(before, after)
    config = (*_model_changes(before.model, after.model, pairs), *config_changes(before, after))
    g = after.model or before.model
    return ProgramDiff(
        before.path,
        after.path,
        g.name if g else "",
        layers,
        config,
        before.model.params if before.model else 0,
        after.model.params if after.model else 0,
    )


def _layer_diffs(a: Program, b: Program) -> tuple[tuple[LayerDiff, ...], dict[str, str]]:
    sa, sb = side(a), side(b)
    slots = pair_layers(sa, sb)
    pairs = {x.name: y.name for x, y, _ in slots if x is not None and y is not None}
    skip_a = {x.name for x, y, m in slots if x is not None and (y is None or m)}
    skip_b = {y.name for x, y, m in slots if y is not None and (x is None or m)}
    ctx = _Context(sa, sb, pairs, skip_a, skip_b)
    found = (_slot_diff(s, ctx) for s in slots)
    return tuple(d for d in found if d is not None), pairs


# ------------------------------------------------------------------ one slot


@dataclass(frozen=True, slots=True)
class _Context:
    a: Side
    b: Side
    pairs: dict[str, str]  # before name -> after name
    skip_a: set[str]  # removed or moved: looked through when comparing inputs
    skip_b: set[str]


def _slot_diff(slot: Slot, ctx: _Context) -> LayerDiff | None:
    x, y, moved = slot
    if y is None:
        assert x is not None
        return _whole("removed", x, ctx.a.own[x.name], before=True)
    if x is None:
        return _whole("added", y, ctx.b.own[y.name], before=False)
    changes = _pair_changes(x, y, ctx, moved)
    own_differs = any(c.field not in (*SHAPE_FIELDS, "dtype", "name") for c in changes)
    renamed = any(c.field == "name" for c in changes)
    ripple = any(c.field in (*SHAPE_FIELDS, "dtype") for c in changes)
    if not (moved or changes or x.total_params != y.total_params):
        return None
    status = (
        "moved"
        if moved
        else "changed"
        if own_differs or (x.kind == "input" and ripple)
        else "renamed"
        if renamed
        else "shape"
    )
    return LayerDiff(status, _local(y.name), y.name, y.op, changes, x.total_params, y.total_params)


def _whole(status: str, n: Node, own: tuple[tuple[str, Any], ...], before: bool) -> LayerDiff:
    """An added or removed layer: its op, its non-default arguments and shape, from or to none."""
    facts = [("op", n.op), *non_default(n.kind, n.op, own), ("shape", n.shape)]
    if n.kind == "input":
        facts = [("op", n.op), *own]
    changes = tuple(Change(k, v, None) if before else Change(k, None, v) for k, v in facts)
    p = n.total_params
    return LayerDiff(status, _local(n.name), n.name, n.op, changes, *((p, 0) if before else (0, p)))


def _pair_changes(x: Node, y: Node, ctx: _Context, moved: bool) -> tuple[Change, ...]:
    out: list[Change] = []
    ux, uy = user_name(x), user_name(y)
    if ux is not None and uy is not None and ux != uy:  # naming an unnamed layer is neutral
        out.append(Change("name", ux, uy))
    if x.op != y.op:
        out.append(Change("op", x.op, y.op))
    out += _dict_changes(dict(ctx.a.own[x.name]), dict(ctx.b.own[y.name]))
    out += _input_changes(x, y, ctx, moved)
    if x.kind != "input":
        out += _shape_changes(x, y, ctx)
    return tuple(out)


def _dict_changes(a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    keys = [*a, *(k for k in b if k not in a)]
    return [Change(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]


def _input_changes(x: Node, y: Node, ctx: _Context, moved: bool) -> list[Change]:
    """Inputs that differ, looking through added, removed and moved single-input layers."""
    ax = [_anchors(i, ctx.a.by_name, ctx.skip_a) for i in x.inputs]
    by = [_anchors(i, ctx.b.by_name, ctx.skip_b) for i in y.inputs]
    if not moved and [{ctx.pairs.get(i) for i in s} for s in ax] == by:
        return []
    return [Change("inputs", tuple(x.inputs), tuple(y.inputs))]


def _anchors(name: str, by_name: dict[str, Node], skip: set[str]) -> set[str]:
    """The nearest layers at or above `name` that are neither added, removed nor moved."""
    found, todo, seen = set(), [name], {name}
    while todo:
        n = todo.pop()
        if n not in skip:
            found.add(n)
            continue
        for i in by_name[n].inputs:
            if i not in seen:
                seen.add(i)
                todo.append(i)
    return found


def _shape_changes(x: Node, y: Node, ctx: _Context) -> list[Change]:
    out = []
    if x.dtype != y.dtype:
        out.append(Change("dtype", x.dtype, y.dtype))
    if x.shape != y.shape:
        out.append(Change("shape", x.shape, y.shape))
    elif x.total_params != y.total_params:
        sx = tuple(ctx.a.by_name[i].shape for i in x.inputs)
        sy = tuple(ctx.b.by_name[i].shape for i in y.inputs)
        if sx != sy:
            out.append(Change("input_shape", _one(sx), _one(sy)))
    return out


def _one(shapes: tuple[tuple[int, ...], ...]) -> Any:
    return shapes[0] if len(shapes) == 1 else shapes


def _local(name: str) -> str:
    return name.rsplit("/", 1)[-1]


# ------------------------------------------------------------------ model-level facts


def _model_changes(a: Graph | None, b: Graph | None, pairs: dict[str, str]) -> list[ConfigChange]:
    """The model's name and which layers are its outputs."""
    if a is None or b is None:
        return [] if a is b else [ConfigChange("model", _word(a), _word(b))]
    out = []
    if a.name != b.name:
        out.append(ConfigChange("model.name", _word(a), _word(b)))
    if tuple(pairs.get(o) for o in a.outputs) != b.outputs:
        out.append(ConfigChange("model.outputs", _words(a.outputs), _words(b.outputs)))
    return out


def _word(g: Graph | None) -> Symbol | None:
    return None if g is None else Symbol(g.name)


def _words(names: tuple[str, ...]) -> tuple[Symbol, ...]:
    return tuple(Symbol(n) for n in names)


# ------------------------------------------------------------------ config


def config_changes(a: Program, b: Program) -> list[ConfigChange]:
    """Differences in the language version, shared params, and the data/train/sweep sections.

    A param defined on one side only is not a change by itself: a param is a name for a
    value, and where the value is used the layers or fields show it.
    """
    out = value_changes("version", a.version, b.version)
    pa, pb = dict(a.params), dict(b.params)
    for name in (k for k in pa if k in pb):
        out += value_changes(f"params.{name}", pa[name], pb[name])
    out += _section_changes("data", a.data, b.data)
    out += _section_changes("train", a.train, b.train)
    out += _section_changes("sweep", a.sweep, b.sweep)
    ax = {".".join(s.path): s.distribution for s in a.sweep_axes}
    bx = {".".join(s.path): s.distribution for s in b.sweep_axes}
    for k in [*ax, *(k for k in bx if k not in ax)]:
        out += value_changes(f"sweep.{k}", ax.get(k), bx.get(k))
    return out


def _section_changes(name: str, a: Config | None, b: Config | None) -> list[ConfigChange]:
    if a is None and b is None:
        return []
    if a is None or b is None:
        present = a if a is not None else b
        assert present is not None
        written = [(k, v) for k, v in present.fields if k in present.written]
        if not written:
            return [ConfigChange(name, None if a is None else "{}", None if b is None else "{}")]
        return [
            ConfigChange(f"{name}.{k}", None if a is None else v, None if b is None else v)
            for k, v in written
        ]
    fa, fb = dict(a.fields), dict(b.fields)
    out: list[ConfigChange] = []
    for k in [*fa, *(k for k in fb if k not in fa)]:
        out += value_changes(f"{name}.{k}", fa.get(k), fb.get(k))
    return out


def value_changes(path: str, a: Any, b: Any) -> list[ConfigChange]:
    """Where two values differ: into the arguments of one word, into the keys of a record."""
    if a == b:
        return []
    if isinstance(a, Ref) and isinstance(b, Ref) and (a.kind, a.name) == (b.kind, b.name):
        return _keyed_changes(path, dict(a.args), dict(b.args))
    if isinstance(a, Rec) and isinstance(b, Rec):
        return _keyed_changes(path, dict(a.items), dict(b.items))
    return [ConfigChange(path, a, b)]


def _keyed_changes(path: str, a: dict[str, Any], b: dict[str, Any]) -> list[ConfigChange]:
    keys = [*a, *(k for k in b if k not in a)]
    return [c for k in keys for c in value_changes(f"{path}.{k}", a.get(k), b.get(k))]


# ------------------------------------------------------------------ values as text


@cache
def _defaults(kind: str, name: str) -> dict[str, Any]:
    """The resolved defaults of a registry entry's arguments (required ones left out)."""
    reg = REGISTRIES.get(kind)
    entry = reg.lookup(name) if reg is not None else None
    out: dict[str, Any] = {}
    for a in entry.args if entry is not None else ():
        if a.required:
            continue
        if isinstance(a.default, SameAs):
            out[a.name] = a.default
            continue
        try:
            out[a.name] = a.type.convert(a.type.from_default(a.default), NO_SPAN)
        except Exception:  # a default the type cannot convert alone: always shown
            continue
    return out


def non_default(kind: str, name: str, args: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The arguments that differ from the registry defaults, in registry order."""
    items = list(args)
    values = dict(items)
    d = _defaults(kind, name)
    return [(k, v) for k, v in items if not _is_default(d, values, k, v)]


def _is_default(d: dict[str, Any], values: dict[str, Any], k: str, v: Any) -> bool:
    if k not in d:
        return False
    default = d[k]
    return values.get(default.arg) == v if isinstance(default, SameAs) else default == v


def brief(v: Any) -> str:
    """A resolved value as written in a spec, leaving out a word's default arguments."""
    if isinstance(v, Ref):
        args = non_default(v.kind, v.name, v.args)
        return (
            v.name if not args else f"{v.name}({', '.join(f'{k} = {brief(x)}' for k, x in args)})"
        )
    if isinstance(v, tuple):
        return "[" + ", ".join(brief(x) for x in v) + "]"
    if isinstance(v, Rec):
        return "{ " + ", ".join(f"{k}: {brief(x)}" for k, x in v.items) + " }"
    if isinstance(v, Quantity | Symbol | TensorType):
        return str(v)
    return show(v)


def shape_text(shape: Any) -> str:
    """`(8, 8, 16)`; several input shapes as `(4,) and (8,)`."""
    if shape and isinstance(shape[0], tuple):
        return " and ".join(shape_text(s) for s in shape)
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def change_text(c: Change | ConfigChange) -> tuple[str, str]:
    """The before and after of a change as short text (`none` for absent)."""
    field = c.field if isinstance(c, Change) else ""
    if field in SHAPE_FIELDS:
        return tuple(("none" if v is None else shape_text(v)) for v in (c.before, c.after))  # type: ignore[return-value]
    if field == "inputs":
        return tuple(", ".join(v) for v in (c.before, c.after))  # type: ignore[return-value]
    if field in ("name", "op", "dtype"):
        return tuple(("none" if v is None else str(v)) for v in (c.before, c.after))  # type: ignore[return-value]
    return brief(c.before), brief(c.after)


# ------------------------------------------------------------------ renderers

_GROUPS = ("model", "params", "data", "train", "sweep", "version")
_COLORS = {
    "added": "\x1b[32m",
    "removed": "\x1b[31m",
    "changed": "\x1b[33m",
    "moved": "\x1b[36m",
    "renamed": "\x1b[35m",
    "shape": "\x1b[34m",
    "config": "\x1b[33m",
}
_BOLD, _DIM, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"


def to_json(d: ProgramDiff) -> str:
    """The diff as JSON: `equivalent`, `layers`, `params`, `config`."""
    return json.dumps(d.to_dict(), indent=2)


def describe(d: LayerDiff) -> str:
    """What happened to a layer, in words: `filters 64 → 128; shape (8, 16) → (8, 32)`."""
    if d.status in ("added", "removed"):
        facts = {c.field: c.after if d.status == "added" else c.before for c in d.changes}
        return _node_text(facts)
    return "; ".join("{} {} → {}".format(c.field, *change_text(c)) for c in d.changes)


def _node_text(facts: dict[str, Any]) -> str:
    op = facts.pop("op")
    shape = facts.pop("shape")
    if op == "input":
        return f"input {TensorType(facts['dtype'], shape)}"
    args = ", ".join(f"{k} = {brief(v)}" for k, v in facts.items())
    return f"{op}({args}) → {shape_text(shape)}" if args else f"{op} → {shape_text(shape)}"


def _signed(n: int) -> str:
    return f"{n:+,}"


def _params_line(d: ProgramDiff) -> str:
    if d.delta == 0:
        return f"{d.params_after:,} (unchanged)"
    return f"{d.params_before:,} → {d.params_after:,} ({_signed(d.delta)})"


def _groups(changes: Iterable[ConfigChange]) -> list[tuple[str, list[ConfigChange]]]:
    by: dict[str, list[ConfigChange]] = {}
    for c in changes:
        by.setdefault(c.path.split(".", 1)[0], []).append(c)
    return [(g, by[g]) for g in (*_GROUPS, *sorted(set(by) - set(_GROUPS))) if g in by]


def render_text(d: ProgramDiff, color: bool = False) -> str:
    """The diff for a terminal, grouped by section (ANSI colours when `color`)."""

    def paint(code: str, s: str) -> str:
        return f"{code}{s}{_RESET}" if color else s

    head = paint(_BOLD, f"dnn diff {d.before} → {d.after}")
    if d.equivalent:
        return f"{head}\nequivalent: same model and training ({d.params_after:,} params)"
    out = [head]
    if d.model:
        out += ["", paint(_BOLD, f"model {d.model}"), *_layer_lines(d, paint)]
    for group, changes in _groups(d.config):
        out += ["", paint(_BOLD, group)]
        width = max(len(c.path) for c in changes)
        for c in changes:
            before, after = change_text(c)
            out.append(f"  {paint(_COLORS['config'], c.path.ljust(width))}  {before} → {after}")
    return "\n".join(out)


def _layer_lines(d: ProgramDiff, paint: Callable[[str, str], str]) -> list[str]:
    """One aligned line per layer (status, path, op, what differs, delta), then the totals."""
    out = []
    rows = [
        (x.status, x.path, x.op, describe(x), _signed(x.delta) if x.delta else "") for x in d.layers
    ]
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(5)]
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]), r[3]]
        line = f"  {paint(_COLORS[r[0]], cells[0])}  {'  '.join(cells[1:])}"
        out.append(line + (f"  {paint(_DIM, r[4] + ' params')}" if r[4] else ""))
    out.append(f"  params  {_params_line(d)}")
    return out


def _md(s: str) -> str:
    return s.replace("|", "\\|")


def render_markdown(d: ProgramDiff) -> str:
    """The diff as Markdown for a pull-request comment: a table of layers, one per section."""
    out = [f"#### `dnn diff` `{d.before}` → `{d.after}`"]
    if d.equivalent:
        return "\n".join(
            [*out, "", f"**Equivalent**: same model and training ({d.params_after:,} params)."]
        )
    if d.model:
        out += ["", f"**model `{d.model}`**: params {_params_line(d)}"]
    if d.layers:
        out += ["", "| status | layer | op | change | params |", "| --- | --- | --- | --- | ---: |"]
        out += [
            f"| {x.status} | `{x.path}` | {x.op} | {_md(describe(x))} | {_signed(x.delta) if x.delta else ''} |"
            for x in d.layers
        ]
    for group, changes in _groups(d.config):
        out += ["", f"**{group}**", "", "| field | before | after |", "| --- | --- | --- |"]
        for c in changes:
            before, after = change_text(c)
            out.append(f"| `{c.path}` | `{_md(before)}` | `{_md(after)}` |")
    return "\n".join(out)


# ------------------------------------------------------------------ textconv


def canonical_text(p: Program) -> str:
    """A line-per-fact view of a resolved program, for `git diff` through a textconv.

    One line per layer in canonical order (name, op, non-default arguments, inputs when not
    the line above, output shape, parameters), then params, data, train and sweep fields.
    """
    out = [f"dnn {p.version}"]
    out += [f"param {k} = {brief(v)}" for k, v in p.params]
    if p.model is not None:
        out += _model_lines(p)
    for section in (p.data, p.train, p.sweep):
        if section is not None:
            out += [f"{section.name}.{k} = {brief(v)}" for k, v in section.fields]
    out += [f"sweep.{'.'.join(s.path)} = {brief(s.distribution)}" for s in p.sweep_axes]
    return "\n".join(out) + "\n"


def _model_lines(p: Program) -> list[str]:
    g = p.model
    assert g is not None
    out = [f"model {g.name}"]
    previous = None
    for n in canonical_order(g):
        own = own_facts(n, p.train)
        if n.kind == "input":
            out.append(f"  {n.name} = input {TensorType(n.dtype, n.shape)}")
        else:
            args = ", ".join(f"{k} = {brief(v)}" for k, v in non_default(n.kind, n.op, own))
            call = f"{n.op}({args})" if args else n.op
            feed = "" if n.inputs == (previous,) else f"({', '.join(n.inputs)})"
            count = f", {n.total_params:,} params" if n.total_params else ""
            out.append(f"  {n.name} = {call}{feed}  # {shape_text(n.shape)}{count}")
        previous = n.name
    out.append(f"  output {', '.join(g.outputs)}")
    out.append(
        f"  # {g.params:,} params ({g.trainable:,} trainable, {g.non_trainable:,} non-trainable)"
    )
    return out
