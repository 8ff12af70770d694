"""The pool layer and its ops (rules/pool.py): the references against a
window-by-window loop, the tie and NaN conventions in every backend, the numba
kernels' independence from the thread count, the ONNX forms, and the errors at
the option that is wrong.  The generated checks (gradient, curvature, adjoint,
every backend's kernels, the lowerings) cover the ops from their examples in
test_ops, test_backend_kernels and test_onnx."""
import numpy as np
import pytest
from conftest import ROOT, needs_numba

from cnngraph import CnnError, compile_model, default_registry
from cnngraph.core.plugins import load_plugin
from cnngraph.rules.pool import (pool_max_grad_reference, pool_max_reference,
                                 pool_mean_grad_reference, pool_mean_reference)

REGISTRY = default_registry()
BACKENDS = ["reference", "numpy", pytest.param("numba", marks=needs_numba)]
WINDOWS = [((2, 2), (2, 2), (0, 0)), ((3, 2), (2, 1), (1, 1)), ((3, 3), (1, 2), (2, 0)),
           ((4, 5), (3, 3), (0, 2))]


def loop_pool(x, size, stride, padding, kind):
    """Window by window, over the real pixels only (max), or their sum over the
    window's full size (mean, padding counting as zeros)."""
    n, c, h, w = x.shape
    ho = (h + 2 * padding[0] - size[0]) // stride[0] + 1
    wo = (w + 2 * padding[1] - size[1]) // stride[1] + 1
    out = np.zeros((n, c, ho, wo))
    for r in range(ho):
        for q in range(wo):
            top, left = r * stride[0] - padding[0], q * stride[1] - padding[1]
            window = x[:, :, max(top, 0):top + size[0], max(left, 0):left + size[1]]
            out[:, :, r, q] = (window.max(axis=(2, 3)) if kind == "max"
                               else window.sum(axis=(2, 3)) / (size[0] * size[1]))
    return out


def kernel(backend, op):
    return REGISTRY.backend(backend).kernel(op).run


@pytest.mark.parametrize("size,stride,padding", WINDOWS)
def test_references_are_the_window_loop(size, stride, padding):
    x = np.random.default_rng(0).normal(size=(2, 3, 9, 8))
    attrs = dict(size=size, stride=stride, padding=padding)
    for kind, reference in (("max", pool_max_reference), ("mean", pool_mean_reference)):
        np.testing.assert_allclose(reference(x, **attrs), loop_pool(x, size, stride, padding,
                                                                    kind), atol=1e-14)


