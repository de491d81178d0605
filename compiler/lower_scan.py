"""Runs of identical block instances → one scanned body (`train.scan_repeats`, issue 7 point 4).

`repeat 64 { res(16) }` expands (compiler/check.py) into instances `res`, `res_1`, ...,
`res_63`, each a copy of the block's nodes with instance k reading instance k-1's output.
Unrolled, XLA compiles 64 copies; scanned (`nn.scan`), it compiles one body and loops over
stacked weights. This module finds such runs in the IR and decides which to scan; the
lowering (`lower_flax.Model`) builds them, and the parameter helpers of `lower_loss` and
`lower_optax` read the stacked layout through the plan.

A run is a sequence of consecutive top-level block instances that are the same up to the
instance prefix of their names: same ops, arguments, shapes and internal wiring, instance k's
one outside input being instance k-1's output, and no node inside read from outside except
the last instance's output. Any such run qualifies, whether it came from `repeat` or from the
same block written out several times.

Layout: a scanned run's weights live under one key, `"<first>..<last>"` (e.g. `"res..res_63"`,
never a node name: names have no dots), then the instance-relative layer name, each leaf with
a leading axis of length N: `params["res..res_63"]["dense"]["kernel"]` has shape (64, 16, 16),
slice k being `res_k/dense`. Batch statistics are stacked the same way. `stack` and `unstack`
convert between this and the per-node layout.
"""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from .ir import Graph, Node
from .values import LayerRef

CARRY = "<in>"  # the outside input of a body: the previous instance's output
# Auto scans only runs at least this long: below it the unrolled compile is short anyway
# (docs/performance.md, "Depth: scanned repeats").
MIN_AUTO = 8
# Layers whose gradients XLA's CPU backend runs far slower inside a loop body (the same list
# as runtime/train.py's epoch scan; measured again for repeats in docs/performance.md).
LOOP_SLOW_ON_CPU = ("conv", "pool", "lstm", "gru", "simple_rnn")


@dataclass(frozen=True, slots=True)
class Group:
    """One scanned run: its instances and the body every instance is a copy of."""

    key: str  # the params key of the stacked weights, "res..res_63"
    instances: tuple[str, ...]  # "res", "res_1", ..., in order
    body: tuple[Node, ...]  # the first instance's nodes, named without the instance prefix
    output: str  # the body's output (instance-relative name)
    source: str  # the node the first instance reads (the run's input)

    @property
    def length(self) -> int:
        return len(self.instances)

    def names(self, local: str) -> tuple[str, ...]:
        """The node names of the body's node `local` in every instance."""
        return tuple(f"{i}/{local}" for i in self.instances)

    @property
    def last_output(self) -> str:
        return f"{self.instances[-1]}/{self.output}"


@dataclass(frozen=True, slots=True)
class ScanPlan:
    """The runs a model lowers as scans, and whether their bodies are rematerialized."""

    groups: tuple[Group, ...] = ()
    remat: bool = False

    def group_of(self, name: str) -> tuple[Group, int, str] | None:
        """The group, instance index and instance-relative name of a node name, if scanned."""
        head, _, local = name.partition("/")
        for g in self.groups:
            if head in g.instances and local:
                return g, g.instances.index(head), local
        return None

    def stacked(self, layer: str) -> tuple[Group, str] | None:
        """For a layer path of the stacked tree (`"res..res_63/dense"`): its group and local."""
        head, _, local = layer.partition("/")
        return next(((g, local) for g in self.groups if g.key == head and local), None)

    def instance_layers(self, layer: str) -> tuple[str, ...]:
        """The per-instance layer names behind a params path; the path itself if unstacked."""
        hit = self.stacked(layer)
        return hit[0].names(hit[1]) if hit else (layer,)


# ------------------------------------------------------------------ finding runs


@dataclass(frozen=True, slots=True)
class _Instance:
    name: str
    body: tuple[Node, ...]  # named without the instance prefix, outside input CARRY
    source: str | None  # the single node read from outside (None: zero or several)
    exported: tuple[str, ...]  # instance-relative names read from outside or model outputs
    signature: Any


def _segments(graph: Graph) -> list[tuple[str, list[Node]] | None]:
    """Consecutive nodes of one top-level block instance; None for a top-level node."""
    out: list[tuple[str, list[Node]] | None] = []
    for n in graph.nodes:
        head = n.scope[0] if n.scope else None
        last = out[-1] if out else None
        if head is not None and last is not None and last[0] == head:
            last[1].append(n)
        else:
            out.append((head, [n]) if head is not None else None)
    return out


