"""The fused plan computes bitwise what the unfused one does, for every shipped model."""
from pathlib import Path

import numpy as np
import pytest

from cnngraph import compile_model
from cnngraph.tools.bench import synthetic_batch, timed_run
from cnngraph.runtime.execute import reuse_freed_buffers, run_plan
from cnngraph.compiler.program import default_registry
from cnngraph.core.plugins import load_plugin
from cnngraph.core.registry import OpRule, RuleError
from cnngraph.training.resources import plan_peak_bytes
from cnngraph.compiler.schedule import schedule
from cnngraph.tools.check_ops import verify_op

ROOT = Path(__file__).resolve().parent.parent
MODELS = sorted(p.name for p in (ROOT / "models").glob("*.cnn"))


def _both_plans(model):
    graph, fused, _ = model.gradient_plan()
    return graph, fused, schedule(graph, model.registry, fused.outputs, fuse=False)


def _assert_fused_is_unfused(model, fused, plain, batch, dtype, seed=0):
    """Both plans on one random batch give the same outputs, bit for bit."""
    x, t = synthetic_batch(model, batch, dtype, np.random.default_rng(seed))
    feeds = model._feeds(model.init_params(1, dtype), x, t)
    got = run_plan(fused, dict(feeds), dtype)
    want = run_plan(plain, dict(feeds), dtype)
    assert got.keys() == want.keys()
    for node in want:
        assert got[node].dtype == want[node].dtype
        np.testing.assert_array_equal(got[node], want[node], err_msg=node)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 7])
def test_fused_plan_is_bitwise_the_unfused_one(name, dtype, batch):
    model = compile_model(ROOT / "models" / name)
    _, fused, plain = _both_plans(model)
    assert len(fused.steps) < len(plain.steps)
    _assert_fused_is_unfused(model, fused, plain, batch, dtype, seed=batch)


def test_plugin_ops_run_fused_as_unfused():
    """The example plugins (max-pooling with switches, a vjp-rule relu) in a model."""
    registry = default_registry()
    for plugin in ("maxpool.py", "relu.py"):
        load_plugin(str(ROOT / "examples" / plugin), registry)
    model = compile_model(ROOT / "examples" / "maxpool.cnn", registry)
    _assert_fused_is_unfused(model, *_both_plans(model)[1:], 3, np.float64)


def test_dlt_plan_shares_patches_and_fuses_chains():
    model = compile_model(ROOT / "models" / "dlt.cnn")
    _, plan, _ = model.gradient_plan()
    ops = [step.op for step in plan.steps]
    assert ops.count("im2col") == 2                    # C1 and C3, each built once
    assert ops.count("add_bias+sigmoid") == 3          # C1, C3, out
    assert ops.count("poly+mul") == 3 and "poly" not in ops and "add_bias" not in ops
    by_node = {step.node: step for step in plan.steps}
    grad = by_node["d C1/conv_grad_kernel"]
    assert grad.inputs[0] == "x/im2col 5x5" == by_node["C1/conv_valid"].inputs[0]
    # the input is dropped once its patches exist; the patches live to the kernel gradient
    assert "x" in by_node["x/im2col 5x5"].frees and "x/im2col 5x5" in grad.frees


TWO_CONVS_ON_X = """
input x : 2 x 6 x 6
conv A <- x : maps=2, kernel=3, connect=one_to_one, activation=lecun_tanh
conv B <- x : maps=1, kernel=3, connect=random(k=1, seed=2)
concat M <- A, B
full out <- M : units=3
loss L <- out : function=softmax_cross_entropy
"""


def test_convolutions_of_one_input_share_one_patch_matrix():
    model = compile_model(TWO_CONVS_ON_X)
    _, fused, plain = _both_plans(model)
    readers = [step.op for step in fused.steps if "x/im2col 3x3" in step.inputs]
    assert [step.op for step in fused.steps].count("im2col") == 1
    assert sorted(readers) == ["conv_grad_kernel"] * 2 + ["conv_valid"] * 2
    _assert_fused_is_unfused(model, fused, plain, 3, np.float64)


