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
    return kernel if mask is None else kernel * mask[:, :, None, None]


# conv_valid ---------------------------------------------------------------

def conv_valid_reference(x, kernel, *, mask=None):
    """y[n, o] = Σ_i x[n, i] ⋆ k[o, i] (valid cross-correlation, seed 3.1)."""
    kh, kw = kernel.shape[2:]
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))   # n i h w a b
    return np.einsum("nihwab,oiab->nohw", windows, _connected(kernel, mask))



def conv_valid_shape(x, kernel, *, mask=None):
    n, c_in, h, w = x
    c_out, k_in, kh, kw = kernel
    if k_in != c_in:
        raise ShapeError(f"kernel reads {k_in} maps, input has {c_in}")
    if kh > h or kw > w:
        raise ShapeError(f"kernel {kh}x{kw} is larger than input map {h}x{w}")
    _check_mask(mask, c_out, c_in)
    return (n, c_out, h - kh + 1, w - kw + 1)


def conv_valid_gradient(emit, node, delta):
    x, kernel = node.inputs
    mask = node.attrs.get("mask")
    return (emit.emit("conv_full", (delta, kernel), mask=mask),
            emit.emit("conv_grad_kernel", (x, delta), mask=mask, size=emit.shape(kernel)[2:]))


def conv_valid_example(rng):
    return Example((rng.normal(size=(2, 2, 6, 5)), rng.normal(size=(3, 2, 3, 2))),
                   {"mask": np.array([[1, 0], [1, 1], [0, 1]], dtype=np.int8)})


def masked_kernel_onnx(graph, kernel, mask):
    """The ONNX name of the kernel; a masked kernel is written densely as kernel·mask."""
    if mask is None:
        return kernel
    pairs = mask[:, :, None, None]
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
    n, o, r, c = index
    kh, kw = kernel.shape[2:]
    parts = []
    for i in range(x.shape[1]):
        if mask is not None and not mask[o, i]:
            continue
        patch = np.asarray(x[n, i, r:r + kh, c:c + kw], np.float64)
        k = np.asarray(kernel[o, i], np.float64)
        parts.append(part(f"x_{i} ⋆ k_{i},{o}", (patch * k).sum(), "x", (n, i, r, c),
                          values=patch, weights=k, weight_slot="kernel",
                          weight_index=(o, i, 0, 0)))
    return explained("Σ over the connected input maps i of x_i ⋆ k_ij: each receptive field "
                     "times its kernel, summed (seed 3.1)", "sum", parts)


# conv_full ----------------------------------------------------------------

def conv_full_reference(delta, kernel, *, mask=None):
    """dx[n, i] = Σ_o delta[n, o] * k[o, i] (full true convolution, seed 3.2.1):
    the valid correlation of zero-padded delta with the rotated kernel."""
    kh, kw = kernel.shape[2:]
    padded = np.pad(delta, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    rotated = _connected(kernel, mask)[:, :, ::-1, ::-1]
    return conv_valid_reference(padded, rotated.transpose(1, 0, 2, 3))



def conv_full_explain(inputs, attrs, index):
    """One value of the full convolution: for each map o that read map i, the δ
    window (zeros outside δ) times the kernel k_io rotated by 180°, summed."""
    delta, kernel = inputs
    mask = attrs.get("mask")
    n, i, r, c = index
    kh, kw = kernel.shape[2:]
    padded = np.pad(np.asarray(delta[n], np.float64), ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    parts = []
    for o in range(delta.shape[1]):
        if mask is not None and not mask[o, i]:
            continue
        window = padded[o, r:r + kh, c:c + kw]
        rotated = np.asarray(kernel[o, i], np.float64)[::-1, ::-1]
        parts.append(part(f"δ_{o} ⋆ rot180(k_{i},{o})", (window * rotated).sum(), "delta",
                          (n, o, r - kh + 1, c - kw + 1), values=window, weights=rotated,
                          weight_slot="kernel", weight_index=(o, i, 0, 0)))
    return explained("Σ over the maps o that read this map of δ_o * k_io, the full "
                     "convolution (zeros outside δ; seed 3.2.1)", "sum", parts)


def conv_full_shape(delta, kernel, *, mask=None):
    n, c_out, h, w = delta
    k_out, c_in, kh, kw = kernel
    if k_out != c_out:
        raise ShapeError(f"kernel writes {k_out} maps, delta has {c_out}")
    _check_mask(mask, c_out, c_in)
    return (n, c_in, h + kh - 1, w + kw - 1)


def conv_full_gradient(emit, node, delta):
    d, kernel = node.inputs
    mask = node.attrs.get("mask")
    return (emit.emit("conv_valid", (delta, kernel), mask=mask),
            emit.emit("conv_grad_kernel", (delta, d), mask=mask, size=emit.shape(kernel)[2:]))


def conv_full_example(rng):
    return Example((rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(3, 2, 3, 2))),
                   {"mask": np.array([[1, 0], [1, 1], [0, 1]], dtype=np.int8)})


# conv_grad_kernel ---------------------------------------------------------

def conv_grad_kernel_reference(x, delta, *, size, mask=None):
    """dE/dk[o, i] = Σ_n x[n, i] ⋆ delta[n, o], valid (seed eq. 7)."""
    windows = sliding_window_view(x, delta.shape[2:], axis=(2, 3))   # n i a b h w
    return _connected(np.einsum("niabhw,nohw->oiab", windows, delta), mask)


def conv_grad_kernel_shape(x, delta, *, size, mask=None):
    _, c_in, h, w = x
    _, c_out, ho, wo = delta
    kh, kw = size
    if (ho, wo) != (h - kh + 1, w - kw + 1):
        raise ShapeError(f"delta {ho}x{wo} does not fit input {h}x{w} and kernel {kh}x{kw}")
    _check_mask(mask, c_out, c_in)
    return (c_out, c_in, kh, kw)


def conv_grad_kernel_gradient(emit, node, delta):
    x, d = node.inputs
    mask = node.attrs.get("mask")
    return (emit.emit("conv_full", (d, delta), mask=mask),
            emit.emit("conv_valid", (x, delta), mask=mask))


def conv_grad_kernel_example(rng):
    return Example((rng.normal(size=(2, 2, 6, 5)), rng.normal(size=(2, 3, 4, 4))),
                   {"size": (3, 2), "mask": np.array([[1, 0], [1, 1], [0, 1]], dtype=np.int8)})


def conv_valid_macs(x, kernel, *, mask=None):
    c_out, c_in, kh, kw = kernel
    pairs = c_out * c_in if mask is None else int(mask.sum())
    return pairs * kh * kw * (x[2] - kh + 1) * (x[3] - kw + 1)


def conv_full_macs(delta, kernel, *, mask=None):
    """As many as the forward convolution whose delta it takes back."""
    c_out, c_in, kh, kw = kernel
    pairs = c_out * c_in if mask is None else int(mask.sum())
    return pairs * kh * kw * delta[2] * delta[3]


def conv_grad_kernel_macs(x, delta, *, size, mask=None):
    pairs = delta[1] * x[1] if mask is None else int(mask.sum())
    return pairs * size[0] * size[1] * delta[2] * delta[3]


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
