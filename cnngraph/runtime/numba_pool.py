"""Pooling kernels compiled with numba, for maps (N, C, H, W): the max and the mean
of each window and their gradients (rules/pool.py defines them).

Each walks the batch in parallel (prange over images) and an image's windows
in one fixed order, so the bits never depend on the thread count.  The max
keeps the first tap in row-major window order that is larger than all before
it (the reference's np.argmax winner), a NaN winning as there; padding taps
are skipped, which is what −∞ padding amounts to.  The mean adds a window's
taps in row-major order and divides by the window's size, and its gradient
adds δ/k tap by tap over every window, both in the reference's order (which
reassociation may still change: they agree with it to round-off).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_conv import FASTMATH

_jit = dict(fastmath=FASTMATH, cache=True, error_model="numpy")


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
def _winners(x, m, i, kh, kw, sh, sw, ph, pw, best, tap):
    """Each window's first maximum (a NaN wins) and its tap a·kw + b, row-major."""
    h, w = x.shape[2], x.shape[3]
    ho, wo = tap.shape
    for Y in range(ho):
        a0, a1 = _taps(Y, sh, ph, kh, h)
        for X in range(wo):
            b0, b1 = _taps(X, sw, pw, kw, w)
            v0 = x[m, i, Y * sh - ph + a0, X * sw - pw + b0]
            t0 = a0 * kw + b0
            for a in range(a0, a1):
                row = x[m, i, Y * sh - ph + a]
                for b in range(b0, b1):
                    v = row[X * sw - pw + b]
                    if v0 == v0 and not v <= v0:     # larger, or a first NaN
                        v0, t0 = v, a * kw + b
            best[Y, X], tap[Y, X] = v0, t0


@njit(parallel=True, **_jit)
def pool_max(x, kh, kw, sh, sw, ph, pw, ho, wo):
    n, c = x.shape[0], x.shape[1]
    out = np.empty((n, c, ho, wo), x.dtype)
    for m in prange(n):
        tap = np.empty((ho, wo), np.int64)
        for i in range(c):
            _winners(x, m, i, kh, kw, sh, sw, ph, pw, out[m, i], tap)
    return out


@njit(parallel=True, **_jit)
def pool_max_grad(x, delta, kh, kw, sh, sw, ph, pw):
    """Each δ added at its window's winner; where windows overlap, tap by tap in
    row-major order as the reference adds them, so a pixel that wins several windows
    sums their δ in the reference's order."""
    n, c, h, w = x.shape
    ho, wo = delta.shape[2], delta.shape[3]
    out = np.zeros((n, c, h, w), delta.dtype)
    overlap = sh < kh or sw < kw
    for m in prange(n):
        best = np.empty((ho, wo), x.dtype)
        tap = np.empty((ho, wo), np.int64)
        for i in range(c):
            _winners(x, m, i, kh, kw, sh, sw, ph, pw, best, tap)
            for t in range(kh * kw if overlap else 1):
                for Y in range(ho):
                    for X in range(wo):
                        if overlap and tap[Y, X] != t:
                            continue
                        a, b = divmod(tap[Y, X], kw)
                        out[m, i, Y * sh - ph + a, X * sw - pw + b] += delta[m, i, Y, X]
    return out


@njit(parallel=True, **_jit)
def pool_mean(x, kh, kw, sh, sw, ph, pw, ho, wo):
    n, c, h, w = x.shape
    out = np.empty((n, c, ho, wo), x.dtype)
    k = x.dtype.type(kh * kw)
    for m in prange(n):
        for i in range(c):
            for Y in range(ho):
                a0, a1 = _taps(Y, sh, ph, kh, h)
                for X in range(wo):
                    b0, b1 = _taps(X, sw, pw, kw, w)
                    s = x.dtype.type(0)
                    for a in range(a0, a1):
                        row = x[m, i, Y * sh - ph + a]
                        for b in range(b0, b1):
                            s += row[X * sw - pw + b]
                    out[m, i, Y, X] = s / k
    return out


@njit(parallel=True, **_jit)
def pool_mean_grad(delta, kh, kw, sh, sw, ph, pw, h, w):
    n, c, ho, wo = delta.shape
    out = np.zeros((n, c, h, w), delta.dtype)
    k = delta.dtype.type(kh * kw)
    for m in prange(n):
        for i in range(c):
            for a in range(kh):
                Y0, Y1 = _outputs(a, sh, ph, ho, h)
                for b in range(kw):
                    X0, X1 = _outputs(b, sw, pw, wo, w)
                    for Y in range(Y0, Y1):
                        src = delta[m, i, Y]
                        dst = out[m, i, Y * sh - ph + a]
                        for X in range(X0, X1):
                            dst[X * sw - pw + b] += src[X] / k
    return out
