"""Checks generated from the registry: every op, built-in or added later, is covered.

The rules (shape, gradient, curvature, adjoint) are checked here on each op's
reference maths, its definition; every backend's own kernels are checked against
that reference in tests/test_backend_kernels.py."""
import dataclasses

import numpy as np
import pytest

from cnngraph.compiler.program import default_registry
from cnngraph.core.registry import NotDifferentiable, example_ranks
from cnngraph.tools.check_ops import verify_op

REGISTRY = default_registry()
OPS = sorted(REGISTRY.ops)
DIFFERENTIABLE = [n for n in OPS if not isinstance(REGISTRY.ops[n].gradient, NotDifferentiable)]


@pytest.mark.parametrize("op", OPS)
def test_op_rules_agree_with_finite_differences(op):
    reports = verify_op(REGISTRY, op, backend="reference")
    bad = [r for r in reports if not r.ok]
    assert not bad, bad
    checks = {r.check for r in reports}
    assert "shape" in checks
    if op in DIFFERENTIABLE:
        assert "gradient" in checks


RANKED = [(op, rank) for op in OPS for rank in example_ranks(REGISTRY.ops[op])]


@pytest.mark.parametrize("op,rank", RANKED, ids=[f"{op}-{rank}d" for op, rank in RANKED])
def test_op_rules_agree_with_finite_differences_in_1d_and_3d(op, rank):
    """The same checks on the op's example with 1 and 3 spatial dimensions (maps of
    length n, and volumes), for every op whose example takes a rank."""
    reports = verify_op(REGISTRY, op, backend="reference", rank=rank)
    bad = [r for r in reports if not r.ok]
    assert not bad, bad
    if op in DIFFERENTIABLE:
        assert "gradient" in {r.check for r in reports}


def test_the_map_ops_have_1d_and_3d_examples():
    """Every op of the families that work in every rank checks its 1-D and 3-D forms."""
    for op in OPS:
        if op.startswith(("conv_", "pool_", "subsample_", "upsample_", "norm_")):
            assert example_ranks(REGISTRY.ops[op]) == (1, 3), op


@pytest.mark.parametrize("op", OPS)
def test_every_op_has_a_kernel_in_every_backend(op):
    for backend in REGISTRY.backends.values():
        assert callable(backend.kernel(op).run)


@pytest.mark.parametrize("op", OPS)
def test_every_op_has_an_example_and_a_doc(op):
    rule = REGISTRY.ops[op]
    example = rule.example(np.random.default_rng(0))
    assert len(example.inputs) == len(rule.slots)
    assert rule.doc


def test_backward_only_ops_say_why():
    for name in set(OPS) - set(DIFFERENTIABLE):
        assert REGISTRY.ops[name].gradient.reason


def _planted(rule, factor=1.01):
    """The same rule with every gradient entry scaled by ``factor`` (a 1 % error)."""
    def wrong(emit, node, delta):
        entries = rule.gradient(emit, node, delta)
        return tuple(None if e is None else emit.emit("scale", (e,), c=factor) for e in entries)
    return dataclasses.replace(rule, gradient=wrong)


@pytest.mark.parametrize("op", [n for n in DIFFERENTIABLE if n != "scale"])
def test_a_planted_one_percent_error_is_caught_and_named(op):
    registry = REGISTRY.copy()
    registry.ops[op] = _planted(registry.ops[op])
    bad = [r for r in verify_op(registry, op) if r.check == "gradient" and not r.ok]
    assert bad and all(r.op == op for r in bad)
    assert all(r.error > 1e-3 for r in bad)


def test_planted_error_in_scale_is_caught():
    """scale's own planted error is built from scale; plant it through mul instead."""
    registry = REGISTRY.copy()
    rule = registry.ops["scale"]
    registry.ops["scale"] = dataclasses.replace(
        rule, gradient=lambda emit, node, delta: (emit.emit("scale", (delta,), c=node.attrs["c"] * 1.01),))
    assert any(not r.ok for r in verify_op(registry, "scale") if r.check == "gradient")
