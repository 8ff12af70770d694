"""Vital signs of every node of the training graph at one step, for colouring the
page's graphs: the step's batch is run through the unfused gradient plan (one step
per graph node, as diagnosis runs it), so every forward and backward value is seen.

    node_vitals(model, params_before, params_after, grads, x, t)
    -> {node id: {key: number}}

forward values: activation_mean, activation_std, and for an activation's output the
fractions saturated (tanh/sigmoid near a bound) or dead (a rectifier at 0);
backward values: grad_norm, the norm of the value (a δ or a parameter's gradient);
parameters: grad_norm of their gradient and update_ratio ‖after − before‖ / ‖before‖.
"""
from __future__ import annotations

import math

import numpy as np

from ..compiler.program import make_plan
from ..rules.activations import activation_choices
from ..runtime.execute import run_plan
from ..training.vitals import activation_vitals, update_ratio

#: The signs the page can colour by: (key, label, scale).
SIGNS = (("activation_std", "activation std", "linear"),
         ("activation_mean", "activation mean", "linear"),
         ("saturated", "saturated fraction", "linear"),
         ("dead", "dead fraction", "linear"),
         ("grad_norm", "gradient norm", "log"),
         ("update_ratio", "update ratio", "log"))


def vital_signs() -> list[dict]:
    return [dict(key=key, label=label, scale=scale) for key, label, scale in SIGNS]


def node_vitals(model, params_before, params_after, grads, x, t) -> dict:
    """Each node's signs for the step on (x, t) from ``params_before`` to
    ``params_after`` (``grads``: the step's gradients, by parameter; None: a position
    without a step, whose parameters get no update ratio)."""
    graph = model.training.graph
    plan = make_plan(graph, model.plans.gradients.outputs, model.registry, model.backend,
                     fuse=False)
    activations = activation_choices(model.registry)
    signs = {}

    def watch(step, value, env):
        data = graph.nodes[step.node]
        if data["pass_"] == "forward":
            kind = data["op"] if data["op"] in activations else None
            signs[step.node] = _activation(value, kind, data["attrs"], model.registry)
        else:
            signs[step.node] = {"grad_norm": _norm(value)}
        return False
    with np.errstate(all="ignore"):
        run_plan(plan, model.feeds(params_before, x, t), x.dtype, watch)
    signs[model.roles.input] = _activation(x, None, {}, model.registry)
    for name, before in params_before.items():
        entry = {"activation_mean": float(np.mean(before)),
                 "activation_std": float(np.std(before))}
        if grads is not None:
            entry["grad_norm"] = _norm(grads[name])
            entry["update_ratio"] = update_ratio(before, params_after[name])
        signs[name] = entry
    return signs


def _activation(value, kind, attrs, registry) -> dict:
    found = activation_vitals(np.asarray(value), kind, attrs, registry)
    return {key: found[key] for key in ("activation_mean", "activation_std", "saturated", "dead")
            if found.get(key) is not None}


def _norm(value) -> float:
    total = float(np.sum(np.square(value, dtype=np.float64)))
    return math.sqrt(total) if math.isfinite(total) else total
