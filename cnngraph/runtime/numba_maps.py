"""Per-map kernels compiled with numba: block sums, Kronecker upsampling, the bias
add and its gradient, and polynomials (an activation's slope).

Each walks the batch in parallel (prange over images, or over maps for the
bias gradient, a sum over the batch), one output element per loop iteration,
so the bits never depend on the thread count.  Transcendental functions
(exp, tanh) stay with NumPy, whose SIMD loops are 2-15x faster than numba's
scalar libm calls without Intel's SVML, and so does the product with delta,
which NumPy's loop ran 2x faster on one thread (measured while choosing).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_conv import FASTMATH

_jit = dict(fastmath=FASTMATH, cache=True, error_model="numpy")


@njit(parallel=True, **_jit)
def block_sum(x, factor):
    """down(x): the sum of each distinct factor x factor block (seed 3.2)."""
    n, c, h, w = x.shape
    ho, wo = h // factor, w // factor
    out = np.zeros((n, c, ho, wo), x.dtype)
    for m in prange(n):
        for i in range(c):
            for Y in range(ho):
                for a in range(factor):
                    row = x[m, i, Y * factor + a]
                    for X in range(wo):
                        s = out[m, i, Y, X]
                        for b in range(factor):
                            s += row[X * factor + b]
                        out[m, i, Y, X] = s
    return out


@njit(parallel=True, **_jit)
def upsample_kron(x, factor):
    """up(x) = x ⊗ 1: each pixel tiled factor times both ways."""
    n, c, h, w = x.shape
    out = np.empty((n, c, h * factor, w * factor), x.dtype)
    for m in prange(n):
        for i in range(c):
            for Y in range(h):
                src = x[m, i, Y]
                for a in range(factor):
                    dst = out[m, i, Y * factor + a]
                    for X in range(w):
                        v = src[X]
                        for b in range(factor):
                            dst[X * factor + b] = v
    return out


@njit(parallel=True, **_jit)
def add_bias(x, bias):
    """x + bias per map, for maps (N, C, ...) viewed as (N, C, pixels)."""
    n, c, p = x.shape
    out = np.empty_like(x)
    for m in prange(n):
        for i in range(c):
            b = bias[i]
            for q in range(p):
                out[m, i, q] = x[m, i, q] + b
    return out


@njit(parallel=True, **_jit)
def sum_bias(d):
    """Σ over the batch and pixels of each map, for d (N, C, pixels): per map, in
    image order."""
    n, c, p = d.shape
    out = np.zeros(c, d.dtype)
    for i in prange(c):
        s = d.dtype.type(0)
        for m in range(n):
            for q in range(p):
                s += d[m, i, q]
        out[i] = s
    return out


@njit(parallel=True, **_jit)
def cubic(x, c0, c1, c2, c3):
    """c0 + c1 x + c2 x² + c3 x³ by Horner's rule, for a flat x (an activation's slope
    as a polynomial of its output: y(1-y), a(1-y²)...)."""
    out = np.empty_like(x)
    for q in prange(x.shape[0]):
        v = x[q]
        out[q] = ((c3 * v + c2) * v + c1) * v + c0
    return out
