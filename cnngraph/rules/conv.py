"""Convolution ops: the valid correlation, its full-convolution and kernel adjoints.

Convention as in numerics.py.  ``mask`` (C_out, C_in) of 0/1, or None for
all-pairs, selects the connected map pairs: masked-out kernels do not exist, so
every op multiplies its kernel operand by the mask and the kernel gradient is
masked too.  The three ops are the three bilinear faces of one form,
<conv_valid(x, k), delta> = <x, conv_full(delta, k)> = <k, conv_grad_kernel(x, delta)>,
so each one's gradient is made of the other two.

The references are einsums over sliding windows; the NumPy backend computes
the same sums as im2col matrix products, the numba one directly in blocks.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..core.graph import ShapeError
from ..core.registry import Example, OpRule
from .explain_support import explained, part

MULTILINEAR = frozenset({"multilinear"})


def _check_mask(mask, c_out, c_in):
    if mask is not None and mask.shape != (c_out, c_in):
        raise ShapeError(f"mask has shape {mask.shape}, kernel maps are {(c_out, c_in)}")


def _label(name):
    def label(attrs):
        mask = attrs.get("mask")
        return name if mask is None else f"{name}\\n{int(mask.sum())} of {mask.size} map pairs"
    return label


def _connected(kernel, mask):
    return kernel if mask is None else kernel * mask.reshape(mask.shape + (1,) * (kernel.ndim - 2))


def _letters(rank: int) -> tuple[str, str]:
    """einsum letters of the output positions and the kernel taps, one per dimension."""
    return "hwv"[:rank], "abc"[:rank]


def _window(corner, size) -> tuple:
    """The slices of the window of ``size`` at ``corner`` (one entry per dimension)."""
    return tuple(slice(c, c + k) for c, k in zip(corner, size))


def _rank_check(x, kernel, what="input"):
    if len(x) != len(kernel):
        raise ShapeError(f"a {len(kernel) - 2}-D kernel on a {len(x) - 2}-D {what}")


def _x(sizes) -> str:
    return "x".join(map(str, sizes))


# conv_valid ---------------------------------------------------------------

def conv_valid_reference(x, kernel, *, mask=None):
    """y[n, o] = Σ_i x[n, i] ⋆ k[o, i] (valid cross-correlation, seed 3.1), in 1, 2
    or 3 dimensions."""
    size = kernel.shape[2:]
    windows = sliding_window_view(x, size, axis=tuple(range(2, x.ndim)))   # n i h w a b
    out, taps = _letters(len(size))
    return np.einsum(f"ni{out}{taps},oi{taps}->no{out}", windows, _connected(kernel, mask))



def conv_valid_shape(x, kernel, *, mask=None):
    n, c_in, *size = x
    c_out, k_in, *k = kernel
    _rank_check(x, kernel)
    if k_in != c_in:
        raise ShapeError(f"kernel reads {k_in} maps, input has {c_in}")
    if any(a > b for a, b in zip(k, size)):
        raise ShapeError(f"kernel {_x(k)} is larger than input map {_x(size)}")
    _check_mask(mask, c_out, c_in)
    return (n, c_out, *(m - a + 1 for m, a in zip(size, k)))


def conv_valid_gradient(emit, node, delta):
    x, kernel = node.inputs
    mask = node.attrs.get("mask")
    return (emit.emit("conv_full", (delta, kernel), mask=mask),
            emit.emit("conv_grad_kernel", (x, delta), mask=mask, size=emit.shape(kernel)[2:]))


#: The examples' map and kernel sizes by rank (2-D: the sizes before 1-D and 3-D existed).
EXAMPLE_SIZES = {1: ((9,), (3,)), 2: ((6, 5), (3, 2)), 3: ((5, 4, 4), (3, 2, 2))}
EXAMPLE_MASK = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.int8)


def conv_valid_example(rng, rank=2):
    size, k = EXAMPLE_SIZES[rank]
    return Example((rng.normal(size=(2, 2, *size)), rng.normal(size=(3, 2, *k))),
                   {"mask": EXAMPLE_MASK})


def masked_kernel_onnx(graph, kernel, mask):
    """The ONNX name of the kernel; a masked kernel is written densely as kernel·mask."""
    if mask is None:
        return kernel
    pairs = mask.reshape(mask.shape + (1,) * (len(graph.shape(kernel)) - 2))
    known = graph.value(kernel)
    return graph.const(known * pairs, kernel) if known is not None else \
        graph.op("Mul", [kernel, graph.const(pairs.astype(np.float64), "mask")])


def conv_valid_onnx(graph, x, kernel, *, mask=None):
    """Conv (valid, stride 1)."""
    return graph.op("Conv", [x, masked_kernel_onnx(graph, kernel, mask)])


def conv_valid_explain(inputs, attrs, index):
    """One output value: each connected map's receptive field ⋆ its kernel, summed."""
    x, kernel = inputs
    mask = attrs.get("mask")
    n, o, *at = index
    size = kernel.shape[2:]
    parts = []
    for i in range(x.shape[1]):
        if mask is not None and not mask[o, i]:
            continue
        patch = np.asarray(x[(n, i) + _window(at, size)], np.float64)
        k = np.asarray(kernel[o, i], np.float64)
        parts.append(part(f"x_{i} ⋆ k_{i},{o}", (patch * k).sum(), "x", (n, i, *at),
                          values=patch, weights=k, weight_slot="kernel",
                          weight_index=(o, i) + (0,) * len(size)))
    return explained("Σ over the connected input maps i of x_i ⋆ k_ij: each receptive field "
                     "times its kernel, summed (seed 3.1)", "sum", parts)


