"""The rectifiers and GELU, He and LeCun initialisation, label smoothing (issue 22):
each activation trains and passes `check`, every new op passes the generated checks,
the kink convention holds in every backend, the inits draw what they say, label
smoothing's loss and gradient are the hand-computed ones, and its default leaves
models as they were."""
import math

import numpy as np
import pytest
from conftest import ROOT

from cnngraph import CnnError, Example, compile_model, default_registry
from cnngraph.core.plugins import load_plugin
from cnngraph.tools.check_model import check_model
from cnngraph.tools.check_ops import verify_kernel, verify_op
from cnngraph.training.step import Optimizer, estimate_curvature, train_step
from cnngraph.training.vitals import activation_kind

ACTIVATIONS = ["relu", "leaky_relu", "leaky_relu(slope=0.2)", "elu", "elu(alpha=0.5)", "gelu"]
OPS = ["relu", "leaky_relu", "elu", "gelu"]
BACKENDS = ["reference", "numpy", "numba"]


def small(activation, loss="softmax_cross_entropy(label_smoothing=0.1)", weights="he_normal"):
    return (f"input x : 1 x 8 x 8\n"
            f"conv C1 <- x : maps=3, kernel=3, activation={activation}\n"
            f"full H <- C1 : units=5, activation={activation}\n"
            f"full out <- H : units=3\n"
            f"loss L <- out : function={loss}\n"
            f"init {{ weights = {weights} }}\n")


def batch(model, n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, *model.input_shape))
    return x, np.eye(3)[rng.integers(0, 3, n)]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_a_small_model_with_each_activation_trains_and_checks(activation):
    model = compile_model(small(activation))
    assert check_model(model, batch=3, eps=1e-5) and all(
        r.ok for r in check_model(model, batch=3, eps=1e-5))
    params = model.init_params(seed=1, dtype=np.float64)
    optimizer = Optimizer.for_model(model, ("sgd", {"momentum": 0.9}))
    state, data = optimizer.start(params), batch(model)
    losses = []
    for _ in range(15):
        params, state, stats = train_step(model, params, state, data, optimizer, 0.05)
        losses.append(stats.loss)
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("op", OPS + [f"{op}_slope" for op in OPS]
                         + ["softmax_cross_entropy", "softmax_cross_entropy_grad"])
def test_every_new_op_passes_the_generated_checks(op):
    """Shape, finite differences in float64 and curvature (activations), in-place
    forms bitwise, on the reference and the NumPy backend."""
    registry = default_registry()
    for backend in ("reference", "numpy"):
        reports = verify_op(registry, op, backend=backend)
        assert reports and all(r.ok for r in reports), [r for r in reports if not r.ok]
    checks = {r.check for r in verify_op(registry, op)}
    assert ("gradient" in checks and "curvature" in checks) == (not op.endswith(("_slope",
                                                                                 "_grad")))


@pytest.mark.parametrize("op", ["relu", "leaky_relu", "elu", "relu_slope", "leaky_relu_slope",
                                "elu_slope", "softmax_cross_entropy_grad"])
def test_numpy_kernels_agree_with_the_reference(op):
    registry = default_registry()
    rng = np.random.default_rng(3)
    u = (rng.normal(scale=3, size=(7, 4, 9, 9)),)
    attrs = [{}, {"slope": 0.3}] if op.startswith("leaky") else \
        [{}, {"alpha": 0.5}] if op.startswith("elu") else [{}]
    if op == "softmax_cross_entropy_grad":
        u = (rng.normal(size=(50, 10)), np.eye(10)[rng.integers(0, 10, 50)], np.asarray(1.0))
        attrs = [{}, {"label_smoothing": 0.1}]
    cases = [(str(a), Example(u, a)) for a in attrs]
    for dtype in (np.float32, np.float64):
        reports = verify_kernel(registry, "numpy", op, cases, dtype)
        assert reports and all(r.ok for r in reports), reports


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_kink_convention_is_the_left_slope_in_every_backend(backend):
    """relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = alpha: the slope ops read the
    output, which is 0 at u = 0."""
    table = default_registry().backend(backend)
    zero = np.zeros((2, 3))
    for op, attrs, want in [("relu", {}, 0.0), ("leaky_relu", {"slope": 0.3}, 0.3),
                            ("elu", {"alpha": 0.5}, 0.5)]:
        y = table.kernel(op).run(zero.copy(), **attrs)
        assert np.array_equal(y, zero)
        assert np.array_equal(table.kernel(f"{op}_slope").run(y, **attrs), np.full_like(y, want))


def test_gelu_is_the_exact_erf_form():
    gelu = default_registry().op("gelu").reference
    u = np.array([-3.0, -0.5, 0.0, 0.7, 2.5])
    want = [v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in u]
    assert gelu(u).tolist() == want
    assert gelu(u.astype(np.float32)).dtype == np.float32


def test_activations_are_classified_by_their_ends():
    ops = default_registry().ops
    assert activation_kind(ops["relu"].reference, {}) == ("rectifier",)
    assert activation_kind(ops["leaky_relu"].reference, {}) is None  # never dead


