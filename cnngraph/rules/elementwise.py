"""Elementwise ops: activations f(u) (seed 2.1), and the arithmetic their rules emit.

An activation's derivative is a polynomial in its *output* y (sigmoid:
gain·y(1−y); a·tanh(b·u): a·b − (b/a)·y²), so its gradient rule emits
delta ∘ poly(y) and derivatives of every order stay inside this module.
"""
from __future__ import annotations

import numpy as np

from ..core.graph import ShapeError, shapes_equal
from ..core.registry import Example, OpRule

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


def poly_forward(x, *, coeffs):
    """sum_k coeffs[k] x^k by Horner's rule, in place after the first product."""
    if len(coeffs) == 1:
        return np.full_like(x, coeffs[0])
    y = x * x.dtype.type(coeffs[-1])
    for k, c in enumerate(reversed(coeffs[:-1])):
        if c:
            y += x.dtype.type(c)
        if k < len(coeffs) - 2:
            y *= x
    return y


def derivative_coeffs(coeffs):
    return tuple(k * c for k, c in enumerate(coeffs))[1:] or (0.0,)


def _through_slope(emit, delta, slope):
    return (emit.emit("mul", (delta, slope)),)


def _through_slope_squared(emit, h, slope):
    """Gauss-Newton recursion through y = f(u): h_u = h_y · f'(u)² (f'' dropped)."""
    return (emit.emit("mul", (h, emit.emit("mul", (slope, slope)))),)


def _poly_slope(emit, node):
    return emit.emit("poly", node.inputs, coeffs=derivative_coeffs(node.attrs["coeffs"]))


def activation_rule(name, forward, slope_in_output, doc, example=_unary, check=None,
                    in_place=None):
    """An activation whose slope f'(u) is the polynomial ``slope_in_output(attrs)`` of y.
    ``check(**attrs)`` may raise ShapeError for attribute values the op cannot take;
    ``in_place(u, **attrs)`` computes it into u's buffer (see `OpRule.in_place`)."""

    def shape(u, **attrs):
        if check:
            check(**attrs)
        return u

    def slope(emit, node):
        return emit.emit("poly", (node.id,), coeffs=slope_in_output(**node.attrs))

    return OpRule(
        name, ("u",), shape, forward,
        lambda emit, node, delta: _through_slope(emit, delta, slope(emit, node)), example,
        curvature=lambda emit, node, h: _through_slope_squared(emit, h, slope(emit, node)),
        label=lambda attrs: name + "".join(f" {k}={v:.4g}" for k, v in attrs.items()),
        traits=ELEMENTWISE, in_place=in_place, doc=doc)


def _sigmoid(u, *, gain=1.0):
    """1/(1+exp(-gain·u))."""
    return _logistic_of_negated(u * u.dtype.type(-gain))


def _sigmoid_in_place(u, *, gain=1.0):
    np.multiply(u, u.dtype.type(-gain), out=u)
    return _logistic_of_negated(u)


def _logistic_of_negated(v):
    """1/(1+exp(v)) in v's buffer: NumPy's exp is SIMD in float32, which makes these
    passes 2x faster than scipy's expit there (equal in float64).  exp overflows
    to inf where the result is 0, which 1/(1+inf) gives exactly."""
    with np.errstate(over="ignore"):
        np.exp(v, out=v)
    v += 1
    return np.reciprocal(v, out=v)


def _check_tanh(a=1.0, b=1.0):
    if a == 0:
        raise ShapeError("tanh needs a nonzero amplitude a (its slope is a·b − (b/a)·y²)")


def _tanh(u, *, a=1.0, b=1.0):
    return _tanh_in_place(u * u.dtype.type(b), a=a, b=1.0)


def _tanh_in_place(u, *, a=1.0, b=1.0):
    if b != 1.0:
        u *= u.dtype.type(b)
    np.tanh(u, out=u)
    u *= u.dtype.type(a)
    return u


def _scale_gradient(emit, node, delta):
    return (emit.emit("scale", (delta,), **node.attrs),)


RULES = (
    activation_rule("sigmoid", _sigmoid, lambda gain=1.0: (0.0, gain, -gain),
                    "logistic 1/(1+exp(-gain·u)) (seed 2.1)", in_place=_sigmoid_in_place),
    activation_rule("tanh", _tanh, lambda a=1.0, b=1.0: (a * b, 0.0, -b / a),
                    "a·tanh(b·u); LeCun's a=1.7159, b=2/3 (seed 2.1)", check=_check_tanh,
                    in_place=_tanh_in_place),
    OpRule("poly", ("x",), lambda x, *, coeffs: x, poly_forward,
           lambda emit, node, delta: _through_slope(emit, delta, _poly_slope(emit, node)),
           lambda rng: Example((rng.normal(size=(2, 3, 4)),), {"coeffs": (0.5, -1.0, 0.25, 2.0)}),
           curvature=lambda emit, node, h: _through_slope_squared(emit, h, _poly_slope(emit, node)),
           label=lambda a: "poly " + " ".join(f"{c:+.3g}x^{k}" for k, c in enumerate(a["coeffs"])),
           traits=ELEMENTWISE, doc="sum_k coeffs[k] x^k (activation slopes)"),
    OpRule("mul", ("a", "b"), _same, np.multiply,
           lambda emit, node, delta: (emit.emit("mul", (delta, node.inputs[1])),
                                      emit.emit("mul", (delta, node.inputs[0]))),
           _binary, label=lambda a: "∘", traits=LINEAR_ELEMENTWISE | {"product"},
           doc="elementwise product"),
    OpRule("add", ("a", "b"), _same, np.add,
           lambda emit, node, delta: (delta, delta),
           _binary, label=lambda a: "+", traits=LINEAR_ELEMENTWISE | {"sum"},
           doc="sum; the backward pass sums fan-out gradients with it"),
    OpRule("scale", ("x",), lambda x, *, c: x, lambda x, *, c: x * np.asarray(c, x.dtype),
           _scale_gradient, lambda rng: Example((rng.normal(size=(2, 3, 4)),), {"c": 0.25}),
           curvature=lambda emit, node, h: (emit.emit("scale", (h,), c=node.attrs["c"] ** 2),),
           label=lambda a: f"× {a['c']:.4g}", traits=LINEAR_ELEMENTWISE,
           doc="multiply by a fixed constant (e.g. a fixed beta)"),
)
