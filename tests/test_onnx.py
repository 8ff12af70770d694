"""Exporting to ONNX: every shipped model (and the plugin example), exported in
float32 and run in onnxruntime on the real MNIST test set, gives cnngraph's own
outputs; every lowering agrees with its op's reference; ops without a lowering and
bad checkpoints are refused with located messages."""
import dataclasses
import math
import os

import numpy as np
import pytest
from conftest import MODELS, ROOT, fresh_checkpoint, mnist_dir

from cnngraph import CnnError, Example, compile_model, default_registry
from cnngraph.cli.main import main
from cnngraph.core.errors import RuleError, format_error
from cnngraph.core.plugins import load_plugin
from cnngraph.core.registry import draw_example, example_ranks
from cnngraph.core.vjp import add_vjp_op
from cnngraph.tools.export import OnnxGraph, export_onnx, pixel_scale_offset, save_onnx
from cnngraph.training.checkpoint import save_checkpoint
from cnngraph.training.idx import load_mnist
from cnngraph.training.preprocess import make_splits
from cnngraph.training.step import Optimizer, train_step

onnx = pytest.importorskip("onnx", reason="the onnx package is not installed "
                                          "(pip install 'cnngraph[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed "
                                                "(pip install 'cnngraph[onnx]')")

PLUGINS = [str(ROOT / "examples" / "maxpool.py"), str(ROOT / "examples" / "relu.py")]
EXPORTED = MODELS + [ROOT / "examples" / "maxpool.cnn"]
TRAIN = 2000      # training images: the pixel statistics of standardize, a few steps
CHUNK = 1000      # images per forward call (keeps im2col buffers small)


def registry_for(path):
    registry = default_registry()
    if path.parent.name == "examples":
        for plugin in PLUGINS:
            load_plugin(plugin, registry)
    return registry


def session(proto):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # training runs share the machine
    options.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def in_chunks(run, x):
    return np.concatenate([run(x[i:i + CHUNK]) for i in range(0, len(x), CHUNK)])


@pytest.fixture(scope="module")
def mnist_data():
    path = mnist_dir()
    if path is None:
        pytest.skip("real MNIST not found (set CNNGRAPH_DATA)")
    return load_mnist(path)


def trained(model, train, steps=8, batch=32):
    """Parameters after a few SGD steps from the initial ones: kernels and biases
    that are not the initialiser's."""
    params = model.init_params(seed=1, dtype=np.float32)
    optimizer = Optimizer.for_model(model, ("sgd", {"momentum": 0.9}))
    state = optimizer.start(params)
    lr = min(model.settings.train.lr, 0.05)
    for step in range(steps):
        rows = slice(step * batch, (step + 1) * batch)
        params, state, _ = train_step(model, params, state,
                                      (train.images[rows], train.targets[rows]), optimizer, lr)
    return params


@pytest.mark.parametrize("path", EXPORTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_export_runs_in_onnxruntime_as_in_cnngraph(path, mnist_data):
    """On all 10 000 test images: relative error at most 1e-5 of the output's largest
    magnitude, the same argmax everywhere; the metadata's preprocessing rebuilds
    the images the model read."""
    from threadpoolctl import threadpool_limits
    model = compile_model(path, registry_for(path))
    train, _, test = make_splits(model, mnist_data, 0, np.float32, limit_train=TRAIN)
    pixels = pixel_scale_offset(model, mnist_data.train_images[:TRAIN])
    with threadpool_limits(1, user_api="blas"):
        params = trained(model, train)
        proto = export_onnx(model, params, pixels=pixels)
        onnx.checker.check_model(proto, full_check=True)
        run = session(proto)
        (inp,), (out,) = run.get_inputs(), run.get_outputs()
        assert (inp.name, out.name) == (model.network.input, "out")
        got = in_chunks(lambda x: run.run(None, {inp.name: x})[0], test.images)
        want = in_chunks(lambda x: model.forward(params, x), test.images)
    assert got.dtype == np.float32 and got.shape == want.shape == (10_000, 10)
    error = np.abs(got - want).max() / np.abs(want).max()
    assert error <= 1e-5, f"{path.name}: relative error {error:.2e}"
    assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))

    props = {p.key: p.value for p in proto.metadata_props}
    assert props["cnngraph.model_file"] == path.name
    assert props["cnngraph.network_hash"] == model.network_hash()
    scale = float(props["cnngraph.preprocess.pixel_scale"])
    offset = float(props["cnngraph.preprocess.pixel_offset"])
    pad = int(props["cnngraph.preprocess.pad"])
    rank = len(model.input_shape) - 1     # rows1d reads each image as 28 maps of 28
    raw = mnist_data.test_images[:50].astype(np.float32) * np.float32(scale) + np.float32(offset)
    raw = raw.reshape(50, -1, *raw.shape[-rank:])
    rebuilt = np.pad(raw, [(0, 0), (0, 0)] + [(pad, pad)] * rank, constant_values=offset)
    np.testing.assert_allclose(rebuilt, test.images[:50], rtol=0, atol=1e-6)


