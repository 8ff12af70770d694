"""The logistic sigmoid and a·tanh(b·u) in float32, each one compiled pass over the
maps, in parallel over fixed blocks of values.

numba has no vector exp (libm's is scalar without Intel's SVML), so NumPy ran these:
the sigmoid in four passes over the maps (product, exp, sum, reciprocal), all on one
thread while the convolutions around them ran on every core.  Here exp is written out
in float32: Cody and Waite's reduction x = n·ln 2 + r with ln 2 in two parts (n·C1
exact), a degree-7 Taylor polynomial on |r| <= ln 2 / 2 (its remainder below 6e-9
relative), and 2**n built from its bits in two halves (so that exp overflows to inf
and underflows to 0 as libm's does).  tanh below 0.625 is Cephes' odd polynomial,
where 1 - 2/(e**2y + 1) would cancel.  `_zmm` (numba_tiles) lets LLVM's loop
vectorizer use 16-lane vectors.  Float64 stays NumPy's: it is the check path, and
DLT's replay keeps its bits.  Elementwise, with blocks fixed by the array's length:
the bits never depend on the thread count, and in place equals out of place.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from .numba_tiles import _zmm

#: each value one fixed expression (fused multiply-adds allowed); NaN and inf pass
_jit = dict(fastmath={"contract", "nsz"}, cache=True, error_model="numpy")
F = np.float32
LOG2E = F(1.4426950408889634)
LN2_C1, LN2_C2 = F(0.693359375), F(-2.12194440e-4)
#: exp's argument clamped to where float32's exp is inf (above) or 0 (below) already
EXP_HIGH, EXP_LOW = F(89.0), F(-104.0)
#: 1/7! ... 1/0!, highest power first
EXP_SERIES = tuple(F(1.0 / math.factorial(k)) for k in range(7, -1, -1))
#: Cephes' tanhf on |y| < TANH_SERIES: y + y·s·P(s), s = y², highest power first
TANH_SERIES = F(0.625)
TANH_P = tuple(map(F, (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2,
                       1.33314422036e-1, -3.33332819422e-1)))
ONE, TWO, HALF = F(1.0), F(2.0), F(0.5)
#: values per block of the parallel loops
BLOCK = 16384


@intrinsic
def _from_bits(typingctx, bits):
    """The float32 whose IEEE 754 bits are the int32 ``bits``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))
    return types.float32(types.int32), codegen


@njit(inline="always", **_jit)
def exp32(x):
    """e**x for a float32 x, within a few ulp of libm's."""
    clamped = min(max(x, EXP_LOW), EXP_HIGH)
    n = np.floor(clamped * LOG2E + HALF)
    r = (clamped - n * LN2_C1) - n * LN2_C2
    p = EXP_SERIES[0]
    for k in range(1, len(EXP_SERIES)):
        p = p * r + EXP_SERIES[k]
    m = np.int32(n)
    half = m >> 1
    return p * _from_bits((half + 127) << 23) * _from_bits((m - half + 127) << 23)


@njit(inline="always", **_jit)
def tanh32(y):
    """tanh y for a float32 y."""
    z = abs(y)
    s = y * y
    p = TANH_P[0]
    for k in range(1, len(TANH_P)):
        p = p * s + TANH_P[k]
    small = y + y * s * p
    large = ONE - TWO / (exp32(z + z) + ONE)
    return small if z < TANH_SERIES else (large if y > 0 else -large)


@njit(**_jit)
def _sigmoid_block(u, negative_gain, out, start, stop):
    _zmm()
    for q in range(start, stop):
        out[q] = ONE / (ONE + exp32(u[q] * negative_gain))


@njit(**_jit)
def _tanh_block(u, a, b, out, start, stop):
    _zmm()
    for q in range(start, stop):
        out[q] = a * tanh32(u[q] * b)


@njit(parallel=True, **_jit)
def sigmoid_into(u, gain, out):
    """out = 1/(1 + exp(-gain·u)) for flat float32 arrays (out may be u)."""
    negative_gain = F(-gain)
    for block in prange((u.shape[0] + BLOCK - 1) // BLOCK):
        _sigmoid_block(u, negative_gain, out, block * BLOCK, min(u.shape[0], (block + 1) * BLOCK))
    return out


@njit(parallel=True, **_jit)
def tanh_into(u, a, b, out):
    """out = a·tanh(b·u) for flat float32 arrays (out may be u)."""
    a32, b32 = F(a), F(b)
    for block in prange((u.shape[0] + BLOCK - 1) // BLOCK):
        _tanh_block(u, a32, b32, out, block * BLOCK, min(u.shape[0], (block + 1) * BLOCK))
    return out
