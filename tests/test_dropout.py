"""Dropout (rules/dropout.py): the masks' statistics and scaling, the identity outside
training steps (forward, evaluate, export), a mask that depends on (seed, epoch, step,
image) alone (threads, shards, ranks, resume, replay give the same bits), check with
one fixed mask, errors at the rate's place, and a model that learns real MNIST."""
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import MPIEXEC, ROOT, needs_mpi, needs_numba
from test_replay import _assert_replays, _train

from cnngraph import compile_model
from cnngraph.core.errors import BuildError
from cnngraph.rules.dropout import draw_mask, draw_masks
from cnngraph.tools.check_model import check_model
from cnngraph.training.checkpoint import load_checkpoint
from cnngraph.training.idx import load_mnist
from cnngraph.training.loop import Interrupted, Trainer, evaluate
from cnngraph.training.preprocess import make_splits
from cnngraph.training.step import Draw, ThreadSplit, WholeBatch, batch_gradients

MODEL = """\
input x : 1 x 28 x 28
conv C1 <- x : maps=4, kernel=5, activation=lecun_tanh
dropout D1 <- C1 : rate=0.2
subsample S2 <- D1 : factor=4, activation=lecun_tanh
full H <- S2 : units=30, activation=tanh
dropout D2 <- H
full out <- D2 : units=10
loss L <- out : function=softmax_cross_entropy
train {
  epochs = 2
  batch = 40
  lr = 0.1
  optimizer = sgd(momentum=0.5)
  seed = 3
}
"""
#: the same network without its dropout layers: the same parameters, the same outputs
PLAIN = MODEL.replace("dropout D1 <- C1 : rate=0.2\n", "").replace("dropout D2 <- H\n", "") \
    .replace("S2 <- D1", "S2 <- C1").replace("out <- D2", "out <- H")


@pytest.fixture(scope="module")
def raw():
    from conftest import mnist_dir
    path = mnist_dir()
    if path is None:
        pytest.skip("real MNIST not found (set CNNGRAPH_DATA)")
    return load_mnist(path)


def _splits(model, raw, n=320, dtype="float64"):
    return make_splits(model, raw, 0, np.dtype(dtype), limit_train=n, limit_test=200)


def test_masks_drop_rate_of_the_values_and_scale_the_rest():
    for rate in (0.1, 0.5, 0.8):
        m = draw_mask("D.mask", (8, 25, 25), rate, np.float32, 7, 1, 2, 0, 20)
        assert m.shape == (20, 8, 25, 25) and m.dtype == np.float32
        assert set(np.unique(m)) == {0.0, np.float32(1 / (1 - rate))}
        assert abs(np.mean(m == 0) - rate) < 0.005          # 100 000 values
        assert abs(m.mean(dtype=np.float64) - 1) < 0.02      # inverted: E[m] = 1
    assert np.all(draw_mask("D.mask", (5,), 0.0, np.float64, 0, 0, 0, 0, 3) == 1)


def test_a_mask_depends_on_seed_epoch_step_image_and_layer_alone():
    whole = draw_mask("D.mask", (3, 5, 5), 0.5, np.float64, 4, 2, 9, 0, 12)
    for start, count in ((0, 5), (5, 7), (3, 1), (11, 1)):
        part = draw_mask("D.mask", (3, 5, 5), 0.5, np.float64, 4, 2, 9, start, count)
        assert np.array_equal(part, whole[start:start + count])
    others = [draw_mask("D.mask", (3, 5, 5), 0.5, np.float64, *key, 0, 12)
              for key in ((5, 2, 9), (4, 3, 9), (4, 2, 10))]
    others.append(draw_mask("E.mask", (3, 5, 5), 0.5, np.float64, 4, 2, 9, 0, 12))
    for other in others:
        assert np.mean(other != whole) > 0.3
    assert not np.array_equal(whole[0], whole[1])


