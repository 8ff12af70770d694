"""The convolution triple compiled with numba, computed directly in cache-sized blocks.

Each kernel walks the batch in chunks of at most CHUNK images and copies a chunk
into a batch-innermost block, (maps, H, W, images), that stays in L2: there a
map row of every image in the chunk is one contiguous run, so the inner loops
are long and vectorize whatever the map width (8 pixels in dlt.cnn's C3).
Taps are applied five at a time (`_taps5`), so one load and store of the
output row serves five multiply-adds, and to four maps at a time.  Chunks run
in parallel (prange).  The forward and input-gradient kernels sum each output
in the same order whatever the chunks, so they cut a small batch into one chunk
per thread; the kernel gradient adds per-chunk partial sums in chunk order, so
its chunks depend on the batch size alone.  Results are bitwise the same for
any thread count.

Shapes and conventions are runtime/numerics.py's: maps (N, C, H, W), kernels
(C_out, C_in, kh, kw); conv_valid is a valid cross-correlation, conv_full the
full true convolution of delta with the kernel, conv_grad_kernel the valid
cross-correlation of x with delta summed over the batch.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_backend import CHUNK

#: reassociation lets sums vectorize; no finite-math assumptions: NaN and inf must pass
#: through, since training diagnoses a diverging step from them
FASTMATH = {"reassoc", "contract", "nsz"}

_jit = dict(fastmath=FASTMATH, cache=True, error_model="numpy")


@njit(**_jit)
def chunking(n, at_least=1):
    """(number of chunks, images per chunk) for a batch of n: chunks of at most CHUNK
    images, and at least ``at_least`` of them (as many as threads, for small batches)."""
    count = min(n, max(at_least, (n + CHUNK - 1) // CHUNK))
    return count, (n + count - 1) // count


@njit(inline="always", **_jit)
def _to_block(x, start, stop, pad, out):
    """out[i, Y, X + pad, m] = x[start + m, i, Y, X]: one chunk, batch innermost.
    Row by row: one (X, m) slab of out stays in L1 while every image's row fills it."""
    for i in range(x.shape[1]):
        for Y in range(x.shape[2]):
            for m in range(stop - start):
                for X in range(x.shape[3]):
                    out[i, Y, X + pad, m] = x[start + m, i, Y, X]


@njit(inline="always", **_jit)
def _block_rows(x, start, stop, pad):
    """Images start..stop of x as a batch-innermost block, zero-padded by ``pad`` on
    both sides along X, viewed as rows: (maps, H, (W + 2 pad) · images)."""
    shape = (x.shape[1], x.shape[2], x.shape[3] + 2 * pad, stop - start)
    block = np.zeros(shape, x.dtype) if pad else np.empty(shape, x.dtype)
    _to_block(x, start, stop, pad, block)
    return block.reshape(shape[0], shape[1], shape[2] * shape[3])


@njit(inline="always", **_jit)
def _from_block(block, start, out):
    """out[start + m, i, Y, X] = block[i, Y, X, m], row by row as `_to_block`."""
    for i in range(block.shape[0]):
        for Y in range(block.shape[1]):
            for m in range(block.shape[3]):
                for X in range(block.shape[2]):
                    out[start + m, i, Y, X] = block[i, Y, X, m]


@njit(inline="always", **_jit)
def _taps5(dst, src, base, step, k0, k1, k2, k3, k4):
    """dst[q] += Σ_j k_j src[base + q + j·step]: five taps of one kernel row."""
    for q in range(dst.shape[0]):
        p = base + q
        dst[q] += (k0 * src[p] + k1 * src[p + step] + k2 * src[p + 2 * step]
                   + k3 * src[p + 3 * step] + k4 * src[p + 4 * step])


@njit(inline="always", **_jit)
def _taps5_4maps(d0, d1, d2, d3, src, step, k0, k1, k2, k3):
    """_taps5 into four output rows at once, each with its own kernel row (k0..k3):
    each load of src serves four maps (C3's forward ran 1.7x faster so)."""
    a0, a1, a2, a3, a4 = k0[0], k0[1], k0[2], k0[3], k0[4]
    b0, b1, b2, b3, b4 = k1[0], k1[1], k1[2], k1[3], k1[4]
    c0, c1, c2, c3, c4 = k2[0], k2[1], k2[2], k2[3], k2[4]
    e0, e1, e2, e3, e4 = k3[0], k3[1], k3[2], k3[3], k3[4]
    for q in range(d0.shape[0]):
        s0, s1, s2 = src[q], src[q + step], src[q + 2 * step]
        s3, s4 = src[q + 3 * step], src[q + 4 * step]
        d0[q] += a0 * s0 + a1 * s1 + a2 * s2 + a3 * s3 + a4 * s4
        d1[q] += b0 * s0 + b1 * s1 + b2 * s2 + b3 * s3 + b4 * s4
        d2[q] += c0 * s0 + c1 * s1 + c2 * s2 + c3 * s3 + c4 * s4
        d3[q] += e0 * s0 + e1 * s1 + e2 * s2 + e3 * s3 + e4 * s4


