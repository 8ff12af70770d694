"""summarize: one row per layer: output shape, parameters, multiply-adds per image.

``summary --json`` prints one object: ``model``, ``total_params``, ``total_macs``
and ``layers``, one entry per layer (the input first) with ``name``, ``kind``,
``output`` (the shape without the batch axis), ``params`` (name -> shape),
``param_count`` (trainable entries: a masked kernel's connected taps only) and
``macs`` (forward multiply-adds per image) and ``receptive_field`` (the input
pixels one of its values depends on, per spatial dimension: `tools/receptive.py`;
a layer of units sees the whole input).  A layer that convolves its input
maps (a ``conv_valid`` op) also has ``connections``: for each output map, in
order, the sorted list of the input maps it reads, the same rows a ``table``
block writes (``[[0, 1, 2], [1, 2, 3], ...]`` for LeNet-5's C3).  The input maps
of a layer with several sources are numbered across the stacked sources.  For
``connect=learned(...)`` every output map reads every input map (with learned
weights alpha, all positive), so each row lists them all.
"""
from __future__ import annotations

from dataclasses import dataclass

from .dot import shape_text
from .receptive import receptive_fields


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output: tuple
    params: list          # [(name, shape)]
    param_count: int
    macs: int             # multiply-adds per image, forward
    connections: list | None = None  # per output map, the input maps it reads (conv)
    receptive_field: tuple = ()      # input pixels one value reads, per spatial dimension


def summarize(model) -> list[LayerRow]:
    """Rows in layer order.  Parameters count trainable entries (a masked
    kernel's connected taps); multiply-adds come from each op rule's ``macs``."""
    graph, source, info = model.graph, model.roles.input, model.param_info
    fields = receptive_fields(model)
    rows = [LayerRow(source, "input", graph.nodes[source]["shape"], [], 0, 0,
                     receptive_field=tuple(fields.get(source, ())))]
    for layer in model.spec.layers:
        members = [n for n, d in graph.nodes(data=True) if d.get("layer") == layer.name]
        params = [(n, graph.nodes[n]["shape"]) for n in members if n in info]
        macs = sum(op_macs(graph.nodes[n], graph, model.registry)
                   for n in members if graph.nodes[n]["op"])
        output = graph.nodes[model.layer_nodes[layer.name]]["shape"]
        rows.append(LayerRow(layer.name, layer.kind, output, params,
                             sum(info[n].size for n, _ in params), macs,
                             _connections(model, layer.name, members),
                             tuple(fields.get(layer.name, ()))))
    return rows


def _connections(model, layer, members):
    """Per output map, the input maps it reads, as the layer's rule recorded them
    (conv layers: their connection mask; a learned combination mixes every input map
    into every output map); None for a layer without connections."""
    return model.annotations.get(layer, {}).get("connections")


def op_macs(data, graph, registry) -> int:
    rule = registry.op(data["op"])
    if rule.macs is None:
        return 0
    return int(rule.macs(*[graph.nodes[i]["shape"] for i in data["inputs"]], **data["attrs"]))


def format_summary(model, rows) -> str:
    header = (f"{'layer':<10} {'kind':<10} {'output':<14} {'receptive':<10} {'parameters':>11} "
              f"{'mult-adds':>12}")
    lines = [header, "-" * len(header)]
    for r in rows:
        field = "x".join(map(str, r.receptive_field)) or "-"
        lines.append(f"{r.name:<10} {r.kind:<10} {shape_text(r.output[1:]):<14} {field:<10} "
                     f"{r.param_count:>11,} {r.macs:>12,}")
        for name, shape in r.params:
            lines.append(f"{'':<10}   {name:<22} {shape_text(shape)}")
    lines.append("-" * len(header))
    lines.append(f"{'total':<47} {sum(r.param_count for r in rows):>11,} "
                 f"{sum(r.macs for r in rows):>12,}")
    return "\n".join(lines)


def summary_json(model, rows) -> dict:
    return {"model": model.file,
            "layers": [{"name": r.name, "kind": r.kind, "output": list(r.output[1:]),
                        "params": {n: list(s) for n, s in r.params},
                        "param_count": r.param_count, "macs": r.macs,
                        "receptive_field": list(r.receptive_field),
                        **({} if r.connections is None else {"connections": r.connections})}
                       for r in rows],
            "total_params": sum(r.param_count for r in rows),
            "total_macs": sum(r.macs for r in rows)}
