"""Draw a `Diagram` (dnn.compiler.graph) as SVG or PNG, and write `dnn graph` outputs.

Graphviz's `dot` lays the graph out when it is on PATH. Without it (or if it fails) a built-in
layered layout in pure Python does, so pictures never need a system package:

1. ranks: each node one below its lowest input (longest path); an input sits just above its
   first consumer;
2. an edge that spans several ranks gets a dummy point on each rank between, owned by the
   innermost block both ends share, so a skip connection runs beside a block, not through it;
3. placement, bottom-up over the block tree: inside a block, children (nodes, dummy points and
   inner blocks, each laid out already) are placed in rank order, each so that its output sits
   under the mean of its inputs already placed (a child with none goes right of its siblings,
   keeping spec order), then moved sideways to the nearest free spot if it would overlap a
   sibling whose rank range it shares. Real nodes go first, so chains stay straight and long
   edges go around them. Blocks stay contiguous and never overlap what is not inside them;
4. rows: the gap between two ranks grows with the block borders and labels that fall in it.

SVG is written by hand (escaped text, one `<g class="node">` per box); PNG draws the same
layout with matplotlib (imported only then), so both look alike.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from dnn.compiler.graph import CLUSTER_STYLE, EDGE_COLOR, STYLES, Box, Diagram, to_dot, to_mermaid

# Formats by file suffix; text formats may go to stdout (`-o -`).
SUFFIXES = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot", ".mmd": "mmd"}
TEXT_FORMATS = ("svg", "dot", "mmd")

# Geometry in pixels. Text is monospace so widths are known without font metrics:
# DejaVu Sans Mono (matplotlib's), Menlo and Consolas advance 0.55-0.60 em per character.
FONT_PX, LABEL_PX, TITLE_PX = 12.0, 11.0, 13.0
CHAR_EM = 0.62
LINE_H, PAD_X, PAD_Y, MIN_W = 16.0, 10.0, 5.0, 80.0
RANK_GAP, NODE_GAP, DUMMY_GAP, DUMMY_W = 26.0, 22.0, 12.0, 2.0
CLUSTER_PAD, CLUSTER_LABEL_H = 10.0, 16.0
PORT_INSET = 14.0  # edges meet a box at least this far from its corners
MARGIN, TITLE_H = 16.0, 26.0
SVG_FONTS = "DejaVu Sans Mono, Menlo, Consolas, Liberation Mono, monospace"


class RenderError(Exception):
    """A picture cannot be made as asked (no `dot` when it was required, no matplotlib)."""


@dataclass(frozen=True, slots=True)
class Rect:
    """An axis-aligned rectangle: top-left corner, width, height (y grows downwards)."""

    x: float
    y: float
    w: float
    h: float

    def intersects(self, o: Rect) -> bool:
        return (
            self.x < o.x + o.w
            and o.x < self.x + self.w
            and self.y < o.y + o.h
            and o.y < self.y + self.h
        )

    def contains(self, o: Rect) -> bool:
        return (
            self.x <= o.x
            and self.y <= o.y
            and o.x + o.w <= self.x + self.w
            and o.y + o.h <= self.y + self.h
        )


Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Layout:
    """Where everything goes: boxes and clusters by id, one polyline per diagram edge."""

    width: float
    height: float
    boxes: Mapping[str, Rect]
    clusters: Mapping[str, Rect]
    edges: tuple[tuple[Point, ...], ...]  # in the order of Diagram.edges, source to target


@dataclass(frozen=True, slots=True)
class Drawing:
    """The bytes of one output and how they were laid out."""

    data: bytes
    engine: str  # "graphviz", "builtin" or "text"
    warning: str | None = None


# ------------------------------------------------------------------ outputs


def output_format(path: str, fmt: str | None) -> str:
    """The format to write: `fmt` if given, else from the suffix of `path` (`-`: DOT)."""
    if fmt:
        return fmt
    if path == "-":
        return "dot"
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        known = ", ".join(SUFFIXES)
        raise RenderError(f"cannot tell the format of `{path}`: use a suffix {known}, or --format")
    return SUFFIXES[suffix]


def write(path: str, data: bytes) -> None:
    """Write an output file; a failure is a `RenderError` that names the path."""
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise RenderError(f"cannot write `{path}`: {e.strerror or e}") from None


def draw(d: Diagram, fmt: str, engine: str = "auto") -> Drawing:
    """The diagram in `fmt` (svg, png, dot, mmd); pictures by Graphviz if present, else built in."""
    if fmt == "dot":
        return Drawing(to_dot(d).encode(), "text")
    if fmt == "mmd":
        return Drawing(to_mermaid(d).encode(), "text")
    dot = shutil.which("dot") if engine != "builtin" else None
    if engine == "graphviz" and dot is None:
        raise RenderError("Graphviz `dot` is not on PATH; use --layout builtin or auto")
    warning = None
    if dot is not None:
        try:
            return Drawing(_graphviz(dot, to_dot(d), fmt), "graphviz")
        except RenderError as e:
            if engine == "graphviz":
                raise
            warning = f"{e}; used the built-in layout"
    lay = layout(d)
    data = to_svg(d, lay).encode() if fmt == "svg" else to_png(d, lay)
    return Drawing(data, "builtin", warning)


def _graphviz(dot: str, text: str, fmt: str) -> bytes:
    """Graphviz's rendering of DOT `text`; its last error line if it fails."""
    try:
        proc = subprocess.run(
            [dot, f"-T{fmt}"], input=text.encode(), capture_output=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RenderError(f"Graphviz `dot` failed: {e}") from None
    if proc.returncode != 0 or not proc.stdout:
        said = proc.stderr.decode(errors="replace").strip().splitlines()
        why = said[-1] if said else f"exit status {proc.returncode}, no output"
        raise RenderError(f"Graphviz `dot` failed: {why}")
    return proc.stdout


# ------------------------------------------------------------------ layout: items and ranks


@dataclass(slots=True)
class _Item:
    """A node or a dummy point of a long edge, on one rank."""

    id: str
    rank: int
    w: float
    h: float
    cluster: str | None
    order: int  # graph order: nodes keep it, dummies take their source's
    dummy: bool


@dataclass(slots=True)
class _Graph:
    """The layout's working graph: items, their inputs, each edge's route through dummies,
    and the cluster tree: each cluster's parent, and the items and clusters directly in each."""

    items: dict[str, _Item]
    preds: dict[str, list[str]]
    routes: list[list[str]]
    parent: dict[str, str | None]
    items_in: dict[str | None, list[_Item]] = field(default_factory=dict)
    clusters_in: dict[str | None, list[str]] = field(default_factory=dict)


def box_size(b: Box) -> tuple[float, float]:
    """Width and height of a node's box: its longest line, its number of lines."""
    chars = max(len(s) for s in b.lines)
    return max(MIN_W, chars * CHAR_EM * FONT_PX + 2 * PAD_X), len(b.lines) * LINE_H + 2 * PAD_Y


def _ranks(d: Diagram) -> dict[str, int]:
    """Longest path from the inputs; then each source moves down to just above its consumers."""
    preds: dict[str, list[str]] = {b.id: [] for b in d.boxes}
    succs: dict[str, list[str]] = {b.id: [] for b in d.boxes}
    for s, t in d.edges:
        preds[t].append(s)
        succs[s].append(t)
    rank: dict[str, int] = {}
    for b in d.boxes:
        rank[b.id] = 1 + max((rank[p] for p in preds[b.id]), default=-1)
    for b in d.boxes:
        if not preds[b.id] and succs[b.id]:
            rank[b.id] = min(rank[s] for s in succs[b.id]) - 1
    return rank


def _ancestors(parent: Mapping[str, str | None], cluster: str | None) -> list[str | None]:
    """`cluster`, its parent, ... up to None (the top level)."""
    chain: list[str | None] = [cluster]
    while cluster is not None:
        cluster = parent[cluster]
        chain.append(cluster)
    return chain


def _common(parent: Mapping[str, str | None], a: str | None, b: str | None) -> str | None:
    """The innermost cluster holding both `a` and `b` (None: the top level)."""
    mine = _ancestors(parent, b)
    return next(c for c in _ancestors(parent, a) if c in mine)


def _working_graph(d: Diagram) -> _Graph:
    rank = _ranks(d)
    parent = {c.id: c.parent for c in d.clusters}
    items = {}
    for i, b in enumerate(d.boxes):
        w, h = box_size(b)
        items[b.id] = _Item(b.id, rank[b.id], w, h, b.cluster, i, False)
    order = {b.id: i for i, b in enumerate(d.boxes)}
    preds: dict[str, list[str]] = {i: [] for i in items}
    routes = []
    for k, (s, t) in enumerate(d.edges):
        owner = _common(parent, items[s].cluster, items[t].cluster)
        route = [s]
        for r in range(rank[s] + 1, rank[t]):
            dummy = f"~{k}.{r}"
            items[dummy] = _Item(dummy, r, DUMMY_W, 0.0, owner, order[s], True)
            preds[dummy] = []
            route.append(dummy)
        route.append(t)
        for a, b in zip(route, route[1:], strict=False):
            preds[b].append(a)
        routes.append(route)
    g = _Graph(items, preds, routes, parent)
    for key in (None, *parent):
        g.items_in[key], g.clusters_in[key] = [], []
    for it in items.values():
        g.items_in[it.cluster].append(it)
    for c in d.clusters:
        g.clusters_in[c.parent].append(c.id)
    return g


# ------------------------------------------------------------------ layout: placement


@dataclass(slots=True)
class _Placed:
    """A child laid out on its own: rank range, x extent and item centres relative to it."""

    lo: int
    hi: int
    left: float
    right: float
    order: int
    dummy: bool
    xs: dict[str, float]
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)  # cluster -> left, right


