"""The strided, zero-padded and dilated convolution triple (rules/conv_strided.py)
compiled with numba, in 3-D; 2-D maps at a stride above 1 run as 3-D ones of unit
depth, which sums the same terms in the same order (numba_backend routes 2-D maps at
stride 1 to numba_strided's row kernels, faster there, and 1-D maps to 2-D ones).

A chunk of images is copied into a batch-innermost block split into its stride
phases, (maps, sd, sh, sw, D', H', W' · images), zero-padded while copied: phase
(p, q, r) holds the padded pixels whose coordinates are p, q, r modulo the
stride.  Along each dimension the kernel taps then fall into classes that read
one phase each, at offsets a fixed step apart (`_classes`), so every tap row of
a class reads one contiguous run and a strided convolution is a sum of stride-1
ones: taps applied three at a time to four maps at a time (`_taps4`), so one
load of the input serves twelve multiply-adds.  The input gradient gathers, per
phase, the delta rows its pixels take from (the same rows of taps reversed).

Each output of the forward and input-gradient kernels is summed in one order
fixed by the geometry, whatever the chunks (they take a chunk per thread); the
kernel gradient adds per-row sums in row order and per-chunk sums in chunk
order, its chunks set by the batch and map sizes alone: bitwise the same for
any thread count.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_conv import _jit

#: images per block: the largest count whose padded input block keeps under BLOCK
#: bytes (at most MAX_CHUNK): longer rows vectorize better (3-D maps of 8 x 14^3 ran 25 %
#: faster with 4 MiB than with 1 MiB, though a block then outgrows L2)
BLOCK, MAX_CHUNK = 4096 * 1024, 32


@njit(**_jit)
def _chunking(n, threads, per_image):
    """(chunks, images per chunk): at least ``threads`` chunks, each under BLOCK."""
    cap = max(1, min(MAX_CHUNK, BLOCK // max(1, per_image)))
    count = min(n, max(threads, (n + cap - 1) // cap))
    return count, (n + count - 1) // count


@njit(**_jit)
def _classes(k, s, d):
    """The taps of one dimension grouped by the phase they read: (phase, offset,
    count) per class c, whose taps are c, c + m, c + 2m, ... with m = s / gcd(s, d);
    tap j of class c reads phase row (output + offset + j·e), e = d / gcd(s, d)."""
    g = s
    r = d
    while r:
        g, r = r, g % r
    m = s // g
    info = np.zeros((m, 3), np.int64)
    for c in range(m):
        info[c, 0] = (d * c) % s
        info[c, 1] = (d * c) // s
        info[c, 2] = (k - c + m - 1) // m if c < k else 0
    return info, m, d // g


@njit(inline="always", **_jit)
def _split(n, before, s):
    """Each of n pixels' phase and place in its phase once padded by ``before``."""
    phase, place = np.empty(n, np.int64), np.empty(n, np.int64)
    for j in range(n):
        phase[j], place[j] = (j + before) % s, (j + before) // s
    return phase, place


@njit(inline="always", **_jit)
def _phase_block(x, start, stop, pad, s, qz, qy, qx):
    """Images start..stop of x (n, C, D, H, W) zero-padded by pad (3 x 2) and split
    by stride s into phases of qz x qy x qx: (C, s0, s1, s2, qz, qy, qx · images)."""
    B = stop - start
    block = np.zeros((x.shape[1], s[0], s[1], s[2], qz, qy, qx, B), x.dtype)
    pz, zq = _split(x.shape[2], pad[0, 0], s[0])
    py, yq = _split(x.shape[3], pad[1, 0], s[1])
    px, xq = _split(x.shape[4], pad[2, 0], s[2])
    for i in range(x.shape[1]):
        for z in range(x.shape[2]):
            for y in range(x.shape[3]):
                row = block[i, pz[z], py[y], :, zq[z], yq[y]]
                for m in range(B):
                    src = x[start + m, i, z, y]
                    for w in range(x.shape[4]):
                        row[px[w], xq[w], m] = src[w]
    return block.reshape(x.shape[1], s[0], s[1], s[2], qz, qy, qx * B)


