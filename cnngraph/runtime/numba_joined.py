"""The forward correlation of a convolution with a connection table, summing only the
map pairs the table joins, with the images along the vectors.

numba_listed's tiles hold a layer's maps along the vectors, so each tap of an input
map is multiplied for every output map, joined or not: LeNet-5's C3 joins 60 of its
96 pairs, and 37.5 % of its products were with the masked kernel's zeros (no split
of its 16 maps into vectors of 8 leaves an input out of either half).  Here a group
of L images (16 float32, 8 float64: one AVX-512 register) is copied batch innermost
(numba_lanes), and a tile computes Q neighbouring outputs of one map for them: per
joined input map and kernel row it loads the Q + kw − 1 input vectors the row
reaches and multiplies them by the row's kw kernel values, broadcast.  Each output is
numba_listed's chain over the taps (i, a, b) in order less its products with the
table's zeros (fma(0, s, acc) is acc for a finite s): the same bits, then the same
bias and float32 activation (numba_activations) as a group is copied back.  The tiles
and their driver are generated for the kernel width and the split of an output row
into tiles (`row_split`), compiled on first use and cached on disk.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange, types

from .numba_activations import activate_block
from .numba_conv import _jit
from .numba_lanes import VECTOR_BYTES, from_lanes, to_lanes
from .numba_tiles import LISTED_TILES, _zmm, compile_tiles, vector_type

#: images per vector, by dtype
LANES = {np.float32: VECTOR_BYTES // 4, np.float64: VECTOR_BYTES // 8}
#: the joined pairs where the listed tiles compute this many times their products, per
#: thread: LeNet-5's C3 (5x5 kernels, 10x10 outputs), float32, against numba_listed
#: (interleaved, medians of 20): on one thread 0.60 times the products ran in 0.66-0.70
#: of the time at batch 256, 0.77 in 0.81-0.92 at 50 (four groups, the last of two
#: images), 0.96 in 1.30 at 10; on two, 0.60 in 0.73 at 32, 0.77 in 0.92 at 50, 0.96 in
#: 1.47 at 40 (three groups), 1.20 in 1.30 at 16 (one group, one thread)
MARGIN = 1.25
#: vector registers a tile may hold (AVX-512 has 32)
REGISTERS = 28
#: outputs of a row a tile takes at most
ROW = 8


def cheaper(joined: np.ndarray, batch: int, outputs: int, dtype: type, threads: int) -> bool:
    """Whether a thread's share of the joined pairs' products, its groups of L images
    whole, is MARGIN times smaller than its share of numba_listed's, which multiply
    every pair (maps rounded up to their J, outputs to their P)."""
    L, (P, J) = LANES[dtype], LISTED_TILES[dtype]
    c_out, c = joined.shape
    groups = -(-batch // L)
    rounds = -(-groups // threads)
    tiles = -(-c_out // J) * J * c * (-(-outputs // P) * P) * -(-batch // threads)
    return int(joined.sum()) * L * outputs * rounds * MARGIN <= tiles


def row_split(wo: int, most: int) -> tuple[int, int, int] | None:
    """(QA, QB, nA): a row of wo outputs cut into tiles at most ``most`` wide, nA of QA
    outputs, then tiles of QB = QA − 1 (QB = QA where every tile is QA wide); None
    where ``most`` is under 2 (no tile would fit in the registers)."""
    if most < 2:
        return None
    count = -(-wo // most)
    QA = -(-wo // count)
    nA = wo - count * (QA - 1)
    return QA, QA if nA == count else QA - 1, nA


def widest(kw: int) -> int:
    """The widest forward tile for kernels kw wide: Q sums and Q + kw − 1 inputs held."""
    return min(ROW, (REGISTERS - kw + 1) // 2)


def operands(joined: np.ndarray, kernel: np.ndarray):
    """(ins, istart, kr): each output map's joined input maps, in order, flat, with
    output map o's from istart[o] to istart[o + 1]; and the kernel rows of those pairs
    in that order, flat."""
    ins = np.nonzero(joined)[1].astype(np.int64)
    istart = np.concatenate([[0], np.cumsum(joined.sum(axis=1))]).astype(np.int64)
    kr = np.ascontiguousarray(kernel[joined]).reshape(-1)
    return ins, istart, kr


def tile_opening(signature: str, Q: int, L: int) -> list[str]:
    """A generated tile's first lines: its def, the request for 512-bit vectors, and its
    Q x L sums a{q}_{j} set to zero."""
    sums = [f"a{q}_{j}" for q in range(Q) for j in range(L)]
    return [f"def {signature}:", "    _zmm()", "    z = src.dtype.type(0)",
            "    " + " = ".join(sums) + " = z"]


def tile_stores(Q: int, L: int) -> list[str]:
    """Its last: out[d0 + q·L + j] = a{q}_{j}."""
    return ["    e = np.uint64(d0)"] + [f"    out[e + np.uint64({q * L + j})] = a{q}_{j}"
                                         for q in range(Q) for j in range(L)]


def _tile_source(Q: int, kw: int, L: int) -> str:
    """out[d0 + q·L + j] = Σ_{t, a, b} kr[k0 + ((t − t0)·kh + a)·kw + b]
    src[((ins[t]·H + Y + a)·W + x0 + q + b)·L + j] over t0 <= t < t1, a < kh, b < kw
    in that order, for q < Q outputs and j < L images."""
    lines = tile_opening(f"_tile_{Q}_{kw}_{L}(src, kr, k0, ins, t0, t1, kh, H, W, Y, x0, out, d0)",
                         Q, L)
    lines += ["    for t in range(t0, t1):",
             "        i = ins[t]",
             "        for a in range(kh):",
             "            r = np.uint64(((i * H + Y + a) * W + x0) * " + str(L) + ")",
             "            kb = np.uint64(k0 + ((t - t0) * kh + a) * " + str(kw) + ")"]
    lines += [f"            w{b} = kr[kb + np.uint64({b})]" for b in range(kw)]
    lines += [f"            s{u}_{j} = src[r + np.uint64({u * L + j})]"
              for u in range(Q + kw - 1) for j in range(L)]
    lines += [f"            a{q}_{j} += w{b} * s{q + b}_{j}"
              for q in range(Q) for b in range(kw) for j in range(L)]
    return "\n".join(lines + tile_stores(Q, L)) + "\n"


def _maps_source(QA: int, QB: int, kw: int, L: int) -> str:
    """A group's every output map and row: per row nA tiles QA wide, then QB wide to wo."""
    tile = "(src, kr, k0, ins, t0, t1, kh, H, W, Y, x0, out, d0 + x0 * " + str(L) + ")"
    return "\n".join([
        f"def _maps_{QA}_{QB}_{kw}_{L}(src, kr, ins, istart, kh, H, W, nA, ho, wo, out):",
        "    for o in range(istart.shape[0] - 1):",
        "        t0, t1 = istart[o], istart[o + 1]",
        f"        k0 = t0 * kh * {kw}",
        "        for Y in range(ho):",
        f"            d0 = (o * ho + Y) * wo * {L}",
        "            x0 = 0",
        "            for _ in range(nA):",
        f"                _tile_{QA}_{kw}_{L}{tile}",
        f"                x0 += {QA}",
        "            while x0 < wo:",
        f"                _tile_{QB}_{kw}_{L}{tile}",
        f"                x0 += {QB}"]) + "\n"


