"""The strided, zero-padded and dilated convolution triple (rules/conv_strided.py)
compiled with numba, in numba_conv's batch-innermost blocks.

A chunk of images is copied into a block (maps, H, W, images) zero-padded while
copied, so a map row of every image in the chunk is one run.  Along a row, a
stride of 1 keeps the taps' runs contiguous across the row (numba_conv's
five-tap `_row` and `_dot1` serve them, dilation being their step); a longer
stride leaves runs one chunk of images long.  Each output of the forward and
input-gradient kernels is summed in the same order whatever the chunks (they
take a chunk per thread); the kernel gradient adds per-chunk sums in chunk
order, its chunks set by the batch size alone: bitwise the same for any thread
count.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_conv import _dot1, _from_block, _jit, _row, chunking


@njit(inline="always", **_jit)
def _padded_block(x, start, stop, pt, pb, pl, pr):
    """Images start..stop of x, batch innermost, zero-padded by pt, pb rows and pl, pr
    columns, viewed as rows: (maps, H + pt + pb, (W + pl + pr) · images)."""
    B = stop - start
    block = np.zeros((x.shape[1], x.shape[2] + pt + pb, x.shape[3] + pl + pr, B), x.dtype)
    for i in range(x.shape[1]):
        for Y in range(x.shape[2]):
            for m in range(B):
                for X in range(x.shape[3]):
                    block[i, Y + pt, X + pl, m] = x[start + m, i, Y, X]
    return block.reshape(block.shape[0], block.shape[1], block.shape[2] * B)


@njit(**_jit)
def _strided_row(dst, src, krow, sw, dw, wo, B):
    """dst[X·B + m] += Σ_b krow[b] src[(sw·X + dw·b)·B + m]: one kernel row at stride sw
    (a call, not inlined: inlined, it slowed the stride-1 paths beside it 3x)."""
    for b in range(krow.shape[0]):
        kv = krow[b]
        for X in range(wo):
            base, q = (X * sw + b * dw) * B, X * B
            for m in range(B):
                dst[q + m] += kv * src[base + m]


@njit(**_jit)
def _strided_scatter_row(dst, src, krow, sw, dw, wo, B):
    """dst[(sw·X + dw·b)·B + m] += krow[b] src[X·B + m]: one delta row scattered through
    a kernel row at stride sw."""
    for b in range(krow.shape[0]):
        kv = krow[b]
        for X in range(wo):
            base, q = (X * sw + b * dw) * B, X * B
            for m in range(B):
                dst[base + m] += kv * src[q + m]


@njit(**_jit)
def _strided_dot(src, d, b, sw, dw, wo, B):
    """Σ_{X, m} src[(sw·X + dw·b)·B + m] d[X·B + m]."""
    s = d.dtype.type(0)
    for X in range(wo):
        base, q = (X * sw + b * dw) * B, X * B
        for m in range(B):
            s += src[base + m] * d[q + m]
    return s


@njit(parallel=True, **_jit)
def conv_strided(x, kernel, sh, sw, pt, pb, pl, pr, dh, dw, threads):
    """y[n, o, Y, X] = Σ_i Σ_ab x̃[n, i, sh·Y + dh·a, sw·X + dw·b] k[o, i, a, b], x̃ zero
    padded; each output summed over i, then a, then b."""
    n, c = x.shape[0], x.shape[1]
    c_out, _, kh, kw = kernel.shape
    ho = (x.shape[2] + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (x.shape[3] + pl + pr - dw * (kw - 1) - 1) // sw + 1
    y = np.empty((n, c_out, ho, wo), x.dtype)
    count, size = chunking(n, threads)
    for chunk in prange(count):
        start = chunk * size
        stop = min(n, start + size)
        B = stop - start
        rows = _padded_block(x, start, stop, pt, pb, pl, pr)
        out = np.zeros((c_out, ho, wo * B), x.dtype)
        for o in range(c_out):
            for Y in range(ho):
                dst = out[o, Y]
                for i in range(c):
                    for a in range(kh):
                        src = rows[i, Y * sh + a * dh]
                        if sw == 1 and dw == 1:   # (a step of dw·B ran 3-5x slower)
                            _row(dst, src, kernel[o, i, a], B, False)
                        elif sw == 1:
                            _row(dst, src, kernel[o, i, a], dw * B, False)
                        else:
                            _strided_row(dst, src, kernel[o, i, a], sw, dw, wo, B)
        _from_block(out.reshape(c_out, ho, wo, B), start, y)
    return y


@njit(parallel=True, **_jit)
def conv_strided_full(delta, kernel, h, w, sh, sw, pt, pb, pl, pr, dh, dw, threads):
    """dx = the full true convolution of the stride-dilated delta with the dilated kernel,
    cropped: each delta row added through the kernel rows that read it, in (o, Y, a)
    order; along a row gathered at stride 1 (as numba_conv's conv_full), else scattered."""
    n, c_out, ho, wo = delta.shape
    c, kh, kw = kernel.shape[1], kernel.shape[2], kernel.shape[3]
    dx = np.empty((n, c, h, w), delta.dtype)
    count, size = chunking(n, threads)
    for chunk in prange(count):
        start = chunk * size
        stop = min(n, start + size)
        B = stop - start
        edge = (kw - 1) * dw if sw == 1 else 0   # stride 1: delta padded for `_row`
        drows = _padded_block(delta, start, stop, 0, 0, edge, edge)
        out = np.zeros((c, h + pt + pb, (w + pl + pr) * B), delta.dtype)
        for i in range(c):
            for o in range(c_out):
                for Y in range(ho):
                    src = drows[o, Y]
                    for a in range(kh):
                        dst = out[i, Y * sh + a * dh]
                        if sw == 1 and dw == 1:   # the row's full convolution, gathered
                            _row(dst, src, kernel[o, i, a], B, True)
                        elif sw == 1:
                            _row(dst, src, kernel[o, i, a], dw * B, True)
                        else:
                            _strided_scatter_row(dst, src, kernel[o, i, a], sw, dw, wo, B)
        _from_block(out.reshape(c, h + pt + pb, w + pl + pr, B)[:, pt:pt + h, pl:pl + w],
                    start, dx)
    return dx


@njit(parallel=True, **_jit)
def conv_strided_grad_kernel(x, delta, kh, kw, sh, sw, pt, pb, pl, pr, dh, dw):
    """g[o, i, a, b] = Σ_n Σ_YX x̃[n, i, sh·Y + dh·a, sw·X + dw·b] delta[n, o, Y, X]:
    per-chunk sums (chunks from the batch size alone), added in chunk order."""
    n, c = x.shape[0], x.shape[1]
    c_out, ho, wo = delta.shape[1], delta.shape[2], delta.shape[3]
    count, size = chunking(n)
    parts = np.zeros((count, c_out, c, kh, kw), x.dtype)
    for chunk in prange(count):
        start = chunk * size
        stop = min(n, start + size)
        B = stop - start
        rows = _padded_block(x, start, stop, pt, pb, pl, pr)
        drows = _padded_block(delta, start, stop, 0, 0, 0, 0)
        for o in range(c_out):
            for i in range(c):
                for a in range(kh):
                    for b in range(kw):
                        s = x.dtype.type(0)
                        for Y in range(ho):
                            src, d = rows[i, Y * sh + a * dh], drows[o, Y]
                            if sw == 1 and dw == 1:
                                s += _dot1(src, b * B, d)
                            elif sw == 1:
                                s += _dot1(src, b * dw * B, d)
                            else:
                                s += _strided_dot(src, d, b, sw, dw, wo, B)
                        parts[chunk, o, i, a, b] = s
    total = parts[0].copy()
    for chunk in range(1, count):
        total += parts[chunk]
    return total
