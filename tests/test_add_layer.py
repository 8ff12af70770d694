"""The add layer (a residual sum) with pooling around it: a small residual model
checks in float64, learns on real MNIST on every backend, exports to ONNX with
cnngraph's outputs; a sum of layers of different shapes is refused naming both."""
import numpy as np
import pytest
from conftest import needs_numba

from cnngraph import CnnError, compile_model
from cnngraph.runtime.numba_backend import available as numba_available
from cnngraph.tools.check_model import check_model
from cnngraph.training.idx import load_mnist
from cnngraph.training.preprocess import make_splits
from cnngraph.training.step import Optimizer, train_step

RESIDUAL = """\
input x : 1 x 28 x 28
conv C1 <- x  : maps=4, kernel=5, activation=tanh         # 4 x 24x24
pool P1 <- C1 : kind=max, size=2                          # 4 x 12x12
conv C2 <- P1 : maps=4, kernel=3, activation=tanh         # 4 x 10x10
conv C3 <- C2 : maps=4, kernel=1                          # 4 x 10x10
pool Q  <- P1 : kind=mean, size=3, stride=1               # 4 x 10x10
add  R  <- C3, Q : activation=tanh                        # 4 x 10x10
pool P2 <- R  : kind=max, size=3, stride=2, padding=1     # 4 x 5x5
full out <- P2 : units=10
loss L <- out : function=softmax_cross_entropy
train {
  batch = 20
  lr = 0.1
  dtype = float64
}
"""


def test_add_sums_its_sources_then_applies_the_activation():
    model = compile_model(RESIDUAL)
    params = model.init_params(0, np.float64)
    x = np.random.default_rng(0).normal(size=(3, 1, 28, 28))
    out = model.layer_outputs(params, x)
    np.testing.assert_allclose(out["R"], np.tanh(out["C3"] + out["Q"]), rtol=1e-14)


def test_a_residual_model_with_pooling_checks_in_float64():
    """Finite differences of every parameter and the input (ties are measure zero for
    random inputs; a small step crosses few kinks)."""
    results = check_model(compile_model(RESIDUAL), sample=40, eps=1e-6)
    assert results and all(r.ok for r in results), [(r.name, r.error) for r in results]


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=needs_numba)])
def test_a_residual_model_learns_real_mnist(backend, mnist):
    model = compile_model(RESIDUAL, backend=backend)
    train, _, _ = make_splits(model, load_mnist(mnist), 0, np.float64, limit_train=400,
                              limit_test=10)
    params = model.init_params(1, np.float64)
    optimizer = Optimizer.for_model(model, ("sgd", {"momentum": 0.9}))
    state = optimizer.start(params)
    probe = (train.images[:200], train.targets[:200])
    before = model.loss(params, *probe)
    for epoch in range(2):
        for step in range(20):
            rows = slice(step * 20, (step + 1) * 20)
            params, state, _ = train_step(model, params, state,
                                          (train.images[rows], train.targets[rows]),
                                          optimizer, 0.05)
    after = model.loss(params, *probe)
    assert after < 0.7 * before, (before, after)


def test_the_backends_agree_on_the_residual_model():
    x = np.random.default_rng(2).normal(size=(5, 1, 28, 28))
    t = np.eye(10)[np.arange(5)]
    runs = []
    for backend in ("reference", "numpy") + (("numba",) if numba_available() else ()):
        model = compile_model(RESIDUAL, backend=backend)
        params = model.init_params(3, np.float64)
        runs.append(model.loss_and_grads(params, x, t)[:2])
    (loss, grads), *others = runs
    for other_loss, other_grads in others:
        assert other_loss == pytest.approx(loss, rel=1e-12)
        for name, g in grads.items():
            np.testing.assert_allclose(other_grads[name], g, rtol=1e-10, atol=1e-13)


def test_the_residual_model_exports_with_cnngraphs_outputs():
    onnx = pytest.importorskip("onnx", reason="pip install 'cnngraph[onnx]'")
    ort = pytest.importorskip("onnxruntime", reason="pip install 'cnngraph[onnx]'")
    from cnngraph.tools.export import export_onnx
    model = compile_model(RESIDUAL.replace("dtype = float64", "dtype = float32"))
    params = model.init_params(4, np.float32)
    proto = export_onnx(model, params)
    onnx.checker.check_model(proto, full_check=True)
    kinds = {node.op_type for node in proto.graph.node}
    assert {"Add", "MaxPool", "AveragePool"} <= kinds
    x = np.random.default_rng(5).normal(size=(7, 1, 28, 28)).astype(np.float32)
    got = ort.InferenceSession(proto.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    want = model.forward(params, x)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("second,message,column", [
    ("pool Q <- P1 : kind=mean, size=2", "'Q' is 4 x 6x6 and 'C3' is 4 x 10x10", 16),
    ("conv Q <- P1 : maps=3, kernel=3", "'Q' is 3 x 10x10 and 'C3' is 4 x 10x10", 16),
    ("full Q <- P1 : units=4", "'Q' is 4 units and 'C3' is 4 x 10x10", 16),
])
def test_sources_of_different_shapes_are_refused_naming_both(second, message, column):
    text = RESIDUAL.replace("pool Q  <- P1 : kind=mean, size=3, stride=1", second)
    with pytest.raises(CnnError, match="'add' sums layers of one shape") as caught:
        compile_model(text)
    assert message in str(caught.value)
    assert (caught.value.span.line, caught.value.span.column) == (7, column)


def test_add_reads_at_least_two_layers():
    with pytest.raises(CnnError, match="'add' reads at least 2 layers, got 1"):
        compile_model(RESIDUAL.replace("add  R  <- C3, Q", "add  R  <- C3"))