#: the driver, for `_maps_source`'s function MAPS and L lanes: groups of L images in
#: parallel (no sum depends on the group), each copied batch innermost, its output maps
#: summed, copied back + bias, then through the activation
_DRIVER = """
def _conv_MAPS(x, kr, ins, istart, kh, nA, bias, act, gain, scale, y):
    n, c, H, W = x.shape
    c_out, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    area, plane = ho * wo, c * H * W
    image = c_out * area
    xf, yf = x.reshape(n, plane), y.reshape(n, image)
    for group in prange((n + L - 1) // L):
        m0 = group * L
        g = min(L, n - m0)
        src = np.zeros(plane * L, x.dtype)
        out = np.empty(image * L, x.dtype)
        summed = np.empty((L, image), x.dtype)
        to_lanes(xf, m0, m0 + g, src.reshape(plane, L))
        _maps_MAPS(src, kr, ins, istart, kh, H, W, nA, ho, wo, out)
        from_lanes(out.reshape(image, L), 0, g, summed)
        for m in range(g):
            if bias.shape[0]:
                for o in range(c_out):
                    b = bias[o]
                    for p in range(o * area, (o + 1) * area):
                        summed[m, p] = summed[m, p] + b
            if act:
                activate_block(summed[m], yf[m0 + m], act, gain, scale)
            else:
                yf[m0 + m] = summed[m]
"""


