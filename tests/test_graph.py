"""`dnn graph`: the diagram of a model, its DOT and Mermaid texts, the built-in layout, SVG, PNG."""

from __future__ import annotations

import os
import re
import stat
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from dnn.compiler.driver import load, loads
from dnn.compiler.graph import Box, Diagram, describe, to_dot, to_mermaid
from dnn.compiler.ir import Graph, Program
from dnn.runtime import render
from dnn.runtime.cli import main

ROOT = Path(__file__).parent.parent
EXAMPLES = ["digits_cnn", "resnet_small", "densenet_small", "two_tower", "resnet18"]
CNN = str(ROOT / "examples" / "digits_cnn.dnn")

# Parallel blocks (each branch its own block) and an input that joins at the end.
INCEPTION = """dnn 1

block branch(c) {
  conv2d(c, kernel = 1) -> relu
}

block inception(c) {
  p = branch(c)(in)
  q = branch(c)(in)
  r = branch(c)(in)
  output concat(p, q, r)
}

model m {
  input x: f32[8, 8, 3]
  input side: f32[6]
  h = inception(4)(x)
  h = inception(8)(h) -> global_avgpool -> dense(6)
  output add(h, side)
}
"""
CHAIN = "dnn 1\n\nmodel chain {\n  input x: f32[4]\n" + "  dense(4) -> relu\n" * 150 + "}\n"


def diagram(name: str) -> Diagram:
    if name == "inception":
        return describe(_model(loads(INCEPTION, "inception.dnn")))
    if name == "chain":
        return describe(_model(loads(CHAIN, "chain.dnn")))
    return describe(_model(load(str(ROOT / "examples" / f"{name}.dnn"))))


def _model(program: Program) -> Graph:
    assert program.model is not None
    return program.model


def members(d: Diagram, cluster: str) -> set[str]:
    """Boxes inside a cluster, at any depth."""

    def inside(b: Box) -> bool:
        c = b.cluster
        while c is not None and c != cluster:
            c = d.cluster(c).parent
        return c == cluster

    return {b.id for b in d.boxes if inside(b)}


# ------------------------------------------------------------------ the diagram


def test_describe_resnet_boxes_edges_clusters() -> None:
    program = load(str(ROOT / "examples" / "resnet_small.dnn"))
    g = _model(program)
    d = describe(g)
    assert [b.name for b in d.boxes] == [n.name for n in g.nodes]
    assert len(d.edges) == sum(len(n.inputs) for n in g.nodes)
    paths = {c.path for c in d.clusters}
    assert paths == {n.scope[:k] for n in g.nodes for k in range(1, len(n.scope) + 1)}
    # `h = conv_bn(...)(in)` in the basic block: the instance takes the bound name
    inner = next(c for c in d.clusters if c.path == ("basic_1", "h"))
    assert d.cluster(inner.parent or "").path == ("basic_1",)
    assert inner.label == "h = conv_bn · 2,368 params"
    assert d.cluster(inner.parent or "").label == "basic_1 · 4,736 params"


def test_box_lines_op_shape_params_and_roles() -> None:
    d = diagram("resnet_small")
    by_name = {b.name: b for b in d.boxes}
    assert by_name["image"].lines == ("input image", "f32[8, 8, 1]")
    assert by_name["image"].role == "input"
    assert by_name["basic/h/batchnorm"].lines == ("batchnorm", "f32[8, 8, 16]", "64 params")
    # a named value, as the spec writes it (`h` names the block instance above it: `h_1`)
    assert by_name["basic/h_1"].lines[0] == "h_1 = batchnorm"
    assert by_name["basic_2/skip"].lines[0] == "skip = batchnorm"
    assert by_name["dense"].lines == ("output dense", "f32[10]", "330 params")
    assert by_name["dense"].role == "output"
    assert by_name["conv_bn/relu"].role == "activation"


# ------------------------------------------------------------------ DOT and Mermaid

DOT_ID = r"[A-Za-z_][A-Za-z0-9_]*"
DOT_STRING = r'"(?:[^"\\]|\\.)*"'
KEYWORDS = {"graph", "node", "edge"}


