"""Data-parallel scaling on this machine, and a cost model for a cluster.

    python benchmarks/scaling.py > benchmarks/scaling-results.txt   # 203 s on 2 cores
    python benchmarks/scaling.py --reps 4 --images 7680 --batch 16 50 256 \
        --models models/dlt.cnn models/lenet5.cnn --dtype float32

What it does, in order (docs/scaling.md reads the numbers it prints):

1. The machine: CPU model, SIMD flags, BLAS and its kernel (threadpoolctl),
   thread variables, numpy / mpi4py / MPICH versions, load average.
2. End-to-end: ``python -m cnngraph run`` for each model and batch size in five
   configurations: one process (whole batch); ``--threads 2``; ``mpiexec -n 1``
   with ``--shards 2``; ``mpiexec -n 2`` with ``--shards 2`` (ordered gather);
   ``mpiexec -n 2 --shards 2 --reduction allreduce``.  Each run trains one epoch
   on the first ``--images`` MNIST images (``--limit-test 100 --no-plots
   --quiet``) and its images/s is read from metrics.json (the epoch's training
   time only: no start-up, data loading or test).  Configurations are
   interleaved (their order rotates every repetition) and repeated; the table
   gives the median, min-max, and the ratio to the one-process run (ratio of
   medians, and min-max of the ratios within one repetition).  The parameters
   of the ordered 1-rank and 2-rank runs are compared bit for bit.
3. One step, in one process (``--probe-step``): the gradient pass at per-rank
   batches 1..4096, the optimizer update, the ordered combination, the
   allreduce packing, and the bytes each rank sends per step in each mode.
4. Collectives on 2 ranks of this machine (``--probe-comm`` under mpiexec):
   the pickled allgather of one shard's statistics, the Allreduce of the
   gradient vector, the per-step stop-flag allreduce.
5. The cost model's predictions for 8, 64 and 512 ranks at global batches 256
   and 4096, over 10 GbE and InfiniBand EDR/HDR (assumed alpha and beta below).

BLAS runs on one thread everywhere: this script sets OPENBLAS_NUM_THREADS,
OMP_NUM_THREADS and MKL_NUM_THREADS to 1 for itself and every child (and
``cnngraph run`` also limits BLAS to one thread with threadpoolctl).
"""
from __future__ import annotations

import os

# Before numpy loads anywhere: one BLAS thread, here and in every child.
INHERITED_ENV = {k: os.environ.get(k) for k in (
    "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "CNNGRAPH_DATA")}
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse
import hashlib
import json
import math
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("1 process", "2 threads", "1 rank, 2 shards", "2 ranks ordered",
           "2 ranks allreduce")
SWEEP = (1, 2, 4, 8, 16, 25, 32, 50, 64, 128, 256, 512, 4096)
#: Assumed interconnects: (name, alpha seconds, beta bytes/s).
NETWORKS = (("10 GbE", 50e-6, 1.1e9), ("10 GbE", 20e-6, 1.1e9),
            ("IB EDR", 1.5e-6, 12e9), ("IB HDR", 1e-6, 24e9))
RANKS = (8, 64, 512)
GLOBAL_BATCHES = (256, 4096)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["models/dlt.cnn", "models/lenet5.cnn"])
    p.add_argument("--batch", nargs="+", type=int, default=[16, 50, 256])
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--images", type=int, default=7680, help="training images per run "
                   "(default 7680 = 30 x 256 = 480 x 16)")
    p.add_argument("--reps", type=int, default=4, help="repetitions (default 4)")
    p.add_argument("--data", default=None, help="MNIST folder (default $CNNGRAPH_DATA, "
                   "then ../shared/data/mnist beside the repository)")
    p.add_argument("--probe-step", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--probe-comm", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.chdir(ROOT)
    if args.probe_step:
        print(json.dumps(probe_step(args.models, args.dtype)))
        return
    if args.probe_comm:
        probe_comm(args.models, args.dtype)
        return
    started = time.time()
    data = args.data or INHERITED_ENV["CNNGRAPH_DATA"] or str(ROOT.parent / "shared/data/mnist")
    mpiexec = mpiexec_path()
    machine(mpiexec)
    end_to_end(args, data, mpiexec)
    step = json.loads(child([sys.executable, __file__, "--probe-step", "--dtype", args.dtype,
                             "--models", *args.models]))
    print_step(step, args.dtype)
    comm = json.loads(child([mpiexec, "-n", "2", sys.executable, __file__, "--probe-comm",
                             "--dtype", args.dtype, "--models", *args.models]))
    print_comm(comm, step)
    cost_model(step, comm)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}; total time {time.time() - started:.0f} s")


