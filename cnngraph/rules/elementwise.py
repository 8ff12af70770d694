"""Elementwise ops: activations f(u) (seed 2.1), and the arithmetic their rules emit.

A squashing activation's derivative is a polynomial in its *output* y (sigmoid:
gain·y(1−y); a·tanh(b·u): a·b − (b/a)·y²), so its gradient rule emits
delta ∘ poly(y) and derivatives of every order stay inside this module.  The
rectifiers and GELU (`MODERN`) have a slope that is no polynomial: each has a
backward-only op ``{name}_slope`` computing f'(u), from y where y tells it
(relu, leaky_relu, elu), from u for gelu; the gradient is delta ∘ slope and the
curvature h ∘ slope² as for the others.  At a kink the slope is the left one:
relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = alpha (1 at alpha = 1), in
every backend; the generated examples keep 0.05 away from 0.
"""
from __future__ import annotations

import math

import numpy as np

from ..core.graph import ShapeError, shapes_equal
from ..core.registry import REQUIRED, Example, NotDifferentiable, OpRule
from .explain_support import element, explained, part
from .onnx_support import scalar

ELEMENTWISE = frozenset({"elementwise"})
LINEAR_ELEMENTWISE = frozenset({"elementwise", "multilinear"})


def _same(a, b):
    if not shapes_equal(a, b):
        raise ShapeError(f"operands have shapes {a} and {b}")
    return a


def _unary(rng):
    return Example((rng.normal(size=(2, 3, 4)),))


def _binary(rng):
    return Example((rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))))


def derivative_coeffs(coeffs):
    return tuple(k * c for k, c in enumerate(coeffs))[1:] or (0.0,)


def _through_slope(emit, delta, slope):
    # the slope first: the product can then be computed in the slope's fresh buffer
    return (emit.emit("mul", (slope, delta)),)


def _through_slope_squared(emit, h, slope):
    """Gauss-Newton recursion through y = f(u): h_u = h_y · f'(u)² (f'' dropped)."""
    return (emit.emit("mul", (h, emit.emit("mul", (slope, slope)))),)


def _poly_slope(emit, node):
    return emit.emit("poly", node.inputs, coeffs=derivative_coeffs(node.attrs["coeffs"]))


def applied(reference, slot, text):
    """explain for a one-slot elementwise op: its input value and the op applied to it;
    ``text(attrs)`` says what the op computes."""
    def explain(inputs, attrs, index):
        u = element(inputs[0], index)
        value = reference(np.asarray(u, np.float64), **attrs)
        return explained(text(attrs), "apply", [part(slot, u, slot, index)], value)
    return explain


def _two_operands(text, combine):
    def explain(inputs, attrs, index):
        a, b = inputs
        return explained(text, combine, [part("a", element(a, index), "a", index),
                                         part("b", element(b, index), "b", index)])
    return explain


def _scale_explain(inputs, attrs, index):
    x = element(inputs[0], index)
    return explained(f"c · x with the fixed c = {attrs['c']:.4g}", "product",
                     [part("x", x, "x", index), part("c", attrs["c"])])


def activation_rule(name, defaults, slope_in_output, doc, reference, formula, lowering=None,
                    example=_unary, check=None):
    """An activation y = reference(u, **attrs) taking attributes ``defaults`` (name ->
    default) whose slope f'(u) is the polynomial ``slope_in_output(**attrs)`` of y;
    ``formula(**attrs)`` writes f(u) for the explorer.
    ``check(**attrs)`` may raise ShapeError for attribute values the op cannot take."""

    def shape(u, **attrs):
        if check:
            check(**attrs)
        return u

    def slope(emit, node):
        return emit.emit("poly", (node.id,), coeffs=slope_in_output(**node.attrs))

    return OpRule(
        name, ("u",), shape,
        lambda emit, node, delta: _through_slope(emit, delta, slope(emit, node)), example,
        curvature=lambda emit, node, h: _through_slope_squared(emit, h, slope(emit, node)),
        reference=reference, lowering=lowering,
        explain=applied(reference, "u", lambda attrs: f"x = f(u) = {formula(**attrs)}"),
        label=lambda given: name + "".join(f" {k}={v:.4g}" for k, v in given.items()),
        traits=ELEMENTWISE, attrs=defaults, doc=doc)


def sigmoid_reference(u, *, gain=1.0):
    return 1 / (1 + np.exp(-gain * u))


def sigmoid_onnx(graph, u, *, gain=1.0):
    if gain != 1.0:
        u = graph.op("Mul", [u, scalar(graph, gain, "gain")])
    return graph.op("Sigmoid", [u])


def tanh_reference(u, *, a=1.0, b=1.0):
    return a * np.tanh(b * u)


def tanh_onnx(graph, u, *, a=1.0, b=1.0):
    """a·tanh(b·u)."""
    if b != 1.0:
        u = graph.op("Mul", [u, scalar(graph, b, "b")])
    y = graph.op("Tanh", [u])
    return graph.op("Mul", [y, scalar(graph, a, "a")]) if a != 1.0 else y


