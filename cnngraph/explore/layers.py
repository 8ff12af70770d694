"""What the page says of each layer: its kind, output shape, receptive field,
parameters, connection table and graph nodes.

    layer_table(model) -> {name: {"kind", "shape", "receptive_field", "params",
                                  "connections", "graph_nodes"}}
"""
from __future__ import annotations

import numpy as np


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


def receptive_fields(model) -> dict:
    """Per layer, the input pixels one output value depends on along each spatial
    dimension ([rows, columns] in 2-D; [length] in 1-D; [depth, rows, columns] in
    3-D): found by making one input pixel NaN at a time along the lines through the
    input's middle and seeing which of them reach the layer's middle value (NaN
    passes through every product and sum, so this holds for any op).  A layer of
    units sees the whole input."""
    _, *sizes = model.input_shape
    middle = [size // 2 for size in sizes]
    dtype = np.float64
    params = {k: np.full(s, 0.5, dtype) for k, s in model.param_shapes.items()}
    probes = [tuple(middle[:axis]) + (p,) + tuple(middle[axis + 1:])
              for axis, size in enumerate(sizes) for p in range(size)]
    reached: dict = {}
    with np.errstate(all="ignore"):
        for k, pixel in enumerate(probes):
            x = np.zeros((1, *model.input_shape), dtype)
            x[(0, slice(None)) + pixel] = np.nan
            for layer, y in model.layer_outputs(params, x).items():
                if layer not in reached:
                    reached[layer] = np.zeros(len(probes), bool)
                reached[layer][k] = np.isnan(_middle(y)).any()
    ends = np.cumsum([0] + sizes)
    return {layer: [int(hit[a:b].sum()) for a, b in zip(ends[:-1], ends[1:])]
            for layer, hit in reached.items()}


def _middle(y: np.ndarray) -> np.ndarray:
    """The middle value of every map (maps) or every unit (a layer of units)."""
    if y.ndim >= 3:
        return y[(0, slice(None)) + tuple(size // 2 for size in y.shape[2:])]
    return y[0]
