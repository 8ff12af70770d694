"""The built-in optimizer rules: SGD with momentum (plain or Nesterov's) and weight
decay, LeCun's stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998,
Appendix C; "Efficient BackProp" 9.1), and Adam (Kingma & Ba 2015) with AdamW's
decoupled weight decay (Loshchilov & Hutter 2019).

Each parameter's step is rate · g, or for SDLM rate · g / (mu + h) with h the
diagonal Gauss-Newton estimate from the derived curvature pass, re-estimated
on ``samples`` patterns before each epoch, or for Adam rate · m̂ / (sqrt(v̂) + eps);
rate is the global learning rate at this step (its schedule's) times the layer's
lr_scale (seed 4.2).  Updates are pure: new arrays, the old ones untouched.  Each
optimizer is a named choice of kind 'optimizer' with typed options (`Option`:
checker, default, doc); the arguments a train block leaves out take those
defaults.
"""
from __future__ import annotations

import numpy as np

from ..core.registry import Option, OptimizerRule, Registry
from ..language.options import boolean, integer, number

MOMENTUM = Option(number(0, 1), 0.0, doc="v = momentum · v − rate · g; w += v (0: none)")
WEIGHT_DECAY = Option(number(0), 0.0, doc="adds weight_decay · w to each gradient")
ADAM = {"beta1": Option(number(0, 1), 0.9, doc="decay of the gradient's running mean m "
                                               "(below 1)"),
        "beta2": Option(number(0, 1), 0.999, doc="decay of the squared gradient's running "
                                                 "mean v (below 1)"),
        "eps": Option(number(0, low_open=True), 1e-8, doc="added to sqrt(v̂) in the step's "
                                                          "denominator")}
OPTIONS = {"sgd": {"momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY,
                   "nesterov": Option(boolean, False,
                                      doc="Nesterov's momentum: w += momentum · v − rate · g "
                                          "with the new v (needs momentum > 0)")},
           "sdlm": {"mu": Option(number(0, low_open=True), 0.02,
                                 doc="keeps the step bounded where h is small"),
                    "samples": Option(integer(1), 500,
                                      doc="patterns the curvature is estimated on per epoch"),
                    "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY},
           "adam": ADAM,
           "adamw": {**ADAM, "weight_decay": Option(number(0), 0.01,
                                                    doc="w -= rate · weight_decay · w before "
                                                        "Adam's step (decoupled)")}}


def _arg(args, name, optimizer="sdlm"):
    """An optimizer argument, or ``optimizer``'s declared default for it."""
    return args[name] if name in args else OPTIONS[optimizer][name].default


def _descend(params, grads, state, rates, args):
    """w -= rate · (g + weight_decay · w) [/ (mu + h)], through a velocity when momentum
    > 0: w += v, or with Nesterov's momentum w += momentum · v − rate · g (Sutskever et
    al. 2013's form of it, equal to PyTorch's for a constant rate)."""
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
            if args.get("nesterov"):
                new_params[name] = w + (momentum * v - rates[name] * g)
            else:
                new_params[name] = w + v
        else:  # in w's dtype, as an in-place update would store it
            new_params[name] = (w - rates[name] * g).astype(w.dtype, copy=False)
    return new_params, new_state


def _velocity(params, args):
    return {"velocity": {n: np.zeros_like(w) for n, w in params.items()}} \
        if _arg(args, "momentum") else {}


def _check_sgd(args):
    if args["nesterov"] and not args["momentum"]:
        raise ValueError("nesterov=true needs momentum > 0: Nesterov's step looks ahead "
                         "along the velocity, which momentum 0 does not keep")


SGD = OptimizerRule(
    "sgd", OPTIONS["sgd"],
    state=_velocity, update=_descend,
    slots=lambda args: ("velocity",) if _arg(args, "momentum") else (),
    check=_check_sgd,
    doc="w -= lr · (g + weight_decay · w), with momentum (plain or Nesterov's) through a "
        "velocity")

SDLM = OptimizerRule(
    "sdlm", OPTIONS["sdlm"],
    state=_velocity, update=_descend,
    slots=lambda args: ("curvature",) + (("velocity",) if _arg(args, "momentum") else ()),
    curvature=True, doc="w -= lr · g / (mu + h), h the diagonal Gauss-Newton estimate")


def _moments(params, args):
    """m and v at zero, t (the parameter's step count) at 0."""
    return {"m": {n: np.zeros_like(w) for n, w in params.items()},
            "v": {n: np.zeros_like(w) for n, w in params.items()},
            "t": {n: np.zeros((), np.int64) for n in params}}


def _adam(params, grads, state, rates, args, decay=0.0):
    """Kingma & Ba 2015, Algorithm 1, per parameter: t += 1; m = beta1 · m + (1 − beta1)
    · g; v = beta2 · v + (1 − beta2) · g²; w -= rate · m̂ / (sqrt(v̂) + eps) with
    m̂ = m / (1 − beta1^t), v̂ = v / (1 − beta2^t).  AdamW first takes rate ·
    ``decay`` · w off w (decoupled from m and v)."""
    beta1, beta2, eps = (_arg(args, k, "adam") for k in ("beta1", "beta2", "eps"))
    new_params, new_state = dict(params), {slot: dict(v) for slot, v in state.items()}
    for name, g in grads.items():
        w, rate = params[name], rates[name]
        t = state["t"][name] + 1
        m = state["m"][name] * beta1 + (1 - beta1) * g
        v = state["v"][name] * beta2 + (1 - beta2) * (g * g)
        m_hat, v_hat = m / (1 - beta1 ** int(t)), v / (1 - beta2 ** int(t))
        if decay:
            w = w - (rate * decay) * w
        new_params[name] = w - rate * m_hat / (np.sqrt(v_hat) + eps)
        new_state["m"][name], new_state["v"][name], new_state["t"][name] = m, v, t
    return new_params, new_state


def _check_adam(args):
    for name in ("beta1", "beta2"):
        if args[name] == 1:
            raise ValueError(f"{name}=1 never forgets: the bias correction 1 − {name}^t "
                             "would divide by 0; take a number below 1")


ADAM_RULE = OptimizerRule(
    "adam", OPTIONS["adam"], state=_moments, update=_adam, slots=lambda args: ("m", "v"),
    counts=("t",), check=_check_adam, doc="w -= lr · m̂ / (sqrt(v̂) + eps), m and v the bias-corrected running "
                       "means of g and g² (Kingma & Ba 2015)")

ADAMW_RULE = OptimizerRule(
    "adamw", OPTIONS["adamw"], state=_moments,
    update=lambda params, grads, state, rates, args: _adam(
        params, grads, state, rates, args, _arg(args, "weight_decay", "adamw")),
    slots=lambda args: ("m", "v"), counts=("t",), check=_check_adam,
    doc="adam with decoupled weight decay: w -= lr · weight_decay · w, then adam's step "
        "(Loshchilov & Hutter 2019)")


def register_builtin_optimizers(registry: Registry) -> Registry:
    for rule in (SGD, SDLM, ADAM_RULE, ADAMW_RULE):
        registry.add_optimizer(rule)
    return registry
