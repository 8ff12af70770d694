"""Layer and batch normalisation: gradients through the statistics in float64, the
shard statistics and running statistics of batch norm (threads, shards, MPI ranks,
resume), evaluation and export with the running statistics, errors at line:col."""
import numpy as np
import pytest
from conftest import needs_mpi
from test_mpi import _params, _run, _same_bits
from test_train import raw, splits, train  # noqa: F401  (raw: a fixture)

from cnngraph.compiler.program import compile_model
from cnngraph.core.errors import BuildError
from cnngraph.rules.norm import batch_moments, statistics
from cnngraph.tools.check_model import check_model
from cnngraph.training.parallel import Shards
from cnngraph.training.step import WHOLE_BATCH, Optimizer, ThreadSplit, train_step

BATCH = """\
input x : 1 x 28 x 28
conv C1 <- x : maps=4, kernel=5, bias=none               # 4 x 24x24
norm N1 <- C1 : kind=batch, momentum=0.2, activation=relu
pool P <- N1 : kind=max, size=4                          # 4 x 6x6
full H <- P : units=12, bias=none
norm N2 <- H : kind=batch, activation=tanh
full out <- N2 : units=10
loss L <- out : function=softmax_cross_entropy
train {
  epochs = 2
  batch = 20
  lr = 0.05
  optimizer = sgd(momentum=0.5, weight_decay=0.001)
  seed = 3
}
"""

LAYER = """\
input x : 1 x 8 x 8
conv C1 <- x : maps=3, kernel=3                          # 3 x 6x6
norm N1 <- C1 : kind=layer, activation=tanh
full H <- N1 : units=5
norm N2 <- H : kind=layer, bias=none, eps=1e-3, activation=sigmoid
full out <- N2 : units=3
loss L <- out : function=squared_error
"""


def _data(n, rng, shape=(1, 28, 28), classes=10):
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    return x, np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)]


def _steps(model, reduce, count=3, seed=0):
    rng = np.random.default_rng(seed)
    params = model.init_params(1)
    optimizer = Optimizer.for_model(model, model.settings.train.optimizer)
    state = optimizer.start(params)
    for _ in range(count):
        params, state, stats = train_step(model, params, state, _data(100, rng), optimizer,
                                          0.05, reduce)
    return params, state


@pytest.mark.parametrize("text", [LAYER, BATCH.replace("28 x 28", "12 x 12")
                                  .replace("size=4 ", "size=2 ")])
def test_check_passes_in_float64_through_the_statistics(text):
    model = compile_model(text.replace("relu", "tanh"), backend="numpy")
    results = check_model(model, batch=3)
    assert results and all(r.ok for r in results), [(r.name, r.error) for r in results
                                                    if not r.ok]
    checked = {r.name for r in results if r.checked}
    assert "N1.scale" in checked and "x" in checked


def test_running_statistics_follow_the_shards_as_pytorch_does():
    """After one step: running = (1 − m)·start + m·(the shards' statistics weighted by
    shard size), the variance unbiased per shard."""
    model = compile_model(BATCH)
    rng = np.random.default_rng(0)
    x, t = _data(10, rng)
    params = model.init_params(1)
    optimizer = Optimizer.for_model(model, ("sgd", {}))
    new, _, _ = train_step(model, params, optimizer.start(params), (x, t), optimizer, 0.1,
                           Shards(2))
    c1 = model.layer_outputs(params, x)["C1"]  # before any norm: the same in both modes
    means, variances = zip(*(batch_moments(c1[s:s + 5]) for s in (0, 5)))
    np.testing.assert_allclose(new["N1.running_mean"], 0.2 * (means[0] + means[1]) / 2,
                               rtol=1e-5)
    np.testing.assert_allclose(new["N1.running_var"], 0.8 + 0.2 * (variances[0] + variances[1])
                               / 2, rtol=1e-5)
    pieces = [c1[s:s + 5] for s in (0, 5)]
    unbiased = [p.var(axis=(0, 2, 3), ddof=1) for p in pieces]
    np.testing.assert_allclose(variances, unbiased, rtol=1e-5)
    assert not np.array_equal(new["N1.scale"], params["N1.scale"])  # trained
    assert new["N1.running_mean"].dtype == np.float32


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_threads_never_change_the_statistics(backend):
    """NumPy's thread split does not split a model with batch norm; numba's kernels sum
    each map in one order on any thread count."""
    model = compile_model(BATCH, backend=backend)
    (params, state), (split, split_state) = (_steps(model, WHOLE_BATCH),
                                             _steps(model, ThreadSplit(2, min_split=10)))
    for name in params:
        assert np.array_equal(params[name], split[name]), name
        assert np.array_equal(state["velocity"][name], split_state["velocity"][name]), name