# 1. The machine ---------------------------------------------------------------

def mpiexec_path() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else (shutil.which("mpiexec") or "mpiexec")


def child(cmd, timeout=600) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(map(str, cmd))}\n"
                         f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def machine(mpiexec):
    from threadpoolctl import threadpool_info
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                      if line.startswith("flags")), []))
    simd = [f for f in ("sse4_2", "avx", "fma", "avx2", "avx512f", "avx512dq", "avx512bw",
                        "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
                        "amx_bf16", "amx_int8") if f in flags]
    mhz = sorted({line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("cpu MHz")})
    print("== machine")
    print(f"cpu           {model}; {os.cpu_count()} logical cpus; "
          f"{len(os.sched_getaffinity(0))} usable; cpu MHz {', '.join(mhz) or '?'}")
    print(f"simd flags    {' '.join(simd)}")
    print(f"kernel        {platform.platform()}")
    mem = next((line for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "?") if Path("/proc/meminfo").exists() else "?"
    print(f"memory        {' '.join(mem.split()[1:])}")
    for info in threadpool_info():
        print(f"blas          {info.get('internal_api')} {info.get('version')}, kernel "
              f"{info.get('architecture')}, threading {info.get('threading_layer')}, "
              f"{info.get('num_threads')} thread(s) here; {Path(info.get('filepath', '')).name}")
    print("env inherited " + ", ".join(f"{k}={v if v is not None else '(unset)'}"
                                       for k, v in INHERITED_ENV.items() if k != "CNNGRAPH_DATA"))
    print("env children  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "
          "(set by this script; cnngraph run also applies threadpool_limits(1, user_api='blas'))")
    import mpi4py
    code = ("from mpi4py import MPI; lines = MPI.Get_library_version().splitlines(); "
            "print(lines[0]); print(lines[3])")
    mpich = child([sys.executable, "-c", code]).split("\n")
    print(f"versions      python {platform.python_version()}, numpy {np.__version__}, "
          f"mpi4py {mpi4py.__version__}, {' '.join(mpich[0].split())} "
          f"({' '.join(mpich[1].split())})")
    print(f"mpiexec       {mpiexec}")
    load = os.getloadavg()
    print(f"load average  {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start "
          "(the machine is shared)")


# 2. End-to-end runs -------------------------------------------------------------

def run_command(config, model, batch, args, data, out, mpiexec):
    base = [sys.executable, "-m", "cnngraph", "run", model, "--data", data, "--out", str(out),
            "--epochs", "1", "--batch", str(batch), "--dtype", args.dtype,
            "--limit-train", str(args.images), "--limit-test", "100", "--no-plots", "--quiet"]
    return {"1 process": base,
            "2 threads": base + ["--threads", "2"],
            "1 rank, 2 shards": [mpiexec, "-n", "1"] + base + ["--shards", "2"],
            "2 ranks ordered": [mpiexec, "-n", "2"] + base + ["--shards", "2"],
            "2 ranks allreduce": [mpiexec, "-n", "2"] + base +
            ["--shards", "2", "--reduction", "allreduce"]}[config]


def params_digest(checkpoint: Path) -> str:
    digest = hashlib.sha256()
    with np.load(checkpoint) as f:
        for name in sorted(k for k in f.files if k.startswith("param/")):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(f[name]).tobytes())
    return digest.hexdigest()[:16]


