"""Losses (seed 4.3), averaged over the batch (DeepLearnToolbox's convention).

squared_error: E = (1/N) Σ_n ½‖t_n − y_n‖² (eq. 1); dE/dy = (y − t)/N.
softmax_cross_entropy: E = −(1/N) Σ_n Σ_k t_nk log softmax(y_n)_k with one-hot
t; dE/dy = (softmax(y) − t)/N.  With label_smoothing=ε the targets are
t' = (1 − ε)·t + ε/K for K classes (Szegedy et al. 2016) in E and dE/dy; ε = 0,
the default, is the plain loss, computed as before.
Their curvature rules start the SDLM recursion: 1/N on y for squared error, and
p(1 − p)/N on the logits for cross-entropy (LeCun et al. 1998, Appendix C), with
or without smoothing: the Hessian is (Σ_k t'_k)(diag p − p pᵀ)/N and Σ_k t'_k = 1.
The *_grad and *_curvature ops are backward-only: a second derivative of them
is never needed, since curvature has its own rules.
"""
from __future__ import annotations

import numpy as np

from ..core.graph import ShapeError, shapes_equal
from ..core.registry import Example, NotDifferentiable, OpRule
from ..runtime.numerics import log_softmax, smoothed_targets, softmax
from .onnx_support import ints, scalar

BACKWARD_ONLY = NotDifferentiable("backward-only op: curvature uses its own rules, "
                                  "not second derivatives")


def _loss_shape(y, t, **attrs):
    if len(y) != 2 or not shapes_equal(y, t):
        raise ShapeError(f"outputs {y} and targets {t} must be equal (batch, units) shapes")
    return ()


def _grad_shape(y, t, delta, **attrs):
    return y


def _example(rng):
    t = np.eye(4)[rng.integers(0, 4, size=3)]
    return Example((rng.normal(size=(3, 4)), t))


def _example_backward(rng):
    y, t = _example(rng).inputs
    return Example((y, t, np.asarray(0.7)))


def _smoothing(example):
    """The example with label smoothing on, so the checks cover the smoothed targets."""
    def smoothed(rng):
        return Example(example(rng).inputs, {"label_smoothing": 0.1})
    return smoothed


def _loss_rule(name, reference, doc, lowering=None, attrs=None, example=_example):
    """A loss E(y, t) whose gradient and curvature are the ops {name}_grad and
    {name}_curvature, each reading (y, t) and the incoming delta or h."""
    return OpRule(
        name, ("y", "t"), _loss_shape,
        lambda emit, node, delta: (emit.emit(f"{name}_grad", node.inputs + (delta,),
                                             **node.attrs), None),
        example,
        curvature=lambda emit, node, h: (emit.emit(f"{name}_curvature", node.inputs + (h,)),
                                         None),
        reference=reference, lowering=lowering, traits=frozenset({"loss"}), attrs=attrs or {},
        doc=doc)


def _backward_rule(name, reference, doc, attrs=None, example=_example_backward):
    return OpRule(name, ("y", "t", "delta"), _grad_shape, BACKWARD_ONLY, example,
                  curvature=BACKWARD_ONLY, reference=reference, attrs=attrs or {}, doc=doc)


def _mean_over_images(graph, per_entry):
    """(1/N) Σ_n Σ_k of an (N, K) value, as a scalar."""
    per_image = graph.op("ReduceSum", [per_entry, ints(graph, [1], "units")], keepdims=0)
    return graph.op("ReduceMean", [per_image], axes=[0], keepdims=0)


def _squared_error_onnx(graph, y, t):
    error = graph.op("Sub", [t, y])
    half = graph.op("Mul", [graph.op("Mul", [error, error]), scalar(graph, 0.5, "half")])
    return _mean_over_images(graph, half)


def _cross_entropy_onnx(graph, y, t, *, label_smoothing=0.0):
    if label_smoothing:
        kept = graph.op("Mul", [t, scalar(graph, 1 - label_smoothing, "kept")])
        t = graph.op("Add", [kept, scalar(graph, label_smoothing / graph.shape(t)[1], "spread")])
    log_p = graph.op("LogSoftmax", [y], axis=1)
    return graph.op("Neg", [_mean_over_images(graph, graph.op("Mul", [t, log_p]))])


def _cross_entropy(y, t, *, label_smoothing=0.0):
    return -(smoothed_targets(t, label_smoothing) * log_softmax(y)).sum() / len(y)


def _cross_entropy_grad(y, t, delta, *, label_smoothing=0.0):
    return delta * (softmax(y) - smoothed_targets(t, label_smoothing)) / len(y)


SMOOTHING = {"label_smoothing": 0.0}


def _cross_entropy_curvature(y, t, h):
    p = softmax(y)
    return h * p * (1 - p) / len(y)


RULES = (
    _loss_rule("squared_error", lambda y, t: ((t - y) ** 2).sum() / 2 / len(y),
               "(1/N) Σ ½‖t − y‖² (seed eq. 1)", _squared_error_onnx),
    _loss_rule("softmax_cross_entropy", _cross_entropy,
               "−(1/N) Σ t' log softmax(y), t' = (1 − ε)t + ε/K for label_smoothing ε "
               "(seed 4.3)", _cross_entropy_onnx, SMOOTHING, _smoothing(_example)),
    _backward_rule("squared_error_grad", lambda y, t, delta: delta * (y - t) / len(y),
                   "delta · (y − t)/N"),
    _backward_rule("softmax_cross_entropy_grad", _cross_entropy_grad,
                   "delta · (softmax(y) − t')/N", SMOOTHING, _smoothing(_example_backward)),
    _backward_rule("squared_error_curvature", lambda y, t, h: h / len(y) + np.zeros_like(y),
                   "h/N on every output"),
    _backward_rule("softmax_cross_entropy_curvature", _cross_entropy_curvature,
                   "h · p(1 − p)/N on the logits"),
)
