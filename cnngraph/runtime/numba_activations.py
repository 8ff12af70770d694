"""The logistic sigmoid and tanh in float32 in one compiled pass over the maps, in
parallel over fixed blocks of values.

numba has no vector exp (libm's is scalar without Intel's SVML), so NumPy ran them: the
sigmoid in four passes over the maps (product, exp, sum, reciprocal), tanh in three
(product, tanh, product), on one thread while the convolutions around them ran on every
core.  Here exp is written out in float32: Cody and Waite's reduction x = n·ln 2 + r
with ln 2 in two parts (n·C1 exact), a degree-7 Taylor polynomial on |r| <= ln 2 / 2
(its remainder below 6e-9 relative), and 2**n built from its bits in two halves (so
that exp overflows to inf and underflows to 0 as libm's does).  tanh|x| is
e/(e + 2) with e = exp(2|x|) − 1, taken from a polynomial without its constant term
where 2|x| < ln 2 / 2 (so that small x keep their relative precision); its exp, of
0 <= 2|x| <= 20, skips exp's clamps and scales by 2**n in one factor (exact either
way: the same bits, 1.11x faster on this Zen 4 in cache).  `_zmm`
(numba_tiles) lets LLVM's loop vectorizer use 16-lane vectors.  Float64 stays NumPy's:
it is the check path, and DLT's replay keeps its bits.  Elementwise, with blocks fixed
by the array's length: the bits never depend on the thread count, and in place equals
out of place.
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
ONE, HALF, TWO = F(1.0), F(0.5), F(2.0)
#: exp(x) − 1 as x·(1/1! + x/2! + ... + x**7/8!) below ln 2 / 2, highest power first
EXPM1_SERIES = tuple(F(1.0 / math.factorial(k)) for k in range(8, 0, -1))
EXPM1_SMALL = F(0.5 * math.log(2.0))
#: tanh(x) is 1 in float32 from 9.01 on: 2|x| clamped here keeps exp finite
TANH_CLAMP = F(20.0)
#: the activations' codes (`activate_block`)
SIGMOID, TANH = 1, 2
#: values per block of the parallel loops
BLOCK = 16384


@intrinsic
def _from_bits(typingctx, bits):
    """The float32 whose IEEE 754 bits are the int32 ``bits``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))
    return types.float32(types.int32), codegen


@njit(inline="always", **_jit)
def _reduced_exp(x):
    """(p, m): e**x = p·2**m, p = e**r from the series, r = x − m·ln 2 (|r| <= ln 2 / 2)."""
    n = np.floor(x * LOG2E + HALF)
    r = (x - n * LN2_C1) - n * LN2_C2
    p = EXP_SERIES[0]
    for k in range(1, len(EXP_SERIES)):
        p = p * r + EXP_SERIES[k]
    return p, np.int32(n)


@njit(inline="always", **_jit)
def exp32(x):
    """e**x for a float32 x, within a few ulp of libm's."""
    p, m = _reduced_exp(min(max(x, EXP_LOW), EXP_HIGH))
    half = m >> 1
    return p * _from_bits((half + 127) << 23) * _from_bits((m - half + 127) << 23)


@njit(**_jit)
def sigmoid_block(u, out, negative_gain):
    """out[q] = 1/(1 + exp(negative_gain·u[q])) for every q of out: the one loop of
    `activate`, its in-place form and numba_tiled's convolutions, which apply it as they
    write (so the fused plan's bits are the plain one's).  Called on slices: with the
    block's offset in the index instead, the loop ran 2.3x slower."""
    _zmm()
    for q in range(out.shape[0]):
        out[q] = ONE / (ONE + exp32(u[q] * negative_gain))


@njit(inline="always", **_jit)
def tanh32(x):
    """tanh of a float32 x, within a few ulp of the float64 maths; NaN passes."""
    y = TWO * abs(x)
    y = TANH_CLAMP if y > TANH_CLAMP else y  # NaN > 20 is false: NaN stays
    p = EXPM1_SERIES[0]
    for k in range(1, len(EXPM1_SERIES)):
        p = p * y + EXPM1_SERIES[k]
    q, m = _reduced_exp(y)  # exp32(y)'s bits: 0 <= y <= 20 needs no clamp, 2**m no halves
    e = p * y if y < EXPM1_SMALL else q * _from_bits((m + 127) << 23) - ONE
    t = e / (e + TWO)
    return -t if x < 0 else t


@njit(**_jit)
def tanh_block(u, out, gain, scale):
    """out[q] = scale·tanh(gain·u[q]) for every q of out, called on slices as
    `sigmoid_block`."""
    _zmm()
    for q in range(out.shape[0]):
        out[q] = scale * tanh32(u[q] * gain)


@njit(**_jit)
def activate_block(u, out, act, gain, scale):
    """out = activation ``act`` of u: SIGMOID 1/(1 + exp(gain·u)) (gain the sigmoid's
    negated), TANH scale·tanh(gain·u)."""
    if act == SIGMOID:
        sigmoid_block(u, out, gain)
    else:
        tanh_block(u, out, gain, scale)


@njit(parallel=True, **_jit)
def activate(u, act, gain, scale):
    """`activate_block` of a flat float32 array, block by block (gain and scale taken
    in float32 whatever their type, as the tiles take them)."""
    out, gain, scale = np.empty_like(u), F(gain), F(scale)
    for block in prange((u.shape[0] + BLOCK - 1) // BLOCK):
        start, stop = block * BLOCK, min(u.shape[0], (block + 1) * BLOCK)
        activate_block(u[start:stop], out[start:stop], act, gain, scale)
    return out


@njit(parallel=True, **_jit)
def activate_in_place(x, act, gain, scale):
    """`activate` into x's own buffer, each block through a copy: a loop that reads and
    writes one array compiled to scalar code, 5x slower."""
    gain, scale = F(gain), F(scale)
    for block in prange((x.shape[0] + BLOCK - 1) // BLOCK):
        start, stop = block * BLOCK, min(x.shape[0], (block + 1) * BLOCK)
        part = x[start:stop].copy()
        activate_block(part, x[start:stop], act, gain, scale)
    return x
