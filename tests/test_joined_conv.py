"""numba_joined's forward correlation of a connection table's joined map pairs (the images
along the vectors): the bits of numba_tiled's tiles, which multiply every pair, with
and without the fused bias and float32 tanh, on 1 and 2 threads, within rounding of
the reference; its row split; and when numba_backend's conv_valid takes it.  Their
kernel gradient (numba_joined_kernel) against the reference, on any thread count,
and when conv_grad_kernel takes it.  Their input gradient (numba_joined_full): the
bits of numba_full's batch tiles, its row tiling, and when conv_full takes it."""
import numpy as np
import pytest
from conftest import needs_numba

from cnngraph.runtime import numerics

pytestmark = needs_numba

#: LeNet-5's C3 table (models/lenet5.cnn): output map -> the S2 maps it reads
LENET_C3 = ((0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1), (0, 1, 2, 3),
            (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
            (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5), (0, 1, 2, 3, 4, 5))


def _table(rows, c):
    joined = np.zeros((len(rows), c), bool)
    for o, inputs in enumerate(rows):
        joined[o, list(inputs)] = True
    return joined


def _counted(monkeypatch, module, name: str) -> list:
    """module.name replaced by itself, each call appended to the returned list."""
    calls, real = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a: calls.append(1) or real(*a))
    return calls


#: (joined pairs, input map size, kernel size): LeNet-5's C3 (10 outputs a row: two
#: tiles of 5); maps one to one; a random table on rows of 9 (tiles of 5, then 4) with
#: a 3x3 kernel
TABLES = {"lenet-c3": (_table(LENET_C3, 6), (14, 14), (5, 5)),
          "one-to-one": (np.eye(6, dtype=bool), (14, 14), (5, 5)),
          "random": (np.random.default_rng(7).random((9, 5)) < 0.5, (11, 11), (3, 3))}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("table", TABLES)
def test_joined_pairs_give_the_tiles_bits(table, dtype, restored_threads):
    """Batch 37: two full groups of images and a part one, in float32 (16 lanes) and
    float64 (8)."""
    import numba

    from cnngraph.runtime import numba_joined, numba_tiled
    from cnngraph.runtime.numba_activations import TANH
    joined, size, k = TABLES[table]
    rng = np.random.default_rng(len(joined))
    x = rng.normal(size=(37, joined.shape[1]) + size).astype(dtype)
    kernel = (rng.normal(size=joined.shape + k) * joined[:, :, None, None]).astype(dtype)
    bias = rng.normal(size=len(joined)).astype(dtype)
    want = numerics.correlate_valid(x.astype(np.float64), kernel.astype(np.float64))
    tanh = (TANH, dtype(2 / 3), dtype(1.7159)) if dtype == np.float32 else (0, 0.0, 0.0)
    for threads in (1, 2):
        numba.set_num_threads(threads)
        for b, act, gain, scale in ((np.zeros(0, dtype), 0, dtype(0), dtype(0)),
                                    (bias, *tanh)):
            got = numba_joined.conv_joined(x, kernel, joined, b, act, gain, scale, 0)
            tiles = numba_tiled.conv_valid(x, kernel, threads, b, act, gain, scale, 0)
            assert got.dtype == dtype and got.tobytes() == tiles.tobytes(), (threads, act)
    plain = numba_joined.conv_joined(x, kernel, joined, np.zeros(0, dtype), 0, dtype(0),
                                     dtype(0), 0)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert np.abs(plain - want).max() <= tol * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("wo,kw,split", [(10, 5, (5, 5, 2)), (9, 3, (5, 4, 1)),
                                         (8, 5, (8, 8, 1)), (13, 5, (7, 6, 1)),
                                         (1, 3, (1, 1, 1)), (3, 26, None)])
def test_a_row_is_cut_into_tiles_that_fit_the_registers(wo, kw, split):
    from cnngraph.runtime.numba_joined import REGISTERS, row_split, widest
    assert row_split(wo, widest(kw)) == split
    if split:
        QA, QB, nA = split
        count = nA + (wo - nA * QA) // QB
        assert nA * QA + (count - nA) * QB == wo and 2 * QA + kw - 1 <= REGISTERS


