"""numba_lanes' batch-innermost copies against NumPy's transposes: whole 16x16 (float32)
and 8x8 (float64) tiles, the overlapping last tiles of ragged sizes, and sizes
smaller than a tile, into wider rows (numba_full's padded lanes) and back."""
import numpy as np
import pytest
from conftest import needs_numba

pytestmark = needs_numba

#: (images, values per image): whole tiles, ragged edges in either direction or both,
#: fewer images or values than a tile, one value
SHAPES = ((256, 3456), (50, 784), (37, 1176), (17, 33), (64, 16), (5, 7), (3, 100), (1, 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("images, values", SHAPES)
def test_to_lanes_and_back_are_transposes(images, values, dtype):
    from cnngraph.runtime.numba_compiled import compiled
    lanes = compiled("numba_lanes")
    x = np.random.default_rng(values).normal(size=(images, values)).astype(dtype)
    half = images // 2
    for start, stop, width in ((0, images, images), (half, images, images - half + 5),
                               (0, min(images, 32), 32)):
        out = np.full((values, width), 7, dtype)
        lanes.to_lanes(x, start, stop, out)
        wanted = np.full((values, width), 7, dtype)
        wanted[:, :stop - start] = x[start:stop].T
        assert np.array_equal(out, wanted), (start, stop, width)
        back = np.full_like(x, 3)
        lanes.from_lanes(out, start, stop, back)
        wanted = np.full_like(x, 3)
        wanted[start:stop] = x[start:stop]
        assert np.array_equal(back, wanted), (start, stop, width)