# conv_full ----------------------------------------------------------------

def conv_full_reference(delta, kernel, *, mask=None):
    """dx[n, i] = Σ_o delta[n, o] * k[o, i] (full true convolution, seed 3.2.1):
    the valid correlation of zero-padded delta with the rotated kernel."""
    size = kernel.shape[2:]
    padded = np.pad(delta, ((0, 0), (0, 0)) + tuple((k - 1, k - 1) for k in size))
    flip = (slice(None), slice(None)) + (slice(None, None, -1),) * len(size)
    rotated = _connected(kernel, mask)[flip]
    return conv_valid_reference(padded, rotated.transpose(1, 0, *range(2, kernel.ndim)))



def conv_full_explain(inputs, attrs, index):
    """One value of the full convolution: for each map o that read map i, the δ
    window (zeros outside δ) times the kernel k_io rotated by 180°, summed."""
    delta, kernel = inputs
    mask = attrs.get("mask")
    n, i, *at = index
    size = kernel.shape[2:]
    padded = np.pad(np.asarray(delta[n], np.float64), ((0, 0),) + tuple((k - 1, k - 1)
                                                                      for k in size))
    parts = []
    for o in range(delta.shape[1]):
        if mask is not None and not mask[o, i]:
            continue
        window = padded[(o,) + _window(at, size)]
        rotated = np.asarray(kernel[o, i], np.float64)[(slice(None, None, -1),) * len(size)]
        parts.append(part(f"δ_{o} ⋆ rot180(k_{i},{o})", (window * rotated).sum(), "delta",
                          (n, o, *(a - k + 1 for a, k in zip(at, size))), values=window,
                          weights=rotated, weight_slot="kernel",
                          weight_index=(o, i) + (0,) * len(size)))
    return explained("Σ over the maps o that read this map of δ_o * k_io, the full "
                     "convolution (zeros outside δ; seed 3.2.1)", "sum", parts)


def conv_full_shape(delta, kernel, *, mask=None):
    n, c_out, *size = delta
    k_out, c_in, *k = kernel
    _rank_check(delta, kernel, "delta")
    if k_out != c_out:
        raise ShapeError(f"kernel writes {k_out} maps, delta has {c_out}")
    _check_mask(mask, c_out, c_in)
    return (n, c_in, *(m + a - 1 for m, a in zip(size, k)))


def conv_full_gradient(emit, node, delta):
    d, kernel = node.inputs
    mask = node.attrs.get("mask")
    return (emit.emit("conv_valid", (delta, kernel), mask=mask),
            emit.emit("conv_grad_kernel", (delta, d), mask=mask, size=emit.shape(kernel)[2:]))


