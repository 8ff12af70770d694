"""Training on a few hundred real MNIST images: learning, resume, determinism."""
import json

import numpy as np
import pytest

from cnngraph.cli.main import main
from cnngraph.compiler.program import compile_model
from cnngraph.core.errors import CheckpointError
from cnngraph.training.checkpoint import load_checkpoint
from cnngraph.training.idx import load_mnist
from cnngraph.training.loop import Interrupted, Trainer, learning_rate
from cnngraph.training.preprocess import make_splits

SMALL = """
input x : 1 x 28 x 28
conv C1 <- x : maps=4, kernel=5, activation=lecun_tanh
subsample S2 <- C1 : factor=4, activation=lecun_tanh
full out <- S2 : units=10
loss L <- out : function=softmax_cross_entropy
train {
  epochs = 2
  batch = 20
  lr = 0.1
  optimizer = OPTIMIZER
  seed = 3
}
"""


def small_model(optimizer="sgd(momentum=0.5)"):
    """SDLM's rate is eps in eps / (mu + h): with h small, steps are up to eps / mu."""
    text = SMALL.replace("OPTIMIZER", optimizer)
    if optimizer.startswith("sdlm"):
        text = text.replace("lr = 0.1", "lr = 0.002")
    return compile_model(text)


@pytest.fixture(scope="module")
def raw():
    from conftest import mnist_dir
    path = mnist_dir()
    if path is None:
        pytest.skip("real MNIST not found")
    return load_mnist(path)


def splits(model, raw, n=400):
    cfg = model.settings.train
    return make_splits(model, raw, 0, np.dtype(cfg.dtype), limit_train=n, limit_test=200)


def train(model, raw, out, epochs=None, stop_after=None, resume=False, n=400):
    cfg = model.settings.train
    if epochs:
        cfg = cfg.replace(epochs=epochs)
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return stop_after is not None and calls["n"] >= stop_after
    trainer = Trainer(model, cfg, out, should_stop=should_stop)
    trainer.resume() if resume else trainer.start()
    tr, _, _ = splits(model, raw, n)
    trainer.fit(tr)
    return trainer


@pytest.mark.parametrize("optimizer", ["sgd(momentum=0.5)", "sgd", "sdlm(mu=0.02, samples=100)"])
def test_loss_goes_down(raw, tmp_path, optimizer):
    model = small_model(optimizer)
    trainer = train(model, raw, tmp_path, epochs=3)
    losses = [e["train_loss"] for e in trainer.history]
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("optimizer", ["sgd(momentum=0.5)", "sdlm(mu=0.02, samples=100)"])
def test_interrupted_and_resumed_run_is_bitwise_equal(raw, tmp_path, optimizer):
    model = small_model(optimizer)
    whole = train(model, raw, tmp_path / "whole")
    for stop in (7, 20, 31):  # mid-epoch 1, end of epoch 1, mid-epoch 2
        out = tmp_path / f"stop{stop}"
        with pytest.raises(Interrupted):
            train(model, raw, out, stop_after=stop)
        resumed = train(model, raw, out, resume=True)
        for name in whole.params:
            np.testing.assert_array_equal(resumed.params[name], whole.params[name])
        drop = ("seconds", "images_per_s")
        strip = lambda h: [{k: v for k, v in e.items() if k not in drop} for e in h]
        assert strip(resumed.history) == strip(whole.history)


def test_same_seed_same_metrics(raw, tmp_path):
    model = small_model()
    a = train(model, raw, tmp_path / "a")
    b = train(model, raw, tmp_path / "b")
    assert [e["train_loss"] for e in a.history] == [e["train_loss"] for e in b.history]
    other = compile_model(SMALL.replace("OPTIMIZER", "sgd(momentum=0.5)").replace("seed = 3",
                                                                                   "seed = 4"))
    c = train(other, raw, tmp_path / "c")
    assert [e["train_loss"] for e in a.history] != [e["train_loss"] for e in c.history]


def test_checkpoint_of_another_network_is_refused(raw, tmp_path):
    train(small_model(), raw, tmp_path)
    other = compile_model(SMALL.replace("OPTIMIZER", "sgd").replace("maps=4", "maps=5"))
    with pytest.raises(CheckpointError, match="another network"):
        load_checkpoint(tmp_path / "checkpoint.npz", other.network_hash())
    # the training block is not part of the network: more epochs may resume
    longer = compile_model(SMALL.replace("OPTIMIZER", "sgd").replace("epochs = 2", "epochs = 5"))
    assert load_checkpoint(tmp_path / "checkpoint.npz", longer.network_hash()).epoch == 2


def test_piecewise_schedule():
    model = compile_model(SMALL.replace("OPTIMIZER", "sgd").replace(
        "seed = 3", "seed = 3\n  schedule = piecewise(epochs=[3, 6], lr=[0.01, 0.001])"))
    rates = [learning_rate(model.settings.train, e) for e in range(7)]
    assert rates == [0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001]


def test_run_command_writes_metrics_and_resumes(raw, tmp_path, capsys, mnist):
    path = tmp_path / "small.cnn"
    path.write_text(SMALL.replace("OPTIMIZER", "sgd"))
    out = tmp_path / "out"
    args = ["run", str(path), "--data", str(mnist), "--out", str(out), "--limit-train", "300",
            "--limit-test", "100", "--val", "100", "--quiet"]
    assert main(args + ["--epochs", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"model", "seed", "model_hash", "epochs", "test_error", "confusion"}
    epoch = metrics["epochs"][0]
    assert set(epoch) >= {"epoch", "train_loss", "train_error", "val_error", "seconds",
                          "images_per_s"}
    assert 0 <= metrics["test_error"] <= 1 and 0 <= epoch["val_error"] <= 1
    assert np.sum(metrics["confusion"]) == 100
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 2
    assert main(["eval", str(path), "--data", str(mnist), "--checkpoint",
                 str(out / "checkpoint.npz"), "--limit-test", "100"]) == 0
    assert "test error" in capsys.readouterr().out


def test_weights_warm_start_names_bad_arrays(raw, tmp_path, mnist, capsys):
    path = tmp_path / "small.cnn"
    path.write_text(SMALL.replace("OPTIMIZER", "sgd"))
    model = compile_model(path)
    params = model.init_params(0)
    base = ["run", str(path), "--data", str(mnist), "--limit-train", "100", "--limit-test",
            "50", "--epochs", "1", "--quiet", "--out", str(tmp_path / "o")]
    np.savez(tmp_path / "good.npz", **params)
    assert main(base + ["--weights", str(tmp_path / "good.npz")]) == 0
    bad = dict(params)
    del bad["C1.bias"]
    np.savez(tmp_path / "missing.npz", **bad)
    assert main(base + ["--weights", str(tmp_path / "missing.npz")]) == 2
    assert "C1.bias" in capsys.readouterr().err
    np.savez(tmp_path / "shape.npz", **dict(params, **{"out.weight": np.zeros((3, 3))}))
    assert main(base + ["--weights", str(tmp_path / "shape.npz")]) == 2
    assert "out.weight" in capsys.readouterr().err
