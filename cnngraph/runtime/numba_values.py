"""The numba backend's kernels of ops taken value by value or map by map: the
activations, their slopes, scale_maps.  On fewer than SMALL values, and for the
float32-only activations on float64 maps, NumPy's kernels run instead.  The
float32 sigmoid and tanh are one compiled pass each (runtime/numba_activations.py),
and numba_tiled's convolutions apply them as they write (`EPILOGUES`)."""
from __future__ import annotations

import numpy as np

from ..core.backend import Kernel
from . import numerics
from .numba_compiled import SMALL, compiled
from .numpy_backend import KERNELS as NUMPY_KERNELS


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
