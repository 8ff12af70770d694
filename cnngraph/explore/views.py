"""The views of one position: what the page shows when its slider stands at step g.

    position_view(model, at, image) -> {"step", "epoch", "lr", "vitals", "maps",
        "deltas", "kernels", "scalars", "explain", "explain_delta"}

``at`` (`At`) is the network as step g saw it: the parameters after g − 1 steps, the
step's batch, its gradients and the parameters it produced (a position taken from a
checkpoint has no step: its batch is a few test images, and it has no gradients or
update).  Maps and δ maps are those
of one test image ``image`` (`Image`); δ is the gradient of that image's loss with
respect to each layer's u (its pre-activation, seed 3.1.1).
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

#: How many explanations a position embeds (`explanations`): the first maps of each
#: layer, at most EXPLAINED_MAPS, within EXPLAIN_BYTES of JSON a position, each at
#: most EXPLANATION_BYTES.  LeNet-5's map 0 of every layer, forward and back, is
#: ~45 kB (C5's map reads 16 receptive fields and kernels: 15 kB; S4's δ reads all
#: 120 of C5's δ with their kernels: ~97 kB, left out), ~2.4 MB over 50 positions.
EXPLAINED_MAPS = 4
EXPLAIN_BYTES = 48_000
EXPLANATION_BYTES = 16_000


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


def position_view(model, at: At, image: Image) -> dict:
    params = at.params
    view = {"step": at.step, "epoch": round_sig(at.epoch), "lr": round_sig(at.lr),
            "vitals": round_sig(vitals_at(model, at)),
            "maps": feature_maps(model, params, image),
            "deltas": delta_maps(model, params, image),
            "kernels": kernels(model, params),
            "scalars": round_sig(scalars(model, params))}
    view["explain"], view["explain_delta"] = explanations(model, params, image)
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


def explanations(model, params, image: Image) -> tuple[dict, dict]:
    """D's step-by-step computations of maps and of their δ, at each map's default
    pixel, as many as `EXPLAIN_BYTES` holds: map 0 of every layer (forward, then δ),
    then map 1, ... up to `EXPLAINED_MAPS`; one larger than `EXPLANATION_BYTES` is
    left out (its page shows the op's inputs and output instead)."""
    found: dict = {"forward": {}, "backward": {}}
    layers, room, too_large = map_layers(model)[1:], EXPLAIN_BYTES, set()
    for j in range(EXPLAINED_MAPS):
        for layer in layers:
            if j >= model.graph.nodes[model.layer_nodes[layer]]["shape"][1]:
                continue
            for direction in ("forward", "backward"):
                if (layer, direction) in too_large:  # its other maps are as large
                    continue
                made = round_sig(explain.explain_map(model, params, image.x, layer, j)
                                 if direction == "forward" else
                                 explain.explain_delta(model, params, image.x, image.t, layer, j))
                size = len(json.dumps(made))
                if size > EXPLANATION_BYTES:
                    too_large.add((layer, direction))
                elif size <= room:
                    found[direction].setdefault(layer, {})[str(j)] = made
                    room -= size
                else:
                    return found["forward"], found["backward"]
    return found["forward"], found["backward"]
