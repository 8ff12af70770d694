"""Kernels for maps of any rank: 2-D kernels lifted to 1-D maps, and im2col in 3-D.

A 2-D kernel runs 1-D maps as maps one pixel high (`lifted`): the same sums, term
for term, as a 1-D kernel would make.  Convolutions of 3-D maps are matrix
products over im2col patch matrices of any rank (`columns`), as NumPy's 2-D ones
are (runtime/numerics.py).
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


# kernels written in 3-D run 1-D and 2-D maps with unit dimensions in front -------------

def as_3d(x: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) as a contiguous (N, C, D, H, W), missing dimensions 1 long."""
    x = np.ascontiguousarray(x)
    return x.reshape(x.shape[:2] + (1,) * (5 - x.ndim) + x.shape[2:])


def in_3d(values, fill=1) -> tuple:
    """A per-dimension tuple of a 1-D or 2-D map as its 3-D form: ``fill`` in front."""
    return (fill,) * (3 - len(values)) + tuple(values)


# 2-D kernels run 1-D maps as maps one pixel high: the same sums, term for term --------

def _lift_attr(name, value):
    """A per-dimension attribute of a 1-D op as its 2-D form with a height of 1."""
    if name == "padding":
        return (((0, 0) if isinstance(value[0], tuple) else 0),) + tuple(value)
    return (1,) + tuple(value) if name in PER_DIMENSION else value


#: the attributes that hold one entry per spatial dimension
PER_DIMENSION = frozenset({"stride", "dilation", "size", "map_size", "input_size", "padding"})


def lifted(run):
    """``run`` (a 2-D kernel) for 1-D operands: every array of 3 axes gets a height axis of
    1, every per-dimension attribute a leading 1 (padding 0), and the result loses it."""
    def kernel(*arrays, **attrs):
        arrays = [a[:, :, None] if a.ndim == 3 else a for a in arrays]
        y = run(*arrays, **{k: _lift_attr(k, v) for k, v in attrs.items()})
        return y[:, :, 0]
    return kernel


def by_rank(planar, other):
    """``planar`` (a 2-D kernel) for 2-D operands, lifted for 1-D ones, ``other`` else."""
    one = lifted(planar)

    def kernel(*arrays, **attrs):
        rank = arrays[0].ndim - 2
        return planar(*arrays, **attrs) if rank == 2 else one(*arrays, **attrs) if rank == 1 \
            else other(*arrays, **attrs)
    return kernel


# convolutions in 3-D: im2col matrices of any rank -----------------------------------

def columns(x, size):
    """im2col, transposed, in any rank: (N, C, *S) -> (C·Πk, N·Πout)."""
    rank = len(size)
    windows = sliding_window_view(x, tuple(size), axis=tuple(range(2, 2 + rank)))
    order = (1, *range(2 + rank, 2 + 2 * rank), 0, *range(2, 2 + rank))
    return np.ascontiguousarray(windows.transpose(order)).reshape(
        x.shape[1] * math.prod(size), -1)


def correlate_columns(cols, kernel, out):
    """`correlate` from x's `columns`, for output maps of size ``out``."""
    c_out = kernel.shape[0]
    y = kernel.reshape(c_out, -1) @ cols
    return np.ascontiguousarray(np.swapaxes(y.reshape(c_out, -1, *out), 0, 1))


def out_size(x_shape, size):
    """The valid correlation's output size per dimension."""
    return tuple(n - k + 1 for n, k in zip(x_shape[2:], size))


def correlate(x, kernel):
    """y[n, o] = Σ_i x[n, i] ⋆ kernel[o, i], valid: one matrix product."""
    size = kernel.shape[2:]
    return correlate_columns(columns(x, size), kernel, out_size(x.shape, size))


def kernel_columns(cols, delta, size):
    """grad_kernel[o, i] = Σ_n x[n, i] ⋆ δ[n, o] from x's `columns`."""
    c_out = delta.shape[1]
    return np.dot(np.swapaxes(delta, 0, 1).reshape(c_out, -1), cols.T).reshape(
        c_out, -1, *size)


def convolve_full(delta, kernel):
    """The full true convolution as the valid correlation of the zero-padded δ with the
    rotated kernel, its maps swapped."""
    size = kernel.shape[2:]
    padded = np.pad(delta, ((0, 0), (0, 0)) + tuple((k - 1, k - 1) for k in size))
    rotated = kernel[(slice(None), slice(None)) + (slice(None, None, -1),) * len(size)]
    return correlate(padded, np.swapaxes(rotated, 0, 1))
