"""The fused plan computes bitwise what the unfused one does, for every shipped model."""
import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from cnngraph import compile_model
from cnngraph.compiler.program import default_registry, make_plan
from cnngraph.core.plugins import load_plugin
from cnngraph.core.registry import RuleError
from cnngraph.runtime.execute import run_plan
from cnngraph.runtime.numpy_backend import reuse_freed_buffers
from cnngraph.tools.bench import synthetic_batch, timed_run
from cnngraph.tools.check_ops import examples, verify_kernel, verify_op
from cnngraph.training.resources import plan_peak_bytes, step_peak_bytes
from cnngraph.training.step import Draw

ROOT = Path(__file__).resolve().parent.parent
MODELS = sorted(p.name for p in (ROOT / "models").glob("*.cnn"))


def _both_plans(model):
    graph, fused = model.training.graph, model.plans.gradients
    return graph, fused, make_plan(graph, fused.outputs, model.registry, model.backend,
                                   fuse=False)


def _assert_fused_is_unfused(model, fused, plain, batch, dtype, seed=0):
    """Both plans on one random batch give the same outputs, bit for bit."""
    x, t = synthetic_batch(model, batch, dtype, np.random.default_rng(seed))
    feeds = model.feeds(model.init_params(1, dtype), x, t)
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


numba_backend = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                   reason="the numba backend needs numba")


@numba_backend
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 7, 40])
def test_numba_fused_plan_is_bitwise_the_unfused_one(name, dtype, batch):
    """The numba backend's convolutions add the bias and apply the float32 sigmoid or
    tanh as their tiles write (`Kernel.epilogue`), other activations in place after: the
    same bits as the three steps, at batches where the tiles and the compiled
    activations run (7, 40) and where they do not (1)."""
    model = compile_model(ROOT / "models" / name, backend="numba")
    _, fused, plain = _both_plans(model)
    assert len(fused.steps) < len(plain.steps)
    _assert_fused_is_unfused(model, fused, plain, batch, dtype, seed=batch)


@numba_backend
def test_numba_convolutions_take_their_bias_and_activation_as_they_write():
    """Which steps the epilogue absorbs: dlt's convolutions their bias and sigmoid,
    LeNet-5's their bias and tanh, simard2003's strided ones their bias and relu (in
    place after the tiles); LeNet-5's subsamplings their β's scale_maps; a dense
    layer's matmul declares no epilogue."""
    ops = {name: [step.op for step in compile_model(ROOT / "models" / name, backend="numba")
                  .plans.gradients.steps] for name in ("dlt.cnn", "lenet5.cnn", "simard2003.cnn")}
    assert ops["dlt.cnn"].count("conv_valid+add_bias+sigmoid") == 2
    assert "conv_valid" not in ops["dlt.cnn"] and ops["dlt.cnn"].count("add_bias+sigmoid") == 1
    assert ops["lenet5.cnn"].count("conv_valid+add_bias+tanh") == 3
    assert ops["lenet5.cnn"].count("scale_maps+add_bias+tanh") == 2   # S2 and S4
    assert ops["lenet5.cnn"].count("add_bias+tanh") == 1   # F6
    assert ops["simard2003.cnn"].count("conv_strided+add_bias+relu") == 2


@numba_backend
@pytest.mark.parametrize("batch", [2, 40])
def test_numba_subsamplings_take_a_fixed_beta_as_they_write_and_read(batch):
    """dlt's S2 and S4 (β fixed at 0.25): the block sum multiplies as it writes
    (`Kernel.scaled`); backward, each convolution's δ, the sigmoid's slope times up(β δ),
    is one step (`Kernel.times_upsampled`), bitwise as the separate steps where the 2x2
    kernels run (batch 40) and where NumPy's do (batch 2).  Where another step reads
    the slope, the upsampling multiplies as it reads instead (`Kernel.reads_scaled`);
    where one reads the sum or the product, they stay, and the upsampling of the
    kept product joins the slope."""
    model = compile_model(ROOT / "models" / "dlt.cnn", backend="numba")
    _, fused, plain = _both_plans(model)
    ops = {step.node: step.op for step in fused.steps}
    assert ops["S2/scale"] == ops["S4/scale"] == "subsample_sum+scale"
    assert ops["d C1/mul"] == ops["d C3/mul"] == "poly+scale+upsample_kron+mul"
    assert not {"scale", "upsample_kron", "poly"} & set(ops.values())
    _assert_fused_is_unfused(model, fused, plain, batch, np.float32, seed=batch)
    slope_read = model.gradient_plan(outputs=("d C1/poly",)).plan
    ops = {step.node: step.op for step in slope_read.steps}
    assert ops["d S2/upsample_kron"] == "scale+upsample_kron" and ops["d C1/mul"] == "mul"
    watched = model.gradient_plan(outputs=("S2/subsample_sum", "d S4/scale")).plan
    ops = {step.node: step.op for step in watched.steps}
    assert ops["S2/subsample_sum"] == "subsample_sum" and ops["S2/scale"] == "scale"
    assert ops["d S4/scale"] == "scale" and "d S4/upsample_kron" not in ops
    assert ops["d C3/mul"] == "poly+upsample_kron+mul"   # up(δ) read from the kept product
    _assert_fused_is_unfused(model, watched, make_plan(
        model.training.graph, watched.outputs, model.registry, model.backend, fuse=False),
        batch, np.float32, seed=batch)


