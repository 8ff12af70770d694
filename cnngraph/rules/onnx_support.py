"""What the ops' ONNX lowerings share, and how a lowering is called.

Each op's lowering sits in its rule (`OpRule.lowering`).  The exporter
(cnngraph/tools/export.py) walks the forward graph in schedule order and calls,
for each op, ``lowering(graph, *inputs, **attrs)``: ``inputs`` are the ONNX
names of the op's inputs in slot order, ``attrs`` the node's attributes, and it
returns the ONNX name of the op's output.  ``graph`` offers

- ``graph.op(op_type, inputs, **attributes)``: emit one ONNX node, get its
  output's name;
- ``graph.const(array, hint)``: a constant (an initializer named after the
  node being written and ``hint``; float arrays are written as float32,
  integer ones as int64), get its name;
- ``graph.value(name)``: the array behind a name when it is known at export
  time (a parameter, or a value computed from parameters only), else None;
- ``graph.shape(name)``: the cnngraph shape (batch axis None) of an input.

Arrays are batch first (N, maps, H, W) in both, and our conv is a
cross-correlation, as ONNX's Conv is, so kernels are written unchanged.
Values that depend on parameters only (alpha = softmax(c), the kernels scaled
by it) are normally computed at export time and written as constants, so
their ops' lowerings serve exports with folding turned off.
"""
from __future__ import annotations

import numpy as np

#: Slice's "to the end".
END = np.iinfo(np.int64).max


def per_map(graph, v, ndim):
    """A per-map vector (C,) shaped to broadcast over (N, C, ...): (1, C, 1, 1)."""
    shape = (1, -1) + (1,) * (ndim - 2)
    known = graph.value(v)
    if known is not None:
        return graph.const(known.reshape(shape), v)
    return graph.op("Reshape", [v, graph.const(np.array(shape, np.int64), "per_map_shape")])


def scalar(graph, c, hint):
    """A constant scalar c (written as float32 like every float constant)."""
    return graph.const(np.array(c, np.float64), hint)


def ints(graph, values, hint):
    """An int64 vector constant (Slice's starts, Reshape's shape, ...)."""
    return graph.const(np.array(values, np.int64), hint)
