"""Pooling kernels compiled with numba, for maps with 1, 2 or 3 spatial dimensions:
the max and the mean of each window and their gradients (rules/pool.py defines them).

One compiled kernel serves every rank: maps (N, C, *spatial) are viewed as
(N, C, D, H, W), a missing dimension being 1 long with a window of 1, so a 1-D
or 2-D pool runs the arithmetic of a 3-D one that has nothing to add along the
extra dimensions.  Each kernel runs its (image, map) pairs in parallel and a
pair's windows in one fixed order, so the bits never depend on the thread count.

Windows wholly inside the map take a tight loop over their taps at offsets
computed once; those reaching into the padding a separate call that skips the
taps there (which is what −∞ padding amounts to).  Each window meets its taps in
row-major order: the max keeps the first tap that is larger than all before it
(the reference's np.argmax winner), a NaN winning as there; the mean adds them
from 0 and divides by the window's size.  Where windows overlap, the gradients
add each pixel's shares tap by tap in row-major order over the whole map, as the
reference adds them; where they tile the map (stride = size, no padding) they
write each pixel once instead of adding onto zeros.  2x2 windows at stride 2 over
2-D maps, the common case, have a max and its gradient of their own with the same
winners: float32, one thread, modern.cnn's first pool at batch 128, max 1.7 -> 0.45
ms and its gradient 4.5 -> 2.1 ms.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_conv import FASTMATH
from .ranks import as_3d, in_3d

_jit = dict(fastmath=FASTMATH, cache=True, error_model="numpy")


def geometry(size, stride, padding) -> tuple:
    """The nine window numbers (kd, kh, kw, sd, sh, sw, pd, ph, pw) of a pool of any rank."""
    return in_3d(size) + in_3d(stride) + in_3d(padding, fill=0)


def out_size(spatial, size, stride, padding) -> tuple:
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(spatial, size, stride, padding))


def _two_by_two(x, size, stride, padding) -> bool:
    """2x2 windows at stride 2 over 2-D maps (modern.cnn's pools), which have kernels of
    their own: the same winners, so the same bits, in straight-line code."""
    return x.ndim == 4 and tuple(in_3d(size)) == (1, 2, 2) == tuple(in_3d(stride)) \
        and not any(in_3d(padding, fill=0))


def pool_max(x, size, stride, padding):
    out = out_size(x.shape[2:], size, stride, padding)
    if _two_by_two(x, size, stride, padding):
        return _max_2x2(np.ascontiguousarray(x), *out)
    y = _max(as_3d(x), *geometry(size, stride, padding), *in_3d(out))
    return y.reshape(x.shape[:2] + out)


def pool_max_grad(x, delta, size, stride, padding):
    if _two_by_two(x, size, stride, padding):
        return _max_grad_2x2(np.ascontiguousarray(x), np.ascontiguousarray(delta))
    return _max_grad(as_3d(x), as_3d(delta), *geometry(size, stride, padding)).reshape(x.shape)


def pool_mean(x, size, stride, padding):
    out = out_size(x.shape[2:], size, stride, padding)
    y = _mean(as_3d(x), *geometry(size, stride, padding), *in_3d(out))
    return y.reshape(x.shape[:2] + out)


def pool_mean_grad(delta, size, stride, padding, input_size):
    shape = delta.shape[:2] + tuple(input_size)
    return _mean_grad(as_3d(delta), *geometry(size, stride, padding),
                      *in_3d(input_size)).reshape(shape)


# the compiled kernels -------------------------------------------------------------------

@njit(inline="always")
def _taps(o, s, p, k, n):
    """The taps [lo, hi) of output o's window that fall inside the map (length n)."""
    start = o * s - p
    return max(0, -start), min(k, n - start)


@njit(inline="always")
def _outputs(t, s, p, n_out, n):
    """The outputs [lo, hi) whose tap t falls inside the map (length n)."""
    lo = max(0, (p - t + s - 1) // s)
    return lo, max(lo, min(n_out, (n - 1 + p - t) // s + 1))


@njit(inline="always")
def _offsets(kd, kh, kw, h, w):
    """Each tap's place in an image's flattened map, relative to its window's corner,
    taps in row-major order."""
    off = np.empty(kd * kh * kw, np.int64)
    for t in range(kd * kh * kw):
        off[t] = (t // (kh * kw) * h + t // kw % kh) * w + t % kw
    return off


@njit(inline="always")
def _wins(v, v0):
    """Whether tap value v replaces the running maximum v0: larger, or a first NaN
    (bitwise & and |: a select, where short-circuits made unpredictable branches)."""
    return (v0 == v0) & ((v > v0) | (v != v))


@njit(inline="always")
def _inside(s, p, k, n, n_out):
    """The outputs [lo, hi) whose windows lie wholly inside the map (length n)."""
    lo = min(n_out, (p + s - 1) // s)
    return lo, max(lo, min(n_out, (n - k + p) // s + 1))


@njit(inline="always")
def _within(o, s, p, k, n):
    """Whether output o's window lies wholly inside the map (length n)."""
    return 0 <= o * s - p and o * s - p + k <= n


@njit(inline="always")
def _first_max(xs, off, corner, k):
    """(value, tap) of the first maximum of a window wholly inside the map."""
    v0, t0 = xs[corner], 0
    for t in range(1, k):
        v = xs[corner + off[t]]
        win = _wins(v, v0)
        v0, t0 = v if win else v0, t if win else t0
    return v0, t0


@njit(**_jit)
def _edge_max(xs, off, Z, Y, X, kd, kh, kw, sd, sh, sw, pd, ph, pw, d, h, w):
    """(value, tap) of the first maximum of a window that reaches into the padding,
    the taps there skipped (a call, not inlined: inlined, it slowed the tight loop of
    the windows inside the map by a quarter)."""
    corner = ((Z * sd - pd) * h + Y * sh - ph) * w + X * sw - pw
    c0, c1 = _taps(Z, sd, pd, kd, d)
    a0, a1 = _taps(Y, sh, ph, kh, h)
    b0, b1 = _taps(X, sw, pw, kw, w)
    t0 = (c0 * kh + a0) * kw + b0
    v0 = xs[corner + off[t0]]
    for c in range(c0, c1):
        for a in range(a0, a1):
            for b in range(b0, b1):
                t = (c * kh + a) * kw + b
                v = xs[corner + off[t]]
                win = _wins(v, v0)
                v0, t0 = v if win else v0, t if win else t0
    return v0, t0


@njit(inline="always")
def _row_winners(xs, off, Z, Y, kd, kh, kw, sd, sh, sw, pd, ph, pw, d, h, w, best, tap):
    """The first maximum (best) and its tap (tap) of each window of output row (Z, Y)
    of the flattened map xs: the windows inside the map in a tight loop, then those
    reaching into the padding."""
    wo = best.shape[0]
    lo, hi = _inside(sw, pw, kw, w, wo) if _within(Z, sd, pd, kd, d) and \
        _within(Y, sh, ph, kh, h) else (0, 0)
    base = ((Z * sd - pd) * h + Y * sh - ph) * w - pw
    for X in range(lo, hi):
        best[X], tap[X] = _first_max(xs, off, base + X * sw, kd * kh * kw)
    if lo > 0 or hi < wo:
        for X in range(wo):
            if X < lo or X >= hi:
                best[X], tap[X] = _edge_max(xs, off, Z, Y, X, kd, kh, kw, sd, sh, sw, pd, ph,
                                            pw, d, h, w)


@njit(parallel=True, **_jit)
def _max(x, kd, kh, kw, sd, sh, sw, pd, ph, pw, do, ho, wo):
    """_row_winners' values alone (the taps unstored, so never computed)."""
    n, c, d, h, w = x.shape
    out = np.empty((n, c, do, ho, wo), x.dtype)
    off = _offsets(kd, kh, kw, h, w)
    for q in prange(n * c):
        m, i = q // c, q % c
        xs = x[m, i].reshape(-1)
        for Z in range(do):
            for Y in range(ho):
                best = out[m, i, Z, Y]
                lo, hi = _inside(sw, pw, kw, w, wo) if _within(Z, sd, pd, kd, d) and \
                    _within(Y, sh, ph, kh, h) else (0, 0)
                base = ((Z * sd - pd) * h + Y * sh - ph) * w - pw
                for X in range(lo, hi):
                    best[X] = _first_max(xs, off, base + X * sw, kd * kh * kw)[0]
                if lo > 0 or hi < wo:
                    for X in range(wo):
                        if X < lo or X >= hi:
                            best[X] = _edge_max(xs, off, Z, Y, X, kd, kh, kw, sd, sh, sw,
                                                pd, ph, pw, d, h, w)[0]
    return out


@njit(inline="always")
def _zero_rest(out, m, i, do, ho, wo, sd, sh, sw):
    """Zeros where no window of a tiling reaches (past its last window)."""
    out[m, i, do * sd:] = 0
    out[m, i, :do * sd, ho * sh:] = 0
    out[m, i, :do * sd, :ho * sh, wo * sw:] = 0


@njit(parallel=True, **_jit)
def _max_grad(x, delta, kd, kh, kw, sd, sh, sw, pd, ph, pw):
    """Each δ added at its window's winner.  Overlapping windows: tap by tap in
    row-major order over the whole map, as the reference adds them, so a pixel that
    wins several windows sums their δ in the reference's order; tiling windows write
    each pixel once (δ or 0)."""
    n, c, d, h, w = x.shape
    do, ho, wo = delta.shape[2], delta.shape[3], delta.shape[4]
    tiled = sd == kd and sh == kh and sw == kw and pd == 0 and ph == 0 and pw == 0
    overlap = sd < kd or sh < kh or sw < kw
    out = np.empty((n, c, d, h, w), delta.dtype) if tiled else \
        np.zeros((n, c, d, h, w), delta.dtype)
    off = _offsets(kd, kh, kw, h, w)
    for q in prange(n * c):
        m, i = q // c, q % c
        xs, gs = x[m, i].reshape(-1), out[m, i].reshape(-1)
        best = np.empty((do, ho, wo), x.dtype)
        tap = np.empty((do, ho, wo), np.int64)
        for Z in range(do):
            for Y in range(ho):
                _row_winners(xs, off, Z, Y, kd, kh, kw, sd, sh, sw, pd, ph, pw, d, h, w,
                             best[Z, Y], tap[Z, Y])
                for X in range(0 if overlap else wo):
                    t0 = tap[Z, Y, X]
                    corner = ((Z * sd - pd) * h + Y * sh - ph) * w + X * sw - pw
                    if tiled:
                        for t in range(kd * kh * kw):
                            gs[corner + off[t]] = 0
                        gs[corner + off[t0]] = delta[m, i, Z, Y, X]
                    else:
                        gs[corner + off[t0]] += delta[m, i, Z, Y, X]
        if tiled:
            _zero_rest(out, m, i, do, ho, wo, sd, sh, sw)
        for t in range(kd * kh * kw if overlap else 0):
            for Z in range(do):
                for Y in range(ho):
                    for X in range(wo):
                        if tap[Z, Y, X] == t:
                            corner = ((Z * sd - pd) * h + Y * sh - ph) * w + X * sw - pw
                            gs[corner + off[t]] += delta[m, i, Z, Y, X]
    return out


@njit(inline="always")
def _first_of_four(a, b, c, d):
    """(value, tap) of the first maximum of a 2x2 window read in row-major order (a, b
    the top row), as `_first_max` finds it."""
    v0, t0 = a, 0
    win = _wins(b, v0)
    v0, t0 = b if win else v0, 1 if win else t0
    win = _wins(c, v0)
    v0, t0 = c if win else v0, 2 if win else t0
    win = _wins(d, v0)
    return d if win else v0, 3 if win else t0


@njit(parallel=True, **_jit)
def _max_2x2(x, ho, wo):
    """`_max` for 2x2 windows at stride 2 of (N, C, H, W) maps."""
    n, c = x.shape[0], x.shape[1]
    out = np.empty((n, c, ho, wo), x.dtype)
    for q in prange(n * c):
        m, i = q // c, q % c
        for Y in range(ho):
            top, bottom, best = x[m, i, 2 * Y], x[m, i, 2 * Y + 1], out[m, i, Y]
            for X in range(wo):
                best[X] = _first_of_four(top[2 * X], top[2 * X + 1], bottom[2 * X],
                                         bottom[2 * X + 1])[0]
    return out


@njit(parallel=True, **_jit)
def _max_grad_2x2(x, delta):
    """`_max_grad` for 2x2 windows at stride 2 of (N, C, H, W) maps: a row pair of
    windows' winners found first, the two rows zeroed, then each δ written at its
    winner (one loop doing all three ran 3x slower: 7.3 against 2.1 ms for modern.cnn's
    first pool at batch 128, float32, one thread)."""
    n, c, h, w = x.shape
    ho, wo = delta.shape[2], delta.shape[3]
    out = np.empty((n, c, h, w), delta.dtype)
    zero = delta.dtype.type(0)
    for q in prange(n * c):
        m, i = q // c, q % c
        gs = out[m, i].reshape(-1)
        taps = np.empty(wo, np.int64)
        for Y in range(ho):
            top, bottom, d = x[m, i, 2 * Y], x[m, i, 2 * Y + 1], delta[m, i, Y]
            for X in range(wo):
                taps[X] = _first_of_four(top[2 * X], top[2 * X + 1], bottom[2 * X],
                                         bottom[2 * X + 1])[1]
            for p in range(2 * Y * w, (2 * Y + 2) * w):
                gs[p] = zero
            for X in range(wo):
                t = taps[X]
                gs[(2 * Y + t // 2) * w + 2 * X + t % 2] = d[X]
        for p in range(2 * ho * w, h * w):
            gs[p] = zero
    return out


@njit(inline="always")
def _row_means(xs, off, Z, Y, kd, kh, kw, sd, sh, sw, pd, ph, pw, d, h, w, out):
    """The mean of each window of output row (Z, Y): its taps added in row-major order
    from 0 (those in the padding count as zeros), divided by the window's size."""
    wo, k = out.shape[0], out.dtype.type(kd * kh * kw)
    lo, hi = _inside(sw, pw, kw, w, wo) if _within(Z, sd, pd, kd, d) and \
        _within(Y, sh, ph, kh, h) else (0, 0)
    base = ((Z * sd - pd) * h + Y * sh - ph) * w - pw
    for X in range(lo, hi):
        s = out.dtype.type(0)
        for t in range(kd * kh * kw):
            s += xs[base + X * sw + off[t]]
        out[X] = s / k
    c0, c1 = _taps(Z, sd, pd, kd, d)
    a0, a1 = _taps(Y, sh, ph, kh, h)
    for X in range(wo if lo > 0 or hi < wo else 0):
        if X < lo or X >= hi:
            b0, b1 = _taps(X, sw, pw, kw, w)
            s = out.dtype.type(0)
            for cc in range(c0, c1):
                for a in range(a0, a1):
                    for b in range(b0, b1):
                        s += xs[base + X * sw + off[(cc * kh + a) * kw + b]]
            out[X] = s / k


@njit(parallel=True, **_jit)
def _mean(x, kd, kh, kw, sd, sh, sw, pd, ph, pw, do, ho, wo):
    n, c, d, h, w = x.shape
    out = np.empty((n, c, do, ho, wo), x.dtype)
    off = _offsets(kd, kh, kw, h, w)
    for q in prange(n * c):
        m, i = q // c, q % c
        xs = x[m, i].reshape(-1)
        for Z in range(do):
            for Y in range(ho):
                _row_means(xs, off, Z, Y, kd, kh, kw, sd, sh, sw, pd, ph, pw, d, h, w,
                           out[m, i, Z, Y])
    return out


@njit(parallel=True, **_jit)
def _mean_grad(delta, kd, kh, kw, sd, sh, sw, pd, ph, pw, d, h, w):
    """Each δ/k spread over its window: written once per pixel where the windows tile
    the map, else added tap by tap in row-major order, as the reference adds."""
    n, c, do, ho, wo = delta.shape
    tiled = sd == kd and sh == kh and sw == kw and pd == 0 and ph == 0 and pw == 0
    out = np.empty((n, c, d, h, w), delta.dtype) if tiled else \
        np.zeros((n, c, d, h, w), delta.dtype)
    k = delta.dtype.type(kd * kh * kw)
    off = _offsets(kd, kh, kw, h, w)
    for q in prange(n * c):
        m, i = q // c, q % c
        gs = out[m, i].reshape(-1)
        if tiled:
            for Z in range(do):
                for Y in range(ho):
                    for X in range(wo):
                        share = delta[m, i, Z, Y, X] / k
                        corner = (Z * kd * h + Y * kh) * w + X * kw
                        for t in range(kd * kh * kw):
                            gs[corner + off[t]] = share
            _zero_rest(out, m, i, do, ho, wo, sd, sh, sw)
        for t in range(0 if tiled else kd * kh * kw):
            Z0, Z1 = _outputs(t // (kh * kw), sd, pd, do, d)
            Y0, Y1 = _outputs(t // kw % kh, sh, ph, ho, h)
            X0, X1 = _outputs(t % kw, sw, pw, wo, w)
            for Z in range(Z0, Z1):
                for Y in range(Y0, Y1):
                    for X in range(X0, X1):
                        corner = ((Z * sd - pd) * h + Y * sh - ph) * w + X * sw - pw
                        gs[corner + off[t]] += delta[m, i, Z, Y, X] / k
    return out
