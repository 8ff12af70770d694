"""Vital signs (training/vitals.py): each number against its definition, computed
directly, for squashing, rectifying and identity activations."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import ROOT

from cnngraph.compiler.program import compile_model, default_registry
from cnngraph.training.vitals import (
    activation_kind,
    activation_vitals,
    layer_activations,
    layer_vitals,
    update_ratio,
)


REGISTRY = default_registry()


def relu(u):
    return np.maximum(u, 0)


def leaky(u, *, slope=0.01):
    return np.where(u > 0, u, slope * u)


def test_activations_are_classified_by_evaluating_them():
    ops = REGISTRY.ops
    assert activation_kind(ops["tanh"].reference, {"a": 2.0, "b": 0.5}) == ("squashing", -2, 2)
    assert activation_kind(ops["sigmoid"].reference, {"gain": 3.0}) == ("squashing", 0, 1)
    assert activation_kind(relu, {}) == ("rectifier",)
    assert activation_kind(leaky, {}) is None
    assert activation_kind(lambda u: u, {}) is None


def test_tanh_saturation_is_within_one_percent_of_its_own_amplitude():
    y = np.array([-2.0, -1.99, 0.0, 1.985, 1.97], dtype=np.float32)
    found = activation_vitals(y, "tanh", {"a": 2.0, "b": 1.0}, REGISTRY)
    assert found["saturated"] == pytest.approx(3 / 5)  # |y| >= 0.99 * 2
    assert found["dead"] is None
    assert found["activation_mean"] == pytest.approx(float(np.mean(y, dtype=np.float64)))
    assert found["activation_std"] == pytest.approx(float(np.std(y, dtype=np.float64)))


def test_sigmoid_saturation_is_near_0_or_1_whatever_its_gain():
    y = np.array([0.005, 0.5, 0.995, 0.99, 0.2])
    assert activation_vitals(y, "sigmoid", {"gain": 4.0}, REGISTRY)["saturated"] == \
        pytest.approx(3 / 5)
    assert activation_vitals(y, "sigmoid", {"gain": 4.0})["saturated"] is None  # no registry


def test_a_rectifier_has_dead_units_and_no_saturation():
    rules = SimpleNamespace(ops={"relu": SimpleNamespace(reference=relu)})
    found = activation_vitals(np.array([0.0, 0.0, 1.0, 2.0]), "relu", {}, rules)
    assert found["dead"] == pytest.approx(0.5) and found["saturated"] is None


def test_identity_has_neither():
    found = activation_vitals(np.array([3.0, -3.0]), None, None, REGISTRY)
    assert found["saturated"] is None and found["dead"] is None
    assert found["activation_std"] == pytest.approx(3.0)


def test_update_ratio():
    before, after = np.array([3.0, 4.0]), np.array([3.0, 4.5])
    assert update_ratio(before, after) == pytest.approx(0.5 / 5)
    assert update_ratio(np.zeros(2), np.zeros(2)) == 0.0
    assert update_ratio(np.zeros(2), np.ones(2)) == math.inf


def test_activations_are_read_from_the_graph():
    lenet = layer_activations(compile_model(ROOT / "models/lenet5.cnn"))
    assert lenet["C1"] == ("tanh", {"a": 1.7159, "b": 2 / 3}) and lenet["out"] is None
    dlt = layer_activations(compile_model(ROOT / "models/dlt.cnn"))
    assert dlt["C1"] == ("sigmoid", {}) and dlt["S2"] is None  # activation=identity


@pytest.mark.parametrize("name", ["lenet5.cnn", "dlt.cnn"])
def test_layer_vitals_match_a_direct_computation(name):
    model = compile_model(ROOT / "models" / name)
    dtype = np.dtype(model.settings.train.dtype)
    before = model.init_params(3, dtype)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *model.input_shape)).astype(dtype)
    t = np.eye(model.classes, dtype=dtype)[rng.integers(0, model.classes, 8)]
    _, grads, _ = model.loss_and_grads(before, x, t)
    after = {k: v - 0.5 * grads[k] for k, v in before.items()}
    kept = {k: v.copy() for k, v in before.items()}
    found = layer_vitals(model, before, after, grads, x)
    assert all(np.array_equal(kept[k], before[k]) for k in before)  # nothing changed
    outputs = model.layer_outputs(before, x)
    assert set(found) == set(outputs) - {"x"}
    for layer, entry in found.items():
        y = outputs[layer].astype(np.float64)
        assert entry["activation_mean"] == pytest.approx(y.mean())
        assert entry["activation_std"] == pytest.approx(y.std())
        names = [p for p in before if model.graph.nodes[p]["layer"] == layer]
        if not names:  # dlt's S2: beta fixed, no bias
            assert entry["grad_norm"] is None and entry["update_ratio"] is None
            continue
        assert entry["grad_norm"] == pytest.approx(np.linalg.norm(_flat(grads, names)))
        assert entry["update_ratio"] == pytest.approx(
            np.linalg.norm(_flat(after, names) - _flat(before, names))
            / np.linalg.norm(_flat(before, names)))
    if name == "dlt.cnn":
        assert found["S2"]["saturated"] is None
        assert found["C1"]["saturated"] == pytest.approx(np.mean(
            (outputs["C1"] <= 0.01) | (outputs["C1"] >= 0.99)))


def _flat(arrays, names):
    return np.concatenate([np.ravel(arrays[p]).astype(np.float64) for p in names])
