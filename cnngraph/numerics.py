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

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def rot180(kernel: np.ndarray) -> np.ndarray:
    """Rotate the last two axes by 180 degrees."""
    return kernel[..., ::-1, ::-1]


def patch_matrix(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """im2col: (N, C, H, W) -> (N*Ho*Wo, C*kh*kw), one row per output pixel."""
    n, c, h, w = x.shape
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))  # N, C, Ho, Wo, kh, kw
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * (h - kh + 1) * (w - kw + 1), c * kh * kw)


def correlate_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """y[n, o] = sum_i x[n, i] ⋆ kernel[o, i], 'valid' borders: one matrix product."""
    n, _, h, w = x.shape
    c_out, _, kh, kw = kernel.shape
    ho, wo = h - kh + 1, w - kw + 1
    rows = patch_matrix(x, kh, kw) @ kernel.reshape(c_out, -1).T  # (N*Ho*Wo, C_out)
    return rows.reshape(n, ho, wo, c_out).transpose(0, 3, 1, 2)


def convolve_full(delta: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """dx[n, i] = sum_o delta[n, o] * kernel[o, i], true convolution, 'full' borders.

    Computed as col2im: one matrix product gives every pixel's contribution to
    each kernel tap, then kh*kw shifted adds place them; this never builds the
    padded patch matrix, which is kh*kw times larger than delta.
    """
    n, c_out, ho, wo = delta.shape
    _, c_in, kh, kw = kernel.shape
    taps = delta.transpose(0, 2, 3, 1).reshape(-1, c_out) @ kernel.reshape(c_out, -1)
    taps = taps.reshape(n, ho, wo, c_in, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    out = np.zeros((n, c_in, ho + kh - 1, wo + kw - 1), dtype=np.result_type(delta, kernel))
    for a in range(kh):
        for b in range(kw):
            out[:, :, a:a + ho, b:b + wo] += taps[:, :, a, b]
    return out


def correlate_kernel(x: np.ndarray, delta: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """grad_kernel[o, i] = sum_n x[n, i] ⋆ delta[n, o] ('valid'), summed over the batch."""
    c_in = x.shape[1]
    c_out = delta.shape[1]
    rows = delta.transpose(0, 2, 3, 1).reshape(-1, c_out)  # (N*Ho*Wo, C_out)
    return (rows.T @ patch_matrix(x, kh, kw)).reshape(c_out, c_in, kh, kw)


def block_sum(x: np.ndarray, factor: int) -> np.ndarray:
    """down(x): the sum of each distinct factor x factor block, by reshaping (seed 3.2)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // factor, factor, w // factor, factor).sum(axis=(3, 5))


def upsample_kron(x: np.ndarray, factor: int) -> np.ndarray:
    """up(x) = x ⊗ 1_{n×n}: tile each pixel factor times both ways, by broadcasting."""
    n, c, h, w = x.shape
    tiled = np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, factor, w, factor))
    return tiled.reshape(n, c, h * factor, w * factor)


def log_softmax(u: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, shifted by the max so it never overflows."""
    shifted = u - u.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(u: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(u))
