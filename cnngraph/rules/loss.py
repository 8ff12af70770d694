"""Losses (seed 4.3), averaged over the batch (DeepLearnToolbox's convention).

squared_error: E = (1/N) Σ_n ½‖t_n − y_n‖² (eq. 1); dE/dy = (y − t)/N.
softmax_cross_entropy: E = −(1/N) Σ_n Σ_k t_nk log softmax(y_n)_k with one-hot
t; dE/dy = (softmax(y) − t)/N.
Their curvature rules start the SDLM recursion: 1/N on y for squared error, and
p(1 − p)/N on the logits for cross-entropy (LeCun et al. 1998, Appendix C).
The *_grad and *_curvature ops are backward-only: a second derivative of them
is never needed, since curvature has its own rules.
"""
from __future__ import annotations

import numpy as np

from ..core.graph import ShapeError, shapes_equal
from ..core.registry import Example, NotDifferentiable, OpRule
from ..runtime.numerics import log_softmax, softmax

BACKWARD_ONLY = NotDifferentiable("backward-only op: curvature uses its own rules, "
                                  "not second derivatives")


def _loss_shape(y, t):
    if len(y) != 2 or not shapes_equal(y, t):
        raise ShapeError(f"outputs {y} and targets {t} must be equal (batch, units) shapes")
    return ()


def _grad_shape(y, t, delta):
    return y


def _example(rng):
    t = np.eye(4)[rng.integers(0, 4, size=3)]
    return Example((rng.normal(size=(3, 4)), t))


def _example_backward(rng):
    y, t = _example(rng).inputs
    return Example((y, t, np.asarray(0.7)))


def _loss_rule(name, reference, doc):
    """A loss E(y, t) whose gradient and curvature are the ops {name}_grad and
    {name}_curvature, each reading (y, t) and the incoming delta or h."""
    return OpRule(
        name, ("y", "t"), _loss_shape,
        lambda emit, node, delta: (emit.emit(f"{name}_grad", node.inputs + (delta,)), None),
        _example,
        curvature=lambda emit, node, h: (emit.emit(f"{name}_curvature", node.inputs + (h,)),
                                         None),
        reference=reference, traits=frozenset({"loss"}), doc=doc)


def _backward_rule(name, reference, doc):
    return OpRule(name, ("y", "t", "delta"), _grad_shape, BACKWARD_ONLY, _example_backward,
                  curvature=BACKWARD_ONLY, reference=reference, doc=doc)


def _cross_entropy_curvature(y, t, h):
    p = softmax(y)
    return h * p * (1 - p) / len(y)


RULES = (
    _loss_rule("squared_error", lambda y, t: ((t - y) ** 2).sum() / 2 / len(y),
               "(1/N) Σ ½‖t − y‖² (seed eq. 1)"),
    _loss_rule("softmax_cross_entropy", lambda y, t: -(t * log_softmax(y)).sum() / len(y),
               "−(1/N) Σ t log softmax(y) (seed 4.3)"),
    _backward_rule("squared_error_grad", lambda y, t, delta: delta * (y - t) / len(y),
                   "delta · (y − t)/N"),
    _backward_rule("softmax_cross_entropy_grad",
                   lambda y, t, delta: delta * (softmax(y) - t) / len(y),
                   "delta · (softmax(y) − t)/N"),
    _backward_rule("squared_error_curvature", lambda y, t, h: h / len(y) + np.zeros_like(y),
                   "h/N on every output"),
    _backward_rule("softmax_cross_entropy_curvature", _cross_entropy_curvature,
                   "h · p(1 − p)/N on the logits"),
)
