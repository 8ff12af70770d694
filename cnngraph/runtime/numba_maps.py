"""Per-map kernels compiled with numba: block sums, Kronecker upsampling, the bias
add and its gradient, the per-map scale (with the fused plan's bias and float32
activation after it, a subsampling layer's epilogue), and polynomials and
rectifiers (an activation's slope).

2x2 blocks of 2-D maps (every shipped model's) have kernels of their own; other
factors and ranks run the 3-D forms, a missing dimension 1 long.  Both add each
block's values in row-major order, so they agree bit for bit, and with the seed's
general 2-D kernels that the 2x2 ones replaced (2-3x faster, and they scale to two
threads at batch 50, where those did not: measured with numba 0.68 on 2 cores).

Each walks the batch in parallel (prange over images, or over maps for the
bias gradient, a sum over the batch), one output element per loop iteration,
so the bits never depend on the thread count.  Transcendental functions
(exp, tanh) stay with NumPy, whose SIMD loops are 2-15x faster than numba's
scalar libm calls without Intel's SVML (runtime/numba_activations.py writes the
float32 sigmoid and tanh out), and so does the product with delta on one thread,
where NumPy's loop ran 1.5-2x faster (numba_values.multiply); a polynomial slope
is multiplied as it is written (`cubic_times`).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_activations import activate_block
from .numba_conv import FASTMATH
from .numba_tiles import _zmm
from .ranks import as_3d, in_3d

_jit = dict(fastmath=FASTMATH, cache=True, error_model="numpy")
_exact = dict(_jit, fastmath=False)


@njit(parallel=True, **_exact)
def block_sum_2x2(x, beta):
    """β · down(x) for 2x2 blocks: no loops over the factor, no zero fill (fastmath off:
    reassoc would reorder the four sums, contract fuse the last with the product); β
    is 1 for the plain sum, or a fixed β applied as the sums are written (bitwise the
    sum, then the `scale` op)."""
    n, c, h, w = x.shape
    ho, wo = h // 2, w // 2
    out = np.empty((n, c, ho, wo), x.dtype)
    zero = x.dtype.type(0)
    for m in prange(n):
        for i in range(c):
            for Y in range(ho):
                top, bottom, dst = x[m, i, 2 * Y], x[m, i, 2 * Y + 1], out[m, i, Y]
                for X in range(wo):
                    dst[X] = ((((zero + top[2 * X]) + top[2 * X + 1]) + bottom[2 * X]
                               ) + bottom[2 * X + 1]) * beta
    return out


@njit(parallel=True, **_jit)
def upsample_kron_2x2(x, beta):
    """up(β · x) for 2x2 blocks: each value, times β (1, or the fixed β of a `scale` op
    before it), written twice in a row, the row copied below."""
    n, c, h, w = x.shape
    out = np.empty((n, c, 2 * h, 2 * w), x.dtype)
    for m in prange(n):
        for i in range(c):
            for Y in range(h):
                src, top, bottom = x[m, i, Y], out[m, i, 2 * Y], out[m, i, 2 * Y + 1]
                for X in range(w):
                    top[2 * X] = top[2 * X + 1] = src[X] * beta
                for X in range(2 * w):
                    bottom[X] = top[X]
    return out


def block_sum_nd(x: np.ndarray, factors: tuple) -> np.ndarray:
    """down(x) for maps of 1, 2 or 3 dimensions, one factor per dimension."""
    out = _block_sum_3d(as_3d(x), *in_3d(factors))
    return out.reshape(x.shape[:2] + tuple(n // f for n, f in zip(x.shape[2:], factors)))


def upsample_kron_nd(x: np.ndarray, factors: tuple) -> np.ndarray:
    """up(x) for maps of 1, 2 or 3 dimensions, one factor per dimension."""
    out = _upsample_kron_3d(as_3d(x), *in_3d(factors))
    return out.reshape(x.shape[:2] + tuple(n * f for n, f in zip(x.shape[2:], factors)))


@njit(parallel=True, **_jit)
def _block_sum_3d(x, fd, fh, fw):
    """block_sum's sums for (N, C, D, H, W) maps and fd x fh x fw blocks, each block's
    values added in row-major order."""
    n, c, d, h, w = x.shape
    do, ho, wo = d // fd, h // fh, w // fw
    out = np.zeros((n, c, do, ho, wo), x.dtype)
    for q in prange(n * c):
        m, i = q // c, q % c
        for Z in range(do):
            for Y in range(ho):
                dst = out[m, i, Z, Y]
                for cc in range(fd):
                    for a in range(fh):
                        row = x[m, i, Z * fd + cc, Y * fh + a]
                        for X in range(wo):
                            s = dst[X]
                            for b in range(fw):
                                s += row[X * fw + b]
                            dst[X] = s
    return out


@njit(parallel=True, **_jit)
def _upsample_kron_3d(x, fd, fh, fw):
    """upsample_kron for (N, C, D, H, W) maps: each value tiled over its block."""
    n, c, d, h, w = x.shape
    out = np.empty((n, c, d * fd, h * fh, w * fw), x.dtype)
    for q in prange(n * c):
        m, i = q // c, q % c
        for Z in range(d * fd):
            for Y in range(h * fh):
                src, dst = x[m, i, Z // fd, Y // fh], out[m, i, Z, Y]
                for X in range(w):
                    v = src[X]
                    for b in range(fw):
                        dst[X * fw + b] = v
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
def scale_maps(x, beta):
    """x · beta per map, for maps (N, C, ...) viewed as (N, C, pixels): one product
    per value, NumPy's bits."""
    n, c, p = x.shape
    out = np.empty_like(x)
    for m in prange(n):
        for i in range(c):
            b = beta[i]
            for q in range(p):
                out[m, i, q] = x[m, i, q] * b
    return out


