"""IR → a drawable description of the model graph, and its DOT and Mermaid texts (`dnn graph`).

`describe` turns the model of a checked program into a `Diagram`: one `Box` per node (label lines
for op, output shape and parameters; a role that marks inputs and outputs), the edges between
them, and one `Cluster` per block instance, nested as the nodes' scopes are. `to_dot` and
`to_mermaid` print it as Graphviz and Mermaid text. Pictures (SVG, PNG) are drawn from the same
`Diagram` by `dnn.runtime.render`, which owns layout and files; this module is pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .diagnostics import InternalError
from .ir import Graph, Node

# Fill and border colours by role: one table read by the DOT, Mermaid, SVG and PNG writers.
STYLES: dict[str, tuple[str, str]] = {
    "input": ("#dcefdc", "#2e7d32"),
    "output": ("#fde4c8", "#d35400"),
    "layer": ("#e4edf6", "#455a64"),
    "activation": ("#f3f3f3", "#9e9e9e"),
}
CLUSTER_STYLE = ("#fafafa", "#90a4ae")  # fill, border of a block instance's box
EDGE_COLOR = "#546e7a"
FONT = "monospace"


@dataclass(frozen=True, slots=True)
class Box:
    """One node as drawn: its label lines (the first is the title) and where it sits."""

    id: str  # `n<k>`: a valid identifier in DOT, Mermaid and XML
    name: str  # the IR node name
    lines: tuple[str, ...]
    role: str  # a key of STYLES
    cluster: str | None  # id of the innermost enclosing cluster


@dataclass(frozen=True, slots=True)
class Cluster:
    """One block instance: a box around the boxes of its nodes, inside its parent's."""

    id: str  # `c<k>`
    path: tuple[str, ...]  # the scope it stands for: ("basic_1", "conv_bn")
    label: str
    parent: str | None


Tree = dict[str | None, list[Box | Cluster]]  # cluster id (None: top level) -> what is inside


@dataclass(frozen=True, slots=True)
class Diagram:
    """A model graph ready to draw: boxes in topological order, edges, clusters outermost first."""

    name: str
    title: str
    boxes: tuple[Box, ...]
    edges: tuple[tuple[str, str], ...]  # (source box id, target box id)
    clusters: tuple[Cluster, ...]

    def __post_init__(self) -> None:
        ids = {b.id for b in self.boxes}
        if any(s not in ids or t not in ids for s, t in self.edges):
            raise InternalError(f"diagram {self.name}: an edge names an unknown box")

    def tree(self) -> Tree:
        """The boxes and clusters directly inside each cluster (None: the top level), in order."""
        by_id = {c.id: c for c in self.clusters}
        inside: Tree = {None: [], **{c: [] for c in by_id}}
        placed: set[str] = set()
        for b in self.boxes:
            inside[b.cluster].append(b)
            c = b.cluster
            while c is not None and c not in placed:  # a cluster comes in with its first box
                placed.add(c)
                inside[by_id[c].parent].append(by_id[c])
                c = by_id[c].parent
        return inside

    def cluster(self, cid: str) -> Cluster:
        return next(c for c in self.clusters if c.id == cid)


# ------------------------------------------------------------------ describe


def describe(graph: Graph, depth: int | None = None) -> Diagram:
    """The diagram of a model graph: one box per node, one cluster per block instance.

    `depth`: block instances nested deeper than this many blocks are drawn as one box each
    (its name, the shape of its last layer's output, its parameters) instead of a cluster of
    their layers; 0 draws every top-level block as one box; None draws everything.
    """
    clusters = _clusters(graph)
    if depth is not None:
        clusters = tuple(c for c in clusters if len(c.path) <= depth)
    by_path = {c.path: c.id for c in clusters}
    label = {c.path: c.label for c in _clusters(graph)}
    boxes: dict[str, Box] = {}  # by representative: a node's name, or a collapsed block's path
    rep: dict[str, str] = {}
    for i, n in enumerate(graph.nodes):
        if depth is None or len(n.scope) <= depth:
            rep[n.name] = n.name
            boxes[n.name] = Box(
                f"n{i}", n.name, _lines(n, graph), _role(n, graph), by_path.get(n.scope)
            )
            continue
        path = n.scope[: depth + 1]
        key = "/".join(path)
        rep[n.name] = key
        title = label[path].split(" · ")[0]
        shape = f"{n.dtype}[{', '.join(map(str, n.shape))}]"  # the last node seen wins
        params = sum(m.total_params for m in graph.nodes if m.scope[: depth + 1] == path)
        lines = (title, shape, *((f"{params:,} params",) if params else ()))
        old = boxes.get(key)
        role = "output" if n.name in graph.outputs or (old and old.role == "output") else "layer"
        bid = old.id if old else f"b{len(boxes)}"
        boxes[key] = Box(bid, key, lines, role, by_path.get(path[:-1]))
    edges = tuple(
        dict.fromkeys(
            (boxes[rep[i]].id, boxes[rep[n.name]].id)
            for n in graph.nodes
            for i in n.inputs
            if rep[i] != rep[n.name]
        )
    )
    title = f"{graph.name} · {graph.params:,} params"
    return Diagram(graph.name, title, tuple(boxes.values()), edges, clusters)


def depth_for(graph: Graph, most: int = 40) -> int | None:
    """The deepest drawing of `graph` with at most `most` boxes (None: every layer fits;
    0 when even the top-level blocks drawn as boxes are more)."""
    deepest = max((len(n.scope) for n in graph.nodes), default=0)
    for depth in (None, *range(deepest - 1, -1, -1)):
        if len(describe(graph, depth).boxes) <= most:
            return depth
    return 0


