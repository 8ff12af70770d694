"""TensorBoard logs (tools/tensorboard.py), read back with tensorboard's own
EventAccumulator and compared with what the run computed: the scalars with the
steps a recording observer saw, the vital signs recomputed from them, histograms,
images, the graph, a sweep's hparams; and logging changes nothing the run computes."""
import importlib.util
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cnngraph.cli.main import main
from cnngraph.compiler.program import compile_model
from cnngraph.tools.experiment import run_experiment

needs_tensorboard = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None
        for p in ("tensorboardX", "tensorboard")),
    reason="tensorboardX or tensorboard missing: pip install -e '.[test]' brings both "
           "(the logger alone: pip install -e '.[tensorboard]')")


class Recorder:
    def __init__(self):
        self.steps = []

    def on_step(self, trainer, event):
        self.steps.append(event)


def read_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder), size_guidance={
        "scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def scalars(events, tag) -> dict:
    return {e.step: e.value for e in events.Scalars(tag)}


@needs_tensorboard
def test_logged_values_are_those_of_the_run(tmp_path, mnist):
    from cnngraph.tools.tensorboard import TensorBoardLogger
    from cnngraph.training.vitals import layer_vitals
    model = compile_model("models/lenet5.cnn")
    config = {"epochs": 2, "batch": 16, "val": 32}
    seen = Recorder()
    logger = TensorBoardLogger(tmp_path / "tb", model, every=7)
    result = run_experiment(model, out=tmp_path / "run", config=config, data=mnist,
                            limit_train=160, limit_test=60, plots=False,
                            observers=[seen, logger])
    events = read_events(tmp_path / "tb")
    logged = [1, 7, 14]  # 10 steps an epoch, 20 in all
    by_step = {e.global_step: e for e in seen.steps}
    loss = scalars(events, "train/loss")
    assert sorted(loss) == logged
    windows = {1: [1], 7: range(2, 8), 14: range(8, 15)}
    for g, window in windows.items():
        batches = [by_step[k] for k in window]
        assert loss[g] == pytest.approx(np.mean([e.loss for e in batches]), rel=1e-6)
        assert scalars(events, "train/error")[g] == pytest.approx(
            sum(e.errors for e in batches) / (16 * len(batches)), rel=1e-6)
    for g in logged:
        e = by_step[g]
        for layer, entry in layer_vitals(model, e.params_before, e.params, e.grads,
                                         e.x).items():
            for key, value in entry.items():
                if value is None:
                    assert f"{key}/{layer}" not in events.Tags()["scalars"]
                else:
                    assert scalars(events, f"{key}/{layer}")[g] == pytest.approx(
                        value, rel=1e-5, abs=1e-12)
        assert scalars(events, "train/lr")[g] == pytest.approx(e.lr)
    history = result.metrics["epochs"]
    assert scalars(events, "epoch/val_error") == pytest.approx(
        {10: history[0]["val_error"], 20: history[1]["val_error"]})
    assert scalars(events, "epoch/train_loss")[20] == pytest.approx(history[1]["train_loss"])
    assert scalars(events, "test/error") == pytest.approx({20: result.test_error})
    # histograms: every parameter and its gradient, every layer's activations
    histograms = set(events.Tags()["histograms"])
    assert {f"{kind}/{p}" for p in model.param_info for kind in ("weights", "gradients")} \
        <= histograms
    assert {f"activations/{layer}" for layer in ("C1", "S2", "C3", "S4", "C5", "F6", "out")} \
        <= histograms
    last = events.Histograms("weights/C3.kernel")[-1]
    assert last.step == 14
    assert last.histogram_value.num == by_step[14].params["C3.kernel"].size
    assert last.histogram_value.max == pytest.approx(float(by_step[14].params["C3.kernel"].max()))
    # images: the first layer's kernels at the start and each epoch, feature maps, confusion
    images = events.Tags()["images"]
    assert [i.step for i in events.Images("kernels/C1.kernel")] == [0, 10, 20]
    assert {"maps/C1", "maps/S2", "maps/C3", "maps/S4", "test/confusion"} <= set(images)
    assert events.Images("test/confusion")[0].encoded_image_string.startswith(b"\x89PNG")
    # the graph: forward and backward, one node each, named pass/layer/op
    graph = events.Graph()
    assert len(graph.node) == len(model.backward_graph().graph)
    names = {n.name for n in graph.node}
    assert {"forward/C1/conv_valid", "backward/C1/conv_grad_kernel", "forward/x/x"} <= names
    # logging changed nothing the run computed
    plain = run_experiment(model, out=tmp_path / "plain", config=config, data=mnist,
                           limit_train=160, limit_test=60, plots=False)
    for name in plain.params:
        assert np.array_equal(plain.params[name], result.params[name])
    assert plain.metrics["epochs"][1]["train_loss"] == history[1]["train_loss"]


@needs_tensorboard
def test_run_flag_writes_logs_at_its_cadence(tmp_path, mnist, capsys):
    assert main(["run", "models/dlt.cnn", "--data", str(mnist), "--limit-train", "300",
                 "--limit-test", "50", "--out", str(tmp_path / "run"), "--no-plots",
                 "--quiet", "--tensorboard", str(tmp_path / "tb"), "--log-every", "4"]) == 0
    events = read_events(tmp_path / "tb")
    assert sorted(scalars(events, "train/loss")) == [1, 4]  # 6 steps of 50
    assert "saturated/C1" in events.Tags()["scalars"]       # sigmoid
    assert "saturated/S2" not in events.Tags()["scalars"]   # identity
    assert "grad_norm/S2" not in events.Tags()["scalars"]   # no parameters


@needs_tensorboard
def test_only_rank_0_writes(tmp_path):
    from cnngraph.tools.tensorboard import TensorBoardLogger
    model = compile_model("models/dlt.cnn")
    logger = TensorBoardLogger(tmp_path / "tb", model, every=1)
    other_rank = SimpleNamespace(world=SimpleNamespace(is_root=False))
    logger.on_start(other_rank, 3)
    logger.on_epoch(other_rank, {"epoch": 1})
    logger.on_end(other_rank, {"test_error": 0.5})
    assert not (tmp_path / "tb").exists()


def test_missing_tensorboardx_is_an_error_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
    code = main(["run", "models/dlt.cnn", "--out", str(tmp_path / "run"), "--quiet",
                 "--tensorboard", str(tmp_path / "tb")])
    assert code == 2
    err = capsys.readouterr().err
    assert "tensorboardX" in err and "pip install -e '.[tensorboard]'" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()


@needs_tensorboard
def test_log_every_must_be_a_number_of_steps(tmp_path, capsys):
    code = main(["run", "models/dlt.cnn", "--out", str(tmp_path / "run"), "--quiet",
                 "--tensorboard", str(tmp_path / "tb"), "--log-every", "0"])
    assert code == 2 and "--log-every must be" in capsys.readouterr().err


@needs_tensorboard
def test_a_sweep_writes_one_run_per_point_with_hparams(tmp_path, mnist):
    from tensorboard.plugins.hparams import plugin_data_pb2

    from cnngraph.tools.sweep import run_sweep
    with ThreadPoolExecutor(1) as pool:
        result = run_sweep("models/dlt.cnn", {"lr": [0.5, 1.0]}, tmp_path / "sweep",
                           data=str(mnist), limit_train=100, limit_test=50, plots=False,
                           tensorboard=tmp_path / "tb", log_every=1, executor=pool)
    assert [r["status"] for r in result.rows] == ["ok", "ok"]
    for row in result.rows:
        events = read_events(tmp_path / "tb" / row["name"])
        content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        assert start.hparams["lr"].number_value == row["lr"]
        assert start.hparams["optimizer"].string_value == "sgd"
        assert list(scalars(events, "hparam/test_error").values()) == pytest.approx(
            [row["test_error"]])


@needs_tensorboard
def test_the_train_block_names_the_logs_and_their_cadence(tmp_path, mnist, capsys):
    """`tensorboard = "DIR"` and `log_every = N` in the train block log as the flags do
    (the folder relative to the working folder, as --out); --tensorboard overrides it."""
    text = Path("models/dlt.cnn").read_text().replace(
        "train {", f'train {{\n  tensorboard = "{tmp_path / "block"}"\n  log_every = 2', 1)
    model = tmp_path / "dlt_logged.cnn"
    model.write_text(text)
    run = ["run", str(model), "--data", str(mnist), "--limit-train", "200", "--limit-test",
           "50", "--no-plots", "--snapshots", "0"]
    assert main(run + ["--out", str(tmp_path / "a")]) == 0
    assert sorted(scalars(read_events(tmp_path / "block"), "train/loss")) == [1, 2, 4]
    assert f"TensorBoard logs: {tmp_path / 'block'}" in capsys.readouterr().out
    assert main(run + ["--out", str(tmp_path / "b"), "--tensorboard", str(tmp_path / "flag"),
                       "--log-every", "3"]) == 0
    assert sorted(scalars(read_events(tmp_path / "flag"), "train/loss")) == [1, 3]
    # the Python API honours the block too
    api = tmp_path / "api.cnn"
    api.write_text(text.replace(str(tmp_path / "block"), str(tmp_path / "api")))
    run_experiment(str(api), out=tmp_path / "c", data=mnist, limit_train=100, limit_test=50,
                   plots=False, snapshots=0)
    assert sorted(scalars(read_events(tmp_path / "api"), "train/loss")) == [1, 2]
