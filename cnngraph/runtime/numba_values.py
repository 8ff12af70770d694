"""The numba backend's kernels of ops taken value by value or map by map: the
activations, their slopes (the polynomial ones also times δ, or times a subsampling's
δ upsampled, as they are written), scale_maps.  On fewer than SMALL values, and for
the float32-only activations on float64 maps, NumPy's kernels run instead.  The
float32 sigmoid and tanh are one compiled pass each (runtime/numba_activations.py),
and numba_tiled's convolutions apply them as they write (`EPILOGUES`)."""
from __future__ import annotations

import numpy as np

from ..core.backend import Kernel
from . import numerics
from .numba_compiled import SMALL, compiled
from .numpy_backend import KERNELS as NUMPY_KERNELS
from .numpy_backend import _factors
from .numpy_backend import poly as numpy_poly
from .numpy_backend import upsample_kron as numpy_upsample_kron


def _maps():
    return compiled("numba_maps")


def by_map(x):
    """(N, C, ...) as (N, C, pixels), contiguous."""
    return np.ascontiguousarray(x).reshape(len(x), x.shape[1], -1)


def scale_maps(x, beta):
    """x · β_j per map: one product a value, the reference's bits."""
    if x.ndim == 2 or x.size < SMALL:
        return x * numerics.per_map(beta, x.ndim)
    return _maps().scale_maps(by_map(x), beta.astype(x.dtype)).reshape(x.shape)


def poly(x, *, coeffs):
    if not _cubic_runs(x, coeffs):
        return numpy_poly(x, coeffs=coeffs)
    return _maps().cubic(np.ascontiguousarray(x).reshape(-1), *_cubic(x, coeffs)
                         ).reshape(x.shape)


def _cubic_runs(x, coeffs) -> bool:
    """Whether numba_maps' cubic computes poly: at most four coefficients, SMALL values."""
    return len(coeffs) <= 4 and x.size >= SMALL


def _cubic(x, coeffs) -> tuple:
    """c0, c1, c2 and c3 in x's dtype."""
    return tuple(x.dtype.type(c) for c in tuple(coeffs) + (0,) * (4 - len(coeffs)))


def poly_times(x, *, coeffs, by):
    """poly(x)·by in one pass where poly is compiled and by is x's shape and dtype."""
    if not (_cubic_runs(x, coeffs) and by.shape == x.shape and by.dtype == x.dtype):
        return np.multiply(poly(x, coeffs=coeffs), by)
    return _maps().cubic_times(np.ascontiguousarray(x).reshape(-1),
                               np.ascontiguousarray(by).reshape(-1), *_cubic(x, coeffs)
                               ).reshape(x.shape)


def poly_times_upsampled(x, *, coeffs, by, beta, factor):
    """poly(x) · up(β · by), β a constant or one value per map, in one compiled pass
    for 2x2 blocks of 2-D maps, with the bits of the steps it replaces (each value of
    by times its β, once: scale_maps' or `scale`'s product; up copies; poly_times);
    elsewhere those steps."""
    beta = np.asarray(beta, x.dtype)
    if _factors(x, factor) != (2, 2) or not _cubic_runs(x, coeffs) or by.dtype != x.dtype \
            or by.size * 4 < SMALL:
        scaled = by * (numerics.per_map(beta, by.ndim) if beta.ndim else beta)
        return poly_times(x, coeffs=coeffs, by=numpy_upsample_kron(scaled, factor=factor))
    import numba
    beta = np.full(x.shape[1], beta) if beta.ndim == 0 else beta
    kernel = "cubic_times_up2x2_" + ("rows" if by.shape[3] >= 8 else "maps")
    return getattr(_maps(), kernel)(np.ascontiguousarray(x), np.ascontiguousarray(by),
                                    np.ascontiguousarray(beta), *_cubic(x, coeffs),
                                    numba.get_num_threads())


def _multiplies(a, b) -> bool:
    """Whether numba_maps' product runs: on more than one thread (on one, NumPy's loop
    was 1.5-2x faster: the product is exact, so the bits are the same either way), for
    maps (N, C, ...) of SMALL values or more, alike in shape and dtype, contiguous."""
    import numba
    return a.ndim > 2 and a.size >= SMALL and a.shape == b.shape and a.dtype == b.dtype \
        and a.flags.c_contiguous and b.flags.c_contiguous and numba.get_num_threads() > 1


def multiply(a, b):
    """a · b value by value: on two or more threads, each thread's own images (those it
    wrote a and b in), not one thread pulling the other's from its cache."""
    if not _multiplies(a, b):
        return np.multiply(a, b)
    return _maps().multiply(a.reshape(len(a), -1), b.reshape(len(b), -1)).reshape(a.shape)


def multiply_in_place(a, b):
    """a · b written into a's buffer."""
    if not _multiplies(a, b):
        return np.multiply(a, b, out=a)
    _maps().multiply_into(a.reshape(len(a), -1), b.reshape(len(b), -1))
    return a


def rectifier_slope(y, negative):
    """1 where y > 0, else ``negative``: NumPy's slope values in one pass instead of five."""
    return _maps().rectifier_slope(np.ascontiguousarray(y).reshape(-1),
                                   y.dtype.type(negative)).reshape(y.shape)


def activations():
    return compiled("numba_activations")


def compiled_float32(x) -> bool:
    """Whether numba_activations' activations run: float32 maps of SMALL values or more
    (float64 keeps NumPy's bits)."""
    return x.dtype == np.float32 and x.size >= SMALL


#: each compiled activation's run -> its (code, gain, scale) given the op's attributes,
#: for the convolutions' epilogues (numba_backend)
EPILOGUES = {}


def activation(op, arguments):
    """op's kernel: numba_activations' float32 loop of the (code, gain, scale) that
    ``arguments(**attrs)`` gives (code a name there), NumPy's for other maps; its
    in-place form writes run's bits into u's buffer (a strided u through a copy)."""
    def codes(**attrs):
        code, gain, scale = arguments(**attrs)
        return getattr(activations(), code), gain, scale

    def run(u, **attrs):
        if not compiled_float32(u):
            return NUMPY_KERNELS[op].run(u, **attrs)
        values = np.ascontiguousarray(u).reshape(-1)
        return activations().activate(values, *codes(**attrs)).reshape(u.shape)

    def in_place(u, **attrs):
        if not compiled_float32(u):
            return NUMPY_KERNELS[op].in_place(u, **attrs)
        if not u.flags.c_contiguous:
            u[...] = run(u, **attrs)
            return u
        activations().activate_in_place(u.reshape(-1), *codes(**attrs))
        return u
    EPILOGUES[run] = codes
    return Kernel(run, in_place=in_place)


def flat(kernel):
    """A compiled elementwise loop (runtime/numba_gelu.py) over x of any shape."""
    def run(x):
        return getattr(compiled("numba_gelu"), kernel)(
            np.ascontiguousarray(x).reshape(-1)).reshape(x.shape)
    return run