@njit(inline="always", **_jit)
def _phases(size, pad, s):
    """The phase sizes (padded size / stride, rounded up) and the padded pixel count."""
    pz, py, px = size[0] + pad[0, 0] + pad[0, 1], size[1] + pad[1, 0] + pad[1, 1], \
        size[2] + pad[2, 0] + pad[2, 1]
    return -(-pz // s[0]), -(-py // s[1]), -(-px // s[2]), pz * py * px


@njit(inline="always", **_jit)
def _unblock(rows, start, out):
    """out[start + m, o, Z, Y, X] = rows[o, Z, Y, X·B + m]."""
    B = rows.shape[3] // out.shape[4]
    for o in range(rows.shape[0]):
        for Z in range(rows.shape[1]):
            for Y in range(rows.shape[2]):
                row = rows[o, Z, Y]
                for m in range(B):
                    dst = out[start + m, o, Z, Y]
                    for X in range(out.shape[4]):
                        dst[X] = row[X * B + m]


@njit(inline="always", **_jit)
def _rows(x, start, stop, left, width):
    """x[start + m, o, Z, Y, X] at [o, Z, Y, (left + X)·B + m] of rows ``width``
    pixels long, zero elsewhere."""
    B = stop - start
    rows = np.zeros((x.shape[1], x.shape[2], x.shape[3], width * B), x.dtype)
    for o in range(x.shape[1]):
        for Z in range(x.shape[2]):
            for Y in range(x.shape[3]):
                row = rows[o, Z, Y]
                for m in range(B):
                    src = x[start + m, o, Z, Y]
                    for X in range(x.shape[4]):
                        row[(left + X) * B + m] = src[X]
    return rows


@njit(inline="always", **_jit)
def _t3(d0, d1, d2, d3, src, p, st, a0, a1, a2, b0, b1, b2, c0, c1, c2, e0, e1, e2):
    for q in range(d0.shape[0]):
        s0, s1, s2 = src[p + q], src[p + q + st], src[p + q + 2 * st]
        d0[q] += a0 * s0 + a1 * s1 + a2 * s2
        d1[q] += b0 * s0 + b1 * s1 + b2 * s2
        d2[q] += c0 * s0 + c1 * s1 + c2 * s2
        d3[q] += e0 * s0 + e1 * s1 + e2 * s2


@njit(inline="always", **_jit)
def _t1(d0, d1, d2, d3, src, p, a0, b0, c0, e0):
    for q in range(d0.shape[0]):
        s0 = src[p + q]
        d0[q] += a0 * s0
        d1[q] += b0 * s0
        d2[q] += c0 * s0
        d3[q] += e0 * s0


@njit(inline="always", **_jit)
def _taps4(d0, d1, d2, d3, src, base, step, k, o, i, a, b, c, m, count):
    """d_t[q] += Σ_j k[o + t, i, a, b, c + j·m] src[base + q + j·step] (j < count) for
    four output rows d_t: three taps at a time, then one."""
    j = 0
    while j + 3 <= count:
        u, v, w = c + j * m, c + (j + 1) * m, c + (j + 2) * m
        _t3(d0, d1, d2, d3, src, base + j * step, step,
            k[o, i, a, b, u], k[o, i, a, b, v], k[o, i, a, b, w],
            k[o + 1, i, a, b, u], k[o + 1, i, a, b, v], k[o + 1, i, a, b, w],
            k[o + 2, i, a, b, u], k[o + 2, i, a, b, v], k[o + 2, i, a, b, w],
            k[o + 3, i, a, b, u], k[o + 3, i, a, b, v], k[o + 3, i, a, b, w])
        j += 3
    while j < count:
        u = c + j * m
        _t1(d0, d1, d2, d3, src, base + j * step, k[o, i, a, b, u], k[o + 1, i, a, b, u],
            k[o + 2, i, a, b, u], k[o + 3, i, a, b, u])
        j += 1


@njit(inline="always", **_jit)
def _taps1(d0, src, base, step, k, o, i, a, b, c, m, count):
    """_taps4 for one output row."""
    j = 0
    while j + 3 <= count:
        a0, a1, a2 = k[o, i, a, b, c + j * m], k[o, i, a, b, c + (j + 1) * m], \
            k[o, i, a, b, c + (j + 2) * m]
        p = base + j * step
        for q in range(d0.shape[0]):
            d0[q] += a0 * src[p + q] + a1 * src[p + q + step] + a2 * src[p + q + 2 * step]
        j += 3
    while j < count:
        a0, p = k[o, i, a, b, c + j * m], base + j * step
        for q in range(d0.shape[0]):
            d0[q] += a0 * src[p + q]
        j += 1


@njit(inline="always", **_jit)
def _dots4(src, base, step, d0, d1, d2, d3, g0, g1, g2, g3):
    """g_t[j] += Σ_q src[base + q + j·step] d_t[q] for four delta rows d_t."""
    for j in range(g0.shape[0]):
        p = base + j * step
        z = d0.dtype.type(0)
        s0 = s1 = s2 = s3 = z
        for q in range(d0.shape[0]):
            v = src[p + q]
            s0 += v * d0[q]
            s1 += v * d1[q]
            s2 += v * d2[q]
            s3 += v * d3[q]
        g0[j] += s0
        g1[j] += s1
        g2[j] += s2
        g3[j] += s3


@njit(inline="always", **_jit)
def _dots1(src, base, step, d0, g0):
    for j in range(g0.shape[0]):
        p = base + j * step
        s0 = d0.dtype.type(0)
        for q in range(d0.shape[0]):
            s0 += src[p + q] * d0[q]
        g0[j] += s0


@njit(parallel=True, **_jit)
def conv_strided(x, kernel, s, pad, d, threads):
    """y[n, o, Z] = Σ_i Σ_a x̃[n, i, s·Z + d·a] k[o, i, a] (Z, a: 3-D index tuples), x̃
    zero-padded: each output summed over i, then the tap classes of each dimension."""
    n, c = x.shape[0], x.shape[1]
    c_out = kernel.shape[0]
    size = np.array((x.shape[2], x.shape[3], x.shape[4]))
    qz, qy, qx, per = _phases(size, pad, s)
    do = (size[0] + pad[0, 0] + pad[0, 1] - d[0] * (kernel.shape[2] - 1) - 1) // s[0] + 1
    ho = (size[1] + pad[1, 0] + pad[1, 1] - d[1] * (kernel.shape[3] - 1) - 1) // s[1] + 1
    wo = (size[2] + pad[2, 0] + pad[2, 1] - d[2] * (kernel.shape[4] - 1) - 1) // s[2] + 1
    cz, mz, ez = _classes(kernel.shape[2], s[0], d[0])
    cy, my, ey = _classes(kernel.shape[3], s[1], d[1])
    cx, mx, ex = _classes(kernel.shape[4], s[2], d[2])
    y = np.empty((n, c_out, do, ho, wo), x.dtype)
    count, size = _chunking(n, threads, per * c * x.itemsize)
    for chunk in prange(count):
        start = chunk * size
        stop = min(n, start + size)
        B = stop - start
        P = _phase_block(x, start, stop, pad, s, qz, qy, qx)
        out = np.zeros((c_out, do, ho, wo * B), x.dtype)
        for Z in range(do):
            for Y in range(ho):
                for o in range(0, c_out, 4):
                    for i in range(c):
                        for ca in range(mz):
                            for ja in range(cz[ca, 2]):
                                a, zr = ca + ja * mz, Z + cz[ca, 1] + ja * ez
                                for cb in range(my):
                                    for jb in range(cy[cb, 2]):
                                        b, yr = cb + jb * my, Y + cy[cb, 1] + jb * ey
                                        for cc in range(mx):
                                            src = P[i, cz[ca, 0], cy[cb, 0], cx[cc, 0], zr, yr]
                                            base, step = cx[cc, 1] * B, ex * B
                                            if o + 4 <= c_out:
                                                _taps4(out[o, Z, Y], out[o + 1, Z, Y],
                                                       out[o + 2, Z, Y], out[o + 3, Z, Y], src,
                                                       base, step, kernel, o, i, a, b, cc, mx,
                                                       cx[cc, 2])
                                            else:
                                                for r in range(o, c_out):
                                                    _taps1(out[r, Z, Y], src, base, step,
                                                           kernel, r, i, a, b, cc, mx,
                                                           cx[cc, 2])
        _unblock(out, start, y)
    return y


@njit(parallel=True, **_jit)
def conv_strided_full(delta, kernel, size, s, pad, d, threads):
    """dx = the full true convolution of the stride-dilated delta with the dilated kernel,
    cropped to the map ``size``: per phase of dx, each row gathers the delta rows
    that read it, summed over o, then the classes' taps (each row's reversed)."""
    n, c_out, do, ho, wo = delta.shape
    c = kernel.shape[1]
    dq, hq, wq, per = _phases(size, pad, s)
    cz, mz, ez = _classes(kernel.shape[2], s[0], d[0])
    cy, my, ey = _classes(kernel.shape[3], s[1], d[1])
    cx, mx, ex = _classes(kernel.shape[4], s[2], d[2])
    left = 0
    for cc in range(mx):
        left = max(left, cx[cc, 1] + (cx[cc, 2] - 1) * ex)
    dx = np.empty((n, c, size[0], size[1], size[2]), delta.dtype)
    kt = np.ascontiguousarray(kernel.transpose(1, 0, 2, 3, 4))   # input maps first
    pz, zq = _split(size[0], pad[0, 0], s[0])
    py, yq = _split(size[1], pad[1, 0], s[1])
    px, xq = _split(size[2], pad[2, 0], s[2])
    count, chunk_size = _chunking(n, threads, per * c * delta.itemsize)
    for chunk in prange(count):
        start = chunk * chunk_size
        stop = min(n, start + chunk_size)
        B = stop - start
        rows = _rows(delta, start, stop, left, left + wo + wq)
        out = np.zeros((c, s[0], s[1], s[2], dq, hq, wq * B), delta.dtype)
        for ca in range(mz):
            for Rz in range(dq):
                if not pad[0, 0] <= Rz * s[0] + cz[ca, 0] < pad[0, 0] + size[0]:
                    continue
                for cb in range(my):
                    for Ry in range(hq):
                        if not pad[1, 0] <= Ry * s[1] + cy[cb, 0] < pad[1, 0] + size[1]:
                            continue
                        for i in range(0, c, 4):
                            for o in range(c_out):
                                for ja in range(cz[ca, 2]):
                                    Z = Rz - cz[ca, 1] - ja * ez
                                    if not 0 <= Z < do:
                                        continue
                                    a = ca + ja * mz
                                    for jb in range(cy[cb, 2]):
                                        Y = Ry - cy[cb, 1] - jb * ey
                                        if not 0 <= Y < ho:
                                            continue
                                        b, src = cb + jb * my, rows[o, Z, Y]
                                        for cc in range(mx):
                                            J = cx[cc, 2]
                                            if J == 0:
                                                continue
                                            last = cc + (J - 1) * mx
                                            base = (left - cx[cc, 1] - (J - 1) * ex) * B
                                            dst = out[:, cz[ca, 0], cy[cb, 0], cx[cc, 0], Rz, Ry]
                                            if i + 4 <= c:
                                                _taps4(dst[i], dst[i + 1], dst[i + 2],
                                                       dst[i + 3], src, base, ex * B, kt, i,
                                                       o, a, b, last, -mx, J)
                                            else:
                                                for r in range(i, c):
                                                    _taps1(dst[r], src, base, ex * B, kt, r,
                                                           o, a, b, last, -mx, J)
        block = out.reshape(c, s[0], s[1], s[2], dq, hq, wq, B)
        for i in range(c):
            for z in range(size[0]):
                for y in range(size[1]):
                    row = block[i, pz[z], py[y], :, zq[z], yq[y]]
                    for m in range(B):
                        dst = dx[start + m, i, z, y]
                        for w in range(size[2]):
                            dst[w] = row[px[w], xq[w], m]
    return dx


@njit(parallel=True, **_jit)
def conv_strided_grad_kernel(x, delta, size, s, pad, d):
    """g[o, i, a] = Σ_n Σ_Z x̃[n, i, s·Z + d·a] delta[n, o, Z]: per output row a dot
    product, added in row order; per-chunk sums (chunks from the batch and map sizes
    alone) added in chunk order."""
    n, c = x.shape[0], x.shape[1]
    c_out, do, ho, wo = delta.shape[1], delta.shape[2], delta.shape[3], delta.shape[4]
    qz, qy, qx, per = _phases(np.array((x.shape[2], x.shape[3], x.shape[4])), pad, s)
    cz, mz, ez = _classes(size[0], s[0], d[0])
    cy, my, ey = _classes(size[1], s[1], d[1])
    cx, mx, ex = _classes(size[2], s[2], d[2])
    count, chunk_size = _chunking(n, 1, per * c * x.itemsize)
    parts = np.zeros((count, c_out, c, size[0], size[1], size[2]), x.dtype)
    for chunk in prange(count):
        start = chunk * chunk_size
        stop = min(n, start + chunk_size)
        B = stop - start
        P = _phase_block(x, start, stop, pad, s, qz, qy, qx)
        rows = _rows(delta, start, stop, 0, wo)
        g = parts[chunk]
        for Z in range(do):
            for Y in range(ho):
                for i in range(c):
                    for ca in range(mz):
                        for ja in range(cz[ca, 2]):
                            a, zr = ca + ja * mz, Z + cz[ca, 1] + ja * ez
                            for cb in range(my):
                                for jb in range(cy[cb, 2]):
                                    b, yr = cb + jb * my, Y + cy[cb, 1] + jb * ey
                                    for cc in range(mx):
                                        src = P[i, cz[ca, 0], cy[cb, 0], cx[cc, 0], zr, yr]
                                        base, step = cx[cc, 1] * B, ex * B
                                        o = 0
                                        while o + 4 <= c_out:
                                            _dots4(src, base, step, rows[o, Z, Y],
                                                   rows[o + 1, Z, Y], rows[o + 2, Z, Y],
                                                   rows[o + 3, Z, Y], g[o, i, a, b, cc::mx],
                                                   g[o + 1, i, a, b, cc::mx],
                                                   g[o + 2, i, a, b, cc::mx],
                                                   g[o + 3, i, a, b, cc::mx])
                                            o += 4
                                        for o in range(o, c_out):
                                            _dots1(src, base, step, rows[o, Z, Y],
                                                   g[o, i, a, b, cc::mx])
    total = parts[0].copy()
    for chunk in range(1, count):
        total += parts[chunk]
    return total
