"""The input gradient of a convolution (the full true convolution of the stride-dilated
δ with the kernel) with the images along the vectors, in 1, 2 or 3 dimensions.

numba_tiled's `full` correlates δ zero padded by the kernel's reach, phase by phase:
most of its products can be with that padding (dlt.cnn's C3, 8x8 δ to 12x12 maps
with 5x5 kernels: 3.3 products computed for each one that counts).  Here a chunk's δ
is copied batch innermost, (maps, depth, rows, columns, images), so that the images
at one position lie side by side; numba_tiles' batch tiles then compute J images of
R maps at a pixel, taking only the taps that reach it from inside δ, which are the
same for every image (`_walks`).  Each output is the chain numba_tiled sums (o, then
the taps from the kernel's far end, its rows from the near end for the seed's
conv_full) less its products with zeros: fma(0, k, s) is s, so the bits are
numba_tiled's (where the kernel is finite).  Chunks come from the batch size and
thread count (`chunking`) and never split a chain: bitwise the same for any thread
count.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_conv import _jit, chunking
from .numba_lanes import from_lanes, to_lanes
from .numba_tiled import _phase_taps
from .numba_tiles import BATCH_TILES, batch_tiles

#: the batch tiles where numba_tiled computes this many times the products that count:
#: float32, one thread, batches 64 and 256, against numba_tiled, they ran simard2003.cnn's
#: C2 (2.4 times the products) 2.0-2.2x faster, rows1d.cnn's C2 (2.0) 2.5x, shapes3d.cnn's
#: C2 (10.5) 7.8x, dlt.cnn's and LeNet-5's C3 1.7-1.9x; modern.cnn's C3 and C4 (1.26)
#: 1.02-1.08x, its C2 (1.12: 28x28 maps, whose chunks leave L2) 0.78x
MARGIN = 1.5
#: images a batch tile computes at once, per dtype (float32, float64)
_LANES = np.array([BATCH_TILES[t][0][1] for t in (np.float32, np.float64)], np.int64)


@njit(**_jit)
def batch_cheaper(k, s, d, before, size, do, n, threads, itemsize):
    """Whether the batch tiles beat numba_tiled's `full` here: numba_tiled would compute
    MARGIN times the products that count (its phases' positions times their taps), and
    the batch, cut into chunks for ``threads``, gives each chunk at least half a tile's
    images (with fewer the batch tiles lost: dlt.cnn's and LeNet-5's C3 in float32 ran
    0.2-0.6x numba_tiled's speed at 1-4 images a chunk, 0.8-1.2x at 8-12, 1.3-1.4x at
    16)."""
    count, per = chunking(n, threads)
    if 2 * per < _LANES[0 if itemsize == 4 else 1]:
        return False
    taps, reads, ntaps, u0, counts, front, behind = _phase_taps(k, s, d, before, size, do,
                                                                False)
    nd = do + front + behind
    tiled = 0
    for pz in range(s[0]):
        for py in range(s[1]):
            for px in range(s[2]):
                nz, ny, nx = counts[0, pz], counts[1, py], counts[2, px]
                if nz * ny * nx:
                    tiled += ((nz - 1) * nd[1] + ny) * nd[2] * ntaps[0, pz] * ntaps[1, py] \
                        * ntaps[2, px]
    walk = _walks(k, s, d, before, size, do, False)
    kept = 0
    for z in range(size[0]):
        for y in range(size[1]):
            for x in range(size[2]):
                kept += walk[0, z, 0] * walk[1, y, 0] * walk[2, x, 0]
    return tiled >= MARGIN * kept


@njit(**_jit)
def _walks(k, s, d, before, size, do, rows_down):
    """walk[j, u] = (count, tap, read, tap, read, ...): the kernel taps c along dimension
    j that reach pixel u of the map from inside δ (s·read + d·c = u + before, 0 <= read <
    do[j]), from the kernel's far end (rows, j = 1, from its near end if ``rows_down``)."""
    walk = np.zeros((3, max(size[0], size[1], size[2]), 1 + 2 * max(k[0], k[1], k[2])),
                    np.int64)
    for j in range(3):
        for u in range(size[j]):
            count = 0
            for q in range(k[j]):
                c = q if rows_down and j == 1 else k[j] - 1 - q
                v = u + before[j] - d[j] * c
                if v >= 0 and v % s[j] == 0 and v // s[j] < do[j]:
                    walk[j, u, 1 + 2 * count] = c
                    walk[j, u, 2 + 2 * count] = v // s[j]
                    count += 1
            walk[j, u, 0] = count
    return walk


@njit(**_jit)
def _flipped(kernel):
    """kt[(((o·kd + c)·kh + a)·kw + b), i] = kernel[o, i, c, a, b], flat."""
    c_out, c = kernel.shape[0], kernel.shape[1]
    kt = np.empty((c_out,) + kernel.shape[2:] + (c,), kernel.dtype)
    for o in range(c_out):
        for i in range(c):
            for cz in range(kernel.shape[2]):
                for a in range(kernel.shape[3]):
                    for b in range(kernel.shape[4]):
                        kt[o, cz, a, b, i] = kernel[o, i, cz, a, b]
    return kt.reshape(kt.size)


@njit(parallel=True, **_jit)
def full(delta, kernel, size, s, before, d, threads, rows_down):
    """dx[n, i, z, y, x] = Σ_o Σ δ[n, o, Z, Y, X] kernel[o, i, c, a, b] over the taps that
    reach (z, y, x) from (Z, Y, X) (`_walks`): numba_tiled's `full`, maps of extents
    ``size``, chunk by chunk."""
    n, c_out = delta.shape[0], delta.shape[1]
    do = np.array(delta.shape[2:])
    k = np.array(kernel.shape[2:])
    c = kernel.shape[1]
    D, H, W = size[0], size[1], size[2]
    J = _LANES[0 if delta.itemsize == 4 else 1]
    kt = _flipped(kernel)
    walk = _walks(k, s, d, before, size, do, rows_down)
    area = do[0] * do[1] * do[2]
    dx = np.empty((n, c, D, H, W), delta.dtype)
    count, per = chunking(n, threads)
    for chunk in prange(count):
        start = chunk * per
        B = min(n, start + per) - start
        lanes = (B + J - 1) // J * J
        geo = np.array((c_out, do[0], do[1], do[2], k[0], k[1], k[2], c, lanes), np.int64)
        dT = np.zeros(c_out * area * lanes, delta.dtype)
        to_lanes(delta.reshape(n, c_out * area), start, start + B,
                 dT.reshape(c_out * area, lanes))
        out = np.empty(c * D * H * W * lanes, delta.dtype)
        for z in range(D):
            for y in range(H):
                for x in range(W):
                    at = ((z * H + y) * W + x) * lanes
                    for g0 in range(0, lanes, J):
                        batch_tiles(dT, kt, geo, walk, c, z, y, x, g0, out, at + g0,
                                    D * H * W * lanes)
        from_lanes(out.reshape(c * D * H * W, lanes), start, start + B,
                   dx.reshape(n, c * D * H * W))
    return dx

