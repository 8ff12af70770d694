"""A cnngraph plugin: the clipped rectifier relu6 = min(max(0, u), 6), as an activation.

The plain rectifier is built in (``activation=relu``, with leaky_relu, elu and
gelu: cnngraph/rules/elementwise.py, whose rules emit their slope as an op).
This plugin writes its clipped cousin (Krizhevsky 2010; MobileNet's units)
with the escape hatch `add_vjp_op` instead: a NumPy function computing
delta ∘ [0 < u < 6], which becomes its own backward node (relu6_vjp_u) in the
graph.  At the kinks the slope is 0 (u = 0 and u = 6 pass no delta), and the
example keeps away from them.  Its kernel also declares an in-place form, so
the plan fuses it after the bias add it reads (add_bias+relu6), as it does the
built-in activations, without any change to the fusion pass.  ``relu6`` is the
op's reference (what every backend runs), and ``lowering`` says how ``export``
writes it.

    python -m cnngraph check-ops --ops examples/relu.py
    ... activation=relu6   in a model, run with --ops examples/relu.py
"""
import numpy as np

from cnngraph import Example
from cnngraph.core.vjp import add_vjp_op

TOP = 6.0


def relu6(u):
    return np.clip(u, 0, TOP)


def relu6_in_place(u):
    return np.clip(u, 0, TOP, out=u)


def relu6_vjp(u, delta):
    return (delta * ((u > 0) & (u < TOP)),)


def relu6_curvature(u, h):
    return (h * ((u > 0) & (u < TOP)),)   # f'(u)² = f'(u) for a 0/1 slope


def relu6_onnx(graph, u):
    """How ``export`` writes the op: ONNX's Clip between two constants."""
    return graph.op("Clip", [u, graph.const(np.array(0.0), "low"),
                             graph.const(np.array(TOP), "high")])


def example(rng):
    u = rng.normal(scale=4.0, size=(2, 3, 4))
    near = (np.abs(u) < 0.05) | (np.abs(u - TOP) < 0.05)
    return Example((np.where(near, u + 0.1, u),))  # keep away from the kinks


def register(registry):
    add_vjp_op(registry, "relu6", ("u",), lambda u: u, relu6, relu6_vjp, example,
               curvature_vjp=relu6_curvature, in_place=relu6_in_place, lowering=relu6_onnx,
               traits=frozenset({"elementwise"}), label=lambda a: "relu6",
               doc="min(max(0, u), 6)")
