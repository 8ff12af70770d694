"""The convolution kernels' two code paths, side by side, on LeNet-5's shapes.

    python benchmarks/kernels.py

For each layer shape and batch size: microseconds per call of correlate_valid
and correlate_kernel with im2col built by per-tap row copies ("rows") or by one
strided gather ("gather"), numerics.SMALL_INPUT choosing between them; and
convolve_full as col2im (what numerics does) against the textbook route of
padding delta and correlating it with the rotated kernel ("pad").
"""
import time

import numpy as np
from threadpoolctl import threadpool_limits

from cnngraph import numerics

SHAPES = {"C1": (1, 32, 6), "C3": (6, 14, 16), "C5": (16, 5, 120)}  # C_in, H, C_out; 5x5


def per_call(fn, seconds=0.2):
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return 1e6 * (time.perf_counter() - start) / n


def padded_full(delta, kernel):
    padded = np.pad(delta, ((0, 0), (0, 0), (4, 4), (4, 4)))
    return numerics.correlate_valid(padded, numerics.rot180(kernel).transpose(1, 0, 2, 3))


def timings(x, kernel, delta, full):
    return (per_call(lambda: numerics.correlate_valid(x, kernel)),
            per_call(lambda: numerics.correlate_kernel(x, delta, 5, 5)),
            per_call(lambda: full(delta, kernel)))


def block_sum_reshaped(x, f):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // f, f, w // f, f).sum(axis=(3, 5))


def upsample_broadcast(x, f):
    n, c, h, w = x.shape
    return np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, f, w, f)).reshape(
        n, c, h * f, w * f)


def subsampling(rng):
    print("\nblock sum and Kronecker upsample, factor 2 (us): strided / reshaped")
    with threadpool_limits(1):
        for shape in [(1, 6, 28, 28), (50, 6, 28, 28), (50, 16, 10, 10), (256, 6, 28, 28)]:
            x = rng.random(shape, dtype=np.float32)
            d = x[:, :, ::2, ::2].copy()
            print(f"  {'x'.join(map(str, shape)):<14} sum {per_call(lambda: numerics.block_sum(x, 2)):>7.0f}"
                  f" / {per_call(lambda: block_sum_reshaped(x, 2)):>7.0f}"
                  f"   up {per_call(lambda: numerics.upsample_kron(d, 2)):>7.0f}"
                  f" / {per_call(lambda: upsample_broadcast(d, 2)):>7.0f}")


def main():
    rng = np.random.default_rng(0)
    default = numerics.SMALL_INPUT
    print(f"{'layer':<6}{'batch':>6}{'x values':>10}   forward rows/gather   "
          "kernel-grad rows/gather   full col2im/pad (us)")
    with threadpool_limits(1):
        for batch in (1, 16, 50):
            for name, (c_in, h, c_out) in SHAPES.items():
                x = rng.random((batch, c_in, h, h), dtype=np.float32)
                kernel = rng.random((c_out, c_in, 5, 5), dtype=np.float32)
                delta = rng.random((batch, c_out, h - 4, h - 4), dtype=np.float32)
                numerics.SMALL_INPUT = -1
                rows = timings(x, kernel, delta, numerics.convolve_full)
                numerics.SMALL_INPUT = 1 << 62
                gather = timings(x, kernel, delta, padded_full)
                numerics.SMALL_INPUT = default
                print(f"{name:<6}{batch:>6}{x.size:>10}   " + "   ".join(
                    f"{r:>8.0f} /{g:>6.0f}{' *' if g < r else '  '}" for r, g in zip(rows, gather)))
    print(f"(* the second was faster; numerics.SMALL_INPUT = {default})")
    subsampling(rng)


if __name__ == "__main__":
    main()