def end_to_end(args, data, mpiexec):
    grid = [(m, b) for m in args.models for b in args.batch]
    rates = {(m, b, c): [] for m, b in grid for c in CONFIGS}
    walls = {(m, b, c): [] for m, b in grid for c in CONFIGS}
    digests = {(m, b, c): [] for m, b in grid for c in CONFIGS}
    example = run_command("2 ranks ordered", "MODEL", "B", args, data, "OUT", mpiexec)
    print(f"\n== end-to-end: images/s of one training epoch on the first {args.images} "
          f"MNIST images, {args.dtype}, {args.reps} repetitions, configurations interleaved")
    print("command (2 ranks ordered): " + " ".join(example))
    with tempfile.TemporaryDirectory(prefix="cnngraph-scaling-") as tmp:
        for rep in range(args.reps):
            for m, b in grid:
                order = CONFIGS[rep % len(CONFIGS):] + CONFIGS[:rep % len(CONFIGS)]
                for c in order:
                    out = Path(tmp) / f"{Path(m).stem}-{b}-{c.replace(' ', '_')}-{rep}"
                    t0 = time.perf_counter()
                    child(run_command(c, m, b, args, data, out, mpiexec))
                    walls[m, b, c].append(time.perf_counter() - t0)
                    metrics = json.loads((out / "metrics.json").read_text())
                    rates[m, b, c].append(metrics["epochs"][0]["images_per_s"])
                    digests[m, b, c].append(params_digest(out / "checkpoint.npz"))
                    shutil.rmtree(out)
            print(f"  repetition {rep + 1}/{args.reps} done, load average "
                  f"{os.getloadavg()[0]:.2f}", flush=True)
    print("\nimages/s: median [min-max]; x: ratio to '1 process' (ratio of medians "
          "[min-max of the ratios within one repetition]); wall: median seconds per run "
          "(start-up, data loading and test included)")
    for m, b in grid:
        base = rates[m, b, "1 process"]
        print(f"\n{Path(m).name}  batch {b}  ({math.ceil(args.images / b)} steps)")
        for c in CONFIGS:
            r = rates[m, b, c]
            ratios = [x / y for x, y in zip(r, base)]
            print(f"  {c:<18} {statistics.median(r):>8,.0f} [{min(r):>7,.0f}-{max(r):>7,.0f}]"
                  f"  x{statistics.median(r) / statistics.median(base):5.2f} "
                  f"[{min(ratios):4.2f}-{max(ratios):4.2f}]   wall "
                  f"{statistics.median(walls[m, b, c]):4.1f} s")
    print("\nbitwise: parameters after the epoch, 1 rank vs 2 ranks with --shards 2 (ordered):")
    for m, b in grid:
        one, two = digests[m, b, "1 rank, 2 shards"], digests[m, b, "2 ranks ordered"]
        same = sum(x == y for x, y in zip(one, two))
        ar = digests[m, b, "2 ranks allreduce"]
        print(f"  {Path(m).name:<11} batch {b:>3}: identical in {same}/{len(one)} repetitions; "
              f"runs repeat bitwise: {len(set(one + two)) == 1}; allreduce equal to ordered "
              f"bitwise: {ar[0] == one[0]}")
    print("\nmedians in one line per model (batch: 1 process / 2 threads / 1 rank 2 shards / "
          "2 ranks ordered / 2 ranks allreduce):")
    for m in args.models:
        print(f"  {Path(m).name}: " + "; ".join(
            f"{b}: " + " / ".join(f"{statistics.median(rates[m, b, c]):,.0f}" for c in CONFIGS)
            for b in args.batch))
    return rates


# 3. One step in one process -----------------------------------------------------

def timed(fn, seconds=0.3, least=3, most=300, both=False):
    """Seconds per call of ``fn`` after one warm-up call: the fastest call (the cost on
    an otherwise idle core: this machine is shared), or (fastest, median)."""
    fn()
    times, start = [], time.perf_counter()
    while len(times) < least or (time.perf_counter() - start < seconds and len(times) < most):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return (min(times), statistics.median(times)) if both else min(times)


def probe_step(models, dtype):
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, user_api="blas"):
        return {path: probe_model(path, np.dtype(dtype)) for path in models}