def conv_full_example(rng, rank=2):
    size, k = EXAMPLE_SIZES[rank]
    delta = (4, 4) if rank == 2 else tuple(n - a + 1 for n, a in zip(size, k))
    return Example((rng.normal(size=(2, 3, *delta)), rng.normal(size=(3, 2, *k))),
                   {"mask": EXAMPLE_MASK})


# conv_grad_kernel ---------------------------------------------------------

def conv_grad_kernel_reference(x, delta, *, size, mask=None):
    """dE/dk[o, i] = Σ_n x[n, i] ⋆ delta[n, o], valid (seed eq. 7)."""
    windows = sliding_window_view(x, delta.shape[2:], axis=tuple(range(2, x.ndim)))  # n i a b h w
    out, taps = _letters(x.ndim - 2)
    return _connected(np.einsum(f"ni{taps}{out},no{out}->oi{taps}", windows, delta), mask)


def conv_grad_kernel_shape(x, delta, *, size, mask=None):
    _, c_in, *spatial = x
    _, c_out, *out = delta
    if len(out) != len(spatial) or len(size) != len(spatial) \
            or tuple(out) != tuple(m - k + 1 for m, k in zip(spatial, size)):
        raise ShapeError(f"delta {_x(out)} does not fit input {_x(spatial)} and kernel "
                         f"{_x(size)}")
    _check_mask(mask, c_out, c_in)
    return (c_out, c_in, *size)


def conv_grad_kernel_gradient(emit, node, delta):
    x, d = node.inputs
    mask = node.attrs.get("mask")
    return (emit.emit("conv_full", (d, delta), mask=mask),
            emit.emit("conv_valid", (x, delta), mask=mask))


def conv_grad_kernel_example(rng, rank=2):
    size, k = EXAMPLE_SIZES[rank]
    out = tuple(n - a + 1 for n, a in zip(size, k))
    return Example((rng.normal(size=(2, 2, *size)), rng.normal(size=(2, 3, *out))),
                   {"size": k, "mask": EXAMPLE_MASK})


def conv_valid_macs(x, kernel, *, mask=None):
    c_out, c_in, *k = kernel
    pairs = c_out * c_in if mask is None else int(mask.sum())
    return pairs * math.prod(k) * math.prod(m - a + 1 for m, a in zip(x[2:], k))


def conv_full_macs(delta, kernel, *, mask=None):
    """As many as the forward convolution whose delta it takes back."""
    c_out, c_in, *k = kernel
    pairs = c_out * c_in if mask is None else int(mask.sum())
    return pairs * math.prod(k) * math.prod(delta[2:])


def conv_grad_kernel_macs(x, delta, *, size, mask=None):
    pairs = delta[1] * x[1] if mask is None else int(mask.sum())
    return pairs * math.prod(size) * math.prod(delta[2:])


RULES = (
    OpRule("conv_valid", ("x", "kernel"), conv_valid_shape,
           conv_valid_gradient, conv_valid_example, reference=conv_valid_reference,
           lowering=conv_valid_onnx, label=_label("conv_valid"), traits=MULTILINEAR,
           macs=conv_valid_macs, explain=conv_valid_explain,
           doc="sum_i x_i ⋆ kernel_ij over connected pairs (seed 3.1)"),
    OpRule("conv_full", ("delta", "kernel"), conv_full_shape,
           conv_full_gradient, conv_full_example, reference=conv_full_reference,
           label=_label("conv_full"), traits=MULTILINEAR, macs=conv_full_macs,
           explain=conv_full_explain,
           doc="full true convolution of delta with the kernel (seed 3.2.1)"),
    OpRule("conv_grad_kernel", ("x", "delta"), conv_grad_kernel_shape,
           conv_grad_kernel_gradient, conv_grad_kernel_example,
           reference=conv_grad_kernel_reference, label=_label("conv_grad_kernel"),
           traits=MULTILINEAR, macs=conv_grad_kernel_macs,
           doc="valid correlation of x with delta, summed over the batch (eq. 7)"),
)