def _leaf(it: _Item) -> _Placed:
    return _Placed(it.rank, it.rank, -it.w / 2, it.w / 2, it.order, it.dummy, {it.id: 0.0})


def _place(d: Diagram, g: _Graph, cluster: str | None) -> _Placed:
    """Lay out a cluster's children side by side where their rank ranges meet (see module doc)."""
    kids = [_leaf(it) for it in g.items_in[cluster]]
    kids += [_place(d, g, c) for c in g.clusters_in[cluster]]
    # real nodes first, then inputs that join late (pulled down beside a chain), then dummies
    kids.sort(key=lambda k: (k.lo, k.dummy, _is_source(k, g), k.order))
    done: list[tuple[_Placed, float]] = []
    xs: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    for k in kids:
        dx = _free_x(k, done, _wanted(k, xs, g))
        done.append((k, dx))
        xs.update({i: x + dx for i, x in k.xs.items()})
        spans.update({c: (a + dx, b + dx) for c, (a, b) in k.spans.items()})
    left = min(k.left + dx for k, dx in done)
    right = max(k.right + dx for k, dx in done)
    lo, hi = min(k.lo for k in kids), max(k.hi for k in kids)
    order = min(k.order for k in kids)
    if cluster is not None:
        left, right = _pad(left, right, d.cluster(cluster).label)
        spans[cluster] = (left, right)
    return _Placed(lo, hi, left, right, order, False, xs, spans)


