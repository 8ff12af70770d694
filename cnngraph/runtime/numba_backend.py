"""The numba backend: compiled CPU kernels for the convolution triple and the
per-map ops, the NumPy backend behind it for everything else.

Convolutions run directly on register tiles (runtime/numba_tiled.py; the seed's kernel
gradient in cache-sized blocks, runtime/numba_conv.py): conv_strided's in every rank,
stride, padding and dilation; the input gradients (conv_strided_full's and the seed's
conv_full) with the images along the vectors (runtime/numba_full.py) where that skips
enough products with δ's padding and a chunk has half a tile's images, the seed's only
where δ is DIRECT_MIN_WIDTH wide (LeNet-5's C5, 1x1, stays a matrix product: at batch 50
BLAS was 1.3-1.8x faster); the seed's conv_valid and conv_full where their output rows,
across a chunk of the batch, are at least DIRECT_MIN_RUN values long and a map fills a
tile, and conv_valid also where numba_listed's positions fit (rows1d.cnn's 1-D rows from
batch 10 or so), a connection table's joined map pairs alone where that is cheaper
(runtime/numba_joined.py, and their kernel gradient in numba_joined_kernel.py:
LeNet-5's C3 from batch 16 or so); narrower ones (LeNet-5's C5 with 1x1 outputs,
dlt.cnn's C3 at batch 1) stay matrix products, where BLAS was 2-4x faster than the
direct loops (measured while choosing, against NumPy's at batches 1, 4, 10, 20 and
256). The tiled convolutions take the fused plan's epilogue: the bias, and the float32
sigmoid or tanh (runtime/numba_values.py), applied as they write. The kernels use their
own threads (`set_threads`), so training never splits the batch across threads for this
backend; they load on first use (runtime/numba_compiled.py).
"""
from __future__ import annotations

import functools
import os

import numpy as np

from ..core.backend import Backend, Kernel
from . import numerics
from .numba_compiled import SMALL, available, compiled
from .numba_values import (EPILOGUES, activation, activations, by_map, compiled_float32, flat,
                           multiply, multiply_in_place, poly, poly_times, poly_times_upsampled,
                           rectifier_slope, scale_maps)
from .numpy_backend import KERNELS as NUMPY_KERNELS
from .numpy_backend import masked
from .ranks import as_3d, by_rank, in_3d

#: images per block of the direct convolutions (numba_conv): a chunk of dlt.cnn's C1
#: input and output, 32 x 4.1 KiB in float32, stays in L2
CHUNK = 32
#: direct convolutions need output rows this long across a chunk, and 4 pixels wide
DIRECT_MIN_RUN, DIRECT_MIN_WIDTH = 32, 4
#: positions per image a float32 tile of numba_tiled computes at once
TILE_POSITIONS = 32
#: outputs per map across the batch from which numba_listed's positions beat BLAS where
#: the map tiles do not fit (rows1d.cnn's 1-D layers, 24 and 8 outputs per image: at
#: batch 10 1.2x and 0.8x BLAS's speed, at batch 32 1.65x and 1.28x; at 4 and 1 slower),
#: and per image: a listed tile's 8 positions (LeNet-5's C5, one output per image,
#: padded to 8, ran 6x slower than BLAS at batch 256)
LISTED_MIN_OUTPUTS, LISTED_MIN_IMAGE_OUTPUTS = 200, 8
#: the seed's geometry in 3-D: unit stride and dilation, no padding
_UNIT3, _NONE3 = np.ones(3, np.int64), np.zeros(3, np.int64)


def _conv():
    return compiled("numba_conv")


def _tiled():
    return compiled("numba_tiled")


def _maps():
    return compiled("numba_maps")


