"""The numba backend's convolutions on 1-D and 3-D maps (issue 22): every conv op
against its reference in float32 and float64, at batches that take each chunking
branch (fewer images than threads, one chunk, several of unequal size), with
four-map blocks and their remainders, tap rows of 1 to 5 taps, strides that leave
kernel taps on several phases (or none), padding and dilation; and bitwise the
same results on 1 and 2 threads.  (2-D: test_conv_options, test_backend_kernels.)"""
import numpy as np
import pytest
from conftest import needs_numba

from cnngraph import default_registry
from cnngraph.rules.conv_strided import output_size

pytestmark = needs_numba
REGISTRY = default_registry()

#: (maps in, maps out, map size, kernel size, stride, padding, dilation)
CASES = {
    1: [(3, 5, (29,), (5,), (1,), ((0, 0),), (1,)),
        (5, 4, (17,), (3,), (2,), ((1, 1),), (1,)),
        (2, 6, (23,), (4,), (3,), ((2, 0),), (2,)),
        (4, 3, (9,), (1,), (2,), ((0, 1),), (1,))],
    3: [(2, 5, (6, 7, 8), (3, 2, 3), (1, 1, 1), ((0, 0),) * 3, (1, 1, 1)),
        (5, 4, (7, 6, 9), (3, 3, 3), (2, 1, 2), ((1, 1), (1, 0), (0, 2)), (1, 2, 1)),
        (3, 2, (9, 8, 5), (2, 3, 1), (3, 2, 1), ((1, 0), (0, 0), (1, 1)), (2, 1, 1)),
        (1, 6, (16, 16, 16), (5, 5, 5), (2, 2, 2), ((1, 2),) * 3, (1, 1, 1))],
}
BATCHES = (1, 2, 37)


def _attrs(stride, padding, dilation):
    return {"stride": stride, "padding": padding, "dilation": dilation}


def _unit(stride, padding, dilation):
    return set(stride) == {1} and set(dilation) == {1} and not any(map(any, padding))


def calls(rng, case, batch, masked):
    """(op, inputs, attrs) of each conv op for one geometry: the strided triple, and
    conv_valid's triple where the geometry is the unit one."""
    c_in, c_out, size, ksize, stride, padding, dilation = case
    out = output_size(size, ksize, stride, padding, dilation)
    x = rng.normal(size=(batch, c_in) + size)
    kernel = rng.normal(size=(c_out, c_in) + ksize)
    delta = rng.normal(size=(batch, c_out) + out)
    mask = (rng.random((c_out, c_in)) < 0.7).astype(np.int8) if masked else None
    geometry = {**_attrs(stride, padding, dilation), "mask": mask}
    yield "conv_strided", (x, kernel), geometry
    yield "conv_strided_full", (delta, kernel), {"map_size": size, **geometry}
    yield "conv_strided_grad_kernel", (x, delta), {"size": ksize, **geometry}
    if _unit(stride, padding, dilation):
        yield "conv_valid", (x, kernel), {"mask": mask}
        yield "conv_full", (delta, kernel), {"mask": mask}
        yield "conv_grad_kernel", (x, delta), {"size": ksize, "mask": mask}


def _ids():
    for rank, cases in CASES.items():
        for j, case in enumerate(cases):
            yield pytest.param(rank, case, id=f"{rank}d-{j}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("rank,case", list(_ids()))
def test_numba_conv_kernels_agree_with_the_reference(rank, case, dtype):
    backend = REGISTRY.backend("numba")
    rng = np.random.default_rng(rank)
    tol = 1e-11 if dtype == np.float64 else 3e-5
    for batch in BATCHES:
        for op, inputs, attrs in calls(rng, case, batch, masked=batch == 37):
            got = backend.kernels[op].run(*[a.astype(dtype) for a in inputs], **attrs)
            want = REGISTRY.op(op).reference(*inputs, **attrs)
            assert got.dtype == dtype and got.shape == want.shape, (op, batch)
            scale = max(1.0, np.abs(want).max())
            assert np.abs(got - want).max() <= tol * scale * np.sqrt(case[0] * np.prod(case[3])), \
                (op, batch)


@pytest.mark.parametrize("rank,case", list(_ids()))
def test_numba_conv_kernels_are_bitwise_the_same_on_1_and_2_threads(rank, case,
                                                                    restored_threads):
    """Batch 20: one chunk on one thread, two on two (and 3: fewer images than 4 threads
    would cut); float32, where reassociation shows soonest."""
    from cnngraph.runtime import numba_backend as nb
    backend = REGISTRY.backend("numba")
    results = []
    for threads in (1, 2):
        nb.set_threads(threads)
        rng = np.random.default_rng(7)
        results.append([backend.kernels[op].run(*[a.astype(np.float32) for a in inputs],
                                                 **attrs)
                         for batch in (20, 3)
                         for op, inputs, attrs in calls(rng, case, batch, masked=False)])
    for one, two in zip(*results):
        assert np.array_equal(one, two)


def test_one_dimensional_valid_convolutions_are_the_two_dimensional_kernels_bitwise():
    """A 1-D conv_valid is the 2-D kernel on maps one pixel high: the same sums."""
    backend = REGISTRY.backend("numba")
    rng = np.random.default_rng(3)
    x, kernel = rng.normal(size=(37, 4, 28)), rng.normal(size=(6, 4, 5))
    one = backend.kernels["conv_valid"].run(x, kernel)
    two = backend.kernels["conv_valid"].run(x[:, :, None], kernel[:, :, None])
    assert np.array_equal(one, two[:, :, 0])
