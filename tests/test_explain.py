"""Each op's explain, and the explorer's step-by-step views of a feature map and of its δ.

For every op that declares explain, on its own example in float64 at random
output indices: the parts recombine (by the explanation's ``combine``) to its
value, the value is the op's reference output there, each part's partial is its
values (times weights) summed, and each single-valued part reads the input
element it names.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cnngraph.compiler.program import compile_model, default_registry
from cnngraph.core.errors import CnnError
from cnngraph.core.registry import draw_example, example_ranks
from cnngraph.rules.explain_support import COMBINES
from cnngraph.tools import explain

REGISTRY = default_registry()
EXPLAINED = sorted(name for name, rule in REGISTRY.ops.items() if rule.explain)


def recombined(explained, rule, attrs) -> float:
    partials = [p["partial"] for p in explained["parts"]]
    combine = explained["combine"]
    if combine == "sum":
        return math.fsum(partials)
    if combine == "product":
        return math.prod(partials)
    if combine in ("copy", "select"):
        assert len(partials) == 1
        return partials[0]
    if combine == "apply":
        return float(rule.reference(np.asarray(partials[0]), **attrs))
    assert combine == "normalize"
    return partials[explained["chosen"]] / math.fsum(partials)


#: each explained op on its example, and on its 1-D and 3-D forms where it has them
CASES = [(name, rank) for name in EXPLAINED
         for rank in (None, *example_ranks(REGISTRY.op(name)))]


@pytest.mark.parametrize("name,rank", CASES,
                         ids=[name + (f"-{rank}d" if rank else "") for name, rank in CASES])
def test_parts_recombine_to_the_reference(name, rank):
    rule = REGISTRY.op(name)
    rng = np.random.default_rng(3)
    example = draw_example(rule, rng, rank)
    inputs = [np.asarray(a, np.float64) for a in example.inputs]
    attrs = dict(example.attrs)
    out = rule.reference(*inputs, **attrs)
    flat = rng.choice(out.size, size=min(out.size, 12), replace=False)
    for index in zip(*np.unravel_index(flat, out.shape)):
        got = rule.explain(inputs, attrs, tuple(int(i) for i in index))
        json.dumps(got)
        assert got["combine"] in COMBINES and got["text"]
        assert got["value"] == pytest.approx(float(out[index]), rel=1e-12, abs=1e-12)
        assert recombined(got, rule, attrs) == pytest.approx(got["value"], rel=1e-12, abs=1e-12)
        for part in got["parts"]:
            _check_part(part, rule, inputs, got["combine"])


def _check_part(part, rule, inputs, combine):
    if "values" in part:
        values = np.asarray(part["values"])
        weights = np.asarray(part.get("weights", 1.0))
        assert part["partial"] == pytest.approx(float((values * weights).sum()), abs=1e-12)
        if "weights" in part:
            kernel = inputs[rule.slots.index(part["weight_slot"])]
            assert np.asarray(kernel[tuple(part["weight_index"])]).size >= 1
    elif "slot" in part and combine != "normalize":   # normalize's partial: exp(c − max c)
        source = inputs[rule.slots.index(part["slot"])]
        assert part["partial"] == float(source[tuple(part["index"])])


# the layer views ------------------------------------------------------------------------

def _setup(name, seed=1):
    model = compile_model(f"models/{name}.cnn")
    params = model.init_params(seed, np.float64)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.1, 1.175, size=(1,) + model.input_shape)
    t = np.eye(model.classes)[[3]]
    return model, params, x, t


def _delta(model, params, x, t, layer):
    """δ = dE/du of ``layer`` as the (fused) backward plan computes it."""
    u = explain.pre_activation(model, layer)
    return model.loss_and_grads(params, x, t, wrt=[u])[1][u][0]   # (maps, H, W) or (units,)


@pytest.fixture(scope="module")
def lenet5():
    return _setup("lenet5")


@pytest.mark.parametrize("name", ["dlt", "lenet5", "learned_c3", "decimate"])
def test_each_map_explained_is_the_forward_value(name):
    model, params, x, t = _setup(name)
    outputs = model.layer_outputs(params, x)
    for layer in explain._layers(model)[1:]:
        got = explain.explain_map(model, params, x, layer, 1)
        json.dumps(got)
        index = (0, 1, *got["pixel"])
        assert got["value"] == outputs[layer][index]
        assert got["steps"][-1]["result"] == pytest.approx(got["value"], rel=1e-12, abs=1e-15)
        if got["pixel"]:
            plane = np.abs(outputs[layer][0, 1])
            assert plane[tuple(got["pixel"])] == plane.max()   # the default: largest |value|


@pytest.mark.parametrize("name", ["dlt", "lenet5", "learned_c3", "decimate"])
def test_each_delta_explained_is_the_backward_plans(name):
    model, params, x, t = _setup(name)
    for layer in explain._layers(model)[1:]:
        got = explain.explain_delta(model, params, x, t, layer, 1)
        json.dumps(got)
        delta = _delta(model, params, x, t, layer)
        assert got["value"] == pytest.approx(float(delta[(1, *got["pixel"])]), rel=1e-12,
                                             abs=1e-18)
        assert got["steps"][-1]["result"] == pytest.approx(got["value"], rel=1e-12, abs=1e-18)


def test_lenet5_c3_reads_its_table_row(lenet5):
    model, params, x, _ = lenet5
    for j in (0, 7, 15):
        got = explain.explain_map(model, params, x, "C3", j)
        convs = [s for s in got["steps"] if s["op"] == "conv_valid" and s["inputs"]]
        read = [s["inputs"][0]["map"] for s in convs]
        assert read == model.annotations["C3"]["connections"][j]
        assert {s["inputs"][0]["name"] for s in convs} == {"S2"}
        r, c = got["pixel"]
        s2 = model.layer_outputs(params, x)["S2"][0]
        for step, i in zip(convs, read):
            assert np.array_equal(step["inputs"][0]["values"], s2[i, r:r + 5, c:c + 5])
            assert np.array_equal(step["weights"], params["C3.kernel"][j, i])
        total = next(s for s in got["steps"] if s["op"] == "conv_valid" and not s["inputs"])
        assert total["partial"] == [s["partial"] for s in convs]
        assert [s["op"] for s in got["steps"][-2:]] == ["add_bias", "tanh"]


def test_lenet5_delta_of_a_conv_before_subsampling_is_beta_up_delta_times_slope(lenet5):
    """seed 3.1.1: δ_C1 = β_S2 · up(δ_S2) ∘ f'(u_C1)."""
    model, params, x, t = lenet5
    j = 4
    got = explain.explain_delta(model, params, x, t, "C1", j)
    assert [s["op"] for s in got["steps"]] == ["poly", "scale_maps", "upsample_kron", "mul"]
    r, c = got["pixel"]
    y = model.layer_outputs(params, x)["C1"][0, j, r, c]
    slope = 1.7159 * 2 / 3 - (2 / 3) / 1.7159 * y ** 2
    delta_s2 = _delta(model, params, x, t, "S2")[j, r // 2, c // 2]
    assert got["steps"][1]["inputs"][0]["name"] == "δ S2"
    assert got["steps"][1]["inputs"][0]["pixel"] == [r // 2, c // 2]
    assert got["value"] == pytest.approx(params["S2.beta"][j] * delta_s2 * slope, rel=1e-12)


def test_dlt_delta_of_a_subsampling_before_conv_is_the_full_convolution():
    """seed 3.2.1 (dlt's S2 has no activation): δ_S2 = Σ_o conv2(δ_C3_o, rot180(k_oj), 'full')."""
    model, params, x, t = _setup("dlt")
    j = 3
    got = explain.explain_delta(model, params, x, t, "S2", j)
    steps = got["steps"]
    assert [s["op"] for s in steps] == ["conv_full"] * (explain.LISTED_MAPS + 1)
    delta = _delta(model, params, x, t, "C3")
    kernel = params["C3.kernel"]
    r, c = got["pixel"]
    taps = [np.pad(delta[o], 4)[r:r + 5, c:c + 5].ravel() @ kernel[o, j, ::-1, ::-1].ravel()
            for o in range(12)]
    largest = sorted(np.argsort(-np.abs(taps))[:explain.LISTED_MAPS])
    assert [s["inputs"][0]["map"] for s in steps[:-1]] == largest   # 8 of C3's 12 maps
    assert [s["inputs"][0]["name"] for s in steps[:-1]] == ["δ C3"] * len(largest)
    assert math.fsum(steps[-1]["partial"]) == pytest.approx(got["value"], rel=1e-12)
    assert got["value"] == pytest.approx(sum(taps), rel=1e-12)


def test_learned_c3_mixes_each_input_map_by_alpha():
    """seed 3.3: u_j = Σ_i α_ij (x_i ⋆ k_i) + b_j, α_·j = softmax(c_·j)."""
    model, params, x, _ = _setup("learned_c3")
    j = 5
    got = explain.explain_map(model, params, x, "C3", j)
    ops = [s["op"] for s in got["steps"]]
    assert ops == ["conv_valid"] * 6 + ["softmax_rows", "conv_valid", "add_bias", "tanh"]
    mixing = got["steps"][7]
    c = params["C3.c"][j]
    alpha = np.exp(c - c.max()) / np.exp(c - c.max()).sum()
    assert np.allclose(np.ravel(mixing["weights"]), alpha, rtol=1e-12)
    z = [s["result"] for s in got["steps"][:6]]
    assert mixing["partial"] == pytest.approx(list(alpha * z), rel=1e-12)


def test_decimate_keeps_one_sample_and_sums_fan_out_deltas():
    model, params, x, t = _setup("decimate")
    got = explain.explain_map(model, params, x, "S2", 0)
    assert [s["op"] for s in got["steps"]] == ["subsample_decimate", "scale_maps", "add_bias",
                                                "sigmoid"]
    r, c = got["pixel"]
    c1 = model.layer_outputs(params, x)["C1"][0, 0]
    assert got["steps"][0]["result"] == c1[2 * r, 2 * c]
    delta = explain.explain_delta(model, params, x, t, "S2", 0)
    ops = [s["op"] for s in delta["steps"]]
    assert "matmul" in ops and "conv_full" in ops and ops[-2:] == ["add", "mul"]


def test_full_layers_list_the_largest_contributions(lenet5):
    model, params, x, _ = lenet5
    got = explain.explain_map(model, params, x, "F6", 3)
    assert got["pixel"] == []
    matmul = got["steps"][0]
    assert matmul["op"] == "matmul" and len(matmul["inputs"]) == 9   # 8 terms and the rest
    assert {i["name"] for i in matmul["inputs"][:8]} == {"C5"}
    assert matmul["result"] == pytest.approx(
        float(model.layer_outputs(params, x)["C5"][0, :, 0, 0] @ params["F6.weight"][3]),
        rel=1e-12)


def test_gradient_checks_pass_quickly_on_lenet5(lenet5):
    model, params, x, t = lenet5
    checks = explain.gradient_checks(model, {k: v.astype(np.float32) for k, v in
                                             params.items()}, x, t)
    assert set(checks) == set(model.param_info)
    assert all(check["ok"] and check["rel_error"] < 1e-6 for check in checks.values())
    json.dumps(checks)


def test_a_wrong_request_is_a_clear_error(lenet5):
    model, params, x, t = lenet5
    with pytest.raises(CnnError, match="no layer 'C7'"):
        explain.explain_map(model, params, x, "C7", 0)
    with pytest.raises(CnnError, match="map 6 is out of range"):
        explain.explain_map(model, params, x, "C1", 6)
    with pytest.raises(CnnError, match="outside"):
        explain.explain_delta(model, params, x, t, "C1", 0, pixel=(28, 0))
    with pytest.raises(CnnError, match="one image"):
        explain.explain_map(model, params, np.concatenate([x, x]), "C1", 0)