def _chunks_for(batch: int, width: int) -> int:
    """At least one chunk per thread, while each keeps rows DIRECT_MIN_RUN long."""
    import numba
    return min(numba.get_num_threads(), max(1, batch * width // DIRECT_MIN_RUN))


def _direct(batch: int, width: int) -> bool:
    """Whether output maps ``width`` pixels wide are convolved directly."""
    return width >= DIRECT_MIN_WIDTH and min(batch, CHUNK) * width >= DIRECT_MIN_RUN


def _fills_a_tile(rows: int, pitch: int) -> bool:
    """Whether a map's rows, ``pitch`` values apart, give numba_tiled a tile's positions:
    fewer leave lanes idle, and BLAS ran MNIST's 12-long rows (rows1d.cnn's C2)
    2.2-2.7x faster."""
    return rows * pitch >= TILE_POSITIONS


def _listed(x, kernel) -> bool:
    """Whether numba_tiled would take listed positions (numba_listed) for this valid
    correlation of 2-D maps, with outputs enough across the batch to pay their setup."""
    ho, wo = x.shape[2] - kernel.shape[2] + 1, x.shape[3] - kernel.shape[3] + 1
    return (ho * wo >= LISTED_MIN_IMAGE_OUTPUTS and len(x) * ho * wo >= LISTED_MIN_OUTPUTS
            and compiled("numba_listed").listed_cheaper(
                kernel[0].size, kernel.shape[0], ho * x.shape[3], ho * wo, x.itemsize))


def conv_valid(x, kernel, *, mask=None, bias=None, then=None, then_attrs=None):
    """The seed's valid correlation; as the fused plan's epilogue (`Kernel.epilogue`) also
    + bias per map and then ``then``'s activation."""
    kernel = masked(kernel, mask)
    if not (_direct(len(x), x.shape[3] - kernel.shape[3] + 1)
            and _fills_a_tile(x.shape[2] - kernel.shape[2] + 1, x.shape[3])
            or _listed(x, kernel)):
        return _epilogue(numerics.correlate_valid(x, kernel, _halves(np.matmul)), bias, then,
                         then_attrs)
    fused = _fused_arguments(x, bias, then, then_attrs)
    x = np.ascontiguousarray(x)
    y = None if mask is None else compiled("numba_joined").where_cheaper(
        x, kernel, mask, fused, _threads())
    if y is None:
        y = _tiled().conv_valid(x, np.ascontiguousarray(kernel),
                                _chunks_for(len(x), x.shape[3] - kernel.shape[3] + 1), *fused)
    return _after_fused(y, fused, then, then_attrs)


def _fused_arguments(x, bias, then, then_attrs) -> tuple:
    """The epilogue arguments of numba_tiled's convolutions and numba_maps'
    scale_maps_epilogue: the bias in x's dtype (empty: none); the code, gain and scale of
    numba_activations' activation where ``then`` is this backend's sigmoid or tanh on
    float32 maps (else 0, 0 and 0), which they apply as they write to a result of at
    least SMALL values, where the activation runs compiled (`compiled_float32`), with
    its bits; and SMALL."""
    bias = np.zeros(0, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)
    codes = EPILOGUES.get(then and then.run) if x.dtype == np.float32 else None
    act, gain, scale = codes(**(then_attrs or {})) if codes else (0, 0.0, 0.0)
    return bias, act, x.dtype.type(gain), x.dtype.type(scale), SMALL


def _after_fused(y, fused, then, then_attrs):
    """y from a fused kernel given ``fused`` (`_fused_arguments`): ``then`` in place unless
    the kernel applied it."""
    return y if fused[1] and compiled_float32(y) else _epilogue(y, None, then, then_attrs)


def _epilogue(y, bias, then, then_attrs):
    """y + bias per map (None: none), then ``then``'s activation in place (None: none)."""
    if bias is not None:
        y = add_bias(y, bias)
    return y if then is None else then.in_place(y, **(then_attrs or {}))


def conv_full(delta, kernel, *, mask=None):
    delta, kernel = np.ascontiguousarray(delta), np.ascontiguousarray(masked(kernel, mask))
    size = np.array((1, delta.shape[2] + kernel.shape[2] - 1,
                     delta.shape[3] + kernel.shape[3] - 1), np.int64)
    delta3, kernel3 = delta[:, :, None], kernel[:, :, None]
    if delta.shape[3] >= DIRECT_MIN_WIDTH and _batch_cheaper(delta3, kernel3, _UNIT3, _NONE3,
                                                             _UNIT3, size):
        dx = None if mask is None else compiled("numba_joined_full").where_cheaper(
            delta, kernel, mask, _threads())
        # the seed's tap order: kernel rows from the near end (numba_tiled's conv_full)
        return dx if dx is not None else compiled("numba_full").full(
            delta3, kernel3, size, _UNIT3, _NONE3, _UNIT3, _threads(), True)[:, :, 0]
    if not (_direct(len(delta), delta.shape[3])
            and _fills_a_tile(delta.shape[2] + kernel.shape[2] - 1,
                              delta.shape[3] + 2 * kernel.shape[3] - 2)):
        return numerics.convolve_full(delta, kernel, _halves(np.matmul))
    return _tiled().conv_full(delta, kernel, _chunks_for(len(delta), delta.shape[3]))


def conv_grad_kernel(x, delta, *, size, mask=None):
    if not _direct(len(delta), delta.shape[3]):
        return masked(numerics.correlate_kernel(x, delta, *size, _halves(np.dot)), mask)
    x, delta = np.ascontiguousarray(x), np.ascontiguousarray(delta)
    g = None if mask is None else compiled("numba_joined_kernel").where_cheaper(
        x, delta, size, mask)
    return g if g is not None else masked(_conv().conv_grad_kernel(x, delta, *size), mask)


def _halves(fallback):
    """numba_blocks' product in two row halves, ``fallback``'s where it does not cut."""
    return functools.partial(compiled("numba_blocks").dot, fallback=fallback)


def _threads() -> int:
    """A chunk per thread: the tiles sum each output alike whatever the chunks."""
    import numba
    return numba.get_num_threads()


def _geometry3(stride, padding, dilation):
    """stride, padding in front, padding behind and dilation, each per dimension in 3-D."""
    pads = np.array(in_3d([tuple(p) for p in padding], fill=(0, 0)), np.int64)
    return (np.array(in_3d(stride), np.int64), np.ascontiguousarray(pads[:, 0]),
            np.ascontiguousarray(pads[:, 1]), np.array(in_3d(dilation), np.int64))


def _size3(size):
    return np.array(in_3d(size), np.int64)


def conv_strided(x, kernel, *, stride, padding, dilation, mask=None, bias=None, then=None,
                 then_attrs=None):
    """Strided, padded, dilated, maps of any rank: always the tiles (NumPy has only the
    reference); the fused epilogue as conv_valid's."""
    kernel = masked(kernel, mask)
    fused = _fused_arguments(x, bias, then, then_attrs)
    tiled = _tiled()
    y = tiled.conv_strided(as_3d(x), as_3d(kernel), *_geometry3(stride, padding, dilation),
                           _threads(), *fused, tiled.AUTO)
    return _after_fused(y.reshape(y.shape[:2] + y.shape[7 - x.ndim:]), fused, then, then_attrs)


def conv_strided_full(delta, kernel, *, map_size, stride, padding, dilation, mask=None):
    s, before, _, d = _geometry3(stride, padding, dilation)
    delta, kernel, size = as_3d(delta), as_3d(masked(kernel, mask)), _size3(map_size)
    run = compiled("numba_full") if _batch_cheaper(delta, kernel, s, before, d, size) \
        else _tiled()
    dx = run.full(np.ascontiguousarray(delta), np.ascontiguousarray(kernel), size, s, before,
                  d, _threads(), False)
    return dx.reshape(dx.shape[:2] + tuple(map_size))


def _batch_cheaper(delta, kernel, s, before, d, size) -> bool:
    """Whether numba_full's batch tiles take this input gradient of 3-D maps, of extents
    ``size`` (numba_full's `batch_cheaper`)."""
    return compiled("numba_full").batch_cheaper(
        np.array(kernel.shape[2:]), s, d, before, np.array(size, np.int64),
        np.array(delta.shape[2:]), len(delta), _threads(), delta.itemsize)


def conv_strided_grad_kernel(x, delta, *, size, stride, padding, dilation, mask=None):
    tiled = _tiled()
    g = tiled.conv_strided_grad_kernel(as_3d(x), as_3d(delta), _size3(size),
                                       *_geometry3(stride, padding, dilation),
                                       tiled.GROUP_POSITIONS)
    return masked(g.reshape(g.shape[:2] + tuple(size)), mask)


def _unit(x) -> dict:
    """Stride 1, no padding, dilation 1 in x's rank."""
    rank = x.ndim - 2
    return {"stride": (1,) * rank, "padding": ((0, 0),) * rank, "dilation": (1,) * rank}


def _valid3(x, kernel, **given):
    """conv_valid of 3-D maps: conv_strided at unit geometry."""
    return conv_strided(x, kernel, **given, **_unit(x))


def _full3(delta, kernel, *, mask=None):
    size = tuple(n + k - 1 for n, k in zip(delta.shape[2:], kernel.shape[2:]))
    return conv_strided_full(delta, kernel, map_size=size, mask=mask, **_unit(delta))


def _grad_kernel3(x, delta, *, size, mask=None):
    return conv_strided_grad_kernel(x, delta, size=size, mask=mask, **_unit(x))


def numpy_kernel(op):
    return NUMPY_KERNELS[op].run


def add_bias(x, bias):
    if x.ndim == 2 or x.size < SMALL:
        return numpy_kernel("add_bias")(x, bias)
    return _maps().add_bias(by_map(x), bias.astype(x.dtype)).reshape(x.shape)


def sum_bias(d):
    if d.ndim == 2 or d.size < SMALL:
        return numpy_kernel("sum_bias")(d)
    return _maps().sum_bias(by_map(d))


def scale_maps_epilogue(x, beta, *, bias=None, then=None, then_attrs=None):
    """scale_maps as the fused plan's epilogue (`Kernel.epilogue`), taken as the
    convolutions take theirs: x · β_j + bias_j per map in one compiled pass that applies
    the float32 sigmoid or tanh as it writes, other activations in place after; op by op
    where numba_maps' scale_maps would not run; the same bits either way."""
    if bias is None or x.ndim == 2 or x.size < SMALL:
        return _epilogue(scale_maps(x, beta), bias, then, then_attrs)
    fused = _fused_arguments(x, bias, then, then_attrs)
    y = _maps().scale_maps_epilogue(by_map(x), beta.astype(x.dtype), *fused[:4])
    return _after_fused(y.reshape(x.shape), fused, then, then_attrs)


def _factors(x, factor) -> tuple:
    """One factor per dimension (an int factor is the same for all)."""
    return (int(factor),) * (x.ndim - 2) if np.ndim(factor) == 0 else tuple(factor)


def _two_by_two(factors) -> bool:
    """2x2 blocks of 2-D maps (every shipped model's): numba_maps' own kernels (its doc)."""
    return factors == (2, 2)


def block_sum(x, *, factor, c=1):
    """c · down(x): c, a fixed β (the `scale` op after the sum: `Kernel.scaled`), is
    multiplied in as the 2x2 kernel writes; bitwise the two steps."""
    factors = _factors(x, factor)
    if _two_by_two(factors) and x.size >= SMALL:
        return _maps().block_sum_2x2(np.ascontiguousarray(x), x.dtype.type(c))
    out = numerics.block_sum(x, 2) if _two_by_two(factors) else _maps().block_sum_nd(x, factors)
    return out if c == 1 else numpy_kernel("scale")(out, c=c)


def upsample_kron(x, *, factor, c=1):
    """up(c · x): c, a fixed β (the `scale` op before the upsampling:
    `Kernel.reads_scaled`), is multiplied in as the 2x2 kernel reads; bitwise the two."""
    factors = _factors(x, factor)
    if _two_by_two(factors) and x.size * 4 >= SMALL:
        return _maps().upsample_kron_2x2(np.ascontiguousarray(x), x.dtype.type(c))
    x = x if c == 1 else numpy_kernel("scale")(x, c=c)
    return numerics.upsample_kron(x, 2) if _two_by_two(factors) else _maps().upsample_kron_nd(
        x, factors)


def _pool():
    return compiled("numba_pool")


def pool_max(x, *, size, stride, padding):
    """Always compiled (NumPy has only the reference): windows of 1, 2 or 3
    dimensions (rules/pool.py), one kernel for every rank (runtime/numba_pool.py)."""
    return _pool().pool_max(x, size, stride, padding)


def pool_max_grad(x, delta, *, size, stride, padding):
    return _pool().pool_max_grad(x, delta, size, stride, padding)


def pool_mean(x, *, size, stride, padding):
    return _pool().pool_mean(x, size, stride, padding)


def pool_mean_grad(delta, *, size, stride, padding, input_size):
    return _pool().pool_mean_grad(delta, size, stride, padding, input_size)


def _norm(kernel, reads):
    """A normalisation kernel (runtime/numba_norm.py) over (N, C, positions) of its
    first ``reads`` inputs, maps of any rank (norm_batch's running statistics are not
    read in training): each group's sums in one fixed order whatever the threads."""
    def run(*arrays, eps):
        shape = arrays[0].shape
        flat = [by_map(a) for a in arrays[:reads]]
        return getattr(compiled("numba_norm"), kernel)(*flat, eps).reshape(shape)
    return run


_conv_valid = by_rank(conv_valid, _valid3)  # its run takes the epilogue's arguments too
KERNELS = {
    # the seed's ops: 1-D maps through the 2-D kernels one pixel high (runtime/ranks.lifted:
    # the same sums), 3-D ones through conv_strided
    "conv_valid": Kernel(_conv_valid, epilogue=_conv_valid),
    "conv_full": Kernel(by_rank(conv_full, _full3)),
    "conv_grad_kernel": Kernel(by_rank(conv_grad_kernel, _grad_kernel3)),
    "conv_strided": Kernel(conv_strided, epilogue=conv_strided),
    "conv_strided_full": Kernel(conv_strided_full),
    "conv_strided_grad_kernel": Kernel(conv_strided_grad_kernel),
    "subsample_sum": Kernel(block_sum, scaled=block_sum),
    "upsample_kron": Kernel(upsample_kron, reads_scaled=upsample_kron, upsamples=True),
    "add_bias": Kernel(add_bias, fresh=True, per_map_bias=True),
    "sum_bias": Kernel(sum_bias),
    "matmul": Kernel(lambda a, b, **flags: compiled("numba_blocks").matmul(a, b, **flags)),
    "mul": Kernel(multiply, in_place=multiply_in_place, product=True),
    "poly": Kernel(poly, fresh=True, times=poly_times, times_upsampled=poly_times_upsampled),
    "scale_maps": Kernel(scale_maps, fresh=True, epilogue=scale_maps_epilogue,
                         per_map_factor=True),
    "relu_slope": Kernel(lambda y: rectifier_slope(y, 0), fresh=True),
    "leaky_relu_slope": Kernel(lambda y, *, slope=0.01: rectifier_slope(y, slope), fresh=True),
    "pool_max": Kernel(pool_max, fresh=True),
    "pool_max_grad": Kernel(pool_max_grad, fresh=True),
    "pool_mean": Kernel(pool_mean, fresh=True),
    "pool_mean_grad": Kernel(pool_mean_grad, fresh=True),
    "sigmoid": activation("sigmoid", lambda gain=1.0: ("SIGMOID", -gain, 1.0)),
    "tanh": activation("tanh", lambda a=1.0, b=1.0: ("TANH", b, a)),
    "gelu": Kernel(flat("gelu")),
    "gelu_slope": Kernel(flat("gelu_slope"), fresh=True),
    "norm_batch": Kernel(_norm("norm_batch", 1), fresh=True),
    "norm_batch_grad": Kernel(_norm("norm_batch_grad", 2), fresh=True),
    "norm_layer": Kernel(_norm("norm_layer", 1), fresh=True),
    "norm_layer_grad": Kernel(_norm("norm_layer_grad", 2), fresh=True),
}


def set_threads(count: int) -> None:
    """Run the kernels on ``count`` threads (numba's setting is per calling thread)."""
    import numba
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))


def _setup():
    """The kernels loaded (compiled on a first run); the fallback, NumPy's backend,
    sets up the allocator."""
    _conv(), _tiled(), _maps(), _pool(), activations()


def numba_backend(fallback: Backend) -> Backend:
    return Backend("numba", KERNELS, setup=_setup, fallback=fallback,
                   set_threads=set_threads)


def default_backend() -> str:
    """'numba' where numba is installed, else 'numpy'; CNNGRAPH_BACKEND overrides."""
    return os.environ.get("CNNGRAPH_BACKEND") or ("numba" if available() else "numpy")
