"""Which layer of one graph is which layer of the other: the alignment behind `dnn diff`.

Entry point: `pair_layers(side(a), side(b)) -> [(before | None, after | None, moved)]`, in
display order. The rule, step by step, is in `compiler/diff.py`'s docstring and docs/diff.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from .ir import Config, Graph, Node, Program

# Model-wide defaults in `train` that the lowering applies to layers: (train field, layer
# argument, does it apply to this node?). Mirrors lower_flax._kernel_init (a layer that wrote
# no `init`) and lower_loss.lower_penalties (a layer whose regularizer is none).
_MODEL_DEFAULTS: tuple[tuple[str, str, Callable[[Node], bool]], ...] = (
    ("init", "init", lambda n: "init" not in n.written),
    ("regularizer", "regularizer", lambda n: n.arg("regularizer") is None),
)


@dataclass(frozen=True, slots=True)
class Side:
    """One graph prepared for alignment: nodes in canonical order, by name, and their keys."""

    nodes: tuple[Node, ...]
    by_name: dict[str, Node]
    keys: tuple[Any, ...]  # own keys, with the names of user-named inputs
    own_keys: dict[str, Any]
    own: dict[str, tuple[tuple[str, Any], ...]]


def side(p: Program) -> Side:
    """A program's graph ready to align."""
    nodes = canonical_order(p.model) if p.model else ()
    own = {n.name: own_facts(n, p.train) for n in nodes}
    own_keys = {n.name: _key(n, own[n.name]) for n in nodes}
    keys = tuple(_with_named_inputs(n, own_keys) for n in nodes)
    return Side(nodes, {n.name: n for n in nodes}, keys, own_keys, own)


Slot = tuple[Node | None, Node | None, bool]  # (before, after, moved)


def pair_layers(sa: Side, sb: Side) -> list[Slot]:
    """Align, slide runs of added or removed layers, pair moves, then undo moves that only
    reorder."""
    return _settle(_moves(slide(align(sa, sb), sa, sb), sa, sb))


def canonical_order(g: Graph) -> tuple[Node, ...]:
    """Inputs as declared, then a depth-first post-order from each output, then the rest."""
    by_name = {n.name: n for n in g.nodes}
    seen: set[str] = set()
    order: list[Node] = []
    for root in (*g.inputs, *g.outputs, *(n.name for n in g.nodes)):
        if root in seen:
            continue
        seen.add(root)
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(by_name[root].inputs))]
        while stack:
            name, pending = stack[-1]
            nxt = next((i for i in pending if i not in seen), None)
            if nxt is None:
                stack.pop()
                order.append(by_name[name])
            else:
                seen.add(nxt)
                stack.append((nxt, iter(by_name[nxt].inputs)))
    return tuple(order)


def own_facts(n: Node, train: Config) -> tuple[tuple[str, Any], ...]:
    """What the spec decides about a node: its effective arguments (an input: dtype, shape)."""
    if n.kind == "input":
        return (("dtype", n.dtype), ("shape", n.shape))
    args = dict(n.args)
    for field_name, arg_name, applies in _MODEL_DEFAULTS:
        default = getattr(train, field_name, None)
        if default is not None and arg_name in args and applies(n):
            args[arg_name] = default
    return tuple(args.items())


def user_name(n: Node) -> str | None:
    """The name the user gave (`h` for `res_1/h` or `h_1`); None for an auto-generated one."""
    local = n.name.rsplit("/", 1)[-1]
    if n.kind == "input":
        return local
    base = re.sub(r"_\d+$", "", local)
    return None if base == n.op else base


def _key(n: Node, own: tuple[tuple[str, Any], ...]) -> Any:
    label = user_name(n)
    return ("name", label) if label is not None else ("op", n.op, own)


def _with_named_inputs(n: Node, own_keys: dict[str, Any]) -> Any:
    """An auto-named node's key with the names of its user-named inputs: `dense(8)(a)` and
    `dense(8)(b)` are told apart, while a chain of auto-named layers keeps its plain keys."""
    key = own_keys[n.name]
    if key[0] == "name":
        return key
    return (key, tuple(own_keys[i] if own_keys[i][0] == "name" else None for i in n.inputs))


