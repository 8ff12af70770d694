"""The NumPy backend, the default: faster kernels than the ops' references where
there are any, the references (the rules' definitions) for every other op.

Batch-first arrays (N, maps, H, W).  Convolutions are matrix products over
im2col patch matrices (runtime/numerics.py); activations are computed in place
where the plan allows (`Kernel.in_place`).  Some kernels round differently from
their reference (a loss gradient multiplies by delta/N once where the reference
multiplies and divides every entry; poly uses Horner's rule): their values agree
to round-off, as the generated checks test.  Its allocator setting keeps freed buffers in malloc's
heap (`reuse_freed_buffers`).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os

import numpy as np

from ..core.backend import Backend, Kernel, SharedInput
from . import numerics, ranks
from .ranks import by_rank

#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BELOW = 1 << 30


@functools.cache
def reuse_freed_buffers() -> bool:
    """Ask glibc's malloc to hand freed buffers to later steps instead of back to
    the system; True if it took.  Off with CNNGRAPH_KEEP_MEMORY=0, and a no-op
    where the C library is not glibc.

    Every step frees and allocates the same buffers again.  By default glibc
    hands freed memory back to the system (large buffers are their own mmap()s,
    the heap's top is trimmed), so the next step page-faults it in again; with
    the fused plan keeping patch matrices alive across the step, dlt.cnn at
    batch 50 in float64 trained at 2 763 images/s that way and at 5 128 with the
    heap kept, the same code in the same run (issue 4's closing note).  The
    price: the process keeps its peak heap between steps, up to buffers of
    1 GiB, which still get their own mapping.
    """
    if os.environ.get("CNNGRAPH_KEEP_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BELOW) and mallopt(_M_TRIM_THRESHOLD, _KEEP_BELOW))


# convolutions -------------------------------------------------------------------

def masked(kernel, mask):
    """Only connected map pairs have kernels: the others are multiplied by 0."""
    if mask is None:
        return kernel
    return kernel * mask.reshape(mask.shape + (1,) * (kernel.ndim - 2)).astype(kernel.dtype)


# 1-D maps as 2-D ones one pixel high, 3-D ones through im2col of any rank (runtime/ranks.py)
conv_valid = by_rank(lambda x, kernel: numerics.correlate_valid(x, kernel), ranks.correlate)
conv_full = by_rank(lambda delta, kernel: numerics.convolve_full(delta, kernel),
                    ranks.convolve_full)
_grad_kernel = by_rank(
    lambda x, delta, *, size: numerics.correlate_kernel(x, delta, *size),
    lambda x, delta, *, size: ranks.kernel_columns(ranks.columns(x, size), delta, size))


def _conv_valid(x, kernel, *, mask=None):
    return conv_valid(x, masked(kernel, mask))


def _conv_full(delta, kernel, *, mask=None):
    return conv_full(delta, masked(kernel, mask))


def _conv_grad_kernel(x, delta, *, size, mask=None):
    return masked(_grad_kernel(x, delta, size=size), mask)


def _patch_shape(x_shape, size):
    """(C·Πk, None, *out): the patch matrix, batch axis None (1-D: 2-D's, one row high)."""
    return (x_shape[1] * math.prod(size), None, *ranks.out_size(x_shape, size))


def _prepare_columns(x, size):
    if x.ndim == 4:
        return numerics.columns(x, *size)
    return numerics.columns(x[:, :, None], 1, *size) if x.ndim == 3 else ranks.columns(x, size)


def _conv_valid_from_columns(cols, kernel, *, x_shape, key, mask=None):
    out = ranks.out_size(x_shape, key)
    if len(key) == 2:
        return numerics.correlate_columns(cols, masked(kernel, mask), out)
    return ranks.correlate_columns(cols, masked(kernel, mask), out)


def _conv_grad_kernel_from_columns(cols, delta, *, x_shape, key, size, mask=None):
    if len(size) == 2:
        return masked(numerics.correlate_kernel_columns(cols, delta, *size), mask)
    return masked(ranks.kernel_columns(cols, delta, size), mask)


def _patches(finish, key):
    """x's im2col patch matrix for a kernel size, shareable between the forward
    convolution and the kernel gradients that read the same x."""
    return SharedInput(0, "im2col", key, _prepare_columns, _patch_shape, finish)


# subsampling: factor² strided slices in 2-D (numerics), the block reshape elsewhere ----

def _planar_factor(x, factor):
    return x.ndim == 4 and np.ndim(factor) == 0


def _factors(x, factor):
    return (factor,) * (x.ndim - 2) if np.ndim(factor) == 0 else tuple(factor)


def block_sum(x, *, factor):
    """down(x): the sum of each block (seed 3.2)."""
    if _planar_factor(x, factor):
        return numerics.block_sum(x, factor)
    f = _factors(x, factor)
    blocks = x.shape[:2] + tuple(d for m, b in zip(x.shape[2:], f) for d in (m // b, b))
    return x.reshape(blocks).sum(axis=tuple(range(3, 2 + 2 * len(f), 2)))


def upsample_kron(x, *, factor):
    """up(x) = x ⊗ 1: each value tiled over its block."""
    if _planar_factor(x, factor):
        return numerics.upsample_kron(x, factor)
    return np.kron(x, np.ones((1, 1) + _factors(x, factor), dtype=x.dtype))


# elementwise ----------------------------------------------------------------------

def _logistic_of_negated(v):
    """1/(1+exp(v)) in v's buffer: NumPy's exp is SIMD in float32, which makes these
    passes 2x faster than scipy's expit there (equal in float64).  exp overflows
    to inf where the result is 0, which 1/(1+inf) gives exactly."""
    with np.errstate(over="ignore"):
        np.exp(v, out=v)
    v += 1
    return np.reciprocal(v, out=v)


def sigmoid(u, *, gain=1.0):
    """1/(1+exp(-gain·u))."""
    return _logistic_of_negated(u * u.dtype.type(-gain))


def sigmoid_in_place(u, *, gain=1.0):
    np.multiply(u, u.dtype.type(-gain), out=u)
    return _logistic_of_negated(u)


def tanh(u, *, a=1.0, b=1.0):
    return tanh_in_place(u * u.dtype.type(b), a=a, b=1.0)


def tanh_in_place(u, *, a=1.0, b=1.0):
    if b != 1.0:
        u *= u.dtype.type(b)
    np.tanh(u, out=u)
    u *= u.dtype.type(a)
    return u


# The rectifiers below pick the reference's values (rules/elementwise.py) by max, min
# and sums with an exact 0 term: np.where on mixed signs is 10-30x slower (NumPy 2.4).

def relu_in_place(u):
    return np.maximum(u, 0, out=u)


def _leaky_pick(slope):
    """u for u > 0, slope·u otherwise is the larger of the two for slope <= 1."""
    return np.maximum if slope <= 1 else np.minimum


def leaky_relu(u, *, slope=0.01):
    return _leaky_pick(slope)(u, u * u.dtype.type(slope))


def leaky_relu_in_place(u, *, slope=0.01):
    return _leaky_pick(slope)(u, u * u.dtype.type(slope), out=u)


def _elu_negative_side(u, alpha):
    """alpha·(exp(min(u, 0)) − 1): 0 where u >= 0."""
    e = np.expm1(np.minimum(u, 0))
    e *= u.dtype.type(alpha)
    return e


def elu(u, *, alpha=1.0):
    """max(u, 0) + alpha·(exp(min(u, 0)) − 1): one of the terms is 0."""
    return np.maximum(u, 0) + _elu_negative_side(u, alpha)


def elu_in_place(u, *, alpha=1.0):
    e = _elu_negative_side(u, alpha)
    np.maximum(u, 0, out=u)
    u += e
    return u


def _slope(y, negative):
    """An activation's slope from its output, 1 where y > 0 and ``negative`` elsewhere,
    as m + (1 − m)·negative with m = [y > 0]: exact, one term being 0."""
    m = (y > 0).astype(y.dtype)
    rest = 1 - m
    rest *= negative
    m += rest
    return m


def poly(x, *, coeffs):
    """sum_k coeffs[k] x^k by Horner's rule, in place after the first product."""
    if len(coeffs) == 1:
        return np.full_like(x, coeffs[0])
    y = x * x.dtype.type(coeffs[-1])
    for k, c in enumerate(reversed(coeffs[:-1])):
        if c:
            y += x.dtype.type(c)
        if k < len(coeffs) - 2:
            y *= x
    return y


# matrices ------------------------------------------------------------------------------

def _matmul(a, b, *, transpose_a=False, transpose_b=False):
    # np.dot, not @: at batch 1 the weight gradient is an outer product (inner
    # size 1), which matmul computes 6x slower than dot (NumPy 2.4, measured)
    return np.dot(a.T if transpose_a else a, b.T if transpose_b else b)


# pooling ---------------------------------------------------------------------------------

def pool_max(x, *, size, stride, padding):
    """rules/pool.py's maxima as one np.maximum pass per window tap, over strided slices
    of the −∞-padded map, without the reference's stacked copy of every window (12x
    faster for 2x2 windows and 6x for 3x3 with padding, on 128 x 8 maps of 24x24); a
    max rounds nothing and passes NaN on, so these are the reference's values."""
    if any(padding):
        x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding], constant_values=-np.inf)
    out = [(n - k) // s + 1 for n, k, s in zip(x.shape[2:], size, stride)]
    taps = [(Ellipsis,) + tuple(slice(a, a + s * (o - 1) + 1, s)
                                for a, s, o in zip(t, stride, out)) for t in np.ndindex(*size)]
    y = x[taps[0]].copy()
    for tap in taps[1:]:
        np.maximum(y, x[tap], out=y)
    return y


# losses and learned combinations --------------------------------------------------------

def _softmax_rows(c):
    """Divides by the row sums, where the reference (numerics.softmax) takes exp of the
    log-softmax: the two differ in the last bits, so each backend keeps its own."""
    shifted = c - c.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


KERNELS = {
    "conv_valid": Kernel(_conv_valid, shared_input=_patches(
        _conv_valid_from_columns, lambda shapes, attrs: tuple(shapes[1][2:]))),
    "conv_full": Kernel(_conv_full),
    "conv_grad_kernel": Kernel(_conv_grad_kernel, shared_input=_patches(
        _conv_grad_kernel_from_columns, lambda shapes, attrs: tuple(attrs["size"]))),
    "subsample_sum": Kernel(block_sum),
    "upsample_kron": Kernel(upsample_kron),
    "add_bias": Kernel(lambda x, bias: x + numerics.per_map(bias, x.ndim), fresh=True),
    "sum_bias": Kernel(lambda d: d.sum(axis=(0,) + tuple(range(2, d.ndim)))),
    "expand_bias": Kernel(lambda b, like: np.broadcast_to(numerics.per_map(b, like.ndim),
                                                          like.shape).astype(b.dtype)),
    "matmul": Kernel(_matmul),
    "pool_max": Kernel(pool_max, fresh=True),
    "sigmoid": Kernel(sigmoid, in_place=sigmoid_in_place),
    "tanh": Kernel(tanh, in_place=tanh_in_place),
    "poly": Kernel(poly, fresh=True),
    "relu": Kernel(lambda u: np.maximum(u, 0), in_place=relu_in_place),
    "leaky_relu": Kernel(leaky_relu, in_place=leaky_relu_in_place),
    "elu": Kernel(elu, in_place=elu_in_place),
    "relu_slope": Kernel(lambda y: _slope(y, y.dtype.type(0)), fresh=True),
    "leaky_relu_slope": Kernel(lambda y, *, slope=0.01: _slope(y, y.dtype.type(slope)),
                               fresh=True),
    "elu_slope": Kernel(lambda y, *, alpha=1.0: _slope(y, y + y.dtype.type(alpha)), fresh=True),
    "mul": Kernel(np.multiply, in_place=lambda a, b: np.multiply(a, b, out=a), product=True),
    "scale": Kernel(lambda x, *, c: x * np.asarray(c, x.dtype), constant_factor=True),
    "squared_error_grad": Kernel(lambda y, t, delta: (y - t) * (delta / len(y))),
    "softmax_cross_entropy_grad": Kernel(
        lambda y, t, delta, *, label_smoothing=0.0:
        (numerics.softmax(y) - numerics.smoothed_targets(t, label_smoothing)) * (delta / len(y))),
    "squared_error_curvature": Kernel(lambda y, t, h: np.full_like(y, h / len(y))),
    "softmax_cross_entropy_curvature": Kernel(
        lambda y, t, h: (lambda p: p * (1 - p) * (h / len(y)))(numerics.softmax(y))),
    "scale_pairs": Kernel(lambda kernel, alpha: kernel * alpha.reshape(
        alpha.shape + (1,) * (kernel.ndim - 2))),
    "sum_taps": Kernel(lambda x: x.sum(axis=tuple(range(2, x.ndim)))),
    "expand_taps": Kernel(lambda x, like: np.broadcast_to(
        x.reshape(x.shape + (1,) * (like.ndim - 2)), like.shape).copy()),
    "softmax_rows": Kernel(_softmax_rows),
    "softmax_rows_grad": Kernel(
        lambda alpha, delta: alpha * (delta - np.sum(delta * alpha, axis=1, keepdims=True))),
    # Σ_k (dalpha_k/dc_i)² h_k = alpha_i² (h_i (1 − 2 alpha_i) + Σ_k alpha_k² h_k)
    "softmax_rows_curvature": Kernel(lambda alpha, h: alpha ** 2 * (
        h * (1 - 2 * alpha) + np.sum(alpha ** 2 * h, axis=1, keepdims=True))),
}


def numpy_backend(fallback: Backend) -> Backend:
    """The NumPy kernels, on ``fallback`` (the registry's references) for other ops."""
    return Backend("numpy", KERNELS, setup=reuse_freed_buffers, fallback=fallback)
