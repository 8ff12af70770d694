"""run_experiment, the library behind `run`: files, events, pictures, interruption.
Random 8x8 images stand in for MNIST, so nothing here needs the data set."""
import dataclasses
import json

import numpy as np
import pytest

from cnngraph.compiler.program import compile_model
from cnngraph.core.errors import CheckpointError, UsageError
from cnngraph.tools import plots
from cnngraph.tools.experiment import (
    ConnectionsExported,
    Evaluated,
    PicturesWritten,
    Started,
    run_experiment,
)
from cnngraph.training.loop import Interrupted, Progress
from cnngraph.training.preprocess import Split, one_of_c

NET = """
input x : 1 x 8 x 8
conv C1 <- x : maps=3, kernel=3, activation=lecun_tanh
LEARNED
full out <- TOP : units=3
loss L <- out : function=softmax_cross_entropy
train {
  epochs = 2
  batch = 10
  lr = 0.1
  optimizer = sgd
  seed = 3
}
"""
C2 = "conv C2 <- C1 : maps=4, kernel=3, activation=lecun_tanh, connect=learned(penalty=entropy)"


def model(learned=False):
    return compile_model(NET.replace("LEARNED", C2 if learned else "")
                         .replace("TOP", "C2" if learned else "C1"))


def split(model, n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    dtype = np.dtype(model.settings.train.dtype)
    images = (rng.normal(size=(n, 1, 8, 8)) + labels[:, None, None, None]).astype(dtype)
    return Split(images, labels, one_of_c(labels, 3, model.target_coding, dtype))


def data(model):
    return split(model, 60, 0), split(model, 20, 1), split(model, 30, 2)


def run(model, out, config=None, **kw):
    train, validation, test = data(model)
    return run_experiment(model, train, validation, test, config, out, **kw)


def test_writes_metrics_and_checkpoint_reports_events_and_prints_nothing(tmp_path, capsys):
    events = []
    result = run(model(), tmp_path, plots=False, report=events.append)
    assert capsys.readouterr() == ("", "")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    assert metrics["test_error"] == result.test_error and 0 <= result.test_error <= 1
    assert result.confusion.sum() == 30 and metrics["confusion"] == result.confusion.tolist()
    assert result.written == [tmp_path / "metrics.json", tmp_path / "checkpoint.npz"]
    assert result.pictures == [] and result.connections == {}
    assert list(tmp_path.glob("*.png")) == []
    kinds = [type(e).__name__ for e in events if not isinstance(e, Progress)]
    assert kinds == ["Started", "dict", "dict", "Evaluated", "PicturesWritten"]
    assert isinstance(events[0], Started)
    started, evaluated = events[0], next(e for e in events if isinstance(e, Evaluated))
    assert (started.images, started.validation, started.resumed) == (60, 20, False)
    assert (evaluated.images, evaluated.error, evaluated.metrics) == (30, result.test_error,
                                                             tmp_path / "metrics.json")


def test_config_overrides_the_train_block_and_is_recorded(tmp_path):
    m = model()
    cfg = dataclasses.replace(m.settings.train, epochs=1, shuffle=False, seed=7)
    result = run(m, tmp_path, config=cfg, plots=False)
    assert len(result.metrics["epochs"]) == 1
    assert result.metrics["seed"] == 7 and result.metrics["config"]["shuffle"] is False


def test_default_draws_every_picture_when_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    events = []
    result = run(model(learned=True), tmp_path, report=events.append)
    names = {"learning_curves.png", "confusion.png", "feature_maps.png", "kernels.png",
             "layer_stats.png"}
    assert {p.name for p in result.pictures} == names
    assert {p.name for p in tmp_path.glob("*.png")} == names | {"alpha.png"}
    assert set(result.written) == {tmp_path / n for n in names | {
        "alpha.png", "metrics.json", "checkpoint.npz", "connections.json", "connections.cnn"}}
    exported = next(e for e in events if isinstance(e, ConnectionsExported))
    assert not exported.no_matplotlib and list(exported.found) == ["C2"]
    assert events[-1] == PicturesWritten(result.pictures)


def test_no_plots_never_draws_but_still_exports_connections(tmp_path):
    result = run(model(learned=True), tmp_path, plots=False, threshold=0.2)
    assert list(tmp_path.glob("*.png")) == [] and result.pictures == []
    assert list(result.connections) == ["C2"]
    text = (tmp_path / "connections.cnn").read_text()
    assert text.startswith("# learned connectivity, strength >= 0.2\ntable C2_learned {")
    assert json.loads((tmp_path / "connections.json").read_text())["C2"]["table"] \
        == result.connections["C2"]["table"]


def test_plots_without_matplotlib_fail_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)
    events = []
    with pytest.raises(UsageError, match="pictures need matplotlib"):
        run(model(), tmp_path / "out", plots=True, report=events.append)
    assert events == [] and not (tmp_path / "out").exists()


def test_default_without_matplotlib_draws_nothing_and_says_so_only_for_alpha(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)
    events = []
    result = run(model(learned=True), tmp_path, report=events.append)
    assert result.pictures == [] and list(tmp_path.glob("*.png")) == []
    exported, = [e for e in events if isinstance(e, ConnectionsExported)]
    assert exported.no_matplotlib  # the CLI's note that alpha.png is missing
    events.clear()
    run(model(learned=True), tmp_path / "none", plots=False, report=events.append)
    exported, = [e for e in events if isinstance(e, ConnectionsExported)]
    assert not exported.no_matplotlib


def test_stop_saves_checkpoint_and_metrics_and_resume_ends_where_a_whole_run_does(tmp_path):
    whole = run(model(), tmp_path / "whole", plots=False)
    steps = {"n": 0}

    def after_four_steps():
        steps["n"] += 1
        return steps["n"] >= 4
    with pytest.raises(Interrupted):
        run(model(), tmp_path / "cut", plots=False, should_stop=after_four_steps)
    metrics = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert metrics["test_error"] is None and metrics["epochs"] == []
    events = []
    resumed = run(model(), tmp_path / "cut", plots=False, resume=True, report=events.append)
    assert events[0].resumed
    assert resumed.test_error == whole.test_error
    assert all(np.array_equal(resumed.params[k], whole.params[k]) for k in whole.params)


def test_weights_as_arrays_or_a_file(tmp_path):
    m = model()
    start = m.init_params(11, np.dtype(m.settings.train.dtype))
    np.savez(tmp_path / "start.npz", **start)
    given = run(m, tmp_path / "a", plots=False, weights=start)
    read = run(m, tmp_path / "b", plots=False, weights=tmp_path / "start.npz")
    seeded = run(m, tmp_path / "c", plots=False)
    assert all(np.array_equal(given.params[k], read.params[k]) for k in start)
    assert any(not np.array_equal(given.params[k], seeded.params[k]) for k in start)
    with pytest.raises(CheckpointError, match="cannot read weights"):
        run(m, tmp_path / "d", plots=False, weights=str(tmp_path / "missing.npz"))
