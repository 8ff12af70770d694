"""What the page says of each layer: its kind, output shape, receptive field,
parameters, connection table and graph nodes.

    layer_table(model) -> {name: {"kind", "shape", "receptive_field", "params",
                                  "connections", "graph_nodes"}}
"""
from __future__ import annotations

from ..tools.receptive import receptive_fields


def map_layers(model) -> list[str]:
    """The layers whose outputs the page shows as maps, in model order: every layer
    the loss depends on, the input first, the loss layer itself left out."""
    outputs = model.layer_nodes
    shown = [model.roles.input] + [layer.name for layer in model.spec.layers]
    return [name for name in shown if name in outputs
            and outputs[name] not in (model.roles.loss, model.roles.data_loss)
            and name in _reaching_loss(model)]


def _reaching_loss(model) -> set:
    import networkx as nx
    ancestors = nx.ancestors(model.graph, model.roles.data_loss)
    return {name for name, node in model.layer_nodes.items() if node in ancestors}


def layer_table(model) -> dict:
    graph, info = model.graph, model.param_info
    kinds = {layer.name: layer.kind for layer in model.spec.layers}
    fields = receptive_fields(model)
    table = {}
    for name in map_layers(model):
        members = [n for n, d in graph.nodes(data=True) if d.get("layer") == name]
        table[name] = {"kind": kinds.get(name, "input"),
                       "shape": list(graph.nodes[model.layer_nodes[name]]["shape"][1:]),
                       "receptive_field": fields.get(name),
                       "params": [n for n in members if n in info],
                       "connections": model.annotations.get(name, {}).get("connections"),
                       "graph_nodes": members}
    return table

