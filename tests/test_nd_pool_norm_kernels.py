"""The numba kernels of pooling, normalisation and subsampling in 1 and 3 spatial
dimensions, and in 2 where they changed with them (runtime/numba_pool.py,
numba_norm.py, numba_maps.py): each against its rule's reference in float32 and
float64 (tools/check_ops.verify_kernel), over geometries that reach every branch
(windows inside the map and reaching into the padding; overlapping windows,
tiling ones with pixels left over, gaps between windows), at batch 1 and 3;
max-pool ties and NaN; the same bits on 1 and 2 threads."""
import numpy as np
import pytest
from conftest import needs_numba

from cnngraph import default_registry
from cnngraph.core.registry import Example
from cnngraph.tools.check_ops import verify_kernel

pytestmark = needs_numba
REGISTRY = default_registry()
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)

#: (map size, window, stride, padding) per rank
WINDOWS = {
    1: [((11,), (3,), (2,), (1,)),                    # overlapping, padding at both ends
        ((9,), (2,), (2,), (0,)),                     # tiling, the last pixel left over
        ((10,), (2,), (3,), (1,))],                   # gaps between windows, padding
    2: [((9, 7), (2, 2), (2, 2), (0, 0)),             # tiling, a row and a column left over
        ((7, 6), (3, 2), (2, 1), (1, 1))],            # overlapping, padding
    3: [((5, 6, 7), (2, 2, 2), (2, 2, 2), (0, 0, 0)),  # tiling, a plane, row, column left
        ((5, 4, 6), (3, 2, 3), (2, 1, 2), (1, 0, 1)),  # overlapping, padding
        ((7, 6, 5), (2, 3, 2), (3, 3, 3), (1, 1, 0))],  # gaps, padding
}
GEOMETRIES = [pytest.param(rank, *g, id=f"{rank}d-{'x'.join(map(str, g[1]))}/"
                           f"{'x'.join(map(str, g[2]))}p{'x'.join(map(str, g[3]))}")
              for rank, found in WINDOWS.items() for g in found]


def run(op, *inputs, **attrs):
    return REGISTRY.backend("numba").kernel(op).run(*inputs, **attrs)


def out_size(spatial, size, stride, padding):
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(spatial, size, stride, padding))


def pool_cases(draw, spatial, size, stride, padding):
    """{op: [(label, Example)]} at batch 1 and 3, values from draw(shape)."""
    attrs = dict(size=size, stride=stride, padding=padding)
    cases = {"pool_max": [], "pool_max_grad": [], "pool_mean": [], "pool_mean_grad": []}
    for batch in (1, 3):
        x = draw((batch, 2) + spatial)
        delta = draw((batch, 2) + out_size(spatial, size, stride, padding))
        label = f"batch {batch}"
        cases["pool_max"].append((label, Example((x,), attrs)))
        cases["pool_max_grad"].append((label, Example((x, delta), attrs)))
        cases["pool_mean"].append((label, Example((x,), attrs)))
        cases["pool_mean_grad"].append((label, Example((delta,), {**attrs,
                                                                  "input_size": spatial})))
    return cases


def assert_agrees(op, cases, dtype):
    reports = verify_kernel(REGISTRY, "numba", op, cases, dtype)
    assert reports
    bad = "\n".join(f"{r.check}: error {r.error:.2e} on {r.detail}" for r in reports if not r.ok)
    assert not bad, bad


@DTYPES
@pytest.mark.parametrize("rank,spatial,size,stride,padding", GEOMETRIES)
def test_pooling_kernels_agree_with_the_references(rank, spatial, size, stride, padding, dtype):
    rng = np.random.default_rng(rank)
    for op, cases in pool_cases(lambda shape: rng.normal(size=shape), spatial, size, stride,
                                padding).items():
        assert_agrees(op, cases, dtype)


