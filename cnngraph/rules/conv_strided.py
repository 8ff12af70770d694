"""Strided, zero-padded and dilated convolutions: conv_valid's triple with a geometry.

The geometry is three per-dimension tuples: ``stride`` s, ``padding`` ((before,
after) per dimension) and ``dilation`` d (kernel taps d apart).  With x̃ the input
zero-padded,

    y[n, o, Y] = Σ_i Σ_a x̃[n, i, s·Y + d·a] k[o, i, a]          (Y, a: index tuples)

and, as for conv_valid (DESIGN's convention, seed 3.1.1), its input gradient is
the full true convolution of the stride-dilated δ (s − 1 zeros between its
values) with the dilated kernel, cropped to the unpadded input, and its kernel
gradient the valid correlation of x̃ with the stride-dilated δ, read every d taps.
The three ops are the bilinear faces of one form, each one's gradient made of
the other two with the same geometry (rules/conv.py's argument).

These are separate ops, not attributes of conv_valid, so that a convolution at
the defaults (stride 1, valid, dilation 1) stays exactly conv_valid: the same
graph, kernels and bits.  The padding lives inside the op rather than as a pad op
before it: the numba kernels pad while they copy a chunk into their block
anyway, and no padded copy of x is kept alive for the kernel gradient.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..core.graph import ShapeError
from ..core.registry import Example, OpRule
from .conv import _check_mask, _connected, conv_full_reference, conv_grad_kernel_reference
from .conv import masked_kernel_onnx
from .explain_support import explained, part

MULTILINEAR = frozenset({"multilinear"})
EXAMPLE_MASK = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.int8)
EXAMPLE_GEOMETRY = {"stride": (2, 1), "padding": ((1, 0), (2, 1)), "dilation": (1, 2)}
#: The examples by rank: map size, kernel size and geometry (2-D: as before 1-D and 3-D)
EXAMPLES = {
    1: ((9,), (3,), {"stride": (2,), "padding": ((1, 2),), "dilation": (2,)}),
    2: ((7, 6), (3, 2), EXAMPLE_GEOMETRY),
    3: ((5, 5, 4), (2, 2, 3), {"stride": (2, 1, 1), "padding": ((1, 0), (0, 1), (1, 1)),
                               "dilation": (1, 2, 1)}),
}


def _example_parts(rank):
    """Map size, kernel size, geometry and the output size of the rank's example."""
    size, k, geometry = EXAMPLES[rank]
    return size, k, geometry, output_size(size, k, **geometry)


def output_size(size, kernel, stride, padding, dilation):
    """Per dimension (n + before + after − d·(k − 1) − 1) // s + 1 (0 where none fits)."""
    return tuple(max(0, (n + p0 + p1 - d * (k - 1) - 1) // s + 1)
                 for n, k, s, (p0, p1), d in zip(size, kernel, stride, padding, dilation))


def _pad(x, padding):
    return np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in padding])


def _spread(delta, stride):
    """The stride-dilated δ: s − 1 zeros between its values along each dimension."""
    shape = delta.shape[:2] + tuple((n - 1) * s + 1 for n, s in zip(delta.shape[2:], stride))
    up = np.zeros(shape, delta.dtype)
    up[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)] = delta
    return up


def _dilated(kernel, dilation):
    """The kernel with d − 1 zeros between its taps."""
    shape = kernel.shape[:2] + tuple((k - 1) * d + 1 for k, d in zip(kernel.shape[2:], dilation))
    out = np.zeros(shape, kernel.dtype)
    out[(slice(None), slice(None)) + tuple(slice(None, None, d) for d in dilation)] = kernel
    return out


def _geometry_label(name):
    def label(attrs):
        parts = [name]
        for key, short in (("stride", "stride"), ("dilation", "dilation")):
            if any(v != 1 for v in attrs[key]):
                parts.append(f"{short} {'x'.join(map(str, attrs[key]))}")
        if any(p for pair in attrs["padding"] for p in pair):
            parts.append("pad " + "x".join(f"{a}+{b}" for a, b in attrs["padding"]))
        mask = attrs.get("mask")
        if mask is not None:
            parts.append(f"{int(mask.sum())} of {mask.size} map pairs")
        return "\\n".join(parts)
    return label


