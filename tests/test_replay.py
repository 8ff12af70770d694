"""Exact replay (training/replay.py): each position's step, recomputed from the run's
snapshots, is bitwise the step training computed (batch, distortions, gradients,
parameters before and after), on each backend, with threads, shards, both dtypes,
optimizer state and a learning-rate schedule; and what a folder that cannot be
replayed says."""
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import MPIEXEC, ROOT, needs_mpi, needs_numba

from cnngraph.compiler.program import compile_model
from cnngraph.core.errors import CnnError
from cnngraph.tools.experiment import run_experiment
from cnngraph.training.loop import Interrupted
from cnngraph.training.replay import load_run, replay_positions
from cnngraph.training.snapshots import snapshot_files


class Recorder:
    """The StepEvents of a run, by global step, and the optimizer state after each."""

    def __init__(self):
        self.events, self.states = {}, {}

    def on_step(self, trainer, event):
        self.events[event.global_step] = event
        self.states[event.global_step] = trainer.state


def _train(out, mnist, model="models/dlt.cnn", backend="numpy", limit=300, every=1,
           workers=1, stop=None, **config):
    """Train into ``out`` keeping snapshots; the Recorder (also after ``stop()``)."""
    seen = Recorder()
    config = {"epochs": 2, "batch": 50, "dtype": "float64", **config}
    try:
        run_experiment(compile_model(model, backend=backend), out=out, config=config,
                       data=mnist, limit_train=limit, limit_test=50, plots=False,
                       workers=workers, observers=[seen], snapshot_every=every,
                       should_stop=stop)
    except Interrupted:
        assert stop is not None
    return seen


