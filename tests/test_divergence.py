"""Divergence without NaN (issue 21, item 5): a rate that saturates the units without
overflowing stops the run as diverged (exit 3, metrics.json says so), for each case
the campaign found exiting 0 with garbage; the shipped models at their own settings
never trip the rule; a sweep records such a point and goes on; a learning rate that
is not a finite positive number is refused before training."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import MODELS, mnist_dir

from cnngraph.cli.main import main
from cnngraph.cli.sweep_command import format_sweep
from cnngraph.compiler.program import compile_model
from cnngraph.core.errors import BuildError, UsageError
from cnngraph.tools.experiment import check_changes, run_experiment
from cnngraph.tools.sweep import load_model, run_sweep
from cnngraph.tools.sweep_grid import configurations
from cnngraph.training.checkpoint import load_checkpoint
from cnngraph.training.datasets import load_data
from cnngraph.training.divergence import BETTER, RISE, Diverged, diverged

# overflow and saturation warnings are what these runs are about
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def data():
    path = mnist_dir()
    if path is None:
        pytest.skip("real MNIST not found (set CNNGRAPH_DATA)")
    return load_data(str(path))


def _run(model, data, out, limit_train, resume=False, **config):
    return run_experiment(load_model(f"models/{model}.cnn"), config=config, out=out, data=data,
                          limit_train=limit_train, limit_test=50, plots=False, resume=resume)


def _main(argv):
    """(exit status, stdout, stderr) of ``python -m cnngraph ARGV``, in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


# the rule ---------------------------------------------------------------------------

def test_the_rule_at_its_margins():
    """A loss above twice the start diverges unless the error fell by a tenth or more
    (a noisy run that still learns); gradients all below 1e-30 diverge while the loss
    is above 1 % of the start, not once it is below."""
    alive = {"w": np.array([1e-3, 0.0])}
    dead = {"w": np.array([1e-31, -1e-98]), "b": np.zeros(0)}
    began = (2.3, 0.9, "epoch 1")
    assert (RISE, BETTER) == (2, 0.9)
    assert "above 2 times epoch 1's, 2.3," in diverged(4.61, 0.81, began, alive)
    assert diverged(4.59, 0.9, began, alive) is None
    assert diverged(4.61, 0.8, began, alive) is None  # its error still falls
    assert "below 1e-30 (saturated units)" in diverged(0.5, 0.9, (1.2, 0.9, "x"), dead)
    assert diverged(0.01, 0, (1.2, 0.9, "x"), dead) is None  # learned: no gradient left


# the campaign's cases ---------------------------------------------------------------

#: (model, rate, dtype, training images): each exited 0 with a test error of 84-93 %
SATURATING = [("lenet5", 1e3, "float32", 100), ("lenet5", 1e3, "float64", 100)] + [
    (model, rate, dtype, 100 if model == "mlp" else 200)
    for model in ("mlp", "dlt") for rate in (1e3, 1e6, 1e8) for dtype in ("float32", "float64")]


@pytest.mark.parametrize("model, rate, dtype, images", SATURATING)
def test_saturating_rates_stop_as_diverged(tmp_path, data, model, rate, dtype, images):
    """Epoch 1 ends diverged: no checkpoint (there was no good epoch), metrics.json
    says where, with the two losses compared."""
    with pytest.raises(Diverged) as error:
        _run(model, data, tmp_path, images, lr=rate, dtype=dtype, epochs=2)
    assert error.value.message.startswith("training diverged in epoch 1: ")
    assert error.value.hint == f"lower the learning rate (it was {rate:g}); " \
                               "no checkpoint had been written yet"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["diverged"] is True and metrics["epochs"] == []
    record = metrics["divergence"]
    assert record["epoch"] == 1 and record["start"] == "the run's first batch"
    assert all(math.isfinite(record[k]) for k in ("train_loss", "train_error", "start_loss",
                                                   "start_error"))
    assert record["reason"] in error.value.message
    assert not (tmp_path / "checkpoint.npz").exists()


@pytest.mark.parametrize("model", [m.stem for m in MODELS])
def test_shipped_models_at_their_own_settings_never_diverge(tmp_path, data, model):
    """Two epochs of every shipped model at its train block's settings (DLT at lr 1)
    on a subset, where several sit on their first plateau: nothing trips."""
    result = _run(model, data, tmp_path, 300, epochs=2)
    assert "diverged" not in result.metrics and len(result.metrics["epochs"]) == 2
    assert "diverged" not in json.loads((tmp_path / "metrics.json").read_text())


def _late(out, data, resume=False):
    """MLP trains epoch 1 at its rate, epoch 2 at 1e3: returns the error of epoch 2."""
    with pytest.raises(Diverged) as error:
        _run("mlp", data, out, 200, resume, epochs=2, schedule=((2, 1e3),))
    return error.value


def test_a_later_epoch_is_compared_with_epoch_1_and_its_checkpoint_kept(tmp_path, data):
    first = tmp_path / "one"
    _run("mlp", data, first, 200, epochs=1)
    error = _late(tmp_path / "two", data)
    assert f"the last good checkpoint, {tmp_path / 'two' / 'checkpoint.npz'}, is kept" \
        in error.hint and "(it was 1000)" in error.hint
    kept = load_checkpoint(tmp_path / "two" / "checkpoint.npz")
    assert (kept.epoch, kept.step) == (1, 0)
    alone = load_checkpoint(first / "checkpoint.npz")
    assert all(np.array_equal(kept.params[k], alone.params[k]) for k in alone.params)
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 1 and metrics["divergence"]["epoch"] == 2
    record, epoch_1 = metrics["divergence"], metrics["epochs"][0]
    assert record["start"] == "epoch 1"
    assert (record["start_loss"], record["start_error"]) == (epoch_1["train_loss"],
                                                             epoch_1["train_error"])


