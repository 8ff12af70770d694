"""numba_tiled's stride-1 convolutions on every tile shape: output map counts that
take the 8-, 4-, 2- and 1-map correlation tiles and the 8-, 16- and 32-map gradient
tiles (with their padding), in float32 and float64, against the rule's reference
maths, and bitwise the same on 1 and 2 threads with a batch of three chunks."""
import numpy as np
import pytest
from conftest import needs_numba

from cnngraph.rules import conv_strided as cs

pytestmark = needs_numba

#: 15 = 8 + 4 + 2 + 1 correlation tiles; 40 = a 32- and an 8-map gradient tile; 17 pads
MAPS = (1, 3, 15, 17, 40)
GEOMETRY = {"stride": (1, 1), "padding": ((2, 0), (1, 3)), "dilation": (2, 1)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("maps", MAPS)
def test_tiles_equal_the_reference_and_any_thread_count(maps, dtype):
    import numba

    from cnngraph.runtime import numba_backend as nb
    rng = np.random.default_rng(maps)
    x, kernel = rng.normal(size=(70, 3, 9, 11)), rng.normal(size=(maps, 3, 3, 4))
    out = cs.output_size((9, 11), (3, 4), **GEOMETRY)
    delta = rng.normal(size=(70, maps) + out)
    wanted = (cs.conv_strided_reference(x, kernel, **GEOMETRY),
              cs.conv_strided_full_reference(delta, kernel, map_size=(9, 11), **GEOMETRY),
              cs.conv_strided_grad_kernel_reference(x, delta, size=(3, 4), **GEOMETRY))
    f = lambda a: a.astype(dtype)  # noqa: E731
    tol = 1e-12 if dtype == np.float64 else 1e-4
    results, before = [], numba.get_num_threads()
    try:
        for threads in (1, 2):
            nb.set_threads(threads)
            results.append((nb.conv_strided(f(x), f(kernel), **GEOMETRY),
                            nb.conv_strided_full(f(delta), f(kernel), map_size=(9, 11),
                                                 **GEOMETRY),
                            nb.conv_strided_grad_kernel(f(x), f(delta), size=(3, 4),
                                                        **GEOMETRY)))
    finally:
        numba.set_num_threads(before)
    for one, two, want in zip(*results, wanted):
        assert one.dtype == dtype and one.shape == want.shape
        assert one.tobytes() == two.tobytes()
        assert np.abs(one - want).max() <= tol * max(1.0, np.abs(want).max())