def _dot_structure(text: str) -> tuple[dict[str, tuple[str, ...]], list[tuple[str, str]]]:
    """Node id -> enclosing cluster ids, and the edges; asserts braces balance outside strings."""
    stack: list[str] = []
    nodes: dict[str, tuple[str, ...]] = {}
    edges = []
    body = text.splitlines()
    assert re.fullmatch(rf"digraph {DOT_STRING} {{", body[0]) and body[-1] == "}"
    for line in body[1:-1]:
        bare = re.sub(DOT_STRING, '""', line).strip()
        assert "{" not in bare or bare.startswith("subgraph"), line
        if m := re.fullmatch(rf"subgraph cluster_({DOT_ID}) {{", bare):
            stack.append(m.group(1))
        elif bare == "}":
            stack.pop()  # an unbalanced brace fails here or at the end
        elif m := re.fullmatch(rf"({DOT_ID}) -> ({DOT_ID});", bare):
            edges.append((m.group(1), m.group(2)))
        elif (m := re.fullmatch(rf"({DOT_ID}) \[.*\];", bare)) and m.group(1) not in KEYWORDS:
            assert m.group(1) not in nodes, f"{m.group(1)} defined twice"
            nodes[m.group(1)] = tuple(stack)
    assert not stack
    return nodes, edges


@pytest.mark.parametrize("name", [*EXAMPLES, "inception"])
def test_dot_every_node_edge_and_cluster(name: str) -> None:
    d = diagram(name)
    text = to_dot(d)
    nodes, edges = _dot_structure(text)
    assert set(nodes) == {b.id for b in d.boxes}
    assert sorted(edges) == sorted(d.edges)
    for b in d.boxes:
        assert nodes[b.id] == _chain(d, b.cluster)
        assert all(f"{_dot_escape(s)}" in text for s in b.lines)


def _chain(d: Diagram, cluster: str | None) -> tuple[str, ...]:
    """Cluster ids from the outermost to `cluster`."""
    out: list[str] = []
    while cluster is not None:
        out.insert(0, cluster)
        cluster = d.cluster(cluster).parent
    return tuple(out)


def _dot_escape(s: str) -> str:
    return s.replace('"', '\\"')


def test_dot_escapes_quotes_and_backslashes() -> None:
    box = Box("n0", 'a"b\\c', ('say "hi"\\',), "input", None)
    text = to_dot(Diagram('m"x', "t", (box,), (), ()))
    assert 'digraph "m\\"x"' in text
    assert 'label="say \\"hi\\"\\\\"' in text
    _dot_structure(text)


@pytest.mark.parametrize("name", [*EXAMPLES, "inception"])
def test_mermaid_every_node_edge_and_subgraph(name: str) -> None:
    d = diagram(name)
    lines = to_mermaid(d).splitlines()
    assert lines[0] == "flowchart TD"
    stack: list[str] = []
    nodes: dict[str, tuple[str, ...]] = {}
    edges = []
    for line in lines[1:]:
        s = line.strip()
        if m := re.fullmatch(r'subgraph (c\d+) \["[^"]*"\]', s):
            stack.append(m.group(1))
        elif s == "end":
            stack.pop()
        elif m := re.fullmatch(r"(n\d+) --> (n\d+)", s):
            edges.append((m.group(1), m.group(2)))
        elif m := re.fullmatch(r'(n\d+)(\[|\(\[|\[\[)"([^"]*)"(\]|\]\)|\]\])', s):
            assert m.group(1) not in nodes
            nodes[m.group(1)] = tuple(stack)
    assert not stack
    assert set(nodes) == {b.id for b in d.boxes}
    assert sorted(edges) == sorted(d.edges)
    assert all(nodes[b.id] == _chain(d, b.cluster) for b in d.boxes)


def test_mermaid_marks_inputs_and_outputs_and_escapes() -> None:
    text = to_mermaid(diagram("two_tower"))
    assert 'n0(["input a<br/>f32[' in text
    assert "class n0,n1 input" in text
    box = Box("n0", "x", ('a "b" <c> #1',), "layer", None)
    assert '["a #quot;b#quot; #lt;c#gt; #35;1"]' in to_mermaid(Diagram("m", "t", (box,), (), ()))


