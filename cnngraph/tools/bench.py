"""bench: images per second for training and inference, time per op, peak memory,
the first step's cost, and the fraction of a large matrix product's speed reached.

Training is one full step: forward, derived backward, SGD update.  Inputs are
random (the speed does not depend on the pixels), so no data set is needed.
The per-op profile walks the training plan with `run_plan`, timing each step
(as ``caffe time`` does per layer) and tracking the bytes of live buffers.
The roofline is a large square matrix product in BLAS on the same threads (the
peak): a training step's or a forward pass's floating-point operations (twice the
multiply-adds its op rules declare) per second, over the product's.
"""
from __future__ import annotations

import time
from collections import defaultdict

import networkx as nx
import numpy as np

from ..compiler.evaluation import evaluation_graph
from ..core.plan import Plan
from ..runtime.execute import run_plan
from ..training.step import Draw, Optimizer, train_step
from ..training.threads import AutoThreads, forward_threads, threads_for
from .summary import op_macs


def synthetic_batch(model, batch: int, dtype, rng):
    x = rng.uniform(0, 1, size=(batch,) + model.input_shape).astype(dtype)
    t = np.eye(model.classes, dtype=dtype)[rng.integers(0, model.classes, size=batch)]
    return x, (2 * t - 1 if model.target_coding == "plus_minus_one" else t)


def images_per_second(step, batch: int, seconds: float, min_steps: int = 3) -> float:
    """Run ``step`` repeatedly for about ``seconds`` (after one warm-up call)."""
    step()
    done, started = 0, time.perf_counter()
    while done < min_steps or time.perf_counter() - started < seconds:
        step()
        done += 1
    return done * batch / (time.perf_counter() - started)


def sgd_step(model, params, x, t, lr: float = 1e-3, workers: int | str = 1, reduce=None):
    """One plain SGD step on (x, t) per call, as training runs it (on ``workers``
    threads, or with the batch reduction ``reduce``; dropout masks drawn each step)."""
    optimizer = Optimizer.for_model(model, ("sgd", {}))
    reduce = reduce or threads_for(model, workers)
    state = {"params": params, "optimizer": optimizer.start(params)}
    draw = Draw.for_step(model, 0, 0, 0)

    def step():
        state["params"], state["optimizer"], _ = train_step(
            model, state["params"], state["optimizer"], (x, t), optimizer, lr, reduce, draw)
    return step


def measure(model, batches, dtype, seconds: float = 2.0, seed: int = 0,
            workers: int | str = 1) -> list[dict]:
    """Training and inference images/s per batch size; with ``workers`` "auto", the
    thread counts `AutoThreads` settled on for each."""
    rng = np.random.default_rng(seed)
    rows = []
    for batch in batches:
        params = model.init_params(seed, dtype)
        x, t = synthetic_batch(model, batch, dtype, rng)
        reduce = threads_for(model, workers)
        train = images_per_second(sgd_step(model, params, x, t, reduce=reduce), batch, seconds)
        chooser = forward_threads(model, workers)
        run = chooser.run if chooser else (lambda work, images: work())
        infer = images_per_second(lambda: run(lambda: model.forward(params, x), batch), batch,
                                  seconds)
        rows.append({"batch": batch, "dtype": np.dtype(dtype).name,
                     "train_images_per_s": train, "infer_images_per_s": infer,
                     "train_threads": _chosen(reduce, workers),
                     "infer_threads": _chosen(chooser, workers)})
    return rows


def first_use(model, dtype, batch: int = 64, seed: int = 0) -> dict:
    """Seconds of this process's first training step and forward pass at ``batch``
    (where a compiled backend compiles its kernels, or loads them from its cache),
    and of the next step.  Meaningful only before anything else ran the kernels."""
    rng = np.random.default_rng(seed)
    x, t = synthetic_batch(model, batch, dtype, rng)
    step = sgd_step(model, model.init_params(seed, dtype), x, t)
    timings = {}
    for name, work in (("first_step_s", step), ("first_forward_s",
                       lambda: model.forward(model.init_params(seed, dtype), x)),
                       ("next_step_s", step)):
        started = time.perf_counter()
        work()
        timings[name] = time.perf_counter() - started
    return timings


def step_flops(model) -> int:
    """Floating-point operations of one training step per image: twice the
    multiply-adds of every op in the training graph (their rules' ``macs``)."""
    return _flops(model.training.graph, model.registry)


