"""The generated checks of an op rule, the same for built-in and user ops.

For an op and its example: the shape rule against the real output; the
gradient rule, run through the real emit -> schedule -> execute path, against
central differences in float64 of <r, f(inputs)> for a random projection r
(Theano's verify_grad); the curvature rule against a brute-force evaluation of
the same recursion, (J∘J)ᵀ h with J the op's Jacobian by central differences
(for a loss, the diagonal of its Hessian); and for multilinear ops the adjoint
identity: <f(x), r> = <x_s, g_s> for each slot s of a product-like op (degree
one in each slot), or = Σ_s <x_s, g_s> for a sum-like one (linear jointly).
An op with an in-place kernel must give bitwise what its forward gives, in the
buffer it was handed (fused plans use it; fuse.py).

`verify_kernel` checks one backend's own kernel (an accelerated one, not what the
backend falls back on) against the op rule's reference, on cases the caller
chooses: sizes large enough to reach the kernel's fast paths, in float32 and
float64; its in-place form bitwise against its run, its other declared forms against
the steps they replace (tools/check_forms.py).
"""
from __future__ import annotations

from dataclasses import replace

import networkx as nx
import numpy as np

from ..compiler.backward import check_entries, curvature_rule, gradient_rule
from ..compiler.program import make_plan
from ..core.graph import Emitter, node_view
from ..core.registry import NotDifferentiable, OpRule, Registry, draw_example, example_ranks
from ..runtime.execute import run_plan
from .check_forms import declared_forms
from .slot_report import SlotReport, relative_error

TOLERANCE = 1e-6
EPS = 1e-6


def verify_op(registry: Registry, name: str, seed: int = 0,
              backend: str = "numpy", rank: int | None = None) -> list[SlotReport]:
    """All generated checks of one op, run with its kernel in ``backend``, on its
    example (in ``rank`` spatial dimensions where given: `example_ranks`)."""
    rule = registry.op(name)
    kernel = registry.backend(backend).kernel(name)
    forward = kernel.run
    rng = np.random.default_rng(seed)
    example = draw_example(rule, rng, rank)
    inputs = [np.asarray(a, dtype=np.float64) for a in example.inputs]
    attrs = dict(example.attrs)
    reports = [_check_shape(rule, forward, inputs, attrs)]
    if not reports[0].ok:
        return reports
    if not isinstance(rule.gradient, NotDifferentiable):
        reports += _check_rule(registry, rule, forward, inputs, attrs, rng, "gradient", backend)
    if _has_curvature(rule):
        reports += _check_rule(registry, rule, forward, inputs, attrs, rng, "curvature", backend)
    if kernel.in_place is not None:
        reports.append(_check_in_place(rule, kernel, inputs, attrs))
    return reports


def _check_in_place(rule, kernel, inputs, attrs) -> SlotReport:
    buffer = inputs[0].copy()
    try:
        got = kernel.in_place(buffer, *inputs[1:], **attrs)
        want = kernel.run(*inputs, **attrs)
    except Exception as e:  # a user's rule may fail in any way; report it, op named
        return SlotReport(rule.name, "in_place", "-", 1.0, False, f"{type(e).__name__}: {e}")
    if not (isinstance(got, np.ndarray) and np.shares_memory(got, buffer)):
        return SlotReport(rule.name, "in_place", "-", 1.0, False,
                          "in_place did not return the buffer it was given")
    same = got.shape == np.shape(want) and np.array_equal(got, want)
    return SlotReport(rule.name, "in_place", "-", 0.0 if same else relative_error(got, want),
                      same, "" if same else "in_place differs from forward")


def _has_curvature(rule: OpRule) -> bool:
    if isinstance(rule.curvature, NotDifferentiable):
        return False
    return rule.curvature is not None or "multilinear" in rule.traits


def _check_shape(rule, forward, inputs, attrs) -> SlotReport:
    try:
        declared = tuple(rule.shape(*[a.shape for a in inputs], **attrs))
        real = np.shape(forward(*inputs, **attrs))
    except Exception as e:  # a user's rule may fail in any way; report it, op named
        return SlotReport(rule.name, "shape", "-", 1.0, False, f"{type(e).__name__}: {e}")
    ok = declared == tuple(real)
    return SlotReport(rule.name, "shape", "-", 0.0 if ok else 1.0, ok,
                      "" if ok else f"shape rule says {declared}, forward gave {tuple(real)}")