def _same_arrays(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def _assert_replays(out, seen: Recorder, positions=None):
    record = load_run(out)
    found = list(replay_positions(record, positions))
    wanted = sorted(set([g for g in record.positions if g <= record.trained]
                        if positions is None else positions))
    assert [r.position for r in found] == wanted
    for replayed in found:
        event, trained = replayed.event, seen.events[replayed.position]
        assert (event.epoch, event.step, event.steps) == (trained.epoch, trained.step,
                                                          trained.steps)
        assert replayed.epoch == replayed.position / record.steps_per_epoch
        assert (event.loss, event.errors, event.lr) == (trained.loss, trained.errors,
                                                        trained.lr)
        assert np.array_equal(event.x, trained.x) and np.array_equal(event.t, trained.t)
        for field in ("params_before", "grads", "params"):
            assert _same_arrays(getattr(event, field), getattr(trained, field)), field
        mine, theirs = replayed.state, seen.states[replayed.position]
        assert mine.keys() == theirs.keys()
        assert all(_same_arrays(mine[slot], theirs[slot]) for slot in mine)
    return record


@pytest.mark.parametrize("every,config", [
    (1, {}),
    (4, {"dtype": "float32", "optimizer": ("sgd", {"momentum": 0.9}),
         "schedule": ((2, 0.5),)}),
    (5, {"shards": 2, "shuffle": False}),
    (3, {"dtype": "float32", "optimizer": ("sdlm", {"mu": 0.02, "samples": 60}),
         "lr": 0.002}),
])
def test_replay_is_bitwise_on_numpy(tmp_path, mnist, every, config):
    seen = _train(tmp_path, mnist, every=every, **config)
    record = _assert_replays(tmp_path, seen)
    assert list(record.snapshots) == list(range(1, 13))[::every] and record.trained == 12


def test_replay_is_bitwise_with_the_batch_split_on_two_threads(tmp_path, mnist):
    seen = _train(tmp_path, mnist, limit=320, every=3, workers=2, batch=80)
    _assert_replays(tmp_path, seen)


@needs_numba
@pytest.mark.parametrize("dtype,config", [("float32", {}), ("float64", {"shards": 2})])
def test_replay_is_bitwise_on_numba(tmp_path, mnist, dtype, config):
    seen = _train(tmp_path, mnist, backend="numba", every=4, workers=2, dtype=dtype, **config)
    _assert_replays(tmp_path, seen)


def test_distortions_replay_too(tmp_path, mnist):
    seen = _train(tmp_path, mnist, model="models/lenet5_distorted.cnn", limit=60, every=3,
                  batch=20, dtype="float32")
    record = _assert_replays(tmp_path, seen)
    assert record.steps_per_epoch == 3


def test_chosen_positions_in_order_each_once(tmp_path, mnist):
    seen = _train(tmp_path, mnist, every=5)
    _assert_replays(tmp_path, seen, positions=[12, 2, 9, 2, np.int64(7)])
    with pytest.raises(CnnError, match="position 13 is not a step of this run"):
        list(replay_positions(load_run(tmp_path), [13]))
    with pytest.raises(CnnError, match="positions must be whole numbers"):
        list(replay_positions(load_run(tmp_path), [2.5]))


def test_an_interrupted_run_replays_the_steps_it_took(tmp_path, mnist):
    calls = []
    seen = _train(tmp_path, mnist, every=4, stop=lambda: calls.append(1) or len(calls) == 8)
    assert max(seen.events) == 8
    record = _assert_replays(tmp_path, seen)  # steps 1 to 8, not the 4 never taken
    assert record.trained == 8 and list(record.snapshots) == [1, 5, 9]


def test_a_run_without_snapshots_says_so(tmp_path, mnist):
    run_experiment("models/dlt.cnn", out=tmp_path, config={"batch": 50}, data=mnist,
                   limit_train=100, limit_test=50, plots=False, snapshots=0)
    with pytest.raises(CnnError, match="kept no snapshots") as caught:
        load_run(tmp_path)
    assert caught.value.where == str(tmp_path / "snapshots" / "run.json")
    assert "--snapshots" in caught.value.hint


def _edit_record(out, **changes):
    path = out / "snapshots" / "run.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return path


def test_a_record_of_another_network_is_refused(tmp_path, mnist):
    _train(tmp_path, mnist, limit=100, epochs=1)
    path = _edit_record(tmp_path, model_hash="0" * 64)
    with pytest.raises(CnnError, match="different runs") as caught:
        load_run(tmp_path)
    assert caught.value.where == str(path)


def test_missing_data_is_named(tmp_path, mnist):
    _train(tmp_path, mnist, limit=100, epochs=1)
    path = _edit_record(tmp_path, data=str(tmp_path / "gone"))
    with pytest.raises(CnnError, match="gone is missing") as caught:
        load_run(tmp_path)
    assert caught.value.where == str(path)


def test_other_data_than_the_run_read_is_refused(tmp_path, mnist):
    _train(tmp_path, mnist, limit=100, epochs=1)
    path = _edit_record(tmp_path, limit_train=200)
    with pytest.raises(CnnError, match="now holds 200 images") as caught:
        load_run(tmp_path)
    assert caught.value.where == str(path)


def test_a_snapshot_that_does_not_hold_its_position_is_refused(tmp_path, mnist):
    _train(tmp_path, mnist, limit=100, epochs=1)
    files = snapshot_files(tmp_path / "snapshots")
    files[2].rename(files[2].with_name("before-00000001.npz"))
    with pytest.raises(CnnError, match="after 1 steps, its name says 0"):
        list(replay_positions(load_run(tmp_path), [1]))


@needs_mpi
def test_a_run_on_two_ranks_replays_in_one_process(tmp_path, mnist):
    """Rank 0 keeps the snapshots; shards combined in order give one process's bits, so
    one process replays the ranks' steps as a single-process run of the shards took them."""
    done = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, "-m", "cnngraph", "run", "models/dlt.cnn",
         "--backend", "numpy", "--data", str(mnist), "--limit-train", "300", "--limit-test",
         "50", "--epochs", "2", "--batch", "50", "--dtype", "float64", "--shards", "2",
         "--snapshot-every", "4", "--no-plots", "--quiet", "--out", str(tmp_path / "mpi")],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    seen = _train(tmp_path / "one", mnist, shards=2)
    record = _assert_replays(tmp_path / "mpi", seen)
    assert (record.info["ranks"], record.info["shards"]) == (2, 2)
