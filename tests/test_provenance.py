"""NaN provenance: the first node of a training step whose value became NaN or
infinite (a forward op, a backward op or the optimizer's update of a parameter),
found by replaying the step unfused, with no raw NumPy warnings reaching the user.
The replay sees what training computed only because each fused step's output is
bitwise the unfused node's value, on both fast backends: tested first."""
import json
import warnings

import numpy as np
import pytest
from conftest import MODELS, needs_numba
from test_divergence import _main

from cnngraph.compiler.program import compile_model, make_plan
from cnngraph.runtime.execute import run_plan
from cnngraph.tools.bench import synthetic_batch
from cnngraph.training.divergence import Diverged
from cnngraph.training.loop import Trainer
from cnngraph.training.preprocess import Split
from cnngraph.training.provenance import (describe, find_first_bad, update_finite,
                                          value_range)
from cnngraph.training.step import Optimizer

NET = """
input x : 1 x 12 x 12
conv C1 <- x : maps=4, kernel=5, activation=lecun_tanh
full out <- C1 : units=10
loss L <- out : function=softmax_cross_entropy
train {
  batch = 10
  lr = 0.05
  optimizer = sgd(momentum=0.9)
  seed = 1
  epochs = 1
}
"""


def split(n=30, dtype=np.float32) -> Split:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=n)
    return Split(rng.normal(size=(n, 1, 12, 12)).astype(dtype), labels,
                 np.eye(10, dtype=dtype)[labels])


def values_by_node(plan, feeds, dtype):
    seen = {}
    run_plan(plan, dict(feeds), dtype, lambda step, value, env: seen.update({step.node: value}))
    return seen


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=needs_numba)])
@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_every_fused_step_is_bitwise_its_unfused_node(path, backend):
    model = compile_model(path, backend=backend)
    graph, fused = model.training.graph, model.plans.gradients
    plain = make_plan(graph, fused.outputs, model.registry, model.backend, fuse=False)
    for dtype, batch in [(np.float32, 1), (np.float32, 37), (np.float64, 4)]:
        # numba's matrix-product paths (1), its direct convolutions in two chunks (37)
        x, t = synthetic_batch(model, batch, dtype, np.random.default_rng(batch))
        feeds = model.feeds(model.init_params(2, dtype), x, t)
        got, want = values_by_node(fused, feeds, dtype), values_by_node(plain, feeds, dtype)
        shared = set(got) & set(want)  # a fused plan's own buffers (im2col) are no node
        assert set(fused.outputs) <= shared
        for node in shared:
            value = got[node]
            assert value.dtype == want[node].dtype
            np.testing.assert_array_equal(value, want[node], err_msg=f"{node} ({dtype})")