@pytest.mark.parametrize("scheme, std, bound", [
    ("he_normal", lambda f: math.sqrt(2 / f), None),
    ("he_uniform", lambda f: math.sqrt(2 / f), lambda f: math.sqrt(6 / f)),
    ("lecun_normal", lambda f: math.sqrt(1 / f), None),
])
def test_inits_draw_their_definitions(scheme, std, bound):
    """Mean 0 and the defined spread within sampling error (5 standard errors), per
    row of its own fan-in; a uniform stays inside its bound and reaches near it."""
    draw = default_registry().choice("init", scheme).value
    fan_in = np.array([[10.0], [250.0]])
    w = draw((2, 40_000), fan_in, 1.0, np.random.default_rng(0), np.float64)
    n = w.shape[1]
    for row, f in zip(w, fan_in[:, 0]):
        s = std(f)
        assert abs(row.mean()) < 5 * s / math.sqrt(n)
        assert abs(row.std() / s - 1) < 5 / math.sqrt(2 * n) * (1.3 if bound else 1)
        if bound:
            assert np.abs(row).max() <= bound(f) and np.abs(row).max() > 0.999 * bound(f)


def test_he_counts_only_the_connected_maps_of_a_table():
    """A conv kernel's fan-in is its table row's input maps times the taps: the rows
    reading 1 and 3 maps, each divided by its own sqrt(2/fan_in), pool to std 1
    (the entries of unconnected pairs are drawn too, and masked in the convolution)."""
    text = ("input x : 3 x 12 x 12\n"
            "conv C <- x : maps=40, kernel=9, connect=table(T), activation=relu\n"
            "full out <- C : units=3\nloss L <- out : function=softmax_cross_entropy\n"
            "init { weights = he_normal }\n"
            "table T {\n" + "".join(f"  {j}: {'0' if j % 2 else '0 1 2'}\n" for j in range(40))
            + "}\n")
    kernel = compile_model(text).init_params(seed=0, dtype=np.float64)["C.kernel"]
    standardized = []
    for j in range(40):
        reads = 1 if j % 2 else 3
        standardized.append(kernel[j, :reads].ravel() / math.sqrt(2 / (reads * 81)))
    z = np.concatenate(standardized)
    assert abs(z.std() - 1) < 5 / math.sqrt(2 * z.size) and abs(z.mean()) < 5 / math.sqrt(z.size)


def test_label_smoothing_loss_is_the_hand_computation_and_its_gradient_checks():
    model = compile_model(small("tanh"))
    params = model.init_params(seed=2, dtype=np.float64)
    x, t = batch(model, n=4)
    loss, grads, values = model.loss_and_grads(params, x, t, wrt=[model.roles.prediction])
    y = values[model.roles.prediction]
    eps, k, total = 0.1, 3, 0.0
    for n in range(4):
        z = sum(math.exp(v) for v in y[n])
        for j in range(k):
            total -= ((1 - eps) * t[n, j] + eps / k) * math.log(math.exp(y[n, j]) / z)
    assert loss == pytest.approx(total / 4, rel=1e-12)
    p = np.exp(y) / np.exp(y).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(grads[model.roles.prediction],
                               (p - ((1 - eps) * t + eps / k)) / 4, rtol=1e-12)
    assert all(r.ok for r in check_model(model, batch=3))


def test_label_smoothing_zero_is_the_plain_loss_bitwise_and_hashes_alike():
    bare, zero = (compile_model(small("sigmoid", loss))
                  for loss in ("softmax_cross_entropy",
                               "softmax_cross_entropy(label_smoothing=0)"))
    smoothed = compile_model(small("sigmoid"))
    assert bare.network_hash() == zero.network_hash() != smoothed.network_hash()
    for dtype in (np.float32, np.float64):
        params = bare.init_params(seed=0, dtype=dtype)
        x, t = (a.astype(dtype) for a in batch(bare))
        a, b = bare.loss_and_grads(params, x, t), zero.loss_and_grads(params, x, t)
        assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])


def test_sdlm_curvature_runs_through_each_activation():
    for activation in ("relu", "leaky_relu", "elu", "gelu"):
        model = compile_model(small(activation))
        params = model.init_params(seed=0, dtype=np.float64)
        h = estimate_curvature(model, params, *batch(model, n=20), batch=10)
        assert h and all(np.isfinite(v).all() and (v >= 0).all() for v in h.values())
        assert any(v.any() for v in h.values())


@pytest.mark.parametrize("option, message", [
    ("activation=leaky_relu(slope=-1)", "leaky_relu needs slope >= 0"),
    ("activation=elu(alpha=-0.5)", "elu needs alpha >= 0"),
    ("activation=relu(slope=2)", "'relu' takes no arguments"),
])
def test_bad_activation_options_are_errors_at_their_place(option, message):
    text = f"input x : 1 x 6 x 6\nfull out <- x : units=3, {option}\n" \
           "loss L <- out : function=squared_error\n"
    with pytest.raises(CnnError) as caught:
        compile_model(text)
    assert message in str(caught.value) and caught.value.span.line == 2


def test_label_smoothing_outside_0_1_is_an_error_at_its_value():
    text = small("relu", "softmax_cross_entropy(label_smoothing=1.5)")
    with pytest.raises(CnnError) as caught:
        compile_model(text)
    assert "expects a number <= 1, got 1.5" in str(caught.value)
    assert (caught.value.span.line, caught.value.span.column) == (5, 64)  # the value


def test_the_plugin_example_is_a_clipped_relu_beside_the_builtin():
    registry = default_registry()
    load_plugin(str(ROOT / "examples" / "relu.py"), registry)
    model = compile_model(small("relu6", weights="he_uniform").replace(
        "activation=relu6\nfull out", "activation=relu\nfull out"), registry)
    assert {"relu", "relu6"} <= {model.graph.nodes[n]["op"] for n in model.graph}
    u = np.array([-1.0, 3.0, 9.0])
    assert registry.op("relu6").reference(u).tolist() == [0.0, 3.0, 6.0]