@njit(parallel=True, **_exact)
def scale_maps_epilogue(x, beta, bias, act, gain, scale):
    """x · beta + bias per map, for maps (N, C, ...) viewed as (N, C, pixels), then
    (act not 0) numba_activations' float32 activation ``act`` of ``gain`` and ``scale``:
    scale_maps, add_bias and the activation in place, bit for bit, in one pass
    (fastmath off: contract would fuse the product and the sum)."""
    n, c, p = x.shape
    out = np.empty((n, c * p), x.dtype)
    for m in prange(n):
        summed = np.empty(c * p if act else 0, x.dtype)
        dst = summed if act else out[m]
        for i in range(c):
            b, k = beta[i], bias[i]
            for q in range(p):
                dst[i * p + q] = x[m, i, q] * b + k
        if act:  # an image's maps at once: short maps (S4's 25 values) would be slow
            activate_block(summed, out[m], act, gain, scale)
    return out


@njit(parallel=True, **_jit)
def rectifier_slope(y, negative):
    """1 where y > 0, ``negative`` elsewhere (NaN included), for a flat y: relu's and
    leaky_relu's slope from their output, the values NumPy's m + (1 − m)·negative
    makes in five passes, in one."""
    out = np.empty_like(y)
    one = y.dtype.type(1)
    for q in prange(y.shape[0]):
        out[q] = one if y[q] > 0 else negative
    return out


@njit(parallel=True, **_jit)
def sum_bias(d):
    """Σ over the batch and pixels of each map, for d (N, C, pixels): per map, in
    image order.  (Summed image by image on the thread that holds the image, then the
    images' sums in order, two threads ran it 2-3 % faster a step, with other bits:
    those of every pinned resume, tests/test_checkpoint_format.py, changed.)"""
    n, c, p = d.shape
    out = np.zeros(c, d.dtype)
    for i in prange(c):
        s = d.dtype.type(0)
        for m in range(n):
            for q in range(p):
                s += d[m, i, q]
        out[i] = s
    return out


@njit(parallel=True, **_exact)
def multiply(a, b):
    """a · b value by value for (N, values) arrays, image by image: NumPy's product's
    bits, each thread its own images."""
    out = np.empty_like(a)
    for m in prange(a.shape[0]):
        x, y, z = a[m], b[m], out[m]
        for q in range(x.shape[0]):
            z[q] = x[q] * y[q]
    return out


