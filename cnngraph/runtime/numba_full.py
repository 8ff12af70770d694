"""The seed's full convolution (the input gradient of a valid convolution) with the
images along the vectors.

numba_tiled's conv_full correlates δ padded by the kernel's extent less one on every
side: most of its products are with that padding (dlt.cnn's C3, 8x8 δ to 12x12 maps
with 5x5 kernels: 3.3 products computed for each one that counts).  Here a chunk's δ
is copied batch innermost, (maps, rows, columns, images), so that the images at one
position lie side by side; numba_tiles' batch tiles then compute J images of R maps
at a position, and take only the taps whose δ lies inside the map, which are the
same for every image.  Each output is the chain numba_tiled sums (o, then kernel rows
upward, columns downward) less its products with zeros: fma(0, k, s) is s, so
the bits are numba_tiled's (where the kernel is finite).  Chunks come from the batch
size and thread count (`chunking`), whole chains never span two: bitwise the same
for any thread count.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_conv import _jit, chunking
from .numba_tiles import BATCH_TILES, batch_tiles

#: images a batch tile computes at once, per dtype (float32, float64)
_LANES = np.array([BATCH_TILES[t][0][1] for t in (np.float32, np.float64)], np.int64)


@njit(**_jit)
def lanes_filled(n, threads, itemsize):
    """Whether a batch of n cut into chunks for ``threads`` gives each chunk at least
    half a batch tile's images: with fewer, numba_tiled's conv_full was faster
    (dlt.cnn's and LeNet-5's C3 in float32: 0.8-1.4x its speed at 10-16 images a chunk,
    0.2-0.6x at 1-8)."""
    count, per = chunking(n, threads)
    return 2 * per >= _LANES[0 if itemsize == 4 else 1]


@njit(**_jit)
def _flipped(kernel):
    """kt[(o·kh + a)·kw + b, i] = kernel[o, i, a, b], flat."""
    c_out, c, kh, kw = kernel.shape
    kt = np.empty((c_out, kh, kw, c), kernel.dtype)
    for o in range(c_out):
        for i in range(c):
            for a in range(kh):
                for b in range(kw):
                    kt[o, a, b, i] = kernel[o, i, a, b]
    return kt.reshape(kt.size)


@njit(parallel=True, **_jit)
def conv_full(delta, kernel, threads):
    """dx[n, i, y, x] = Σ_o Σ_a Σ_b δ[n, o, y − a, x − b] kernel[o, i, a, b] over the
    (a, b) with δ's pixel inside: the seed's full true convolution, chunk by chunk."""
    n, c_out, ho, wo = delta.shape
    c, kh, kw = kernel.shape[1], kernel.shape[2], kernel.shape[3]
    H, W = ho + kh - 1, wo + kw - 1
    J = _LANES[0 if delta.itemsize == 4 else 1]
    kt = _flipped(kernel)
    dx = np.empty((n, c, H, W), delta.dtype)
    count, per = chunking(n, threads)
    for chunk in prange(count):
        start = chunk * per
        B = min(n, start + per) - start
        lanes = (B + J - 1) // J * J
        geo = np.array((c_out, ho, wo, kh, kw, c, lanes), np.int64)
        dT = np.zeros(c_out * ho * wo * lanes, delta.dtype)
        for o in range(c_out):
            for Y in range(ho):
                for X in range(wo):
                    q = ((o * ho + Y) * wo + X) * lanes
                    for m in range(B):
                        dT[q + m] = delta[start + m, o, Y, X]
        out = np.empty(c * H * W * lanes, delta.dtype)
        for y in range(H):
            for x in range(W):
                for g0 in range(0, lanes, J):
                    batch_tiles(dT, kt, geo, c, y, x, g0, out, (y * W + x) * lanes + g0,
                                H * W * lanes)
        for m in range(B):
            for i in range(c):
                for y in range(H):
                    for x in range(W):
                        dx[start + m, i, y, x] = out[((i * H + y) * W + x) * lanes + m]
    return dx