def test_outside_training_steps_dropout_is_the_identity(raw):
    model, plain = compile_model(MODEL), compile_model(PLAIN)
    assert set(model.masks) == {"D1.mask", "D2.mask"} and not plain.masks
    params = model.init_params(1)
    _, _, test = _splits(model, raw, dtype="float32")
    x = test.images[:50]
    assert np.array_equal(model.forward(params, x), plain.forward(params, x))
    layers = model.layer_outputs(params, x)
    assert np.array_equal(layers["D1"], layers["C1"]) and np.array_equal(layers["D2"],
                                                                          layers["H"])
    assert evaluate(model, params, test)[2] == evaluate(plain, params, test)[2]
    loss, grads, _ = model.loss_and_grads(params, x, test.targets[:50])
    want, plain_grads, _ = plain.loss_and_grads(params, x, test.targets[:50])
    assert loss == want and all(np.array_equal(grads[p], plain_grads[p]) for p in grads)


def test_export_writes_no_node_for_dropout(raw):
    onnx = pytest.importorskip("onnx", reason="the onnx package is not installed")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from cnngraph.tools.export import export_onnx
    model, plain = compile_model(MODEL), compile_model(PLAIN)
    params = model.init_params(2)
    proto = export_onnx(model, params)
    assert [n.op_type for n in proto.graph.node] == \
        [n.op_type for n in export_onnx(plain, params).graph.node]
    onnx.checker.check_model(proto, full_check=True)
    x = _splits(model, raw, dtype="float32")[2].images[:20]
    got = ort.InferenceSession(proto.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, model.forward(params, x), rtol=0, atol=1e-5)


def test_a_training_step_multiplies_by_the_drawn_mask(raw):
    model = compile_model(MODEL)
    params = model.init_params(1, np.float64)
    train, _, _ = _splits(model, raw, n=40)
    x, t = train.images, train.targets
    draw = Draw.for_step(model, 3, 1, 4)
    masks = draw.masks(model, len(x), x.dtype)
    nodes = {n: model.layer_nodes[n] for n in ("C1", "D1", "H", "D2")}
    _, _, values = model.loss_and_grads(params, x, t, outputs=list(nodes.values()),
                                        masks=masks)
    for source, layer in (("C1", "D1"), ("H", "D2")):
        before, after = values[nodes[source]], values[nodes[layer]]
        assert np.array_equal(after, before * masks[f"{layer}.mask"])
    dropped = values[nodes["D2"]] == 0
    assert 0.35 < dropped.mean() < 0.65
    kept = ~dropped
    np.testing.assert_allclose(values[nodes["D2"]][kept], 2 * values[nodes["H"]][kept],
                               rtol=1e-15)
    stats = batch_gradients(model, params, x, t, WholeBatch(), draw)
    assert stats.loss == model.loss_and_grads(params, x, t, masks=masks)[0]
    assert stats.loss != model.loss(params, x, t)  # the evaluated loss has no dropout


def test_check_passes_in_float64_with_one_fixed_mask(tmp_path, capsys):
    from cnngraph.cli.main import main
    model = compile_model(MODEL)
    results = check_model(model, batch=3, sample=30)
    assert results and all(r.ok for r in results), results
    path = tmp_path / "dropout.cnn"
    path.write_text(MODEL)
    assert main(["check", str(path), "--sample", "20"]) == 0


def test_the_batch_split_on_threads_draws_each_images_mask(raw):
    """Threads and shards cut the batch at the same places: the same bits; the whole
    batch on one thread differs only by the rounding of the combined slices."""
    model = compile_model(MODEL)
    params = model.init_params(1, np.float64)
    train, _, _ = _splits(model, raw, n=80)
    x, t = train.images, train.targets
    draw = Draw.for_step(model, 3, 0, 2)
    from cnngraph.training.parallel import Shards
    split = batch_gradients(model, params, x, t, ThreadSplit(2), draw)
    sharded = batch_gradients(model, params, x, t, Shards(2), draw)
    whole = batch_gradients(model, params, x, t, WholeBatch(), draw)
    other = batch_gradients(model, params, x, t, WholeBatch(), Draw.for_step(model, 3, 0, 3))
    for name in whole.grads:
        assert np.array_equal(split.grads[name], sharded.grads[name])
        np.testing.assert_allclose(split.grads[name], whole.grads[name], rtol=1e-12,
                                   atol=1e-15)
        assert not np.allclose(other.grads[name], whole.grads[name], rtol=1e-3)


