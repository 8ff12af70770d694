"""How one value of a layer is made, step by step, for the explorer page.

    explain_map(model, params, x, layer, map_index, pixel=None) -> dict
    explain_delta(model, params, x, t, layer, map_index, pixel=None) -> dict
    gradient_checks(model, params, x, t) -> {param: {"rel_error", "ok", "checked"}}

explain_map follows one output value of feature map j (or unit j) of a layer
back through the layer's own ops in the forward graph (conv → add_bias → f;
subsample → β → b → f; matmul → b → f; a learned combination's α), each op
saying how its value is made (its rule's ``explain``, rules/explain_support.py),
with the values of one unfused forward pass of the image.  explain_delta does
the same for the layer's δ = dE/du (u: the activation's input, or the layer's
output when it has none) in the derived backward graph, down to the δ of the
next layers: β·up(δ) ∘ f'(u) before a subsampling layer (seed 3.1.1), the full
convolution of δ with the kernel before a conv layer (seed 3.2.1).

Both return {"layer", "map", "pixel": [r, c] ([] for units; default: the largest
|value|), "steps": [{"op", "node", "text", "inputs": [{"name", "map", "values",
...}], "weights", "partial", "result"}], "value"}, steps in the order they are
computed; a conv op gives one step per connected input map (its receptive field,
kernel and partial correlation; the `LISTED_MAPS` largest), then their sum.
Values moved by layout ops (reshape, concat, slices) give no step: the input
names where they come from.
"""
from __future__ import annotations

import hashlib
import weakref

import networkx as nx
import numpy as np

from ..compiler.backward import derive_backward
from ..compiler.program import make_plan
from ..core.errors import ParameterError, UsageError, close_names
from ..runtime.execute import run_plan
from ..training.vitals import layer_activations
from .check_model import _check_tensor, _downstream_plan, _forward_values, _loss_function

#: Input maps a step-by-step view shows one by one, the largest partial sums (C5 of
#: LeNet-5 reads 16 maps, the δ of S4 gathers 120); the others are summed.
LISTED_MAPS = 8

#: Per model: its unfused plans, and the values of the last image explained.
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def explain_map(model, params, x, layer: str, map_index: int, pixel=None) -> dict:
    """The step-by-step computation of map (or unit) ``map_index`` of ``layer``
    for one image ``x`` (1, maps, H, W), at ``pixel``."""
    node = _layer_node(model, layer)
    values = _values(model, "forward", params, x)
    graph = model.graph
    names = {n: name for name, n in model.layer_nodes.items()}

    def inside(n):
        data = graph.nodes[n]
        return data["op"] is not None and data.get("layer") == layer

    def origin(n):
        return names.get(n, n)
    return _explained(model, graph, values, node, layer, map_index, pixel, inside, origin)


def explain_delta(model, params, x, t, layer: str, map_index: int, pixel=None) -> dict:
    """The same for the layer's δ = dE/du, from the derived backward graph's values,
    down to the δ of the layers it feeds."""
    _layer_node(model, layer)
    derived, _ = _backward(model)
    values = _values(model, "backward", params, x, t)
    graph = derived.graph
    deltas = {derived.results[pre_activation(model, name)]: name
              for name in _layers(model)}
    start = derived.results[pre_activation(model, layer)]
    names = {n: name for name, n in model.layer_nodes.items()}

    def inside(n):
        data = graph.nodes[n]
        return data["op"] is not None and data["pass_"] == "backward" and \
            (n == start or n not in deltas)

    def origin(n):
        return f"δ {deltas[n]}" if n in deltas else names.get(n, n)
    return _explained(model, graph, values, start, layer, map_index, pixel, inside, origin)


def gradient_checks(model, params, x, t, sample: int = 8, directions: int = 2,
                    seed: int = 0) -> dict:
    """Per parameter, the relative error of its gradient against finite differences
    in float64 (tools/check_model.py's estimate, its step chosen per tensor) on
    ``sample`` random coordinates and ``directions`` random directions."""
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
    model.check_params(params, x.dtype)
    _, grads, _ = model.loss_and_grads(params, x, t)
    values = _forward_values(model, params, x, t)
    rng, select_rng = np.random.default_rng(seed), np.random.default_rng([seed, 44])
    checks = {}
    for name, info in model.param_info.items():
        loss_at = _loss_function(_downstream_plan(model, name), values, name, model.roles.loss)
        check = _check_tensor(name, values[name], grads[name], loss_at, rng, sample,
                              directions, None, info.trainable, select_rng)
        checks[name] = {"rel_error": check.error, "ok": check.ok,
                        "checked": check.checked + check.directions}
    return checks


def pre_activation(model, layer: str) -> str:
    """The node holding ``layer``'s u: its activation's input, or its output when it
    has none."""
    node = model.layer_nodes[layer]
    if layer_activations(model)[layer] is not None:
        return model.graph.nodes[node]["inputs"][0]
    return node


# the walk -------------------------------------------------------------------------------

