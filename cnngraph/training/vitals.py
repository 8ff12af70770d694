"""Vital signs of learning, per layer: how its activations spread and whether they
sit at the activation's bounds, how large its gradient is and how far a step
moved its parameters.  TensorBoard logs and the explorer page both show them.

    vitals = layer_vitals(model, event.params_before, event.params, event.grads, event.x)
    vitals["C1"]["saturated"], vitals["C1"]["update_ratio"]

Saturation (seed 2.1): a squashing unit near its bound has a derivative near 0,
so little delta passes back through it; a rectifier at 0 passes none (dead).
"""
from __future__ import annotations

import math

import numpy as np

from ..rules.activations import activation_choices

#: A value within this fraction of a bound's scale (tanh's a, sigmoid's 1) of the
#: bound is saturated.
NEAR_BOUND = 0.01
#: Rectifier-like activations by op name: a value at or below 0 is on the flat side
#: (a ReLU's output there is exactly 0; a leaky one's is its small negative slope).
RECTIFIERS = ("relu", "leaky_relu")


def activation_vitals(y: np.ndarray, activation: str | None, attrs: dict | None = None
                      ) -> dict:
    """{"activation_mean", "activation_std", "saturated", "dead"} of a layer's output
    ``y`` after ``activation`` (an op name, None for identity) with its attributes.

    saturated: the fraction of values within 1 % of a bound: |y| >= 0.99·|a| for
    a·tanh(b·u); y <= 0.01 or y >= 0.99 for the sigmoid (its gain steepens it but
    keeps its range, 0 to 1); None for other activations.  dead: the fraction at or below 0 after a
    rectifier (`RECTIFIERS`), None for others."""
    y = np.asarray(y)
    attrs = attrs or {}
    saturated = dead = None
    if activation == "tanh":
        bound = abs(float(attrs.get("a", 1.0)))
        saturated = _fraction(np.abs(y) >= bound * (1 - NEAR_BOUND))
    elif activation == "sigmoid":
        saturated = _fraction((y <= NEAR_BOUND) | (y >= 1 - NEAR_BOUND))
    elif activation in RECTIFIERS:
        dead = _fraction(y <= 0)
    return {"activation_mean": float(np.mean(y, dtype=np.float64)),
            "activation_std": float(np.std(y, dtype=np.float64)),
            "saturated": saturated, "dead": dead}


def _fraction(mask: np.ndarray) -> float:
    return float(np.count_nonzero(mask)) / max(1, mask.size)


def update_ratio(before: np.ndarray, after: np.ndarray) -> float:
    """||after - before|| / ||before|| (Frobenius norms; inf when before is 0 and the
    step moved it, 0 when neither moved)."""
    return _ratio(_norm(np.asarray(after, np.float64) - before), _norm(before))


def _ratio(step: float, size: float) -> float:
    return step / size if size > 0 else (math.inf if step > 0 else 0.0)


def _norm(a) -> float:
    a = np.asarray(a)
    return math.sqrt(float(np.sum(np.square(a, dtype=np.float64))))


def layer_activations(model) -> dict[str, tuple[str, dict] | None]:
    """Layer name -> (activation op, its attributes) when the node holding the layer's
    output is an activation op (`rules.activations`), else None."""
    ops = {choice.value[0] for choice in activation_choices(model.registry).values()
           if choice.value is not None}
    found = {}
    for layer, node in model.layer_nodes.items():
        data = model.graph.nodes[node]
        found[layer] = (data["op"], data["attrs"]) if data["op"] in ops else None
    return found


def layer_vitals(model, params_before: dict, params_after: dict, grads: dict, x,
                 outputs: dict | None = None) -> dict:
    """{layer: {activation_mean, activation_std, saturated, dead, grad_norm,
    update_ratio}} for one step on the batch ``x``: the activations of the forward
    pass the step made (``params_before``; one extra pass, `Model.layer_outputs`,
    unless its ``outputs`` are given), the norm of the layer's parameter gradients
    and of its parameters' update over their norm before (None for a layer without
    parameters).  Nothing given is changed."""
    if outputs is None:
        outputs = model.layer_outputs(params_before, x)
    owned = {}
    for name in model.param_info:
        owned.setdefault(model.graph.nodes[name]["layer"], []).append(name)
    activations = layer_activations(model)
    vitals = {}
    for layer, y in outputs.items():
        if layer == model.roles.input:
            continue
        op, attrs = activations.get(layer) or (None, None)
        entry = activation_vitals(y, op, attrs)
        names = owned.get(layer, [])
        entry["grad_norm"] = math.sqrt(sum(_norm(grads[p]) ** 2 for p in names)) \
            if names else None
        entry["update_ratio"] = _layer_update(names, params_before, params_after)
        vitals[layer] = entry
    return vitals


def _layer_update(names, before, after) -> float | None:
    """The update ratio of a layer's parameters taken together."""
    if not names:
        return None
    return _ratio(math.sqrt(sum(_norm(np.asarray(after[p], np.float64) - before[p]) ** 2
                                for p in names)),
                  math.sqrt(sum(_norm(before[p]) ** 2 for p in names)))
