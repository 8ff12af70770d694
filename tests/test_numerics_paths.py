"""Both code paths of the convolution kernels (tiny inputs and large ones) agree."""
import numpy as np
import pytest
from scipy import signal

from cnngraph import numerics


@pytest.mark.parametrize("batch", [1, 40])  # below and above numerics.SMALL_INPUT
def test_paths_match_scipy(batch):
    rng = np.random.default_rng(batch)
    x = rng.normal(size=(batch, 3, 9, 8))
    kernel = rng.normal(size=(2, 3, 3, 2))
    assert (x.size <= numerics.SMALL_INPUT) == (batch == 1)
    y = numerics.correlate_valid(x, kernel)
    want = [[sum(signal.correlate2d(x[n, i], kernel[o, i], mode="valid") for i in range(3))
             for o in range(2)] for n in range(batch)]
    np.testing.assert_allclose(y, want, atol=1e-10)
    dx = numerics.convolve_full(y, kernel)
    want = [[sum(signal.convolve2d(y[n, o], kernel[o, i], mode="full") for o in range(2))
             for i in range(3)] for n in range(batch)]
    np.testing.assert_allclose(dx, want, atol=1e-10)