@njit(inline="always", **_jit)
def _tap1(dst, src, base, kv):
    for q in range(dst.shape[0]):
        dst[q] += kv * src[base + q]


@njit(inline="always", **_jit)
def _row(dst, src, krow, step, reverse):
    """dst += the row of kernel taps krow applied along src (each tap `step` further;
    `reverse` walks the kernel row backwards, as a true convolution does)."""
    kw = krow.shape[0]
    b = 0
    while b + 5 <= kw:
        if reverse:
            _taps5(dst, src, b * step, step, krow[kw - 1 - b], krow[kw - 2 - b],
                   krow[kw - 3 - b], krow[kw - 4 - b], krow[kw - 5 - b])
        else:
            _taps5(dst, src, b * step, step, krow[b], krow[b + 1], krow[b + 2], krow[b + 3],
                   krow[b + 4])
        b += 5
    while b < kw:
        _tap1(dst, src, b * step, krow[kw - 1 - b] if reverse else krow[b])
        b += 1


@njit(parallel=True, **_jit)
def conv_valid(x, kernel, threads):
    """y[n, o] = Σ_i x[n, i] ⋆ kernel[o, i], valid borders.  Each output is summed in
    the same order whatever the chunks, so a small batch is cut into ``threads``."""
    n, c, h, w = x.shape
    c_out, _, kh, kw = kernel.shape
    ho, wo = h - kh + 1, w - kw + 1
    y = np.empty((n, c_out, ho, wo), x.dtype)
    count, size = chunking(n, threads)
    for chunk in prange(count):
        start = chunk * size
        stop = min(n, start + size)
        B = stop - start
        rows = _block_rows(x, start, stop, 0)
        out = np.zeros((c_out, ho, wo, B), x.dtype)
        out_rows = out.reshape(c_out, ho, wo * B)
        o = 0
        while kw == 5 and o + 4 <= c_out:  # four maps at a time
            for Y in range(ho):
                for i in range(c):
                    for a in range(kh):
                        _taps5_4maps(out_rows[o, Y], out_rows[o + 1, Y], out_rows[o + 2, Y],
                                     out_rows[o + 3, Y], rows[i, Y + a], B, kernel[o, i, a],
                                     kernel[o + 1, i, a], kernel[o + 2, i, a],
                                     kernel[o + 3, i, a])
            o += 4
        for o in range(o, c_out):
            for Y in range(ho):
                for i in range(c):
                    for a in range(kh):
                        _row(out_rows[o, Y], rows[i, Y + a], kernel[o, i, a], B, False)
        _from_block(out, start, y)
    return y


@njit(parallel=True, **_jit)
def conv_full(delta, kernel, threads):
    """dx[n, i] = Σ_o delta[n, o] * kernel[o, i], full borders: each row of dx gathers
    the delta rows it overlaps (no zero rows are visited), delta padded along X.
    Chunks as `conv_valid`'s."""
    n, c_out, ho, wo = delta.shape
    _, c, kh, kw = kernel.shape
    h, w = ho + kh - 1, wo + kw - 1
    dx = np.empty((n, c, h, w), delta.dtype)
    count, size = chunking(n, threads)
    for chunk in prange(count):
        start = chunk * size
        stop = min(n, start + size)
        B = stop - start
        rows = _block_rows(delta, start, stop, kw - 1)
        out = np.zeros((c, h, w, B), delta.dtype)
        out_rows = out.reshape(c, h, w * B)
        flipped = kernel[:, :, :, ::-1]  # a true convolution walks each kernel row backwards
        i = 0
        while kw == 5 and i + 4 <= c:  # four maps at a time
            for Y in range(h):
                for o in range(c_out):
                    for a in range(max(0, Y - ho + 1), min(kh, Y + 1)):
                        _taps5_4maps(out_rows[i, Y], out_rows[i + 1, Y], out_rows[i + 2, Y],
                                     out_rows[i + 3, Y], rows[o, Y - a], B, flipped[o, i, a],
                                     flipped[o, i + 1, a], flipped[o, i + 2, a],
                                     flipped[o, i + 3, a])
            i += 4
        for i in range(i, c):
            for Y in range(h):
                for o in range(c_out):
                    for a in range(max(0, Y - ho + 1), min(kh, Y + 1)):
                        _row(out_rows[i, Y], rows[o, Y - a], kernel[o, i, a], B, True)
        _from_block(out, start, dx)
    return dx