def _is_source(k: _Placed, g: _Graph) -> bool:
    return len(k.xs) == 1 and not any(g.preds[i] for i in k.xs)


def _pad(left: float, right: float, label: str) -> tuple[float, float]:
    """A cluster's border: padding around its content, wide enough for its label."""
    left, right = left - CLUSTER_PAD, right + CLUSTER_PAD
    short = len(label) * CHAR_EM * LABEL_PX + 2 * CLUSTER_PAD - (right - left)
    return (left - short / 2, right + short / 2) if short > 0 else (left, right)


def _wanted(k: _Placed, xs: Mapping[str, float], g: _Graph) -> float | None:
    """The offset that puts `k`'s output under the inputs of its first node with inputs placed.

    Inputs: the mean of the real ones (dummies only if there is none), so a join sits between
    its inputs and a skip connection does not pull the chain sideways. Output: its last node,
    so a block with a side branch (a projection) keeps the path through it straight, and a
    fork (inception) is centred under its input. None if no input of `k` is placed yet.
    """
    real = [i for i in k.xs if not g.items[i].dummy] or list(k.xs)
    out = max(real, key=lambda i: g.items[i].order)
    for t in sorted(k.xs, key=lambda i: g.items[i].order):
        placed = [s for s in g.preds[t] if s in xs]
        inputs = [s for s in placed if not g.items[s].dummy] or placed
        if inputs:
            return sum(xs[s] for s in inputs) / len(inputs) - k.xs[out]
    return None


