"""The built-in optimizer rules: SGD with momentum and weight decay, and LeCun's
stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, Appendix C;
"Efficient BackProp" 9.1).

Each parameter's step is rate · g, or for SDLM rate · g / (mu + h) with h the
diagonal Gauss-Newton estimate from the derived curvature pass, re-estimated
on ``samples`` patterns before each epoch; rate is the global learning rate
times the layer's lr_scale (seed 4.2).  Updates are pure: new arrays, the old
ones untouched.  Each optimizer is a named choice of kind 'optimizer' with typed
options (`Option`: checker, default, doc); the arguments a train block leaves
out take those defaults.
"""
from __future__ import annotations

import numpy as np

from ..core.registry import Option, OptimizerRule, Registry
from ..language.options import integer, number

MOMENTUM = Option(number(0, 1), 0.0, doc="v = momentum · v − rate · g; w += v (0: none)")
WEIGHT_DECAY = Option(number(0), 0.0, doc="adds weight_decay · w to each gradient")
OPTIONS = {"sgd": {"momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY},
           "sdlm": {"mu": Option(number(0, low_open=True), 0.02,
                                 doc="keeps the step bounded where h is small"),
                    "samples": Option(integer(1), 500,
                                      doc="patterns the curvature is estimated on per epoch"),
                    "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}}


def _arg(args, name):
    """An optimizer argument, or its declared default (both optimizers declare it)."""
    return args[name] if name in args else OPTIONS["sdlm"][name].default


def _descend(params, grads, state, rates, args):
    """w -= rate · (g + weight_decay · w) [/ (mu + h)], through a velocity when momentum > 0."""
    momentum, decay = _arg(args, "momentum"), _arg(args, "weight_decay")
    curvature = state.get("curvature")
    new_params, new_state = dict(params), {slot: dict(v) for slot, v in state.items()}
    for name, g in grads.items():
        w = params[name]
        if decay:
            g = g + decay * w
        if curvature is not None:
            g = g / (_arg(args, "mu") + curvature[name])
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
        if _arg(args, "momentum") else {}


SGD = OptimizerRule(
    "sgd", OPTIONS["sgd"],
    state=_velocity, update=_descend,
    slots=lambda args: ("velocity",) if _arg(args, "momentum") else (),
    doc="w -= lr · (g + weight_decay · w), with momentum through a velocity")

SDLM = OptimizerRule(
    "sdlm", OPTIONS["sdlm"],
    state=_velocity, update=_descend,
    slots=lambda args: ("curvature",) + (("velocity",) if _arg(args, "momentum") else ()),
    curvature=True, doc="w -= lr · g / (mu + h), h the diagonal Gauss-Newton estimate")


def register_builtin_optimizers(registry: Registry) -> Registry:
    for rule in (SGD, SDLM):
        registry.add_optimizer(rule)
    return registry
