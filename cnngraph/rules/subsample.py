"""Subsampling ops (seed 3.2) and their upsampling adjoints.

down(x) sums each distinct factor x factor block, up(x) = x ⊗ 1_{n×n} tiles
each value over one; decimation keeps every factor-th sample and its adjoint
scatters values back to the kept positions.  In 1, 2 or 3 dimensions: ``factor``
is one integer for every dimension (what 2-D layers emit, as before 1-D and 3-D
existed) or a tuple of one per dimension (what 1-D and 3-D layers emit).  The
references reshape; the NumPy backend adds and writes factor² strided slices
instead (numerics.py) in 2-D.
"""
from __future__ import annotations

import math

import numpy as np

from ..core.graph import ShapeError
from ..core.registry import Example, OpRule
from .explain_support import explained, floats, moved, part, zero
from .onnx_support import END, ints, scalar

LINEAR = frozenset({"multilinear"})


def factors(factor, rank: int) -> tuple:
    """The block size per dimension: ``factor`` is one integer for every dimension (the
    2-D layers' form) or a tuple of one per dimension."""
    return (factor,) * rank if np.ndim(factor) == 0 else tuple(factor)


def _x(sizes) -> str:
    return "x".join(map(str, sizes))


def _down_shape(x, *, factor):
    n, c, *size = x
    f = factors(factor, len(size))
    if len(f) != len(size) or any(m % b for m, b in zip(size, f)):
        raise ShapeError(f"factor {_x(f)} does not divide the map {_x(size)}")
    return (n, c, *(m // b for m, b in zip(size, f)))


def _up_shape(x, *, factor):
    n, c, *size = x
    f = factors(factor, len(size))
    if len(f) != len(size):
        raise ShapeError(f"a {len(f)}-D factor on {len(size)}-D maps")
    return (n, c, *(m * b for m, b in zip(size, f)))


def _every(factor, rank) -> tuple:
    """The slices keeping the first sample of each block."""
    return (slice(None), slice(None)) + tuple(slice(None, None, b)
                                              for b in factors(factor, rank))


def subsample_sum_reference(x, *, factor):
    f = factors(factor, x.ndim - 2)
    blocks = x.shape[:2] + tuple(d for m, b in zip(x.shape[2:], f) for d in (m // b, b))
    return x.reshape(blocks).sum(axis=tuple(range(3, 2 + 2 * len(f), 2)))


def upsample_kron_reference(x, *, factor):
    return np.kron(x, np.ones((1, 1) + factors(factor, x.ndim - 2), dtype=x.dtype))


def subsample_decimate_reference(x, *, factor):
    return x[_every(factor, x.ndim - 2)]


def upsample_scatter_reference(x, *, factor):
    """Each value at the first corner of its block, zeros elsewhere."""
    f = factors(factor, x.ndim - 2)
    out = np.zeros(x.shape[:2] + tuple(m * b for m, b in zip(x.shape[2:], f)), dtype=x.dtype)
    out[_every(f, x.ndim - 2)] = x
    return out


def subsample_sum_onnx(graph, x, *, factor):
    """The block sum as the block mean times the block size (exact for powers of 2)."""
    f = list(factors(factor, len(graph.shape(x)) - 2))
    mean = graph.op("AveragePool", [x], kernel_shape=f, strides=f)
    return graph.op("Mul", [mean, scalar(graph, math.prod(f), "block_size")])


def subsample_decimate_onnx(graph, x, *, factor):
    """Every factor-th sample along each dimension from the first: a Slice with steps."""
    f = list(factors(factor, len(graph.shape(x)) - 2))
    rank = len(f)
    return graph.op("Slice", [x, ints(graph, [0] * rank, "starts"),
                              ints(graph, [END] * rank, "ends"),
                              ints(graph, list(range(2, 2 + rank)), "axes"),
                              ints(graph, f, "steps")])


def _block(index, f):
    """The corner of the block output ``index`` reads, and the block's slices."""
    corner = tuple(i * b for i, b in zip(index[2:], f))
    return corner, tuple(slice(c, c + b) for c, b in zip(corner, f))


def subsample_sum_explain(inputs, attrs, index):
    (x,) = inputs
    f = factors(attrs["factor"], x.ndim - 2)
    corner, window = _block(index, f)
    block = np.asarray(x[tuple(index[:2]) + window], np.float64)
    return explained(f"down(x): the sum of a {_x(f)} block (seed 3.2)", "sum",
                     [part("block", block.sum(), "x", (*index[:2], *corner), values=block)])


def subsample_decimate_explain(inputs, attrs, index):
    (x,) = inputs
    f = factors(attrs["factor"], x.ndim - 2)
    corner, window = _block(index, f)
    kept = moved(f"keep the first sample of each {_x(f)} block (seed 3.2)", "x",
                 (*index[:2], *corner), x, "select")
    return {**kept, "block": floats(x[tuple(index[:2]) + window])}


def upsample_kron_explain(inputs, attrs, index):
    (x,) = inputs
    f = factors(attrs["factor"], x.ndim - 2)
    return moved(f"up(δ) = δ ⊗ 1: each value tiled over its {_x(f)} block (seed 3.1.1)", "x",
                 (*index[:2], *(i // b for i, b in zip(index[2:], f))), x, "select")


def upsample_scatter_explain(inputs, attrs, index):
    (x,) = inputs
    f = factors(attrs["factor"], x.ndim - 2)
    if any(i % b for i, b in zip(index[2:], f)):
        return zero("not the sample decimation kept: zero")
    return moved("the value of the sample decimation kept", "x",
                 (*index[:2], *(i // b for i, b in zip(index[2:], f))), x, "select")


#: The examples' block sizes by rank: 2-D layers' one integer, else one per dimension.
EXAMPLE_FACTORS = {1: (3,), 2: 2, 3: (2, 1, 2)}


def _example_down(rng, rank=2):
    f = factors(EXAMPLE_FACTORS[rank], rank)
    size = (6, 4) if rank == 2 else tuple(2 * b for b in f)
    return Example((rng.normal(size=(2, 3, *size)),), {"factor": EXAMPLE_FACTORS[rank]})


def _example_up(rng, rank=2):
    size = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}[rank]
    return Example((rng.normal(size=(2, 3, *size)),), {"factor": EXAMPLE_FACTORS[rank]})


def _by(op):
    return lambda emit, node, delta: (emit.emit(op, (delta,), **node.attrs),)


def _label(name):
    """'subsample_sum 2x2': an integer factor is the 2-D layers' (both dimensions)."""
    return lambda attrs: f"{name} {_x(factors(attrs['factor'], 2))}"


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