def align(sa: Side, sb: Side) -> list[Slot]:
    """Pair nodes by key sequence, then by op inside each replaced stretch."""
    return _align(sa.nodes, sb.nodes, sa.keys, sb.keys, second=True)


def _align(
    xs: Sequence[Node], ys: Sequence[Node], kx: Sequence[Any], ky: Sequence[Any], second: bool
) -> list[Slot]:
    ids: dict[Any, int] = {}  # small ints compare and hash fast; keys are hashed once
    ix, iy = [ids.setdefault(k, len(ids)) for k in kx], [ids.setdefault(k, len(ids)) for k in ky]
    out: list[Slot] = []
    i = j = 0
    for mi, mj in [*matching(ix, iy), (len(xs), len(ys))]:
        px, py = xs[i:mi], ys[j:mj]  # the stretch before the next match
        if px and py and second:
            out += _align(px, py, [x.op for x in px], [y.op for y in py], second=False)
        else:
            out += [(x, None, False) for x in px] + [(None, y, False) for y in py]
        if mi < len(xs):
            out.append((xs[mi], ys[mj], False))
        i, j = mi + 1, mj + 1
    return out


MAX_EDITS = 400  # beyond this many edits, Myers' O(ND) gives way to difflib


def matching(a: Sequence[int], b: Sequence[int]) -> list[tuple[int, int]]:
    """Index pairs of a longest common subsequence: Myers' O(ND) diff (Myers 1986, the
    algorithm of `git diff`), fast when the sequences are long, repetitive and similar; for
    very different ones, `difflib.SequenceMatcher`'s matching blocks."""
    head = _common(a, b)
    tail = _common(a[head:][::-1], b[head:][::-1])
    mid = _myers(a[head : len(a) - tail], b[head : len(b) - tail], MAX_EDITS)
    if mid is None:
        blocks = SequenceMatcher(None, a[head : len(a) - tail], b[head : len(b) - tail], False)
        mid = [(x + k, y + k) for x, y, n in blocks.get_matching_blocks() for k in range(n)]
    pairs = [(k, k) for k in range(head)] + [(x + head, y + head) for x, y in mid]
    return pairs + [(len(a) - tail + k, len(b) - tail + k) for k in range(tail)]


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    """The length of the common prefix (diff tools trim it first)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _myers(a: Sequence[int], b: Sequence[int], cap: int) -> list[tuple[int, int]] | None:
    """The matched index pairs of a shortest edit script, or None past `cap` edits."""
    n, m = len(a), len(b)
    v, trace = {1: 0}, []
    for d in range(min(n + m, cap) + 1):
        for k in range(-d, d + 1, 2):
            x = v[k + 1] if k == -d or (k != d and v[k - 1] < v[k + 1]) else v[k - 1] + 1
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x, y = x + 1, y + 1
            v[k] = x
            if x >= n and y >= m:
                trace.append(dict(v))
                return _backtrack(trace, n, m)
        trace.append(dict(v))
    return None


def _backtrack(trace: list[dict[int, int]], x: int, y: int) -> list[tuple[int, int]]:
    pairs = []
    for d in range(len(trace) - 1, 0, -1):
        v, k = trace[d - 1], x - y
        prev_k = k + 1 if k == -d or (k != d and v[k - 1] < v[k + 1]) else k - 1
        prev_x = v[prev_k]
        prev_y = prev_x - prev_k
        while x > prev_x and y > prev_y:  # the diagonal run after this edit
            x, y = x - 1, y - 1
            pairs.append((x, y))
        x, y = prev_x, prev_y
    pairs += [(k, k) for k in range(min(x, y) - 1, -1, -1)]
    return pairs[::-1]


def slide(slots: list[Slot], sa: Side, sb: Side) -> list[Slot]:
    """Shift each run of added (or removed) layers along equal keys to where it spans the
    fewest block instances, as diff tools slide hunks: in `relu, [conv, bn, relu, add, relu]`
    the inserted block starts after the first relu, not at it."""
    out = list(slots)
    for side, lone_keys, other_keys in (
        (1, sb.own_keys, sa.own_keys),
        (0, sa.own_keys, sb.own_keys),
    ):
        i = 0
        while i < len(out):
            j = i
            while j < len(out) and _lone(out[j], side):
                j += 1
            i = _slide_run(out, i, j, side, lone_keys, other_keys) if j > i else i + 1
    return out


def _lone(s: Slot, side: int) -> bool:
    """Added (side 1) or removed (side 0): only that side's node is there."""
    return _at(s, side) is not None and _at(s, 1 - side) is None