@njit(inline="always", **_jit)
def _dots5(src, base, step, d):
    """Σ_q src[base + q + j·step] d[q] for j = 0..4."""
    s0 = s1 = s2 = s3 = s4 = d.dtype.type(0)
    for q in range(d.shape[0]):
        p = base + q
        dq = d[q]
        s0 += src[p] * dq
        s1 += src[p + step] * dq
        s2 += src[p + 2 * step] * dq
        s3 += src[p + 3 * step] * dq
        s4 += src[p + 4 * step] * dq
    return s0, s1, s2, s3, s4


@njit(inline="always", **_jit)
def _dots5_4maps(src, step, d0, d1, d2, d3, part):
    """part[j, b] += Σ_q src[q + b·step] d_j[q] for four delta rows d_j and b = 0..4:
    each load of src serves four maps."""
    z = d0.dtype.type(0)
    a0 = a1 = a2 = a3 = a4 = b0 = b1 = b2 = b3 = b4 = z
    c0 = c1 = c2 = c3 = c4 = e0 = e1 = e2 = e3 = e4 = z
    for q in range(d0.shape[0]):
        s0, s1, s2 = src[q], src[q + step], src[q + 2 * step]
        s3, s4 = src[q + 3 * step], src[q + 4 * step]
        v = d0[q]
        a0 += s0 * v; a1 += s1 * v; a2 += s2 * v; a3 += s3 * v; a4 += s4 * v  # noqa: E702
        v = d1[q]
        b0 += s0 * v; b1 += s1 * v; b2 += s2 * v; b3 += s3 * v; b4 += s4 * v  # noqa: E702
        v = d2[q]
        c0 += s0 * v; c1 += s1 * v; c2 += s2 * v; c3 += s3 * v; c4 += s4 * v  # noqa: E702
        v = d3[q]
        e0 += s0 * v; e1 += s1 * v; e2 += s2 * v; e3 += s3 * v; e4 += s4 * v  # noqa: E702
    part[0, 0] += a0; part[0, 1] += a1; part[0, 2] += a2; part[0, 3] += a3  # noqa: E702
    part[0, 4] += a4; part[1, 0] += b0; part[1, 1] += b1; part[1, 2] += b2  # noqa: E702
    part[1, 3] += b3; part[1, 4] += b4; part[2, 0] += c0; part[2, 1] += c1  # noqa: E702
    part[2, 2] += c2; part[2, 3] += c3; part[2, 4] += c4; part[3, 0] += e0  # noqa: E702
    part[3, 1] += e1; part[3, 2] += e2; part[3, 3] += e3; part[3, 4] += e4  # noqa: E702


@njit(inline="always", **_jit)
def _dot1(src, base, d):
    s = d.dtype.type(0)
    for q in range(d.shape[0]):
        s += src[base + q] * d[q]
    return s


@njit(parallel=True, **_jit)
def conv_grad_kernel(x, delta, kh, kw):
    """g[o, i] = Σ_n x[n, i] ⋆ delta[n, o], valid: per-chunk sums, added in chunk order."""
    n, c = x.shape[0], x.shape[1]
    c_out, ho = delta.shape[1], delta.shape[2]
    count, size = chunking(n)
    parts = np.zeros((count, c_out, c, kh, kw), x.dtype)
    for chunk in prange(count):
        start = chunk * size
        stop = min(n, start + size)
        B = stop - start
        rows = _block_rows(x, start, stop, 0)
        drows = _block_rows(delta, start, stop, 0)
        part = parts[chunk]
        o = 0
        while kw == 5 and o + 4 <= c_out:  # four maps at a time
            for i in range(c):
                for a in range(kh):
                    for Y in range(ho):
                        _dots5_4maps(rows[i, Y + a], B, drows[o, Y], drows[o + 1, Y],
                                     drows[o + 2, Y], drows[o + 3, Y], part[o:o + 4, i, a])
            o += 4
        for o in range(o, c_out):
            for i in range(c):
                for a in range(kh):
                    for Y in range(ho):
                        src, d = rows[i, Y + a], drows[o, Y]
                        b = 0
                        while b + 5 <= kw:
                            s0, s1, s2, s3, s4 = _dots5(src, b * B, B, d)
                            part[o, i, a, b] += s0
                            part[o, i, a, b + 1] += s1
                            part[o, i, a, b + 2] += s2
                            part[o, i, a, b + 3] += s3
                            part[o, i, a, b + 4] += s4
                            b += 5
                        while b < kw:
                            part[o, i, a, b] += _dot1(src, b * B, d)
                            b += 1
    total = parts[0].copy()
    for chunk in range(1, count):
        total += parts[chunk]
    return total
