"""The kernel gradient of a convolution with a connection table, summed for its joined map
pairs alone, with the images along the vectors (numba_joined's layout).

numba_conv's kernel gradient sums every map pair, four output maps sharing each load:
LeNet-5's C3 computed 96 pairs' gradients for the 60 its table keeps.  Here a group
of L images (16 float32, 8 float64) of x and of δ is copied batch innermost, and a
tile sums one joined pair's kernel row a: per run of Q δ positions along a row it
loads Q δ vectors and the Q + kw − 1 input vectors they meet, and adds Q x kw
products into kw vectors of L partial sums.  Entry (o, i, a, b) is then, per group,
L lane sums, each one chain over the group's positions in a fixed order (`run_starts`),
added lane by lane; the groups' sums added in group order.  Groups depend on the
batch size alone: the bits never depend on the thread count (they are not
numba_conv's, whose sums vectorize otherwise).
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange, types

from .numba_joined import LANES, REGISTERS, ROW, row_split
from .numba_lanes import to_lanes
from .numba_tiles import _strict, _zmm, compile_tiles, vector_type


#: the joined pairs where they take up to 1/MARGIN times numba_conv's products, the
#: batch rounded up to whole groups: LeNet-5's C3, float32, interleaved (medians of
#: 20), one thread: at batch 256 0.62 times the products in 0.67 of the time, at 50
#: 0.77 in 0.72, at 10 1.0 in 0.80, at 8 1.25 in 1.03, at 4 2.5 in 0.99; two threads:
#: at 256 0.62 in 0.54, at 16 1.25 in 0.70, at 37 0.78 in 0.87
MARGIN = 0.8


def cheaper(joined: np.ndarray, batch: int, dtype: type) -> bool:
    """Whether the joined pairs' products, the batch in whole groups of L images, are at
    most 1/MARGIN times numba_conv's, which sums every pair.  Not the thread count:
    the two give other bits, so the choice must not depend on it."""
    L = LANES[dtype]
    groups = -(-batch // L)
    return int(joined.sum()) * groups * L * MARGIN <= joined.size * batch


def widest(kw: int) -> int:
    """The widest tile for kernels kw wide: kw sums, Q δ and Q + kw − 1 inputs held."""
    return min(ROW, (REGISTERS - 2 * kw + 1) // 2)


def _run(Q: int, kw: int, L: int) -> list[str]:
    """A loop over runs r < starts.shape[1] of Q δ vectors at ds[d0 + starts[1, r]] and the
    Q + kw − 1 inputs at xs[x0 + starts[0, r]], adding their products into the sums."""
    lines = ["    for r in range(starts.shape[1]):",
             "        p = np.uint64(x0 + starts[0, r])",
             "        q = np.uint64(d0 + starts[1, r])"]
    lines += [f"        d{u}_{j} = ds[q + np.uint64({u * L + j})]"
              for u in range(Q) for j in range(L)]
    lines += [f"        s{u}_{j} = xs[p + np.uint64({u * L + j})]"
              for u in range(Q + kw - 1) for j in range(L)]
    lines += [f"        g{b}_{j} += s{u + b}_{j} * d{u}_{j}"
              for u in range(Q) for b in range(kw) for j in range(L)]
    return lines


def _tile_source(QA: int, QB: int, kw: int, L: int) -> str:
    """out[e + b·L + j] = Σ xs[x0 + (Y·W + X + b)·L + j] ds[d0 + (Y·wo + X)·L + j] for
    b < kw, j < L over the positions (Y, X) of runs QA wide at ``runs_a`` (x's and δ's
    offsets, `run_starts`), then of runs QB wide at ``runs_b``: one pair's kernel row,
    each lane one chain in that order.  (A loop per run width: in loops nested by row
    and run the sums went through shuffles at each level.)"""
    sums = [f"g{b}_{j}" for b in range(kw) for j in range(L)]
    lines = [f"def _gtile_{QA}_{QB}_{kw}_{L}(xs, ds, x0, d0, runs_a, runs_b, out, e):",
             "    _zmm()", "    z = xs.dtype.type(0)", "    " + " = ".join(sums) + " = z",
             "    starts = runs_a"]
    lines += _run(QA, kw, L)
    lines.append("    starts = runs_b")
    lines += _run(QB, kw, L)
    lines.append("    f = np.uint64(e)")
    lines += [f"    out[f + np.uint64({b * L + j})] = g{b}_{j}"
              for b in range(kw) for j in range(L)]
    return "\n".join(lines) + "\n"


def run_starts(ho: int, W: int, wo: int, QA: int, QB: int, nA: int, L: int):
    """(runs_a, runs_b): each row's runs of QA δ positions (the first nA), then of QB,
    as (x offset, δ offset) columns (Y·W + X)·L and (Y·wo + X)·L, rows in order."""
    a, b = [], []
    for Y in range(ho):
        X = 0
        while X < wo:
            (a if X < nA * QA else b).append(((Y * W + X) * L, (Y * wo + X) * L))
            X += QA if X < nA * QA else QB
    return (np.array(a, np.int64).reshape(-1, 2).T.copy(),
            np.array(b, np.int64).reshape(-1, 2).T.copy())


#: the driver, for `_tile_source`'s tile TILE and L lanes: groups of L images in
#: parallel, each copied batch innermost (δ's unused lanes zero), every joined pair's
#: kernel rows tiled, each entry's L lane sums added in order into parts[group]; then
#: the groups' sums added in order
_DRIVER = """
def _grad_TILE(x, delta, outs, ins, kh, kw, runs_a, runs_b, total):
    n, c, H, W = x.shape
    c_out, ho, wo = delta.shape[1], delta.shape[2], delta.shape[3]
    plane, dplane = c * H * W, c_out * ho * wo
    pairs = outs.shape[0]
    entries = pairs * kh * kw
    xf, df = x.reshape(n, plane), delta.reshape(n, dplane)
    groups = (n + L - 1) // L
    parts = np.empty((groups, entries), x.dtype)
    for group in prange(groups):
        m0 = group * L
        g = min(L, n - m0)
        xs = np.zeros(plane * L, x.dtype)
        ds = np.zeros(dplane * L, x.dtype)
        to_lanes(xf, m0, m0 + g, xs.reshape(plane, L))
        to_lanes(df, m0, m0 + g, ds.reshape(dplane, L))
        lanes = np.empty(entries * L, x.dtype)
        for t in range(pairs):
            for a in range(kh):
                _gtile_TILE(xs, ds, (ins[t] * H + a) * W * L, outs[t] * ho * wo * L, runs_a,
                            runs_b, lanes, (t * kh + a) * kw * L)
        for k in range(entries):
            s = lanes[k * L]
            for j in range(1, L):
                s += lanes[k * L + j]
            parts[group, k] = s
    for k in range(entries):
        s = parts[0, k]
        for group in range(1, groups):
            s += parts[group, k]
        total[k] = s
