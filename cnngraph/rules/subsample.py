"""Subsampling ops (seed 3.2) and their upsampling adjoints, by reshaping."""
from __future__ import annotations

import math

from ..core.graph import ShapeError
from ..core.registry import Example, OpRule

LINEAR = frozenset({"multilinear"})


def _down_shape(x, *, factor):
    n, c, h, w = x
    if h % factor or w % factor:
        raise ShapeError(f"factor {factor} does not divide the map {h}x{w}")
    return (n, c, h // factor, w // factor)


def _up_shape(x, *, factor):
    n, c, h, w = x
    return (n, c, h * factor, w * factor)


def _example_down(rng):
    return Example((rng.normal(size=(2, 3, 6, 4)),), {"factor": 2})


def _example_up(rng):
    return Example((rng.normal(size=(2, 3, 3, 2)),), {"factor": 2})


def _by(op):
    return lambda emit, node, delta: (emit.emit(op, (delta,), **node.attrs),)


def _label(name):
    return lambda attrs: f"{name} {attrs['factor']}x{attrs['factor']}"


RULES = (
    OpRule("subsample_sum", ("x",), _down_shape,
           _by("upsample_kron"), _example_down, label=_label("subsample_sum"), traits=LINEAR,
           macs=lambda x, *, factor: math.prod(x[1:]),  # each value added once into its block
           doc="down(x): sum over distinct factor x factor blocks (seed 3.2)"),
    OpRule("upsample_kron", ("x",), _up_shape,
           _by("subsample_sum"), _example_up, label=_label("upsample_kron"), traits=LINEAR,
           doc="up(x) = x ⊗ 1_{n×n} (seed 3.1.1)"),
    OpRule("subsample_decimate", ("x",), _down_shape,
           _by("upsample_scatter"), _example_down, label=_label("subsample_decimate"),
           traits=LINEAR | {"view"}, doc="keep every factor-th sample both ways (seed 3.2)"),
    OpRule("upsample_scatter", ("x",), _up_shape,
           _by("subsample_decimate"), _example_up, label=_label("upsample_scatter"),
           traits=LINEAR, doc="scatter delta back to the kept positions, zeros elsewhere"),
)
