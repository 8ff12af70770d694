"""Subsampling ops (seed 3.2) and their upsampling adjoints.

down(x) sums each distinct factor x factor block, up(x) = x ⊗ 1_{n×n} tiles
each value over one; decimation keeps every factor-th sample and its adjoint
scatters values back to the kept positions.  The references reshape; the
NumPy backend adds and writes factor² strided slices instead (numerics.py).
"""
from __future__ import annotations

import math

import numpy as np

from ..core.graph import ShapeError
from ..core.registry import Example, OpRule
from .explain_support import explained, floats, moved, part, zero
from .onnx_support import END, ints, scalar

LINEAR = frozenset({"multilinear"})


def _down_shape(x, *, factor):
    n, c, h, w = x
    if h % factor or w % factor:
        raise ShapeError(f"factor {factor} does not divide the map {h}x{w}")
    return (n, c, h // factor, w // factor)


def _up_shape(x, *, factor):
    n, c, h, w = x
    return (n, c, h * factor, w * factor)


def subsample_sum_reference(x, *, factor):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // factor, factor, w // factor, factor).sum(axis=(3, 5))


def upsample_kron_reference(x, *, factor):
    return np.kron(x, np.ones((1, 1, factor, factor), dtype=x.dtype))


def subsample_decimate_reference(x, *, factor):
    return x[:, :, ::factor, ::factor]


def upsample_scatter_reference(x, *, factor):
    """Each value at the top-left of its factor x factor block, zeros elsewhere."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, h * factor, w * factor), dtype=x.dtype)
    out[:, :, ::factor, ::factor] = x
    return out


def subsample_sum_onnx(graph, x, *, factor):
    """The block sum as the block mean times factor² (exact for factors 2 and 4)."""
    mean = graph.op("AveragePool", [x], kernel_shape=[factor, factor],
                    strides=[factor, factor])
    return graph.op("Mul", [mean, scalar(graph, factor * factor, "block_size")])


def subsample_decimate_onnx(graph, x, *, factor):
    """Every factor-th row and column from the first: a Slice with steps."""
    return graph.op("Slice", [x, ints(graph, [0, 0], "starts"), ints(graph, [END, END], "ends"),
                              ints(graph, [2, 3], "axes"), ints(graph, [factor, factor], "steps")])


def subsample_sum_explain(inputs, attrs, index):
    (x,), f = inputs, attrs["factor"]
    n, j, r, c = index
    block = np.asarray(x[n, j, r * f:(r + 1) * f, c * f:(c + 1) * f], np.float64)
    return explained(f"down(x): the sum of a {f}x{f} block (seed 3.2)", "sum",
                     [part("block", block.sum(), "x", (n, j, r * f, c * f), values=block)])


def subsample_decimate_explain(inputs, attrs, index):
    (x,), f = inputs, attrs["factor"]
    n, j, r, c = index
    kept = moved(f"keep the first sample of each {f}x{f} block (seed 3.2)", "x",
                 (n, j, r * f, c * f), x, "select")
    return {**kept, "block": floats(x[n, j, r * f:(r + 1) * f, c * f:(c + 1) * f])}


def upsample_kron_explain(inputs, attrs, index):
    (x,), f = inputs, attrs["factor"]
    n, j, r, c = index
    return moved(f"up(δ) = δ ⊗ 1: each value tiled over its {f}x{f} block (seed 3.1.1)", "x",
                 (n, j, r // f, c // f), x, "select")


def upsample_scatter_explain(inputs, attrs, index):
    (x,), f = inputs, attrs["factor"]
    n, j, r, c = index
    if r % f or c % f:
        return zero("not the sample decimation kept: zero")
    return moved("the value of the sample decimation kept", "x", (n, j, r // f, c // f), x,
                 "select")


def _example_down(rng):
    return Example((rng.normal(size=(2, 3, 6, 4)),), {"factor": 2})


def _example_up(rng):
    return Example((rng.normal(size=(2, 3, 3, 2)),), {"factor": 2})


def _by(op):
    return lambda emit, node, delta: (emit.emit(op, (delta,), **node.attrs),)


def _label(name):
    return lambda attrs: f"{name} {attrs['factor']}x{attrs['factor']}"


RULES = (
    OpRule("subsample_sum", ("x",), _down_shape, _by("upsample_kron"), _example_down,
           reference=subsample_sum_reference, lowering=subsample_sum_onnx,
           label=_label("subsample_sum"), explain=subsample_sum_explain,
           traits=LINEAR,
           macs=lambda x, *, factor: math.prod(x[1:]),  # each value added once into its block
           doc="down(x): sum over distinct factor x factor blocks (seed 3.2)"),
    OpRule("upsample_kron", ("x",), _up_shape, _by("subsample_sum"), _example_up,
           reference=upsample_kron_reference, label=_label("upsample_kron"), traits=LINEAR,
           explain=upsample_kron_explain,
           doc="up(x) = x ⊗ 1_{n×n} (seed 3.1.1)"),
    OpRule("subsample_decimate", ("x",), _down_shape, _by("upsample_scatter"), _example_down,
           reference=subsample_decimate_reference, lowering=subsample_decimate_onnx,
           label=_label("subsample_decimate"), explain=subsample_decimate_explain,
           traits=LINEAR | {"view"},
           doc="keep every factor-th sample both ways (seed 3.2)"),
    OpRule("upsample_scatter", ("x",), _up_shape, _by("subsample_decimate"), _example_up,
           reference=upsample_scatter_reference, label=_label("upsample_scatter"),
           explain=upsample_scatter_explain, traits=LINEAR,
           doc="scatter delta back to the kept positions, zeros elsewhere"),
)
