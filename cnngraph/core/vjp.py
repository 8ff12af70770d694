"""The escape hatch: an op whose gradient is a NumPy function rather than emitted ops.

Each slot's gradient (and curvature) entry becomes a backward op of its own,
whose reference picks that entry out of the function's result, so the backward
graph stays data that is drawn, scheduled and checked like any other
(examples/relu.py).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .registry import Example, NotDifferentiable, OpRule, Registry


def add_vjp_op(registry: Registry, name: str, slots: tuple[str, ...], shape: Callable,
               forward: Callable, vjp: Callable, example: Callable,
               curvature_vjp: Callable | None = None, in_place: Callable | None = None,
               **fields) -> list[str]:
    """The escape hatch: register an op whose gradient is a NumPy function, not
    emitted ops, with ``forward`` as its reference.

    ``vjp(*inputs, delta, **attrs)`` returns one array (or None) per slot; each
    slot's entry becomes its own backward node, op ``{name}_vjp_{slot}`` (its
    reference picks that entry), which is drawn, scheduled and checked like any
    other.  ``curvature_vjp`` does the same for the SDLM recursion (op
    ``{name}_curvature_{slot}``).  ``in_place`` is the forward's in-place form
    (`Kernel.in_place`), declared in the NumPy backend.  ``fields`` are the
    forward rule's other `OpRule` fields (lowering, traits, label, ...).
    Returns the names of the ops registered.
    """
    backward = _slot_ops(name, "vjp", slots, shape, vjp, example)
    curvature = _slot_ops(name, "curvature", slots, shape, curvature_vjp, example) \
        if curvature_vjp else {}

    def emitter(ops):
        def rule(emit, node, delta):
            return tuple(emit.emit(ops[s].name, node.inputs + (delta,), **node.attrs)
                         if s in ops else None for s in slots)
        return rule

    registry.add_op(OpRule(name, slots, shape, emitter(backward), example,
                           curvature=emitter(curvature) if curvature_vjp else None,
                           reference=forward, **fields))
    if in_place is not None:
        registry.add_kernel(name, forward, "numpy", in_place=in_place)
    for rule in (*backward.values(), *curvature.values()):
        registry.add_op(rule)
    return [name] + [rule.name for rule in (*backward.values(), *curvature.values())]


def _slot_ops(name, kind, slots, shape, fn, example):
    """{slot: op rule} of one backward node per slot."""
    reason = NotDifferentiable(f"backward node of '{name}', computed by a NumPy function")
    ops = {}
    for index, slot in enumerate(slots):
        def reference(*args, _index=index, **attrs):
            out = fn(*args[:-1], args[-1], **attrs)[_index]
            return np.zeros_like(args[_index]) if out is None else out

        def slot_shape(*shapes, _index=index, **attrs):
            return shapes[_index]

        def slot_example(rng):
            base = example(rng)
            forward_shape = shape(*[np.shape(a) for a in base.inputs], **base.attrs)
            return Example(tuple(base.inputs) + (rng.normal(size=forward_shape),), base.attrs)

        ops[slot] = OpRule(f"{name}_{kind}_{slot}", slots + ("delta",), slot_shape, reason,
                           slot_example, curvature=reason, reference=reference,
                           doc=f"{kind} of '{name}' for slot '{slot}'")
    return ops