def _free_x(k: _Placed, done: Sequence[tuple[_Placed, float]], want: float | None) -> float:
    """The offset nearest `want` at which `k` overlaps no placed sibling sharing a rank; with
    no `want`, the first free one from 0 rightwards, so unconnected siblings keep spec order."""
    blocked = []
    for p, dx in done:
        if p.lo <= k.hi and k.lo <= p.hi:
            gap = DUMMY_GAP if p.dummy or k.dummy else NODE_GAP
            blocked.append((p.left + dx - gap - k.right, p.right + dx + gap - k.left))
    x = 0.0 if want is None else want
    for a, b in _merged(blocked):
        if a < x < b:
            return b if want is None or b - x <= x - a else a
    return x


def _merged(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


# ------------------------------------------------------------------ layout: rows and edges


def layout(d: Diagram) -> Layout:
    """The built-in layered layout of a diagram (no Graphviz needed)."""
    g = _working_graph(d)
    root = _place(d, g, None)
    shift = MARGIN - root.left
    ranks = _cluster_ranks(d, g)
    opens, closes = _depths(d, g, ranks, 0), _depths(d, g, ranks, 1)
    rows = _rows(g, ranks, opens, closes)
    xs = {i: x + shift for i, x in root.xs.items()}
    boxes = {b.id: _box_rect(g.items[b.id], xs[b.id], rows) for b in d.boxes}
    clusters = {}
    for c in d.clusters:
        (lo, hi), (a, b) = ranks[c.id], root.spans[c.id]
        y0 = rows.tops[lo] - opens[c.id] * (CLUSTER_PAD + CLUSTER_LABEL_H)
        y1 = rows.bottom(hi) + closes[c.id] * CLUSTER_PAD
        clusters[c.id] = Rect(a + shift, y0, b - a, y1 - y0)
    title_w = len(d.title) * CHAR_EM * TITLE_PX + 2 * MARGIN
    width = max(root.right - root.left + 2 * MARGIN, title_w)
    height = max(r.y + r.h for r in [*boxes.values(), *clusters.values()]) + MARGIN
    return Layout(width, height, boxes, clusters, _edges(g, xs, boxes, rows))


def _cluster_ranks(d: Diagram, g: _Graph) -> dict[str, tuple[int, int]]:
    """First and last rank of everything inside each cluster (dummies included)."""
    found: dict[str, tuple[int, int]] = {}
    for it in g.items.values():
        for c in _ancestors(g.parent, it.cluster)[:-1]:
            assert c is not None
            lo, hi = found.get(c, (it.rank, it.rank))
            found[c] = (min(lo, it.rank), max(hi, it.rank))
    return found


def _depths(
    d: Diagram, g: _Graph, ranks: Mapping[str, tuple[int, int]], end: int
) -> dict[str, int]:
    """How many borders a cluster's top (end 0) or bottom (end 1) stacks: 1 + nested ones there."""
    depth: dict[str, int] = {}
    for c in reversed(d.clusters):  # children before parents
        same = [k for k in g.clusters_in[c.id] if ranks[k][end] == ranks[c.id][end]]
        depth[c.id] = 1 + max((depth[k] for k in same), default=0)
    return depth


@dataclass(frozen=True, slots=True)
class _Rows:
    """Vertical geometry of the ranks, and the middle of the free band above each rank
    (below the borders closing there, above those opening), where long edges turn."""

    tops: list[float]
    heights: list[float]
    bands: list[float]

    def bottom(self, r: int) -> float:
        return self.tops[r] + self.heights[r]


def _rows(
    g: _Graph,
    ranks: Mapping[str, tuple[int, int]],
    opens: Mapping[str, int],
    closes: Mapping[str, int],
) -> _Rows:
    """Top and height of each rank; a gap grows with the cluster borders that fall in it."""
    n = 1 + max(it.rank for it in g.items.values())
    heights = [0.0] * n
    for it in g.items.values():
        heights[it.rank] = max(heights[it.rank], it.h)
    top_border, bottom_border = [0] * n, [0] * n  # borders stacked above / below each rank
    for c, (lo, hi) in ranks.items():
        top_border[lo] = max(top_border[lo], opens[c])
        bottom_border[hi] = max(bottom_border[hi], closes[c])
    tops, bands, y = [], [], MARGIN + TITLE_H
    for r in range(n):
        bands.append(y + RANK_GAP / 2)
        y += (RANK_GAP if r else 0) + top_border[r] * (CLUSTER_PAD + CLUSTER_LABEL_H)
        tops.append(y)
        y += heights[r] + bottom_border[r] * CLUSTER_PAD
    return _Rows(tops, heights, bands)


def _box_rect(it: _Item, x: float, rows: _Rows) -> Rect:
    y = rows.tops[it.rank] + (rows.heights[it.rank] - it.h) / 2
    return Rect(x - it.w / 2, y, it.w, it.h)


def _edges(
    g: _Graph, xs: Mapping[str, float], boxes: Mapping[str, Rect], rows: _Rows
) -> tuple[tuple[Point, ...], ...]:
    """Polylines: out of a box's bottom; through each dummy's rank straight down, turning only in
    the free bands between block borders; into the target's top."""
    out_x = _ports(g, xs, boxes, 0)
    in_x = _ports(g, xs, boxes, -1)
    lines = []
    for k, route in enumerate(g.routes):
        s, t = boxes[route[0]], boxes[route[-1]]
        pts: list[Point] = [(out_x[k], s.y + s.h)]
        for dummy in route[1:-1]:
            r = g.items[dummy].rank
            pts += [(xs[dummy], rows.bands[r]), (xs[dummy], rows.bottom(r))]
        if len(route) > 2:  # down to the free band above the target, then across
            pts.append((pts[-1][0], rows.bands[g.items[route[-1]].rank]))
        pts.append((in_x[k], t.y))
        lines.append(tuple(pts))
    return tuple(lines)


def _ports(g: _Graph, xs: Mapping[str, float], boxes: Mapping[str, Rect], end: int) -> list[float]:
    """Where each edge leaves its source (end 0) or enters its target (end -1): below or above
    the box's centre if the next point is, else towards it, a little inside the box's side."""
    far = 1 if end == 0 else -2
    at = []
    for route in g.routes:
        box, toward = boxes[route[end]], xs[route[far]]
        inset = min(PORT_INSET, box.w / 4)
        at.append(min(max(toward, box.x + inset), box.x + box.w - inset))
    return at


def cluster_label_at(r: Rect) -> Point:
    """Where a cluster's label starts: top left, inside its border, centred in the label strip."""
    return r.x + CLUSTER_PAD / 2, r.y + CLUSTER_LABEL_H / 2 + 5


def cluster_label_rect(label: str, r: Rect) -> Rect:
    """The patch of the cluster's own fill behind its label, drawn over the edges: an edge
    passing into the cluster is hidden behind the text instead of striking through it (a
    stroked text halo left the line showing between letters, and SVG renderers without
    `paint-order` drew the halo over the letters)."""
    x, y = cluster_label_at(r)
    w = min(len(label) * CHAR_EM * LABEL_PX + 4, r.x + r.w - x)
    return Rect(x - 2, y - LABEL_PX / 2 - 2, w, LABEL_PX + 4)


def arrowhead(a: Point, b: Point, size: float = 7.0) -> tuple[Point, Point, Point]:
    """The triangle of an arrow from `a` ending at `b`."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = max((dx * dx + dy * dy) ** 0.5, 1e-9)
    ux, uy = dx / n, dy / n
    base = (b[0] - ux * size, b[1] - uy * size)
    half = size * 0.45
    return b, (base[0] - uy * half, base[1] + ux * half), (base[0] + uy * half, base[1] - ux * half)


# ------------------------------------------------------------------ SVG


def to_svg(d: Diagram, lay: Layout) -> str:
    """A standalone SVG document: clusters, edges, cluster labels, one `<g class="node">` a box."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{lay.width:.0f}" height="{lay.height:.0f}"'
        f' viewBox="0 0 {lay.width:.1f} {lay.height:.1f}" font-family={quoteattr(SVG_FONTS)}>',
        '<rect width="100%" height="100%" fill="white"/>',
        _svg_text(MARGIN, MARGIN + TITLE_PX / 2, d.title, TITLE_PX, "start", bold=True),
    ]
    out += [_svg_cluster(c.id, lay.clusters[c.id]) for c in d.clusters]
    out += [_svg_edge(pts) for pts in lay.edges]
    out += [_svg_cluster_label(c.id, c.label, lay.clusters[c.id]) for c in d.clusters]
    out += [_svg_box(b, lay.boxes[b.id]) for b in d.boxes]
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _svg_text(
    x: float, y: float, s: str, px: float, anchor: str = "middle", bold: bool = False
) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{px:g}" text-anchor="{anchor}"'
        f' dominant-baseline="central"{weight}>{escape(s)}</text>'
    )