def _geometry(attrs):
    return {key: attrs[key] for key in ("stride", "padding", "dilation")}


# conv_strided -------------------------------------------------------------------

def conv_strided_reference(x, kernel, *, stride, padding, dilation, mask=None):
    """y[n, o] = Σ_i x̃[n, i] ⋆ k[o, i], the windows s apart and their taps d apart."""
    spatial = tuple(range(2, x.ndim))
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel.shape[2:], dilation))
    windows = sliding_window_view(_pad(x, padding), span, axis=spatial)
    windows = windows[(Ellipsis,) + tuple(slice(None, None, s) for s in stride)
                      + tuple(slice(None, None, d) for d in dilation)]  # n i *Y *a
    taps = tuple(range(2 + len(spatial), 2 + 2 * len(spatial)))
    y = np.tensordot(windows, _connected(kernel, mask), axes=((1,) + taps, (1,) + spatial))
    # batch-first in memory too: a kernel that keeps its input's layout (an activation's
    # slope) would otherwise hand a later sum another order than the unfused plan's
    return np.ascontiguousarray(np.moveaxis(y, -1, 1))


def conv_strided_shape(x, kernel, *, stride, padding, dilation, mask=None):
    c_out, k_in, *size = kernel
    if k_in != x[1]:
        raise ShapeError(f"kernel reads {k_in} maps, input has {x[1]}")
    out = output_size(x[2:], size, stride, padding, dilation)
    if min(out) < 1:
        raise ShapeError(f"kernel {'x'.join(map(str, size))} dilated by "
                         f"{'x'.join(map(str, dilation))} does not fit the padded input map")
    _check_mask(mask, c_out, x[1])
    return (x[0], c_out) + out


def conv_strided_gradient(emit, node, delta):
    x, kernel = node.inputs
    geometry, mask = _geometry(node.attrs), node.attrs.get("mask")
    return (emit.emit("conv_strided_full", (delta, kernel), map_size=emit.shape(x)[2:],
                      mask=mask, **geometry),
            emit.emit("conv_strided_grad_kernel", (x, delta), size=emit.shape(kernel)[2:],
                      mask=mask, **geometry))


def conv_strided_example(rng, rank=2):
    size, k, geometry, _ = _example_parts(rank)
    return Example((rng.normal(size=(2, 2, *size)), rng.normal(size=(3, 2, *k))),
                   {**geometry, "mask": EXAMPLE_MASK})


def conv_strided_onnx(graph, x, kernel, *, stride, padding, dilation, mask=None):
    """Conv with strides, pads (all befores, then all afters) and dilations."""
    pads = [p[0] for p in padding] + [p[1] for p in padding]
    return graph.op("Conv", [x, masked_kernel_onnx(graph, kernel, mask)], strides=list(stride),
                    pads=pads, dilations=list(dilation))


def conv_strided_explain(inputs, attrs, index):
    """One output value: each connected map's strided, dilated window ⋆ its kernel."""
    x, kernel = inputs
    stride, padding, dilation, mask = (attrs["stride"], attrs["padding"], attrs["dilation"],
                                       attrs.get("mask"))
    n, o, *at = index
    size = kernel.shape[2:]
    padded = _pad(np.asarray(x[n:n + 1], np.float64), padding)[0]
    corner = [a * s for a, s in zip(at, stride)]
    window = tuple(slice(c, c + (k - 1) * d + 1, d) for c, k, d in zip(corner, size, dilation))
    parts = []
    for i in range(x.shape[1]):
        if mask is not None and not mask[o, i]:
            continue
        patch = padded[(i,) + window]
        k = np.asarray(kernel[o, i], np.float64)
        parts.append(part(f"x_{i} ⋆ k_{i},{o}", (patch * k).sum(), "x",
                          (n, i, *(c - p for c, (p, _) in zip(corner, padding))), values=patch,
                          weights=k, weight_slot="kernel", weight_index=(o, i) + (0,) * len(size)))
    return explained(f"Σ over the connected input maps i of x_i ⋆ k_ij at stride "
                     f"{stride}, taps {dilation} apart, zeros outside the map", "sum", parts)