def relu_reference(u):
    return np.maximum(u, 0)


def leaky_relu_reference(u, *, slope=0.01):
    return np.where(u > 0, u, slope * u)


def elu_reference(u, *, alpha=1.0):
    return np.where(u > 0, u, alpha * np.expm1(np.minimum(u, 0)))


_ERF = np.frompyfunc(math.erf, 1, 1)


def erf(x):
    """erf of each entry by the C library's (math.erf): float64-exact without scipy."""
    x = np.asarray(x)
    return np.asarray(_ERF(x), dtype=np.float64).astype(x.dtype)


def gelu_reference(u):
    """u·Φ(u), Φ the standard normal's distribution function (Hendrycks and Gimpel 2016)."""
    return u * (0.5 * (1 + erf(u / math.sqrt(2))))


def relu_slope(y):
    return (y > 0).astype(y.dtype)


def leaky_relu_slope(y, *, slope=0.01):
    return np.where(y > 0, 1.0, slope).astype(y.dtype)


def elu_slope(y, *, alpha=1.0):
    """1 where y > 0, else alpha·exp(u) = y + alpha."""
    return np.where(y > 0, 1.0, y + alpha).astype(y.dtype)


def gelu_slope(u):
    """Φ(u) + u·φ(u)."""
    return 0.5 * (1 + erf(u / math.sqrt(2))) + u * np.exp(-u * u / 2) / math.sqrt(2 * math.pi)


def _gelu_onnx(graph, u):
    """u · ½(1 + erf(u/√2)) in Erf and arithmetic: ONNX's Gelu needs opset 20."""
    e = graph.op("Erf", [graph.op("Mul", [u, scalar(graph, 1 / math.sqrt(2), "inv_sqrt2")])])
    half = graph.op("Mul", [graph.op("Add", [e, scalar(graph, 1.0, "one")]),
                            scalar(graph, 0.5, "half")])
    return graph.op("Mul", [u, half])


def _away_from_kinks(rng):
    u = rng.normal(size=(2, 3, 4))
    return np.where(np.abs(u) < 0.05, np.copysign(0.1, u), u)


def _check_nonnegative(name, what):
    def check(**attrs):
        if attrs.get(name, 0.0) < 0:
            raise ShapeError(f"{what} needs {name} >= 0, got {attrs[name]:g}")
    return check


SLOPE_ONLY = NotDifferentiable("backward-only op: an activation's slope; curvature uses "
                               "its own rules, not second derivatives")


def sloped_rule(name, defaults, reference, slope, reads_input, doc, formula, lowering,
                example_attrs=None, check=None):
    """An activation y = reference(u, **attrs) with a kink or a slope that is no
    polynomial of y, and its backward-only op ``{name}_slope``: f'(u) = slope(v, **attrs)
    of v = u where ``reads_input``, else of v = y."""
    def shape(u, **attrs):
        if check:
            check(**attrs)
        return u

    def slope_node(emit, node):
        v = node.inputs[0] if reads_input else node.id
        return emit.emit(f"{name}_slope", (v,), **node.attrs)

    def example(rng):
        return Example((_away_from_kinks(rng),), example_attrs or {})

    slot = "u" if reads_input else "y"
    return (
        OpRule(name, ("u",), shape,
               lambda emit, node, delta: _through_slope(emit, delta, slope_node(emit, node)),
               example, curvature=lambda emit, node, h: _through_slope_squared(
                   emit, h, slope_node(emit, node)),
               reference=reference, lowering=lowering,
               explain=applied(reference, "u", lambda attrs: f"x = f(u) = {formula(**attrs)}"),
               label=lambda given: name + "".join(f" {k}={v:.4g}" for k, v in given.items()),
               traits=ELEMENTWISE, attrs=defaults, doc=doc),
        OpRule(f"{name}_slope", (slot,), lambda v, **attrs: v, SLOPE_ONLY, example,
               curvature=SLOPE_ONLY, reference=slope,
               explain=applied(slope, slot, lambda attrs: f"the slope f'(u) of {name}, "
                               f"read from {'its input u' if reads_input else 'its output y'}"),
               label=lambda given: f"{name}'", attrs=defaults,
               doc=f"f'(u) of {name} from {slot} (backward only)"),
    )


