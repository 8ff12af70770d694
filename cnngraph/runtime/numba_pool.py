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
def _winner(x, m, i, Y, X, kh, kw, sh, sw, ph, pw):
    """(row, column) of the window's first maximum (a NaN wins), or (-1, -1)."""
    h, w = x.shape[2], x.shape[3]
    best, br, bc = x.dtype.type(0), -1, -1
    for a in range(kh):
        r = Y * sh - ph + a
        if 0 <= r < h:
            for b in range(kw):
                c = X * sw - pw + b
                if 0 <= c < w:
                    v = x[m, i, r, c]
                    if br < 0 or v > best or (v != v and best == best):
                        best, br, bc = v, r, c
    return br, bc


@njit(parallel=True, **_jit)
def pool_max(x, kh, kw, sh, sw, ph, pw, ho, wo):
    n, c = x.shape[0], x.shape[1]
    out = np.empty((n, c, ho, wo), x.dtype)
    for m in prange(n):
        for i in range(c):
            for Y in range(ho):
                for X in range(wo):
                    r, q = _winner(x, m, i, Y, X, kh, kw, sh, sw, ph, pw)
                    out[m, i, Y, X] = x[m, i, r, q]
    return out


@njit(parallel=True, **_jit)
def pool_max_grad(x, delta, kh, kw, sh, sw, ph, pw):
    n, c, h, w = x.shape
    ho, wo = delta.shape[2], delta.shape[3]
    out = np.zeros((n, c, h, w), delta.dtype)
    for m in prange(n):
        for i in range(c):
            for Y in range(ho):
                for X in range(wo):
                    r, q = _winner(x, m, i, Y, X, kh, kw, sh, sw, ph, pw)
                    out[m, i, r, q] += delta[m, i, Y, X]
    return out


@njit(parallel=True, **_jit)
def pool_mean(x, kh, kw, sh, sw, ph, pw, ho, wo):
    n, c, h, w = x.shape
    out = np.empty((n, c, ho, wo), x.dtype)
    k = x.dtype.type(kh * kw)
    for m in prange(n):
        for i in range(c):
            for Y in range(ho):
                for X in range(wo):
                    s = x.dtype.type(0)
                    for a in range(kh):
                        r = Y * sh - ph + a
                        if 0 <= r < h:
                            for b in range(kw):
                                q = X * sw - pw + b
                                if 0 <= q < w:
                                    s += x[m, i, r, q]
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
                for b in range(kw):
                    for Y in range(ho):
                        r = Y * sh - ph + a
                        if 0 <= r < h:
                            for X in range(wo):
                                q = X * sw - pw + b
                                if 0 <= q < w:
                                    out[m, i, r, q] += delta[m, i, Y, X] / k
    return out
