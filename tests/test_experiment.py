"""run_experiment, the library behind `run`: files, events, pictures, interruption.
Random 8x8 images stand in for MNIST, so nothing here needs the data set."""
import json

import numpy as np
import pytest

from cnngraph.compiler.program import compile_model
from cnngraph.core.errors import CheckpointError, CnnError, DataError, UsageError
from cnngraph.tools import plots
from cnngraph.tools.experiment import (
    ConnectionsExported,
    Evaluated,
    PicturesWritten,
    Started,
    run_experiment,
)
from cnngraph.training.checkpoint import load_checkpoint
from cnngraph.training.loop import Interrupted, Progress, Trainer
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
    cfg = m.settings.train.replace(epochs=1, shuffle=False, seed=7)
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


def test_weights_from_a_runs_checkpoint(tmp_path):
    """A finished run's checkpoint.npz starts another (fine-tuning): its parameters,
    not its optimizer state (momentum's velocity) or epoch count; a damaged one is
    refused by name."""
    m = compile_model(NET.replace("LEARNED", "").replace("TOP", "C1")
                      .replace("optimizer = sgd", "optimizer = sgd(momentum=0.9)"))
    first = run(m, tmp_path / "a", plots=False)
    checkpoint = tmp_path / "a" / "checkpoint.npz"
    from_checkpoint = run(m, tmp_path / "b", plots=False, weights=checkpoint)
    from_arrays = run(m, tmp_path / "c", plots=False, weights=first.params)
    velocity = load_checkpoint(checkpoint).optimizer
    assert velocity and any(v.any() for v in velocity.values())
    assert all(np.array_equal(from_checkpoint.params[k], from_arrays.params[k])
               for k in first.params)
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert len(metrics["epochs"]) == m.settings.train.epochs
    (tmp_path / "bad.npz").write_bytes(checkpoint.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match="cannot read weights") as refused:
        run(m, tmp_path / "d", plots=False, weights=tmp_path / "bad.npz")
    assert refused.value.where == str(tmp_path / "bad.npz")


@pytest.mark.parametrize("which", [0, 2])
def test_splits_of_another_dtype_are_refused_before_training(tmp_path, which):
    """A float64 data set for a float32 run: said at once, naming both dtypes, not
    after an epoch when the first evaluation meets it."""
    m = model()
    splits = list(data(m))
    wide = splits[which]
    splits[which] = Split(wide.images.astype(np.float64), wide.labels,
                          wide.targets.astype(np.float64))
    events = []
    with pytest.raises(DataError, match="are float64 but the run trains in float32"):
        run_experiment(m, *splits, None, tmp_path / "out", plots=False, report=events.append)
    assert events == [] and not (tmp_path / "out").exists()
    if which == 0:  # the trainer under the entry says the same
        trainer = Trainer(m, m.settings.train)
        trainer.start()
        with pytest.raises(DataError, match="training images are float64"):
            trainer.fit(splits[0])


def test_changes_to_the_train_block_are_checked_as_flags_and_applied(tmp_path):
    m = model()
    with pytest.raises(UsageError, match="--epochs must be at least 1, got 0"):
        run(m, tmp_path / "a", config={"epochs": 0})
    with pytest.raises(UsageError, match="not colour"):
        run(m, tmp_path / "a", config={"colour": "red"})
    result = run(m, tmp_path / "b", config={"epochs": 1, "seed": 7, "lr": None}, plots=False)
    assert len(result.metrics["epochs"]) == 1 and result.metrics["seed"] == 7
    assert result.metrics["config"]["lr"] == m.settings.train.lr   # None: unchanged


def test_the_shards_are_recorded_and_a_resume_keeps_them(tmp_path):
    """Shards define the run: a resume that leaves them out continues with the
    checkpoint's (bitwise as the whole run), one that names others is refused."""
    whole = run(model(), tmp_path / "whole", config={"shards": 3}, plots=False)
    recorded = load_checkpoint(tmp_path / "whole" / "checkpoint.npz").run
    assert recorded == {"shards": 3, "batch": 10, "seed": 3, "val": 0, "lr": 0.1}
    run(model(), tmp_path / "cut", config={"shards": 3, "epochs": 1}, plots=False)
    with pytest.raises(CnnError, match=r"started with shards 3 \(the checkpoint's 'run.shards'"
                                        r"\), this one has 2: shards is part"):
        run(model(), tmp_path / "cut", config={"shards": 2}, resume=True, plots=False)
    resumed = run(model(), tmp_path / "cut", resume=True, plots=False)
    assert resumed.metrics["config"]["shards"] == 3 and len(resumed.metrics["epochs"]) == 2
    assert all(np.array_equal(resumed.params[k], whole.params[k]) for k in whole.params)


