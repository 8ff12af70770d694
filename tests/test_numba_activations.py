"""numba_activations' float32 sigmoid and tanh (the numba backend's, for float32 maps):
within a few float32 ulp of the float64 maths everywhere (measured: sigmoid 1.0-1.2,
NumPy's float32 1.7-1.8; tanh below 4.3 with its scale, NumPy's 2.5), from the values
the maps hold to where exp overflows and underflows and tanh saturates, NaN and
infinities passed through, in place equal to out of place, and bitwise the same on 1
and 2 threads."""
import numpy as np
import pytest
from conftest import needs_numba

pytestmark = needs_numba
EPS = np.finfo(np.float32).eps
LECUN = dict(a=1.7159, b=2 / 3)  # LeNet-5's scaled tanh


@pytest.fixture(scope="module")
def activations():
    from cnngraph.runtime import numba_activations
    return numba_activations


def _sigmoid(activations, u, gain):
    return activations.activate(u, activations.SIGMOID, np.float32(-gain), np.float32(1))


def _tanh(activations, u, a=1.0, b=1.0):
    return activations.activate(u, activations.TANH, np.float32(b), np.float32(a))


def _sweep():
    """The maps' range densely, then out to ±200, and values near 0."""
    rng = np.random.default_rng(0)
    return np.concatenate([np.linspace(-1, 1, 20001), rng.standard_normal(200_000) * 4,
                           np.linspace(-200, 200, 40001), rng.standard_normal(20_000) * 1e-3,
                           [0.0, -0.0, 1e-30, -1e-30, 1e-45, 0.3465, 0.3466, -0.3466]]
                          ).astype(np.float32)


def _ulps(got, want):
    """|got − want| in units of float32's spacing at want; where want is below float32's
    normal numbers (a sigmoid under 1.2e-38, as NumPy's float32 sigmoid gives too) 0
    if got is as small, else inf."""
    tiny = np.finfo(np.float32).tiny
    normal = np.abs(want) >= tiny
    error = np.abs(got.astype(np.float64) - want) / (np.abs(want) * EPS + ~normal)
    return np.where(normal, error, np.where(np.abs(got) <= tiny, 0.0, np.inf))


@pytest.mark.parametrize("gain", [1.0, 2.5, 1 / 3])
def test_sigmoid_within_two_ulp(activations, gain):
    u = _sweep()
    got = _sigmoid(activations, u, gain)
    negated = (u * np.float32(-gain)).astype(np.float64)  # the float32 product both compute
    assert got.dtype == np.float32
    assert _ulps(got, 1 / (1 + np.exp(negated))).max() <= 2


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (LECUN["a"], LECUN["b"]), (2.0, 0.1)])
def test_tanh_within_five_ulp(activations, a, b):
    """Small arguments too: tanh takes exp(2|x|) − 1 from a series there, so x near 0
    keeps its relative precision (1 − 2/(exp(2x) + 1) would lose it)."""
    u = _sweep()
    got = _tanh(activations, u, a, b)
    product = (u * np.float32(b)).astype(np.float64)
    assert got.dtype == np.float32
    assert _ulps(got, np.float64(np.float32(a)) * np.tanh(product)).max() <= 5


def test_saturation_nan_and_infinities(activations):
    u = np.array([np.nan, np.inf, -np.inf, 200, -200, 88.8, -89.0, 104, -104], np.float32)
    got = _sigmoid(activations, u, 1.0)
    assert np.isnan(got[0])
    assert list(got[1:]) == pytest.approx([1, 0, 1, 0, 1, 1 / (1 + np.exp(89.0)), 1, 0],
                                          abs=1e-38)
    got = _tanh(activations, u, 2.0, 1.0)
    assert np.isnan(got[0]) and list(got[1:]) == [2, -2, 2, -2, 2, -2, 2, -2]


@pytest.mark.parametrize("act", ["SIGMOID", "TANH"])
def test_in_place_and_any_thread_count_give_the_same_bits(activations, act, restored_threads):
    import numba
    u = (np.random.default_rng(1).standard_normal(3 * activations.BLOCK + 17) * 5
         ).astype(np.float32)
    code, gain, scale = getattr(activations, act), np.float32(-0.7), np.float32(1.3)
    results = []
    for threads in (1, 2):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        results.append(activations.activate(u, code, gain, scale))
        in_place = u.copy()
        activations.activate_in_place(in_place, code, gain, scale)
        results.append(in_place)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    in_place = u.copy()
    activations.activate_in_place(in_place, code, -0.7, 1.3)  # Python floats: float32 too
    results += [activations.activate(u, code, -0.7, 1.3), in_place]
    assert all(np.array_equal(results[0], r) for r in results[1:])


@pytest.mark.parametrize("op, attrs", [("sigmoid", {"gain": 1.5}), ("tanh", LECUN)])
def test_the_backends_in_place_form_equals_its_run_on_strided_maps_too(op, attrs):
    """The fused plan calls the in-place form; a strided buffer goes through a copy and
    must give the run's bits, as a contiguous one does."""
    from cnngraph.runtime.numba_backend import KERNELS
    maps = (np.random.default_rng(2).standard_normal((40, 6, 24, 48)) * 3).astype(np.float32)
    for u in (maps, maps[..., ::2]):
        want = KERNELS[op].run(u, **attrs)
        got = u.copy() if u.flags.c_contiguous else np.empty_like(maps)[..., ::2]
        got[...] = u
        KERNELS[op].in_place(got, **attrs)
        assert np.array_equal(got, want)
