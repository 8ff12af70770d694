"""The input gradient of a convolution with a connection table (the full true convolution
of δ with the kernel), summing only the map pairs the table joins, with the images along
the vectors (numba_joined's layout).

numba_full's batch tiles take every output map o for each input map i: LeNet-5's C3
multiplied 96 pairs' δ for the 60 its table joins.  Here a group of L images (16
float32, 8 float64) of δ is copied batch innermost, and a tile computes Q neighbouring
pixels of one input map's row y for them: per joined output map o and kernel row a
that reaches y from inside δ it loads the δ vectors of row y − a that the Q pixels
meet and multiplies them by the row's kw kernel values, broadcast, from the kernel's
far column.  A tile at the map's edge is generated without the products whose δ
column lies outside δ.  Each pixel is then numba_full's chain (o, then the rows from
the near end, the columns from the far end, over the taps that reach it from inside
δ) less its products with the table's zeros: the same bits.  The tiles, a row's
sequence of them and the driver are generated for δ's width and the kernel's, compiled
on first use and cached on disk.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange, types

from .numba_conv import _jit, chunking
from .numba_joined import LANES, operands, row_split, tile_opening, tile_stores, widest
from .numba_lanes import from_lanes, to_lanes
from .numba_tiles import BATCH_TILES, _zmm, compile_tiles, vector_type

#: the joined pairs where numba_full's batch tiles compute at least as many products,
#: per thread: the tiles here ran as fast per product or faster.  A 16 x 6 table on
#: 10x10 δ and 5x5 kernels, float32, interleaved (medians of 11-15), one thread: at
#: batch 256 LeNet-5's C3 (0.62 of the pairs) in 0.63 of numba_full's time, 0.83 in
#: 0.79, 0.88 in 0.83, all pairs in 0.93; at 50 0.64, 0.83, 0.86, 0.99; two threads at
#: 256 0.64, 0.80, 0.89, 0.95; at 50 0.69, 0.93, 0.94, 0.99; LeNet-5's C3 at batches
#: 4-37 0.36-0.69 (numba_full rounds a chunk up to 32 images, a group here to 16)
MARGIN = 1.0


def cheaper(joined: np.ndarray, batch: int, dtype: type, threads: int) -> bool:
    """Whether a thread's share of the joined pairs' products, its groups of L images
    whole, times MARGIN, is at most its share of numba_full's, which multiply every pair
    for a chunk's images in whole tiles of J.  Both give the same bits, so the thread
    count may decide."""
    L, J = LANES[dtype], BATCH_TILES[dtype][0][1]
    groups = -(-batch // L)
    rounds = -(-groups // threads)
    count, per = chunking(batch, threads)
    full = joined.size * -(-per // J) * J * -(-count // threads)
    return int(joined.sum()) * L * rounds * MARGIN <= full


def _tiles_along(W: int, wo: int, kw: int) -> list[tuple[int, int, int, int]]:
    """A row of W = wo + kw − 1 pixels as tiles (x0, Q, lo, hi), as wide as numba_joined's
    forward tiles (the same Q sums and Q + kw − 1 vectors held): the tile's δ vectors u
    (δ column x0 − kw + 1 + u) inside δ are lo <= u < hi."""
    QA, QB, nA = row_split(W, widest(kw))
    tiles, x0 = [], 0
    while x0 < W:
        Q = QA if len(tiles) < nA else QB
        tiles.append((x0, Q, max(0, kw - 1 - x0), min(Q + kw - 1, wo + kw - 1 - x0)))
        x0 += Q
    return tiles


def _tile_source(Q: int, kw: int, L: int, lo: int, hi: int) -> str:
    """out[d0 + q·L + j] = Σ_{t, a, b} kr[k0 + ((t − t0)·kh + a)·kw + b]
    src[((ins[t]·ho + Y − a)·wo + x0 − kw + 1 + q + b)·L + j] over t0 <= t < t1,
    a0 <= a < a1, b < kw with lo <= q + b < hi, in that order, for q < Q pixels and
    j < L images."""
    name = f"_full_tile_{Q}_{kw}_{L}_{lo}_{hi}"
    lines = tile_opening(f"{name}(src, kr, k0, ins, t0, t1, a0, a1, kh, ho, wo, Y, x0, out, d0)",
                         Q, L)
    lines += ["    for t in range(t0, t1):",
             "        o = ins[t]",
             "        for a in range(a0, a1):",
             f"            r = np.uint64(((o * ho + Y - a) * wo + x0 + {lo - kw + 1}) * {L})",
             f"            kb = np.uint64(k0 + ((t - t0) * kh + a) * {kw})"]
    lines += [f"            w{b} = kr[kb + np.uint64({b})]" for b in range(kw)]
    lines += [f"            s{u}_{j} = src[r + np.uint64({(u - lo) * L + j})]"
              for u in range(lo, hi) for j in range(L)]
    lines += [f"            a{q}_{j} += w{b} * s{q + b}_{j}"
              for q in range(Q) for b in range(kw) if lo <= q + b < hi for j in range(L)]
    return name, "\n".join(lines + tile_stores(Q, L)) + "\n"


def _maps_source(key: str, tiles, kw: int, L: int) -> str:
    """A group's every input map and row, the row as ``tiles``."""
    lines = [f"def _full_maps_{key}(src, kr, ins, istart, kh, ho, wo, H, W, out):",
             "    for i in range(istart.shape[0] - 1):",
             "        t0, t1 = istart[i], istart[i + 1]",
             f"        k0 = t0 * kh * {kw}",
             "        for Y in range(H):",
             "            a0, a1 = max(0, Y - ho + 1), min(kh, Y + 1)",
             f"            d0 = (i * H + Y) * W * {L}"]
    for x0, _, _, _, name in tiles:
        lines.append(f"            {name}(src, kr, k0, ins, t0, t1, a0, a1, kh, ho, wo, Y, "
                     f"{x0}, out, d0 + {x0 * L})")
    return "\n".join(lines) + "\n"