def probe_model(path, dtype):
    from cnngraph import compile_model
    from cnngraph.tools.bench import synthetic_batch
    from cnngraph.tools.summary import summarize
    from cnngraph.training.step import Optimizer, batch_stats, combine, shard_bounds
    model = compile_model(path)
    params = model.init_params(0, dtype)
    x, t = synthetic_batch(model, max(SWEEP), dtype, np.random.default_rng(0))
    count = sum(int(np.prod(s)) for s in model.param_shapes.values())

    def gradient(b):
        return timed(lambda: batch_stats(model, params, x[:b], t[:b]),
                     seconds=0.4 if b < 256 else 2.0, least=3 if b < 256 else 5, both=True)
    both = {b: gradient(b) for b in SWEEP}
    optimizer = Optimizer.for_model(model, model.settings.train.optimizer)
    state = optimizer.start(params)
    full = batch_stats(model, params, x[:256], t[:256])
    update = timed(lambda: optimizer.update(params, full.grads, state, 0.01))

    def shards(k):
        bounds = shard_bounds(256, k)
        return bounds, [batch_stats(model, params, x[bounds[i]:bounds[i + 1]],
                                    t[bounds[i]:bounds[i + 1]]) for i in range(k)]
    combines = {}
    for k in (2, 8):
        bounds, pieces = shards(k)
        combines[k] = timed(lambda: combine(pieces, bounds))  # noqa: B023 (called at once)
    names = list(model.training.results)
    one = pieces[:1]  # one rank's part with one shard per rank
    pack = timed(lambda: np.concatenate([[0.5 * one[0].loss, one[0].errors]] +
                                        [0.5 * one[0].grads[n].ravel() for n in names]))
    blob = pickle.dumps(one, protocol=5)  # mpi4py pickles with protocol 5 here
    rows = summarize(model)
    return {"params": count, "trainable": sum(r.param_count for r in rows),
            "macs": sum(r.macs for r in rows), "itemsize": dtype.itemsize,
            "grad": {b: v[0] for b, v in both.items()},
            "grad_median": {b: v[1] for b, v in both.items()},
            "update": update, "optimizer": list(model.settings.train.optimizer),
            "combine": combines, "pack": pack,
            "pickled": {k: len(pickle.dumps(pieces[:k], protocol=5)) for k in (1, 2)},
            "dumps": timed(lambda: pickle.dumps(one, protocol=5)),
            "loads": timed(lambda: pickle.loads(blob)), "allreduce_bytes": 8 * (count + 2)}


def fit_linear(grad, largest=64):
    """t(b) = t0 + c b, least squares on relative error over the sweep's b <= largest
    (where the working set stays in cache; per-image time rises above it)."""
    b = np.array(sorted(k for k in grad if k <= largest), dtype=float)
    y = np.array([grad[int(k)] for k in b])
    a = np.stack([np.ones_like(b), b], axis=1) / y[:, None]
    t0, c = np.linalg.lstsq(a, np.ones_like(b), rcond=None)[0]
    worst = max(abs(t0 + c * k - v) / v for k, v in zip(b, y))
    return float(t0), float(c), float(worst)


def ints(table):
    return {int(k): v for k, v in table.items()}


def print_step(step, dtype):
    print(f"\n== one step in one process ({dtype}, synthetic images, one BLAS thread; "
          "fastest of repeated calls, median in brackets where given)")
    for path, s in step.items():
        g, med = ints(s["grad"]), ints(s["grad_median"])
        t0, c, worst = fit_linear(g)
        print(f"\n{Path(path).name}: {s['params']:,} parameter entries sent per gradient "
              f"({s['trainable']:,} trainable; a masked kernel's unconnected taps are sent as "
              f"zeros), {s['macs']:,} multiply-adds per image forward")
        print("  per-rank batch b:       " + "".join(f"{b:>9}" for b in g))
        print("  gradient pass, ms:      " + "".join(f"{1e3 * v:9.3f}" for v in g.values()))
        print("    median, ms:           " + "".join(f"{1e3 * v:9.3f}" for v in med.values()))
        print("  per image, us:          " + "".join(f"{1e6 * v / b:9.1f}" for b, v in g.items()))
        print(f"  fit over b <= 64: t(b) = {1e3 * t0:.3f} ms + {1e6 * c:.1f} us x b (worst "
              f"relative error {100 * worst:.0f}%)")
        print(f"  per-step compute at global batch 256: 1 rank {1e3 * g[256]:.2f} ms "
              f"(median {1e3 * med[256]:.2f}); 2 ranks {1e3 * g[128]:.2f} ms each (batch 128; "
              f"median {1e3 * med[128]:.2f}); 1 rank with 2 shards "
              f"{2e3 * g[128] + 1e3 * s['combine']['2']:.2f} ms")
        print(f"  optimizer update ({s['optimizer'][0]} {s['optimizer'][1]}, every rank, "
              f"whole vector): {1e3 * s['update']:.3f} ms")
        print(f"  ordered combine of 2 / 8 shards: {1e3 * s['combine']['2']:.3f} / "
              f"{1e3 * s['combine']['8']:.3f} ms; pickle one shard {1e3 * s['dumps']:.3f} ms, "
              f"unpickle {1e3 * s['loads']:.3f} ms; allreduce packing {1e3 * s['pack']:.3f} ms")
        raw = s["params"] * s["itemsize"]
        print(f"  bytes each rank sends per step: ordered = {s['params']:,} x {s['itemsize']} B "
              f"x shards per rank = {raw:,} B per shard ({s['pickled']['1']:,} B pickled for 1 "
              f"shard, {s['pickled']['2']:,} B for 2); allreduce = ({s['params']:,} + 2) x 8 B "
              f"= {s['allreduce_bytes']:,} B (float64 whatever the dtype)")


