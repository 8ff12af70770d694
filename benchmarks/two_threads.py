"""Two threads against one in one process, the thread counts alternating round by round.

    python benchmarks/two_threads.py --models models/dlt.cnn models/lenet5.cnn \
        --batch 50 256 --rounds 8 --seconds 0.3 [--side torch] [--steps 200] [--json FILE]

compare.py measures a model's one-thread and two-thread rows minutes apart, so on a
shared host their quotient mixes the speed-up with whatever the neighbours did in
between.  Here every round times one thread, then two, back to back (cnngraph's numba
kernels through `set_threads`, PyTorch through torch.set_num_threads, BLAS on one
thread throughout for cnngraph as `run` has it), and the speed-up is taken per round:
the table gives the median images/s of each count and the median and min-max of the
rounds' quotients, for training (a plain SGD step, as compare.py's) and inference.
``--side torch`` times compare.py's PyTorch replay of the models instead (eager;
inference under torch.inference_mode), in a process of its own: after numba's OpenMP
threads had run in the same process, PyTorch's two threads ran LeNet-5 at 0.21-0.35
of one thread's speed.
The issue's goal is two threads at least 1.7x one from batch 50 up, on an idle machine.

First (cnngraph's side; ``--no-machine-probe`` skips it) it measures what two threads
can give on the machine: a loop of arithmetic alone, and a numba loop streaming float32
arrays of 1, 4 and 64 MiB (read and written once; the first sizes stay in cache,
the last does not), each at one and two threads in the same way.  ``--steps WALKS``
then times each step of the training plans (walks of the plan alternating between
one thread and two): which ops the second core speeds up, and which it slows.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from cnngraph import compile_model
from cnngraph.runtime.execute import run_plan
from cnngraph.tools.bench import images_per_second, sgd_step, synthetic_batch
from cnngraph.tools.machine import format_machine, machine_facts
from cnngraph.training.step import Draw


def model_and_batch(path, batch, dtype):
    """The model on the numba backend, its seed-0 parameters and a synthetic batch."""
    model = compile_model(path, backend="numba")
    return (model, model.init_params(0, dtype),
            *synthetic_batch(model, batch, dtype, np.random.default_rng(0)))


def cnngraph_calls(model, params, x, t):
    """mode -> one timed call: a plain SGD step on a copy of params (as compare.py's),
    and the forward pass."""
    train = sgd_step(model, {k: v.copy() for k, v in params.items()}, x, t, 1e-4)
    return {"train": train, "infer": lambda: model.forward(params, x)}


def cnngraph_work(path, batch, dtype):
    """(set the thread count, `cnngraph_calls`) for cnngraph's numba backend."""
    model, params, x, t = model_and_batch(path, batch, dtype)
    return model.backend.set_threads, cnngraph_calls(model, params, x, t)


def torch_work(path, batch, dtype):
    """The same for compare.py's PyTorch replay of the model (eager)."""
    import torch
    from compare import TorchNet
    model, params, x, t = model_and_batch(path, batch, dtype)
    net = TorchNet(model, params, torch.float32 if dtype == np.float32 else torch.float64)
    tx, tt = torch.as_tensor(x), torch.as_tensor(t)

    def set_threads(n):
        torch.set_num_threads(n)
        assert torch.get_num_threads() == n
    return set_threads, {"train": lambda: net.step(tx, tt, 1e-4),
                         "infer": lambda: net.infer(tx, inference_mode=True)}


def step_scaling(path, batch, dtype, walks: int) -> list[dict]:
    """Each step of the training plan on one thread and on two, the walks alternating:
    per step its op, layer, pass and the median microseconds on each count."""
    model, params, x, t = model_and_batch(path, batch, dtype)
    plan = model.plans.gradients
    feeds = model.feeds(params, x, t, Draw(0, 0, 0).masks(model, batch, dtype))
    times = {1: [[] for _ in plan.steps], 2: [[] for _ in plan.steps]}

    def walk(count, kept=True):
        last, position = time.perf_counter(), iter(range(len(plan.steps)))

        def watch(step, value, env):
            nonlocal last
            now = time.perf_counter()
            if kept:
                times[count][next(position)].append(now - last)
            last = time.perf_counter()
        model.backend.set_threads(count)
        run_plan(plan, feeds, dtype, watch)
    for count in (1, 2, 1, 2):  # warm-up: compile, allocate
        walk(count, kept=False)
    for _ in range(walks):
        for count in (1, 2):
            walk(count)
    return [{"op": step.op, "layer": step.layer, "pass": step.pass_,
             "one_us": 1e6 * statistics.median(times[1][i]),
             "two_us": 1e6 * statistics.median(times[2][i])} for i, step in enumerate(plan.steps)]


def print_steps(path, batch, steps):
    print(f"{path.split('/')[-1]}, batch {batch}: training steps, median us")
    width = max([32] + [len(r["op"]) + 1 for r in steps])  # fused steps' names run long
    print(f"{'op':<{width}}{'layer':<7}{'pass':<9}{'1 thread':>9}{'2 threads':>10}{'speed-up':>9}")
    for r in steps:
        print(f"{r['op']:<{width}}{r['layer'] or '-':<7}{r['pass']:<9}{r['one_us']:>9.1f}"
              f"{r['two_us']:>10.1f}{r['one_us'] / r['two_us']:>9.2f}")
    one, two = (sum(r[k] for r in steps) for k in ("one_us", "two_us"))
    print(f"{'sum of the steps':<{width + 16}}{one:>9.1f}{two:>10.1f}{one / two:>9.2f}")


def machine_probe(rounds: int, seconds: float) -> list[dict]:
    """`scaling` of an arithmetic loop and of streaming copies, numba's threads."""
    import numba
    from numba import njit, prange

    @njit(parallel=True, cache=False)
    def arithmetic(out):
        for i in prange(out.shape[0]):
            s = 0.0
            for r in range(20_000):
                s = s * 0.999999 + r
            out[i] = s

    @njit(parallel=True, cache=False)
    def stream(a, b):
        for i in prange(a.shape[0]):
            b[i] = a[i] * np.float32(2)
    lanes = np.zeros(64)
    probes = [("arithmetic", lambda: arithmetic(lanes), 0)]
    for mib in (1, 4, 64):
        a = np.ones(mib * 2**20 // 4, np.float32)
        probes.append((f"stream {mib} MiB", lambda a=a, b=np.empty_like(a): stream(a, b),
                       2 * mib * 2**20))
    rows = []
    for name, work, moved in probes:
        r = scaling(numba.set_num_threads, work, 1, rounds, seconds)
        rows.append({"probe": name, "bytes_per_call": moved, **r})
    return rows


def scaling(set_threads, work, batch, rounds, seconds) -> dict:
    """Per round: images/s on 1 thread, then on 2; their medians and the quotients'."""
    pairs = []
    for _ in range(rounds):
        pair = []
        for n in (1, 2):
            set_threads(n)
            pair.append(images_per_second(work, batch, seconds))
        pairs.append(pair)
    quotients = [b / a for a, b in pairs]
    return {"one": statistics.median(a for a, _ in pairs),
            "two": statistics.median(b for _, b in pairs),
            "speedup_median": statistics.median(quotients), "speedup_min": min(quotients),
            "speedup_max": max(quotients), "pairs": pairs}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["models/dlt.cnn", "models/lenet5.cnn"])
    parser.add_argument("--batch", type=int, nargs="+", default=[50, 256])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=0.3)
    parser.add_argument("--side", default="cnngraph", choices=["cnngraph", "torch"],
                        help="whose threads to time (one side per process)")
    parser.add_argument("--json", metavar="FILE", help="also write every round's numbers here")
    parser.add_argument("--no-machine-probe", action="store_true",
                        help="skip the arithmetic and streaming probes")
    parser.add_argument("--steps", type=int, metavar="WALKS", default=0,
                        help="also time each step of the training plan, WALKS walks on "
                             "each thread count alternating (cnngraph's side)")
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype).type
    make = {"cnngraph": cnngraph_work, "torch": torch_work}[args.side]
    rows, probes, steps = [], [], []
    with threadpool_limits(1, user_api="blas"):
        print(format_machine(machine_facts()))
        if args.side == "cnngraph" and not args.no_machine_probe:
            probes = machine_probe(args.rounds, args.seconds)
            for p in probes:
                rate = "".join(f"  {p[k] * p['bytes_per_call'] / 2**30:6.1f} GiB/s"
                               for k in ("one", "two")) if p["bytes_per_call"] else ""
                print(f"machine: {p['probe']:<16} two threads {p['speedup_median']:.2f}x one "
                      f"[{p['speedup_min']:.2f}-{p['speedup_max']:.2f}]{rate}")
        print(f"{args.side}: {args.dtype}, {args.rounds} rounds of {args.seconds} s "
              "per thread count")
        print(f"{'model':<18}{'batch':>6}  {'mode':<6}"
              f"{'1 thread':>10}{'2 threads':>11}{'speed-up':>10}  min-max")
        for path in args.models:
            for batch in args.batch:
                set_threads, works = make(path, batch, dtype)
                for mode, work in works.items():
                    r = scaling(set_threads, work, batch, args.rounds, args.seconds)
                    rows.append({"model": path, "batch": batch, "mode": mode,
                                 "side": args.side, "dtype": args.dtype, **r})
                    print(f"{path.split('/')[-1]:<18}{batch:>6}  {mode:<6}"
                          f"{r['one']:>10,.0f}{r['two']:>11,.0f}{r['speedup_median']:>10.2f}  "
                          f"{r['speedup_min']:.2f}-{r['speedup_max']:.2f}", flush=True)
        if args.steps and args.side == "cnngraph":
            for path in args.models:
                for batch in args.batch:
                    found = step_scaling(path, batch, dtype, args.steps)
                    steps.append({"model": path, "batch": batch, "steps": found})
                    print_steps(path, batch, found)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "machine_probe": probes, "steps": steps}, f, indent=1)
    return {"rows": rows, "machine_probe": probes, "steps": steps}


if __name__ == "__main__":
    main()