def test_no_fusion_where_a_value_has_other_readers():
    model = compile_model(ROOT / "models" / "dlt.cnn")
    _, plan, _ = model.gradient_plan(outputs=("C1/add_bias", "d C3/poly"))
    ops = {step.node: step.op for step in plan.steps}
    assert ops["C1/add_bias"] == "add_bias" and ops["C1/sigmoid"] == "sigmoid"
    assert ops["d C3/poly"] == "poly" and ops["d C3/mul"] == "mul"
    assert ops["C3/sigmoid"] == "add_bias+sigmoid"


def test_the_forward_plan_keeps_plain_convolutions():
    """Without a kernel gradient to share them with, patches are not kept."""
    model = compile_model(ROOT / "models" / "lenet5.cnn")
    plan = schedule(model.graph, model.registry, [model.network.prediction])
    ops = [step.op for step in plan.steps]
    assert "im2col" not in ops and ops.count("conv_valid") == 3


def test_memory_estimate_counts_the_kept_patches():
    model = compile_model(ROOT / "models" / "dlt.cnn")
    graph, fused, plain = _both_plans(model)
    patches = 25 * 24 * 24 * 8 * 100  # x's patch matrix, batch 100, float64
    assert plan_peak_bytes(fused, graph, 100, np.float64) >= plan_peak_bytes(plain, graph, 100, np.float64)
    assert plan_peak_bytes(fused, graph, 100, np.float64) >= patches


ATTRS = {"sigmoid": [{}, {"gain": 2.5}], "tanh": [{}, {"a": 1.7159, "b": 2 / 3}]}


def test_every_in_place_kernel_is_checked():
    assert {n for n, r in default_registry().ops.items() if r.in_place} == set(ATTRS)


@pytest.mark.parametrize("op,attrs", [(op, a) for op, variants in ATTRS.items() for a in variants])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_kernels_equal_forward(op, attrs, dtype):
    rule = default_registry().ops[op]
    u = np.random.default_rng(0).normal(scale=4, size=(3, 4, 5)).astype(dtype)
    buffer = u.copy()
    got = rule.in_place(buffer, **attrs)
    assert np.shares_memory(got, buffer)
    np.testing.assert_array_equal(got, rule.forward(u, **attrs))


@pytest.mark.parametrize("wrong,detail", [
    (lambda u: np.tanh(u), "did not return the buffer"),
    (lambda u: np.tanh(u, out=u), "differs from forward")])
def test_check_ops_catches_a_wrong_in_place_kernel(wrong, detail):
    registry = default_registry()
    sigmoid = registry.ops["sigmoid"]
    registry.add_op(OpRule("my_sigmoid", sigmoid.slots, sigmoid.shape, sigmoid.forward,
                           sigmoid.gradient, sigmoid.example, traits=sigmoid.traits,
                           in_place=wrong))
    [report] = [r for r in verify_op(registry, "my_sigmoid") if r.check == "in_place"]
    assert not report.ok and detail in report.detail


def test_in_place_only_on_one_slot_elementwise_ops():
    rule = default_registry().ops["matmul"]
    with pytest.raises(RuleError, match="in_place"):
        default_registry().add_op(OpRule("matmul2", rule.slots, rule.shape, rule.forward,
                                         rule.gradient, rule.example, in_place=lambda u: u))


def test_freed_buffers_setting_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("CNNGRAPH_KEEP_MEMORY", "0")
    assert reuse_freed_buffers.__wrapped__() is False


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 7])
def test_live_buffers_peak_equals_the_lifetimes_estimate(name, dtype, batch):
    """Issue 4, item 4: walking the plan, the arrays held at once peak at exactly
    the bytes the schedule's lifetimes predict (views counted once)."""
    model = compile_model(ROOT / "models" / name)
    graph, plan, _ = model.gradient_plan()
    x, t = synthetic_batch(model, batch, dtype, np.random.default_rng(0))
    feeds = model._feeds(model.init_params(0, dtype), x, t)
    assert timed_run(plan, feeds, dtype) == plan_peak_bytes(plan, graph, batch, dtype)
