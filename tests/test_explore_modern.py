"""The explorer on the modern vocabulary (examples/residual.cnn: same-padded
convolutions, ReLU, max and mean pooling, a residual sum, Adam with warm-up and
cosine, label smoothing): dead units are counted on the rectifiers, the pooling and
the sum explain their values, and the page's numbers are the replayed step's."""
from __future__ import annotations

import numpy as np
import pytest

from cnngraph.explore.build import collect
from cnngraph.tools.experiment import run_experiment
from cnngraph.training.replay import load_run, replay_positions
from conftest import ROOT, mnist_dir

MODEL = ROOT / "examples" / "residual.cnn"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    mnist = mnist_dir()
    if mnist is None:
        pytest.skip("real MNIST not found (set CNNGRAPH_DATA)")
    out = tmp_path_factory.mktemp("residual")
    run_experiment(str(MODEL), out=out, data=str(mnist), limit_train=320, limit_test=100,
                   plots=False, snapshots=6, config={"epochs": 2})
    return out, collect(out)


def test_rectifiers_report_their_dead_units(page):
    out, data = page
    last = data["positions"][-1]
    for node in ("C1/relu", "C2/relu", "R/relu"):
        dead = last["vitals"][node]["dead"]
        assert 0 <= dead <= 1
    # the dead fraction is that of the replayed step's own batch, before its update
    record = load_run(out)
    event = next(replay_positions(record, [last["step"]])).event
    outputs = record.model.layer_outputs(event.params_before, event.x)
    for layer in ("C1", "C2", "R"):
        expected = float(np.mean(outputs[layer] <= 0))
        assert last["vitals"][f"{layer}/relu"]["dead"] == pytest.approx(expected, rel=1e-3)


def test_pooling_and_the_residual_sum_explain_their_values(page):
    _, data = page
    explained = data["positions"][-1]["explain"]
    for layer, op in (("P1", "pool_max"), ("R", "add"), ("P2", "pool_mean")):
        first = explained[layer][min(explained[layer], key=int)]
        assert any(step["op"] == op for step in first["steps"])
        assert first["steps"][-1]["result"] == pytest.approx(first["value"], rel=1e-3)


def test_the_schedule_and_optimizer_replay_into_the_page(page):
    _, data = page
    rates = [p["lr"] for p in data["positions"]]
    assert rates[0] < rates[1]                       # warming up
    assert rates[-1] < max(rates)                    # then the cosine decays
    assert data["model"]["text"] == MODEL.read_text()