@numba_backend
@pytest.mark.parametrize("batch", [2, 40])
def test_numba_deltas_under_trainable_subsamplings_are_one_step(batch):
    """LeNet-5's S2 and S4 have a trainable β per map: C1's and C3's δ, the tanh's slope
    times up(β_j δ), is one step reading δ and β (the upsampling's per-map factor,
    `Kernel.per_map_factor`), bitwise as the four steps at both batches."""
    model = compile_model(ROOT / "models" / "lenet5.cnn", backend="numba")
    _, fused, plain = _both_plans(model)
    steps = {step.node: step for step in fused.steps}
    for layer, below in (("C1", "S2"), ("C3", "S4")):
        step = steps[f"d {layer}/mul"]
        assert step.op == "poly+scale_maps+upsample_kron+mul"
        assert step.inputs == (f"{layer}/tanh", f"d {below}/mul", f"{below}.beta")
    assert "upsample_kron" not in {step.op for step in fused.steps}
    _assert_fused_is_unfused(model, fused, plain, batch, np.float32, seed=batch)


def test_plugin_ops_run_fused_as_unfused():
    """The example plugins (max-pooling with switches, a vjp-rule relu6) in a model."""
    registry = default_registry()
    for plugin in ("maxpool.py", "relu.py"):
        load_plugin(str(ROOT / "examples" / plugin), registry)
    model = compile_model(ROOT / "examples" / "maxpool.cnn", registry)
    _assert_fused_is_unfused(model, *_both_plans(model)[1:], 3, np.float64)


RELU_AFTER_BIAS = """
input x : 1 x 8 x 8
conv C1 <- x : maps=3, kernel=3, activation=relu6
full out <- C1 : units=4, activation=sigmoid
loss L <- out : function=squared_error
"""


def test_a_plugin_op_fuses_by_declaring_an_in_place_kernel():
    """examples/relu.py declares relu6's in-place kernel and nothing else: the pass,
    unchanged, runs it in the bias add's fresh buffer, bitwise as unfused.  (In the
    training plan relu6's vjp reads the sum too, so there it stays a step of its own.)"""
    registry = default_registry()
    load_plugin(str(ROOT / "examples" / "relu.py"), registry)
    model = compile_model(RELU_AFTER_BIAS, registry)
    fused = model.plans.forward
    plain = make_plan(model.graph, fused.outputs, registry, model.backend, fuse=False)
    ops = [step.op for step in fused.steps]
    assert "add_bias+relu6" in ops and "relu6" not in ops
    assert "relu6" in [step.op for step in model.plans.gradients.steps]
    _assert_fused_is_unfused(model, fused, plain, 3, np.float64)


def test_dlt_plan_shares_patches_and_fuses_chains():
    model = compile_model(ROOT / "models" / "dlt.cnn")
    plan = model.plans.gradients
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
    plan = model.gradient_plan(outputs=("C1/add_bias", "d C3/poly")).plan
    ops = {step.node: step.op for step in plan.steps}
    assert ops["C1/add_bias"] == "add_bias" and ops["C1/sigmoid"] == "sigmoid"
    assert ops["d C3/poly"] == "poly" and ops["d C3/mul"] == "mul"
    assert ops["C3/sigmoid"] == "add_bias+sigmoid"


def test_the_forward_plan_keeps_plain_convolutions():
    """Without a kernel gradient to share them with, patches are not kept."""
    model = compile_model(ROOT / "models" / "lenet5.cnn")
    ops = [step.op for step in model.plans.forward.steps]
    assert "im2col" not in ops and ops.count("conv_valid") == 3


def test_memory_estimate_counts_the_kept_patches():
    model = compile_model(ROOT / "models" / "dlt.cnn")
    graph, fused, plain = _both_plans(model)
    patches = 25 * 24 * 24 * 8 * 100  # x's patch matrix, batch 100, float64
    assert plan_peak_bytes(fused, graph, 100, np.float64) >= plan_peak_bytes(plain, graph, 100, np.float64)
    assert plan_peak_bytes(fused, graph, 100, np.float64) >= patches


ATTRS = {"sigmoid": [{}, {"gain": 2.5}], "tanh": [{}, {"a": 1.7159, "b": 2 / 3}], "mul": [{}],
         "relu": [{}], "leaky_relu": [{}, {"slope": 0.3}, {"slope": 3.0}],
         "elu": [{}, {"alpha": 0.5}]}


def test_every_in_place_kernel_is_checked():
    kernels = default_registry().backend("numpy").kernels
    assert {op for op, kernel in kernels.items() if kernel.in_place} == set(ATTRS)