def test_a_resumed_run_decides_as_one_never_interrupted(tmp_path, data):
    """Epoch 1's training loss is in the checkpoint: resuming after it, epoch 2 is
    judged against the same number."""
    straight = _late(tmp_path / "straight", data)
    _run("mlp", data, tmp_path / "resumed", 200, epochs=1)
    assert _late(tmp_path / "resumed", data, resume=True).record == straight.record


def test_a_run_from_trained_weights_is_not_judged_by_its_first_batch(tmp_path, data):
    """Fine-tuning a net trained on the first 200 images on the first 1000, in file
    order: its first batch (trained images, no error) has a far lower loss than the
    epoch, whose new images it has not seen. That is no divergence; with weights
    given, epoch 1 is not judged (as an epoch 1 resumed midway) and later epochs are
    judged against epoch 1."""
    _run("mlp", data, tmp_path / "trained", 200, epochs=30, shuffle=False)
    weights = {k.removeprefix("param/"): v for k, v in
               np.load(tmp_path / "trained" / "checkpoint.npz").items()
               if k.startswith("param/")}
    tuned = run_experiment(load_model("models/mlp.cnn"), config={"epochs": 2, "shuffle": False},
                           out=tmp_path / "tuned", data=data, limit_train=1000, limit_test=50,
                           plots=False, weights=weights)
    first, second = tuned.metrics["epochs"]
    assert "divergence" not in tuned.metrics and second["train_loss"] < first["train_loss"]


# the command line -------------------------------------------------------------------

def test_run_exits_3_with_the_message_and_the_hint(tmp_path, mnist):
    code, _, err = _main(["run", "models/mlp.cnn", "--lr", "1e3", "--limit-train", "100",
                          "--limit-test", "50", "--no-plots", "--data", mnist,
                          "--out", tmp_path])
    assert code == 3
    assert "training diverged in epoch 1: every gradient of its last batch is below 1e-30" \
        in err
    assert "hint: lower the learning rate (it was 1000)" in err
    assert f"the good epochs and the divergence are in {tmp_path / 'metrics.json'}" in err
    assert json.loads((tmp_path / "metrics.json").read_text())["diverged"] is True


def test_nan_also_exits_3_and_says_so_in_metrics(tmp_path, mnist):
    code, _, err = _main(["run", "models/lenet5.cnn", "--lr", "1e30", "--limit-train", "50",
                          "--limit-test", "50", "--epochs", "1", "--no-plots", "--data", mnist,
                          "--out", tmp_path])
    assert code == 3 and "became NaN or infinite" in err
    record = json.loads((tmp_path / "metrics.json").read_text())["divergence"]
    assert record["epoch"] == 1 and record["train_loss"] is None and record["start_loss"] > 2
    # at 1e30 the update overflows first (weight decay 5e-4 times weights near 1e30,
    # times the rate), before any loss or gradient does (tests/test_provenance.py)
    assert record["reason"] == "the optimizer's update of a parameter became NaN or infinite"
    assert record["first_bad"]["pass"] == "update"


def test_a_sweep_records_a_diverged_point_and_finishes_the_others(tmp_path, mnist):
    result = run_sweep("models/mlp.cnn", {"lr": [0.02, 1e3]}, tmp_path, data=str(mnist),
                       limit_train=100, limit_test=50, plots=False,
                       executor=ThreadPoolExecutor(1))
    rows = {r["name"]: r for r in result.rows}
    assert rows["lr=0.02"]["status"] == "ok" and rows["lr=1000"]["status"] == "diverged"
    assert rows["lr=1000"]["test_error"] is None and rows["lr=1000"]["train_loss"] > 5
    assert "lower the learning rate" in rows["lr=1000"]["error"]
    assert result.failed == []  # a divergence is that rate's result: the sweep exits 0
    assert "1 of 2 configurations diverged:\nlr=1000:\n" in format_sweep(result)
    with open(tmp_path / "sweep.csv") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["ok", "diverged"]
    assert json.loads((tmp_path / "lr=1000" / "metrics.json").read_text())["diverged"]


# rates that are not finite positive numbers -----------------------------------------

BAD_RATES = [float("nan"), float("inf"), -1.0, 0.0]


@pytest.mark.parametrize("rate", BAD_RATES)
def test_api_and_run_refuse_the_rate_before_training(tmp_path, rate):
    with pytest.raises(UsageError, match="--lr must be a finite positive number"):
        check_changes({"lr": rate})
    code, _, err = _main(["run", "models/mlp.cnn", "--lr", str(rate), "--out", tmp_path])
    assert code == 2 and "--lr must be a finite positive number" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("rate", BAD_RATES)
def test_sweep_refuses_the_rate_in_its_grid(rate):
    with pytest.raises(UsageError, match="--lr values must be positive and finite"):
        configurations(load_model("models/mlp.cnn"), {"lr": [0.1, rate]})


@pytest.mark.parametrize("text, expected", [("nan", "a number"), ("inf", "a number"),
                                            ("1e999", "a finite number"), ("-1", "a number > 0"),
                                            ("0", "a number > 0")])
def test_the_train_block_refuses_the_rate(tmp_path, text, expected):
    source = tmp_path / "m.cnn"
    source.write_text((MODELS[0].parent / "mlp.cnn").read_text().replace(
        "lr = 0.02", f"lr = {text}"))
    with pytest.raises(BuildError, match=f"option 'lr' expects {expected}") as error:
        compile_model(source)
    assert error.value.span.line == 24