@pytest.mark.parametrize("size,stride,padding", WINDOWS)
def test_gradients_are_the_adjoints_of_the_window_loop(size, stride, padding):
    """<δ, pool(x + e_i)> − <δ, pool(x)> read off one pixel at a time is δ_x[i] (max:
    with ties far away, the winner does not move for a tiny step)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 2, 9, 8))
    attrs = dict(size=size, stride=stride, padding=padding)
    delta = rng.normal(size=pool_max_reference(x, **attrs).shape)
    for kind, grad in (("max", pool_max_grad_reference(x, delta, **attrs)),
                       ("mean", pool_mean_grad_reference(delta, **attrs, input_size=(9, 8)))):
        want = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            step = np.zeros_like(x)
            step[i] = 1e-7
            want[i] = np.sum(delta * (loop_pool(x + step, size, stride, padding, kind)
                                      - loop_pool(x, size, stride, padding, kind))) / 1e-7
        np.testing.assert_allclose(grad, want, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tie_goes_to_the_first_in_row_major_order(backend):
    """Each 2x2 window holds its maximum twice: δ goes to the first of the two in
    reading order (top row first, left to right), and only there."""
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = 5       # window (0, 0): (0, 1) comes first
    x[0, 0, 2, 2] = x[0, 0, 3, 3] = 7       # window (1, 1): (2, 2)
    x[0, 0, 0, 2] = x[0, 0, 0, 3] = 2       # window (0, 1): (0, 2)
    x[0, 0, 3, 0] = x[0, 0, 3, 1] = 3       # window (1, 0): (3, 0)
    attrs = dict(size=(2, 2), stride=(2, 2), padding=(0, 0))
    delta = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    got = kernel(backend, "pool_max_grad")(x, delta, **attrs)
    want = np.zeros_like(x)
    want[0, 0, 0, 1], want[0, 0, 0, 2], want[0, 0, 3, 0], want[0, 0, 2, 2] = 1, 2, 3, 4
    assert np.array_equal(got, want)
    assert np.array_equal(kernel(backend, "pool_max")(x, **attrs), [[[[5, 2], [3, 7]]]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_reaches_every_window_that_reads_it(backend):
    """explore's receptive fields probe with one NaN pixel: max passes it on (as
    np.max does), padding and all."""
    x = np.zeros((1, 1, 6, 6))
    x[0, 0, 2, 3] = np.nan
    attrs = dict(size=(3, 3), stride=(1, 1), padding=(1, 1))
    for op in ("pool_max", "pool_mean"):
        y = kernel(backend, op)(x, **attrs)
        assert np.array_equal(np.argwhere(np.isnan(y[0, 0])),
                              [(r, c) for r in (1, 2, 3) for c in (2, 3, 4)]), op


@needs_numba
@pytest.mark.parametrize("op", ["pool_max", "pool_mean", "pool_max_grad", "pool_mean_grad"])
def test_numba_kernels_give_the_same_bits_on_any_thread_count(op, restored_threads):
    from cnngraph.runtime.numba_backend import set_threads
    rng = np.random.default_rng(2)
    attrs = dict(size=(3, 3), stride=(2, 2), padding=(1, 1))
    x = rng.normal(size=(37, 4, 13, 13)).astype(np.float32)
    delta = rng.normal(size=(37, 4, 7, 7)).astype(np.float32)
    inputs = {"pool_max": (x,), "pool_mean": (x,), "pool_max_grad": (x, delta),
              "pool_mean_grad": (delta,)}[op]
    if op == "pool_mean_grad":
        attrs["input_size"] = (13, 13)
    runs = []
    for threads in (1, 2):
        set_threads(threads)
        runs.append(kernel("numba", op)(*inputs, **attrs))
    assert np.array_equal(runs[0], runs[1])


def model_text(pool_line, size=12):
    return (f"input x : 1 x {size} x {size}\n"
            "conv C1 <- x : maps=2, kernel=3, activation=tanh\n"
            f"{pool_line}\n"
            "full out <- P : units=3\n"
            "loss L <- out : function=squared_error\n")


@pytest.mark.parametrize("kind", ["max", "mean"])
def test_global_pooling_is_one_window_over_the_map(kind):
    model = compile_model(model_text(f"pool P <- C1 : kind={kind}, size=global"))
    params = model.init_params(0, np.float64)
    x = np.random.default_rng(3).normal(size=(4, 1, 12, 12))
    outputs = model.layer_outputs(params, x)
    c1 = outputs["C1"]
    want = c1.max(axis=(2, 3)) if kind == "max" else c1.mean(axis=(2, 3))
    np.testing.assert_allclose(outputs["P"][:, :, 0, 0], want, rtol=1e-14)


@pytest.mark.parametrize("line,where,message", [
    ("pool P <- C1 : kind=max, size=11", "1:31", "the window 11x11 is larger than the map 10x10"),
    ("pool P <- C1 : kind=max, size=2, stride=[1, 12]", "1:41",
     "stride 1x12 is larger than the map 10x10"),
    ("pool P <- C1 : kind=maximum, size=2", "1:21", "expects one of max, mean"),
    ("pool P <- C1 : kind=max, size=3, padding=3", "1:42",
     "padding 3x3 must be less than the window 3x3"),
    ("pool P <- C1 : kind=mean, size=[2, 2, 2]", "1:32",
     "option 'size' expects an integer or [height, width], got a list of 3 (the layer's "
     "input is 2-D)"),
    ("pool P <- C1 : kind=max, size=global, padding=1", "1:47", "size=global takes no stride"),
    ("pool P <- C1 : kind=max, size=two", "1:31", "expects global, an integer or a list"),
])
def test_bad_options_are_errors_at_the_option(line, where, message):
    with pytest.raises(CnnError) as caught:
        compile_model(model_text(line))
    error = caught.value
    assert message in str(error)
    assert f"{error.span.line - 2}:{error.span.column}" == where, (error.span, line)


def test_global_pooling_of_a_one_pixel_map_is_an_error():
    text = ("input x : 1 x 5 x 5\n"
            "conv C1 <- x : maps=2, kernel=5\n"
            "pool P <- C1 : kind=mean, size=global\n"
            "full out <- P : units=3\n"
            "loss L <- out : function=squared_error\n")
    with pytest.raises(CnnError, match="size=global on a 1-pixel map") as caught:
        compile_model(text)
    assert (caught.value.span.line, caught.value.span.column) == (3, 32)


def test_rows_no_window_reaches_are_a_warning():
    model = compile_model(model_text("pool P <- C1 : kind=max, size=3"))   # 10 = 3·3 + 1
    (message, span), = model.warnings
    assert message == ("3x3 windows at stride 3x3 never read the last 1x1 pixels (per "
                       "dimension) of the 10x10 map") and span.line == 3


def test_the_plugin_example_and_the_builtin_give_the_same_numbers():
    """examples/maxpool.py's 2x2 blocks are pool kind=max, size=2."""
    registry = default_registry().copy()
    load_plugin(str(ROOT / "examples" / "maxpool.py"), registry)
    x = np.random.default_rng(4).normal(size=(3, 2, 8, 6))
    delta = np.random.default_rng(5).normal(size=(3, 2, 4, 3))
    plugin = registry.op("maxpool").reference(x, factor=2)
    attrs = dict(size=(2, 2), stride=(2, 2), padding=(0, 0))
    assert np.array_equal(plugin, pool_max_reference(x, **attrs))
    switches = registry.op("maxpool_switches").reference(x, factor=2)
    assert np.array_equal(switches * np.kron(delta, np.ones((2, 2))),
                          pool_max_grad_reference(x, delta, **attrs))