def _at(s: Slot, side: int) -> Node | None:
    return s[0] if side == 0 else s[1]


def _slide_run(
    out: list[Slot], i: int, j: int, side: int, kl: dict[str, Any], ko: dict[str, Any]
) -> int:
    """Place the run out[i:j] best among its equal-key neighbours; returns where to go on."""

    def key(k: int) -> Any:
        n = _at(out[k], side)
        assert n is not None
        return kl[n.name]

    def exact(k: int) -> bool:  # a pair that could trade its node with the run's
        other = _at(out[k], 1 - side)
        return (
            other is not None
            and not _lone(out[k], 1 - side)
            and not out[k][2]
            and (ko[other.name] == key(k))
        )

    up = 0
    while i - up - 1 >= 0 and exact(i - up - 1) and key(i - up - 1) == key(j - up - 1):
        up += 1
    down = 0
    while j + down < len(out) and exact(j + down) and key(j + down) == key(i + down):
        down += 1
    lo, hi, size = i - up, j + down, j - i
    nodes = [_at(out[k], side) for k in range(lo, hi)]
    partners = iter([_at(out[k], 1 - side) for k in range(lo, hi) if not _lone(out[k], side)])
    best = min(range(up + down + 1), key=lambda k: (_spread(nodes[k : k + size]), k != up))
    rebuilt: list[Slot] = []
    for k, n in enumerate(nodes):
        other = None if best <= k < best + size else next(partners)
        rebuilt.append((other, n, False) if side == 1 else (n, other, False))
    out[lo:hi] = rebuilt
    return hi


def _spread(nodes: Sequence[Node | None]) -> int:
    """How many top-level block instances (or the top level) a run of layers touches."""
    return len({n.scope[:1] for n in nodes if n is not None})


def _moves(slots: list[Slot], sa: Side, sb: Side) -> list[Slot]:
    """Pair a removed and an added layer of equal key as one moved layer (at its new place).

    Keys with named inputs first, then the layers' own keys.
    """
    key_a = dict(zip((n.name for n in sa.nodes), sa.keys, strict=True))
    key_b = dict(zip((n.name for n in sb.nodes), sb.keys, strict=True))
    return _pair_moves(_pair_moves(slots, key_a, key_b), sa.own_keys, sb.own_keys)


def _pair_moves(slots: list[Slot], key_a: dict[str, Any], key_b: dict[str, Any]) -> list[Slot]:
    removed: dict[Any, list[int]] = {}
    for i, (x, y, _) in enumerate(slots):
        if x is not None and y is None:
            removed.setdefault(key_a[x.name], []).append(i)
    out, taken = list(slots), set()
    for i, (x, y, _) in enumerate(slots):
        if x is None and y is not None and removed.get(key_b[y.name]):
            j = removed[key_b[y.name]].pop(0)
            out[i] = (slots[j][0], y, True)
            taken.add(j)
    return [s for i, s in enumerate(out) if i not in taken]


def _settle(slots: list[Slot]) -> list[Slot]:
    """A moved layer whose inputs are still the same layers did not move; only order did."""
    pairs = {x.name: y.name for x, y, _ in slots if x is not None and y is not None}

    def moved(x: Node, y: Node) -> bool:
        return [pairs.get(i) for i in x.inputs] != list(y.inputs)

    return [(x, y, m and x is not None and y is not None and moved(x, y)) for x, y, m in slots]