# 4. Collectives on 2 ranks of this machine ----------------------------------------

def probe_comm(models, dtype):
    from mpi4py import MPI

    from cnngraph.training.world import MpiWorld
    world = MpiWorld(MPI.COMM_WORLD)
    out = {"ranks": world.size, "any": clock(world, lambda: world.any(False)),
           "allreduce_1": clock(world, lambda: world.allreduce_sum(np.zeros(1)))}
    for path in models:
        out[path] = comm_model(world, path, np.dtype(dtype))
    if world.is_root:
        print(json.dumps(out))


def clock(world, fn, repeats=200):
    """Median over calls of the slower rank's seconds, each call after a barrier."""
    times = []
    for _ in range(repeats + 5):
        world.barrier()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times = world.allgather(times[5:])
    return statistics.median(max(pair) for pair in zip(*times))


def comm_model(world, path, dtype):
    from cnngraph import compile_model
    from cnngraph.tools.bench import synthetic_batch
    from cnngraph.training.step import batch_stats
    model = compile_model(path)
    params = model.init_params(0, dtype)
    x, t = synthetic_batch(model, 128, dtype, np.random.default_rng(world.rank))
    mine = [batch_stats(model, params, x, t)]
    count = sum(int(np.prod(s)) for s in model.param_shapes.values())
    vector = np.ones(count + 2)
    return {"allgather": clock(world, lambda: world.allgather(mine)),
            "allreduce": clock(world, lambda: world.allreduce_sum(vector)),
            "bytes": count * dtype.itemsize}


def print_comm(comm, step):
    print(f"\n== collectives on {comm['ranks']} ranks of this machine (shared memory; "
          "median of 200, the slower rank's time, after a barrier)")
    print(f"  stop-flag allreduce (world.any, once per step): {1e6 * comm['any']:.1f} us; "
          f"Allreduce of 1 float64: {1e6 * comm['allreduce_1']:.1f} us")
    for path in step:
        c = comm[path]
        print(f"  {Path(path).name:<11} pickled allgather of one shard (ordered): "
              f"{1e6 * c['allgather']:8.1f} us;  Allreduce of {step[path]['params'] + 2:,} "
              f"float64: {1e6 * c['allreduce']:8.1f} us")


# 5. Cost model --------------------------------------------------------------------

def comm_time(mode, n, s, alpha, beta):
    """Seconds per step for the gradient exchange among n ranks (s: bytes per
    rank's contribution), plus the per-step stop-flag allreduce."""
    flag = math.ceil(math.log2(n)) * alpha
    if mode == "ring allreduce":
        return 2 * (n - 1) * alpha + 2 * (n - 1) / n * s / beta + flag
    if mode == "tree allreduce":  # Rabenseifner: log-latency, ring-like bandwidth
        return 2 * math.ceil(math.log2(n)) * alpha + 2 * (n - 1) / n * s / beta + flag
    if mode == "ordered gather":  # mpi4py: allgather of sizes, then a ring Allgatherv
        return math.ceil(math.log2(n)) * alpha + (n - 1) * alpha + (n - 1) * s / beta + flag
    raise ValueError(mode)


def local_time(mode, n, st):
    """Per-step work beside the gradient pass: the update (whole vector, every rank)
    and the mode's packing, or pickling, unpickling and combining n shards."""
    if mode == "ordered gather":
        per_piece = max(0.0, (st["combine"]["8"] - st["combine"]["2"]) / 6)
        return st["update"] + st["dumps"] + (n - 1) * st["loads"] + \
            st["combine"]["2"] + (n - 2) * per_piece
    return st["update"] + st["pack"]


def payload(mode, st):
    return st["pickled"]["1"] if mode == "ordered gather" else st["allreduce_bytes"]


