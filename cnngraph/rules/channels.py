"""Per-map ops: additive bias b_j and multiplicative coefficient beta_j (seed 3.2).

A per-map vector (C,) acts on axis 1 of (N, C) vectors or (N, C, H, W) maps.
"""
from __future__ import annotations

import math

import numpy as np

from ..core.graph import ShapeError
from ..core.registry import Example, OpRule
from ..runtime.numerics import per_map
from .explain_support import element, explained, part
from .onnx_support import per_map as per_map_onnx

LINEAR = frozenset({"multilinear"})


def _same_with_vector(x, v):
    if len(v) != 1 or v[0] != x[1]:
        raise ShapeError(f"per-map vector of shape {v} does not match {x[1]} maps")
    return x


def add_bias_reference(x, bias):
    return x + per_map(bias, x.ndim)


def add_bias_gradient(emit, node, delta):
    return delta, emit.emit("sum_bias", (delta,))


def add_bias_onnx(graph, x, bias):
    return graph.op("Add", [x, per_map_onnx(graph, bias, len(graph.shape(x)))])


def scale_maps_reference(x, beta):
    return x * per_map(beta, x.ndim)


def scale_maps_gradient(emit, node, delta):
    x, beta = node.inputs
    return (emit.emit("scale_maps", (delta, beta)),
            emit.emit("sum_bias", (emit.emit("mul", (delta, x)),)))


def scale_maps_onnx(graph, x, beta):
    return graph.op("Mul", [x, per_map_onnx(graph, beta, len(graph.shape(x)))])


def _per_map_explain(text, combine, name):
    def explain(inputs, attrs, index):
        x, v = inputs
        j = index[1]
        return explained(text, combine, [part("x", element(x, index), "x", index),
                                         part(f"{name}_{j}", element(v, (j,)), name, (j,))])
    return explain


def sum_bias_reference(d):
    return d.reshape(d.shape[0], d.shape[1], -1).sum(axis=(0, 2))


def expand_bias_reference(b, like):
    return np.ones_like(like) * per_map(b, like.ndim)


#: The examples' map sizes by rank (2-D: as before 1-D and 3-D existed).
SIZES = {1: (5,), 2: (4, 4), 3: (2, 3, 2)}


def _example_bias(rng, rank=2):
    return Example((rng.normal(size=(2, 3, *SIZES[rank])), rng.normal(size=(3,))))


def _example_sum(rng, rank=2):
    return Example((rng.normal(size=(2, 3, *SIZES[rank])),))


def _example_expand(rng, rank=2):
    return Example((rng.normal(size=(3,)), rng.normal(size=(2, 3, *SIZES[rank]))))


RULES = (
    OpRule("add_bias", ("x", "bias"), _same_with_vector, add_bias_gradient, _example_bias,
           reference=add_bias_reference, lowering=add_bias_onnx,
           label=lambda a: "+ bias", traits=LINEAR,
           explain=_per_map_explain("u = x + b_j: the map's additive bias", "sum", "bias"),
           doc="u = x + b_j (seed eq. 2); dE/db = sum of delta (eq. 3)"),
    OpRule("scale_maps", ("x", "beta"), _same_with_vector, scale_maps_gradient, _example_bias,
           reference=scale_maps_reference, lowering=scale_maps_onnx,
           label=lambda a: "× beta", traits=LINEAR, macs=lambda x, beta: math.prod(x[1:]),
           explain=_per_map_explain("β_j · x: the map's multiplicative coefficient (seed 3.2)",
                                    "product", "beta"),
           doc="beta_j · x_j; dE/dbeta_j = sum delta ∘ d (seed 3.2.1)"),
    OpRule("sum_bias", ("delta",), lambda d: (d[1],),
           lambda emit, node, delta: (emit.emit("expand_bias", (delta, node.inputs[0])),),
           _example_sum, reference=sum_bias_reference,
           label=lambda a: "Σ per map", traits=LINEAR,
           doc="sum over batch and pixels, one value per map"),
    OpRule("expand_bias", ("bias", "like"), lambda b, like: _same_with_vector(like, b),
           lambda emit, node, delta: (emit.emit("sum_bias", (delta,)), None),
           _example_expand, reference=expand_bias_reference, label=lambda a: "expand per map",
           traits=LINEAR | {"shape_only"}, shape_slots=("like",),
           doc="tile a per-map vector to the shape of 'like'"),
)
