"""schedule: a forward-and-backward graph -> a `Plan` the executor walks.

The plan is a topological order of the nodes the requested outputs need, its
steps rewritten into fewer, cheaper ones (fuse.py), and for each step the
buffers whose last reader it is, so they are dropped as soon as they die.
Order is deterministic (ties broken by insertion order).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

import networkx as nx

from .fuse import fuse_steps
from ..core.registry import Registry


@dataclass(frozen=True)
class Step:
    node: str                  # the value it writes: a graph node, or a fused step's own
    op: str
    kernel: Callable
    inputs: tuple[str, ...]
    attrs: Mapping[str, Any]
    pass_: str = "forward"     # 'forward', 'backward' or 'curvature'
    shape: tuple = ()          # of the value written, the batch axis None
    view: bool = False         # the value is a view of inputs[0]'s buffer
    layer: str | None = None   # the model layer it belongs to
    frees: tuple[str, ...] = ()  # buffers dead after this step


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    sources: tuple[str, ...]       # values fed from outside, in graph order
    outputs: tuple[str, ...]
    source_frees: tuple[str, ...]  # fed values no step reads
    constants: Mapping[str, float]  # const sources and their values


def schedule(graph: nx.DiGraph, registry: Registry, outputs, fuse: bool = True) -> Plan:
    """Order the nodes the outputs need, fuse steps (unless ``fuse`` is False, as
    for diagnosis node by node) and mark where each buffer dies."""
    outputs = tuple(dict.fromkeys(outputs))
    needed = set(outputs).union(*(nx.ancestors(graph, o) for o in outputs))
    index = {n: i for i, n in enumerate(graph)}
    order = [n for n in nx.lexicographical_topological_sort(graph, key=index.get) if n in needed]
    steps, sources = [], []
    for node in order:
        data = graph.nodes[node]
        if data["op"] is None:
            sources.append(node)
        else:
            rule = registry.op(data["op"])
            steps.append(Step(node, data["op"], rule.forward, data["inputs"], data["attrs"],
                              data["pass_"], data["shape"], "view" in rule.traits,
                              data.get("layer")))
    if fuse:
        steps = fuse_steps(steps, graph, registry, outputs)
    last_read = {}
    for position, step in enumerate(steps):
        for value in step.inputs:
            last_read[value] = position
    dies_at = {}
    for value, position in last_read.items():
        if value not in outputs:
            dies_at.setdefault(position, []).append(value)
    steps = [replace(step, frees=tuple(dies_at.get(position, ())))
             for position, step in enumerate(steps)]
    unread = tuple(s for s in sources if s not in last_read and s not in outputs)
    constants = {s: graph.nodes[s]["value"] for s in sources if graph.nodes[s]["role"] == "const"}
    return Plan(tuple(steps), tuple(s for s in sources if s not in constants), outputs, unread,
                constants)