# ------------------------------------------------------------------ layout


@pytest.mark.parametrize("name", [*EXAMPLES, "inception", "chain"])
def test_layout_no_overlaps_clusters_enclose_edges_go_down(name: str) -> None:
    d = diagram(name)
    lay = render.layout(d)
    rects = list(lay.boxes.items())
    for i, (a, ra) in enumerate(rects):
        for b, rb in rects[i + 1 :]:
            assert not ra.intersects(rb), (a, b)
    for c in d.clusters:
        inside = members(d, c.id)
        for b, r in lay.boxes.items():
            if b in inside:
                assert lay.clusters[c.id].contains(r), (c.path, b)
            else:
                assert not lay.clusters[c.id].intersects(r), (c.path, b)
    for c, k in ((c, k) for c in d.clusters for k in d.clusters if k.parent == c.id):
        assert lay.clusters[c.id].contains(lay.clusters[k.id])
    for (s, t), pts in zip(d.edges, lay.edges, strict=True):
        assert all(p[1] <= q[1] for p, q in zip(pts, pts[1:], strict=False)), (s, t)
        assert pts[0][1] == lay.boxes[s].y + lay.boxes[s].h and pts[-1][1] == lay.boxes[t].y
    assert all(0 <= r.x and r.x + r.w <= lay.width and r.y + r.h <= lay.height for _, r in rects)


def test_layout_chain_is_straight_and_skips_go_beside_blocks() -> None:
    lay = render.layout(diagram("chain"))
    assert len({round(r.x + r.w / 2, 3) for r in lay.boxes.values()}) == 1
    d = diagram("resnet_small")
    lay = render.layout(d)
    skip = d.edges.index(("n3", "n9"))  # conv_bn/relu -> basic/add: around the block
    block = lay.clusters["c1"]
    assert any(x > block.x + block.w for x, _ in lay.edges[skip])


