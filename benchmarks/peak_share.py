"""cnngraph's share of the matrix-product peak, the peak timed in every round beside it.

    python benchmarks/peak_share.py --models models/dlt.cnn models/lenet5.cnn \
        --batch 50 256 --threads 1 --rounds 8 --seconds 0.3 [--json FILE]

compare.py and `bench` time the peak (a 1536 x 1536 matrix product in BLAS) once and
the models' rows minutes later; on a shared host the neighbours slow both, by amounts
that change from minute to minute, so a row's share of a peak timed earlier moves with
them.  Here every round times the matrix product, then a model's training step (plain
SGD, as compare.py's) and its forward pass, back to back on the same thread count
(the product's BLAS threads, the model's numba kernels; the model's own BLAS calls on
one thread, as `run` has them), and takes each share in that round: the model's
GFLOP/s (`bench`'s count, twice the multiply-adds of the ops it runs) over the round's
peak.  The table gives the medians and the min-max of the rounds' shares.  Issue 24's
goals at batch 256 on one thread: training at 40 % of the peak, inference at 30 %.
"""
from __future__ import annotations

import argparse
import json
import statistics

import numpy as np
from threadpoolctl import threadpool_limits

from two_threads import cnngraph_calls, model_and_batch

from cnngraph.tools.bench import (forward_flops, gemm_flops_per_second, images_per_second,
                                  step_flops)
from cnngraph.tools.machine import format_machine, machine_facts


def model_work(path, batch, dtype):
    """(set the thread count, mode -> (two_threads' timed call, FLOP per image)) for the
    numba backend's model."""
    model, params, x, t = model_and_batch(path, batch, dtype)
    flops = {"train": step_flops(model), "infer": forward_flops(model)}
    calls = cnngraph_calls(model, params, x, t)
    return model.backend.set_threads, {mode: (calls[mode], flops[mode]) for mode in calls}


def shares(works, batch, dtype, threads, rounds, seconds) -> list[dict]:
    """Per mode: each round's peak and the mode's GFLOP/s right after it, and the medians."""
    timed = {mode: [] for mode in works}
    for _ in range(rounds):
        peak = gemm_flops_per_second(dtype, threads, seconds=seconds)
        for mode, (work, flops) in works.items():
            timed[mode].append((peak, images_per_second(work, batch, seconds) * flops))
    rows = []
    for mode, pairs in timed.items():
        fractions = [rate / peak for peak, rate in pairs]
        rows.append({"mode": mode, "images_per_s": statistics.median(
                        rate / works[mode][1] for _, rate in pairs),
                     "gflops": statistics.median(rate for _, rate in pairs) / 1e9,
                     "peak_gflops": statistics.median(peak for peak, _ in pairs) / 1e9,
                     "share_median": statistics.median(fractions),
                     "share_min": min(fractions), "share_max": max(fractions),
                     "rounds": [{"peak": p, "flops_per_s": r} for p, r in pairs]})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["models/dlt.cnn", "models/lenet5.cnn"])
    parser.add_argument("--batch", type=int, nargs="+", default=[256])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=0.3)
    parser.add_argument("--json", metavar="FILE", help="also write every round's numbers here")
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype).type
    rows = []
    with threadpool_limits(1, user_api="blas"):
        print(format_machine(machine_facts()))
        _measure(args, dtype, rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows}, f, indent=1)
    return {"rows": rows}


def _measure(args, dtype, rows):
    """Print the table's rows as they are measured, and append them to rows."""
    print(f"{args.dtype}, {args.rounds} rounds of {args.seconds} s: the matrix product, "
          "then training, then inference")
    print(f"{'model':<18}{'thr':>4}{'batch':>6}  {'mode':<6}{'images/s':>10}{'GFLOP/s':>9}"
          f"{'peak':>8}{'share':>8}  min-max")
    for path in args.models:
        for threads in args.threads:
            for batch in args.batch:
                set_threads, works = model_work(path, batch, dtype)
                set_threads(threads)
                for r in shares(works, batch, dtype, threads, args.rounds, args.seconds):
                    rows.append({"model": path, "threads": threads, "batch": batch,
                                 "dtype": args.dtype, **r})
                    print(f"{path.split('/')[-1]:<18}{threads:>4}{batch:>6}  {r['mode']:<6}"
                          f"{r['images_per_s']:>10,.0f}{r['gflops']:>9.1f}"
                          f"{r['peak_gflops']:>8.1f}{r['share_median']:>8.1%}  "
                          f"{r['share_min']:.1%}-{r['share_max']:.1%}", flush=True)


if __name__ == "__main__":
    main()
