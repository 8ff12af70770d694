"""A cnngraph plugin: the rectifier max(0, u), as an activation.

Its gradient uses the escape hatch `add_vjp_op`: a NumPy function computing
delta ∘ [u > 0], which becomes its own backward node (relu_vjp_u) in the graph.
Its kernel also declares an in-place form, so the plan fuses it after the bias
add it reads (add_bias+relu), as it does the built-in activations, without
any change to the fusion pass.  ``relu`` is the op's reference (what every
backend runs), and ``lowering`` says how ``export`` writes it.

    python -m cnngraph check-ops --ops examples/relu.py
    ... activation=relu   in a model, run with --ops examples/relu.py
"""
import numpy as np

from cnngraph import Example
from cnngraph.core.vjp import add_vjp_op


def relu(u):
    return np.maximum(u, 0)


def relu_in_place(u):
    return np.maximum(u, 0, out=u)


def relu_vjp(u, delta):
    return (delta * (u > 0),)


def relu_curvature(u, h):
    return (h * (u > 0),)   # f'(u)² = f'(u) for a 0/1 slope


def relu_onnx(graph, u):
    """How ``export`` writes the op: ONNX's Relu."""
    return graph.op("Relu", [u])


def example(rng):
    u = rng.normal(size=(2, 3, 4))
    return Example((np.where(np.abs(u) < 0.05, 0.1, u),))  # keep away from the kink


def register(registry):
    add_vjp_op(registry, "relu", ("u",), lambda u: u, relu, relu_vjp, example,
               curvature_vjp=relu_curvature, in_place=relu_in_place, lowering=relu_onnx,
               traits=frozenset({"elementwise"}), label=lambda a: "relu", doc="max(0, u)")
