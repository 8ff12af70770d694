"""The reference backend: the simplest correct kernel for every built-in op.

Each kernel is the op's definition written as directly as NumPy allows, with
no fast path, no in-place work and no fusion declarations: convolutions are
einsums over sliding windows, block sums are reshaped sums, up(x) is a
Kronecker product.  The test suite runs every shipped model through it and
compares with the NumPy backend (tests/test_backends.py), so a fast path that
goes wrong shows up as a disagreement with its definition.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..core.backend import Backend, Kernel


def _connected(kernel, mask):
    return kernel if mask is None else kernel * mask[:, :, None, None]


def conv_valid(x, kernel, *, mask=None):
    """y[n, o] = Σ_i x[n, i] ⋆ k[o, i] (valid cross-correlation, seed 3.1)."""
    kh, kw = kernel.shape[2:]
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))   # n i h w a b
    return np.einsum("nihwab,oiab->nohw", windows, _connected(kernel, mask))


def conv_full(delta, kernel, *, mask=None):
    """dx[n, i] = Σ_o delta[n, o] * k[o, i] (full true convolution, seed 3.2.1):
    the valid correlation of zero-padded delta with the rotated kernel."""
    kh, kw = kernel.shape[2:]
    padded = np.pad(delta, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    rotated = _connected(kernel, mask)[:, :, ::-1, ::-1]
    return conv_valid(padded, rotated.transpose(1, 0, 2, 3))


def conv_grad_kernel(x, delta, *, size, mask=None):
    """dE/dk[o, i] = Σ_n x[n, i] ⋆ delta[n, o], valid (seed eq. 7)."""
    windows = sliding_window_view(x, delta.shape[2:], axis=(2, 3))   # n i a b h w
    return _connected(np.einsum("niabhw,nohw->oiab", windows, delta), mask)


def subsample_sum(x, *, factor):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // factor, factor, w // factor, factor).sum(axis=(3, 5))


def upsample_kron(x, *, factor):
    return np.kron(x, np.ones((1, 1, factor, factor), dtype=x.dtype))


def upsample_scatter(x, *, factor):
    n, c, h, w = x.shape
    out = np.zeros((n, c, h * factor, w * factor), dtype=x.dtype)
    out[:, :, ::factor, ::factor] = x
    return out


def _per_map(v, like):
    return v.reshape((1, -1) + (1,) * (like.ndim - 2))


def _log_softmax(y):
    shifted = y - y.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _penalty(phi, phi_slope):
    return (Kernel(lambda a, *, lam, **attrs: np.asarray(lam * phi(a, **attrs).sum())),
            Kernel(lambda a, d, *, lam, **attrs: d * lam * phi_slope(a, **attrs)))


_L1 = _penalty(np.abs, np.sign)
_ENTROPY = _penalty(lambda a: -a * np.log(a + 1e-30), lambda a: -np.log(a + 1e-30) - 1)
_POWER = _penalty(lambda a, p=0.5: (a + 1e-30) ** p,
                  lambda a, p=0.5: p * (a + 1e-30) ** (p - 1))

KERNELS = {
    "conv_valid": Kernel(conv_valid),
    "conv_full": Kernel(conv_full),
    "conv_grad_kernel": Kernel(conv_grad_kernel),
    "subsample_sum": Kernel(subsample_sum),
    "upsample_kron": Kernel(upsample_kron),
    "subsample_decimate": Kernel(lambda x, *, factor: x[:, :, ::factor, ::factor].copy()),
    "upsample_scatter": Kernel(upsample_scatter),
    "add_bias": Kernel(lambda x, bias: x + _per_map(bias, x)),
    "scale_maps": Kernel(lambda x, beta: x * _per_map(beta, x)),
    "sum_bias": Kernel(lambda d: d.reshape(d.shape[0], d.shape[1], -1).sum(axis=(0, 2))),
    "expand_bias": Kernel(lambda b, like: np.ones_like(like) * _per_map(b, like)),
    "matmul": Kernel(lambda a, b, *, transpose_a=False, transpose_b=False:
                     (a.T if transpose_a else a) @ (b.T if transpose_b else b)),
    "sigmoid": Kernel(lambda u, *, gain=1.0: 1 / (1 + np.exp(-gain * u))),
    "tanh": Kernel(lambda u, *, a=1.0, b=1.0: a * np.tanh(b * u)),
    "poly": Kernel(lambda x, *, coeffs: sum(c * x ** k for k, c in enumerate(coeffs))
                   + np.zeros_like(x)),
    "mul": Kernel(lambda a, b: a * b),
    "add": Kernel(lambda a, b: a + b),
    "scale": Kernel(lambda x, *, c: c * x),
    "reshape": Kernel(lambda x, *, shape: x.reshape((x.shape[0],) + tuple(shape))),
    "concat": Kernel(lambda a, b: np.concatenate((a, b), axis=1)),
    "slice_range": Kernel(lambda x, *, start, stop: x[:, start:stop].copy()),
    "pad_range": Kernel(lambda x, *, before, after: np.concatenate(
        (np.zeros_like(x[:, :1].repeat(before, axis=1)), x,
         np.zeros_like(x[:, :1].repeat(after, axis=1))), axis=1)),
    "squared_error": Kernel(lambda y, t: ((t - y) ** 2).sum() / 2 / len(y)),
    "softmax_cross_entropy": Kernel(lambda y, t: -(t * _log_softmax(y)).sum() / len(y)),
    "squared_error_grad": Kernel(lambda y, t, delta: delta * (y - t) / len(y)),
    "softmax_cross_entropy_grad": Kernel(
        lambda y, t, delta: delta * (np.exp(_log_softmax(y)) - t) / len(y)),
    "squared_error_curvature": Kernel(lambda y, t, h: h / len(y) + np.zeros_like(y)),
    "softmax_cross_entropy_curvature": Kernel(
        lambda y, t, h: h * np.exp(_log_softmax(y)) * (1 - np.exp(_log_softmax(y))) / len(y)),
    "scale_pairs": Kernel(lambda kernel, alpha: np.einsum("oiab,oi->oiab", kernel, alpha)),
    "sum_taps": Kernel(lambda x: np.einsum("oiab->oi", x)),
    "expand_taps": Kernel(lambda x, like: np.einsum("oi,oiab->oiab", x, np.ones_like(like))),
    "softmax_rows": Kernel(lambda c: np.exp(_log_softmax(c))),
    "softmax_rows_grad": Kernel(lambda alpha, delta: np.einsum(
        "ji,jik->jk", delta, np.einsum("jk,ik->jik", alpha, np.eye(alpha.shape[1]))
        - np.einsum("ji,jk->jik", alpha, alpha))),
    "softmax_rows_curvature": Kernel(lambda alpha, h: np.einsum(
        "ji,jik->jk", h, (np.einsum("jk,ik->jik", alpha, np.eye(alpha.shape[1]))
                          - np.einsum("ji,jk->jik", alpha, alpha)) ** 2)),
    "penalty_l1": _L1[0], "penalty_l1_grad": _L1[1],
    "penalty_entropy": _ENTROPY[0], "penalty_entropy_grad": _ENTROPY[1],
    "penalty_power": _POWER[0], "penalty_power_grad": _POWER[1],
}


def reference_backend() -> Backend:
    return Backend("reference", KERNELS)