def _svg_rect(r: Rect, fill: str, stroke: str, width: float = 1.0) -> str:
    return (
        f'<rect x="{r.x:.1f}" y="{r.y:.1f}" width="{r.w:.1f}" height="{r.h:.1f}" rx="5"'
        f' fill="{fill}" stroke="{stroke}" stroke-width="{width:g}"/>'
    )


def _svg_cluster(cid: str, r: Rect) -> str:
    return f'<g class="cluster" id="{cid}">{_svg_rect(r, *CLUSTER_STYLE)}</g>'


def _svg_cluster_label(cid: str, label: str, r: Rect) -> str:
    x, y = cluster_label_at(r)
    b = cluster_label_rect(label, r)
    patch = (
        f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" height="{b.h:.1f}"'
        f' fill="{CLUSTER_STYLE[0]}"/>'
    )
    text = _svg_text(x, y, label, LABEL_PX, "start")
    return f'<g class="cluster-label" id="{cid}-label">{patch}{text}</g>'


def _svg_edge(pts: Sequence[Point]) -> str:
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    head = " ".join(f"{x:.1f},{y:.1f}" for x, y in arrowhead(pts[-2], pts[-1]))
    return (
        f'<g class="edge"><polyline points="{line}" fill="none" stroke="{EDGE_COLOR}"'
        f' stroke-width="1.2"/><polygon points="{head}" fill="{EDGE_COLOR}"/></g>'
    )