def test_numba_kernels_are_bitwise_on_1_and_2_threads(restored_threads):
    pytest.importorskip("numba")
    from cnngraph.runtime import numba_backend
    kernels = numba_backend.KERNELS
    rng = np.random.default_rng(2)
    x = rng.normal(size=(37, 5, 9, 7)).astype(np.float32)
    delta = rng.normal(size=x.shape).astype(np.float32)
    stats = np.zeros(5, np.float32), np.ones(5, np.float32)
    runs = []
    for threads in (1, 2):
        numba_backend.set_threads(threads)
        runs.append((kernels["norm_batch"].run(x, *stats, eps=1e-5),
                     kernels["norm_batch_grad"].run(x, delta, eps=1e-5)))
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


def test_shards_normalise_each_piece_alone():
    """Two shards train otherwise than the whole batch: each normalises with its own
    statistics, so the shards are part of what defines the run."""
    model = compile_model(BATCH)
    whole, two = _steps(model, WHOLE_BATCH, 1), _steps(model, Shards(2), 1)
    assert not np.allclose(whole[0]["N1.scale"], two[0]["N1.scale"], rtol=0, atol=1e-9)


def test_evaluation_uses_the_running_statistics():
    """forward (eval, export, the explorer's maps) normalises with the running mean and
    variance; set to a batch's own (biased) statistics it equals training mode."""
    model = compile_model(BATCH, backend="numpy")
    rng = np.random.default_rng(1)
    x, t = _data(16, rng)
    params = model.init_params(1, np.float64)
    x = x.astype(np.float64)
    _, _, values = model.loss_and_grads(params, x, t.astype(np.float64))
    training = values[model.roles.prediction]
    assert not np.allclose(model.forward(params, x), training)
    c1 = model.layer_outputs(params, x)["C1"]
    mean, s = statistics(c1, "batch", 1e-5)
    params["N1.running_mean"], params["N1.running_var"] = mean.ravel(), s.ravel() ** 2 - 1e-5
    h = model.layer_outputs(params, x)["H"]
    mean, s = statistics(h, "batch", 1e-5)
    params["N2.running_mean"], params["N2.running_var"] = mean.ravel(), s.ravel() ** 2 - 1e-5
    np.testing.assert_allclose(model.forward(params, x), training, rtol=1e-9, atol=1e-12)


def test_export_writes_batch_normalization_with_the_running_statistics():
    ort = pytest.importorskip("onnxruntime")
    from cnngraph.tools.export import export_onnx
    model = compile_model(BATCH + "preprocess {\n  pixels = range(lo=0, hi=1)\n}\n")
    rng = np.random.default_rng(3)
    params, _ = _steps(model, WHOLE_BATCH, 2)
    proto = export_onnx(model, params, pixels=(1.0, 0.0))
    assert [n.op_type for n in proto.graph.node].count("BatchNormalization") == 2
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.uniform(0, 1, size=(5, 1, 28, 28)).astype(np.float32)
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, model.forward(params, x), rtol=1e-4, atol=1e-5)


def test_layer_norm_learns_and_exports():
    ort = pytest.importorskip("onnxruntime")
    from cnngraph.tools.export import export_onnx
    model = compile_model(LAYER)
    rng = np.random.default_rng(4)
    params = model.init_params(0)
    optimizer = Optimizer.for_model(model, ("sgd", {"momentum": 0.9}))
    state, x = optimizer.start(params), rng.normal(size=(40, 1, 8, 8)).astype(np.float32)
    t = np.eye(3, dtype=np.float32)[(x.sum(axis=(1, 2, 3)) > 0).astype(int) * 2]
    first = model.loss(params, x, t)
    for _ in range(60):
        params, state, _ = train_step(model, params, state, (x, t), optimizer, 0.5)
    assert model.loss(params, x, t) < 0.5 * first
    assert "N2.shift" not in params and "N1.running_mean" not in params
    proto = export_onnx(model, params, pixels=(1.0, 0.0))
    assert [n.op_type for n in proto.graph.node].count("LayerNormalization") == 2
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x[:4]})[0]
    np.testing.assert_allclose(got, model.forward(params, x[:4]), rtol=1e-4, atol=1e-5)