MODERN = (
    *sloped_rule("relu", {}, relu_reference, relu_slope, False,
                 "max(0, u); slope 0 at u = 0 (Nair and Hinton 2010)", lambda: "max(0, u)",
                 lambda graph, u: graph.op("Relu", [u])),
    *sloped_rule("leaky_relu", {"slope": 0.01}, leaky_relu_reference, leaky_relu_slope, False,
                 "u for u > 0, slope·u otherwise; slope `slope` at 0 (Maas et al. 2013)",
                 lambda slope=0.01: f"u if u > 0 else {slope:.4g}·u",
                 lambda graph, u, slope=0.01: graph.op("LeakyRelu", [u], alpha=float(slope)),
                 {"slope": 0.2}, _check_nonnegative("slope", "leaky_relu")),
    *sloped_rule("elu", {"alpha": 1.0}, elu_reference, elu_slope, False,
                 "u for u > 0, alpha·(exp(u) − 1) otherwise; slope alpha at 0 "
                 "(Clevert et al. 2016)",
                 lambda alpha=1.0: f"u if u > 0 else {alpha:.4g}·(exp(u) − 1)",
                 lambda graph, u, alpha=1.0: graph.op("Elu", [u], alpha=float(alpha)),
                 {"alpha": 1.5}, _check_nonnegative("alpha", "elu")),
    *sloped_rule("gelu", {}, gelu_reference, gelu_slope, True,
                 "u·Φ(u), exact (erf) form (Hendrycks and Gimpel 2016)",
                 lambda: "u·½(1 + erf(u/√2))", _gelu_onnx),
)


def poly_reference(x, *, coeffs):
    return sum(c * x ** k for k, c in enumerate(coeffs)) + np.zeros_like(x)


def _check_tanh(a=1.0, b=1.0):
    if a == 0:
        raise ShapeError("tanh needs a nonzero amplitude a (its slope is a·b − (b/a)·y²)")


def _scale_gradient(emit, node, delta):
    return (emit.emit("scale", (delta,), **node.attrs),)


def _scale_onnx(graph, x, *, c):
    return graph.op("Mul", [x, scalar(graph, c, "c")])


RULES = (
    activation_rule("sigmoid", {"gain": 1.0}, lambda gain=1.0: (0.0, gain, -gain),
                    "logistic 1/(1+exp(-gain·u)) (seed 2.1)", sigmoid_reference,
                    lambda gain=1.0: f"1/(1+exp(-{gain:.4g}·u))", sigmoid_onnx),
    activation_rule("tanh", {"a": 1.0, "b": 1.0}, lambda a=1.0, b=1.0: (a * b, 0.0, -b / a),
                    "a·tanh(b·u); LeCun's a=1.7159, b=2/3 (seed 2.1)", tanh_reference,
                    lambda a=1.0, b=1.0: f"{a:.4g}·tanh({b:.4g}·u)", tanh_onnx, check=_check_tanh),
    OpRule("poly", ("x",), lambda x, *, coeffs: x,
           lambda emit, node, delta: _through_slope(emit, delta, _poly_slope(emit, node)),
           lambda rng: Example((rng.normal(size=(2, 3, 4)),), {"coeffs": (0.5, -1.0, 0.25, 2.0)}),
           curvature=lambda emit, node, h: _through_slope_squared(emit, h, _poly_slope(emit, node)),
           reference=poly_reference,
           explain=applied(poly_reference, "x", lambda attrs: (
               "an activation's slope f'(u) as a polynomial in its output, Σ_k c_k x^k = "
               + " ".join(f"{c:+.4g}x^{k}" for k, c in enumerate(attrs["coeffs"])))),
           label=lambda a: "poly " + " ".join(f"{c:+.3g}x^{k}" for k, c in enumerate(a["coeffs"])),
           traits=ELEMENTWISE, attrs={"coeffs": REQUIRED},
           doc="sum_k coeffs[k] x^k (activation slopes)"),
    OpRule("mul", ("a", "b"), _same,
           lambda emit, node, delta: (emit.emit("mul", (delta, node.inputs[1])),
                                      emit.emit("mul", (delta, node.inputs[0]))),
           _binary, reference=lambda a, b: a * b,
           explain=_two_operands("a ∘ b: the elementwise product", "product"),
           lowering=lambda graph, a, b: graph.op("Mul", [a, b]), label=lambda a: "∘",
           traits=LINEAR_ELEMENTWISE | {"product"},
           doc="elementwise product"),
    OpRule("add", ("a", "b"), _same,
           lambda emit, node, delta: (delta, delta),
           _binary, reference=lambda a, b: a + b,
           explain=_two_operands("a + b (the backward pass sums fan-out deltas so)", "sum"),
           lowering=lambda graph, a, b: graph.op("Add", [a, b]), label=lambda a: "+",
           traits=LINEAR_ELEMENTWISE | {"sum"},
           doc="sum; the backward pass sums fan-out gradients with it"),
    OpRule("scale", ("x",), lambda x, *, c: x, _scale_gradient,
           lambda rng: Example((rng.normal(size=(2, 3, 4)),), {"c": 0.25}),
           curvature=lambda emit, node, h: (emit.emit("scale", (h,), c=node.attrs["c"] ** 2),),
           reference=lambda x, *, c: c * x, lowering=_scale_onnx,
           label=lambda a: f"× {a['c']:.4g}", traits=LINEAR_ELEMENTWISE, attrs={"c": REQUIRED},
           macs=lambda x, *, c: math.prod(x[1:]), explain=_scale_explain,
           doc="multiply by a fixed constant (e.g. a fixed beta)"),
    *MODERN,
)
