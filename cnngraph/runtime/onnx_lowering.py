"""The ONNX lowering table: how each built-in op is written as ONNX nodes.

One more table beside the backends' kernels (numpy_backend.py): a backend says
how to *compute* an op, a lowering how to *write* it in another format.  The
exporter (cnngraph/tools/export.py) walks the forward graph in schedule order
and calls, for each op, ``lower(graph, *inputs, **attrs)``: ``inputs`` are the
ONNX names of the op's inputs in slot order, ``attrs`` the node's attributes,
and it returns the ONNX name of the op's output.  ``graph`` offers

- ``graph.op(op_type, inputs, **attributes)``: emit one ONNX node, get its
  output's name;
- ``graph.const(array, hint)``: a constant (an initializer named after the
  node being written and ``hint``; float arrays are written as float32,
  integer ones as int64), get its name;
- ``graph.value(name)``: the array behind a name when it is known at export
  time (a parameter, or a value computed from parameters only), else None;
- ``graph.shape(name)``: the cnngraph shape (batch axis None) of an input.

Arrays are batch first (N, maps, H, W) in both, and our conv is a
cross-correlation, as ONNX's Conv is, so kernels are written unchanged (a
masked one as the dense kernel·mask).  Values that depend on parameters only
(alpha = softmax(c) and the 1x1 mixing kernel or the scaled kernels made from
it) are normally computed at export time with the model's kernels and written
as constants, so their ops need no lowering then; the lowerings below for
those ops (softmax_rows, scale_pairs) serve exports with folding turned off.
Plugins register theirs with ``registry.add_lowering(op, FUNCTION)``
(examples/maxpool.py, examples/relu.py).
"""
from __future__ import annotations

import numpy as np

from ..core.registry import Registry

#: Slice's "to the end".
_END = np.iinfo(np.int64).max


def _per_map(graph, v, ndim):
    """A per-map vector (C,) shaped to broadcast over (N, C, ...): (1, C, 1, 1)."""
    shape = (1, -1) + (1,) * (ndim - 2)
    known = graph.value(v)
    if known is not None:
        return graph.const(known.reshape(shape), v)
    return graph.op("Reshape", [v, graph.const(np.array(shape, np.int64), "per_map_shape")])


def _scalar(graph, c, hint):
    return graph.const(np.array(c, np.float64), hint)


def conv_valid(graph, x, kernel, *, mask=None):
    """Conv (valid, stride 1); a masked kernel is written densely as kernel·mask."""
    if mask is not None:
        pairs = mask[:, :, None, None]
        known = graph.value(kernel)
        kernel = graph.const(known * pairs, kernel) if known is not None else \
            graph.op("Mul", [kernel, graph.const(pairs.astype(np.float64), "mask")])
    return graph.op("Conv", [x, kernel])


def add_bias(graph, x, bias):
    return graph.op("Add", [x, _per_map(graph, bias, len(graph.shape(x)))])


def scale_maps(graph, x, beta):
    return graph.op("Mul", [x, _per_map(graph, beta, len(graph.shape(x)))])


def scale(graph, x, *, c):
    return graph.op("Mul", [x, _scalar(graph, c, "c")])


def subsample_sum(graph, x, *, factor):
    """The block sum as the block mean times factor² (exact for factors 2 and 4)."""
    mean = graph.op("AveragePool", [x], kernel_shape=[factor, factor],
                    strides=[factor, factor])
    return graph.op("Mul", [mean, _scalar(graph, factor * factor, "block_size")])


def subsample_decimate(graph, x, *, factor):
    """Every factor-th row and column from the first: a Slice with steps."""
    return graph.op("Slice", [x, graph.const(np.array([0, 0], np.int64), "starts"),
                              graph.const(np.array([_END, _END], np.int64), "ends"),
                              graph.const(np.array([2, 3], np.int64), "axes"),
                              graph.const(np.array([factor, factor], np.int64), "steps")])


def reshape(graph, x, *, shape):
    """The leading axis (the batch) kept: ONNX's 0 copies it."""
    return graph.op("Reshape", [x, graph.const(np.array((0, *shape), np.int64), "shape")])


def concat(graph, a, b):
    return graph.op("Concat", [a, b], axis=1)


def slice_range(graph, x, *, start, stop):
    return graph.op("Slice", [x, graph.const(np.array([start], np.int64), "starts"),
                              graph.const(np.array([stop], np.int64), "ends"),
                              graph.const(np.array([1], np.int64), "axes")])


def matmul(graph, a, b, *, transpose_a=False, transpose_b=False):
    flags = {k: 1 for k, on in (("transA", transpose_a), ("transB", transpose_b)) if on}
    return graph.op("Gemm", [a, b], **flags)


def sigmoid(graph, u, *, gain=1.0):
    if gain != 1.0:
        u = graph.op("Mul", [u, _scalar(graph, gain, "gain")])
    return graph.op("Sigmoid", [u])


def tanh(graph, u, *, a=1.0, b=1.0):
    """a·tanh(b·u)."""
    if b != 1.0:
        u = graph.op("Mul", [u, _scalar(graph, b, "b")])
    y = graph.op("Tanh", [u])
    return graph.op("Mul", [y, _scalar(graph, a, "a")]) if a != 1.0 else y


def add(graph, a, b):
    return graph.op("Add", [a, b])


def mul(graph, a, b):
    return graph.op("Mul", [a, b])


def softmax_rows(graph, c):
    """alpha_ij = exp c_ij / Σ_k exp c_ik: Softmax over axis 1 of a matrix."""
    return graph.op("Softmax", [c], axis=1)


def scale_pairs(graph, kernel, alpha):
    """kernel_ij · alpha_ij, alpha reshaped to (C_out, C_in, 1, 1)."""
    pairs = graph.op("Reshape", [alpha, graph.const(np.array([0, 0, 1, 1], np.int64),
                                                    "pairs_shape")])
    return graph.op("Mul", [kernel, pairs])


LOWERINGS = {
    "conv_valid": conv_valid,
    "add_bias": add_bias,
    "scale_maps": scale_maps,
    "scale": scale,
    "subsample_sum": subsample_sum,
    "subsample_decimate": subsample_decimate,
    "reshape": reshape,
    "concat": concat,
    "slice_range": slice_range,
    "matmul": matmul,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "add": add,
    "mul": mul,
    "softmax_rows": softmax_rows,
    "scale_pairs": scale_pairs,
}


def register_onnx_lowerings(registry: Registry) -> Registry:
    """The built-in ops' ONNX lowerings (the registry must hold the ops already)."""
    for op, lower in LOWERINGS.items():
        registry.add_lowering(op, lower, target="onnx")
    return registry