@pytest.mark.parametrize("batch,threads,joined_path", [(37, 1, True), (256, 2, True),
                                                       (37, 2, False), (16, 2, False),
                                                       (10, 1, False), (1, 1, False)])
def test_conv_valid_sums_the_joined_pairs_where_that_is_cheaper(batch, threads, joined_path,
                                                                monkeypatch, restored_threads):
    """LeNet-5's C3 in float32: numba_joined where a thread's groups of 16 images take
    clearly fewer products than its share of the tiles' (at 37 images on two threads
    one thread has two groups, at 16 the other none; at 10 the group is mostly
    padding), the reference's values either way, the table applied to a full kernel."""
    from cnngraph.runtime import numba_backend as nb
    from cnngraph.runtime import numba_joined
    calls = _counted(monkeypatch, numba_joined, "conv_joined")
    joined = _table(LENET_C3, 6)
    rng = np.random.default_rng(batch)
    x, kernel = rng.normal(size=(batch, 6, 14, 14)), rng.normal(size=(16, 6, 5, 5))
    nb.set_threads(threads)
    got = nb.KERNELS["conv_valid"].run(x.astype(np.float32), kernel.astype(np.float32),
                                       mask=joined.astype(np.float64))
    want = numerics.correlate_valid(x, kernel * joined[:, :, None, None])
    assert bool(calls) == joined_path
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("table", TABLES)
def test_joined_kernel_gradient_is_the_reference_on_any_thread_count(table, dtype,
                                                                     restored_threads):
    """numba_joined_kernel at batch 37 (float32: groups of 16, 16 and 5 images; float64:
    five of 8, the last of 5): bitwise the same on 1 and 2 threads, within rounding of
    the reference on the joined pairs, exactly zero elsewhere."""
    import numba

    from cnngraph.runtime import numba_joined_kernel
    joined, size, k = TABLES[table]
    rng = np.random.default_rng(len(joined) + 1)
    x = rng.normal(size=(37, joined.shape[1]) + size)
    out = tuple(n - m + 1 for n, m in zip(size, k))
    delta = rng.normal(size=(37, len(joined)) + out)
    want = numerics.correlate_kernel(x, delta, *k) * joined[:, :, None, None]
    got = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        got.append(numba_joined_kernel.conv_grad_kernel_joined(
            x.astype(dtype), delta.astype(dtype), *k, joined))
    assert got[0].dtype == dtype and got[0].tobytes() == got[1].tobytes()
    assert not got[0][~joined].any()
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert np.abs(got[0] - want).max() <= tol * np.abs(want).max()


@pytest.mark.parametrize("batch,joined_path", [(37, True), (8, True), (4, False)])
def test_conv_grad_kernel_sums_the_joined_pairs_where_that_is_cheaper(batch, joined_path,
                                                                      monkeypatch,
                                                                      restored_threads):
    """LeNet-5's C3 in float32: numba_joined_kernel where its groups take at most 1.25
    times numba_conv's products (at batch 4 one group of 16 lanes takes 2.5 times),
    the reference's values either way, and the same bytes on one thread and on two:
    the two kernels sum in other orders, so the choice must not depend on the thread
    count."""
    from cnngraph.runtime import numba_backend as nb
    from cnngraph.runtime import numba_joined_kernel
    calls = _counted(monkeypatch, numba_joined_kernel, "conv_grad_kernel_joined")
    joined = _table(LENET_C3, 6)
    rng = np.random.default_rng(batch)
    x, delta = rng.normal(size=(batch, 6, 14, 14)), rng.normal(size=(batch, 16, 10, 10))
    got = []
    for threads in (1, 2):
        nb.set_threads(threads)
        got.append(nb.KERNELS["conv_grad_kernel"].run(
            x.astype(np.float32), delta.astype(np.float32), size=(5, 5),
            mask=joined.astype(np.float64)))
    want = numerics.correlate_kernel(x, delta, 5, 5) * joined[:, :, None, None]
    assert len(calls) == (2 if joined_path else 0)
    assert got[0].tobytes() == got[1].tobytes()
    assert np.abs(got[0] - want).max() <= 1e-5 * np.abs(want).max()


