"""numba_tiled's forward correlation at listed positions: the maps along the vectors.

numba_tiled's map tiles compute R maps at every position P < npos of an image's
phase-split planes, rounded up to their width, and drop the columns past the
output's: where a map's rows are short beside their pitch, most of that work is
thrown away (LeNet-5's C3, 10 of every 14 columns kept, 160 positions computed for
100 outputs; dlt.cnn's C2, 8 of 12).  numba_tiles' listed-positions tiles instead
take the outputs' own positions and put the maps along the vectors, J at a time
(maps past c_out padded with zero kernels).  Each output is the same FMA chain over
the taps in the same order (i, c, a, b), so the result is bitwise the map tiles';
conv_strided takes listed positions where they compute clearly fewer sums
(`listed_cheaper`).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .numba_activations import activate_block
from .numba_conv import _jit
from .numba_phases import _split_image
from .numba_tiles import LISTED_TILES, TILES, listed_tiles

#: conv_strided's layouts: the cheaper (`listed_cheaper`), the map tiles, listed positions
AUTO, MAP_TILES, LISTED = 0, 1, 2
#: listed positions where the map tiles compute this many times their sums, and the
#: kernel has this many taps: per sum the listed tiles ran at 0.7-0.9 of the map
#: tiles' speed, lower on short tap loops (a 3x3x3 kernel on one map: 0.73 at 1.26
#: times fewer sums), measured on 15 layers of the shipped models and the 3-D example
MARGIN, MIN_TAPS = 1.2, 64
#: per dtype (float32, float64): the map tiles' widths for 8, 4, 2 and 1 maps, in the
#: order numba_tiled's `_all_maps` takes them; the listed tiles' (positions, maps)
_WIDTHS = np.array([[T for _, T in TILES[t]] for t in (np.float32, np.float64)], np.int64)
_LISTED = np.array([LISTED_TILES[t] for t in (np.float32, np.float64)], np.int64)


@njit(**_jit)
def listed_cheaper(taps, c_out, npos, outputs, itemsize):
    """Whether listed positions (``outputs`` per map, rounded up to their tile) take
    MARGIN times fewer multiply-adds per tap than the map tiles (npos, rounded up to
    their width) and the kernel has MIN_TAPS taps."""
    if taps < MIN_TAPS:
        return False
    k = 0 if itemsize == 4 else 1
    tiled, o0 = 0, 0
    while o0 < c_out:
        left = c_out - o0
        i = 0 if left >= 8 else 1 if left >= 4 else 2 if left >= 2 else 3
        R, T = 8 >> i, _WIDTHS[k, i]
        tiled += R * ((npos + T - 1) // T * T)
        o0 += R
    P, J = _LISTED[k, 0], _LISTED[k, 1]
    return (c_out + J - 1) // J * J * ((outputs + P - 1) // P * P) * MARGIN <= tiled


@njit(**_jit)
def listed_operands(kq, shape, nq, itemsize):
    """(kt, ldo, pos): kq[t, o] with its maps padded to ldo, a multiple of the listed
    tiles' J, flat; and each output (Z, Y, X)'s position (Z·Hq + Y)·Wq + X in the
    phase planes, in order, padded with 0 to a multiple of their P."""
    k = 0 if itemsize == 4 else 1
    P, J = _LISTED[k, 0], _LISTED[k, 1]
    taps, c_out = kq.shape
    ldo = (c_out + J - 1) // J * J
    kt = np.zeros((taps, ldo), kq.dtype)
    kt[:, :c_out] = kq
    outputs = shape[0] * shape[1] * shape[2]
    pos = np.zeros((outputs + P - 1) // P * P, np.int64)
    p = 0
    for Z in range(shape[0]):
        for Y in range(shape[1]):
            for X in range(shape[2]):
                pos[p] = (Z * nq[1] + Y) * nq[2] + X
                p += 1
    return kt.reshape(kt.size), ldo, pos


@njit(**_jit)
def correlate_listed(x, kt, ldo, offs, pos, before, s, nq, start, stop, y, bias, act, gain,
                     scale):
    """y[start:stop] as numba_tiled's `_correlate` makes it (bias where not empty, then
    the float32 activation ``act``), the sums from `listed_tiles` at positions pos."""
    c, c_out = x.shape[1], y.shape[1]
    area = y.shape[2] * y.shape[3] * y.shape[4]
    src = np.zeros(c * s[0] * s[1] * s[2] * nq[0] * nq[1] * nq[2], x.dtype)
    g = np.empty(pos.shape[0] * ldo, x.dtype)
    image = c_out * area
    summed = np.empty(image if act else 0, x.dtype)
    yf = y.reshape(y.size)
    lu = np.uint64(ldo)
    for m in range(start, stop):
        _split_image(x, m, before, s, nq, src)
        listed_tiles(src, offs, pos, kt, ldo, g)
        to, at = (summed, 0) if act else (yf, m * image)
        for o in range(c_out):  # unsigned indices: no negative-index fix-ups
            d, q = np.uint64(at + o * area), np.uint64(o)
            if bias.shape[0]:
                b = bias[o]
                for p in range(np.uint64(area)):
                    to[d + p] = g[p * lu + q] + b
            else:
                for p in range(np.uint64(area)):
                    to[d + p] = g[p * lu + q]
        if act:
            activate_block(summed, yf[m * image:(m + 1) * image], act, gain, scale)