"""


@functools.cache
def _compiled(QA: int, QB: int, kw: int, dtype: type):
    """The driver for tiles of runs QA and QB wide and kernels kw wide in dtype: its tile
    compiled now, the driver on its first call (generated too, as numba_joined's;
    without "reassoc", so that its lane and group sums keep their order)."""
    L = LANES[dtype]
    vector = vector_type(dtype)
    i, starts = types.int64, types.Array(types.int64, 2, "C")
    key = f"{QA}_{QB}_{kw}_{L}"
    namespace = {"__name__": __name__, "_zmm": _zmm, "np": np, "prange": prange,
                 "to_lanes": to_lanes, "L": L}
    compile_tiles(namespace, __file__, [(f"_gtile_{key}", _tile_source(QA, QB, kw, L),
                                         [types.void(vector, vector, i, i, starts, starts,
                                                     vector, i)])])
    exec(compile(_DRIVER.replace("TILE", key), __file__, "exec"), namespace)
    return njit(parallel=True, **_strict)(namespace[f"_grad_{key}"])


def conv_grad_kernel_joined(x, delta, kh, kw, joined):
    """g[o, i] = Σ_n x[n, i] ⋆ δ[n, o] (valid) for the joined pairs of ``joined``
    (C_out, C), 0 elsewhere; None where no tile fits the registers."""
    split = row_split(delta.shape[3], widest(kw))
    if split is None:
        return None
    QA, QB, nA = split
    dtype = x.dtype.type
    runs = run_starts(delta.shape[2], x.shape[3], delta.shape[3], QA, QB, nA, LANES[dtype])
    outs, ins = (a.astype(np.int64) for a in np.nonzero(joined))
    total = np.empty(len(outs) * kh * kw, x.dtype)
    _compiled(QA, QB, kw, dtype)(np.ascontiguousarray(x), np.ascontiguousarray(delta), outs,
                                 ins, kh, kw, *runs, total)
    g = np.zeros(joined.shape + (kh, kw), x.dtype)
    g[joined] = total.reshape(-1, kh, kw)
    return g


def where_cheaper(x, delta, size, mask):
    """`conv_grad_kernel_joined` of the pairs ``mask`` (C_out, C) joins (nonzero), for
    kernels of ``size``, where that is `cheaper`; None elsewhere."""
    joined = np.asarray(mask) != 0
    if not cheaper(joined, len(x), x.dtype.type):
        return None
    return conv_grad_kernel_joined(x, delta, *size, joined)