def diverge(model, train, weights=None):
    """The Diverged a one-epoch run raises, with every warning recorded."""
    run = Trainer(model, model.settings.train.replace(shuffle=False))  # batches in order
    run.start(weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(Diverged) as error:
            run.fit(train)
    assert [str(w.message) for w in caught] == []  # no raw RuntimeWarning reaches the user
    return error.value


def test_a_nan_in_the_input_names_the_first_forward_op():
    model, train = compile_model(NET), split()
    train.images[12, 0, 3, 4] = np.nan  # in the second batch
    error = diverge(model, train)
    bad = error.record["first_bad"]
    assert (bad["pass"], bad["node"], bad["op"], bad["layer"]) == \
        ("forward", "C1/conv_valid", "conv_valid", "C1")
    assert (bad["epoch"], bad["step"], bad["global_step"]) == (1, 2, 2)
    x, kernel = bad["inputs"]
    assert (x["name"], x["shape"], x["nan"], x["inf"]) == ("x", [10, 1, 12, 12], True, False)
    assert x["min"] == float(np.nanmin(train.images[10:20]))
    assert kernel["name"] == "C1.kernel" and not (kernel["nan"] or kernel["inf"])
    assert bad["fed"] == [{"name": "x", "role": "input"}]
    assert error.message.endswith("; the input 'x' already holds NaN or infinite values")
    assert "the loss or a gradient became NaN or infinite at epoch 1, step 2 (global step 2" \
        in error.message
    assert "the first op whose output is not finite is 'conv_valid' (forward pass) in layer " \
           "'C1', node 'C1/conv_valid'; its inputs: 'x' (10x1x12x12: " in error.message
    assert error.span.line == 3
    json.dumps(error.record, allow_nan=False)  # metrics.json stays strict JSON


def test_an_overflow_in_a_backward_op_names_that_op():
    """C1's kernel is 0, so its forward output is finite whatever x holds, but the
    kernel's gradient sums x times δ: with x = 3e38 and out's weights scaled by 1e4 (δ
    of C1 near 1), that overflows float32 while every forward value stays finite."""
    model, train = compile_model(NET), split()
    train.images[:] = 3e38
    weights = model.init_params(1, np.float32)
    weights["C1.kernel"][:] = 0
    weights["out.weight"] *= 1e4
    bad = diverge(model, train, weights).record["first_bad"]
    assert (bad["pass"], bad["node"], bad["op"], bad["layer"]) == \
        ("backward", "d C1/conv_grad_kernel", "conv_grad_kernel", "C1")
    assert bad["inputs"][0] == value_range("x", np.full((10, 1, 12, 12), 3e38, np.float32))
    assert not any(i["nan"] or i["inf"] for i in bad["inputs"]) and bad["fed"] == []


def test_an_overflowing_update_names_the_parameter_and_its_inputs():
    """A finite step whose update overflows float32: rate · g past 3.4e38 where |g|
    > 1.13, which out's weights scaled by 100 give C1's parameters and not out's."""
    model = compile_model(NET)
    optimizer = Optimizer.for_model(model, ("sgd", {"momentum": 0.9}))
    params = model.init_params(1, np.float32)
    params["out.weight"] *= 100
    state = optimizer.start(params)
    x, t = split(10).images, split(10).targets
    assert find_first_bad(model, params, state, x, t, optimizer, 0.05) is None
    bad = find_first_bad(model, params, state, x, t, optimizer, 3e38)
    assert (bad["pass"], bad["op"]) == ("update", "sgd")
    grads = model.loss_and_grads(params, x, t)[1]
    with np.errstate(over="ignore"):
        first = next(p for p in grads if not np.isfinite(3e38 * grads[p]).all())
    assert bad["node"] == first and bad["layer"] == model.graph.nodes[first]["layer"]
    assert [i["name"] for i in bad["inputs"]] == [first, f"d {first}", f"velocity of {first}",
                                                  "rate"]
    assert not any(i["nan"] or i["inf"] for i in bad["inputs"])
    assert first.startswith("C1") and bad["also"] == [p for p in grads if p.startswith("C1") and p != first]
    assert f"the update of parameter '{first}' (sgd) in layer " in describe(bad)


def test_the_update_check_sees_only_what_the_update_made():
    old = {"w": np.ones(3)}
    kept_state = {"curvature": {"w": np.array([np.inf])}}  # not the update's doing
    assert update_finite({"w": np.zeros(3)}, kept_state, old, kept_state)
    assert not update_finite({"w": np.array([1.0, np.inf, 0.0])}, {}, old, {})
    assert not update_finite(old, {"velocity": {"w": np.array([np.nan])}}, old,
                             {"velocity": {"w": np.zeros(1)}})


def test_value_range_reads_the_finite_entries():
    r = value_range("a", np.array([[1.0, np.nan], [-np.inf, 3.0]]))
    assert r == {"name": "a", "shape": [2, 2], "min": 1.0, "max": 3.0, "nan": True, "inf": True}
    assert value_range("b", np.array([np.nan]))["min"] is None


def test_lr_1e8_on_lenet5_names_the_update_not_a_parameter(tmp_path, mnist):
    """The issue's case.  By hand (every unfused value and update output checked at each
    step): steps 1-8 keep every forward and backward value finite; step 8's update
    overflows float32 in out.bias and F6.bias (rate 1e8 times weight decay times
    weights near 4e35), out.bias first in the optimizer's order."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = _main(["run", "models/lenet5.cnn", "--lr", "1e8", "--limit-train",
                              "2000", "--limit-test", "50", "--no-plots", "--data", mnist,
                              "--out", tmp_path, "--snapshots", "0"])
    assert code == 3 and "RuntimeWarning" not in err and caught == []
    assert "the optimizer's update of a parameter became NaN or infinite at epoch 1, step 8 " \
           "(global step 8" in err
    assert "the update of parameter 'out.bias' (sgd) in layer 'out'" in err
    assert "(the updates of F6.bias went bad too)" in err
    record = json.loads((tmp_path / "metrics.json").read_text())["divergence"]
    bad = record["first_bad"]
    assert (bad["pass"], bad["node"], bad["step"], bad["global_step"]) == \
        ("update", "out.bias", 8, 8)
