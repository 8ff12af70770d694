"""The graph evaluation runs: the forward graph with each op that behaves otherwise
outside training swapped for its evaluation form.

A lowering marks such a node with ``evaluation``, the name of the op that takes
its place on the same inputs (batch norm's ``norm_batch``, which normalises with
the batch's statistics, becomes ``norm_running``, which reads the running ones
riding along as its other inputs).  Training, ``check`` and the derived
backward pass keep the forward graph; prediction, ``eval``, the explorer's maps
and ``export`` use this one.  A graph without such nodes is returned as it is.
"""
from __future__ import annotations

import networkx as nx


def evaluation_graph(graph: nx.DiGraph) -> nx.DiGraph:
    """``graph`` with every node marked ``evaluation`` running that op instead."""
    marked = [n for n, data in graph.nodes(data=True) if data.get("evaluation")]
    if not marked:
        return graph
    out = graph.copy()
    for node in marked:
        out.nodes[node]["attrs"] = dict(out.nodes[node]["attrs"])
        out.nodes[node]["op"] = out.nodes[node].pop("evaluation")
    return out
