"""--threads auto: `AutoThreads` picks one thread or all by timing steps, and never
lets a collapsing count (another process holding a core) cost more than its budget.
The clock here is simulated: a step's time is what the test says it is."""
import pytest
from conftest import needs_numba

from cnngraph.training import threads as threads_module
from cnngraph.training.threads import BUDGET, TRIAL, AutoThreads


class FakeBackend:
    def __init__(self):
        self.threads = 1

    def set_threads(self, n):
        self.threads = n


class Machine:
    """A clock, and steps whose seconds depend on the backend's thread count."""

    def __init__(self, seconds_per_step):
        self.now, self.seconds_per_step = 0.0, seconds_per_step
        self.backend = FakeBackend()
        self.used = []

    def clock(self):
        return self.now

    def step(self):
        self.used.append(self.backend.threads)
        self.now += self.seconds_per_step(self.backend.threads, len(self.used))


def run(machine, steps, images=50):
    auto = AutoThreads(machine.backend, most=2, clock=machine.clock)
    for _ in range(steps):
        auto.run(machine.step, images)
    return auto


def test_two_threads_win_on_an_idle_machine():
    machine = Machine(lambda threads, k: 0.010 if threads == 1 else 0.006)
    auto = run(machine, 200)
    assert auto.current == 2
    assert machine.used[2:2 + TRIAL] == [2] * TRIAL  # the trial right after measuring
    assert machine.used[-50:].count(2) >= 45       # one-thread trials are short


def test_a_collapsing_count_stays_within_its_budget():
    """Two threads 60x slower (another process on one core): one thread stays chosen,
    and the steps spent on trials of two cost at most about BUDGET of the time."""
    step = {1: 0.002, 2: 0.120}
    machine = Machine(lambda threads, k: step[threads])
    auto = run(machine, 20000)
    assert auto.current == 1
    trials = machine.used.count(2)
    extra = trials * (step[2] - step[1])
    assert trials >= 1 and extra <= 1.5 * BUDGET * machine.now + step[2]


def test_it_comes_back_to_two_threads_when_the_other_process_ends():
    machine = Machine(lambda threads, k: (0.120 if k < 5000 else 0.006) if threads == 2
                      else 0.010)
    auto = run(machine, 12000)
    assert auto.current == 2 and machine.used[-100:].count(2) >= 95


def test_occasional_fast_steps_of_a_collapsing_count_do_not_win():
    """Under contention two threads are sometimes fast for a step or two, then very slow:
    a trial must be fast over all its TRIAL steps."""
    machine = Machine(lambda threads, k: 0.010 if threads == 1 else
                      (0.005 if k % 3 else 0.150))
    auto = run(machine, 3000)
    assert auto.current == 1


def test_one_core_means_one_thread(monkeypatch):
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 1)  # as imported there
    machine = Machine(lambda threads, k: 0.01)
    auto = AutoThreads(machine.backend, clock=machine.clock)
    for _ in range(50):
        auto.run(machine.step, 10)
    assert set(machine.used) == {1}


@pytest.mark.parametrize("text", ["0", "-2", "two"])
def test_threads_option_says_what_it_expects(text, capsys):
    from cnngraph.cli import main
    with pytest.raises(SystemExit):
        main(["bench", "models/dlt.cnn", "--threads", text])
    assert "expected a positive whole number or auto" in capsys.readouterr().err


@needs_numba
def test_auto_threads_train_the_same_bits_as_one_thread():
    """The numba backend's bits do not depend on its thread count, so neither do auto's."""
    import numpy as np
    from conftest import ROOT

    from cnngraph import compile_model
    from cnngraph.tools.bench import synthetic_batch
    from cnngraph.training.step import Optimizer, train_step
    from cnngraph.training.threads import threads_for
    model = compile_model(ROOT / "models" / "lenet5.cnn", backend="numba")
    x, t = synthetic_batch(model, 70, np.float32, np.random.default_rng(0))
    optimizer = Optimizer.for_model(model, ("sgd", {"momentum": 0.9}))
    finals = []
    for workers in (1, "auto", 2):
        reduce = threads_for(model, workers)
        params = model.init_params(0, np.float32)
        state = optimizer.start(params)
        for _ in range(12):  # past auto's first trial of two threads
            params, state, _ = train_step(model, params, state, (x, t), optimizer, 0.01, reduce)
        finals.append(params)
    for name in finals[0]:
        assert finals[0][name].tobytes() == finals[1][name].tobytes() == \
            finals[2][name].tobytes()
