"""matmul: the fully connected layer u = W x + b as x Wᵀ on batch rows (seed eq. 2).

With W of shape (out, in) and x of shape (N, in): delta_x = delta W and
grad_W = deltaᵀ x, summed over the batch (eq. 4 and 5; DESIGN.md notes eq. 5's
transpose).  Both are matmuls with other transpose flags, so the op is closed.
"""
from __future__ import annotations

from ..core.graph import ShapeError
import numpy as np

from ..core.registry import Example, OpRule
from .explain_support import explained, part

#: The contributions a matmul's explanation lists one by one; the rest are summed.
LISTED = 8


def _oriented(shape, transpose):
    return tuple(reversed(shape)) if transpose else tuple(shape)


def matmul_shape(a, b, *, transpose_a=False, transpose_b=False):
    if len(a) != 2 or len(b) != 2:
        raise ShapeError(f"matmul takes matrices, got shapes {a} and {b}")
    (m, k1), (k2, n) = _oriented(a, transpose_a), _oriented(b, transpose_b)
    if k1 != k2:
        raise ShapeError(f"inner sizes differ: {k1} and {k2}")
    return (m, n)


def matmul_reference(a, b, *, transpose_a=False, transpose_b=False):
    return (a.T if transpose_a else a) @ (b.T if transpose_b else b)


def matmul_gradient(emit, node, delta):
    """Gradients of C = op(A) op(B), each again one matmul."""
    a, b = node.inputs
    ta, tb = node.attrs.get("transpose_a", False), node.attrs.get("transpose_b", False)
    if ta:
        grad_a = emit.emit("matmul", (b, delta), transpose_a=tb, transpose_b=True)
    else:
        grad_a = emit.emit("matmul", (delta, b), transpose_a=False, transpose_b=not tb)
    if tb:
        grad_b = emit.emit("matmul", (delta, a), transpose_a=True, transpose_b=ta)
    else:
        grad_b = emit.emit("matmul", (a, delta), transpose_a=not ta, transpose_b=False)
    return grad_a, grad_b


def matmul_macs(a, b, *, transpose_a=False, transpose_b=False):
    """Per image: inner size × columns when the rows are the images (x Wᵀ), the
    output's size when the inner sum runs over the images (deltaᵀ x)."""
    rows, inner = _oriented(a, transpose_a)
    columns = _oriented(b, transpose_b)[1]
    return rows * columns if inner is None else inner * columns


def matmul_onnx(graph, a, b, *, transpose_a=False, transpose_b=False):
    flags = {k: 1 for k, on in (("transA", transpose_a), ("transB", transpose_b)) if on}
    return graph.op("Gemm", [a, b], **flags)


def matmul_explain(inputs, attrs, index):
    """Output (m, n) = Σ_k op(a)[m, k] op(b)[k, n]: the largest terms, then the rest."""
    a, b = inputs
    ta, tb = attrs.get("transpose_a", False), attrs.get("transpose_b", False)
    m, n = index
    row = np.asarray(a[:, m] if ta else a[m], np.float64)
    column = np.asarray(b[n] if tb else b[:, n], np.float64)
    terms = row * column
    order = np.argsort(-np.abs(terms), kind="stable")
    parts = [part(f"a[{k}] · w[{k}]", terms[k], "a", (k, m) if ta else (m, k),
                  values=row[k], weights=column[k], weight_slot="b",
                  weight_index=(n, k) if tb else (k, n)) for k in order[:LISTED]]
    rest = order[LISTED:]
    if rest.size:
        parts.append(part(f"the other {rest.size} terms", terms[rest].sum()))
    return explained(f"Σ_k a_k w_k over {terms.size} inputs: the {min(LISTED, terms.size)} "
                     f"largest contributions, then the rest (seed eq. 2)", "sum", parts,
                     terms.sum())


def matmul_example(rng):
    return Example((rng.normal(size=(3, 4)), rng.normal(size=(5, 4))), {"transpose_b": True})


def _label(attrs):
    a = "Aᵀ" if attrs.get("transpose_a") else "A"
    b = "Bᵀ" if attrs.get("transpose_b") else "B"
    return f"matmul {a}{b}"


RULES = (
    OpRule("matmul", ("a", "b"), matmul_shape, matmul_gradient, matmul_example,
           reference=matmul_reference, lowering=matmul_onnx, label=_label,
           traits=frozenset({"multilinear"}),
           macs=matmul_macs, explain=matmul_explain,
           attrs={"transpose_a": False, "transpose_b": False},
           doc="op(a) @ op(b); a fully connected layer is matmul(x, W, transpose_b=True)"),
)
