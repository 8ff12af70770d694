"""The ``bench`` command: training and inference speed, GFLOP/s and share of the
peak, time per op and per layer, peak memory and the first use's cost (the work is
`cnngraph.tools.bench`).  Part of the CLI (only the CLI prints)."""
from __future__ import annotations

import json
import time

from .args import backend_arg, compiled, model_arg, one_blas_thread, threads_arg

EXAMPLE = "example: python -m cnngraph bench models/lenet5.cnn --batch 1 16 50 --threads 1"


def add_bench(sub):
    sub.epilog = EXAMPLE
    model_arg(sub)
    backend_arg(sub)
    sub.add_argument("--batch", type=int, nargs="+", default=[1, 10, 50], metavar="N",
                     help="batch sizes (default 1 10 50)")
    sub.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    threads_arg(sub)
    sub.add_argument("--seconds", type=float, default=2.0,
                     help="time per measurement (default 2)")
    sub.add_argument("--profile-batch", type=int, metavar="N",
                     help="batch for the per-op profile (default: the largest)")
    sub.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_bench(args) -> int:
    from ..core.errors import UsageError
    from ..tools.bench import (first_use, forward_flops, gemm_peaks, measure, profile_ops,
                               step_flops, with_roofline)
    from ..tools.machine import format_machine, machine_facts
    from ..training.resources import step_peak_bytes
    started = time.perf_counter()
    model = compiled(args)
    compile_s = time.perf_counter() - started
    if min(args.batch) < 1 or args.seconds <= 0:
        raise UsageError("--batch sizes must be at least 1 and --seconds positive")
    import numpy as np
    dtype = np.dtype(args.dtype)
    with one_blas_thread():
        machine = machine_facts()  # inside the limits: the thread counts timing runs with
        first = {"compile_s": compile_s, **first_use(model, dtype)}
        results = measure(model, args.batch, dtype, args.seconds, workers=args.threads)
        profile_batch = args.profile_batch or max(args.batch)
        ops, layers, peak = profile_ops(model, profile_batch, dtype)
    flops, infer_flops = step_flops(model), forward_flops(model)
    gemm = gemm_peaks(dtype, [r[f"{mode}_threads"] for r in results for mode in ("train", "infer")])
    results = with_roofline(results, flops, infer_flops, gemm)
    predicted = step_peak_bytes(model, profile_batch, dtype)
    threads = args.threads
    if args.json:
        print(json.dumps({"model": args.model, "machine": machine, "threads": threads,
                          "backend": model.backend.name, "first_use": first,
                          "step_flops_per_image": flops,
                          "forward_flops_per_image": infer_flops,
                          "gemm_flops_per_s": {str(n): v for n, v in gemm.items()},
                          "results": results,
                          "ops": ops, "layers": layers, "peak_bytes": peak,
                          "predicted_peak_bytes": predicted}))
        return 0
    print(format_machine(machine))
    how = ("in the kernels" if model.backend.set_threads else "batch split across them, "
           "one BLAS thread each")
    print(f"{args.model}: {args.dtype}, backend {model.backend.name}, {threads} thread(s) "
          f"({how})")
    print(f"first use: compiling the model {first['compile_s']:.2f} s, then the first "
          f"training step {first['first_step_s']:.2f} s and forward pass "
          f"{first['first_forward_s']:.2f} s (a compiled backend compiles its kernels there, "
          f"or loads them from its cache), the next step {1e3 * first['next_step_s']:.1f} ms")
    print(f"a training step is {flops / 1e6:.3f} MFLOP per image, a forward pass (inference) "
          f"{infer_flops / 1e6:.3f}; a large matrix product runs at "
          + ", ".join(f"{v / 1e9:.0f} GFLOP/s on {n} thread(s)" for n, v in gemm.items())
          + " (the peak)")
    print(f"{'':>6}  {' training ':-^35}  {' inference ':-^35}")
    print(f"{'batch':>6}" + f"  {'images/s':>11} {'threads':>7} {'GFLOP/s':>8} {'peak':>6}" * 2)
    for r in results:
        print(f"{r['batch']:>6}" + "".join(
            f"  {r[f'{m}_images_per_s']:>11,.0f} {r[f'{m}_threads']:>7} "
            f"{r[f'{m}_gflops_per_s']:>8.1f} {100 * r[f'{m}_peak_fraction']:>5.1f}%"
            for m in ("train", "infer")))
    print(f"\ntime per op, one training step at batch {profile_batch}:")
    width = max([30] + [len(r["op"]) for r in ops])  # fused steps' names run long
    for r in ops:
        print(f"  {r['op']:<{width}} {r['pass']:<9} {r['ms_per_step']:8.3f} ms  "
              f"{100 * r['share']:5.1f}%")
    print("time per layer, ms per step (as caffe time):")
    ms = {(r["layer"], r["pass"]): r["ms_per_step"] for r in layers}
    passes = list(dict.fromkeys(r["pass"] for r in layers))
    print(f"  {'layer':<12}" + "".join(f"{p:>11}" for p in passes))
    for layer in dict.fromkeys(r["layer"] for r in layers):
        print(f"  {layer:<12}" + "".join(f"{ms.get((layer, p), 0.0):11.3f}" for p in passes))
    print(f"peak memory of live buffers: {peak / 2**20:.2f} MiB "
          f"(the plan's lifetimes predict {predicted / 2**20:.2f} MiB)")
    return 0
