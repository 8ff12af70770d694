"""Ops for learned feature-map combinations (seed 3.3) and their sparsity penalties.

alpha = softmax of the unconstrained weights c along each output map's row
(alpha_·j sums to one over the input maps i), seed eq. 8-10:
dE/dc_i = alpha_i (dE/dalpha_i − Σ_k dE/dalpha_k alpha_k).

Penalties act on alpha (C_out, C_in) and add a scalar to the loss:
- l1: the seed's λ Σ|alpha| (eq. 11).  On softmax weights it is the constant λ·C_out,
  so its gradient (eq. 14) is zero up to rounding: kept to reproduce the note.
- entropy: λ Σ_j −Σ_i alpha_ij log alpha_ij, smallest when each row is one-hot.
- power: λ Σ alpha^p with p < 1, concave, smallest at the simplex's corners.
Penalties pass no curvature to SDLM (their Hessians are not positive semidefinite).
"""
from __future__ import annotations

import numpy as np

from ..core.graph import ShapeError
from ..core.registry import REQUIRED, Example, NotDifferentiable, OpRule
from ..runtime.numerics import softmax
from .explain_support import element, explained, part
from .onnx_support import ints

BACKWARD_ONLY = NotDifferentiable("backward-only op of the learned combination")
TINY = 1e-30  # keeps log alpha finite where alpha underflows to zero


def _matrix(c):
    if len(c) != 2:
        raise ShapeError(f"expects a (maps out, maps in) matrix, got shape {c}")
    return c


def _example_matrix(rng):
    return Example((rng.normal(size=(3, 4)),))


def _example_alpha_and(rng):
    return Example((softmax(rng.normal(size=(3, 4))), rng.normal(size=(3, 4))))


def _penalty_rule(name, phi, phi_slope, doc, **defaults):
    """A scalar penalty λ·Σ φ(alpha); its gradient, delta·λ·φ'(alpha), is an op."""
    grad_name = f"{name}_grad"
    example_attrs = {"lam": 0.3, **defaults}
    return (
        OpRule(name, ("alpha",), lambda a, **k: (),
               lambda emit, node, delta: (emit.emit(grad_name, (node.inputs[0], delta),
                                                    **node.attrs),),
               lambda rng: Example((softmax(rng.normal(size=(3, 4))),), example_attrs),
               curvature=lambda emit, node, h: (None,),
               reference=lambda a, *, lam, **attrs: np.asarray(lam * phi(a, **attrs).sum()),
               traits=frozenset({"loss"}), label=lambda a: f"{name} λ={a['lam']:g}",
               attrs={"lam": REQUIRED, **defaults}, doc=doc),
        OpRule(grad_name, ("alpha", "delta"), lambda a, d, **k: a, BACKWARD_ONLY,
               lambda rng: Example((softmax(rng.normal(size=(3, 4))), np.asarray(0.7)),
                                   example_attrs),
               curvature=BACKWARD_ONLY,
               reference=lambda a, d, *, lam, **attrs: d * lam * phi_slope(a, **attrs),
               attrs={"lam": REQUIRED, **defaults}, doc=f"gradient of {name}"),
    )


def _pairs_shape(kernel, alpha):
    if tuple(kernel[:2]) != tuple(alpha):
        raise ShapeError(f"alpha {alpha} does not match the kernel's map pairs {kernel[:2]}")
    return kernel


def _scale_pairs_gradient(emit, node, delta):
    kernel, alpha = node.inputs
    return (emit.emit("scale_pairs", (delta, alpha)),
            emit.emit("sum_taps", (emit.emit("mul", (delta, kernel)),)))


def _scale_pairs_onnx(graph, kernel, alpha):
    """kernel_ij · alpha_ij, alpha reshaped to (C_out, C_in, 1, ...) (one 1 per dimension)."""
    ones = [1] * (len(graph.shape(kernel)) - 2)
    pairs = graph.op("Reshape", [alpha, ints(graph, [0, 0, *ones], "pairs_shape")])
    return graph.op("Mul", [kernel, pairs])


#: The examples' kernel sizes by rank (2-D: as before 1-D and 3-D existed).
TAPS = {1: (3,), 2: (2, 3), 3: (2, 2, 3)}


def _example_kernel(rng, rank=2):
    return Example((rng.normal(size=(3, 2, *TAPS[rank])), rng.normal(size=(3, 2))))


def _example_taps(rng, rank=2):
    return Example((rng.normal(size=(3, 2, *TAPS[rank])),))


def _example_expand(rng, rank=2):
    return Example((rng.normal(size=(3, 2)), rng.normal(size=(3, 2, *TAPS[rank]))))


