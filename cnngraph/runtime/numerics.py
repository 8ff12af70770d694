"""The numerical kernels, each written once.

Convolution convention (DESIGN.md): the forward op is a *valid cross-correlation*
y = x ⋆ k, as in PyTorch and Caffe.  Its input gradient is the *full true
convolution* of delta with k, and its kernel gradient the valid
cross-correlation of x with delta.  The seed writes MATLAB's true convolution,
so its kernel is rot180 of ours: its conv2(delta, rot180(k), 'full') and
rot180(conv2(x, rot180(delta), 'valid')) say the same thing in its convention.

Shapes are batch first: maps (N, C, H, W), kernels (C_out, C_in, kh, kw).
"""
from __future__ import annotations

import functools

import numpy as np


def rot180(kernel: np.ndarray) -> np.ndarray:
    """Rotate the last two axes by 180 degrees."""
    return kernel[..., ::-1, ::-1]


#: The index paths (one gather, or one np.bincount scatter, through a cached
#: `window_index`) beat per-tap copies and shifted adds while the patch matrix has
#: at most SMALL_PATCHES entries, and im2col's gather also beats copies of rows
#: at most NARROW_OUTPUT values long up to GATHER_LIMIT entries (the index costs
#: 8 bytes each).  Measured with benchmarks/kernels.py: 2-7x at batch 1.
SMALL_PATCHES = 1 << 17
NARROW_OUTPUT = 4
GATHER_LIMIT = 1 << 20


@functools.lru_cache(maxsize=32)
def window_index(shape: tuple[int, int, int, int], kh: int, kw: int) -> np.ndarray:
    """Flat positions in an (N, C, H, W) array of every kernel-window value, laid
    out as im2col's (C*kh*kw, N*Ho*Wo) matrix.  im2col gathers through it and
    col2im, its adjoint, scatters through it (read-only, shared)."""
    n, c, h, w = shape
    ci, a, b, ni, i, j = np.ix_(range(c), range(kh), range(kw),
                                range(n), range(h - kh + 1), range(w - kw + 1))
    index = (((ni * c + ci) * h + i + a) * w + j + b).reshape(c * kh * kw, -1)
    index.flags.writeable = False
    return index


