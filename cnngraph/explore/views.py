"""The views of one position: what the page shows when its slider stands at step g.

    position_view(model, at, image, explainer) -> {"step", "epoch", "lr", "vitals",
        "maps", "deltas", "kernels", "scalars", "explain", "explain_delta"}

``at`` (`At`) is the network as step g saw it: the parameters after g − 1 steps, the
step's batch, its gradients and the parameters it produced (a position taken from a
checkpoint has no step: its batch is a few test images, and it has no gradients or
update).  Maps and δ maps are those of one test image ``image`` (`Image`); δ is the
gradient of that image's loss with respect to each layer's u (its pre-activation,
seed 3.1.1).  ``explainer`` (`Explainer`) picks which maps' computations a position
holds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..runtime.numerics import softmax
from ..tools import explain
from ..tools.connections import learned_layers
from .encode import encode_kernels, encode_maps, round_sig
from .layers import map_layers
from .node_vitals import node_vitals

#: Bytes of explanation JSON (uncompressed; page.py gzips them) a position between the
#: first and the last embeds; those two explain every map and every δ map.  LeNet-5's
#: 258 maps, forward and back, are ~1.4 MB a position (C5's 120 maps each read 8 of
#: S4's maps with their kernels: 0.7 MB), ~0.27 MB once gzipped; 300 kB holds ~20 %
#: of them (every map of C1 and S2, ~14 of C5's 120): a page of 8.1 MB.
EXPLAIN_BYTES = 300_000


@dataclass(frozen=True)
class At:
    """The network at one position (see the module's docstring)."""
    step: int                  # g: steps done after this position's step
    epoch: float               # g / steps per epoch
    lr: float | None
    params: dict               # as the step saw them (after g - 1 steps)
    params_after: dict | None  # after the step; None: no step (a checkpoint)
    grads: dict | None
    x: np.ndarray              # the step's batch (a checkpoint's: some test images)
    t: np.ndarray


@dataclass(frozen=True)
class Image:
    """One test image, as the network reads it: x (1, maps, H, W) and t (1, classes)."""
    index: int
    label: int
    x: np.ndarray
    t: np.ndarray


def position_view(model, at: At, image: Image, explainer: "Explainer") -> dict:
    params = at.params
    view = {"step": at.step, "epoch": round_sig(at.epoch), "lr": round_sig(at.lr),
            "vitals": round_sig(vitals_at(model, at)),
            "maps": feature_maps(model, params, image),
            "deltas": delta_maps(model, params, image),
            "kernels": kernels(model, params),
            "scalars": round_sig(scalars(model, params))}
    view["explain"], view["explain_delta"] = explainer.explain(params, image)
    return view


def vitals_at(model, at: At) -> dict:
    """Per graph node, its vital signs on the position's batch."""
    return node_vitals(model, at.params, at.params_after, at.grads, at.x, at.t)


def feature_maps(model, params, image: Image) -> dict:
    """Each layer's output for the image, encoded (`encode.encode_maps`)."""
    outputs = model.layer_outputs(params, image.x)
    return {layer: encode_maps(outputs[layer][0]) for layer in map_layers(model)}


def delta_values(model, params, image: Image) -> dict:
    """Each layer's δ = dE/du for the image, by layer (the input's: dE/dx)."""
    nodes = {layer: explain.pre_activation(model, layer) for layer in map_layers(model)}
    _, grads, _ = model.loss_and_grads(params, image.x, image.t,
                                       wrt=list(dict.fromkeys(nodes.values())))
    return {layer: grads[node][0] for layer, node in nodes.items()}


def delta_maps(model, params, image: Image) -> dict:
    return {layer: encode_maps(delta) for layer, delta in delta_values(model, params,
                                                                         image).items()}


def kernels(model, params) -> dict:
    """Every parameter of two or more axes (kernels, weight matrices) but a learned
    combination's c, whose softmax alpha is among the scalars."""
    hidden = {notes["c"] for notes in learned_layers(model).values()}
    return {name: encode_kernels(value) for name, value in params.items()
            if value.ndim >= 2 and name not in hidden}


def scalars(model, params) -> dict:
    """beta and b (one number per map or unit) and each learned layer's alpha
    (C_out × C_in, rows summing to one), by parameter name ("C3.alpha")."""
    found = {name: value.tolist() for name, value in params.items() if value.ndim <= 1}
    for layer, notes in learned_layers(model).items():
        found[f"{layer}.alpha"] = softmax(np.asarray(params[notes["c"]], np.float64)).tolist()
    return found


class Explainer:
    """D's step-by-step computations of maps and of their δ, at each map's default
    pixel, for the positions in order: the first and the last explain every map of
    every layer (and every unit), the others as many as `EXPLAIN_BYTES` holds, one map
    of each layer and direction in turn, each layer continuing where the previous
    position stopped, so that its maps are spread evenly over the positions."""

    def __init__(self, model, count: int, budget: int = EXPLAIN_BYTES):
        self.model, self.count, self.budget, self.done = model, count, budget, 0
        layers = map_layers(model)[1:]
        self.sizes = {layer: model.graph.nodes[model.layer_nodes[layer]]["shape"][1]
                      for layer in layers}
        self.next = {(layer, d): 0 for layer in layers for d in ("forward", "backward")}
        self.cost: dict = {}  # the size of the last explanation of each (layer, direction)

    def explain(self, params, image: Image) -> tuple[dict, dict]:
        full = self.done in (0, self.count - 1)
        self.done += 1
        found: dict = {"forward": {}, "backward": {}}
        room, open_ = self.budget, {key: 0 for key in self.next}  # key -> maps taken
        start = dict(self.next)
        while open_:
            for key in list(open_):
                layer, direction = key
                if open_[key] == self.sizes[layer]:
                    del open_[key]
                    continue
                if not full and self.cost.get(key, 0) > room:  # its maps cost about alike
                    del open_[key]
                    continue
                j = (start[key] + open_[key]) % self.sizes[layer]
                made = self._one(params, image, layer, direction, j)
                self.cost[key] = size = len(json.dumps(made, separators=(",", ":")))
                if not full and size > room:
                    del open_[key]
                    continue
                found[direction].setdefault(layer, {})[str(j)] = made
                room -= size
                open_[key] += 1
                if not full:
                    self.next[key] = (j + 1) % self.sizes[layer]
        return found["forward"], found["backward"]

    def _one(self, params, image, layer, direction, j) -> dict:
        model = self.model
        return round_sig(explain.explain_map(model, params, image.x, layer, j)
                         if direction == "forward" else
                         explain.explain_delta(model, params, image.x, image.t, layer, j))
