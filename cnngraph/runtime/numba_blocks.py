"""Matrix products in two fixed row blocks on numba's threads: LeNet-5's C5 (a kernel
that covers its map: three products, runtime/numerics.py) and the dense layers, which
ran on one BLAS thread while the convolutions ran on all (BLAS given more threads
fought numba's OpenMP workers for the cores: 0.18x).

The rows of op(A) in C = op(A) op(B) are cut in two halves whatever the thread count
(`HALVES`), and each half is one call of NumPy's own OpenBLAS (its CBLAS ?gemm, found
in the wheel's numpy.libs), from a numba parallel loop that holds no GIL: on two
threads the halves run side by side, on one after each other, so the bits never
depend on the threads.  Here (OpenBLAS 0.3.31, its SkylakeX kernels) each half is
also np.dot's bits for its rows: OpenBLAS sums each value of C over the inner
dimension alike whatever the rows around it, for products clear of its kernels for
small ones (tests/test_blocks.py checks the products of LeNet-5 and others on 1 and
2 threads); elsewhere the halves keep their own bits on any thread count.  Where
NumPy's OpenBLAS is not found (another BLAS) or a half would be small, np.dot (or @)
as before.  The ctypes functions are constants in the compiled loops, so numba
cannot cache them: they compile on a process's first product (about 0.3 s).
"""
from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

#: multiply-adds from which a product is cut in halves: each half 10⁶ or more, clear of
#: OpenBLAS's kernels for small products, whose sums may follow the shape
MIN_WORK = 2 * 100 ** 3
#: rows a product needs before it is cut (two halves of 8)
MIN_ROWS = 16
HALVES = 2
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def _openblas():
    """NumPy's OpenBLAS (PyPI wheels bundle scipy-openblas in numpy.libs), or None."""
    libs = Path(np.__file__).parent.parent / "numpy.libs"
    for path in sorted(libs.glob("libscipy_openblas*.so*")):
        lib = ctypes.CDLL(str(path))
        suffix = "64_" if "openblas64" in path.name else ""
        try:
            gemm = {np.float32: getattr(lib, f"scipy_cblas_sgemm{suffix}"),
                    np.float64: getattr(lib, f"scipy_cblas_dgemm{suffix}")}
            threads = getattr(lib, f"scipy_openblas_get_num_threads{suffix}")
        except AttributeError:
            continue
        index = ctypes.c_int64 if suffix else ctypes.c_int
        for dtype, real in ((np.float32, ctypes.c_float), (np.float64, ctypes.c_double)):
            gemm[dtype].restype = None
            gemm[dtype].argtypes = [ctypes.c_int] * 3 + [index] * 3 + [
                real, ctypes.c_void_p, index, ctypes.c_void_p, index, real, ctypes.c_void_p,
                index]
        threads.restype = ctypes.c_int
        return gemm, threads
    return None


_FOUND = _openblas()


def _loops(gemm, one, zero, itemsize):
    """(in parallel, one after the other): C's halves, each one gemm call."""
    def halves(pa, ta, lda, row_a, pb, tb, ldb, pc, m, n, k):
        per = (m + HALVES - 1) // HALVES
        for half in prange(HALVES):
            r0 = half * per
            rows = min(m, r0 + per) - r0
            gemm(ROW_MAJOR, ta, tb, rows, n, k, one, pa + r0 * row_a, lda, pb, ldb, zero,
                 pc + r0 * n * itemsize, n)
    return njit(parallel=True, nogil=True)(halves), njit(nogil=True)(halves)


@functools.cache
def _compiled(dtype: type):
    gemm, _ = _FOUND
    return _loops(gemm[dtype], dtype(1), dtype(0), np.dtype(dtype).itemsize)


def _operand(a):
    """(CBLAS transpose flag, leading dimension) of a 2-D view, or None."""
    if a.flags.c_contiguous:
        return NO_TRANS, max(1, a.shape[1])
    if a.flags.f_contiguous:
        return TRANS, max(1, a.shape[0])
    return None


def dot(a, b, fallback=np.dot):
    """a @ b for 2-D a and b, in two row halves where that pays (`MIN_WORK`, `MIN_ROWS`);
    ``fallback(a, b)`` elsewhere, the product the caller computed before."""
    m, k = a.shape
    n = b.shape[1]
    ops = _operand(a), _operand(b)
    if _FOUND is None or m < MIN_ROWS or m * n * k < MIN_WORK or a.dtype != b.dtype \
            or a.dtype.type not in _FOUND[0] or None in ops:
        return fallback(a, b)
    c = np.empty((m, n), a.dtype)
    parallel, serial = _compiled(a.dtype.type)
    # on one numba thread, or where BLAS runs threads of its own in each call: in turn
    run = parallel if numba.get_num_threads() > 1 and _FOUND[1]() == 1 else serial
    run(a.ctypes.data, ops[0][0], ops[0][1], a.strides[0], b.ctypes.data, ops[1][0],
        ops[1][1], c.ctypes.data, m, n, k)
    return c


def matmul(a, b, *, transpose_a=False, transpose_b=False):
    """The matmul op (rules/dense.py) through `dot`; np.dot where it does not cut."""
    return dot(a.T if transpose_a else a, b.T if transpose_b else b)
