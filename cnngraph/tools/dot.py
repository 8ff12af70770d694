"""to_dot: a graph -> Graphviz DOT text, deterministic, one cluster per layer.

Forward ops are boxes, backward ops orange boxes, curvature ops purple boxes;
parameters are green ellipses, inputs and targets grey ones; each edge carries
the shape of the value it moves (batch axis shown as N).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import networkx as nx

from ..core.errors import UsageError
from ..core.outputs import usual_mode, write_atomically
from ..core.registry import Registry

STYLE = {
    "forward": 'shape=box, style="rounded,filled", fillcolor="#dbe9f6", color="#3a6ea5"',
    "backward": 'shape=box, style="rounded,filled", fillcolor="#fde2c8", color="#c8671b"',
    "curvature": 'shape=box, style="rounded,filled", fillcolor="#e7dcf3", color="#6b4c9a"',
    "param": 'shape=ellipse, style=filled, fillcolor="#d5efd0", color="#3c8a2e"',
    "input": 'shape=ellipse, style=filled, fillcolor="#e6e6e6", color="#555555"',
    "const": 'shape=plaintext',
}


def _quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n") + '"'


def shape_text(shape) -> str:
    return "×".join("N" if d is None else str(d) for d in shape) or "scalar"


def to_dot(graph: nx.DiGraph, registry: Registry, title: str = "cnngraph") -> str:
    """DOT text for a forward, backward or training graph."""
    lines = [f"digraph {_quote(title)} {{",
             '  graph [rankdir=TB, newrank=true, fontname="Helvetica", fontsize=11, labelloc=t, '
             f'label={_quote(title)}];',
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=8, color="#777777"];']
    clusters: dict[str, list[str]] = {}
    loose: list[str] = []
    for node, data in graph.nodes(data=True):
        (clusters.setdefault(data["layer"], []) if data.get("layer") else loose).append(
            f"    {_quote(node)} [label={_quote(_label(node, data, registry))}, "
            f"{STYLE[_style(data)]}];")
    for i, (layer, members) in enumerate(clusters.items()):
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f'    label={_quote(layer)}; style="rounded,dashed"; color="#999999";')
        lines.extend(members)
        lines.append("  }")
    lines.extend(line[2:] for line in loose)
    for node, data in graph.nodes(data=True):
        for slot, source in enumerate(data["inputs"]):
            shape = shape_text(graph.nodes[source]["shape"])
            lines.append(f"  {_quote(source)} -> {_quote(node)} [label={_quote(shape)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _style(data) -> str:
    if data["op"] is not None:
        return data["pass_"]
    return {"param": "param", "const": "const"}.get(data["role"], "input")


def _label(node, data, registry) -> str:
    if data["op"] is None:
        return f"{node}\\n{shape_text(data['shape'])}" if data["role"] != "const" else "1"
    return registry.op(data["op"]).dot_label(data["attrs"])


def write_graph(dot_text: str, path: Path) -> None:
    """Write .dot as is; render .svg/.png/.pdf with Graphviz.  Written atomically
    (`outputs.write_atomically`: a failure leaves no file behind)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt in ("dot", "gv"):
        write_atomically(path, lambda f: f.write(dot_text.encode()), usual_mode(), "the graph")
        return
    check_format(path)
    exe = shutil.which("dot")
    if exe is None:
        raise UsageError("rendering needs Graphviz's 'dot' program, which is not installed",
                         hint="install Graphviz (Debian: apt-get install graphviz), "
                              "or write a .dot file and render it elsewhere")
    done = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True)
    if done.returncode != 0:
        raise UsageError(f"Graphviz failed: {done.stderr.decode(errors='replace').strip()}")
    write_atomically(path, lambda f: f.write(done.stdout), usual_mode(), "the graph")


def check_format(path: Path) -> None:
    """A file name `write_graph` can write (.dot, .gv, .svg, .png, .pdf)."""
    if Path(path).suffix.lstrip(".").lower() not in ("dot", "gv", "svg", "png", "pdf"):
        raise UsageError(f"cannot write '{Path(path).name}': use a .dot, .svg, .png or "
                         ".pdf name")
