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
def test_tiles_equal_the_reference_and_any_thread_count(maps, dtype, restored_threads):
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
    results = []
    for threads in (1, 2):
        nb.set_threads(threads)
        results.append((nb.conv_strided(f(x), f(kernel), **GEOMETRY),
                        nb.conv_strided_full(f(delta), f(kernel), map_size=(9, 11),
                                             **GEOMETRY),
                        nb.conv_strided_grad_kernel(f(x), f(delta), size=(3, 4),
                                                    **GEOMETRY)))
    for one, two, want in zip(*results, wanted):
        assert one.dtype == dtype and one.shape == want.shape
        assert one.tobytes() == two.tobytes()
        assert np.abs(one - want).max() <= tol * max(1.0, np.abs(want).max())


#: (input maps, output maps, map size, kernel, stride, padding in front and behind,
#: dilation): 1-, 2- and 3-D; map counts below, at and past the listed tiles' 16 and 8
LAYERS = ((6, 16, (14, 14), (5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1)),
          (5, 50, (13, 13), (5, 5), (2, 2), ((1, 0), (1, 0)), (1, 1)),
          (3, 17, (9, 11), (3, 4), (1, 2), ((2, 0), (1, 3)), (2, 1)),
          (28, 9, (28,), (5,), (1,), ((0, 0),), (1,)),
          (4, 3, (6, 7, 5), (3, 3, 2), (2, 1, 1), ((1, 1), (1, 1), (0, 1)), (1, 1, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", LAYERS)
def test_listed_positions_give_the_map_tiles_bits(layer, dtype, restored_threads):
    """numba_listed's forward correlation against numba_tiled's map tiles: the same
    bits, with and without the fused bias and float32 tanh, on 1 and 2 threads (a
    batch of 37: two chunks); and both within rounding of the reference."""
    import numba

    from cnngraph.runtime import numba_tiled
    from cnngraph.runtime.numba_activations import TANH
    from cnngraph.runtime.numba_backend import _geometry3
    from cnngraph.runtime.numba_listed import LISTED, MAP_TILES
    from cnngraph.runtime.ranks import as_3d
    c, c_out, size, k, stride, padding, dilation = layer
    geometry = {"stride": stride, "padding": padding, "dilation": dilation}
    rng = np.random.default_rng(c_out)
    x, kernel = rng.normal(size=(37, c) + size), rng.normal(size=(c_out, c) + k)
    bias = rng.normal(size=c_out).astype(dtype)
    tanh = (TANH, 2 / 3, 1.7159) if dtype == np.float32 else (0, 0.0, 0.0)
    want = cs.conv_strided_reference(x, kernel, **geometry)
    out_shape = want.shape
    results = {}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        for layout in (MAP_TILES, LISTED):
            for fused in ((np.zeros(0, dtype), 0, 0.0, 0.0), (bias, *tanh)):
                b, act, gain, scale = fused
                y = numba_tiled.conv_strided(
                    as_3d(x.astype(dtype)), as_3d(kernel.astype(dtype)),
                    *_geometry3(stride, padding, dilation), threads, b, act,
                    dtype(gain), dtype(scale), 0, layout)
                results[threads, layout, act != 0 or b.size > 0] = y.reshape(out_shape)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    for (threads, layout, fused), y in results.items():
        assert y.tobytes() == results[1, MAP_TILES, fused].tobytes(), (threads, layout, fused)
    plain = results[1, LISTED, False]
    assert np.abs(plain - want).max() <= tol * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("batch", [1, 32])
def test_the_seeds_1d_correlation_takes_listed_positions_from_enough_outputs(batch):
    """rows1d.cnn's C2 (64 maps of 12 -> 128 of 8): BLAS at batch 1, listed positions at
    32 (LISTED_MIN_OUTPUTS), the reference's values either way."""
    from cnngraph.runtime import numba_backend as nb
    from cnngraph.runtime import numerics
    rng = np.random.default_rng(batch)
    x, kernel = rng.normal(size=(batch, 64, 12)), rng.normal(size=(128, 64, 5))
    assert nb._listed(x[:, :, None], kernel[:, :, None]) == (batch * 8 >= nb.LISTED_MIN_OUTPUTS)
    got = nb.KERNELS["conv_valid"].run(x.astype(np.float32), kernel.astype(np.float32))
    want = numerics.correlate_valid(x[:, :, None], kernel[:, :, None])[:, :, 0]
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_one_output_per_image_stays_in_blas():
    """LeNet-5's C5 (16 maps of 5x5 -> 120 of 1x1): a listed tile would compute 8
    positions for its one output per image (6x slower than BLAS at batch 256)."""
    from cnngraph.runtime import numba_backend as nb
    x, kernel = np.zeros((256, 16, 5, 5), np.float32), np.zeros((120, 16, 5, 5), np.float32)
    assert not nb._listed(x, kernel)
    assert nb._listed(np.zeros((256, 16, 8, 8), np.float32), kernel)  # 4 x 4 outputs


#: (maps in, maps out, map size, kernel, stride, padding in front and behind, dilation):
#: dlt.cnn's C3 and LeNet-5's (with its table) as the seed's conv_full; simard2003.cnn's
#: stride-2 C2, rows1d.cnn's 1-D C2, shapes3d.cnn's 3-D C2; maps in that take every batch
#: tile width of both dtypes; padding, dilation and a kernel wider than δ
FULL_LAYERS = ((6, 12, (12, 12), (5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1)),
               (6, 16, (14, 14), (5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1)),
               (5, 50, (13, 13), (5, 5), (2, 2), ((0, 0), (0, 0)), (1, 1)),
               (64, 20, (12,), (5,), (1,), ((0, 0),), (1,)),
               (8, 16, (7, 7, 7), (4, 4, 4), (1, 1, 1), ((0, 0),) * 3, (1, 1, 1)),
               (15, 3, (8, 10), (3, 4), (1, 1), ((0, 0), (0, 0)), (1, 1)),
               (4, 7, (9, 11), (3, 4), (1, 2), ((2, 0), (1, 3)), (2, 1)),
               (2, 4, (7, 10), (5, 6), (1, 1), ((0, 0), (0, 0)), (1, 1)),
               (7, 5, (6, 7, 5), (3, 3, 2), (2, 1, 1), ((1, 1), (1, 1), (0, 1)), (1, 1, 2)))


def _full_id(layer):
    c, c_out, size, k, stride, padding, dilation = layer
    return f"c{c}o{c_out}n{'x'.join(map(str, size))}k{'x'.join(map(str, k))}s{stride[0]}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", FULL_LAYERS, ids=_full_id)
def test_input_gradient_along_the_batch_gives_the_map_tiles_bits(layer, dtype, restored_threads):
    """numba_full's input gradient (the images along the vectors, taps outside δ skipped)
    against numba_tiled's (δ zero padded): the same bits, the seed's tap order as well
    where the geometry is the seed's, at batches of one, two and three chunks (the
    last ones part-filled) on 1 and 2 threads; within rounding of the reference."""
    import numba

    from cnngraph.runtime import numba_full, numba_tiled
    from cnngraph.runtime.numba_backend import _geometry3, _size3
    from cnngraph.runtime.ranks import as_3d
    c, c_out, size, k, stride, padding, dilation = layer
    geometry = {"stride": stride, "padding": padding, "dilation": dilation}
    rng = np.random.default_rng(c_out)
    kernel = rng.normal(size=(c_out, c) + k)
    if c_out == 16 and len(size) == 2:
        kernel *= rng.random((c_out, c) + (1,) * len(k)) < 0.6
    out = cs.output_size(size, k, stride, padding, dilation)
    s, before, _, d = _geometry3(stride, padding, dilation)
    orders = (False, True) if set(stride) | set(dilation) == {1} and not any(map(any, padding)) \
        else (False,)
    for batch in (16, 37, 70):
        delta = rng.normal(size=(batch, c_out) + out)
        want = cs.conv_strided_full_reference(delta, kernel, map_size=size, **geometry)
        d3, k3 = as_3d(delta.astype(dtype)), as_3d(kernel.astype(dtype))
        for rows_down in orders:
            tiled = numba_tiled.full(d3, k3, _size3(size), s, before, d, 1, rows_down)
            for threads in (1, 2):
                numba.set_num_threads(threads)
                got = numba_full.full(d3, k3, _size3(size), s, before, d, threads,
                                      rows_down)
                assert got.tobytes() == tiled.tobytes(), (batch, rows_down, threads)
            tol = 1e-12 if dtype == np.float64 else 1e-4
            assert np.abs(got.reshape(want.shape) - want).max() <= tol * np.abs(want).max()


@pytest.mark.parametrize("batch, threads, along", [(8, 1, False), (16, 1, True), (24, 2, False),
                                                   (32, 2, True), (256, 2, True)])
def test_input_gradient_takes_the_batch_tiles_from_half_a_tile_a_chunk(
        batch, threads, along, monkeypatch, restored_threads):
    """The backend's conv_full and conv_strided_full run along the batch where each
    thread's chunk fills half a float32 batch tile (16 images) and numba_tiled would
    compute MARGIN times the products that count (dlt.cnn's C3: 3.3 times); never for
    1x1 δ (LeNet-5's C5: BLAS), nor for modern.cnn's 3x3 "same" convolution of 28x28
    maps (1.1 times)."""
    import numba

    from cnngraph.runtime import numba_backend as nb
    from cnngraph.runtime import numba_full
    calls = []
    real = numba_full.full
    numba.set_num_threads(threads)
    monkeypatch.setattr(numba_full, "full", lambda *a: calls.append(a[0].shape) or real(*a))
    dlt_c3 = np.ones((batch, 12, 8, 8), np.float32), np.ones((12, 6, 5, 5), np.float32)
    nb.KERNELS["conv_full"].run(*dlt_c3)
    nb.KERNELS["conv_strided_full"].run(*dlt_c3, map_size=(12, 12), stride=(1, 1),
                                        padding=((0, 0), (0, 0)), dilation=(1, 1))
    nb.KERNELS["conv_full"].run(np.ones((batch, 120, 1, 1), np.float32),
                                np.ones((120, 16, 5, 5), np.float32))
    nb.KERNELS["conv_strided_full"].run(
        np.ones((batch, 16, 28, 28), np.float32), np.ones((16, 16, 3, 3), np.float32),
        map_size=(28, 28), stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1))
    assert len(calls) == 2 * along


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", FULL_LAYERS, ids=_full_id)
def test_kernel_gradient_gives_the_same_bits_in_any_image_groups(layer, dtype):
    """numba_tiled's kernel gradient with the tiles taking several images a call
    (GROUP_POSITIONS, which the backend passes, and 100 positions) against one image a
    call (positions=1): each sum is the same chain over the images' positions, so the
    bits are the same; at a batch of two chunks (23 and 22 images)."""
    from cnngraph.runtime import numba_tiled
    from cnngraph.runtime.numba_backend import _geometry3
    from cnngraph.runtime.ranks import as_3d
    c, c_out, size, k, stride, padding, dilation = layer
    rng = np.random.default_rng(c)
    out = cs.output_size(size, k, stride, padding, dilation)
    x = as_3d(rng.normal(size=(45, c) + size).astype(dtype))
    delta = as_3d(rng.normal(size=(45, c_out) + out).astype(dtype))
    geometry = _geometry3(stride, padding, dilation)
    k3 = np.array((1,) * (3 - len(k)) + k)
    one = numba_tiled.conv_strided_grad_kernel(x, delta, k3, *geometry, 1)
    for positions in (numba_tiled.GROUP_POSITIONS, 100):
        assert numba_tiled.conv_strided_grad_kernel(x, delta, k3, *geometry,
                                                    positions).tobytes() == one.tobytes()
