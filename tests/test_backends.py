"""Every shipped model (and the example plugins) gives the same loss, gradients,
curvatures and training step through the reference backend, whose kernels are the
ops' definitions written plainly, as through the fast NumPy and numba backends."""
import functools

import numpy as np
import pytest
from conftest import MODELS, ROOT, needs_numba

from cnngraph import compile_model, default_registry
from cnngraph.compiler.program import make_plan
from cnngraph.core.plugins import load_plugin
from cnngraph.tools.bench import synthetic_batch
from cnngraph.training.step import Optimizer, train_step

TOLERANCE = 1e-12


def _plugins():
    registry = default_registry()
    for plugin in ("maxpool.py", "relu.py"):
        load_plugin(str(ROOT / "examples" / plugin), registry)
    return registry


CASES = [pytest.param(path, registry, id=path.stem) for path, registry in
         [(path, default_registry) for path in MODELS]
         + [(ROOT / "examples" / "maxpool.cnn", _plugins)]]


def _close(got, want, what):
    scale = max(np.abs(want).max(initial=0.0), 1e-300)
    assert np.abs(got - want).max(initial=0.0) <= TOLERANCE * scale, what


#: (backend, batch): numba's direct convolutions at 4 and 37 (two chunks), its
#: matrix-product paths at 1
BACKENDS = [pytest.param(backend, batch, id=f"{backend}-{batch}",
                         marks=needs_numba if backend == "numba" else ())
            for backend, batch in [("numpy", 4), ("numba", 1), ("numba", 4), ("numba", 37)]]


SGD = ("sgd", {"momentum": 0.9, "weight_decay": 1e-3})


def _copies(arrays: dict) -> dict:
    return {name: np.array(value, copy=True) for name, value in arrays.items()}


@functools.cache
def _reference(path, registry, batch):
    """The reference backend's parameters, batch, loss, gradients, curvatures and SGD
    step for ``path`` at ``batch``: computed once (its plain kernels are the slow part,
    its curvatures most of all) and compared with every fast backend's."""
    plain = compile_model(path, registry(), backend="reference")
    assert plain.plans.gradients.backend == "reference"
    params = plain.init_params(3, np.float64)
    x, t = synthetic_batch(plain, batch, np.float64, np.random.default_rng(3))
    loss, grads, _ = plain.loss_and_grads(_copies(params), x, t)
    curvatures = plain.curvatures(_copies(params), x, t)
    optimizer = Optimizer.for_model(plain, SGD)
    stepped, _, _ = train_step(plain, _copies(params), optimizer.start(params), (x, t),
                               optimizer, 0.1)
    return params, x, t, loss, _copies(grads), _copies(curvatures), _copies(stepped)


@pytest.mark.parametrize("backend,batch", BACKENDS)
@pytest.mark.parametrize("path,registry", CASES)
def test_reference_and_fast_backends_agree(path, registry, backend, batch):
    params, x, t, plain_loss, plain_grads, plain_curvatures, plain_stepped = \
        _reference(path, registry, batch)
    fast = compile_model(path, registry(), backend=backend)
    assert fast.plans.gradients.backend == backend
    loss, grads, _ = fast.loss_and_grads(_copies(params), x, t)
    assert abs(loss - plain_loss) <= TOLERANCE * abs(plain_loss)
    assert grads.keys() == plain_grads.keys()
    for name in grads:
        _close(grads[name], plain_grads[name], name)
    curvatures = fast.curvatures(_copies(params), x, t)
    assert curvatures.keys() == plain_curvatures.keys()
    for name, h in curvatures.items():
        _close(h, plain_curvatures[name], f"curvature {name}")
    optimizer = Optimizer.for_model(fast, SGD)
    stepped, _, _ = train_step(fast, _copies(params), optimizer.start(params), (x, t),
                               optimizer, 0.1)
    for name in stepped:
        _close(stepped[name], plain_stepped[name], f"step {name}")


def test_reference_plans_are_unfused_one_step_per_node():
    """The reference kernels declare nothing, so nothing fuses."""
    model = compile_model(ROOT / "models" / "dlt.cnn", backend="reference")
    ops = [step.op for step in model.plans.gradients.steps]
    assert all("+" not in op for op in ops) and "im2col" not in ops


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_backend_bits_do_not_depend_on_its_thread_count(dtype, restored_threads):
    """Chunks depend on the batch alone and partial sums are added in chunk order."""
    model = compile_model(ROOT / "models" / "lenet5.cnn", backend="numba")
    params = model.init_params(0, dtype)
    x, t = synthetic_batch(model, 70, dtype, np.random.default_rng(0))
    runs = []
    for threads in (1, 2, 1):
        model.backend.set_threads(threads)
        runs.append(model.loss_and_grads(dict(params), x, t)[1])
    for name in runs[0]:
        assert runs[0][name].tobytes() == runs[1][name].tobytes() == runs[2][name].tobytes()


