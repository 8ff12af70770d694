"""The seed's kernel gradient compiled with numba, computed directly in cache-sized
blocks, and the settings every numba kernel shares (FASTMATH, chunking).

conv_grad_kernel walks the batch in chunks of at most CHUNK images and copies a
chunk into a batch-innermost block, (maps, H, W, images), that stays in L2: there
a map row of every image in the chunk is one contiguous run, so the inner loops
are long and vectorize whatever the map width (8 pixels in dlt.cnn's C3).  Five
taps' sums share each load of delta (`_dots5`), for four maps at a time.  Chunks
run in parallel (prange); the per-chunk partial sums are added in chunk order and
the chunks depend on the batch size alone, so the result is bitwise the same for
any thread count.  (The forward pass and input gradient are numba_tiled's.)

Shapes and conventions are runtime/numerics.py's: maps (N, C, H, W), kernels
(C_out, C_in, kh, kw); conv_grad_kernel is the valid cross-correlation of x with
delta summed over the batch.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_backend import CHUNK
from .numba_lanes import to_lanes

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
def _block_rows(x, start, stop):
    """Images start..stop of x as a batch-innermost block viewed as rows: (maps, H,
    W · images)."""
    B = stop - start
    R = x.shape[1] * x.shape[2] * x.shape[3]
    block = np.empty((x.shape[1], x.shape[2], x.shape[3], B), x.dtype)
    to_lanes(x.reshape(x.shape[0], R), start, stop, block.reshape(R, B))
    return block.reshape(x.shape[1], x.shape[2], x.shape[3] * B)


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
        rows = _block_rows(x, start, stop)
        drows = _block_rows(delta, start, stop)
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
