"""Checks generated from the registry: every layer rule, built-in or from a plugin,
carries an example model that compiles, lowers the layer, runs and passes a
float64 finite-difference check of every gradient (parameters and input)."""
import dataclasses
from functools import lru_cache

import networkx as nx
import numpy as np
import pytest
from conftest import ROOT

from cnngraph import compile_model, default_registry
from cnngraph.core.plugins import load_plugin
from cnngraph.tools.check_model import check_model

MAXPOOL = str(ROOT / "examples" / "maxpool.py")
BUILTIN = sorted(default_registry().layers)
PLUGIN_REGISTRY = default_registry()
PLUGIN = sorted(name.removeprefix("layer ") for name in load_plugin(MAXPOOL, PLUGIN_REGISTRY)
                if name.startswith("layer "))
LAYERS = BUILTIN + PLUGIN
#: The finite-difference step per layer, where the default does not suit it:
#: max-pooling has kinks, so a small step keeps the differences off them.
EPS = {"maxpool": 1e-5}


@lru_cache(maxsize=None)
def registry_for(layer):
    """Built-in examples compile with the default registry alone, so they need
    no plugin; a plugin's example gets a registry with that plugin loaded."""
    return default_registry() if layer in BUILTIN else PLUGIN_REGISTRY


def example_of(rule):
    """The rule's example text; a rule without one fails the suite here."""
    text = rule.example
    assert isinstance(text, str) and text.strip(), \
        f"layer '{rule.name}' has no example: give its LayerRule an example model"
    assert "\n" in text, f"layer '{rule.name}': the example must be model text, not a path"
    return text


@lru_cache(maxsize=None)
def compiled(layer):
    registry = registry_for(layer)
    return compile_model(example_of(registry.layers[layer]), registry)


def layers_of_kind(model, kind):
    return [spec for spec in model.network.spec.layers if spec.kind == kind]


def test_the_plugin_adds_a_layer():
    assert PLUGIN == ["maxpool"]
    assert set(BUILTIN) >= {"conv", "subsample", "full", "concat", "loss"}


@pytest.mark.parametrize("layer", LAYERS)
def test_every_layer_has_an_example(layer):
    example_of(registry_for(layer).layers[layer])


def test_a_layer_without_an_example_fails():
    rule = dataclasses.replace(default_registry().layers["concat"], example="")
    with pytest.raises(AssertionError, match="layer 'concat' has no example"):
        example_of(rule)


@pytest.mark.parametrize("layer", LAYERS)
def test_example_compiles_and_lowers_the_layer(layer):
    model = compiled(layer)
    graph, network = model.graph, model.network
    uses = layers_of_kind(model, layer)
    assert uses, f"the example of '{layer}' has no '{layer}' layer"
    known_ops = model.registry.ops
    for spec in uses:
        nodes = {n: d for n, d in graph.nodes(data=True)
                 if d["layer"] == spec.name and d["op"] is not None}
        assert nodes, f"layer '{spec.name}' ({layer}) lowered into no op"
        for node, data in nodes.items():
            assert data["role"] == "op" and data["pass_"] == "forward", node
            assert data["op"] in known_ops, node
            assert len(data["inputs"]) == len(known_ops[data["op"]].slots), node
            assert all(i in graph for i in data["inputs"]), node
            assert data["span"] is not None and data["span"].line >= 1, node
        # the layer's output is one of its own nodes, and the loss reads it
        output = network.layer_outputs[spec.name]
        assert output in nodes
        assert output == network.loss or network.loss in nx.descendants(graph, output)


@pytest.mark.parametrize("layer", LAYERS)
def test_example_runs_forward(layer):
    model = compiled(layer)
    params = model.init_params(0, np.float64)
    assert set(params) == set(model.network.params)
    x = np.random.default_rng(1).uniform(0, 1, size=(3,) + model.input_shape)
    y = model.forward(params, x)
    assert y.shape == (3, model.classes)
    assert y.dtype == np.float64 and np.all(np.isfinite(y))
    # each image's output depends on that image only
    np.testing.assert_allclose(model.forward(params, x[1:2]), y[1:2], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer", LAYERS)
def test_example_passes_the_gradient_check(layer):
    model = compiled(layer)
    kwargs = {"eps": EPS[layer]} if layer in EPS else {}
    results = check_model(model, batch=2, **kwargs)
    assert {r.name for r in results} == {*model.network.params, model.network.input}
    assert all(0 < r.checked <= r.size for r in results if r.size)  # running statistics: 0
    bad = [r for r in results if not r.ok]
    assert not bad, bad