@pytest.mark.parametrize("rank,spatial,size,stride,padding", GEOMETRIES)
def test_max_pool_ties_go_to_the_first_tap_in_row_major_order(rank, spatial, size, stride,
                                                              padding):
    """Values from {0, 1, 2}: most windows hold their maximum more than once; the
    values and the gradient are the reference's exactly (one δ per winner where
    windows do not overlap, the same sums in the same order where they do)."""
    rng = np.random.default_rng(10 + rank)
    cases = pool_cases(lambda shape: rng.integers(0, 3, shape).astype(float),
                       spatial, size, stride, padding)
    for op in ("pool_max", "pool_max_grad"):
        for _, example in cases[op]:
            want = REGISTRY.op(op).reference(*example.inputs, **example.attrs)
            assert np.array_equal(run(op, *example.inputs, **example.attrs), want), op


def test_a_tie_in_3d_goes_to_the_first_tap_depth_then_row_then_column():
    """Each 2x2x2 window holds its maximum twice, one plane apart, one row apart or
    one column apart: δ goes to the first in row-major order, and only there."""
    x = np.zeros((1, 1, 2, 2, 4))
    x[0, 0, 0, 1, 0] = x[0, 0, 1, 0, 0] = 5     # window 0: (0, 1, 0) before (1, 0, 0)
    x[0, 0, 1, 0, 3] = x[0, 0, 1, 1, 2] = 7     # window 1: (1, 0, 3) before (1, 1, 2)
    attrs = dict(size=(2, 2, 2), stride=(2, 2, 2), padding=(0, 0, 0))
    got = run("pool_max_grad", x, np.array([[[[[1.0, 2.0]]]]]), **attrs)
    want = np.zeros_like(x)
    want[0, 0, 0, 1, 0], want[0, 0, 1, 0, 3] = 1, 2
    assert np.array_equal(got, want)
    assert np.array_equal(run("pool_max", x, **attrs), [[[[[5, 7]]]]])