#: TABLES and a table under which input map 6 reaches no output map
FULL_TABLES = {**TABLES, "unread-input": (np.eye(6, 7, dtype=bool), (14, 14), (5, 5))}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("table", FULL_TABLES)
def test_joined_input_gradient_gives_numba_full_bits(table, dtype, restored_threads):
    """numba_joined_full at batch 37 (float32: groups of 16, 16 and 5 images): the bytes
    of numba_full's batch tiles, which multiply every pair, on 1 and 2 threads; within
    rounding of the reference; zero for an input map no output map reads."""
    import numba

    from cnngraph.runtime import numba_full, numba_joined_full
    joined, size, k = FULL_TABLES[table]
    rng = np.random.default_rng(len(joined) + 2)
    out = tuple(n - m + 1 for n, m in zip(size, k))
    delta = rng.normal(size=(37, len(joined)) + out)
    kernel = rng.normal(size=joined.shape + k) * joined[:, :, None, None]
    want = numerics.convolve_full(delta, kernel)
    delta, kernel = delta.astype(dtype), kernel.astype(dtype)
    one, none = np.ones(3, np.int64), np.zeros(3, np.int64)
    for threads in (1, 2):
        numba.set_num_threads(threads)
        got = numba_joined_full.full_joined(delta, kernel, joined)
        tiles = numba_full.full(delta[:, :, None], kernel[:, :, None],
                                np.array((1,) + size, np.int64), one, none, one,
                                threads, True)[:, :, 0]
        assert got.dtype == dtype and got.tobytes() == tiles.tobytes(), threads
    assert not got[:, ~joined.any(axis=0)].any()
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert np.abs(got - want).max() <= tol * np.abs(want).max()


@pytest.mark.parametrize("W,kw", [(14, 5), (11, 3), (12, 5), (5, 5), (30, 7)])
def test_an_input_gradient_row_is_tiled_without_products_outside_delta(W, kw):
    """The tiles cover the row once, fit the registers, and each keeps exactly the δ
    columns inside δ (wo = W − kw + 1 of them)."""
    from cnngraph.runtime.numba_joined import REGISTERS
    from cnngraph.runtime.numba_joined_full import _tiles_along
    wo, x = W - kw + 1, 0
    for x0, Q, lo, hi in _tiles_along(W, wo, kw):
        assert x0 == x and 2 * Q + kw - 1 <= REGISTERS
        inside = [u for u in range(Q + kw - 1) if 0 <= x0 - kw + 1 + u < wo]
        assert (lo, hi) == (inside[0], inside[-1] + 1)
        x += Q
    assert x == W


@pytest.mark.parametrize("batch,threads,joined_path", [(37, 1, True), (256, 2, True),
                                                       (50, 2, True), (4, 1, False)])
def test_conv_full_sums_the_joined_pairs_where_numba_full_would_run(batch, threads,
                                                                     joined_path,
                                                                     monkeypatch,
                                                                     restored_threads):
    """LeNet-5's C3 in float32: numba_joined_full wherever numba_backend's conv_full takes
    numba_full's batch tiles (at batch 4 a chunk is too few images for them, and
    another kernel, with other bits, runs), with the bytes of the unmasked call."""
    from cnngraph.runtime import numba_backend as nb
    from cnngraph.runtime import numba_joined_full
    calls = _counted(monkeypatch, numba_joined_full, "full_joined")
    joined = _table(LENET_C3, 6)
    rng = np.random.default_rng(batch)
    delta = rng.normal(size=(batch, 16, 10, 10)).astype(np.float32)
    kernel = rng.normal(size=(16, 6, 5, 5)).astype(np.float32)
    nb.set_threads(threads)
    got = nb.KERNELS["conv_full"].run(delta, kernel, mask=joined.astype(np.float64))
    assert bool(calls) == joined_path
    unmasked = nb.KERNELS["conv_full"].run(delta, kernel * joined[:, :, None, None])
    assert got.tobytes() == unmasked.tobytes()