def test_resume_is_bitwise_with_the_running_statistics(raw, tmp_path):  # noqa: F811
    model = compile_model(BATCH.replace("epochs = 2", "epochs = 1").replace("seed = 3",
                                                                              "seed = 3\n  shards = 2"))
    whole = train(model, raw, tmp_path / "whole", n=200)
    try:
        train(model, raw, tmp_path / "cut", stop_after=4, n=200)
    except Exception as e:  # Interrupted
        assert "stopped" in str(e)
    resumed = train(model, raw, tmp_path / "cut", resume=True, n=200)
    for name in whole.params:
        np.testing.assert_array_equal(resumed.params[name], whole.params[name])
    assert not np.array_equal(whole.params["N1.running_var"], np.ones(4, np.float32))


@needs_mpi
def test_two_ranks_give_the_bits_of_one_process_with_the_same_shards(tmp_path, mnist):
    (tmp_path / "norm.cnn").write_text(BATCH.replace("batch = 20", "batch = 30"))
    one = _run(tmp_path, mnist, "one", None, "--shards", "2", model="norm.cnn")
    two = _run(tmp_path, mnist, "two", 2, "--shards", "2", model="norm.cnn")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    _same_bits(_params(tmp_path, "one"), _params(tmp_path, "two"))


@pytest.mark.parametrize("line, column, message", [
    ("norm N <- C : kind=layer, momentum=0.2", 36, "momentum sets how batch norm"),
    ("norm N <- C : kind=batch, eps=0", 31, "expects a number > 0"),
    ("norm N <- C : kind=batch, momentum=1.5", 36, "expects a number <= 1"),
    ("norm N <- C : kind=group", 20, "expects one of layer, batch"),
])
def test_bad_options_are_errors_at_line_col(line, column, message):
    text = ("input x : 1 x 6 x 6\nconv C <- x : maps=2, kernel=3\n# a norm\n" + line +
            "\nfull out <- N : units=2\nloss L <- out : function=squared_error\n")
    with pytest.raises(BuildError) as e:
        compile_model(text)
    assert message in str(e.value)
    assert (e.value.span.line, e.value.span.column) == (4, column), e.value.span


def test_the_allreduce_mode_sums_the_statistics_too():
    model = compile_model(BATCH)
    (ordered, _), (summed, _) = (_steps(model, Shards(2), 2),
                                 _steps(model, Shards(2, mode="allreduce"), 2))
    for name in ("N1.running_mean", "N1.running_var", "N2.running_var", "N1.scale"):
        np.testing.assert_allclose(summed[name], ordered[name], rtol=1e-5, atol=1e-7)
    assert not np.array_equal(ordered["N2.running_var"], np.ones(12, np.float32))


def test_replay_repeats_the_running_statistics_bitwise(tmp_path, mnist):
    """A run with batch norm on two shards, its last step replayed from the snapshots:
    the parameters after it, running statistics included, are the checkpoint's."""
    from cnngraph.cli.main import main
    from cnngraph.training.checkpoint import load_checkpoint
    from cnngraph.training.replay import load_run, replay_positions
    (tmp_path / "norm.cnn").write_text(BATCH.replace("epochs = 2", "epochs = 1")
                                       .replace("seed = 3", "seed = 3\n  shards = 2"))
    assert main(["run", str(tmp_path / "norm.cnn"), "--data", str(mnist), "--limit-train",
                 "100", "--limit-test", "50", "--no-plots", "--quiet", "--out",
                 str(tmp_path / "run")]) == 0
    record = load_run(tmp_path / "run")
    (replayed,) = replay_positions(record, [record.positions[-1]])
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.npz").params
    for name, value in saved.items():
        assert np.array_equal(replayed.event.params[name], value), name
