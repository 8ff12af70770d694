"""Observers see every start, step, epoch and end of a run, with the values the
trainer used, and do not change what it computes."""
import numpy as np

from cnngraph.tools.experiment import run_experiment


class Recorder:
    def __init__(self):
        self.calls = []

    def on_start(self, trainer, steps):
        self.calls.append(("start", steps, {k: v.copy() for k, v in trainer.params.items()}))

    def on_step(self, trainer, event):
        self.calls.append(("step", event))

    def on_epoch(self, trainer, record):
        self.calls.append(("epoch", record["epoch"]))

    def on_end(self, trainer, metrics):
        self.calls.append(("end", metrics["test_error"]))


def test_observers_see_every_step_in_order_and_change_nothing(tmp_path, mnist):
    config = {"epochs": 2, "batch": 50}
    plain = run_experiment("models/dlt.cnn", out=tmp_path / "a", config=config, data=mnist,
                           limit_train=150, limit_test=50, plots=False)
    seen = Recorder()
    watched = run_experiment("models/dlt.cnn", out=tmp_path / "b", config=config, data=mnist,
                             limit_train=150, limit_test=50, plots=False, observers=[seen])
    for name in plain.params:
        assert np.array_equal(plain.params[name], watched.params[name])
    kinds = [c[0] for c in seen.calls]
    assert kinds == ["start"] + ["step"] * 3 + ["epoch"] + ["step"] * 3 + ["epoch", "end"]
    steps = [c[1] for c in seen.calls if c[0] == "step"]
    assert [e.global_step for e in steps] == [1, 2, 3, 4, 5, 6]
    assert [(e.epoch, e.step, e.steps) for e in steps[:3]] == [(0, 1, 3), (0, 2, 3), (0, 3, 3)]
    # each step's 'before' is the previous step's 'after'; the first's, the start's
    start = seen.calls[0][2]
    for name in start:
        assert np.array_equal(steps[0].params_before[name], start[name])
    for earlier, later in zip(steps, steps[1:]):
        for name in start:
            assert np.array_equal(later.params_before[name], earlier.params[name])
    for name in start:
        assert np.array_equal(steps[-1].params[name], watched.params[name])
    assert all(e.x.shape[0] == 50 and e.grads.keys() == start.keys() for e in steps)
    assert steps[0].lr == watched.metrics["config"]["lr"]
    assert seen.calls[-1] == ("end", watched.test_error)