def _scale_pairs_explain(inputs, attrs, index):
    kernel, alpha = inputs
    o, i = index[:2]
    return explained("α_ij · k_ij: the pair's kernel tap scaled by its weight", "product",
                     [part("k", element(kernel, index), "kernel", index),
                      part(f"α_{i},{o}", element(alpha, (o, i)), "alpha", (o, i))])


def _softmax_rows_explain(inputs, attrs, index):
    """α_ij = exp c_ij / Σ_k exp c_kj over output map j's row (each exp shifted by
    the row's largest c, which cancels)."""
    (c,) = inputs
    j, i = index
    row = np.asarray(c[j], np.float64)
    terms = np.exp(row - row.max())
    return explained(f"α_{i},{j} = exp c_{i},{j} / Σ_k exp c_k,{j} (seed 3.3; each exp "
                     f"divided by exp of the row's largest c)", "normalize",
                     [part(f"exp c_{k},{j}", terms[k], "c", (j, k)) for k in range(row.size)],
                     terms[i] / terms.sum(), chosen=int(i))


def _softmax_jacobian(alpha):
    """d alpha_jk / d c_ji for each row j: diag(alpha_j) − alpha_j alpha_jᵀ."""
    return (np.einsum("jk,ik->jik", alpha, np.eye(alpha.shape[1]))
            - np.einsum("ji,jk->jik", alpha, alpha))


def _softmax_rows_grad(alpha, delta):
    """seed eq. 10: dE/dc_ji = Σ_k dE/dalpha_jk · dalpha_jk/dc_ji."""
    return np.einsum("ji,jik->jk", delta, _softmax_jacobian(alpha))


def _softmax_rows_curvature(alpha, h):
    """Gauss-Newton: h_c = Σ_k h_k (dalpha_k/dc_i)²."""
    return np.einsum("ji,jik->jk", h, _softmax_jacobian(alpha) ** 2)


RULES = (
    OpRule("scale_pairs", ("kernel", "alpha"), _pairs_shape, _scale_pairs_gradient,
           _example_kernel,
           reference=lambda kernel, alpha: np.einsum("oi...,oi->oi...", kernel, alpha),
           lowering=_scale_pairs_onnx, traits=frozenset({"multilinear"}),
           label=lambda a: "k_ij · α_ij", explain=_scale_pairs_explain,
           doc="the per-pair variant's effective kernel alpha_ij k_ij"),
    OpRule("sum_taps", ("x",), lambda x: tuple(x[:2]),
           lambda emit, node, delta: (emit.emit("expand_taps", (delta, node.inputs[0])),),
           _example_taps, reference=lambda x: np.einsum("oiabc"[:x.ndim] + "->oi", x),
           traits=frozenset({"multilinear"}),
           label=lambda a: "Σ over taps", doc="sum over each kernel's taps"),
    OpRule("expand_taps", ("x", "like"), lambda x, like: like,
           lambda emit, node, delta: (emit.emit("sum_taps", (delta,)), None),
           _example_expand,
           reference=lambda x, like: np.einsum("oi,oi...->oi...", x, np.ones_like(like)),
           traits=frozenset({"multilinear", "shape_only"}), shape_slots=("like",),
           label=lambda a: "expand over taps", doc="tile (C_out, C_in) over kernel taps"),
    OpRule("softmax_rows", ("c",), _matrix,
           lambda emit, node, delta: (emit.emit("softmax_rows_grad", (node.id, delta)),),
           _example_matrix,
           curvature=lambda emit, node, h: (emit.emit("softmax_rows_curvature", (node.id, h)),),
           reference=softmax, lowering=lambda graph, c: graph.op("Softmax", [c], axis=1),
           label=lambda a: "α = softmax(c)", explain=_softmax_rows_explain,
           doc="alpha_ij = exp c_ij / Σ_k exp c_kj (seed 3.3)"),
    OpRule("softmax_rows_grad", ("alpha", "delta"), lambda a, d: a, BACKWARD_ONLY,
           _example_alpha_and, curvature=BACKWARD_ONLY, reference=_softmax_rows_grad,
           doc="seed eq. 10"),
    OpRule("softmax_rows_curvature", ("alpha", "h"), lambda a, h: a, BACKWARD_ONLY,
           _example_alpha_and, curvature=BACKWARD_ONLY, reference=_softmax_rows_curvature,
           doc="Gauss-Newton recursion through the softmax"),
    *_penalty_rule("penalty_l1", np.abs, np.sign,
                   "the seed's λ Σ|alpha| (eq. 11): constant on softmax weights"),
    *_penalty_rule("penalty_entropy", lambda a: -a * np.log(a + TINY),
                   lambda a: -np.log(a + TINY) - 1, "λ Σ_j entropy(alpha_·j)"),
    *_penalty_rule("penalty_power", lambda a, p=0.5: (a + TINY) ** p,
                   lambda a, p=0.5: p * (a + TINY) ** (p - 1), "λ Σ alpha^p, p < 1", p=0.5),
)