def test_a_resume_keeps_the_batch_seed_and_validation_the_run_started_with(tmp_path):
    """Flags that change a run's steps (--batch, --seed, --val, --lr) are recorded:
    a resume that leaves them out continues with them, bitwise as the whole run (the
    train block says otherwise; naming the same value is no change), and one that names
    other values is refused."""
    started = {"batch": 4, "seed": 5, "val": 6, "lr": 0.05}
    whole = run(model(), tmp_path / "whole", config={**started, "epochs": 2}, plots=False)
    assert load_checkpoint(tmp_path / "whole" / "checkpoint.npz").run == {"shards": 1,
                                                                         **started}
    run(model(), tmp_path / "cut", config={**started, "epochs": 1}, plots=False)
    for name, other in (("batch", 10), ("seed", 3), ("val", 0), ("lr", 0.1)):
        with pytest.raises(CnnError, match=f"started with {name} {started[name]} .*'run.{name}'"
                                           f".*this one has {other}: {name} is part") as refused:
            run(model(), tmp_path / "cut", config={name: other}, resume=True, plots=False)
        assert refused.value.where.endswith("checkpoint.npz")
        assert refused.value.hint.startswith(f"leave --{name} out to continue with")
    resumed = run(model(), tmp_path / "cut", config={"epochs": 2, "batch": 4}, resume=True,
                  plots=False)
    kept = {k: resumed.metrics["config"][k] for k in ("batch", "val", "lr")}
    assert kept == {"batch": 4, "val": 6, "lr": 0.05}
    assert resumed.metrics["seed"] == 5
    assert all(np.array_equal(resumed.params[k], whole.params[k]) for k in whole.params)


def test_a_model_file_and_a_data_set_are_read_as_run_reads_them(tmp_path):
    """The entry compiles a path and reads, splits and limits the data itself."""
    from cnngraph.training.datasets import load_data
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=80)
    images = (rng.uniform(0, 200, size=(80, 8, 8)) + 10 * labels[:, None, None]).astype(np.uint8)
    np.savez(tmp_path / "set.npz", x_train=images[:60], y_train=labels[:60],
             x_test=images[60:], y_test=labels[60:])
    (tmp_path / "net.cnn").write_text(NET.replace("LEARNED", "").replace("TOP", "C1"))
    events = []
    result = run_experiment(tmp_path / "net.cnn", out=tmp_path / "out", data=tmp_path / "set.npz",
                            config={"val": 10, "epochs": 1}, limit_train=40, limit_test=15,
                            plots=False, report=events.append)
    started = events[0]
    assert (started.images, started.validation, result.confusion.sum()) == (40, 10, 15)
    again = run_experiment(tmp_path / "net.cnn", out=tmp_path / "again",
                           data=load_data(tmp_path / "set.npz"), config={"val": 10, "epochs": 1},
                           limit_train=40, limit_test=15, plots=False)
    assert all(np.array_equal(again.params[k], result.params[k]) for k in result.params)


def test_a_format_1_checkpoint_counts_as_one_shard():
    """Checkpoints written before the shards were recorded (format 1) ran one."""
    from conftest import ROOT

    from cnngraph.tools.experiment import recorded_run
    path = ROOT / "tests" / "data" / "format1" / "dlt.npz"
    assert load_checkpoint(path).run == {} and recorded_run(path).shards == 1


class _Rank:
    """One rank of a world of two whose bcast hands out ``sent`` (rank 0's value)."""

    def __init__(self, rank, sent=None):
        self.rank, self.sent, self.is_root = rank, sent, rank == 0

    def bcast(self, value):
        return value if self.is_root else self.sent


def test_root_first_reads_on_rank_0_first_and_shares_its_error():
    from cnngraph.tools.experiment import root_first
    read = []
    assert root_first(_Rank(0), lambda root: read.append(root) or "splits") == "splits"
    assert root_first(_Rank(1), lambda root: read.append(root) or "splits") == "splits"
    assert read == [True, False]  # rank 0 may fetch; the others only read

    def fails(root):
        raise DataError("MNIST data not found", where="data directory", hint="pass --data")
    with pytest.raises(DataError, match="MNIST data not found"):
        root_first(_Rank(0), fails)
    sent = (DataError, "MNIST data not found", "data directory", "pass --data")
    with pytest.raises(DataError, match="MNIST data not found") as exc:
        root_first(_Rank(1, sent), lambda root: pytest.fail("rank 1 read after rank 0 failed"))
    assert (exc.value.where, exc.value.hint) == ("data directory", "pass --data")
