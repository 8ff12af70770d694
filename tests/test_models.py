"""Every shipped model builds, and its gradients agree with finite differences."""
import dataclasses

import pytest
from conftest import MODELS

from cnngraph.cli.main import main
from cnngraph.compiler.program import compile_model, default_registry
from cnngraph.tools.check_model import check_model


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_shipped_model_gradients_agree(path):
    """Sampled coordinates plus random directions (the CLI checks every coordinate);
    modern.cnn's every evaluation recomputes 28x28 maps through eight layers, so it
    samples fewer coordinates per tensor (each of its tensors is still checked)."""
    sample = {"modern": 16}.get(path.stem, 60)
    results = check_model(compile_model(path), sample=sample, directions=3)
    assert {r.name for r in results} >= {"x"}
    for r in results:
        assert r.ok, (r.name, r.error)


def test_check_command_checks_every_coordinate(capsys):
    assert main(["check", "models/dlt.cnn"]) == 0
    out = capsys.readouterr().out
    assert "C3.kernel" in out and "1800     1800" in out and "7 of 7 gradients agree" in out


def test_check_fails_and_names_the_tensor_when_a_rule_is_wrong(monkeypatch, capsys):
    registry = default_registry()
    rule = registry.ops["scale_maps"]

    def wrong(emit, node, delta):
        grad_x, grad_beta = rule.gradient(emit, node, delta)
        return grad_x, emit.emit("scale", (grad_beta,), c=1.01)
    registry.ops["scale_maps"] = dataclasses.replace(rule, gradient=wrong)
    monkeypatch.setattr("cnngraph.compiler.program.default_registry", lambda plugins=(): registry)
    assert main(["check", "models/lenet5.cnn", "--sample", "5"]) == 1
    out = capsys.readouterr().out
    assert "S2.beta" in out and "FAILED" in out
    failed = out.split("FAILED:")[1]
    assert "S2.beta" in failed and "S4.beta" in failed and "C1.kernel" not in failed


def test_lenet5_matches_the_paper():
    model = compile_model("models/lenet5.cnn")
    shapes = model.param_shapes
    assert shapes["C3.kernel"] == (16, 6, 5, 5)
    assert model.network.params["C3.kernel"].size == 60 * 25  # the table's 60 connections
    assert sum(info.size for info in model.network.params.values()) == 60_850


def test_batch_split_across_threads_gives_the_same_gradients():
    """ThreadSplit(2) runs two halves at once and weights their mean gradients by size."""
    import numpy as np

    from cnngraph.training.step import MIN_SPLIT, ThreadSplit, WholeBatch, batch_gradients
    model = compile_model("models/dlt.cnn")
    params = model.init_params(0, np.float64)
    rng = np.random.default_rng(0)
    batch = 2 * MIN_SPLIT + 3  # unequal halves
    x = rng.uniform(size=(batch, 1, 28, 28))
    t = np.eye(10)[rng.integers(0, 10, batch)]
    whole = batch_gradients(model, params, x, t, WholeBatch())
    split = batch_gradients(model, params, x, t, ThreadSplit(2))
    assert split.loss == pytest.approx(whole.loss, rel=1e-12)
    assert split.errors == whole.errors and split.size == whole.size == batch
    for name in whole.grads:
        np.testing.assert_allclose(split.grads[name], whole.grads[name], rtol=1e-10, atol=1e-14)
    again = batch_gradients(model, params, x, t, ThreadSplit(2)).grads
    assert all(np.array_equal(again[n], split.grads[n]) for n in whole.grads)