def _readers(graph: Graph) -> dict[str, set[str]]:
    readers: dict[str, set[str]] = {n.name: set() for n in graph.nodes}
    for n in graph.nodes:
        for i in _reads(n):
            readers[i].add(n.name)
    for o in graph.outputs:
        readers[o].add("<output>")
    return readers


def _reads(n: Node) -> tuple[str, ...]:
    """The nodes `n` reads: its inputs, and the layers it names (a tied `dense`'s embedding,
    whose table it uses): a body that names a layer outside it is no loop body."""
    return (*n.inputs, *(v.node for _, v in n.args if isinstance(v, LayerRef)))


def _instance(
    by_name: dict[str, Node], name: str, nodes: list[Node], readers: dict[str, set[str]]
) -> _Instance:
    prefix = name + "/"
    inside = {n.name for n in nodes}
    outside_inputs = sorted({i for n in nodes for i in _reads(n) if i not in inside})
    source = outside_inputs[0] if len(outside_inputs) == 1 else None
    exported = tuple(
        n.name[len(prefix) :] for n in nodes if any(r not in inside for r in readers[n.name])
    )
    body = tuple(_local(n, prefix, inside) for n in nodes)
    carry = by_name[source] if source is not None else None
    signature = (
        tuple((n, n.written) for n in body),  # `written` decides `train.init`; not compared
        exported,
        (carry.shape, carry.dtype) if carry is not None else None,
    )
    return _Instance(name, body, source, exported, signature)


def _local(n: Node, prefix: str, inside: set[str]) -> Node:
    """A node renamed relative to its instance; its outside input becomes CARRY."""
    return replace(
        n,
        name=n.name[len(prefix) :],
        inputs=tuple(i[len(prefix) :] if i in inside else CARRY for i in n.inputs),
        scope=n.scope[1:],
    )


def _chains(a: _Instance, b: _Instance, readers: dict[str, set[str]]) -> bool:
    """`b` continues a run ending in `a`: same body, reads a's output and nothing else does."""
    if a.signature != b.signature or len(a.exported) != 1 or a.source is None:
        return False
    out = f"{a.name}/{a.exported[0]}"
    return b.source == out and all(r.startswith(b.name + "/") for r in readers[out])


def find_runs(graph: Graph) -> list[Group]:
    """Every maximal run of two or more chained identical instances, in graph order."""
    readers, by_name = _readers(graph), {n.name: n for n in graph.nodes}
    runs: list[list[_Instance]] = []
    prev: _Instance | None = None
    for seg in _segments(graph):
        inst = _instance(by_name, seg[0], seg[1], readers) if seg is not None else None
        if inst is not None and prev is not None and _chains(prev, inst, readers):
            runs[-1].append(inst)
        elif inst is not None:
            runs.append([inst])
        prev = inst
    return [_group(r) for r in runs if len(r) > 1 and _carries(by_name, r[0])]


def _carries(by_name: dict[str, Node], first: _Instance) -> bool:
    """The body maps its input to an output of the same shape and dtype (a loop carry)."""
    if first.source is None or len(first.exported) != 1:
        return False
    src, out = by_name[first.source], by_name[f"{first.name}/{first.exported[0]}"]
    return (src.shape, src.dtype) == (out.shape, out.dtype)


def _group(run: list[_Instance]) -> Group:
    first = run[0]
    assert first.source is not None
    return Group(
        key=f"{first.name}..{run[-1].name}",
        instances=tuple(i.name for i in run),
        body=first.body,
        output=first.exported[0],
        source=first.source,
    )


# ------------------------------------------------------------------ choosing


def loop_slow(group: Group) -> bool:
    """The body has a layer that XLA's CPU backend runs far slower inside a loop."""
    return any(any(w in n.op for w in LOOP_SLOW_ON_CPU) for n in group.body)


