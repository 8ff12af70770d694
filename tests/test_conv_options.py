"""conv's stride, padding and dilation (issue 22): output sizes, the three ops against
direct loops, numba against the reference, gradients by finite differences, ONNX,
a few training steps on real MNIST, and nothing changed at the defaults.
(The generated checks cover the ops too: test_ops, test_backend_kernels, test_onnx,
test_explain; the errors are tests/malformed/conv_*.cnn.)"""
import math

import numpy as np
import pytest
from conftest import ROOT, needs_numba

from cnngraph import compile_model, default_registry
from cnngraph.tools.receptive import receptive_fields
from cnngraph.rules import conv_strided as cs
from cnngraph.tools.check_model import check_model
from cnngraph.tools.check_ops import verify_op
from cnngraph.tools.summary import summarize

REGISTRY = default_registry()
OPS = ("conv_strided", "conv_strided_full", "conv_strided_grad_kernel")

#: (input size, kernel, options) -> the output size per the formula
SHAPES = [
    ((28, 28), (5, 5), "stride=2", (12, 12)),
    ((29, 29), (5, 5), "stride=2", (13, 13)),
    ((28, 28), (3, 3), "padding=same", (28, 28)),
    ((28, 28), (4, 4), "padding=same", (28, 28)),
    ((28, 27), (3, 3), "padding=same, stride=2", (14, 14)),
    ((28, 28), (3, 3), "padding=1, stride=[2, 1]", (14, 28)),
    ((28, 28), (3, 3), "dilation=2", (24, 24)),
    ((28, 28), (3, 2), "dilation=[1, 3], padding=[[1, 0], [2, 2]]", (27, 29)),
    ((12, 12), (3, 3), "dilation=2, padding=same", (12, 12)),
]


def formula(size, kernel, stride, padding, dilation):
    """floor((n + before + after − d(k − 1) − 1) / s) + 1 per dimension."""
    return tuple((n + p0 + p1 - d * (k - 1) - 1) // s + 1
                 for n, k, s, (p0, p1), d in zip(size, kernel, stride, padding, dilation))


def model_with(size, kernel, options, maps=2):
    return compile_model(f"input x : 1 x {size[0]} x {size[1]}\n"
                         f"conv C <- x : maps={maps}, kernel=[{kernel[0]}, {kernel[1]}], "
                         f"{options}, activation=tanh\n"
                         "full out <- C : units=3\n"
                         "loss L <- out : function=squared_error\n")


def conv_node(model):
    graph = model.graph
    return next(graph.nodes[n] for n in graph if graph.nodes[n].get("op") == "conv_strided")