def conv_strided_macs(x, kernel, *, stride, padding, dilation, mask=None):
    c_out, c_in, *size = kernel
    pairs = c_out * c_in if mask is None else int(mask.sum())
    return pairs * int(np.prod(size)) * int(np.prod(output_size(x[2:], size, stride, padding,
                                                                dilation)))


# conv_strided_full ----------------------------------------------------------------

def conv_strided_full_reference(delta, kernel, *, map_size, stride, padding, dilation,
                                mask=None):
    """dx[n, i] = Σ_o up(δ[n, o]) * dilated k[o, i], full true convolution (seed 3.1.1),
    extended by zeros to the padded map (the rows a stride left unread) and cropped
    to the input."""
    full = conv_full_reference(_spread(delta, stride), _dilated(kernel, dilation), mask=mask)
    padded = tuple(n + p0 + p1 for n, (p0, p1) in zip(map_size, padding))
    full = np.pad(full, [(0, 0), (0, 0)] + [(0, p - f) for p, f in zip(padded, full.shape[2:])])
    return full[(slice(None), slice(None))
                + tuple(slice(p0, p0 + n) for n, (p0, _) in zip(map_size, padding))]


def conv_strided_full_shape(delta, kernel, *, map_size, stride, padding, dilation, mask=None):
    k_out, c_in, *size = kernel
    if k_out != delta[1]:
        raise ShapeError(f"kernel writes {k_out} maps, delta has {delta[1]}")
    expected = output_size(map_size, size, stride, padding, dilation)
    if tuple(delta[2:]) != expected:
        raise ShapeError(f"delta {'x'.join(map(str, delta[2:]))} is not the output "
                         f"{'x'.join(map(str, expected))} of a "
                         f"{'x'.join(map(str, map_size))} map")
    _check_mask(mask, delta[1], c_in)
    return (delta[0], c_in) + tuple(map_size)


def conv_strided_full_gradient(emit, node, delta):
    d, kernel = node.inputs
    geometry, mask = _geometry(node.attrs), node.attrs.get("mask")
    return (emit.emit("conv_strided", (delta, kernel), mask=mask, **geometry),
            emit.emit("conv_strided_grad_kernel", (delta, d), size=emit.shape(kernel)[2:],
                      mask=mask, **geometry))


def conv_strided_full_example(rng, rank=2):
    size, k, geometry, out = _example_parts(rank)
    return Example((rng.normal(size=(2, 3, *out)), rng.normal(size=(3, 2, *k))),
                   {"map_size": size, **geometry, "mask": EXAMPLE_MASK})


def conv_strided_full_explain(inputs, attrs, index):
    """One value of the input gradient: for each map o that read this map, the δ
    values whose windows covered this pixel, each times the kernel tap that read it."""
    delta, kernel = inputs
    stride, padding, dilation, mask = (attrs["stride"], attrs["padding"], attrs["dilation"],
                                       attrs.get("mask"))
    n, i, *at = index
    # per dimension, the (output position, kernel tap) pairs that read this pixel
    pairs = [[(Y, a) for a in range(k) for Y in range(m) if Y * s + a * d == q + p]
             for q, k, m, s, d, (p, _) in zip(at, kernel.shape[2:], delta.shape[2:], stride,
                                              dilation, padding)]
    outputs = np.ix_(*[[Y for Y, _ in dim] for dim in pairs])
    taps = np.ix_(*[[a for _, a in dim] for dim in pairs])
    parts = []
    for o in range(delta.shape[1]):
        if mask is not None and not mask[o, i]:
            continue
        values = np.asarray(delta[n, o], np.float64)[outputs]
        weights = np.asarray(kernel[o, i], np.float64)[taps]
        parts.append(part(f"up(δ_{o}) * k_{i},{o}", (values * weights).sum(), "delta",
                          (n, o, *(dim[0][0] if dim else 0 for dim in pairs)), values=values,
                          weights=weights, weight_slot="kernel",
                          weight_index=(o, i) + (0,) * len(pairs)))
    return explained("Σ over the maps o that read this map of the δ values whose windows "
                     "covered this pixel, each times the tap that read it (the full "
                     "convolution of the stride-dilated δ; seed 3.1.1)", "sum", parts)