def test_labels_fit_their_boxes() -> None:
    """Measured with the PNG's font (DejaVu Sans Mono), bold titles included."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    measure = TextToPath().get_text_width_height_descent
    for name in ("resnet18", "two_tower"):
        d = diagram(name)
        for b in d.boxes:
            w, _ = render.box_size(b)
            for i, line in enumerate(b.lines):
                font = FontProperties(
                    family="DejaVu Sans Mono", weight="bold" if i == 0 else "normal"
                )
                font.set_size(render.FONT_PX)
                assert measure(line, font, ismath=False)[0] <= w - 2 * render.PAD_X + 0.5, line
        lay = render.layout(d)
        for c in d.clusters:
            font = FontProperties(family="DejaVu Sans Mono", size=render.LABEL_PX)
            assert measure(c.label, font, ismath=False)[0] < lay.clusters[c.id].w - 5, c.label


# ------------------------------------------------------------------ SVG and PNG


def test_svg_parses_one_box_per_node_with_its_labels() -> None:
    d = diagram("resnet_small")
    root = ET.fromstring(render.to_svg(d, render.layout(d)))
    ns = "{http://www.w3.org/2000/svg}"
    groups = root.findall(f"{ns}g[@class='node']")
    assert [g.get("id") for g in groups] == [b.id for b in d.boxes]
    for g, b in zip(groups, d.boxes, strict=True):
        assert len(g.findall(f"{ns}rect")) == 1
        assert tuple(t.text for t in g.findall(f"{ns}text")) == b.lines
        assert g.findtext(f"{ns}title") == b.name
    assert len(root.findall(f"{ns}g[@class='cluster']")) == len(d.clusters)
    assert len(root.findall(f"{ns}g[@class='edge']")) == len(d.edges)


def test_svg_escapes_text() -> None:
    box = Box("n0", "<a>", ("x < y & z",), "layer", None)
    d = Diagram("m", "m & n", (box,), (), ())
    root = ET.fromstring(render.to_svg(d, render.layout(d)))
    assert "x < y & z" in [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def test_png_signature_and_size() -> None:
    d = diagram("digits_cnn")
    lay = render.layout(d)
    w, h = _png_size(render.to_png(d, lay))
    assert abs(w - 2 * lay.width) <= 2 and abs(h - 2 * lay.height) <= 2
    assert 200 < w < 5000 and h > w


# ------------------------------------------------------------------ Graphviz when present


def _fake_dot(tmp_path: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    exe = tmp_path / "bin" / "dot"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return tmp_path / "stdin.dot"


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for dot")
def test_graphviz_used_when_dot_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_dot(tmp_path, f'cat > "{tmp_path}/stdin.dot"\necho "<svg>$1</svg>"\n', monkeypatch)
    d = diagram("two_tower")
    out = render.draw(d, "svg")
    assert (out.engine, out.data, out.warning) == ("graphviz", b"<svg>-Tsvg</svg>\n", None)
    assert seen.read_text() == to_dot(d)
    assert render.draw(d, "svg", "builtin").engine == "builtin"


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for dot")
def test_failing_dot_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dot(tmp_path, "echo 'Error: syntax error in line 1' >&2\nexit 1\n", monkeypatch)
    d = diagram("two_tower")
    out = render.draw(d, "svg")
    assert out.engine == "builtin" and "syntax error in line 1" in (out.warning or "")
    with pytest.raises(render.RenderError, match="syntax error"):
        render.draw(d, "svg", "graphviz")


def test_no_dot_builtin_or_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render.shutil, "which", lambda _: None)
    assert render.draw(diagram("two_tower"), "svg").engine == "builtin"
    with pytest.raises(render.RenderError, match="not on PATH"):
        render.draw(diagram("two_tower"), "png", "graphviz")


# ------------------------------------------------------------------ command line


@pytest.mark.parametrize("suffix", [".svg", ".png", ".dot", ".gv", ".mmd"])
def test_cli_each_suffix(suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"model{suffix}"
    assert main(["graph", CNN, "-o", str(out), "--layout", "builtin"]) == 0
    data = out.read_bytes()
    head = {".svg": b"<?xml", ".png": b"\x89PNG", ".dot": b"digraph", ".gv": b"digraph"}
    assert data.startswith(head.get(suffix, b"flowchart TD\n  %% digits_cnn"))
    assert f"{out}: " in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["dot", "mmd", "svg"])
def test_cli_text_to_stdout(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", CNN, "-o", "-", "--format", fmt, "--set", "width=8"]) == 0
    out = capsys.readouterr().out
    assert "f32[8, 8, 8]" in out and "conv_bn_2" in out


def test_cli_stdout_is_dot_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", CNN]) == 0
    assert capsys.readouterr().out.startswith('digraph "digits_cnn" {')


def test_cli_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", CNN, "-o", str(tmp_path / "model.jpg")]) == 2
    err = capsys.readouterr().err
    assert "cannot tell the format of" in err and ".svg" in err
    assert main(["graph", CNN, "-o", "-", "--format", "png"]) == 2
    assert "png is not text" in capsys.readouterr().err
    assert main(["graph", CNN, "-o", str(tmp_path / "no" / "such" / "m.svg")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_cli_spec_error_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.dnn"
    bad.write_text("dnn 1\n\nmodel m {\n  input x: f32[4]\n  dropot(0.5)\n}\n")
    assert main(["graph", str(bad), "-o", str(tmp_path / "m.svg")]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:5:3: error[E0202]: unknown layer `dropot`" in err and "Traceback" not in err
    assert not (tmp_path / "m.svg").exists()


def test_cli_graph_does_not_import_jax(tmp_path: Path) -> None:
    code = (
        "import sys; from dnn.runtime.cli import main; "
        f"assert main(['graph', {CNN!r}, '-o', {str(tmp_path / 'm.svg')!r}]) == 0; "
        "assert 'jax' not in sys.modules and 'matplotlib' not in sys.modules"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------ collapsed blocks (--depth)


def test_depth_draws_nested_blocks_as_boxes() -> None:
    """Issue 17: pictures of deep models were very tall (resnet_small 820 x 5,944 px). Blocks
    nested deeper than `depth` become one box: its name, its last layer's shape, its params."""
    g = _model(load(str(ROOT / "examples" / "resnet_small.dnn")))
    top = describe(g, 0)
    assert [b.lines for b in top.boxes] == [
        ("input image", "f32[8, 8, 1]"),
        ("conv_bn", "f32[8, 8, 16]", "208 params"),
        ("basic", "f32[8, 8, 16]", "4,736 params"),
        ("basic_1", "f32[8, 8, 16]", "4,736 params"),
        ("basic_2", "f32[4, 4, 32]", "14,720 params"),
        ("basic_3", "f32[4, 4, 32]", "18,688 params"),
        ("global_avgpool", "f32[32]"),
        ("output dense", "f32[10]", "330 params"),
    ]
    assert top.clusters == ()
    ids = [b.id for b in top.boxes]
    assert list(top.edges) == list(zip(ids, ids[1:], strict=False))  # a chain at this depth
    assert (
        sum(
            int(b.lines[-1].split()[0].replace(",", ""))
            for b in top.boxes
            if b.lines[-1].endswith("params")
        )
        == g.params
    )
    one = describe(g, 1)
    assert {c.path for c in one.clusters} == {
        ("conv_bn",),
        *(((f"basic{s}",)) for s in ("", "_1", "_2", "_3")),
    }
    inner = next(b for b in one.boxes if b.name == "basic_1/h")
    assert inner.lines == ("h = conv_bn", "f32[8, 8, 16]", "2,368 params")
    assert one.cluster(inner.cluster or "").path == ("basic_1",)
    # the skip edge into basic_1's add still comes from basic's output (its relu)
    names = {b.id: b.name for b in one.boxes}
    assert ("basic/relu", "basic_1/add") in {(names[s], names[t]) for s, t in one.edges}