def test_learned_combination_unfolded_matches_folded():
    """fold_constants=False writes softmax_rows and the mixing reshape as ONNX ops
    (alpha computed in the graph); both exports give cnngraph's outputs."""
    model = compile_model(ROOT / "models" / "learned_c3.cnn")
    params = model.init_params(seed=2, dtype=np.float32)
    params["C3.c"] = np.random.default_rng(3).normal(size=params["C3.c"].shape) \
        .astype(np.float32)  # alpha far from uniform
    x = np.random.default_rng(4).uniform(-0.1, 1.175, (64, *model.input_shape)) \
        .astype(np.float32)
    want = model.forward(params, x)
    ops = {}
    for fold in (True, False):
        proto = export_onnx(model, params, fold_constants=fold)
        ops[fold] = [n.op_type for n in proto.graph.node]
        got = session(proto).run(None, {"x": x})[0]
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    assert "Softmax" in ops[False] and "Softmax" not in ops[True]
    assert {i.name for i in export_onnx(model, params).graph.initializer}.isdisjoint({"C3.c"})


def _lowered_ops():
    registry = default_registry()
    for plugin in PLUGINS:
        load_plugin(plugin, registry)
    return registry, sorted(op for op, rule in registry.ops.items() if rule.lowering)


REGISTRY, LOWERED = _lowered_ops()


CASES = [(op, rank) for op in LOWERED for rank in (None, *example_ranks(REGISTRY.op(op)))]


@pytest.mark.parametrize("known", [False, True], ids=["inputs", "constants"])
@pytest.mark.parametrize("op,rank", CASES,
                         ids=[op + (f"-{rank}d" if rank else "") for op, rank in CASES])
def test_every_lowering_agrees_with_its_reference(op, rank, known):
    """Each op's example (and its 1-D and 3-D forms, where it has them) through its
    lowering and onnxruntime, against the op's reference in float32: with its
    operands as graph inputs, and as constants (what a lowering may fold, as a
    masked kernel)."""
    rule = REGISTRY.op(op)
    example = draw_example(rule, np.random.default_rng(0), rank)
    inputs = [np.asarray(a, np.float32) for a in example.inputs]
    want = rule.reference(*[a.copy() for a in inputs], **example.attrs)
    graph = OnnxGraph()
    names = [graph.add_constant(f"in{i}", a) if known else graph.add_input(f"in{i}", a.shape)
             for i, a in enumerate(inputs)]
    out = graph.lower(REGISTRY.lowering(op), "y", op, names, example.attrs, want.shape)
    proto = graph.model(op, [graph.name_output(out, "y")])
    feeds = {} if known else {f"in{i}": a for i, a in enumerate(inputs)}
    got = session(proto).run(None, feeds)[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(want).max()))