def _check_rule(registry, rule, forward, inputs, attrs, rng, check,
                backend) -> list[SlotReport]:
    graph = nx.DiGraph()
    emit = Emitter(graph, registry)
    ids = [emit.source(slot, "input", a.shape) for slot, a in zip(rule.slots, inputs)]
    out = emit.emit(rule.name, ids, **attrs)
    out_shape = graph.nodes[out]["shape"]
    # the projection (gradient) or the output curvature (positive, for curvature)
    r = rng.normal(size=out_shape) if check == "gradient" else rng.uniform(0.5, 1.5, out_shape)
    emit.source("r", "input", out_shape)
    derived = Emitter(graph, registry, "backward" if check == "gradient" else "curvature")
    make = gradient_rule(rule) if check == "gradient" else curvature_rule(rule)
    try:
        entries = make(derived, node_view(graph, out), "r")
        check_entries(graph, rule, tuple(ids), entries, check)
    except Exception as e:
        return [SlotReport(rule.name, check, "-", 1.0, False, f"{type(e).__name__}: {e}")]
    wanted = [(slot, e) for slot, e in zip(rule.slots, entries)
              if e is not None and slot not in rule.shape_slots]
    plan = make_plan(graph, [e for _, e in wanted], registry, registry.backend(backend))
    feeds = dict(zip(ids, inputs), r=r)
    values = run_plan(plan, feeds) if wanted else {}
    reports = []
    if check == "gradient" and "multilinear" in rule.traits and wanted:
        reports.append(_adjoint(rule, forward, inputs, attrs, r, wanted, values))
    for slot, entry in wanted:
        position = rule.slots.index(slot)
        if check == "gradient":
            want = _numeric_gradient(forward, inputs, attrs, position, r)
        elif "loss" in rule.traits:
            want = hessian_diagonal(forward, inputs, attrs, position) * r
        else:
            want = squared_jacobian_transpose(forward, inputs, attrs, position, r)
        err = relative_error(values[entry], want)
        reports.append(SlotReport(rule.name, check, slot, err, err <= TOLERANCE))
    return reports


def _adjoint(rule, forward, inputs, attrs, r, wanted, values) -> SlotReport:
    """Exact to rounding, unlike finite differences: catches a transposed kernel."""
    total = float(np.sum(r * forward(*inputs, **attrs)))
    pairings = [float(np.sum(inputs[rule.slots.index(s)] * values[e])) for s, e in wanted]
    scale = max(abs(total), *map(abs, pairings), 1e-300)
    each = max(abs(total - p) for p in pairings) / scale
    joint = abs(total - sum(pairings)) / scale
    error = min(each, joint)
    return SlotReport(rule.name, "adjoint", ",".join(s for s, _ in wanted), error,
                      error <= 1e-10)


def _perturbed(forward, inputs, attrs, position, index, step):
    args = [a.copy() if i == position else a for i, a in enumerate(inputs)]
    args[position][index] += step
    return np.asarray(forward(*args, **attrs), dtype=np.float64)


def _numeric_gradient(forward, inputs, attrs, position, r):
    grad = np.zeros_like(inputs[position])
    for index in np.ndindex(grad.shape):
        plus = np.sum(r * _perturbed(forward, inputs, attrs, position, index, EPS))
        minus = np.sum(r * _perturbed(forward, inputs, attrs, position, index, -EPS))
        grad[index] = (plus - minus) / (2 * EPS)
    return grad


def squared_jacobian_transpose(forward, inputs, attrs, position, h):
    out = np.zeros_like(inputs[position])
    for index in np.ndindex(out.shape):
        column = (_perturbed(forward, inputs, attrs, position, index, EPS)
                  - _perturbed(forward, inputs, attrs, position, index, -EPS)) / (2 * EPS)
        out[index] = np.sum(h * column ** 2)
    return out


def hessian_diagonal(forward, inputs, attrs, position):
    step = 1e-3
    centre = float(forward(*inputs, **attrs))
    out = np.zeros_like(inputs[position])
    for index in np.ndindex(out.shape):
        plus = float(_perturbed(forward, inputs, attrs, position, index, step))
        minus = float(_perturbed(forward, inputs, attrs, position, index, -step))
        out[index] = (plus - 2 * centre + minus) / step ** 2
    return out