def test_depth_for_keeps_pictures_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dnn.compiler.graph import depth_for

    g = _model(load(str(ROOT / "examples" / "resnet_small.dnn")))
    assert len(describe(g).boxes) == 36 and depth_for(g, 30) == 1 and depth_for(g, 40) is None
    assert depth_for(g, 5) == 0  # even the top level is more: the least deep drawing
    out = tmp_path / "r.png"
    assert main(["graph", str(ROOT / "examples" / "resnet_small.dnn"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert (
        "note: blocks nested deeper than 1 drawn as one box each, to keep the picture "
        "under 30 boxes (`--depth full` draws every layer)" in err
    )
    full = tmp_path / "f.png"
    cmd = ["graph", str(ROOT / "examples" / "resnet_small.dnn"), "-o", str(full)]
    assert main([*cmd, "--depth", "full"]) == 0
    assert "note:" not in capsys.readouterr().err

    def height(p: Path) -> int:
        return struct.unpack(">II", p.read_bytes()[16:24])[1]

    assert height(out) < 0.8 * height(full)
    with pytest.raises(SystemExit) as usage:
        main(["graph", str(ROOT / "examples" / "resnet_small.dnn"), "--depth", "x"])
    assert usage.value.code == 2
    assert "argument --depth: `x`: give auto, full or a number of blocks >= 0" in (
        capsys.readouterr().err
    )


def test_cluster_labels_sit_on_their_own_patch_over_the_edges() -> None:
    """An edge into a cluster passed through its label; SVG labels used `paint-order`, which
    some renderers lack (the halo then hid the letters)."""
    d = diagram("resnet_small")
    svg = render.to_svg(d, render.layout(d))
    assert "paint-order" not in svg
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    order = [g.get("class") for g in root.iter(f"{ns}g")]
    assert order.index("cluster-label") > max(i for i, c in enumerate(order) if c == "edge")
    for g in root.iter(f"{ns}g"):
        if g.get("class") == "cluster-label":
            rect, text = g.find(f"{ns}rect"), g.find(f"{ns}text")
            assert rect is not None and text is not None
            assert rect.get("fill") == "#fafafa"  # the cluster's own fill
            x, w = float(rect.get("x") or 0), float(rect.get("width") or 0)
            chars = len(text.text or "")
            assert x <= float(text.get("x") or 0) and w >= chars * 0.62 * 11