@pytest.mark.parametrize("size,kernel,options,expected", SHAPES)
def test_output_size_is_the_formula(size, kernel, options, expected):
    model = model_with(size, kernel, options)
    shape = model.graph.nodes[model.layer_nodes["C"]]["shape"][2:]
    attrs = conv_node(model)["attrs"]
    assert tuple(shape) == expected == formula(size, kernel, **{
        k: attrs[k] for k in ("stride", "padding", "dilation")})
    if "same" in options:   # TensorFlow's SAME: ceil(n / stride), the odd zero on the far side
        stride = attrs["stride"]
        assert tuple(shape) == tuple(-(-n // s) for n, s in zip(size, stride))
        assert all(p1 - p0 in (0, 1) for p0, p1 in attrs["padding"])


# the ops against direct loops ---------------------------------------------------------

GEOMETRIES = [
    {"stride": (2, 1), "padding": ((1, 0), (2, 1)), "dilation": (1, 2)},
    {"stride": (2, 2), "padding": ((0, 0), (0, 0)), "dilation": (1, 1)},
    {"stride": (1, 3), "padding": ((2, 2), (1, 1)), "dilation": (2, 1)},
    {"stride": (3, 2), "padding": ((0, 1), (1, 0)), "dilation": (2, 2)},
]


def taps(x_shape, k_shape, stride, padding, dilation):
    """Every (output Y, X; tap a, b; padded input row, column) of the convolution."""
    (pt, pb), (pl, pr) = padding
    ho, wo = formula(x_shape[2:], k_shape[2:], stride, padding, dilation)
    for Y in range(ho):
        for X in range(wo):
            for a in range(k_shape[2]):
                for b in range(k_shape[3]):
                    yield Y, X, a, b, Y * stride[0] + a * dilation[0] - pt, \
                        X * stride[1] + b * dilation[1] - pl


def direct(x, kernel, delta, geometry):
    """y, dE/dx and dE/dk for E = <y, delta>, by loops over every tap (zeros outside x)."""
    n, c, h, w = x.shape
    ho, wo = delta.shape[2:]
    y, dx, dk = np.zeros(delta.shape), np.zeros(x.shape), np.zeros(kernel.shape)
    for Y, X, a, b, r, col in taps(x.shape, kernel.shape, **geometry):
        if 0 <= r < h and 0 <= col < w:
            y[:, :, Y, X] += x[:, :, r, col] @ kernel[:, :, a, b].T
            dx[:, :, r, col] += delta[:, :, Y, X] @ kernel[:, :, a, b]
            dk[:, :, a, b] += delta[:, :, Y, X].T @ x[:, :, r, col]
    return y, dx, dk


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_the_three_ops_are_the_direct_loops(geometry):
    rng = np.random.default_rng(1)
    x, kernel = rng.normal(size=(3, 2, 11, 10)), rng.normal(size=(4, 2, 3, 2))
    delta = rng.normal(size=(3, 4) + formula((11, 10), (3, 2), **geometry))
    y, dx, dk = direct(x, kernel, delta, geometry)
    np.testing.assert_allclose(cs.conv_strided_reference(x, kernel, **geometry), y, atol=1e-12)
    np.testing.assert_allclose(cs.conv_strided_full_reference(
        delta, kernel, map_size=(11, 10), **geometry), dx, atol=1e-12)
    np.testing.assert_allclose(cs.conv_strided_grad_kernel_reference(
        x, delta, size=(3, 2), **geometry), dk, atol=1e-12)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_numba_kernels_agree_with_the_reference(geometry, dtype):
    """Batch 37: more than one chunk; a connection mask; both float types."""
    from cnngraph.runtime import numba_backend as nb
    rng = np.random.default_rng(2)
    x, kernel = rng.normal(size=(37, 3, 13, 12)), rng.normal(size=(4, 3, 3, 2))
    mask = (rng.random((4, 3)) < 0.6).astype(np.int8)
    delta = rng.normal(size=(37, 4) + formula((13, 12), (3, 2), **geometry))
    tol = 1e-11 if dtype == np.float64 else 2e-4
    f = lambda a: a.astype(dtype)  # noqa: E731
    for got, want in (
            (nb.conv_strided(f(x), f(kernel), mask=mask, **geometry),
             cs.conv_strided_reference(x, kernel, mask=mask, **geometry)),
            (nb.conv_strided_full(f(delta), f(kernel), map_size=(13, 12), mask=mask, **geometry),
             cs.conv_strided_full_reference(delta, kernel, map_size=(13, 12), mask=mask,
                                            **geometry)),
            (nb.conv_strided_grad_kernel(f(x), f(delta), size=(3, 2), mask=mask, **geometry),
             cs.conv_strided_grad_kernel_reference(x, delta, size=(3, 2), mask=mask,
                                                   **geometry))):
        assert got.dtype == dtype
        assert np.abs(got - want).max() <= tol * max(1.0, np.abs(want).max())


@needs_numba
@pytest.mark.parametrize("geometry", GEOMETRIES[:3])
def test_numba_kernels_are_bitwise_the_same_on_any_thread_count(geometry, restored_threads):
    """Batch 20: one chunk on one thread, two on two."""
    from cnngraph.runtime import numba_backend as nb
    rng = np.random.default_rng(3)
    x, kernel = rng.normal(size=(20, 3, 13, 12)), rng.normal(size=(4, 3, 3, 2))
    delta = rng.normal(size=(20, 4) + formula((13, 12), (3, 2), **geometry))
    results = []
    for threads in (1, 2):
        nb.set_threads(threads)
        results.append((nb.conv_strided(x, kernel, **geometry),
                        nb.conv_strided_full(delta, kernel, map_size=(13, 12), **geometry),
                        nb.conv_strided_grad_kernel(x, delta, size=(3, 2), **geometry)))
    for one, two in zip(*results):
        assert np.array_equal(one, two)


@pytest.mark.parametrize("op", OPS)
def test_generated_checks_pass(op):
    """Finite differences in float64, curvature and the adjoint identity, as check-ops."""
    bad = [r for r in verify_op(REGISTRY, op, backend="reference") if not r.ok]
    assert not bad, bad


# models -----------------------------------------------------------------------------

STRIDED = """\
input x : 1 x 14 x 14
conv C1 <- x : maps=4, kernel=3, stride=2, padding=same, activation=lecun_tanh  # 7x7
conv C2 <- C1 : maps=3, kernel=3, dilation=2, padding=1, connect=table(T),
                activation=lecun_tanh                                            # 5x5
conv C3 <- C1 : maps=2, kernel=[3, 2], stride=[2, 1], connect=learned(penalty=entropy),
                activation=lecun_tanh                                            # 3x6
full out <- C2, C3 : units=4, activation=lecun_tanh
loss L <- out : function=squared_error
table T {
  0: 0 1
  1: 1 2
  2: 2 3 0
}
"""


def test_check_passes_on_a_strided_model_with_a_table_and_learned_connections():
    model = compile_model(STRIDED)
    assert [r.name for r in check_model(model, sample=30) if not r.ok] == []
    assert sum(model.graph.nodes[n].get("op") == "conv_strided" for n in model.graph) == 3


def test_summary_counts_the_strided_multiply_adds():
    rows = {r.name: r for r in summarize(compile_model(STRIDED))}
    assert rows["C1"].macs == 4 * 1 * 9 * 7 * 7
    assert rows["C2"].macs == 7 * 9 * 5 * 5        # the table's 7 map pairs


def test_receptive_fields_follow_stride_and_dilation():
    """C1 (3x3, stride 2, same) sees 3x3 pixels; C2's middle value (3x3 dilated by 2,
    padded by 1, over C1) reads C1's rows 1, 3, 5, which read input rows 2-4, 6-8 and
    10-12: 9 pixels each way, the dilation's gaps left out."""
    fields = receptive_fields(compile_model(STRIDED))
    assert fields["C1"] == [3, 3]
    assert fields["C2"] == [9, 9]


def test_defaults_change_nothing():
    """Written at their defaults the options give the same ops, attributes and hash."""
    text = (ROOT / "models" / "lenet5.cnn").read_text()
    plain = compile_model(text)
    written = compile_model(text.replace("kernel=5", "kernel=5, stride=1, padding=0, "
                                                     "dilation=[1, 1]"))
    assert written.network_hash() == plain.network_hash()
    nodes = lambda m: sorted((n, m.graph.nodes[n].get("op"), repr(m.graph.nodes[n].get(  # noqa
        "attrs"))) for n in m.graph)
    assert nodes(written) == nodes(plain)
    assert not any(op and "strided" in op for _, op, _ in nodes(plain))


def test_onnx_export_matches_onnxruntime():
    ort = pytest.importorskip("onnxruntime", reason="pip install -e '.[onnx]'")
    from cnngraph.tools.export import export_onnx
    model = compile_model(STRIDED.replace("connect=learned(penalty=entropy)", "bias=none"))
    params = model.init_params(seed=1, dtype=np.float32)
    x = np.random.default_rng(5).uniform(-0.1, 1.0, (9, *model.input_shape)).astype(np.float32)
    proto = export_onnx(model, params)
    conv = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert any(a.name == "strides" and list(a.ints) == [2, 2] for n in conv for a in n.attribute)
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x})[0]
    want = model.forward(params, x)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


