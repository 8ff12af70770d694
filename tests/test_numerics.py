"""The kernels in numerics.py against scipy.signal and direct loops."""
import numpy as np
import pytest
from scipy import signal

from cnngraph.runtime import numerics


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_correlate_valid_matches_scipy(rng):
    x = rng.normal(size=(2, 3, 7, 6))
    kernel = rng.normal(size=(4, 3, 3, 2))
    y = numerics.correlate_valid(x, kernel)
    for n in range(2):
        for o in range(4):
            want = sum(signal.correlate2d(x[n, i], kernel[o, i], mode="valid") for i in range(3))
            np.testing.assert_allclose(y[n, o], want, rtol=1e-12, atol=1e-12)


def test_forward_is_seed_convolution_with_rotated_kernel(rng):
    """The seed's conv2(x, k, 'valid') equals our correlation with rot180(k)."""
    x = rng.normal(size=(1, 1, 6, 6))
    k = rng.normal(size=(1, 1, 3, 3))
    seed = signal.convolve2d(x[0, 0], k[0, 0], mode="valid")
    ours = numerics.correlate_valid(x, numerics.rot180(k))[0, 0]
    np.testing.assert_allclose(ours, seed, atol=1e-12)


def test_convolve_full_matches_scipy(rng):
    delta = rng.normal(size=(2, 4, 5, 5))
    kernel = rng.normal(size=(4, 3, 3, 2))
    dx = numerics.convolve_full(delta, kernel)
    for n in range(2):
        for i in range(3):
            want = sum(signal.convolve2d(delta[n, o], kernel[o, i], mode="full") for o in range(4))
            np.testing.assert_allclose(dx[n, i], want, atol=1e-12)


def test_correlate_kernel_matches_loop(rng):
    x = rng.normal(size=(3, 2, 6, 5))
    delta = rng.normal(size=(3, 4, 4, 3))
    g = numerics.correlate_kernel(x, delta, 3, 3)
    want = np.zeros((4, 2, 3, 3))
    for n in range(3):
        for o in range(4):
            for i in range(2):
                want[o, i] += signal.correlate2d(x[n, i], delta[n, o], mode="valid")
    np.testing.assert_allclose(g, want, atol=1e-12)


def test_block_sum_and_upsample_are_adjoint(rng):
    x = rng.normal(size=(2, 3, 6, 4))
    d = rng.normal(size=(2, 3, 3, 2))
    np.testing.assert_allclose(numerics.block_sum(x, 2)[0, 0, 0, 0], x[0, 0, :2, :2].sum())
    lhs = np.sum(numerics.block_sum(x, 2) * d)
    rhs = np.sum(x * numerics.upsample_kron(d, 2))
    assert lhs == pytest.approx(rhs, rel=1e-12)
    np.testing.assert_array_equal(numerics.upsample_kron(d, 2)[1, 2],
                                  np.kron(d[1, 2], np.ones((2, 2))))


def test_softmax_is_stable_at_large_inputs():
    u = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    logp = numerics.log_softmax(u)
    assert np.all(np.isfinite(logp))
    np.testing.assert_allclose(numerics.softmax(u).sum(axis=1), 1.0)
    np.testing.assert_allclose(logp[1], np.log(1 / 3))