# a backend's own kernels against the op's reference ------------------------------

#: a kernel may differ from the reference by this many units in the last place of
#: its dtype, times the reference's largest value (float64: 9e-13, float32: 5e-4):
#: sums are reassociated, but a wrong index or tap is off by a whole term
KERNEL_ULPS = 4096


def verify_kernel(registry: Registry, backend: str, name: str, cases, dtype) -> list[SlotReport]:
    """``backend``'s own kernel for op ``name`` (its table's, never its fallback's)
    on each ``(label, Example)`` of ``cases`` in ``dtype``: its result against the
    rule's reference evaluated in float64 on the same (rounded) inputs, its inputs
    left unchanged, its in-place form bitwise equal to its run, and its other declared
    forms to the steps they replace (tools/check_forms.py).
    Each report's detail names the case."""
    rule, kernel = registry.op(name), registry.backend(backend).kernels[name]
    if rule.reference is None:
        return [SlotReport(name, "kernel", "-", 1.0, False,
                           f"backend '{backend}' has a kernel but the rule no reference")]
    reports = []
    for label, example in cases:
        inputs = [np.asarray(a, dtype) for a in example.inputs]
        attrs = dict(example.attrs)
        found = []
        if kernel.run is not rule.reference:
            found.append(_check_against_reference(rule, kernel, inputs, attrs))
        if kernel.in_place is not None:
            found.append(_check_in_place(rule, kernel, inputs, attrs))
        found += declared_forms(registry, registry.backend(backend), rule, kernel, inputs,
                                attrs)
        reports += [replace(r, detail=f"{label}: {r.detail}" if r.detail else label)
                    for r in found]
    return reports


def verify_own_kernels(registry: Registry, name: str, seed: int = 0) -> list[SlotReport]:
    """Every backend's own kernel for op ``name`` (an accelerated plugin kernel)
    against the rule's reference on its example, in float64 and float32; the slot
    column names the backend and dtype."""
    return [replace(r, slot=f"{backend.name}/{np.dtype(dtype).name}")
            for backend in registry.backends.values() if name in backend.kernels
            for dtype in (np.float64, np.float32)
            for r in verify_kernel(registry, backend.name, name, examples(registry.op(name), seed),
                                   dtype)]


def examples(rule: OpRule, seed: int = 0) -> list:
    """(label, Example) for an op's example and its forms in other ranks (`example_ranks`)."""
    return [("example", rule.example(np.random.default_rng(seed)))] + [
        (f"{rank}-D example", draw_example(rule, np.random.default_rng(seed), rank))
        for rank in example_ranks(rule)]


def _check_against_reference(rule, kernel, inputs, attrs) -> SlotReport:
    before = [a.copy() for a in inputs]
    try:
        got = np.asarray(kernel.run(*inputs, **attrs))
        want = np.asarray(rule.reference(*[a.astype(np.float64) for a in inputs], **attrs))
    except Exception as e:  # a user's kernel may fail in any way; report it, op named
        return SlotReport(rule.name, "kernel", "-", 1.0, False, f"{type(e).__name__}: {e}")
    if got.shape != want.shape:
        return SlotReport(rule.name, "kernel", "-", 1.0, False,
                          f"kernel gave shape {got.shape}, reference {want.shape}")
    if any(a.tobytes() != b.tobytes() for a, b in zip(inputs, before)):
        return SlotReport(rule.name, "kernel", "-", 1.0, False, "kernel changed its inputs")
    error = kernel_error(got, want)
    ok = error <= KERNEL_ULPS * np.finfo(inputs[0].dtype).eps
    return SlotReport(rule.name, "kernel", "-", error, ok,
                      "" if ok else "kernel differs from the reference")


def kernel_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got − want| / max |want| (the absolute error where want vanishes); NaN
    anywhere in the difference counts as an error."""
    with np.errstate(invalid="ignore", over="ignore"):
        worst = np.max(np.abs(got.astype(np.float64) - want), initial=0.0)
    scale = np.max(np.abs(want), initial=0.0)
    return float(np.inf if np.isnan(worst) else worst / scale if scale > 0 else worst)
