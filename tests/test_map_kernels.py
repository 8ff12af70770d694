"""numba_maps' product, which splits the batch by images as the kernels that write its
inputs do, is NumPy's bit for bit, in place or not; the bias gradient's bits do not
depend on the thread count."""
import numpy as np
import pytest
from conftest import needs_numba

pytestmark = needs_numba

SHAPES = [(37, 6, 14, 14), (50, 16, 5, 5), (9, 3, 8, 12, 16)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_product_is_numpys_bit_for_bit_in_place_or_not(shape, dtype, restored_threads,
                                                       monkeypatch):
    """On one thread NumPy's loop runs, on two numba_maps' (counted)."""
    import numba

    from cnngraph.runtime.numba_backend import KERNELS
    from cnngraph.runtime.numba_compiled import compiled
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("the compiled product runs on two threads or more; numba has one")
    maps, calls = compiled("numba_maps"), []
    for name in ("multiply", "multiply_into"):
        monkeypatch.setattr(maps, name, lambda *a, _run=getattr(maps, name), _name=name:
                            calls.append(_name) or _run(*a))
    mul = KERNELS["mul"]
    rng = np.random.default_rng(len(shape))
    a, b = (rng.normal(size=shape).astype(dtype) for _ in range(2))
    a.flat[::7], b.flat[::11] = np.inf, np.nan  # specials pass through as NumPy's do
    expected = np.multiply(a, b)
    for threads in (1, 2):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        assert mul.run(a, b).tobytes() == expected.tobytes()
        into = a.copy()
        assert mul.in_place(into, b) is into and into.tobytes() == expected.tobytes()
    assert calls == ["multiply", "multiply_into"]


def test_product_of_other_arrays_is_numpys(restored_threads):
    """Broadcast, strided or mixed-dtype operands, and small ones, take NumPy's loop on
    two threads too."""
    import numba

    from cnngraph.runtime.numba_backend import KERNELS
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    mul = KERNELS["mul"]
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 6, 12, 12))
    cases = [(a, a[:, :1]), (a[:, :, ::2], a[:, :, 1::2]), (a, a.astype(np.float32)),
             (a[:2, :2], a[2:4, :2]), (a.reshape(40, -1), a.reshape(40, -1))]
    for x, y in cases:
        assert np.array_equal(mul.run(x, y), np.multiply(x, y))
        if x.shape == np.broadcast_shapes(x.shape, y.shape) and x.dtype == np.result_type(x, y):
            into = x.copy()
            assert np.array_equal(mul.in_place(into, y), np.multiply(x, y))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 37, 50, 256])
def test_bias_gradient_has_the_same_bits_on_any_thread_count(batch, dtype, restored_threads):
    import numba

    from cnngraph.runtime.numba_backend import KERNELS
    delta = np.random.default_rng(batch).normal(size=(batch, 6, 24, 24)).astype(dtype)
    runs = []
    for threads in (1, 2, 1):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        runs.append(KERNELS["sum_bias"].run(delta).tobytes())
    assert runs[0] == runs[1] == runs[2]
    exact = delta.astype(np.float64).sum(axis=(0, 2, 3))
    got = np.frombuffer(runs[0], dtype)
    assert np.allclose(got, exact, rtol=0, atol=50 * np.finfo(dtype).eps * np.abs(delta).sum())
