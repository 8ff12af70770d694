"""The built-in optimizer rules: SGD with momentum and weight decay, and LeCun's
stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, Appendix C;
"Efficient BackProp" 9.1).

Each parameter's step is rate · g, or for SDLM rate · g / (mu + h) with h the
diagonal Gauss-Newton estimate from the derived curvature pass, re-estimated
on ``samples`` patterns before each epoch; rate is the global learning rate
times the layer's lr_scale (seed 4.2).  Updates are pure: new arrays, the old
ones untouched.
"""
from __future__ import annotations

import numpy as np

from ..core.registry import OptimizerRule, Registry
from ..language.options import integer, number


def _descend(params, grads, state, rates, args):
    """w -= rate · (g + weight_decay · w) [/ (mu + h)], through a velocity when momentum > 0."""
    momentum, decay = args.get("momentum", 0.0), args.get("weight_decay", 0.0)
    curvature = state.get("curvature")
    new_params, new_state = dict(params), {slot: dict(v) for slot, v in state.items()}
    for name, g in grads.items():
        w = params[name]
        if decay:
            g = g + decay * w
        if curvature is not None:
            g = g / (args.get("mu", 0.02) + curvature[name])
        if momentum:
            v = state["velocity"][name] * momentum
            v -= rates[name] * g
            new_state["velocity"][name] = v
            new_params[name] = w + v
        else:  # in w's dtype, as an in-place update would store it
            new_params[name] = (w - rates[name] * g).astype(w.dtype, copy=False)
    return new_params, new_state


def _velocity(params, args):
    return {"velocity": {n: np.zeros_like(w) for n, w in params.items()}} \
        if args.get("momentum", 0.0) else {}


SGD = OptimizerRule(
    "sgd", {"momentum": number(0, 1), "weight_decay": number(0)},
    state=_velocity, update=_descend,
    slots=lambda args: ("velocity",) if args.get("momentum", 0.0) else (),
    doc="w -= lr · (g + weight_decay · w), with momentum through a velocity")

SDLM = OptimizerRule(
    "sdlm", {"mu": number(0, low_open=True), "samples": integer(1),
             "momentum": number(0, 1), "weight_decay": number(0)},
    state=_velocity, update=_descend,
    slots=lambda args: ("curvature",) + (("velocity",) if args.get("momentum", 0.0) else ()),
    curvature=True, doc="w -= lr · g / (mu + h), h the diagonal Gauss-Newton estimate")


def register_builtin_optimizers(registry: Registry) -> Registry:
    for rule in (SGD, SDLM):
        registry.add_optimizer(rule)
    return registry