@functools.cache
def _compiled(QA: int, QB: int, kw: int, dtype: type):
    """The driver for `row_split`'s tiles QA and QB wide and kernels kw wide in dtype:
    its tiles compiled now, the rest on its first call (the driver generated too: a
    group's maps passed to one generic driver as a first-class function cost 70 us a
    call to convert, or bound in a wrapper, could not be cached)."""
    L = LANES[dtype]
    vector = vector_type(dtype)
    i, offsets = types.int64, types.Array(types.int64, 1, "C")
    key = f"{QA}_{QB}_{kw}_{L}"
    namespace = {"__name__": __name__, "_zmm": _zmm, "np": np, "prange": prange,
                 "to_lanes": to_lanes, "from_lanes": from_lanes,
                 "activate_block": activate_block, "L": L}
    signature = types.void(vector, vector, i, offsets, i, i, i, i, i, i, i, vector, i)
    compile_tiles(namespace, __file__, [(f"_tile_{Q}_{kw}_{L}", _tile_source(Q, kw, L),
                                         [signature]) for Q in {QA, QB}])
    exec(compile(_maps_source(QA, QB, kw, L) + _DRIVER.replace("MAPS", key), __file__,
                 "exec"), namespace)
    namespace[f"_maps_{key}"] = njit(**_jit)(namespace[f"_maps_{key}"])
    return njit(parallel=True, **_jit)(namespace[f"_conv_{key}"])


def conv_joined(x, kernel, joined, bias, act, gain, scale, least):
    """numba_tiled's conv_strided at unit geometry for 2-D maps x (N, C, H, W) and a
    kernel whose pairs outside ``joined`` (C_out, C) are zero, summing the joined pairs
    only: y = the correlation, + bias[o] (empty: none), then, with a y of at least
    ``least`` values, the float32 activation ``act`` (numba_activations' code; 0: none).
    None where `row_split` finds no tile."""
    c_out, _, kh, kw = kernel.shape
    ho, wo = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    split = row_split(wo, widest(kw))
    if split is None:
        return None
    QA, QB, nA = split
    ins, istart, kr = operands(joined, kernel)
    y = np.empty((len(x), c_out, ho, wo), x.dtype)
    dtype = x.dtype.type
    _compiled(QA, QB, kw, dtype)(np.ascontiguousarray(x), kr, ins, istart, kh, nA, bias,
                                 act if y.size >= least else 0, gain, scale, y)
    return y


def where_cheaper(x, kernel, mask, fused, threads):
    """`conv_joined` of the pairs ``mask`` (C_out, C) joins (nonzero), ``fused`` being
    numba_backend's epilogue arguments, where that is `cheaper` on ``threads``; None
    elsewhere."""
    joined = np.asarray(mask) != 0
    outputs = (x.shape[2] - kernel.shape[2] + 1) * (x.shape[3] - kernel.shape[3] + 1)
    if not cheaper(joined, len(x), outputs, x.dtype.type, threads):
        return None
    return conv_joined(x, kernel, joined, *fused)
