"""Convolutions of 1-, 2- and 3-D maps at any stride, padding and dilation (conv_strided's
forward, input gradient and kernel gradient; the seed's conv_valid and conv_full) on
numba_tiles' register tiles, image by image.  Maps of lower rank run as 3-D ones with
unit dimensions in front, (N, C, D, H, W): the same sums, term for term.

An image's maps are copied, zero padded, into planes Dq x Hq x Wq split by the stride
into phases: phase (p, q, r) of a map holds the padded pixels whose coordinates are
p, q, r modulo the stride (at stride 1, the padded map itself).  Output position
P = (Z·Hq + Y)·Wq + X then reads the input at P + off_t for each tap t = (i, c, a, b),
off_t = the tap's phase plane + ⌊dd·c/sd⌋·Hq·Wq + ⌊dh·a/sh⌋·Wq + ⌊dw·b/sw⌋ (`_offsets`),
so a convolution is a small matrix product per image, out[o, P] = Σ_t K[t, o] src[off_t + P],
computed at every P of the output's rows at pitch Wq (the columns X >= wo dropped).  One
padded image and its output stay in cache, and the fused plan's bias and float32
sigmoid or tanh (compiler/fuse.py's epilogues) are applied there, as the rows are
copied out.  Where most of those positions would be dropped, the forward pass
computes the outputs' own positions instead (numba_listed), with the same bits.

The input gradient (the full true convolution of the stride-dilated δ) is one such
correlation per phase of the padded input: the taps that reach a phase, reversed, read
δ padded in front (`_phase_taps`), and the results are scattered into the phase's
pixels; pixels no tap reaches get 0.

Each output is one FMA chain over the taps in a fixed order: (i, c, a, b) forward,
(o, c, a, b) with c, a, b from the kernel's far end backward (the order the row
kernels before these, until a4b65fa, summed 2-D maps in: their bits are kept); both
take the batch in chunks, one or more per thread.  The kernel gradient runs with the
maps along the vectors (δ transposed per image), several small images a call: each
entry one chain over the positions of a chunk's images in order, chunks set by the
batch size alone and added in order.  Bitwise the same for any thread count.  (The
input gradient runs along the batch instead where that is cheaper: numba_full.)
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_activations import activate_block
from .numba_conv import _jit, chunking
from .numba_listed import AUTO, LISTED, correlate_listed, listed_cheaper, listed_operands
from .numba_phases import _offsets, _planes, _split_image
from .numba_tiles import WIDEST, correlate_tiles, gradient_tiles

#: δ's positions the kernel-gradient tiles take per call, whole images: their sums load
#: and store once a call, no longer once an image (float32, one thread, batches 16 and
#: 64, against one image a call, interleaved: simard2003.cnn's C2, 25 positions an
#: image, 10 images a call, 1.13-1.14x faster; rows1d.cnn's C2 1.40-1.68x, shapes3d.cnn's
#: C2 1.06x; modern.cnn's 14x14 and 28x28 maps take one image a call, as before)
GROUP_POSITIONS = 256


@njit(**_jit)
def _all_maps(src, offs, kq, out, rowq, npos):
    """out[o·rowq + P] = Σ_t kq[t, o] src[offs[t] + P] for P < npos, every map o: the
    tiles take 8, 4, 2 or 1 maps at once."""
    count = kq.shape[1]
    o0 = 0
    while o0 < count:
        left = count - o0
        R = 8 if left >= 8 else 4 if left >= 4 else 2 if left >= 2 else 1
        correlate_tiles(src, offs, kq, o0, R, out, o0 * rowq, rowq, npos)
        o0 += R


@njit(**_jit)
def _rounded(npos):
    """npos rounded up to whole tiles."""
    return (npos + WIDEST - 1) // WIDEST * WIDEST


@njit(**_jit)
def _correlate(x, kq, offs, before, s, nq, start, stop, y, bias, act, gain, scale):
    """y[start:stop] = the correlation of padded, phase-split x with kq[t, o] at offsets
    offs[t] (`_offsets`), image by image, plus bias[o] where bias is not empty (`_write`),
    then through the float32 activation ``act`` (numba_activations' code; 0: none)."""
    c, c_out, do, ho, wo = x.shape[1], kq.shape[1], y.shape[2], y.shape[3], y.shape[4]
    src = np.zeros(c * s[0] * s[1] * s[2] * nq[0] * nq[1] * nq[2] + WIDEST + nq[2], x.dtype)
    npos = ((do - 1) * nq[1] + ho) * nq[2]
    rowq = _rounded(npos)
    out = np.empty(c_out * rowq, x.dtype)
    image = c_out * do * ho * wo
    summed = np.empty(image if act else 0, x.dtype)
    yf = y.reshape(y.size)
    for m in range(start, stop):
        _split_image(x, m, before, s, nq, src)
        _all_maps(src, offs, kq, out, rowq, npos)
        if act:
            _write(out, rowq, nq, bias, summed, 0, c_out, do, ho, wo)
            activate_block(summed, yf[m * image:(m + 1) * image], act, gain, scale)
        else:
            _write(out, rowq, nq, bias, yf, m * image, c_out, do, ho, wo)


@njit(**_jit)
def _write(out, rowq, nq, bias, to, at, c_out, do, ho, wo):
    """to[at:] = the output maps' rows from out (their first wo columns at pitch nq[2]),
    each plus its map's bias where bias is not empty: add_bias's sum."""
    run = np.uint64(wo)
    for o in range(c_out):
        b = bias[o] if bias.shape[0] else out.dtype.type(0)
        for Z in range(do):
            for Y in range(ho):
                q = np.uint64(o * rowq + (Z * nq[1] + Y) * nq[2])
                d = np.uint64(at + ((o * do + Z) * ho + Y) * wo)
                if bias.shape[0]:
                    for X in range(run):
                        to[d + X] = out[q + X] + b
                else:
                    for X in range(run):
                        to[d + X] = out[q + X]


@njit(parallel=True, **_jit)
def conv_strided(x, kernel, s, before, after, d, threads, bias, act, gain, scale, least,
                 layout):
    """y[n, o, Z, Y, X] = Σ_icab x̃[n, i, sd·Z + dd·c, sh·Y + dh·a, sw·X + dw·b] k[o, i, c, a, b],
    x̃ zero padded; each output summed over i, then c, a and b; then, fused as it is
    written, + bias[o] (an empty bias: none) and, with a y of at least ``least``
    values, numba_activations' float32 activation ``act`` of ``gain`` and ``scale``
    (`activate_block`; 0: none).  The sums by the map tiles or at listed positions
    (numba_listed's ``layout``; AUTO: the cheaper): the same bits either way.  (Every
    caller passes the layout: an omitted one would be another signature to compile.)"""
    n, c = x.shape[0], x.shape[1]
    c_out = kernel.shape[0]
    k = np.array(kernel.shape[2:])
    size = np.array(x.shape[2:])
    nq = _planes(size, before, after, s)
    shape = (size + before + after - d * (k - 1) - 1) // s + 1
    kq = np.ascontiguousarray(kernel.reshape(c_out, c * k[0] * k[1] * k[2]).T)
    offs = _offsets(c, k, s, d, nq)
    y = np.empty((n, c_out, shape[0], shape[1], shape[2]), x.dtype)
    if y.size < least:
        act = 0
    count, per = chunking(n, threads)
    npos = ((shape[0] - 1) * nq[1] + shape[1]) * nq[2]
    if layout == LISTED or layout == AUTO and listed_cheaper(
            offs.shape[0], c_out, npos, shape[0] * shape[1] * shape[2], x.itemsize):
        kt, ldo, pos = listed_operands(kq, shape, nq, x.itemsize)
        for chunk in prange(count):
            start = chunk * per
            correlate_listed(x, kt, ldo, offs, pos, before, s, nq, start,
                             min(n, start + per), y, bias, act, gain, scale)
    else:
        for chunk in prange(count):
            start = chunk * per
            _correlate(x, kq, offs, before, s, nq, start, min(n, start + per), y, bias,
                       act, gain, scale)
    return y


@njit(**_jit)
def _phase_taps(k, s, d, before, size, do, rows_down):
    """Per dimension j and phase p of the padded input, the taps c reaching it
    ((d·c) % s = p) from the kernel's far end (rows, j = 1, from its near end if
    ``rows_down``), their reads in δ padded by ``front`` (so that position u of the
    phase reads δ̃[u + read]), and the phase's first position u0 and count inside the
    input; δ's padding in front and behind (negative: cropped)."""
    K, S = max(k[0], k[1], k[2]), max(s[0], s[1], s[2])
    taps = np.zeros((3, S, K), np.int64)
    reads = np.zeros((3, S, K), np.int64)
    ntaps = np.zeros((3, S), np.int64)
    u0 = np.zeros((3, S), np.int64)
    count = np.zeros((3, S), np.int64)
    front = np.empty(3, np.int64)
    behind = np.empty(3, np.int64)
    for j in range(3):
        reach = d[j] * (k[j] - 1) // s[j]
        first, last = 1 << 62, 0
        for p in range(s[j]):
            u0[j, p] = (before[j] - p + s[j] - 1) // s[j]
            end = (before[j] + size[j] - p + s[j] - 1) // s[j]
            count[j, p] = max(0, end - u0[j, p])
            first, last = min(first, u0[j, p]), max(last, end)
        front[j], behind[j] = reach - first, last - do[j]
        for p in range(s[j]):
            t = 0
            for q in range(k[j]):
                c = q if rows_down and j == 1 else k[j] - 1 - q
                if d[j] * c % s[j] == p:
                    taps[j, p, t] = c
                    reads[j, p, t] = u0[j, p] - first + reach - (d[j] * c - p) // s[j]
                    t += 1
            ntaps[j, p] = t
    return taps, reads, ntaps, u0, count, front, behind


@njit(inline="always", **_jit)
def _phase(p, s):
    """Phase p's index along each dimension, phases in C order."""
    return p // (s[1] * s[2]), p // s[2] % s[1], p % s[2]


@njit(**_jit)
def _full_taps(kernel, taps, reads, ntaps, nd, s):
    """Every phase's flipped, transposed kernel kq[(o, c, a, b), i] and offsets into δ̃
    (extents nd), phases in order, with where each phase's taps start."""
    c_out, c = kernel.shape[0], kernel.shape[1]
    phases = s[0] * s[1] * s[2]
    starts = np.zeros(phases + 1, np.int64)
    for p in range(phases):
        pz, py, px = _phase(p, s)
        starts[p + 1] = starts[p] + c_out * ntaps[0, pz] * ntaps[1, py] * ntaps[2, px]
    kq = np.empty((starts[phases], c), kernel.dtype)
    offs = np.empty(starts[phases], np.int64)
    for p in range(phases):
        pz, py, px = _phase(p, s)
        t = starts[p]
        for o in range(c_out):
            for a in range(ntaps[0, pz]):
                for b in range(ntaps[1, py]):
                    for e in range(ntaps[2, px]):
                        for i in range(c):
                            kq[t, i] = kernel[o, i, taps[0, pz, a], taps[1, py, b], taps[2, px, e]]
                        offs[t] = ((o * nd[0] + reads[0, pz, a]) * nd[1]
                                   + reads[1, py, b]) * nd[2] + reads[2, px, e]
                        t += 1
    return kq, offs, starts


@njit(**_jit)
def _gradient_images(delta, kq, offs, starts, s, before, u0, count, front, nd, start, stop, dx):
    """dx[start:stop], image by image: δ padded (`_phase_taps`' front), then per phase
    its correlation scattered into the phase's pixels."""
    c_out, c = delta.shape[1], dx.shape[1]
    D, H, W = dx.shape[2], dx.shape[3], dx.shape[4]
    dxf = dx.reshape(dx.size)
    one = np.ones(3, np.int64)
    src = np.zeros(c_out * nd[0] * nd[1] * nd[2] + WIDEST + nd[2], delta.dtype)
    out = np.empty(c * _rounded(nd[0] * nd[1] * nd[2]), delta.dtype)
    for m in range(start, stop):
        _split_image(delta, m, front, one, nd, src)
        for p in range(starts.shape[0] - 1):
            pz, py, px = _phase(p, s)
            nz, ny, nx = count[0, pz], count[1, py], count[2, px]
            if nz * ny * nx == 0 or starts[p + 1] == starts[p]:
                continue
            npos = ((nz - 1) * nd[1] + ny) * nd[2]
            rowq = _rounded(npos)
            _all_maps(src, offs[starts[p]:starts[p + 1]], kq[starts[p]:starts[p + 1]],
                      out, rowq, npos)
            x0 = s[2] * u0[2, px] + px - before[2]
            for i in range(c):
                for u in range(nz):
                    z = s[0] * (u0[0, pz] + u) + pz - before[0]
                    for v in range(ny):
                        y = s[1] * (u0[1, py] + v) + py - before[1]
                        at = np.uint64(i * rowq + (u * nd[1] + v) * nd[2])
                        row = (((m * c + i) * D + z) * H + y) * W + x0
                        if s[2] == 1:  # a run: unsigned indices, so that it copies as vectors
                            d = np.uint64(row)
                            for w in range(np.uint64(nx)):
                                dxf[d + w] = out[at + w]
                        else:
                            for w in range(nx):
                                dxf[row + s[2] * w] = out[at + np.uint64(w)]


@njit(parallel=True, **_jit)
def full(delta, kernel, size, s, before, d, threads, rows_down):
    """The input gradient, maps of extents ``size``: per phase of the padded input, δ
    correlated with the phase's taps, reversed (`_phase_taps`, `_full_taps`)."""
    n, c = delta.shape[0], kernel.shape[1]
    k = np.array(kernel.shape[2:])
    do = np.array(delta.shape[2:])
    taps, reads, ntaps, u0, count, front, behind = _phase_taps(k, s, d, before, size, do,
                                                               rows_down)
    nd = do + front + behind
    kq, offs, starts = _full_taps(kernel, taps, reads, ntaps, nd, s)
    reached = True
    for j in range(3):
        for p in range(s[j]):
            reached = reached and ntaps[j, p] > 0
    shape = (n, c, size[0], size[1], size[2])
    dx = np.empty(shape, delta.dtype) if reached else np.zeros(shape, delta.dtype)
    chunks, per = chunking(n, threads)
    for chunk in prange(chunks):
        start = chunk * per
        _gradient_images(delta, kq, offs, starts, s, before, u0, count, front, nd, start,
                         min(n, start + per), dx)
    return dx


@njit(**_jit)
def _gradient_chunk(x, delta, k, before, s, d, nq, start, stop, part, positions):
    """part[t, o] += images start..stop's kernel gradient, ``positions`` of δ's at a time
    (whole images, at least one): each image x padded and phase split, δ transposed to
    dt[((Z·ho + Y)·wo + X)·ldo + o]; part padded to whole tiles, its sums carried from
    image to image and depth to depth (one chain each)."""
    c, c_out = x.shape[1], delta.shape[1]
    do, ho, wo = delta.shape[2], delta.shape[3], delta.shape[4]
    ldo = part.shape[1]
    sstep = c * s[0] * s[1] * s[2] * nq[0] * nq[1] * nq[2] + nq[2]
    offs = np.zeros(part.shape[0], np.int64)
    offs[:c * k[0] * k[1] * k[2]] = _offsets(c, k, s, d, nq)
    dstep = do * ho * wo * ldo
    group = min(stop - start, max(1, positions // (do * ho * wo)))
    src = np.zeros(group * sstep, x.dtype)
    dt = np.zeros(group * dstep, x.dtype)
    g = part.reshape(part.size)
    for first in range(start, stop, group):
        images = min(group, stop - first)
        for m in range(images):
            _split_image(x, first + m, before, s, nq, src[m * sstep:(m + 1) * sstep])
            for Z in range(do):
                for Y in range(ho):
                    for X in range(wo):
                        row = m * dstep + ((Z * ho + Y) * wo + X) * ldo
                        for o in range(c_out):
                            dt[row + o] = delta[first + m, o, Z, Y, X]
        geo = np.array((ldo, do, ho, wo, nq[2], nq[1] * nq[2], images, sstep, dstep),
                       np.int64)
        gradient_tiles(src, offs, dt, geo, g)


@njit(parallel=True, **_jit)
def conv_strided_grad_kernel(x, delta, k, s, before, after, d, positions):
    """g[o, i, c, a, b] = Σ_n Σ_ZYX x̃[n, i, sd·Z + dd·c, sh·Y + dh·a, sw·X + dw·b] δ[n, o, Z, Y, X]:
    per-chunk sums (chunks from the batch size alone) added in chunk order; the tiles
    take ``positions`` of δ's a call (`_gradient_chunk`: the same bits for any; the
    backend passes GROUP_POSITIONS, an argument, not a default: called without it,
    simard2003.cnn's C2 ran 1.6x slower)."""
    n, c, c_out = x.shape[0], x.shape[1], delta.shape[1]
    nq = _planes(np.array(x.shape[2:]), before, after, s)
    taps = c * k[0] * k[1] * k[2]
    count, per = chunking(n)
    parts = np.zeros((count, (taps + 15) // 16 * 16, (c_out + 7) // 8 * 8), x.dtype)
    for chunk in prange(count):
        start = chunk * per
        _gradient_chunk(x, delta, k, before, s, d, nq, start, min(n, start + per),
                        parts[chunk], positions)
    total = parts[0, :taps, :c_out].copy()
    for chunk in range(1, count):
        total += parts[chunk, :taps, :c_out]
    return np.ascontiguousarray(total.T).reshape(c_out, c, k[0], k[1], k[2])


# the seed's valid correlation and full convolution of 2-D maps --------------------------

_UNIT, _NONE = np.ones(3, np.int64), np.zeros(3, np.int64)


def _in_3d(a):
    return a.reshape(a.shape[:2] + (1,) + a.shape[2:])


def conv_valid(x, kernel, threads, bias=None, act=0, gain=0.0, scale=0.0, least=0):
    """The seed's valid correlation (runtime/numerics.py's conventions), with
    conv_strided's fused bias and activation (by default none)."""
    bias = np.zeros(0, x.dtype) if bias is None else bias
    return conv_strided(_in_3d(x), _in_3d(kernel), _UNIT, _NONE, _NONE, _UNIT, threads,
                        bias, act, x.dtype.type(gain), x.dtype.type(scale), least,
                        AUTO)[:, :, 0]


def conv_full(delta, kernel, threads):
    """The seed's full true convolution of δ with the kernel, kernel rows from the
    bottom (the order conv_full's bits were made in)."""
    size = np.array((1, delta.shape[2] + kernel.shape[2] - 1,
                     delta.shape[3] + kernel.shape[3] - 1), np.int64)
    return full(_in_3d(delta), _in_3d(kernel), size, _UNIT, _NONE, _UNIT, threads,
                True)[:, :, 0]