#: the driver, for `_maps_source`'s function MAPS and L lanes: groups of L images in
#: parallel (no sum depends on the group), each copied batch innermost, its input maps
#: summed, copied back
_DRIVER = """
def _full_MAPS(delta, kr, ins, istart, kh, dx):
    n, c_out, ho, wo = delta.shape
    c, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    plane, image = c_out * ho * wo, c * H * W
    df, xf = delta.reshape(n, plane), dx.reshape(n, image)
    for group in prange((n + L - 1) // L):
        m0 = group * L
        g = min(L, n - m0)
        src = np.zeros(plane * L, delta.dtype)
        out = np.empty(image * L, delta.dtype)
        to_lanes(df, m0, m0 + g, src.reshape(plane, L))
        _full_maps_MAPS(src, kr, ins, istart, kh, ho, wo, H, W, out)
        from_lanes(out.reshape(image, L), m0, m0 + g, xf)
"""


@functools.cache
def _compiled(wo: int, kw: int, dtype: type):
    """The driver for δ rows wo wide and kernels kw wide in dtype: its tiles compiled
    now, the rest on its first call."""
    L = LANES[dtype]
    vector = vector_type(dtype)
    i, offsets = types.int64, types.Array(types.int64, 1, "C")
    key = f"{wo}_{kw}_{L}"
    namespace = {"__name__": __name__, "_zmm": _zmm, "np": np, "prange": prange,
                 "to_lanes": to_lanes, "from_lanes": from_lanes, "L": L}
    tiles, sources = [], {}
    for x0, Q, lo, hi in _tiles_along(wo + kw - 1, wo, kw):
        name, source = _tile_source(Q, kw, L, lo, hi)
        sources[name] = source
        tiles.append((x0, Q, lo, hi, name))
    signature = types.void(vector, vector, i, offsets, i, i, i, i, i, i, i, i, i, vector, i)
    compile_tiles(namespace, __file__, [(name, source, [signature])
                                        for name, source in sources.items()])
    exec(compile(_maps_source(key, tiles, kw, L) + _DRIVER.replace("MAPS", key), __file__,
                 "exec"), namespace)
    namespace[f"_full_maps_{key}"] = njit(**_jit)(namespace[f"_full_maps_{key}"])
    return njit(parallel=True, **_jit)(namespace[f"_full_{key}"])


def full_joined(delta, kernel, joined):
    """numba_full's `full` at unit geometry (the seed's conv_full, kernel rows from the
    near end) for 2-D maps δ (N, C_out, ho, wo) and a kernel (C_out, C, kh, kw) whose
    pairs outside ``joined`` (C_out, C) are zero, summing the joined pairs only.  None
    for kernels too wide for a tile of two pixels (`widest`)."""
    c_out, c, kh, kw = kernel.shape
    n, _, ho, wo = delta.shape
    if widest(kw) < 2:
        return None
    # per input map i its joined output maps, in order, and their kernel rows, columns
    # from the far end
    ins, istart, kr = operands(joined.T, kernel[:, :, :, ::-1].transpose(1, 0, 2, 3))
    dx = np.empty((n, c, ho + kh - 1, wo + kw - 1), delta.dtype)
    _compiled(wo, kw, delta.dtype.type)(np.ascontiguousarray(delta), kr, ins, istart, kh, dx)
    return dx


def where_cheaper(delta, kernel, mask, threads):
    """`full_joined` of the pairs ``mask`` (C_out, C) joins (nonzero) where that is
    `cheaper` on ``threads``; None elsewhere."""
    joined = np.asarray(mask) != 0
    if not cheaper(joined, len(delta), delta.dtype.type, threads):
        return None
    return full_joined(delta, kernel, joined)