def forward_flops(model) -> int:
    """Floating-point operations of one forward pass (inference) per image, counted
    as `step_flops` counts them over the ops the forward plan runs: those the
    prediction needs, in evaluation mode (no loss, no backward pass)."""
    graph = evaluation_graph(model.graph)
    prediction = model.roles.prediction
    return _flops(graph.subgraph(nx.ancestors(graph, prediction) | {prediction}),
                  model.registry)


def _flops(graph, registry) -> int:
    return 2 * sum(op_macs(data, graph, registry)
                   for _, data in graph.nodes(data=True) if data.get("op"))


def gemm_flops_per_second(dtype, threads: int = 1, size: int = 1536,
                          seconds: float = 0.5) -> float:
    """A large square matrix product's speed in BLAS on ``threads`` threads."""
    from threadpoolctl import threadpool_limits
    a = np.random.default_rng(0).standard_normal((size, size)).astype(dtype)
    with threadpool_limits(threads, user_api="blas"):
        rate = images_per_second(lambda: a @ a, 1, seconds)
    return rate * 2 * size ** 3


def gemm_peaks(dtype, thread_counts) -> dict[int, float]:
    """Thread count -> `gemm_flops_per_second`, measured once each (the peak)."""
    return {n: gemm_flops_per_second(dtype, n) for n in sorted(set(thread_counts))}


def with_roofline(rows: list[dict], train_flops: int, infer_flops: int,
                  peaks: dict[int, float]) -> list[dict]:
    """`measure`'s rows with, for training and inference, GFLOP/s (images/s times
    the FLOPs per image) and the fraction of the peak on the threads that ran them."""
    out = []
    for r in rows:
        r = dict(r)
        for mode, flops in (("train", train_flops), ("infer", infer_flops)):
            rate = r[f"{mode}_images_per_s"] * flops
            r[f"{mode}_gflops_per_s"] = rate / 1e9
            r[f"{mode}_peak_fraction"] = rate / peaks[r[f"{mode}_threads"]]
        out.append(r)
    return out


def _chosen(chooser, workers):
    """The thread count a measurement ran on."""
    if isinstance(chooser, AutoThreads):
        return chooser.current
    return 1 if workers == "auto" else workers


def profile_ops(model, batch: int, dtype, repeats: int = 20, seed: int = 0):
    """(rows per op type, slowest first; rows per layer and pass, in plan order; peak
    bytes of live buffers) for a training step, its dropout masks drawn.  A row holds
    its pass, milliseconds per step and share of the step."""
    rng = np.random.default_rng(seed)
    params = model.init_params(seed, dtype)
    x, t = synthetic_batch(model, batch, dtype, rng)
    plan = model.plans.gradients
    feeds = model.feeds(params, x, t, Draw(seed, 0, 0).masks(model, batch, dtype))
    totals, peak = defaultdict(float), 0
    for _ in range(repeats):
        peak = max(peak, timed_run(plan, feeds, dtype, totals))
    step_total = sum(totals.values())

    by_op, by_layer = defaultdict(float), defaultdict(float)
    for (op, layer, pass_), seconds in totals.items():  # in plan order
        by_op[(op, pass_)] += seconds
        by_layer[(layer or "-", pass_)] += seconds

    def rows(field, summed):
        return [{field: name, "pass": pass_, "ms_per_step": 1e3 * seconds / repeats,
                 "share": seconds / step_total} for (name, pass_), seconds in summed]
    return (rows("op", sorted(by_op.items(), key=lambda kv: -kv[1])),
            rows("layer", by_layer.items()), peak)


def timed_run(plan: Plan, feeds, dtype, totals=None) -> int:
    """Walk the plan adding each step's seconds to ``totals[(op, layer, pass)]``;
    returns the peak bytes held by live buffers (views count once, through the
    buffer they view), which `resources.plan_peak_bytes` predicts from lifetimes."""
    totals = defaultdict(float) if totals is None else totals
    peak, last = 0, time.perf_counter()

    def watch(step, value, env):
        nonlocal peak, last
        totals[(step.op, step.layer, step.pass_)] += time.perf_counter() - last
        peak = max(peak, _live_bytes(env))
        last = time.perf_counter()
    run_plan(plan, feeds, dtype, watch)
    return peak


def _live_bytes(env) -> int:
    roots = {}
    for array in env.values():
        while isinstance(array.base, np.ndarray):
            array = array.base
        roots[id(array)] = array.nbytes
    return sum(roots.values())