def _fit(model, raw, out, workers=1, stop_after=None, resume=False, **config):
    cfg = model.settings.train.replace(dtype="float64", **config)
    calls = []
    trainer = Trainer(model, cfg, out, workers=workers,
                      should_stop=lambda: stop_after is not None and
                      (calls.append(1) or len(calls) >= stop_after))
    trainer.resume() if resume else trainer.start()
    trainer.fit(_splits(model, raw, n=320)[0])
    return trainer


def _same_params(a, b):
    assert a.params.keys() == b.params.keys()
    for name in a.params:
        assert np.array_equal(a.params[name], b.params[name]), name


def test_two_threads_train_as_two_shards_and_resume_is_bitwise(raw, tmp_path):
    model = compile_model(MODEL)
    threads = _fit(model, raw, tmp_path / "threads", workers=2, batch=80)
    _same_params(threads, _fit(model, raw, tmp_path / "shards", batch=80, shards=2))
    whole = _fit(model, raw, tmp_path / "whole")
    with pytest.raises(Interrupted):
        _fit(model, raw, tmp_path / "stop", stop_after=5)   # mid-epoch 1
    _same_params(_fit(model, raw, tmp_path / "stop", resume=True), whole)


@needs_numba
def test_numba_trains_the_same_bits_on_one_thread_and_two(raw, tmp_path):
    model = compile_model(MODEL, backend="numba")
    one = _fit(model, raw, tmp_path / "one", workers=1, epochs=1)
    _same_params(one, _fit(model, raw, tmp_path / "two", workers=2, epochs=1))


def test_replay_gives_the_steps_training_took(tmp_path, mnist):
    path = tmp_path / "dropout.cnn"
    path.write_text(MODEL)
    seen = _train(tmp_path / "run", mnist, model=str(path), limit=160, every=3)
    _assert_replays(tmp_path / "run", seen)


@needs_mpi
def test_two_ranks_train_as_one_process_with_the_same_shards(tmp_path, mnist):
    path = tmp_path / "dropout.cnn"
    path.write_text(MODEL)

    def run(out, *launcher):
        done = subprocess.run(
            [*launcher, sys.executable, "-m", "cnngraph", "run", str(path), "--data",
             str(mnist), "--limit-train", "160", "--limit-test", "50", "--shards", "2",
             "--no-plots", "--quiet", "--out", str(tmp_path / out)],
            capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        return load_checkpoint(tmp_path / out / "checkpoint.npz").params
    one, two = run("one"), run("two", MPIEXEC, "-n", "2")
    assert all(np.array_equal(one[name], two[name]) for name in one)


def test_masks_of_every_layer_come_from_the_graph():
    model = compile_model(MODEL)
    masks = draw_masks(model.graph, 3, 0, 0, 0, 4, np.float32)
    assert {k: v.shape for k, v in masks.items()} == {"D1.mask": (4, 4, 24, 24),
                                                      "D2.mask": (4, 30)}
    assert np.all(masks["D1.mask"][masks["D1.mask"] != 0] == np.float32(1.25))


@pytest.mark.parametrize("rate,message", [
    ("1", "from 0 up to (not including) 1"),
    ("-0.1", "from 0 up to (not including) 1"),
    ("1.5", "from 0 up to (not including) 1"),
    ("high", "got"),
])
def test_a_rate_outside_0_to_1_is_an_error_at_its_place(rate, message):
    text = MODEL.replace("rate=0.2", f"rate={rate}")
    with pytest.raises(BuildError, match=re.escape(message)) as caught:
        compile_model(text)
    span = caught.value.span
    assert (span.line, span.column) == (3, text.splitlines()[2].index("rate=") + 6)


def test_a_small_model_with_dropout_learns_real_mnist(raw, tmp_path):
    model = compile_model(MODEL)
    trainer = _fit(model, raw, tmp_path, epochs=3)
    losses = [e["train_loss"] for e in trainer.history]
    assert losses[-1] < 0.8 * losses[0], losses
    error = evaluate(model, trainer.params, _splits(model, raw)[2])[0]
    assert error < 0.5, error
