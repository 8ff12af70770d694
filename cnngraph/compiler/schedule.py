"""schedule: a graph and the values wanted -> the steps of a `Plan`, and the
passes after it that bind kernels and mark lifetimes.

`schedule` orders the nodes the requested outputs need (a topological order,
ties broken by insertion order, so it is deterministic); `bind_kernels` gives
each step its kernel from a backend, failing up front for an op the backend
lacks; `mark_lifetimes` records after each step the buffers whose last reader
it was, so the executor drops them as soon as they die.  compiler/fuse.py runs
between the last two.
"""
from __future__ import annotations

from dataclasses import replace

import networkx as nx

from ..core.backend import Backend
from ..core.plan import Plan, Step
from ..core.registry import Registry


def schedule(graph: nx.DiGraph, registry: Registry, outputs) -> Plan:
    """The steps computing ``outputs``, in order, not yet bound to kernels."""
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
            steps.append(Step(node, data["op"], None, data["inputs"], data["attrs"],
                              data["pass_"], data["shape"], "view" in rule.traits,
                              data.get("layer")))
    constants = {s: graph.nodes[s]["value"] for s in sources if graph.nodes[s]["role"] == "const"}
    return Plan(tuple(steps), tuple(s for s in sources if s not in constants), outputs, (),
                constants)


def bind_kernels(plan: Plan, backend: Backend) -> Plan:
    """Each step gets its op's kernel from ``backend``; a missing one is an error
    naming the op and the backend, before anything runs."""
    steps = tuple(replace(step, kernel=backend.kernel(step.op)) for step in plan.steps)
    return replace(plan, steps=steps, backend=backend.name)


def mark_lifetimes(plan: Plan) -> Plan:
    """Record after each step the buffers it was the last to read (outputs live on),
    and the fed values that no step reads."""
    last_read = {}
    for position, step in enumerate(plan.steps):
        for value in step.inputs:
            last_read[value] = position
    dies_at = {}
    for value, position in last_read.items():
        if value not in plan.outputs:
            dies_at.setdefault(position, []).append(value)
    steps = tuple(replace(step, frees=tuple(dies_at.get(position, ())))
                  for position, step in enumerate(plan.steps))
    unread = tuple(s for s in plan.sources if s not in last_read and s not in plan.outputs)
    return replace(plan, steps=steps, source_frees=unread)
