"""Per-map ops: additive bias b_j and multiplicative coefficient beta_j (seed 3.2).

A per-map vector (C,) acts on axis 1 of (N, C) vectors or (N, C, H, W) maps.
"""
from __future__ import annotations

import math

from ..core.graph import ShapeError
from ..core.registry import Example, OpRule

LINEAR = frozenset({"multilinear"})


def _same_with_vector(x, v):
    if len(v) != 1 or v[0] != x[1]:
        raise ShapeError(f"per-map vector of shape {v} does not match {x[1]} maps")
    return x


def add_bias_gradient(emit, node, delta):
    return delta, emit.emit("sum_bias", (delta,))


def scale_maps_gradient(emit, node, delta):
    x, beta = node.inputs
    return (emit.emit("scale_maps", (delta, beta)),
            emit.emit("sum_bias", (emit.emit("mul", (delta, x)),)))


def _example_bias(rng):
    return Example((rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(3,))))


RULES = (
    OpRule("add_bias", ("x", "bias"), _same_with_vector,
           add_bias_gradient, _example_bias, label=lambda a: "+ bias", traits=LINEAR,
           doc="u = x + b_j (seed eq. 2); dE/db = sum of delta (eq. 3)"),
    OpRule("scale_maps", ("x", "beta"), _same_with_vector,
           scale_maps_gradient, _example_bias, label=lambda a: "× beta", traits=LINEAR,
           macs=lambda x, beta: math.prod(x[1:]),
           doc="beta_j · x_j; dE/dbeta_j = sum delta ∘ d (seed 3.2.1)"),
    OpRule("sum_bias", ("delta",), lambda d: (d[1],),
           lambda emit, node, delta: (emit.emit("expand_bias", (delta, node.inputs[0])),),
           lambda rng: Example((rng.normal(size=(2, 3, 4, 4)),)), label=lambda a: "Σ per map",
           traits=LINEAR, doc="sum over batch and pixels, one value per map"),
    OpRule("expand_bias", ("bias", "like"), lambda b, like: _same_with_vector(like, b),
           lambda emit, node, delta: (emit.emit("sum_bias", (delta,)), None),
           lambda rng: Example((rng.normal(size=(3,)), rng.normal(size=(2, 3, 4, 4)))),
           label=lambda a: "expand per map", traits=LINEAR | {"shape_only"},
           shape_slots=("like",), doc="tile a per-map vector to the shape of 'like'"),
)
