"""Shape ops: flatten maps into a vector (seed 2: "concatenate all the features"),
concatenate along the map axis, and the slices and pads that are their adjoints.

``shape`` attributes and ranges never include the batch axis.
"""
from __future__ import annotations

import math

import numpy as np

from ..core.graph import ShapeError
from ..core.registry import Example, OpRule
from .explain_support import moved, zero
from .onnx_support import ints

LINEAR = frozenset({"multilinear"})


def reshape_shape(x, *, shape):
    if math.prod(x[1:]) != math.prod(shape):
        raise ShapeError(f"cannot reshape {x[1:]} ({math.prod(x[1:])} values) to {tuple(shape)}")
    return (x[0],) + tuple(shape)


def reshape_reference(x, *, shape):
    return x.reshape((x.shape[0],) + tuple(shape))


def reshape_gradient(emit, node, delta):
    return (emit.emit("reshape", (delta,), shape=emit.shape(node.inputs[0])[1:]),)


def reshape_onnx(graph, x, *, shape):
    """The leading axis (the batch) kept: ONNX's 0 copies it."""
    return graph.op("Reshape", [x, ints(graph, (0, *shape), "shape")])


def concat_shape(a, b):
    if a[0:1] + a[2:] != b[0:1] + b[2:]:
        raise ShapeError(f"cannot concatenate shapes {a} and {b} along axis 1")
    return (a[0], a[1] + b[1]) + tuple(a[2:])


def concat_gradient(emit, node, delta):
    a_size = emit.shape(node.inputs[0])[1]
    total = emit.shape(node.id)[1]
    return (emit.emit("slice_range", (delta,), start=0, stop=a_size),
            emit.emit("slice_range", (delta,), start=a_size, stop=total))


def slice_shape(x, *, start, stop):
    if not 0 <= start < stop <= x[1]:
        raise ShapeError(f"range {start}:{stop} is outside axis 1 of size {x[1]}")
    return (x[0], stop - start) + tuple(x[2:])


def _slice_gradient(emit, node, delta):
    total = emit.shape(node.inputs[0])[1]
    return (emit.emit("pad_range", (delta,), before=node.attrs["start"],
                      after=total - node.attrs["stop"]),)


def _slice_onnx(graph, x, *, start, stop):
    return graph.op("Slice", [x, ints(graph, [start], "starts"), ints(graph, [stop], "ends"),
                              ints(graph, [1], "axes")])


def pad_shape(x, *, before, after):
    return (x[0], before + x[1] + after) + tuple(x[2:])


def _pad_reference(x, *, before, after):
    return np.pad(x, [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))


def _pad_gradient(emit, node, delta):
    start = node.attrs["before"]
    return (emit.emit("slice_range", (delta,), start=start,
                      stop=start + emit.shape(node.inputs[0])[1]),)


def reshape_explain(inputs, attrs, index):
    (x,) = inputs
    flat = np.ravel_multi_index(tuple(index[1:]), tuple(attrs["shape"]))
    return moved("the same value, reshaped", "x",
                 (index[0], *np.unravel_index(flat, x.shape[1:])), x)


def concat_explain(inputs, attrs, index):
    a, b = inputs
    if index[1] < a.shape[1]:
        return moved("taken from the first operand", "a", index, a)
    return moved("taken from the second operand", "b",
                 (index[0], index[1] - a.shape[1], *index[2:]), b)


def _slice_explain(inputs, attrs, index):
    return moved("taken from the slice's source", "x",
                 (index[0], index[1] + attrs["start"], *index[2:]), inputs[0])


def _pad_explain(inputs, attrs, index):
    (x,), before = inputs, attrs["before"]
    if not before <= index[1] < before + x.shape[1]:
        return zero("padding: zero")
    return moved("taken from the padded value", "x",
                 (index[0], index[1] - before, *index[2:]), x)


RULES = (
    OpRule("reshape", ("x",), reshape_shape, reshape_gradient,
           lambda rng: Example((rng.normal(size=(2, 3, 2, 2)),), {"shape": (12,)}),
           reference=reshape_reference, lowering=reshape_onnx,
           label=lambda a: "reshape to " + "x".join(map(str, a["shape"])),
           traits=LINEAR | {"view"}, explain=reshape_explain,
           doc="same values, new per-sample shape (flatten: maps -> vector)"),
    OpRule("concat", ("a", "b"), concat_shape, concat_gradient,
           lambda rng: Example((rng.normal(size=(2, 3, 2)), rng.normal(size=(2, 4, 2)))),
           reference=lambda a, b: np.concatenate((a, b), axis=1),
           lowering=lambda graph, a, b: graph.op("Concat", [a, b], axis=1),
           label=lambda a: "concat", traits=LINEAR, explain=concat_explain,
           doc="join along axis 1 (maps or units)"),
    OpRule("slice_range", ("x",), slice_shape, _slice_gradient,
           lambda rng: Example((rng.normal(size=(2, 5, 2)),), {"start": 1, "stop": 4}),
           reference=lambda x, *, start, stop: x[:, start:stop], lowering=_slice_onnx,
           label=lambda a: f"slice {a['start']}:{a['stop']}", traits=LINEAR | {"view"},
           explain=_slice_explain,
           doc="entries start:stop of axis 1 (concat's adjoint)"),
    OpRule("pad_range", ("x",), pad_shape, _pad_gradient,
           lambda rng: Example((rng.normal(size=(2, 3, 2)),), {"before": 1, "after": 2}),
           reference=_pad_reference, label=lambda a: f"pad {a['before']}+{a['after']}",
           traits=LINEAR, explain=_pad_explain,
           doc="zeros before and after along axis 1 (slice's adjoint)"),
)