def _explained(model, graph, values, node, layer, map_index, pixel, inside, origin) -> dict:
    y = values[node]
    index = _index(y, layer, map_index, pixel)
    steps = _Walk(model.registry, graph, values, inside, origin).steps(node, index)
    return {"layer": layer, "map": int(map_index), "pixel": list(index[2:]), "steps": steps,
            "value": float(y[index])}


class _Walk:
    """Steps that make one value: each in-scope op's explanation, after the steps
    of the in-scope values it reads one element of (layout ops folded in)."""

    def __init__(self, registry, graph, values, inside, origin):
        self.registry, self.graph, self.values = registry, graph, values
        self.inside, self.origin = inside, origin
        self.out, self.seen = [], set()

    def steps(self, node, index) -> list:
        self._visit(node, index)
        return self.out

    def _explain(self, node, index):
        data = self.graph.nodes[node]
        rule = self.registry.op(data["op"])
        if rule.explain is None:
            return None
        inputs = [self.values[i] for i in data["inputs"]]
        return rule.explain(inputs, data["attrs"], tuple(int(i) for i in index))

    def _visit(self, node, index):
        index = tuple(int(i) for i in index)
        data = self.graph.nodes[node]
        explained = self._explain(node, index)
        if explained is None:
            self.out.append(self._opaque(node, index))
            return
        slots = self.registry.op(data["op"]).slots
        for part in explained["parts"]:   # the values first, then what makes the weights
            if "slot" in part:
                part["from"] = self._source(data["inputs"][slots.index(part["slot"])],
                                            part["index"], _single(part.get("values")))
        for part in explained["parts"]:
            if "weight_slot" in part:
                part["weights_from"] = self._source(
                    data["inputs"][slots.index(part["weight_slot"])], part["weight_index"],
                    _single(part["weights"]), once=True)
        self.out.extend(_steps(data["op"], node, explained))

    def _source(self, node, index, single, once=False) -> dict:
        """Where ``node[index]`` comes from; an in-scope op making it (not a layout
        op) gets its own steps first, when the part reads that one element."""
        index = self._clipped(node, index)
        while self.inside(node):
            explained = self._explain(node, index)
            if explained is None or explained["combine"] != "copy":
                break
            part = explained["parts"][0]
            node = self.graph.nodes[node]["inputs"][
                self.registry.op(self.graph.nodes[node]["op"]).slots.index(part["slot"])]
            index = part["index"]
        if self.inside(node):
            if single and not (once and node in self.seen):
                self.seen.add(node)
                self._visit(node, index)
            return _where(self.graph.nodes[node]["op"], node, index)
        if self.graph.nodes[node]["role"] == "param":
            return {"name": node, "index": [int(i) for i in index]}
        return _where(self.origin(node), node, index)

    def _clipped(self, node, index):
        shape = np.shape(self.values[node])
        return [min(max(int(i), 0), s - 1) for i, s in zip(index, shape)]

    def _opaque(self, node, index) -> dict:
        """An op without explain: its inputs (at the same index, where shapes match)
        and its value."""
        data = self.graph.nodes[node]
        value = self.values[node]
        inputs = [{**_where(self.origin(i) if not self.inside(i) else i, i, index),
                   "values": float(self.values[i][index])}
                  for i in data["inputs"] if np.shape(self.values[i]) == np.shape(value)]
        return {"op": data["op"], "node": node, "text": self.registry.op(data["op"]).doc,
                "inputs": inputs, "result": float(value[index])}


def _where(name, node, index) -> dict:
    found = {"name": name}
    if len(index) == 4:
        found.update(map=int(index[1]), pixel=[int(index[2]), int(index[3])])
    elif len(index) == 2:
        found["unit"] = int(index[1])
    return found


def _single(values) -> bool:
    return values is None or np.size(values) == 1


def _input(part) -> dict:
    source = part.get("from", {"name": part["label"]})
    return {**source, "values": part.get("values", part["partial"])}


def _steps(op, node, explained) -> list:
    """One step per part for parts with patches (a convolution's input maps), then
    their sum; else one step for the op."""
    parts, value = explained["parts"], explained["value"]
    step = {"op": op, "node": node, "text": explained["text"]}
    if any(not _single(p.get("values")) or not _single(p.get("weights")) for p in parts) \
            and len(parts) > 1:
        largest = set(sorted(range(len(parts)), key=lambda k: -abs(parts[k]["partial"]))
                      [:LISTED_MAPS])
        shown = [p for k, p in enumerate(parts) if k in largest]
        steps = [{**step, "text": p["label"], "inputs": [_input(p)],
                  **_weights(p), "partial": p["partial"], "result": p["partial"]}
                 for p in shown]
        partials = [p["partial"] for p in shown]
        if len(shown) < len(parts):
            step["text"] += (f"; the {len(shown)} largest of {len(parts)} shown, the other "
                             f"{len(parts) - len(shown)} summed last")
            partials.append(sum(p["partial"] for k, p in enumerate(parts) if k not in largest))
        return steps + [{**step, "inputs": [], "partial": partials, "result": value}]
    if len(parts) == 1 and not _single(parts[0].get("values")):
        step["text"] = f"{parts[0]['label']}: {step['text']}"
    weights = {}
    if any("weights" in p for p in parts):
        weights = {"weights": [p.get("weights") for p in parts],
                   "weights_from": [p.get("weights_from") for p in parts]}
    partials = [p["partial"] for p in parts]
    return [{**step, "inputs": [_input(p) for p in parts], **weights,
             "partial": partials[0] if len(partials) == 1 else partials, "result": value}]


