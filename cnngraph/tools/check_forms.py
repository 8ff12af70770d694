"""The declared fused forms of a backend's kernel (core/backend.Kernel, compiler/fuse.py),
each against the steps it replaces, bit for bit, its inputs left unchanged: a shared
input's preparation and finish against run; an epilogue against run, the backend's bias
add and each activation it can apply in place; times against run and the backend's
product; scaled and reads_scaled against run and the backend's constant factor;
times_upsampled against run, the backend's constant or per-map factor, its upsampling
and its product.  Part of `check_ops.verify_kernel`.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..core.backend import Backend
from .slot_report import SlotReport, relative_error


def declared_forms(registry, table, rule, kernel, inputs, attrs) -> list[SlotReport]:
    """A report for each form ``kernel`` (``table``'s, for op ``rule``) declares."""
    found = []
    if kernel.shared_input is not None:
        found.append(_check_shared_input(rule, kernel, inputs, attrs))
    if kernel.epilogue is not None:
        found += _check_epilogue(registry, table, rule, kernel, inputs, attrs)
    if kernel.times is not None:
        found.append(_check_times(table, rule, kernel, inputs, attrs))
    for form in ("scaled", "reads_scaled"):
        if getattr(kernel, form) is not None:
            found.append(_check_scaled(table, rule, kernel, form, inputs, attrs))
    if kernel.times_upsampled is not None:
        found += _check_times_upsampled(table, rule, kernel, inputs, attrs)
    return found


def _check_shared_input(rule, kernel, inputs, attrs) -> SlotReport:
    """The fused form (compiler/fuse.py): prepare the shared input once, finish
    from it; the preparation's declared shape must count its real bytes."""
    shared = kernel.shared_input
    x = inputs[shared.slot]
    x_shape = (None,) + x.shape[1:]  # as the graph holds it: batch first, batch unknown
    others = [a for slot, a in enumerate(inputs) if slot != shared.slot]
    try:
        key = shared.key([a.shape for a in inputs], attrs)
        prepared = shared.prepare(x, key)
        got = shared.finish(prepared, *others, x_shape=x_shape, key=key, **attrs)
        want = kernel.run(*inputs, **attrs)
        declared = Backend.value_bytes(shared.shape(x_shape, key), len(x), x.dtype)
    except Exception as e:  # a user's kernel may fail in any way; report it, op named
        return SlotReport(rule.name, "shared_input", "-", 1.0, False, f"{type(e).__name__}: {e}")
    if declared != prepared.nbytes:
        return SlotReport(rule.name, "shared_input", "-", 1.0, False,
                          f"its shape rule counts {declared} bytes, prepare made "
                          f"{prepared.nbytes}")
    same = np.shape(got) == np.shape(want) and np.array_equal(got, want)
    return SlotReport(rule.name, "shared_input", "-", 0.0 if same else relative_error(got, want),
                      same, "" if same else "prepare + finish differs from run")


def _check_epilogue(registry, table, rule, kernel, inputs, attrs) -> list[SlotReport]:
    """The fused form (compiler/fuse.py): epilogue(inputs, bias, then) against run, then
    the backend's per-map bias add, then ``then``'s in-place kernel, for no activation
    and for each one-input op whose kernel here has an in-place form (its default
    attributes), bit for bit, the inputs unchanged."""
    add_bias = next((k for k in table.kernels.values() if k.per_map_bias), None)
    if add_bias is None:
        return [SlotReport(rule.name, "epilogue", "-", 1.0, False,
                           "the backend declares an epilogue but no per-map bias kernel")]
    activations = [(None, None)] + [
        (op, table.kernel(op)) for op, other in sorted(registry.ops.items())
        if len(other.slots) == 1 and table.kernel(op).in_place is not None]
    reports = []
    for op, then in activations:
        then_attrs = dict(registry.op(op).attrs) if op else None
        before = [a.copy() for a in inputs]
        try:
            y = kernel.run(*inputs, **attrs)
            bias = np.linspace(-1, 1, y.shape[1]).astype(y.dtype)
            want = add_bias.run(y, bias)
            want = then.in_place(want, **then_attrs) if then else want
            got = kernel.epilogue(*inputs, bias=bias, then=then, then_attrs=then_attrs, **attrs)
        except Exception as e:  # a user's kernel may fail in any way; report it, op named
            reports.append(SlotReport(rule.name, "epilogue", op or "-", 1.0, False,
                                      f"{type(e).__name__}: {e}"))
            continue
        if any(a.tobytes() != b.tobytes() for a, b in zip(inputs, before)):
            reports.append(SlotReport(rule.name, "epilogue", op or "-", 1.0, False,
                                      "the epilogue changed its inputs"))
            continue
        same = np.shape(got) == np.shape(want) and np.array_equal(got, want, equal_nan=True)
        reports.append(SlotReport(rule.name, "epilogue", op or "-",
                                  0.0 if same else relative_error(got, want), same,
                                  "" if same else f"epilogue with {op or 'no activation'} "
                                                  "differs from run + add_bias + it"))
    return reports


def _check_times(table, rule, kernel, inputs, attrs) -> SlotReport:
    """The fused product (compiler/fuse.py): times(inputs, by) against run, then the
    backend's product kernel in place, bit for bit, the inputs unchanged."""
    product = _declared(table, "product")
    if product is None:
        return SlotReport(rule.name, "times", "-", 1.0, False,
                          "the backend declares times but no product kernel")

    def compute():
        y = kernel.run(*inputs, **attrs)
        by = np.linspace(-2, 2, y.size).reshape(y.shape).astype(y.dtype)
        return kernel.times(*inputs, by=by, **attrs), product.in_place(y, by)
    return _bitwise_form(rule, "times", inputs, compute, "times differs from run and the product")


def _check_scaled(table, rule, kernel, form, inputs, attrs, c=0.3) -> SlotReport:
    """A fused constant factor (compiler/fuse.py) against run and the backend's `scale`
    kernel in their order, bit for bit, the inputs unchanged."""
    factor = _declared(table, "constant_factor")
    if factor is None:
        return SlotReport(rule.name, form, "-", 1.0, False,
                          f"the backend declares {form} but no constant-factor kernel")

    def compute():
        want = factor.run(kernel.run(*inputs, **attrs), c=c) if form == "scaled" \
            else kernel.run(factor.run(inputs[0], c=c), *inputs[1:], **attrs)
        return getattr(kernel, form)(*inputs, c=c, **attrs), want
    return _bitwise_form(rule, form, inputs, compute,
                         f"{form} differs from the separate constant factor")


def _bitwise_form(rule, check, inputs, compute, differs) -> SlotReport:
    """compute()'s (got, want) bit for bit, the inputs unchanged; else ``differs``."""
    before = [a.copy() for a in inputs]
    try:
        got, want = compute()
    except Exception as e:  # a user's kernel may fail in any way; report it
        return SlotReport(rule.name, check, "-", 1.0, False, f"{type(e).__name__}: {e}")
    if any(a.tobytes() != b.tobytes() for a, b in zip(inputs, before)):
        return SlotReport(rule.name, check, "-", 1.0, False, f"{check} changed its inputs")
    same = np.shape(got) == np.shape(want) and np.array_equal(got, want, equal_nan=True)
    return SlotReport(rule.name, check, "-", 0.0 if same else relative_error(got, want), same,
                      "" if same else differs)


def _declared(table, trait: str):
    """The first kernel with ``trait`` set in ``table`` or the tables it falls back on."""
    while table is not None:
        found = next((k for k in table.kernels.values() if getattr(k, trait)), None)
        if found is not None:
            return found
        table = table.fallback
    return None


def _check_times_upsampled(table, rule, kernel, inputs, attrs) -> list[SlotReport]:
    """The seed's δ above a subsampling in one step (compiler/fuse.py): times_upsampled
    against run, then the backend's product with its upsampling (blocks of 2 along each
    even dimension) of δ times a per-map β (its per-map factor) and times a constant
    (its constant factor)."""
    kernels = {trait: _declared(table, trait)
               for trait in ("product", "upsamples", "per_map_factor", "constant_factor")}
    missing = [trait for trait, found in kernels.items() if found is None]
    if missing:
        return [SlotReport(rule.name, "times_upsampled", "-", 1.0, False,
                           f"the backend declares times_upsampled but no {missing[0]} kernel")]
    reports = []
    for slot, scaled in (("per-map", "per_map_factor"), ("constant", "constant_factor")):
        def compute():
            y = kernel.run(*inputs, **attrs)
            factor = tuple(2 if n % 2 == 0 else 1 for n in y.shape[2:])
            shape = y.shape[:2] + tuple(n // f for n, f in zip(y.shape[2:], factor))
            delta = np.linspace(-2, 2, int(np.prod(shape))).reshape(shape).astype(y.dtype)
            beta = np.linspace(0.5, 1.5, y.shape[1]).astype(y.dtype) if scaled == \
                "per_map_factor" else 0.3
            product = kernels[scaled].run(delta, beta) if scaled == "per_map_factor" \
                else kernels[scaled].run(delta, c=beta)
            up = kernels["upsamples"].run(product, factor=factor)
            return (kernel.times_upsampled(*inputs, by=delta, beta=beta, factor=factor, **attrs),
                    kernels["product"].in_place(y, up))
        reports.append(replace(_bitwise_form(
            rule, "times_upsampled", inputs, compute,
            "times_upsampled differs from the factor, upsampling and product"), slot=slot))
    return reports