@njit(parallel=True, **_exact)
def multiply_into(a, b):
    """a ·= b (a loop of its own: writing through a third name for a, LLVM's overlap
    check sent the loop to its scalar form, 2-3x slower)."""
    for m in prange(a.shape[0]):
        x, y = a[m], b[m]
        for q in range(x.shape[0]):
            x[q] *= y[q]


@njit(inline="always", **_jit)
def _horner(v, c0, c1, c2, c3):
    """c0 + c1 v + c2 v² + c3 v³ by Horner's rule: `cubic`'s and `cubic_times`' one
    expression, so the fused slope has the plain one's bits."""
    return ((c3 * v + c2) * v + c1) * v + c0


@njit(parallel=True, **_jit)
def cubic(x, c0, c1, c2, c3):
    """`_horner` of a flat x (an activation's slope as a polynomial of its output:
    y(1-y), a(1-y²)...)."""
    out = np.empty_like(x)
    for q in prange(x.shape[0]):
        out[q] = _horner(x[q], c0, c1, c2, c3)
    return out


@njit(parallel=True, **_jit)
def cubic_times(x, by, c0, c1, c2, c3):
    """`cubic`'s values times by, value by value, in one pass (an activation's slope
    times delta: its bits, then the product's)."""
    out = np.empty_like(x)
    for q in prange(x.shape[0]):
        out[q] = _horner(x[q], c0, c1, c2, c3) * by[q]
    return out


@njit(inline="always", **_jit)
def _up_row(src, beta, row):
    """row = each value of src times beta, written twice in a row (upsample_kron_2x2's)."""
    for X in range(src.shape[0]):
        row[2 * X] = row[2 * X + 1] = src[X] * beta


@njit(**_jit)
def _cubic_times_block(y, by, out, c0, c1, c2, c3):
    """out = `_horner`(y) · by over a flat block, 16 lanes wide."""
    _zmm()
    for q in range(out.shape[0]):
        out[q] = _horner(y[q], c0, c1, c2, c3) * by[q]


@njit(parallel=True, **_jit)
def cubic_times_up2x2_rows(y, d, beta, c0, c1, c2, c3, chunks):
    """`cubic`(y) · up(β · d) for 2x2 blocks of maps (N, C, H, W), β one value per map:
    scale_maps (or `scale`'s fixed β, repeated), upsample_kron_2x2 and cubic_times bit
    for bit, in one pass, an upsampled row at a time (maps 16 or more wide); the batch
    in ``chunks`` runs of images (one per thread), each with its own scratch row."""
    n, c, h, w = d.shape
    out = np.empty_like(y)
    per = (n + chunks - 1) // chunks
    for chunk in prange(chunks):
        row = np.empty(2 * w, y.dtype)
        for m in range(chunk * per, min(n, (chunk + 1) * per)):
            for i in range(c):
                for Y in range(h):
                    _up_row(d[m, i, Y], beta[i], row)
                    for a in range(2):
                        src, dst = y[m, i, 2 * Y + a], out[m, i, 2 * Y + a]
                        for q in range(2 * w):
                            dst[q] = _horner(src[q], c0, c1, c2, c3) * row[q]
    return out


@njit(parallel=True, **_jit)
def cubic_times_up2x2_maps(y, d, beta, c0, c1, c2, c3, chunks):
    """`cubic_times_up2x2_rows`' values, an image's upsampled maps at a time (narrower
    maps: rows of 10 left the 16-lane loop unused, 1.4x slower)."""
    n, c, h, w = d.shape
    size = c * 4 * h * w
    out = np.empty_like(y)
    yf, of = y.reshape(n, size), out.reshape(n, size)
    per = (n + chunks - 1) // chunks
    for chunk in prange(chunks):
        up = np.empty((c, 2 * h, 2 * w), y.dtype)
        flat = up.reshape(size)
        for m in range(chunk * per, min(n, (chunk + 1) * per)):
            for i in range(c):
                for Y in range(h):
                    top, bottom = up[i, 2 * Y], up[i, 2 * Y + 1]
                    _up_row(d[m, i, Y], beta[i], top)
                    for X in range(2 * w):
                        bottom[X] = top[X]
            _cubic_times_block(yf[m], flat, of[m], c0, c1, c2, c3)
    return out
