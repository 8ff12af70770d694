"""The phase-split layout numba_tiled's convolutions read an image in: each map copied,
zero padded, into planes split by the stride into phases (numba_tiled's docstring), and
where each tap of a kernel reads in it."""
from __future__ import annotations

import numpy as np
from numba import njit

from .numba_conv import _jit


@njit(**_jit)
def _planes(size, before, after, s):
    """Each dimension's phase-plane extent: the padded extent over the stride, rounded up."""
    nq = np.empty(3, np.int64)
    for j in range(3):
        nq[j] = (size[j] + before[j] + after[j] + s[j] - 1) // s[j]
    return nq


@njit(inline="always", **_jit)
def _split_at(i, z, y, x, s, nq):
    """Where padded pixel (z, y, x) of map i lies in the phase-split planes: phase
    (z % sd, y % sh, x % sw) of map i, at (z // sd, y // sh, x // sw)."""
    phase = ((i * s[0] + z % s[0]) * s[1] + y % s[1]) * s[2] + x % s[2]
    return phase * nq[0] * nq[1] * nq[2] + (z // s[0] * nq[1] + y // s[1]) * nq[2] + x // s[2]


@njit(**_jit)
def _offsets(c, k, s, d, nq):
    """off_t for taps t = (i, cz, cy, cx) in that order: where the tap's pixel for
    output 0 lies (`_split_at`)."""
    offs = np.empty(c * k[0] * k[1] * k[2], np.int64)
    t = 0
    for i in range(c):
        for cz in range(k[0]):
            for cy in range(k[1]):
                for cx in range(k[2]):
                    offs[t] = _split_at(i, d[0] * cz, d[1] * cy, d[2] * cx, s, nq)
                    t += 1
    return offs


@njit(**_jit)
def _split_image(x, m, before, s, nq, flat):
    """flat's phase planes (zero elsewhere) = image m of x padded by ``before`` (a
    negative pad crops), each pixel where `_split_at` puts it.  Unsigned indices: numba
    adds no negative-index fix-up, and the rows of stride 1 copy as vectors."""
    c, D, H, W = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    z0, z1 = max(0, -before[0]), min(D, nq[0] * s[0] - before[0])
    y0, y1 = max(0, -before[1]), min(H, nq[1] * s[1] - before[1])
    x0, x1 = max(0, -before[2]), min(W, nq[2] * s[2] - before[2])
    xf = x.reshape(x.size)
    run = np.uint64(max(0, x1 - x0))
    for i in range(c):
        for z in range(z0, z1):
            zp = z + before[0]
            for y in range(y0, y1):
                yp = y + before[1]
                src = np.uint64((((m * c + i) * D + z) * H + y) * W + x0)
                row = _split_at(i, zp, yp, 0, s, nq)  # the index is a sum of the row's and x's
                if s[2] == 1:
                    dst = np.uint64(row + x0 + before[2])
                    for X in range(run):
                        flat[dst + X] = xf[src + X]
                else:
                    for X in range(x0, x1):
                        flat[row + _split_at(0, 0, 0, X + before[2], s, nq)] = \
                            xf[src + np.uint64(X - x0)]