def _weights(part) -> dict:
    if "weights" not in part:
        return {}
    return {"weights": part["weights"], "weights_from": part.get("weights_from")}


# values ---------------------------------------------------------------------------------

def _values(model, direction, params, x, t=None) -> dict:
    """Every value of one unfused walk of the forward graph (or the derived backward
    graph) on one image, with what it was fed; kept for the next call on the same
    parameters and image."""
    x = np.asarray(x)
    if x.ndim != len(model.input_shape) + 1 or x.shape[0] != 1 \
            or tuple(x.shape[1:]) != tuple(model.input_shape):
        raise ParameterError(f"input has shape {tuple(x.shape)}; explaining reads one image "
                             f"(1, {', '.join(map(str, model.input_shape))})", where="input")
    model.check_params(params, x.dtype)
    cache = _CACHE.setdefault(model, {})
    key = (direction, _digest(params, x, t))
    if cache.get(direction, (None,))[0] != key:
        plan = _backward(model)[1] if direction == "backward" else _forward_plan(model)
        feeds = model.feeds(params, x, None if t is None else np.asarray(t, x.dtype))
        constants = {k: np.asarray(v, x.dtype) for k, v in plan.constants.items()}
        cache[direction] = (key, {**feeds, **constants, **run_plan(plan, feeds, x.dtype)})
    return cache[direction][1]


def _forward_plan(model):
    cache = _CACHE.setdefault(model, {})
    if "forward plan" not in cache:
        graph, prediction = model.graph, model.roles.prediction
        needed = nx.ancestors(graph, prediction) | {prediction}
        wanted = [n for n in graph if n in needed and graph.nodes[n]["op"] is not None]
        cache["forward plan"] = make_plan(graph, wanted, model.registry, model.backend,
                                          fuse=False)
    return cache["forward plan"]


def _backward(model):
    """The derived backward graph giving δ = dE/du of every layer, and its unfused plan
    computing every value in it."""
    cache = _CACHE.setdefault(model, {})
    if "backward plan" not in cache:
        wrt = list(dict.fromkeys(pre_activation(model, name) for name in _layers(model)))
        derived = derive_backward(model.graph, model.registry, model.roles.loss, wrt)
        graph = derived.graph
        wanted = [n for n in graph if graph.nodes[n]["op"] is not None]
        cache["backward plan"] = derived, make_plan(graph, wanted, model.registry,
                                                    model.backend, fuse=False)
    return cache["backward plan"]


def _layers(model) -> list[str]:
    """The layers the loss depends on (the input's too), but the loss layer."""
    graph, loss = model.graph, model.roles.data_loss
    above = nx.ancestors(graph, loss)
    return [name for name, node in model.layer_nodes.items() if node in above]


def _digest(params, x, t) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(params):
        h.update(name.encode())
        h.update(np.ascontiguousarray(params[name]).tobytes())
    for a in (x, t):
        if a is not None:
            a = np.ascontiguousarray(a)
            h.update(repr((a.dtype.str, a.shape)).encode())
            h.update(a.tobytes())
    return h.digest()


def _layer_node(model, layer: str) -> str:
    if layer not in model.layer_nodes or layer not in _layers(model):
        known = _layers(model)
        raise UsageError(f"no layer '{layer}' to explain", where=model.file,
                         hint=close_names(layer, known) or "layers: " + ", ".join(known))
    return model.layer_nodes[layer]


def _index(y, layer, map_index, pixel) -> tuple:
    """(0, j, *pixel) or (0, j): the value explained (a pixel has one index per spatial
    dimension: (r, c) in 2-D); pixel None: the map's largest |value|."""
    if not 0 <= int(map_index) < y.shape[1]:
        raise UsageError(f"layer '{layer}' has {y.shape[1]} maps; map {map_index} is out of "
                         f"range (0 to {y.shape[1] - 1})")
    plane = y[0, int(map_index)]
    if plane.ndim == 0:
        return (0, int(map_index))
    if pixel is None:
        pixel = np.unravel_index(int(np.argmax(np.abs(plane))), plane.shape)
    if len(pixel) != plane.ndim or not all(0 <= int(p) < s for p, s in zip(pixel, plane.shape)):
        raise UsageError(f"pixel {list(pixel)} is outside layer '{layer}''s "
                         f"{'x'.join(map(str, plane.shape))} maps")
    return (0, int(map_index), *(int(p) for p in pixel))
