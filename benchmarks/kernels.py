"""The convolution kernels' code paths, side by side, on dlt.cnn's and LeNet-5's shapes.

    python benchmarks/kernels.py

For each layer shape and batch size, microseconds per call of im2col built by
per-kernel-tap row copies ("rows") or by one gather through a cached index
("gather"), and of col2im by shifted adds in batch-last layout ("shifted") or
by one np.bincount scatter through the same index ("scatter").  A '*' marks the
path numerics.columns / numerics.convolve_full picks for that shape.  Then the
block sum and Kronecker upsample, strided against reshaped.
"""
import time

import numpy as np
from threadpoolctl import threadpool_limits

from cnngraph.runtime import numerics

# C_in, H, C_out of each 5x5 convolution
SHAPES = {"dlt C1": (1, 28, 6), "dlt C3": (6, 12, 12),
          "lenet C1": (1, 32, 6), "lenet C3": (6, 14, 16), "lenet C5": (16, 5, 120)}


def per_call(fn, seconds=0.2, rounds=5):
    """Microseconds per call: the best of ``rounds`` rounds (this machine is noisy)."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / rounds:
            fn()
            n += 1
        best = min(best, (time.perf_counter() - start) / n)
    return 1e6 * best


def picked(dispatch, spies, *args):
    """Which of ``spies`` (name -> function attribute of numerics) ``dispatch`` calls."""
    chosen = []
    saved = {name: getattr(numerics, name) for name in spies}
    try:
        for name, path in saved.items():
            setattr(numerics, name, lambda *a, name=name, path=path: chosen.append(name) or path(*a))
        dispatch(*args)
    finally:
        for name, path in saved.items():
            setattr(numerics, name, path)
    return chosen[0]


def convolutions(dtype):
    print(f"\n{np.dtype(dtype).name}: im2col rows / gather, col2im shifted / scatter (us per call)")
    rng = np.random.default_rng(0)
    im2col = {"columns_by_rows": numerics.columns_by_rows, "columns_gathered": numerics.columns_gathered}
    col2im = {"convolve_full_shifted": numerics.convolve_full_shifted,
              "convolve_full_scattered": numerics.convolve_full_scattered}
    for batch in (1, 10, 50, 256):
        for name, (c_in, h, c_out) in SHAPES.items():
            x = rng.random((batch, c_in, h, h)).astype(dtype)
            kernel = rng.random((c_out, c_in, 5, 5)).astype(dtype)
            delta = rng.random((batch, c_out, h - 4, h - 4)).astype(dtype)
            cells = []
            for paths, dispatch, args in ((im2col, numerics.columns, (x, 5, 5)),
                                          (col2im, numerics.convolve_full, (delta, kernel))):
                chosen = picked(dispatch, paths, *args)
                cells.append(" /".join(f"{per_call(lambda: path(*args)):>7.0f}{'*' if n == chosen else ' '}"
                                       for n, path in paths.items()))
            print(f"  {name:<9}{batch:>4}   " + "      ".join(cells))


def block_sum_reshaped(x, f):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // f, f, w // f, f).sum(axis=(3, 5))


def upsample_broadcast(x, f):
    n, c, h, w = x.shape
    return np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, f, w, f)).reshape(
        n, c, h * f, w * f)


def subsampling(rng):
    print("\nblock sum and Kronecker upsample, factor 2 (us): strided / reshaped")
    with threadpool_limits(1, user_api="blas"):
        for shape in [(1, 6, 28, 28), (50, 6, 28, 28), (50, 16, 10, 10), (256, 6, 28, 28)]:
            x = rng.random(shape, dtype=np.float32)
            d = x[:, :, ::2, ::2].copy()
            print(f"  {'x'.join(map(str, shape)):<14} sum {per_call(lambda: numerics.block_sum(x, 2)):>7.0f}"
                  f" / {per_call(lambda: block_sum_reshaped(x, 2)):>7.0f}"
                  f"   up {per_call(lambda: numerics.upsample_kron(d, 2)):>7.0f}"
                  f" / {per_call(lambda: upsample_broadcast(d, 2)):>7.0f}")


def main():
    with threadpool_limits(1, user_api="blas"):
        for dtype in (np.float32, np.float64):
            convolutions(dtype)
    subsampling(np.random.default_rng(0))


if __name__ == "__main__":
    main()