def test_onnx_uses_the_global_forms_for_one_window_over_the_map():
    onnx = pytest.importorskip("onnx", reason="pip install 'cnngraph[onnx]'")
    ort = pytest.importorskip("onnxruntime", reason="pip install 'cnngraph[onnx]'")
    from cnngraph.tools.export import export_onnx
    text = ("input x : 1 x 12 x 12\n"
            "conv C1 <- x : maps=3, kernel=3, activation=tanh\n"
            "pool A <- C1 : kind=max, size=3, stride=2, padding=1\n"
            "pool B <- C1 : kind=mean, size=[3, 2], stride=[1, 2], padding=[1, 0]\n"
            "pool G <- A : kind=max, size=global\n"
            "pool M <- B : kind=mean, size=global, bias=trainable, activation=tanh\n"
            "full out <- G, M : units=3\n"
            "loss L <- out : function=squared_error\n")
    model = compile_model(text)
    params = model.init_params(1, np.float32)
    proto = export_onnx(model, params)
    onnx.checker.check_model(proto, full_check=True)
    ops = sorted(node.op_type for node in proto.graph.node if "Pool" in node.op_type)
    assert ops == ["AveragePool", "GlobalAveragePool", "GlobalMaxPool", "MaxPool"]
    x = np.random.default_rng(6).normal(size=(5, 1, 12, 12)).astype(np.float32)
    got = ort.InferenceSession(proto.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, model.forward(params, x), rtol=1e-5, atol=1e-6)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_two_by_two_kernels_are_the_general_ones_bit_for_bit(dtype, restored_threads):
    """2x2 windows at stride 2 of 2-D maps run kernels of their own (numba_pool's
    `_max_2x2`, `_max_grad_2x2`): the same winners, ties and NaNs as the general
    kernels, odd sizes' last row and column left at zero, on 1 and 2 threads."""
    from cnngraph.runtime.numba_backend import set_threads
    from cnngraph.runtime.numba_compiled import compiled
    pool = compiled("numba_pool")
    rng = np.random.default_rng(3)
    attrs = ((2, 2), (2, 2), (0, 0))
    for shape in ((37, 3, 8, 8), (5, 2, 9, 7), (3, 1, 2, 2)):
        for kind in ("normal", "ties", "nan"):
            x = rng.normal(size=shape) if kind == "normal" else \
                rng.integers(0, 3, shape).astype(float)
            if kind == "nan":
                x[rng.random(shape) < 0.1] = np.nan
            x = x.astype(dtype)
            delta = rng.normal(size=shape[:2] + (shape[2] // 2, shape[3] // 2)).astype(dtype)
            general = (pool._max(x[:, :, None], 1, 2, 2, 1, 2, 2, 0, 0, 0, 1, *delta.shape[2:]),
                       pool._max_grad(x[:, :, None], delta[:, :, None], 1, 2, 2, 1, 2, 2, 0, 0, 0))
            for threads in (1, 2):
                set_threads(threads)
                got = pool.pool_max(x, *attrs), pool.pool_max_grad(x, delta, *attrs)
                assert np.array_equal(got[0], general[0][:, :, 0], equal_nan=True), (shape, kind)
                assert np.array_equal(got[1], general[1][:, :, 0]), (shape, kind)
                assert got[0].dtype == got[1].dtype == dtype
