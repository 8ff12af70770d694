"""The convolution kernels' two code paths, side by side, on LeNet-5's shapes.

    python benchmarks/kernels.py

For each layer shape and batch size: microseconds per call of correlate_valid,
correlate_kernel and convolve_full with the per-tap row copies ("rows") and with
the single strided gather ("gather").  numerics.SMALL_INPUT picks between them.
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


def timings(x, kernel, delta):
    return (per_call(lambda: numerics.correlate_valid(x, kernel)),
            per_call(lambda: numerics.correlate_kernel(x, delta, 5, 5)),
            per_call(lambda: numerics.convolve_full(delta, kernel)))


def main():
    rng = np.random.default_rng(0)
    default = numerics.SMALL_INPUT
    print(f"{'layer':<6}{'batch':>6}{'x values':>10}   forward rows/gather   "
          "kernel-grad rows/gather   full rows/gather (us)")
    with threadpool_limits(1):
        for batch in (1, 16, 50):
            for name, (c_in, h, c_out) in SHAPES.items():
                x = rng.random((batch, c_in, h, h), dtype=np.float32)
                kernel = rng.random((c_out, c_in, 5, 5), dtype=np.float32)
                delta = rng.random((batch, c_out, h - 4, h - 4), dtype=np.float32)
                numerics.SMALL_INPUT = -1
                rows = timings(x, kernel, delta)
                numerics.SMALL_INPUT = 1 << 62
                gather = timings(x, kernel, delta)
                numerics.SMALL_INPUT = default
                print(f"{name:<6}{batch:>6}{x.size:>10}   " + "   ".join(
                    f"{r:>8.0f} /{g:>6.0f}{' *' if g < r else '  '}" for r, g in zip(rows, gather)))
    print(f"(* the gather was faster; numerics.SMALL_INPUT = {default})")


if __name__ == "__main__":
    main()
