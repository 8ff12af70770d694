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

BACKWARD_ONLY = NotDifferentiable("backward-only op: curvature uses its own rules, not second derivatives")


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


def _loss_rule(name, grad_op, curvature_op, doc):
    return OpRule(
        name, ("y", "t"), _loss_shape,
        lambda emit, node, delta: (emit.emit(grad_op, node.inputs + (delta,)), None), _example,
        curvature=lambda emit, node, h: (emit.emit(curvature_op, node.inputs + (h,)), None),
        traits=frozenset({"loss"}), doc=doc)


def _backward_rule(name, doc):
    return OpRule(name, ("y", "t", "delta"), _grad_shape, BACKWARD_ONLY,
                  _example_backward, curvature=BACKWARD_ONLY, doc=doc)


RULES = (
    _loss_rule("squared_error", "squared_error_grad", "squared_error_curvature",
               "(1/N) Σ ½‖t − y‖² (seed eq. 1)"),
    _loss_rule("softmax_cross_entropy", "softmax_cross_entropy_grad",
               "softmax_cross_entropy_curvature", "−(1/N) Σ t log softmax(y) (seed 4.3)"),
    _backward_rule("squared_error_grad", "delta · (y − t)/N"),
    _backward_rule("softmax_cross_entropy_grad", "delta · (softmax(y) − t)/N"),
    _backward_rule("squared_error_curvature", "h/N on every output"),
    _backward_rule("softmax_cross_entropy_curvature", "h · p(1 − p)/N on the logits"),
)
