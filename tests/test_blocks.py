"""numba_blocks: products in two fixed row halves, each one call of NumPy's OpenBLAS,
keep their bits on any thread count; on the machine kinds whose resumes are pinned
(tests/test_checkpoint_format.py) they are np.dot's, so the models that reach them
(LeNet-5's C5 and dense layers) train with the bits they had there.  Elsewhere
OpenBLAS may pick other kernels, and only the thread count's part is checked."""
import numpy as np
import pytest
from conftest import ROOT, needs_numba
from threadpoolctl import threadpool_limits

from test_checkpoint_format import machine_kind

from cnngraph import compile_model
from cnngraph.tools.bench import synthetic_batch

pytestmark = needs_numba
#: whether the halves must be np.dot's bits here (a machine kind with pinned resumes)
PINNED = machine_kind() is not None


@pytest.fixture
def blocks():
    from cnngraph.runtime.numba_compiled import compiled
    module = compiled("numba_blocks")
    if module._FOUND is None:
        pytest.skip("NumPy's OpenBLAS not found: the products stay np.dot's")
    return module


def _operands(rng, m, k, n, layout, dtype):
    a = rng.normal(size=(k, m) if layout[0] == "T" else (m, k)).astype(dtype)
    b = rng.normal(size=(n, k) if layout[1] == "T" else (k, n)).astype(dtype)
    return (a.T if layout[0] == "T" else a), (b.T if layout[1] == "T" else b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NN", "NT", "TN", "TT"])
@pytest.mark.parametrize("m,k,n", [(120, 400, 50), (50, 120, 400), (120, 50, 400),
                                   (256, 120, 84), (44, 400, 120), (121, 401, 45)])
def test_halves_keep_their_bits_on_any_thread_count(blocks, m, k, n, layout, dtype,
                                                    restored_threads):
    """LeNet-5's C5 products at batch 50 (forward, input and kernel gradient), F6's at
    256, odd sizes; operands contiguous or transposed views; numba on 1 and 2 threads.
    With BLAS on 2 threads (the halves then run one after the other) the bits are
    np.dot's on 2 BLAS threads, which OpenBLAS's float64 products do not keep from 1."""
    import numba
    a, b = _operands(np.random.default_rng(m + k + n), m, k, n, layout, dtype)
    assert m * n * k >= blocks.MIN_WORK and m >= blocks.MIN_ROWS
    with threadpool_limits(1, user_api="blas"):
        want = np.dot(a, b)
        runs = []
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            runs.append(blocks.dot(a, b, fallback=None))
    assert runs[0].dtype == dtype and runs[0].tobytes() == runs[1].tobytes()
    assert not PINNED or runs[0].tobytes() == want.tobytes()
    with threadpool_limits(2, user_api="blas"):
        got, want = blocks.dot(a, b, fallback=None), np.dot(a, b)
    assert not PINNED or got.tobytes() == want.tobytes()


def test_small_or_other_products_take_the_fallback(blocks):
    rng = np.random.default_rng(0)
    calls = []

    def fallback(a, b):
        calls.append(a.shape)
        return np.dot(a, b)
    small = rng.normal(size=(50, 192)), rng.normal(size=(192, 10))  # dlt.cnn's output layer
    few_rows = rng.normal(size=(8, 4000)), rng.normal(size=(4000, 100))
    strided = rng.normal(size=(200, 800))[:, ::2], rng.normal(size=(400, 100))
    mixed = rng.normal(size=(200, 400)), rng.normal(size=(400, 100)).astype(np.float32)
    for a, b in (small, few_rows, strided, mixed):
        assert np.array_equal(blocks.dot(a, b, fallback=fallback), np.dot(a, b))
    assert len(calls) == 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [50, 256])
def test_lenet5_gradients_keep_their_bits(blocks, batch, dtype, monkeypatch, restored_threads):
    """LeNet-5's loss and gradients with the halves, on 1 and 2 threads (and where the
    resumes are pinned against the same plan with every product np.dot's, NumPy's
    OpenBLAS hidden); the halves ran."""
    import numba
    model = compile_model(ROOT / "models" / "lenet5.cnn", backend="numba")
    params = model.init_params(0, dtype)
    x, t = synthetic_batch(model, batch, dtype, np.random.default_rng(batch))
    calls = []
    real = blocks._compiled
    monkeypatch.setattr(blocks, "_compiled", lambda d: calls.append(d) or real(d))
    runs = []
    with threadpool_limits(1, user_api="blas"):
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            runs.append(model.loss_and_grads(params, x, t))
        assert len(calls) >= 6  # C5's three products and F6's in both runs
        monkeypatch.setattr(blocks, "_FOUND", None)
        runs.append(model.loss_and_grads(params, x, t))
    for loss, grads, _ in runs[1:] if PINNED else runs[1:2]:
        assert loss == runs[0][0]
        for name, g in grads.items():
            assert g.tobytes() == runs[0][1][name].tobytes(), name