@needs_numba
def test_numba_backend_falls_back_on_numpy_kernels_plugins_included():
    registry = _plugins()
    model = compile_model(ROOT / "examples" / "maxpool.cnn", registry, backend="numba")
    plain = make_plan(model.graph, model.plans.forward.outputs, registry, model.backend,
                      fuse=False)  # fused, the convolution takes its bias add as an epilogue
    kernels = {step.op: step.kernel for step in plain.steps}
    assert model.backend.fallback is registry.backend("numpy")
    assert kernels["maxpool"] is registry.backend("numpy").kernel("maxpool")
    assert kernels["conv_valid"] is model.backend.kernels["conv_valid"]


def test_numba_backend_without_numba_says_how_to_install_it(monkeypatch):
    from cnngraph.core.errors import CnnError
    from cnngraph.runtime import numba_backend, numba_compiled
    for module in (numba_backend, numba_compiled):
        monkeypatch.setattr(module, "available", lambda: False)
    numba_compiled.compiled.cache_clear()
    try:
        model = compile_model(ROOT / "models" / "dlt.cnn", backend="numba")  # pure: no numba yet
        x, _ = synthetic_batch(model, 1, np.float64, np.random.default_rng(0))
        with pytest.raises(CnnError, match="numba package") as caught:
            model.forward(model.init_params(0, np.float64), x)
        assert "cnngraph[fast]" in caught.value.hint
        assert numba_backend.default_backend() == "numpy"
    finally:
        numba_compiled.compiled.cache_clear()


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_convolutions_give_the_same_bits_in_any_chunks(dtype):
    """conv_valid and conv_full cut small batches into one chunk per thread: each output
    must be summed in the same order whatever the chunks."""
    from cnngraph.runtime import numba_tiled
    rng = np.random.default_rng(0)
    x, kernel = rng.normal(size=(10, 6, 12, 12)).astype(dtype), \
        rng.normal(size=(12, 6, 5, 5)).astype(dtype)
    delta = rng.normal(size=(10, 12, 8, 8)).astype(dtype)
    for run, args in ((numba_tiled.conv_valid, (x, kernel)), (numba_tiled.conv_full,
                                                             (delta, kernel))):
        outs = [run(*args, chunks).tobytes() for chunks in (1, 2, 3, 10)]
        assert outs[0] == outs[1] == outs[2] == outs[3]


@needs_numba
@pytest.mark.parametrize("shape", [(9, 3, 9, 11, 4, 3, 3), (5, 2, 13, 13, 3, 7, 7),
                                   (40, 6, 12, 12, 12, 5, 5), (7, 1, 10, 12, 6, 3, 5),
                                   (3, 4, 8, 9, 9, 1, 1), (1, 5, 9, 40, 6, 3, 5)],
                         ids=lambda s: "n{}c{}h{}w{}o{}k{}x{}".format(*s))
def test_numba_convolutions_equal_numerics_for_any_kernel_shape(shape):
    """Map counts of 8, 4, 2 and 1 take tiles of as many maps, kernel widths of five the
    seed's four-map kernel-gradient paths, the others its generic rows; every
    direction against runtime/numerics.py in float64.  One image with rows 36 wide is
    convolved directly too (one chunk)."""
    from cnngraph.runtime import numba_conv, numba_tiled, numerics
    n, c, h, w, c_out, kh, kw = shape
    rng = np.random.default_rng(1)
    x, kernel = rng.normal(size=(n, c, h, w)), rng.normal(size=(c_out, c, kh, kw))
    delta = rng.normal(size=(n, c_out, h - kh + 1, w - kw + 1))
    _close(numba_tiled.conv_valid(x, kernel, 2), numerics.correlate_valid(x, kernel), "valid")
    _close(numba_tiled.conv_full(delta, kernel, 2), numerics.convolve_full(delta, kernel), "full")
    _close(numba_conv.conv_grad_kernel(x, delta, kh, kw),
           numerics.correlate_kernel(x, delta, kh, kw), "kernel gradient")
