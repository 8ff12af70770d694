"""Vital signs of learning, per layer: how its activations spread and whether they
sit at the activation's bounds, how large its gradient is and how far a step
moved its parameters.  TensorBoard logs and the explorer page both show them.

    vitals = layer_vitals(model, event.params_before, event.params, event.grads, event.x)
    vitals["C1"]["saturated"], vitals["C1"]["update_ratio"]

Saturation (seed 2.1): a squashing unit near its bound has a derivative near 0,
so little delta passes back through it; a rectifier at 0 passes none (dead).
Which activations squash or rectify is found by evaluating them, never by name.
"""
from __future__ import annotations

import math

import numpy as np

from ..rules.activations import activation_choices

#: A value within this fraction of a bound's scale (tanh's a, sigmoid's 1) of the
#: bound is saturated.
NEAR_BOUND = 0.01
#: Where an activation is evaluated to find its ends: far out, farther out, and just
#: below 0 (a rectifier's flat side).
PROBE = np.array([-1e7, -1e6, -1.0, -1e-3, 1e6, 1e7])


def activation_kind(reference, attrs: dict) -> tuple | None:
    """How an activation behaves at its ends, found by evaluating its ``reference``
    (so a plugin's activation is classified as a built-in one, never by name):
    ("squashing", lo, hi) when f(±1e6) = f(±1e7), bounded both ways (tanh's ±a,
    sigmoid's 0 and 1); ("rectifier",) when f is 0 on the negatives and grows on
    the positives (ReLU); None otherwise (a leaky ReLU's units never die)."""
    with np.errstate(all="ignore"):
        f = np.asarray(reference(PROBE, **attrs), dtype=np.float64)
    if not np.isfinite(f).all():
        return None
    if f[0] == f[1] and f[4] == f[5] and f[0] != f[5]:
        return ("squashing", min(f[0], f[5]), max(f[0], f[5]))
    if not f[:4].any() and f[5] > f[4] > 0:
        return ("rectifier",)
    return None


def activation_vitals(y: np.ndarray, activation: str | None, attrs: dict | None = None,
                      registry=None) -> dict:
    """{"activation_mean", "activation_std", "saturated", "dead"} of a layer's output
    ``y`` after ``activation`` (an op name of ``registry``, None for identity) with
    its attributes.

    saturated: for a squashing activation (`activation_kind`), the fraction of values
    within 1 % of a bound, of the larger bound's size: |y| >= 0.99·|a| for
    a·tanh(b·u); y <= 0.01 or y >= 0.99 for the sigmoid, whatever its gain.  dead:
    for a rectifier, the fraction at 0.  None where the notion does not apply, or
    without ``registry``."""
    y = np.asarray(y)
    rule = registry.ops.get(activation) if registry is not None and activation else None
    kind = activation_kind(rule.reference, attrs or {}) \
        if rule is not None and rule.reference is not None else None
    saturated = dead = None
    if kind is not None and kind[0] == "squashing":
        lo, hi = kind[1:]
        near = NEAR_BOUND * max(abs(lo), abs(hi))
        saturated = _fraction((y <= lo + near) | (y >= hi - near))
    elif kind is not None:
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
        entry = activation_vitals(y, op, attrs, model.registry)
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