def columns(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """im2col, transposed: (N, C, H, W) -> (C*kh*kw, N*Ho*Wo), one column per output
    pixel: each image's values where the kernel covers the map, else by whichever of
    the two paths below is faster for the shape."""
    n, c, h, w = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    if ho == wo == 1:  # the kernel covers the map: each image is its own column
        return np.ascontiguousarray(x.reshape(n, -1).T)
    patches = c * kh * kw * n * ho * wo
    if patches <= SMALL_PATCHES or (wo <= NARROW_OUTPUT and patches <= GATHER_LIMIT):
        return columns_gathered(x, kh, kw)
    return columns_by_rows(x, kh, kw)


def columns_gathered(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """im2col as one gather through `window_index`."""
    return x.take(window_index(x.shape, kh, kw))


def columns_by_rows(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """im2col as one copy per kernel tap, each of whole map rows."""
    n, c, h, w = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    cols = np.empty((c, kh, kw, n, ho, wo), dtype=x.dtype)
    by_map = x.transpose(1, 0, 2, 3)
    for a in range(kh):
        for b in range(kw):
            cols[:, a, b] = by_map[:, :, a:a + ho, b:b + wo]
    return cols.reshape(c * kh * kw, n * ho * wo)


def correlate_valid(x: np.ndarray, kernel: np.ndarray, dot=np.matmul) -> np.ndarray:
    """y[n, o] = sum_i x[n, i] ⋆ kernel[o, i], 'valid' borders: one matrix product,
    ``dot``'s where the kernel covers the map (here and below: the numba backend's
    product in halves, runtime/numba_blocks.py)."""
    _, _, h, w = x.shape
    _, _, kh, kw = kernel.shape
    size = (h - kh + 1, w - kw + 1)
    return correlate_columns(columns(x, kh, kw), kernel, size,
                             dot if size == (1, 1) else np.matmul)


def correlate_columns(cols: np.ndarray, kernel: np.ndarray, size: tuple[int, int],
                      dot=np.matmul) -> np.ndarray:
    """`correlate_valid` from x's `columns`, for output maps of ``size`` (Ho, Wo)."""
    c_out = kernel.shape[0]
    y = dot(kernel.reshape(c_out, -1), cols)  # (C_out, N*Ho*Wo)
    # back to batch-first in one copy: every later elementwise op and reshape
    # would otherwise walk (or copy) the transposed layout again
    return np.ascontiguousarray(y.reshape(c_out, -1, *size).transpose(1, 0, 2, 3))


def convolve_full(delta: np.ndarray, kernel: np.ndarray, dot=np.matmul) -> np.ndarray:
    """dx[n, i] = sum_o delta[n, o] * kernel[o, i], true convolution, 'full' borders.

    Computed as col2im: one matrix product gives every pixel's contribution to
    each kernel tap, then the contributions are summed into place; this never
    builds the padded patch matrix, which is kh*kw times larger than delta.
    """
    n, c_out, ho, wo = delta.shape
    _, c_in, kh, kw = kernel.shape
    if ho == wo == 1:  # the kernel covers the map: each tap is one pixel, nothing to sum;
        # batch-first as it is (LeNet-5's C5 at batch 256: 342 -> 239 us, the same bits here)
        return dot(delta.reshape(n, c_out), kernel.reshape(c_out, -1)).reshape(n, c_in, kh, kw)
    if c_in * kh * kw * n * ho * wo <= SMALL_PATCHES:
        return convolve_full_scattered(delta, kernel)
    return convolve_full_shifted(delta, kernel)


def convolve_full_scattered(delta: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """col2im as one np.bincount through im2col's `window_index` (its adjoint)."""
    n, c_out, ho, wo = delta.shape
    _, c_in, kh, kw = kernel.shape
    h, w = ho + kh - 1, wo + kw - 1
    taps = kernel.reshape(c_out, -1).T @ delta.transpose(1, 0, 2, 3).reshape(c_out, -1)
    out = np.bincount(window_index((n, c_in, h, w), kh, kw).ravel(), weights=taps.ravel(),
                      minlength=n * c_in * h * w)
    return out.reshape(n, c_in, h, w).astype(delta.dtype, copy=False)


def convolve_full_shifted(delta: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """col2im as kh*kw shifted adds in batch-last layout, where each added row is a
    whole map row across the batch (1.4-3x faster than batch-first's short rows)."""
    n, c_out, ho, wo = delta.shape
    _, c_in, kh, kw = kernel.shape
    taps = kernel.reshape(c_out, -1).T @ delta.transpose(1, 2, 3, 0).reshape(c_out, -1)
    taps = taps.reshape(c_in, kh, kw, ho, wo, n)
    out = np.zeros((c_in, ho + kh - 1, wo + kw - 1, n), dtype=taps.dtype)
    for a in range(kh):
        for b in range(kw):
            out[:, a:a + ho, b:b + wo] += taps[:, a, b]
    return np.ascontiguousarray(out.transpose(3, 0, 1, 2))


def correlate_kernel(x: np.ndarray, delta: np.ndarray, kh: int, kw: int,
                     dot=np.dot) -> np.ndarray:
    """grad_kernel[o, i] = sum_n x[n, i] ⋆ delta[n, o] ('valid'), summed over the batch."""
    n, c_out = delta.shape[:2]
    if delta.shape[2:] == (1, 1):  # the kernel covers the map: no columns to build
        # (LeNet-5's C5 at batch 256: 321 -> 245 us, the same bits here)
        return dot(delta.reshape(n, c_out).T, x.reshape(n, -1)).reshape(c_out, -1, kh, kw)
    return correlate_kernel_columns(columns(x, kh, kw), delta, kh, kw)


def correlate_kernel_columns(cols: np.ndarray, delta: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """`correlate_kernel` from x's `columns`."""
    c_out = delta.shape[1]
    rows = delta.transpose(1, 0, 2, 3).reshape(c_out, -1)  # (C_out, N*Ho*Wo)
    # np.dot: with one output pixel per batch of one (LeNet-5's C5) the product is
    # an outer product, which matmul computes 6x slower than dot
    return np.dot(rows, cols.T).reshape(c_out, -1, kh, kw)


def block_sum(x: np.ndarray, factor: int) -> np.ndarray:
    """down(x): the sum of each distinct factor x factor block (seed 3.2), as factor²
    strided adds; 10-13x faster than summing a (.., factor, .., factor) reshape over
    its two small axes (benchmarks/kernels.py)."""
    out = x[:, :, ::factor, ::factor].copy()
    for a in range(factor):
        for b in range(factor):
            if a or b:
                out += x[:, :, a::factor, b::factor]
    return out


def upsample_kron(x: np.ndarray, factor: int) -> np.ndarray:
    """up(x) = x ⊗ 1_{n×n}: each pixel tiled factor times both ways, as factor² strided
    writes (3-4x faster than reshaping a broadcast view)."""
    n, c, h, w = x.shape
    out = np.empty((n, c, h * factor, w * factor), dtype=x.dtype)
    for a in range(factor):
        for b in range(factor):
            out[:, :, a::factor, b::factor] = x
    return out


def per_map(v: np.ndarray, ndim: int) -> np.ndarray:
    """A per-map vector (C,) shaped to broadcast over (N, C, ...) arrays of ``ndim`` axes."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def log_softmax(u: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, shifted by the max so it never overflows."""
    shifted = u - u.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(u: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(u))


def smoothed_targets(t: np.ndarray, label_smoothing: float) -> np.ndarray:
    """(1 − ε)·t + ε/classes, the targets label smoothing trains on (Szegedy et al.
    2016); t itself, the same array, at ε = 0."""
    if not label_smoothing:
        return t
    return (1 - label_smoothing) * t + label_smoothing / t.shape[-1]