@pytest.mark.parametrize("op,attrs", [(op, a) for op, variants in ATTRS.items() for a in variants])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_kernels_equal_forward(op, attrs, dtype):
    kernel = default_registry().backend("numpy").kernel(op)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(scale=4, size=(3, 4, 5)).astype(dtype)
              for _ in default_registry().op(op).slots]
    buffer = inputs[0].copy()
    got = kernel.in_place(buffer, *inputs[1:], **attrs)
    assert np.shares_memory(got, buffer)
    np.testing.assert_array_equal(got, kernel.run(*inputs, **attrs))


@pytest.mark.parametrize("wrong,detail", [
    (lambda u: np.tanh(u), "did not return the buffer"),
    (lambda u: np.tanh(u, out=u), "differs from forward")])
def test_check_ops_catches_a_wrong_in_place_kernel(wrong, detail):
    registry = default_registry()
    sigmoid = registry.ops["sigmoid"]
    registry.add_op(dataclasses.replace(sigmoid, name="my_sigmoid"))
    registry.add_kernel("my_sigmoid", registry.backend("numpy").kernel("sigmoid").run,
                        in_place=wrong)
    [report] = [r for r in verify_op(registry, "my_sigmoid") if r.check == "in_place"]
    assert not report.ok and detail in report.detail


@pytest.mark.parametrize("form,wrong", [
    ("scaled", lambda run: lambda x, *, c, **attrs: run(x, **attrs) * (c + 1e-3)),
    ("reads_scaled", lambda run: lambda x, *, c, **attrs: run(x, **attrs))])
def test_check_ops_catches_a_wrong_constant_factor_form(form, wrong):
    """A kernel that declares it multiplies by the `scale` op's constant as it writes
    (scaled) or reads (reads_scaled) is checked against the two steps."""
    registry = default_registry()
    for op in ("subsample_sum", "upsample_kron"):
        registry.add_op(dataclasses.replace(registry.ops[op], name=f"my_{op}"))
    op = "my_subsample_sum" if form == "scaled" else "my_upsample_kron"
    run = registry.backend("numpy").kernel(op[3:]).run
    registry.add_kernel(op, run, **{form: wrong(run)})
    reports = verify_kernel(registry, "numpy", op, examples(registry.op(op)), np.float64)
    found = [r for r in reports if r.check == form]
    assert found and all(not r.ok and "differs from the separate constant factor" in r.detail
                         for r in found)


def test_in_place_only_on_elementwise_ops():
    registry = default_registry()
    with pytest.raises(RuleError, match="in_place"):
        registry.add_kernel("matmul", np.dot, "reference", in_place=lambda a, b: a)


def test_freed_buffers_setting_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("CNNGRAPH_KEEP_MEMORY", "0")
    assert reuse_freed_buffers.__wrapped__() is False


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 7])
def test_live_buffers_peak_equals_the_lifetimes_estimate(name, dtype, batch):
    """Issue 4, item 4: walking the plan, the arrays held at once peak at exactly
    the bytes the schedule's lifetimes predict (views counted once), dropout masks
    fed as the identity (one element broadcast) or as a training step's draw."""
    model = compile_model(ROOT / "models" / name)
    graph, plan = model.training.graph, model.plans.gradients
    x, t = synthetic_batch(model, batch, dtype, np.random.default_rng(0))
    params = model.init_params(0, dtype)
    feeds = model.feeds(params, x, t)
    assert timed_run(plan, feeds, dtype) == plan_peak_bytes(plan, graph, batch, dtype)
    if model.masks:
        feeds = model.feeds(params, x, t, Draw(0, 0, 0).masks(model, batch, dtype))
        assert timed_run(plan, feeds, dtype) == step_peak_bytes(model, batch, dtype)


@numba_backend
@pytest.mark.parametrize("wrong,passing", [
    (lambda form: lambda x, *, beta, **kw: form(x, beta=np.asarray(beta) * 1.001, **kw),
     [False, False]),
    # β's mean: wrong for a β per map, right for a constant
    (lambda form: lambda x, *, beta, **kw: form(x, beta=np.mean(beta), **kw), [False, True])])
def test_check_ops_catches_a_wrong_upsampled_product(wrong, passing):
    """A slope that declares it multiplies by up(β δ) as it writes is checked against the
    factor, the upsampling and the product, with a per-map β and with a constant."""
    registry = default_registry()
    registry.add_op(dataclasses.replace(registry.ops["poly"], name="my_poly"))
    poly = registry.backend("numba").kernel("poly")
    registry.add_kernel("my_poly", poly.run, backend="numba", fresh=True,
                        times_upsampled=wrong(poly.times_upsampled))
    rule = registry.op("my_poly")
    cases = [("maps", dataclasses.replace(rule.example(np.random.default_rng(0)), inputs=(
        np.random.default_rng(1).uniform(-1, 1, (8, 6, 28, 28)),)))]
    reports = [r for r in verify_kernel(registry, "numba", "my_poly", cases, np.float32)
               if r.check == "times_upsampled"]
    assert [r.slot for r in reports] == ["per-map", "constant"]
    assert [r.ok for r in reports] == passing
    assert all("differs from the factor, upsampling and product" in r.detail
               for r in reports if not r.ok)