def _clusters(graph: Graph) -> tuple[Cluster, ...]:
    """One cluster per distinct scope prefix, in order of first appearance (parents first)."""
    params: dict[tuple[str, ...], int] = {}
    for n in graph.nodes:
        for depth in range(1, len(n.scope) + 1):
            params[n.scope[:depth]] = params.get(n.scope[:depth], 0) + n.total_params
    ids = {path: f"c{i}" for i, path in enumerate(params)}  # dicts keep first-insertion order
    blocks = {tuple(p.split("/")): b for p, b in graph.blocks}
    return tuple(
        Cluster(
            ids[path],
            path,
            _cluster_label(path, blocks.get(path), params[path]),
            ids.get(path[:-1]),
        )
        for path in params
    )


def _cluster_label(path: tuple[str, ...], block: str | None, params: int) -> str:
    """`conv_bn · 2,368 params`; an instance named by a binding as the spec writes it,
    `u2 = up · 37,120 params`, as a named layer's box reads `h = batchnorm`."""
    leaf = path[-1]
    if block is not None and re.fullmatch(rf"{re.escape(block)}(_\d+)?", leaf) is None:
        leaf = f"{leaf} = {block}"
    return f"{leaf} · {params:,} params" if params else leaf


def _role(n: Node, graph: Graph) -> str:
    if n.kind == "input":
        return "input"
    if n.name in graph.outputs:
        return "output"
    return "activation" if n.kind == "activation" else "layer"


def _lines(n: Node, graph: Graph) -> tuple[str, ...]:
    """Title (as the spec would write it), output shape, parameters if any."""
    shape = f"{n.dtype}[{', '.join(map(str, n.shape))}]"
    total = f"{n.total_params:,} params" if n.total_params else None
    return tuple(s for s in (_title(n, graph), shape, total) if s)


def _title(n: Node, graph: Graph) -> str:
    leaf = n.name.rsplit("/", 1)[-1]
    if n.kind == "input":
        return f"input {leaf}"
    # automatic names are the op, numbered from the second use: `dense_1`
    named = re.fullmatch(rf"{re.escape(n.op)}(_\d+)?", leaf) is None
    title = f"{leaf} = {n.op}" if named else n.op
    return f"output {title}" if n.name in graph.outputs else title


# ------------------------------------------------------------------ DOT


def to_dot(d: Diagram) -> str:
    """Graphviz text: boxes coloured by role, clusters named `cluster_*`, edges top to bottom."""
    out = [
        f"digraph {_dot_str(d.name)} {{",
        f"  graph [rankdir=TB, label={_dot_str(d.title)}, labelloc=t, fontname={FONT},"
        " nodesep=0.3, ranksep=0.35];",
        f'  node [shape=box, style="rounded,filled", fontname={FONT}, fontsize=10];',
        f'  edge [color="{EDGE_COLOR}", arrowsize=0.7];',
    ]
    out += _dot_children(d.tree(), None, "  ")
    out += [f"  {s} -> {t};" for s, t in d.edges]
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_children(tree: Tree, cluster: str | None, indent: str) -> list[str]:
    out: list[str] = []
    for item in tree[cluster]:
        if isinstance(item, Box):
            fill, border = STYLES[item.role]
            label = _dot_str("\n".join(item.lines))
            width = ", penwidth=2" if item.role in ("input", "output") else ""
            out.append(
                f'{indent}{item.id} [label={label}, fillcolor="{fill}", color="{border}"{width}];'
            )
        else:
            fill, border = CLUSTER_STYLE
            out.append(f"{indent}subgraph cluster_{item.id} {{")
            out.append(
                f'{indent}  label={_dot_str(item.label)}; style="rounded,filled";'
                f' fillcolor="{fill}"; color="{border}"; fontsize=10;'
            )
            out += _dot_children(tree, item.id, indent + "  ")
            out.append(f"{indent}}}")
    return out


def _dot_str(s: str) -> str:
    """A DOT quoted string; a newline becomes a centred line break."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# ------------------------------------------------------------------ Mermaid


def to_mermaid(d: Diagram) -> str:
    """Mermaid flowchart text (renders inside Markdown on code hosts): blocks as subgraphs."""
    out = ["flowchart TD", f"  %% {d.title}"]
    out += _mermaid_children(d.tree(), None, "  ")
    out += [f"  {s} --> {t}" for s, t in d.edges]
    for role, (fill, border) in STYLES.items():
        out.append(f"  classDef {role} fill:{fill},stroke:{border},color:#000")
        members = [b.id for b in d.boxes if b.role == role]
        if members:
            out.append(f"  class {','.join(members)} {role}")
    fill, border = CLUSTER_STYLE
    out += [f"  style {c.id} fill:{fill},stroke:{border}" for c in d.clusters]
    return "\n".join(out) + "\n"


# inputs are stadiums, outputs subroutine boxes, the rest rectangles
_MERMAID_SHAPES = {"input": ('(["', '"])'), "output": ('[["', '"]]')}


def _mermaid_children(tree: Tree, cluster: str | None, indent: str) -> list[str]:
    out: list[str] = []
    for item in tree[cluster]:
        if isinstance(item, Box):
            left, right = _MERMAID_SHAPES.get(item.role, ('["', '"]'))
            label = "<br/>".join(_mermaid_str(s) for s in item.lines)
            out.append(f"{indent}{item.id}{left}{label}{right}")
        else:
            out.append(f'{indent}subgraph {item.id} ["{_mermaid_str(item.label)}"]')
            out += _mermaid_children(tree, item.id, indent + "  ")
            out.append(f"{indent}end")
    return out


def _mermaid_str(s: str) -> str:
    """Text safe inside a quoted Mermaid label: quotes and markup as Mermaid's `#name;` codes."""
    for ch, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        s = s.replace(ch, code)
    return s