def test_an_op_without_a_lowering_is_refused_at_its_layer():
    registry = default_registry()
    add_vjp_op(registry, "cube", ("u",), lambda u: u, lambda u: u ** 3,
               lambda u, d: (3 * u ** 2 * d,),
               lambda rng: Example((rng.normal(size=(2, 3)),)),
               curvature_vjp=lambda u, h: (9 * u ** 4 * h,), traits=frozenset({"elementwise"}))
    text = ("input x : 1 x 6 x 6\n"
            "full H <- x : units=4, activation=cube\n"
            "full out <- H : units=3\n"
            "loss L <- out : function=squared_error\n")
    model = compile_model(text, registry)
    with pytest.raises(RuleError) as caught:
        export_onnx(model, model.init_params())
    message = format_error(caught.value)
    assert "op 'cube' has no ONNX lowering" in message and "layer 'H'" in message
    assert ":2:" in message and "give the OpRule of 'cube' lowering=FUNCTION" in message


def test_a_lowering_is_part_of_its_rule():
    registry = default_registry()
    add = registry.op("add")
    assert registry.lowering("add") is add.lowering
    with pytest.raises(RuleError, match="unknown op 'nope'"):
        registry.lowering("nope")
    with pytest.raises(RuleError, match="required positional"):
        registry.add_op(dataclasses.replace(add, name="plus", lowering=lambda a, b: a))
    registry.add_op(dataclasses.replace(add, name="plus", lowering=None, traits=frozenset()))
    with pytest.raises(RuleError, match="op 'plus' has no lowering to onnx"):
        registry.lowering("plus")


def _checkpoint(model, path):
    save_checkpoint(path, fresh_checkpoint(model.network_hash(), model.init_params(seed=0)))
    return path


def test_cli_writes_a_checked_file(tmp_path, capsys):
    model = compile_model(ROOT / "models" / "dlt.cnn")
    ckpt = _checkpoint(model, tmp_path / "checkpoint.npz")
    out = tmp_path / "onnx" / "dlt.onnx"
    assert main(["export", str(ROOT / "models" / "dlt.cnn"), "--checkpoint", str(ckpt),
                 "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    onnx.checker.check_model(str(out), full_check=True)
    loaded = onnx.load(str(out))
    props = {p.key: p.value for p in loaded.metadata_props}
    assert props["cnngraph.checkpoint"] == "checkpoint.npz"
    assert props["cnngraph.preprocess.pixels"] == "range(0, 1)"
    assert os.listdir(out.parent) == ["dlt.onnx"]  # no temporary left
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    params = {k: v.astype(np.float32) for k, v in model.init_params(seed=0).items()}
    got = session(loaded).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, model.forward(params, x), rtol=1e-5, atol=1e-6)


def test_cli_refuses_a_bad_checkpoint_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "model.onnx"
    code = main(["export", str(ROOT / "models" / "dlt.cnn"), "--checkpoint", str(bad),
                 "-o", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}: error:") and "Traceback" not in err
    other = _checkpoint(compile_model(ROOT / "models" / "mlp.cnn"), tmp_path / "mlp.npz")
    assert main(["export", str(ROOT / "models" / "dlt.cnn"), "--checkpoint", str(other),
                 "-o", str(out)]) == 2
    assert "made for another network" in capsys.readouterr().err
    assert not out.exists()


def test_save_is_atomic_and_reports_unwritable_paths(tmp_path):
    model = compile_model(ROOT / "models" / "mlp.cnn")
    proto = export_onnx(model, model.init_params(), pixels=(1 / 255, 0.0))
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    save_onnx(proto, target)
    assert onnx.load(str(target)).graph.output[0].name == "out"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]
    (tmp_path / "file").write_text("")
    with pytest.raises(CnnError, match="cannot write the ONNX file"):
        save_onnx(proto, tmp_path / "file" / "m.onnx")


def test_standardize_needs_its_pixel_statistics():
    model = compile_model(ROOT / "models" / "mlp.cnn")
    with pytest.raises(CnnError, match="standardizes its pixels"):
        export_onnx(model, model.init_params())
    assert math.isclose(pixel_scale_offset(compile_model(ROOT / "models" / "lenet5.cnn"))[0],
                        1.275 / 255)
