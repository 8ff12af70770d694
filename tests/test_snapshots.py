"""Snapshots kept during training (training/snapshots.py): where they are taken, what
each file holds, a fresh run against a resumed one, and that keeping them changes
nothing the run computes."""
import json

import numpy as np
import pytest

from cnngraph.cli.main import main
from cnngraph.core.errors import UsageError
from cnngraph.tools.experiment import run_experiment
from cnngraph.training.checkpoint import load_checkpoint
from cnngraph.training.loop import Interrupted
from cnngraph.training.snapshots import positions, snapshot_files


@pytest.mark.parametrize("steps,epochs,count", [(600, 20, 50), (6, 2, 50), (1200, 1, 50),
                                                (3, 20, 50), (60000, 5, 10), (7, 1, 1)])
def test_positions_are_few_unique_dense_early_and_end_at_the_last_step(steps, epochs, count):
    found = positions(steps, epochs, count)
    last = steps * epochs
    assert len(found) == min(count, last) and found[-1] == last
    assert found == sorted(set(found)) and found[0] == (1 if count > 1 else last)
    if last > 2 * count > 2:  # dense early: the narrowest gaps first, the widest last
        gaps = np.diff(found)
        assert gaps[:len(gaps) // 2].max() <= gaps[len(gaps) // 2:].min() + 1
    assert positions(steps, epochs, count) == found  # what a resumed run computes


def test_a_long_run_keeps_every_one_of_its_first_steps():
    """20 epochs of 600 steps (LeNet-5 on MNIST at batch 100): steps 1 to 8, then wider."""
    found = positions(600, 20)
    assert found[:9] == [1, 2, 3, 4, 5, 6, 7, 8, 10] and found[-2:] == [10098, 12000]


def test_no_positions_without_steps_or_count():
    assert positions(6, 2, 0) == [] and positions(0, 2, 50) == []


def _run(out, mnist, **kwargs):
    config = {"epochs": 2, "batch": 50, "dtype": "float64", **kwargs.pop("config", {})}
    return run_experiment("models/dlt.cnn", out=out, config=config, data=mnist,
                          limit_train=300, limit_test=50, plots=False, **kwargs)


class Before:
    """Each step's parameters before it, by global step."""

    def __init__(self):
        self.params = {}

    def on_step(self, trainer, event):
        self.params[event.global_step] = event.params_before


def test_each_snapshot_is_the_state_right_before_its_step(tmp_path, mnist):
    seen = Before()
    result = _run(tmp_path, mnist, observers=[seen])
    folder = tmp_path / "snapshots"
    info = json.loads((folder / "run.json").read_text())
    assert info["positions"] == list(range(1, 13)) and info["steps_per_epoch"] == 6
    assert info["data"] == str(mnist.resolve()) and info["limit_train"] == 300
    assert info["model_hash"] == result.metrics["model_hash"] and info["every"] == 1
    assert info["backend"] in ("numpy", "numba") and info["config"]["batch"] == 50
    assert (info["threads"], info["shards"], info["reduction"]) == (1, 1, "ordered")
    files = snapshot_files(folder)
    assert list(files) == list(range(1, 13))
    for g, path in files.items():
        ckpt = load_checkpoint(path, info["model_hash"])
        assert ckpt.epoch * 6 + ckpt.step == g - 1 and ckpt.step < 6
        for name, value in seen.params[g].items():
            assert np.array_equal(ckpt.params[name], value)


def test_every_kth_position_is_written(tmp_path, mnist):
    _run(tmp_path, mnist, snapshot_every=5)
    assert list(snapshot_files(tmp_path / "snapshots")) == [1, 6, 11]


def test_no_snapshots_with_zero_and_wrong_counts_refused(tmp_path, mnist):
    _run(tmp_path, mnist, snapshots=0)
    assert not (tmp_path / "snapshots").exists()
    for wrong in ({"snapshots": -1}, {"snapshot_every": 0}):
        with pytest.raises(UsageError, match="--snapshot"):
            _run(tmp_path / "x", mnist, **wrong)


def test_snapshots_change_nothing_the_run_computes(tmp_path, mnist):
    plain = _run(tmp_path / "plain", mnist, snapshots=0)
    kept = _run(tmp_path / "kept", mnist, snapshot_every=2)
    for name in plain.params:
        assert np.array_equal(plain.params[name], kept.params[name])
    assert plain.test_error == kept.test_error
    assert [e["train_loss"] for e in plain.metrics["epochs"]] == \
        [e["train_loss"] for e in kept.metrics["epochs"]]
    a = load_checkpoint(tmp_path / "plain" / "checkpoint.npz")
    b = load_checkpoint(tmp_path / "kept" / "checkpoint.npz")
    assert a.rng_state == b.rng_state and (a.epoch, a.step) == (b.epoch, b.step)


def test_a_fresh_run_replaces_old_snapshots(tmp_path, mnist):
    _run(tmp_path, mnist)
    _run(tmp_path, mnist, config={"epochs": 1})
    assert list(snapshot_files(tmp_path / "snapshots")) == list(range(1, 7))
    info = json.loads((tmp_path / "snapshots" / "run.json").read_text())
    assert info["epochs"] == 1 and info["positions"] == list(range(1, 7))


def test_a_resumed_run_keeps_its_snapshots_and_ends_with_the_same_ones(tmp_path, mnist):
    _run(tmp_path / "whole", mnist, snapshot_every=2)
    calls = []
    with pytest.raises(Interrupted):
        _run(tmp_path / "parts", mnist, snapshot_every=2,
             should_stop=lambda: calls.append(1) or len(calls) == 8)
    assert list(snapshot_files(tmp_path / "parts" / "snapshots")) == [1, 3, 5, 7, 9]
    _run(tmp_path / "parts", mnist, snapshot_every=2, resume=True)
    whole = snapshot_files(tmp_path / "whole" / "snapshots")
    parts = snapshot_files(tmp_path / "parts" / "snapshots")
    assert list(whole) == list(parts) == [1, 3, 5, 7, 9, 11]
    for g in whole:
        a, b = load_checkpoint(whole[g]), load_checkpoint(parts[g])
        assert (a.epoch, a.step, a.rng_state) == (b.epoch, b.step, b.rng_state)
        for name in a.params:
            assert np.array_equal(a.params[name], b.params[name])


def test_run_flags_set_the_count_and_cadence(tmp_path, mnist):
    assert main(["run", "models/dlt.cnn", "--data", str(mnist), "--limit-train", "300",
                 "--limit-test", "50", "--epochs", "2", "--batch", "50", "--no-plots",
                 "--quiet", "--out", str(tmp_path), "--snapshots", "4",
                 "--snapshot-every", "2"]) == 0
    info = json.loads((tmp_path / "snapshots" / "run.json").read_text())
    assert info["positions"] == positions(6, 2, 4) and info["every"] == 2
    assert list(snapshot_files(tmp_path / "snapshots")) == positions(6, 2, 4)[::2]


def test_a_resume_that_changes_the_batches_starts_the_snapshots_anew(tmp_path, mnist):
    """Other threads may give other bits: the snapshots before the resume would not
    replay with the resumed run's record, so they go and a new base is written."""
    calls = []
    with pytest.raises(Interrupted):
        _run(tmp_path, mnist, snapshot_every=2,
             should_stop=lambda: calls.append(1) or len(calls) == 8)
    _run(tmp_path, mnist, snapshot_every=2, resume=True, workers=2)
    assert list(snapshot_files(tmp_path / "snapshots")) == [9, 11]
    assert json.loads((tmp_path / "snapshots" / "run.json").read_text())["threads"] == 2
