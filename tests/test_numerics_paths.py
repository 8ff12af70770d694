"""Every code path of the convolution kernels agrees with scipy, and the
dispatchers pick the path the measurements chose for each shape."""
import numpy as np
import pytest
from scipy import signal

from cnngraph.runtime import numerics


def _case(batch, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, 3, 9, 8)), rng.normal(size=(2, 3, 3, 2))


@pytest.mark.parametrize("path", [numerics.columns_gathered, numerics.columns_by_rows])
@pytest.mark.parametrize("batch", [1, 5])
def test_im2col_paths_match_scipy(path, batch):
    x, kernel = _case(batch)
    y = (kernel.reshape(2, -1) @ path(x, 3, 2)).reshape(2, batch, 7, 7).transpose(1, 0, 2, 3)
    want = [[sum(signal.correlate2d(x[n, i], kernel[o, i], mode="valid") for i in range(3))
             for o in range(2)] for n in range(batch)]
    np.testing.assert_allclose(y, want, atol=1e-10)


@pytest.mark.parametrize("path", [numerics.convolve_full_scattered, numerics.convolve_full_shifted])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_col2im_paths_match_scipy(path, dtype):
    rng = np.random.default_rng(1)
    delta, kernel = rng.normal(size=(4, 2, 7, 7)), rng.normal(size=(2, 3, 3, 2))
    dx = path(delta.astype(dtype), kernel.astype(dtype))
    assert dx.dtype == dtype and dx.flags.c_contiguous
    want = [[sum(signal.convolve2d(delta[n, o], kernel[o, i], mode="full") for o in range(2))
             for i in range(3)] for n in range(4)]
    np.testing.assert_allclose(dx, want, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-4)


def test_dispatch_follows_the_measured_rules(monkeypatch):
    picked = {}
    for name in ("columns_gathered", "columns_by_rows"):
        path = getattr(numerics, name)
        monkeypatch.setattr(numerics, name, lambda x, kh, kw, name=name, path=path:
                            picked.setdefault(x.shape, name) and path(x, kh, kw))
    for shape in [(10, 6, 12, 12), (50, 6, 12, 12), (256, 16, 6, 6), (4096, 16, 6, 6),
                  (4096, 16, 5, 5)]:
        numerics.columns(np.zeros(shape), 5, 5)
    # few patches; many; a narrow output; too big an index; a kernel that covers the map
    # (LeNet-5's C5) takes neither path
    assert picked == {(10, 6, 12, 12): "columns_gathered", (50, 6, 12, 12): "columns_by_rows",
                      (256, 16, 6, 6): "columns_gathered", (4096, 16, 6, 6): "columns_by_rows"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 3, 37])
def test_a_kernel_covering_the_map_keeps_the_general_paths_bits(batch, dtype):
    """With one output pixel (LeNet-5's C5) the patches are the images themselves and the
    full convolution's taps land one per pixel: the same values, bit for bit, as the
    gather and the scatter, which computed them before."""
    rng = np.random.default_rng(batch)
    x = rng.normal(size=(batch, 16, 5, 5)).astype(dtype)
    kernel = rng.normal(size=(12, 16, 5, 5)).astype(dtype)
    delta = rng.normal(size=(batch, 12, 1, 1)).astype(dtype)
    gathered = numerics.columns_gathered(x, 5, 5)
    assert np.array_equal(numerics.columns(x, 5, 5), gathered)
    assert np.array_equal(numerics.correlate_valid(x, kernel),
                          numerics.correlate_columns(gathered, kernel, (1, 1)))
    dx = numerics.convolve_full(delta, kernel)
    assert dx.dtype == dtype and dx.flags.c_contiguous
    assert np.array_equal(dx, numerics.convolve_full_scattered(delta, kernel))
    assert np.array_equal(numerics.correlate_kernel(x, delta, 5, 5),
                          numerics.correlate_kernel_columns(gathered, delta, 5, 5))


def test_window_index_is_shared_and_read_only():
    index = numerics.window_index((2, 3, 9, 8), 3, 2)
    assert index is numerics.window_index((2, 3, 9, 8), 3, 2)
    assert index.shape == (3 * 3 * 2, 2 * 7 * 7) and not index.flags.writeable
