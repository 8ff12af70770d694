"""Where the page draws a graph's nodes and edges: Graphviz's ``dot -Tjson`` when
the program is installed, else a layered layout of our own; both give the same form.

    layout_graph(model.graph, model.registry)
    -> {"width", "height", "nodes": [{"id", "label", "op", "layer", "pass", "shape",
        "role", "x", "y", "w", "h"}], "edges": [{"from", "to", "points": [[x, y], ...]}],
        "clusters": [{"layer", "x", "y", "w", "h"}], "engine": "dot" | "layered"}

Coordinates are pixels, origin top-left; a node's (x, y) is its centre.  Nodes are
grouped by layer (Graphviz clusters), labelled as ``cnngraph dot`` labels them.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import networkx as nx

from .encode import round_sig

#: Graphviz works in points (1/72 inch); the page in CSS pixels (1/96 inch).
PX = 96 / 72
#: The fallback's box sizes and gaps, in pixels.
CHAR_W, BOX_H, GAP_X, GAP_Y = 7, 34, 24, 46


def layout_graph(graph: nx.DiGraph, registry) -> dict:
    """The graph laid out (see the module's docstring)."""
    nodes = [_node(node, data, registry) for node, data in graph.nodes(data=True)]
    edges = [(source, node) for node, data in graph.nodes(data=True)
             for source in dict.fromkeys(data["inputs"])]
    exe = shutil.which("dot")
    placed = _dot_layout(exe, nodes, edges) if exe else None
    return round_sig(placed or _layered_layout(graph, nodes, edges))


def _node(node, data, registry) -> dict:
    if data["op"] is not None:
        label = registry.op(data["op"]).dot_label(data["attrs"])
    else:
        label = "1" if data["role"] == "const" else node
    return {"id": node, "label": label, "op": data["op"], "layer": data.get("layer"),
            "pass": data["pass_"], "shape": [None if d is None else int(d) for d in data["shape"]],
            "role": data["role"]}


def _quote(text) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot_text(nodes, edges) -> str:
    """DOT for the layout: boxes sized by their labels, one cluster per layer, no
    edge labels (the page draws shapes on the nodes)."""
    lines = ["digraph G {", "  graph [rankdir=TB, newrank=true, nodesep=0.25, ranksep=0.35];",
             '  node [shape=box, fontname="Helvetica", fontsize=10, height=0.3, '
             'margin="0.08,0.04"];']
    clusters: dict = {}
    for i, node in enumerate(nodes):
        line = f"n{i} [label={_quote(node['label'])}];"
        clusters.setdefault(node["layer"], []).append(line)
    for k, (layer, members) in enumerate(clusters.items()):
        if layer is None:
            lines += ["  " + m for m in members]
            continue
        lines.append(f"  subgraph cluster_{k} {{ label={_quote(layer)}; fontsize=10; "
                     + " ".join(members) + " }")
    index = {node["id"]: i for i, node in enumerate(nodes)}
    lines += [f"  n{index[a]} -> n{index[b]};" for a, b in edges]
    return "\n".join(lines + ["}"]) + "\n"


def _dot_layout(exe, nodes, edges) -> dict | None:
    """Graphviz's layout, or None when it fails (then the layered one is used)."""
    try:
        done = subprocess.run([exe, "-Tjson"], input=dot_text(nodes, edges).encode(),
                              capture_output=True, timeout=120)
        found = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if not found:
        return None
    _, _, width, height = (float(v) for v in found["bb"].split(","))
    flip = lambda x, y: [x * PX, (height - y) * PX]  # noqa: E731  (origin bottom-left)
    placed, clusters, names = [], [], {}
    for obj in found.get("objects", []):
        if "nodes" in obj or "pos" not in obj:
            if "bb" in obj and obj.get("label"):
                x0, y0, x1, y1 = (float(v) for v in obj["bb"].split(","))
                left, top = flip(x0, y1)
                clusters.append({"layer": obj["label"], "x": left, "y": top,
                                 "w": (x1 - x0) * PX, "h": (y1 - y0) * PX})
            continue
        node = nodes[int(obj["name"][1:])]
        x, y = flip(*(float(v) for v in obj["pos"].split(",")))
        names[obj["_gvid"]] = node["id"]
        placed.append({**node, "x": x, "y": y, "w": float(obj["width"]) * 72 * PX,
                       "h": float(obj["height"]) * 72 * PX})
    drawn = [{"from": names[e["tail"]], "to": names[e["head"]], "points": _spline(e["pos"], flip)}
             for e in found.get("edges", [])]
    return {"width": width * PX, "height": height * PX, "nodes": placed, "edges": drawn,
            "clusters": clusters, "engine": "dot"}


def _spline(pos: str, flip) -> list:
    """Graphviz's edge "pos" (``e,x,y`` arrow end, then the B-spline's control points)
    as points from tail to head, the arrow's tip last."""
    end, points = None, []
    for part in pos.split():
        fields = part.split(",")
        if fields[0] == "e":
            end = flip(float(fields[1]), float(fields[2]))
        elif fields[0] != "s":
            points.append(flip(float(fields[0]), float(fields[1])))
    return points + ([end] if end else [])


def _layered_layout(graph, nodes, edges) -> dict:
    """Nodes in rows by topological generation, each row centred; edges straight
    from the bottom of the source to the top of the target."""
    by_id = {node["id"]: node for node in nodes}
    rows = [sorted(row, key=list(graph).index) for row in nx.topological_generations(graph)]
    sizes = {n: (max(60, CHAR_W * len(by_id[n]["label"]) + 16), BOX_H) for n in by_id}
    width = max(sum(sizes[n][0] for n in row) + GAP_X * (len(row) + 1) for row in rows)
    placed = {}
    for r, row in enumerate(rows):
        x = (width - sum(sizes[n][0] for n in row) - GAP_X * (len(row) - 1)) / 2
        for n in row:
            w, h = sizes[n]
            placed[n] = {**by_id[n], "x": x + w / 2, "y": GAP_Y + r * (BOX_H + GAP_Y) + h / 2,
                         "w": w, "h": h}
            x += w + GAP_X
    drawn = [{"from": a, "to": b, "points": [[placed[a]["x"], placed[a]["y"] + BOX_H / 2],
                                             [placed[b]["x"], placed[b]["y"] - BOX_H / 2]]}
             for a, b in edges]
    return {"width": width, "height": GAP_Y + len(rows) * (BOX_H + GAP_Y),
            "nodes": [placed[node["id"]] for node in nodes], "edges": drawn,
            "clusters": [], "engine": "layered"}