@pytest.mark.parametrize("rank", [1, 3])
def test_nan_wins_its_windows_in_every_rank(rank):
    """A NaN pixel passes to every window that reads it, padding and all, as the
    reference's max does; its gradient goes to the NaN."""
    spatial, size, stride, padding = WINDOWS[rank][1 if rank == 3 else 0]
    x = np.random.default_rng(3).normal(size=(2, 2) + spatial)
    x[(1, 0) + tuple(n // 2 for n in spatial)] = np.nan
    attrs = dict(size=size, stride=stride, padding=padding)
    for op in ("pool_max", "pool_mean"):     # NaN where the reference has it, and only there
        np.testing.assert_allclose(run(op, x, **attrs), REGISTRY.op(op).reference(x, **attrs),
                                   rtol=1e-13, atol=1e-15, err_msg=op)
    delta = np.ones((2, 2) + out_size(spatial, size, stride, padding))
    assert np.array_equal(run("pool_max_grad", x, delta, **attrs),
                          REGISTRY.op("pool_max_grad").reference(x, delta, **attrs))


NORM_SHAPES = [(5, 3), (5, 3, 7), (1, 2, 9), (5, 3, 9, 7), (3, 2, 5, 4, 6), (1, 3, 3, 4, 2)]


@DTYPES
@pytest.mark.parametrize("shape", NORM_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_norm_kernels_agree_with_the_references(shape, dtype):
    """Batch and layer norm over maps of every rank (and vectors), statistics over
    all the positions."""
    rng = np.random.default_rng(len(shape))
    x, delta = rng.normal(size=shape) * 1.5 + 0.5, rng.normal(size=shape)
    stats = (rng.normal(size=shape[1]), rng.uniform(0.5, 2, size=shape[1]))
    eps = {"eps": 1e-5}
    for op, inputs in (("norm_batch", (x, *stats)), ("norm_batch_grad", (x, delta)),
                       ("norm_layer", (x,)), ("norm_layer_grad", (x, delta))):
        assert_agrees(op, [("", Example(inputs, eps))], dtype)


BLOCKS = [((12,), (3,)), ((12,), 4), ((4, 6, 8), (2, 3, 2)), ((4, 6, 8), 2), ((6, 8), (3, 2)),
          ((6, 8), (2, 2))]


@DTYPES
@pytest.mark.parametrize("spatial,factor", BLOCKS, ids=lambda v: str(v))
def test_block_kernels_agree_with_the_references(spatial, factor, dtype):
    """subsample_sum and upsample_kron with one factor or one per dimension: 1-D, 3-D
    and oblong 2-D blocks on numba_maps' 3-D kernels, square 2-D ones on the seed's."""
    rng = np.random.default_rng(len(spatial))
    for batch in (1, 3):
        x = rng.normal(size=(batch, 2) + spatial)
        f = (factor,) * len(spatial) if np.ndim(factor) == 0 else factor
        small = rng.normal(size=(batch, 2) + tuple(n // b for n, b in zip(spatial, f)))
        assert_agrees("subsample_sum", [("", Example((x,), {"factor": factor}))], dtype)
        assert_agrees("upsample_kron", [("", Example((small,), {"factor": factor}))], dtype)


def test_2x2_blocks_have_the_general_kernels_bits():
    """The shipped models' 2x2 subsampling runs kernels of its own (one factor or the
    same factor twice); their bits are the general 3-D kernels', which add each block
    in the same order, in both dtypes and with signed zeros in the maps."""
    from cnngraph.runtime import numba_maps
    rng = np.random.default_rng(4)
    for dtype in (np.float32, np.float64):
        x = rng.normal(size=(20, 6, 28, 28)).astype(dtype)
        x[:, :, :4, :6] = -0.0
        general = numba_maps.block_sum_nd(x, (2, 2))
        for factor in (2, (2, 2)):
            down = run("subsample_sum", x, factor=factor)
            assert np.array_equal(down, general)
            assert np.array_equal(np.signbit(down), np.signbit(general))
            assert np.array_equal(run("upsample_kron", general, factor=factor),
                                  numba_maps.upsample_kron_nd(general, (2, 2)))


def _thread_cases():
    rng = np.random.default_rng(5)
    for rank in (1, 3):
        spatial, size, stride, padding = WINDOWS[rank][1 if rank == 3 else 0]
        for op, cases in pool_cases(lambda shape: rng.normal(size=shape), spatial, size, stride,
                                padding).items():
            yield f"{op} {rank}-D", op, cases[-1][1]
    for shape in ((37, 3, 11), (9, 3, 5, 4, 6)):
        x, delta = rng.normal(size=shape), rng.normal(size=shape)
        stats = (np.zeros(shape[1]), np.ones(shape[1]))
        for op, inputs in (("norm_batch", (x, *stats)), ("norm_batch_grad", (x, delta)),
                           ("norm_layer", (x,)), ("norm_layer_grad", (x, delta))):
            yield f"{op} {len(shape) - 2}-D", op, Example(inputs, {"eps": 1e-5})
    for spatial, factor in (((12,), (3,)), ((4, 6, 8), (2, 3, 2))):
        yield f"subsample_sum {len(spatial)}-D", "subsample_sum", Example(
            (rng.normal(size=(9, 3) + spatial),), {"factor": factor})
        yield f"upsample_kron {len(spatial)}-D", "upsample_kron", Example(
            (rng.normal(size=(9, 3) + spatial),), {"factor": factor})


@pytest.mark.parametrize("dtype", [np.float32], ids=lambda d: d.__name__)
@pytest.mark.parametrize("label,op,example", [pytest.param(*c, id=c[0]) for c in _thread_cases()])
def test_the_same_bits_on_1_and_2_threads(label, op, example, dtype, restored_threads):
    from cnngraph.runtime.numba_backend import set_threads
    inputs = [np.asarray(a, dtype) for a in example.inputs]
    runs = []
    for threads in (1, 2):
        set_threads(threads)
        runs.append(run(op, *inputs, **example.attrs))
    assert np.array_equal(runs[0], runs[1]), label