def _svg_box(b: Box, r: Rect) -> str:
    fill, border = STYLES[b.role]
    width = 2.0 if b.role in ("input", "output") else 1.0
    parts = [
        f'<g class="node" id="{b.id}"><title>{escape(b.name)}</title>',
        _svg_rect(r, fill, border, width),
    ]
    for i, line in enumerate(b.lines):
        y = r.y + PAD_Y + (i + 0.5) * LINE_H
        parts.append(_svg_text(r.x + r.w / 2, y, line, FONT_PX, bold=i == 0))
    parts.append("</g>")
    return "".join(parts)


# ------------------------------------------------------------------ PNG


def to_png(d: Diagram, lay: Layout, scale: float = 2.0) -> bytes:
    """The same picture as `to_svg`, drawn with matplotlib's Agg (no Cairo, no Graphviz)."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle
    except ImportError:
        raise RenderError(
            "PNG needs matplotlib: pip install 'dnn[graph]' (or install Graphviz)"
        ) from None
    fig = Figure(figsize=(lay.width / 96, lay.height / 96), dpi=96)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, lay.width)
    ax.set_ylim(lay.height, 0)
    ax.axis("off")
    _png_text(ax, MARGIN, MARGIN + TITLE_PX / 2, d.title, TITLE_PX, "left", bold=True)
    for c in d.clusters:
        _png_rect(ax, lay.clusters[c.id], *CLUSTER_STYLE)
    for pts in lay.edges:
        _png_edge(ax, pts)
    for c in d.clusters:
        r = lay.clusters[c.id]
        x, y = cluster_label_at(r)
        b = cluster_label_rect(c.label, r)
        ax.add_patch(Rectangle((b.x, b.y), b.w, b.h, fc=CLUSTER_STYLE[0], ec="none", zorder=2.5))
        _png_text(ax, x, y, c.label, LABEL_PX, "left")
    for b in d.boxes:
        _png_box(ax, b, lay.boxes[b.id])
    # Agg draws at most 2**16 pixels a side: a very deep model gets a smaller scale
    scale = min(scale, 60000 / max(lay.width, lay.height))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96 * scale)
    return buf.getvalue()


def _pt(px: float) -> float:
    """Pixels (1/96 inch, as in SVG) to matplotlib's points (1/72 inch)."""
    return px * 72 / 96