def conv_strided_full_macs(delta, kernel, *, map_size, stride, padding, dilation, mask=None):
    """As many as the forward convolution whose delta it takes back."""
    c_out, c_in, *size = kernel
    pairs = c_out * c_in if mask is None else int(mask.sum())
    return pairs * int(np.prod(size)) * int(np.prod(delta[2:]))


# conv_strided_grad_kernel ----------------------------------------------------------

def conv_strided_grad_kernel_reference(x, delta, *, size, stride, padding, dilation,
                                       mask=None):
    """dE/dk[o, i] = Σ_n x̃[n, i] ⋆ up(δ[n, o]), valid, read every d taps (seed eq. 7)."""
    up = _spread(delta, stride)
    padded = _pad(x, padding)
    reach = tuple(u + (k - 1) * d for u, k, d in zip(up.shape[2:], size, dilation))
    padded = padded[(slice(None), slice(None)) + tuple(slice(0, r) for r in reach)]
    full = conv_grad_kernel_reference(padded, up, size=None)
    return _connected(full[(slice(None), slice(None))
                           + tuple(slice(None, None, d) for d in dilation)], mask)


def conv_strided_grad_kernel_shape(x, delta, *, size, stride, padding, dilation, mask=None):
    expected = output_size(x[2:], size, stride, padding, dilation)
    if tuple(delta[2:]) != expected:
        raise ShapeError(f"delta {'x'.join(map(str, delta[2:]))} does not fit input "
                         f"{'x'.join(map(str, x[2:]))} and kernel {'x'.join(map(str, size))}")
    _check_mask(mask, delta[1], x[1])
    return (delta[1], x[1]) + tuple(size)


def conv_strided_grad_kernel_gradient(emit, node, delta):
    x, d = node.inputs
    geometry, mask = _geometry(node.attrs), node.attrs.get("mask")
    return (emit.emit("conv_strided_full", (d, delta), map_size=emit.shape(x)[2:], mask=mask,
                      **geometry),
            emit.emit("conv_strided", (x, delta), mask=mask, **geometry))


def conv_strided_grad_kernel_example(rng, rank=2):
    size, k, geometry, out = _example_parts(rank)
    return Example((rng.normal(size=(2, 2, *size)), rng.normal(size=(2, 3, *out))),
                   {"size": k, **geometry, "mask": EXAMPLE_MASK})


def conv_strided_grad_kernel_macs(x, delta, *, size, stride, padding, dilation, mask=None):
    pairs = delta[1] * x[1] if mask is None else int(mask.sum())
    return pairs * int(np.prod(size)) * int(np.prod(delta[2:]))


RULES = (
    OpRule("conv_strided", ("x", "kernel"), conv_strided_shape, conv_strided_gradient,
           conv_strided_example, reference=conv_strided_reference, lowering=conv_strided_onnx,
           label=_geometry_label("conv_strided"), traits=MULTILINEAR, macs=conv_strided_macs,
           explain=conv_strided_explain,
           doc="sum_i x_i ⋆ kernel_ij with stride, zero padding and dilation (seed 3.1)"),
    OpRule("conv_strided_full", ("delta", "kernel"), conv_strided_full_shape,
           conv_strided_full_gradient, conv_strided_full_example,
           reference=conv_strided_full_reference, label=_geometry_label("conv_strided_full"),
           traits=MULTILINEAR, macs=conv_strided_full_macs, explain=conv_strided_full_explain,
           doc="full true convolution of the stride-dilated delta, cropped (seed 3.1.1)"),
    OpRule("conv_strided_grad_kernel", ("x", "delta"), conv_strided_grad_kernel_shape,
           conv_strided_grad_kernel_gradient, conv_strided_grad_kernel_example,
           reference=conv_strided_grad_kernel_reference,
           label=_geometry_label("conv_strided_grad_kernel"), traits=MULTILINEAR,
           macs=conv_strided_grad_kernel_macs,
           doc="valid correlation of padded x with the stride-dilated delta (eq. 7)"),
)
