"""Stride-1 convolutions of 2-D maps (conv_valid's and conv_strided's forward, input
gradient and kernel gradient) on numba_tiles' register tiles, image by image.

An image's maps are copied, zero padded, into planes H x W; with the padded width
W as the row pitch, output position P = Y·W + X of a map reads the input at
P + off_t, off_t = i·H·W + a·dh·W + b·dw for tap t = (i, a, b), so a convolution is
a small matrix product per image, out[o, P] = Σ_t K[t, o] src[off_t + P], computed
at every P < ho·W (the columns X >= wo are dropped).  One padded image and its
output stay in cache.  The input gradient is the same correlation of the padded δ
with the flipped, transposed kernel.

Each output is one FMA chain over the taps in the order the row kernels before
these (until a4b65fa) summed them, so the forward pass and the input gradient
kept their bits; both take the batch in chunks, one or more per
thread.  The kernel gradient runs with the maps along the vectors (δ transposed
per image): each entry one chain over the positions of a chunk's images in order,
chunks set by the batch size alone and added in order.  Bitwise the same for any
thread count.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_conv import _jit, chunking
from .numba_tiles import WIDEST, correlate_tiles, gradient_tiles


@njit(**_jit)
def _offsets(c, kh, kw, H, W, dh, dw, rows_down):
    """off_t for t = (i, a, b) in that order; ``rows_down`` walks a from kh - 1 to 0."""
    offs = np.empty(c * kh * kw, np.int64)
    t = 0
    for i in range(c):
        for a in range(kh):
            row = kh - 1 - a if rows_down else a
            for b in range(kw):
                offs[t] = i * H * W + row * dh * W + b * dw
                t += 1
    return offs


@njit(**_jit)
def _pad_image(x, m, pt, pl, H, W, flat):
    """The interior of flat's planes (zero padded, H x W each) = image m of x; a
    negative pad crops.  Unsigned indices: numba adds no negative-index fix-up, and
    the row copies vectorize."""
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    y0, y1 = max(0, -pt), min(h, H - pt)
    x0, x1 = max(0, -pl), min(w, W - pl)
    xf = x.reshape(x.size)
    run = np.uint64(x1 - x0)
    for i in range(c):
        for Y in range(y0, y1):
            d = np.uint64((i * H + Y + pt) * W + x0 + pl)
            s = np.uint64(((m * c + i) * h + Y) * w + x0)
            for X in range(run):
                flat[d + X] = xf[s + X]


@njit(**_jit)
def _crop_out(out, rowq, W, m, y):
    """y[m, o, Y, X] = out[o·rowq + Y·W + X]: the kept columns of each output row."""
    c_out, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    yf = y.reshape(y.size)
    run = np.uint64(wo)
    for o in range(c_out):
        for Y in range(ho):
            s = np.uint64(o * rowq + Y * W)
            d = np.uint64(((m * c_out + o) * ho + Y) * wo)
            for X in range(run):
                yf[d + X] = out[s + X]


@njit(**_jit)
def _correlate(x, kq, offs, pt, pb, pl, pr, start, stop, y):
    """y[start:stop] = the stride-1 correlation of padded x with kq[t, o] at offsets
    offs[t] (`_offsets`), image by image; the tiles take 8, 4, 2 or 1 maps at once."""
    c, c_out = x.shape[1], kq.shape[1]
    H, W = x.shape[2] + pt + pb, x.shape[3] + pl + pr
    src = np.zeros(c * H * W + WIDEST + W, x.dtype)
    npos = y.shape[2] * W
    rowq = (npos + WIDEST - 1) // WIDEST * WIDEST
    out = np.empty(c_out * rowq, x.dtype)
    for m in range(start, stop):
        _pad_image(x, m, pt, pl, H, W, src)
        o0 = 0
        while o0 < c_out:
            left = c_out - o0
            R = 8 if left >= 8 else 4 if left >= 4 else 2 if left >= 2 else 1
            correlate_tiles(src, offs, kq, o0, R, out, o0 * rowq, rowq, npos)
            o0 += R
        _crop_out(out, rowq, W, m, y)


@njit(parallel=True, **_jit)
def conv_strided(x, kernel, pt, pb, pl, pr, dh, dw, threads):
    """y[n, o, Y, X] = Σ_iab x̃[n, i, Y + dh·a, X + dw·b] k[o, i, a, b] at stride 1, x̃
    zero padded; each output summed over i, then a, then b."""
    n, c = x.shape[0], x.shape[1]
    c_out, _, kh, kw = kernel.shape
    H, W = x.shape[2] + pt + pb, x.shape[3] + pl + pr
    kq = np.ascontiguousarray(kernel.reshape(c_out, c * kh * kw).T)
    offs = _offsets(c, kh, kw, H, W, dh, dw, False)
    y = np.empty((n, c_out, H - dh * (kh - 1), W - dw * (kw - 1)), x.dtype)
    count, size = chunking(n, threads)
    for chunk in prange(count):
        start = chunk * size
        _correlate(x, kq, offs, pt, pb, pl, pr, start, min(n, start + size), y)
    return y


@njit(**_jit)
def _full_taps(kernel, c_out, H, W, dh, dw, rows_down):
    """The flipped, transposed kernel kq[(o, a, b), i] and its offsets, taps (o, a, b) in
    order (a from the bottom if ``rows_down``)."""
    c, kh, kw = kernel.shape[1], kernel.shape[2], kernel.shape[3]
    kq = np.empty((c_out * kh * kw, c), kernel.dtype)
    t = 0
    for o in range(c_out):
        for a in range(kh):
            row = kh - 1 - a if rows_down else a
            for b in range(kw):
                for i in range(c):
                    kq[t, i] = kernel[o, i, kh - 1 - row, kw - 1 - b]
                t += 1
    return kq, _offsets(c_out, kh, kw, H, W, dh, dw, rows_down)


@njit(parallel=True, **_jit)
def full(delta, kernel, h, w, pt, pb, pl, pr, dh, dw, threads, rows_down):
    """The input gradient: δ padded by the kernel's reach less the padding, correlated
    with the flipped, transposed kernel (`_full_taps`)."""
    n, c_out = delta.shape[0], delta.shape[1]
    ph, pw = dh * (kernel.shape[2] - 1), dw * (kernel.shape[3] - 1)
    H, W = delta.shape[2] + 2 * ph - pt - pb, delta.shape[3] + 2 * pw - pl - pr
    kq, offs = _full_taps(kernel, c_out, H, W, dh, dw, rows_down)
    dx = np.empty((n, kernel.shape[1], h, w), delta.dtype)
    count, size = chunking(n, threads)
    for chunk in prange(count):
        start = chunk * size
        _correlate(delta, kq, offs, ph - pt, ph - pb, pw - pl, pw - pr, start,
                   min(n, start + size), dx)
    return dx


def conv_strided_full(delta, kernel, h, w, pt, pb, pl, pr, dh, dw, threads):
    """dx = the full true convolution of δ with the dilated kernel, cropped by the
    padding (stride 1), each value summed over o, then a, then b."""
    return full(delta, kernel, h, w, pt, pb, pl, pr, dh, dw, threads, False)


def conv_valid(x, kernel, threads):
    """The seed's valid correlation (runtime/numerics.py's conventions)."""
    return conv_strided(x, kernel, 0, 0, 0, 0, 1, 1, threads)


def conv_full(delta, kernel, threads):
    """The seed's full true convolution of δ with the kernel, kernel rows from the
    bottom (the order conv_full's bits were made in)."""
    kh, kw = kernel.shape[2], kernel.shape[3]
    return full(delta, kernel, delta.shape[2] + kh - 1, delta.shape[3] + kw - 1,
                0, 0, 0, 0, 1, 1, threads, True)


@njit(**_jit)
def _gradient_chunk(x, delta, kh, kw, pt, pb, pl, pr, dh, dw, start, stop, part):
    """part[t, o] += images start..stop's kernel gradient, image by image: x padded
    (planes at pitch W), δ transposed to dt[(Y·wo + X)·ldo + o]; part padded to whole
    tiles, its sums carried from image to image (one chain each)."""
    c, c_out, ho, wo = x.shape[1], delta.shape[1], delta.shape[2], delta.shape[3]
    H, W = x.shape[2] + pt + pb, x.shape[3] + pl + pr
    ldo = part.shape[1]
    src = np.zeros(c * H * W + W, x.dtype)
    offs = np.zeros(part.shape[0], np.int64)
    offs[:c * kh * kw] = _offsets(c, kh, kw, H, W, dh, dw, False)
    dt = np.zeros(ho * wo * ldo, x.dtype)
    g = part.reshape(part.size)
    for m in range(start, stop):
        _pad_image(x, m, pt, pl, H, W, src)
        for Y in range(ho):
            for X in range(wo):
                row = (Y * wo + X) * ldo
                for o in range(c_out):
                    dt[row + o] = delta[m, o, Y, X]
        gradient_tiles(src, offs, dt, ldo, ho, wo, W, g)


@njit(parallel=True, **_jit)
def conv_strided_grad_kernel(x, delta, kh, kw, pt, pb, pl, pr, dh, dw):
    """g[o, i, a, b] = Σ_n Σ_YX x̃[n, i, Y + dh·a, X + dw·b] δ[n, o, Y, X] at stride 1:
    per-chunk sums (chunks from the batch size alone) added in chunk order.  Fewer
    than 8 maps leave lanes idle and still ran 1.1-5x faster than the batch-innermost
    dot products before."""
    n, c, c_out = x.shape[0], x.shape[1], delta.shape[1]
    taps = c * kh * kw
    count, size = chunking(n)
    parts = np.zeros((count, (taps + 15) // 16 * 16, (c_out + 7) // 8 * 8), x.dtype)
    for chunk in prange(count):
        start = chunk * size
        _gradient_chunk(x, delta, kh, kw, pt, pb, pl, pr, dh, dw, start,
                        min(n, start + size), parts[chunk])
    total = parts[0, :taps, :c_out].copy()
    for chunk in range(1, count):
        total += parts[chunk, :taps, :c_out]
    return np.ascontiguousarray(total.T).reshape(c_out, c, kh, kw)