def _png_text(
    ax: Any, x: float, y: float, s: str, px: float, ha: str = "center", bold: bool = False
) -> None:
    weight = "bold" if bold else "normal"
    font = {"fontsize": _pt(px), "family": "DejaVu Sans Mono", "fontweight": weight}
    ax.text(x, y, s, ha=ha, va="center", **font)


def _png_rect(ax: Any, r: Rect, fill: str, stroke: str, width: float = 1.0) -> None:
    from matplotlib.patches import FancyBboxPatch

    style = "round,pad=0,rounding_size=5"
    patch = FancyBboxPatch((r.x, r.y), r.w, r.h, boxstyle=style, fc=fill, ec=stroke, lw=_pt(width))
    ax.add_patch(patch)


def _png_edge(ax: Any, pts: Sequence[Point]) -> None:
    from matplotlib.patches import Polygon

    ax.plot([p[0] for p in pts], [p[1] for p in pts], color=EDGE_COLOR, lw=_pt(1.2))
    ax.add_patch(Polygon(arrowhead(pts[-2], pts[-1]), closed=True, fc=EDGE_COLOR, ec="none"))


def _png_box(ax: Any, b: Box, r: Rect) -> None:
    fill, border = STYLES[b.role]
    _png_rect(ax, r, fill, border, 2.0 if b.role in ("input", "output") else 1.0)
    for i, line in enumerate(b.lines):
        _png_text(ax, r.x + r.w / 2, r.y + PAD_Y + (i + 0.5) * LINE_H, line, FONT_PX, bold=i == 0)