def predict(mode, n, batch, st, net):
    """(efficiency, speedup over one process at the whole batch, compute, local, comm).
    Efficiency as Goyal et al. count it: N ranks against N times one rank doing the
    same per-rank work without exchanging anything."""
    g = ints(st["grad"])
    per_rank = max(1, batch // n)  # shards = min(N, batch): batch 256 on 512 ranks idles 256
    compute = g[per_rank]
    local = local_time(mode, n, st)
    comm = comm_time(mode, n, payload(mode, st), net[1], net[2])
    step = compute + local + comm
    ideal = compute * (batch / n) / per_rank + st["update"]
    return ideal / step, (g[batch] + st["update"]) / step, compute, local, comm


MODES = ("ring allreduce", "tree allreduce", "ordered gather")


def cost_model(step, comm):
    print("\n== cost model (assumed networks; compute, update, pickling and combining as "
          "measured above on one core of this machine)")
    print("   T(N) = t_grad(B/N) + t_update + t_local + t_comm.  Efficiency E = (t_grad(B/N) "
          "+ t_update) / T(N) (per-rank batch fixed, as Goyal et al. count scaling); speedup "
          "S = (t_grad(B) + t_update) / T(N) against one process doing the whole batch "
          "in one pass.")
    print("   t_comm: ring allreduce 2(N-1)a + 2(N-1)/N S/b; tree (Rabenseifner) 2 log2(N) a "
          "+ 2(N-1)/N S/b; ordered gather (cnngraph's default, one shard per rank: mpi4py "
          "allgathers the sizes, then a ring Allgatherv) (log2(N) + N-1) a + (N-1) S1/b; "
          "each + log2(N) a for the per-step stop flag.  S = 8(P+2) B (cnngraph's "
          "allreduce sends float64), S1 = one pickled shard gradient.")
    print("   networks: " + "; ".join(f"{n} a={a * 1e6:g} us b={b / 1e9:g} GB/s"
                                      for n, a, b in NETWORKS))
    for path, st in step.items():
        c = fit_linear(ints(st["grad"]))[1]
        print(f"\n{Path(path).name}  (P = {st['params']:,}; S = {st['allreduce_bytes']:,} B; "
              f"S1 = {st['pickled']['1']:,} B; update {1e3 * st['update']:.3f} ms)")
        cols = [(b, n) for b in GLOBAL_BATCHES for n in RANKS]
        head = "".join(f"{f'B={b} N={n}':>13}" for b, n in cols)
        for what, k, fmt in (("efficiency E", 0, "{:>12.0%} "), ("speedup S", 1, "{:>12.1f}x")):
            print(f"  {what:<23}{'mode':<16}{head}")
            for net in NETWORKS:
                label = f"{net[0]} a={net[1] * 1e6:g}us"
                print(f"  {label:<23}" + "".join(
                    f"{mode:<16}" + "".join(fmt.format(predict(mode, n, b, st, net)[k])
                                            for b, n in cols) + "\n" + " " * 25
                    for mode in MODES).rstrip())
        print("  per-step parts, ms (compute / local / communication):")
        for net in (NETWORKS[0], NETWORKS[3]):
            for b in GLOBAL_BATCHES:
                for mode in MODES:
                    parts = [predict(mode, n, b, st, net)[2:] for n in RANKS]
                    print(f"    {net[0]:<7} B={b:<5}{mode:<16}" + "   ".join(
                        f"N={n}: {1e3 * x:.2f} / {1e3 * y:.2f} / {1e3 * z:.2f}"
                        for n, (x, y, z) in zip(RANKS, parts)))
        print(f"  per-rank batch below which doubling the ranks N -> 2N stops paying: halving "
              f"the per-rank batch b saves c b/2 (c = {1e6 * c:.1f} us/image, the fit over "
              f"b <= 64) and costs T_comm(2N) - T_comm(N) + t_local(2N) - t_local(N), so "
              f"b* = 2 (that difference) / c:")
        for net in NETWORKS:
            for mode in MODES:
                cells = []
                for n in RANKS:
                    extra = comm_time(mode, 2 * n, payload(mode, st), net[1], net[2]) - \
                        comm_time(mode, n, payload(mode, st), net[1], net[2]) + \
                        local_time(mode, 2 * n, st) - local_time(mode, n, st)
                    cells.append(f"N={n}->{2 * n}: b* = {2 * extra / c:,.1f}")
                label = f"{net[0]} a={net[1] * 1e6:g}us"
                print(f"    {label:<23}{mode:<16}" + "   ".join(cells))


if __name__ == "__main__":
    main()