def plan(
    graph: Graph,
    choice: Any = "auto",
    backend: str = "cpu",
    train: Any = None,
    remat: bool = False,
) -> ScanPlan:
    """The runs to scan for `scan_repeats = choice` (`auto`, True, False).

    A run is first cut where the `train` section treats its instances differently (`split`):
    each scanned piece then means what its unrolled instances mean. True: every piece of two
    or more instances. Auto: pieces of at least MIN_AUTO instances, except bodies with
    convolutions, pooling or recurrences on a CPU.
    """
    if choice is False or str(choice) == "false":
        return ScanPlan((), remat)
    freeze = tuple(train.freeze) if train is not None else ()
    runs = [piece for g in find_runs(graph) for piece in split(g, freeze)]
    if choice is True or str(choice) == "true":
        return ScanPlan(tuple(runs), remat)
    keep = [g for g in runs if g.length >= MIN_AUTO and not (backend == "cpu" and loop_slow(g))]
    return ScanPlan(tuple(keep), remat)


def frozen(name: str, patterns: Iterable[str]) -> bool:
    """The layer `name` matches a `freeze` pattern."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def split(g: Group, freeze: tuple[str, ...]) -> list[Group]:
    """The run cut into pieces whose instances freeze the same body layers (pieces of one
    instance are left unrolled). A stacked leaf is then frozen or trained as a whole, as
    `optax.multi_transform` labels it, and a frozen batchnorm's inference mode is one mode per
    scan body. `lr_scale` needs no cut: its factors apply per slice (lower_optax.scale_layers).
    """

    def mask(instance: str) -> tuple[bool, ...]:
        return tuple(frozen(f"{instance}/{n.name}", freeze) for n in g.body)

    pieces = [tuple(p) for _, p in itertools.groupby(g.instances, key=mask)]
    if len(pieces) == 1:
        return [g]
    out, start = [], 0
    for p in pieces:
        source = g.source if start == 0 else f"{g.instances[start - 1]}/{g.output}"
        if len(p) > 1:
            out.append(replace(g, key=f"{p[0]}..{p[-1]}", instances=p, source=source))
        start += len(p)
    return out


def plan_for(program: Any) -> ScanPlan | None:
    """The plan of a program's `train.scan_repeats` and `remat` on this JAX backend."""
    import jax

    if program.model is None:
        return None
    train = program.train
    return plan(program.model, train.scan_repeats, jax.default_backend(), train, train.remat)


# ------------------------------------------------------------------ parameter layouts


def stack(tree: dict[str, Any], scan: ScanPlan, axis: int = 0) -> dict[str, Any]:
    """A per-node collection (`params`, `batch_stats`) in the plan's stacked layout.

    `axis` is where the instance axis goes: 0, or 1 under an ensemble's member axis.
    """
    import jax
    import jax.numpy as jnp

    out = dict(tree)
    for g in scan.groups:
        locals_ = [n.name for n in g.body if g.names(n.name)[0] in tree]
        if not locals_:
            continue
        out[g.key] = {
            loc: jax.tree.map(
                lambda *xs: jnp.stack(xs, axis=axis), *(out.pop(x) for x in g.names(loc))
            )
            for loc in locals_
        }
    return out


def unstack(tree: dict[str, Any], scan: ScanPlan, axis: int = 0) -> dict[str, Any]:
    """The inverse of `stack`: one entry per node name again (checkpoints, `init_from`)."""
    import jax

    out = dict(tree)
    at = (slice(None),) * axis
    for g in scan.groups:
        stacked = out.pop(g.key, None)
        for loc, leaves in (stacked or {}).items():
            for k, x in enumerate(g.names(loc)):
                out[x] = jax.tree.map(lambda a, k=k: a[(*at, k)], leaves)
    return out


def relayout(tree: Any, scan: ScanPlan, to_stacked: bool, axis: int = 0) -> Any:
    """A whole training state between the per-node and the stacked layout: `stack` or
    `unstack` applied to every mapping in it, so parameters, batch statistics and each
    per-parameter tree of the optimizer's state (Adam's moments, ...) convert alike."""

    def walk(t: Any) -> Any:
        if isinstance(t, dict):
            t = {k: walk(v) for k, v in t.items()}
            return stack(t, scan, axis) if to_stacked else unstack(t, scan, axis)
        if isinstance(t, tuple) and hasattr(t, "_fields"):  # optax's NamedTuple states
            return type(t)(*(walk(v) for v in t))
        if isinstance(t, tuple | list):
            return type(t)(walk(v) for v in t)
        return t

    return walk(tree)


def skipped(scan: ScanPlan | None) -> Iterable[str]:
    """Node names the scans compute (every instance's nodes)."""
    for g in scan.groups if scan else ():
        for n in g.body:
            yield from g.names(n.name)