MNIST_MODEL = """\
input x : 1 x 28 x 28
conv C1 <- x : maps=6, kernel=5, stride=2, padding=same, activation=lecun_tanh  # 14x14
conv C2 <- C1 : maps=8, kernel=3, stride=2, dilation=1, activation=lecun_tanh   # 6x6
full out <- C2 : units=10
loss L <- out : function=softmax_cross_entropy
train {
  epochs = 2
  batch = 20
  lr = 0.05
  optimizer = sgd(momentum=0.5)
  seed = 1
}
"""


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=needs_numba)])
def test_a_strided_same_model_learns_real_mnist(mnist, tmp_path, backend):
    from cnngraph.training.idx import load_mnist
    from cnngraph.training.loop import Trainer
    from cnngraph.training.preprocess import make_splits
    model = compile_model(MNIST_MODEL, backend=backend)
    cfg = model.settings.train
    train, _, _ = make_splits(model, load_mnist(mnist), 0, np.dtype(cfg.dtype),
                              limit_train=400, limit_test=100)
    trainer = Trainer(model, cfg, tmp_path)
    trainer.start()
    trainer.fit(train)
    losses = [e["train_loss"] for e in trainer.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.8 * losses[0], losses


def test_explore_explains_strided_maps_and_their_deltas():
    """The explorer's step-by-step views (conv_strided's and conv_strided_full's
    explain) give the forward value and the backward plan's δ."""
    from cnngraph.tools import explain
    model = compile_model(STRIDED)
    params = model.init_params(1, np.float64)
    x = np.random.default_rng(1).uniform(-0.1, 1.175, size=(1,) + model.input_shape)
    t = np.eye(4)[[1]]
    outputs = model.layer_outputs(params, x)
    for layer in ("C1", "C2", "C3"):
        got = explain.explain_map(model, params, x, layer, 1)
        assert got["value"] == outputs[layer][(0, 1, *got["pixel"])]
        assert got["steps"][-1]["result"] == pytest.approx(got["value"], rel=1e-12)
        shown = explain.explain_delta(model, params, x, t, layer, 1)
        u = explain.pre_activation(model, layer)
        delta = model.loss_and_grads(params, x, t, wrt=[u])[1][u][0]
        assert shown["value"] == pytest.approx(float(delta[(1, *shown["pixel"])]), rel=1e-12,
                                               abs=1e-18)
