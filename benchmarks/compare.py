"""cnngraph against an equivalent PyTorch CPU model in eager mode, side by side.

    pip install torch==2.13.0          # the benchmark extra; never a dependency
    python benchmarks/compare.py --models models/dlt.cnn models/lenet5.cnn \
        --batch 1 10 50 256 --dtype float32 float64 --threads 1 2 [--backend numba]
        [--torch-compile]

The PyTorch model is generated from cnngraph's own forward graph, op by op, so
both do the same arithmetic (cnngraph's N threads run in its kernels for a backend
with its own threads, numba; else they split the batch, one BLAS thread each;
PyTorch gets torch.set_num_threads(N)): a masked convolution multiplies its kernel by the
0/1 connection mask every step (LeNet-5's C3), subsampling is a block sum times
beta plus bias, losses are averaged over the batch, and the update is plain SGD.
Both run in one process, so both get the allocator setting cnngraph makes
(`execute.reuse_freed_buffers`: freed buffers stay in malloc's heap for the next
step).  Before timing, the script checks that both give the same loss and
gradients for the same weights.  A/B runs are interleaved over several repetitions; it prints
images/s of each, the ratio cnngraph/PyTorch eager per pair, its median and min-max.
Beside them, reported and never a target: PyTorch's inference under
torch.inference_mode (``infer`` rows, column ``inf-mode``) and, with --torch-compile,
the same step and inference through torch.compile (inductor on the CPU; its
compile time is printed, not timed).
Under each row a second line gives every side's GFLOP/s and share of the peak
(``--json``: each row's ``roofline``).  The FLOPs per image are the model's
(`cnngraph.tools.bench.step_flops` for a training step, `forward_flops` for
inference), one count for every side (PyTorch's masked C3 convolves every map
pair, more arithmetic than counted); the peak is a large matrix product in
NumPy's BLAS in the row's dtype on its thread count (`gemm_flops_per_second`),
measured once each and printed in the header beside the machine.
It also times a full MNIST-sized epoch (60 000 random images) of dlt.cnn in
float64 at batch 50, to set beside DeepLearnToolbox's ~800 images/s on Octave.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from cnngraph import compile_model
from cnngraph.compiler.program import make_plan
from cnngraph.tools.bench import (forward_flops, gemm_peaks, sgd_step, step_flops,
                                  synthetic_batch)
from cnngraph.tools.machine import format_machine, machine_facts
from cnngraph.training.step import Optimizer, train_step
from cnngraph.training.threads import threads_for


def _masked_conv(args, attrs):
    x, k = args
    mask = attrs.get("mask")
    if mask is not None:
        k = k * torch.as_tensor(mask, dtype=k.dtype)[:, :, None, None]
    return F.conv2d(x, k)


def _matmul(args, attrs):
    a, b = args
    return (a.T if attrs.get("transpose_a") else a) @ (b.T if attrs.get("transpose_b") else b)


#: cnngraph's forward ops in PyTorch: the benchmark's own backend table, keyed like
#: the kernel tables in cnngraph/runtime (an op missing here is named when it is met).
TORCH_OPS = {
    "conv_valid": _masked_conv,
    "add_bias": lambda args, attrs: args[0] + args[1].reshape((1, -1) + (1,) * (args[0].dim() - 2)),
    "scale_maps": lambda args, attrs: args[0] * args[1].reshape(1, -1, 1, 1),
    "scale": lambda args, attrs: args[0] * attrs["c"],
    "subsample_sum": lambda args, attrs: F.avg_pool2d(args[0], attrs["factor"])
    * attrs["factor"] ** 2,
    "subsample_decimate": lambda args, attrs: args[0][:, :, ::attrs["factor"], ::attrs["factor"]],
    "sigmoid": lambda args, attrs: torch.sigmoid(attrs.get("gain", 1.0) * args[0]),
    "tanh": lambda args, attrs: attrs.get("a", 1.0) * torch.tanh(attrs.get("b", 1.0) * args[0]),
    "reshape": lambda args, attrs: args[0].reshape((args[0].shape[0],) + tuple(attrs["shape"])),
    "concat": lambda args, attrs: torch.cat(args, dim=1),
    "matmul": _matmul,
    "squared_error": lambda args, attrs: 0.5 * ((args[0] - args[1]) ** 2).sum()
    / args[0].shape[0],
    "softmax_cross_entropy": lambda args, attrs: -(args[1] * F.log_softmax(args[0], dim=1)).sum()
    / args[0].shape[0],
}


def torch_op(op):
    """One cnngraph forward op in PyTorch: fn(args, attrs)."""
    if op not in TORCH_OPS:
        raise NotImplementedError(f"no PyTorch translation for op '{op}' (add it to TORCH_OPS)")
    return TORCH_OPS[op]


class TorchNet:
    """cnngraph's forward graph replayed with torch tensors: its steps are resolved to
    plain (node, function, inputs, attrs) tuples once, so torch.compile traces one graph."""

    def __init__(self, model, params, dtype):
        net, graph = model.network, model.graph
        plan = make_plan(graph, [net.loss], model.registry, model.backend, fuse=False)
        nodes = [graph.nodes[step.node] for step in plan.steps]
        self.steps = [(step.node, torch_op(data["op"]), tuple(data["inputs"]),
                       dict(data["attrs"])) for step, data in zip(plan.steps, nodes)]
        self.input, self.target = net.input, net.target
        self.loss_node, self.prediction = net.loss, net.prediction
        self.params = {k: torch.tensor(v, dtype=dtype, requires_grad=True)
                       for k, v in params.items()}

    def _run(self, env, last):
        for node, fn, inputs, attrs in self.steps:
            if node == last:
                return fn([env[i] for i in inputs], attrs)
            env[node] = fn([env[i] for i in inputs], attrs)
        return env[last]

    def loss(self, x, t):
        env = dict(self.params)
        env[self.input], env[self.target] = x, t
        return self._run(env, self.loss_node)

    def step(self, x, t, lr, loss_fn=None):
        """One plain SGD step on the loss (``loss_fn``: a compiled ``loss``)."""
        loss = (loss_fn or self.loss)(x, t)
        for p in self.params.values():
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in self.params.values():
                p -= lr * p.grad
        return loss

    def compiled(self, x, t, lr):
        """(training step, inference) through torch.compile, compiled by a first call.
        dynamo's caches are cleared first: every model shares these methods' code, and
        after 8 recompilations (shapes, thread counts) dynamo silently ran them eagerly."""
        torch._dynamo.reset()
        loss_c = torch.compile(self.loss)
        infer_c = torch.compile(self._forward)

        def step():
            self.step(x, t, lr, loss_c)

        def infer():
            with torch.no_grad():
                return infer_c(x)
        step(), infer()
        return step, infer

    def infer(self, x, inference_mode=False):
        with torch.inference_mode() if inference_mode else torch.no_grad():
            return self._forward(x)

    def _forward(self, x):
        env = dict(self.params)
        env[self.input] = x
        return self._run(env, self.prediction)


def check_same(model, net, params, x, t):
    loss, grads, _ = model.loss_and_grads({k: v.copy() for k, v in params.items()}, x, t)
    torch_loss = net.loss(torch.as_tensor(x), torch.as_tensor(t))
    torch_grads = torch.autograd.grad(torch_loss, list(net.params.values()))
    tol = 1e-4 if x.dtype == np.float32 else 1e-10
    torch_loss = float(torch_loss.detach())
    assert abs(loss - torch_loss) <= tol * max(1.0, abs(loss)), (loss, torch_loss)
    for (name, g), tg in zip(net.params.items(), torch_grads):
        err = np.linalg.norm(grads[name] - tg.numpy()) / max(np.linalg.norm(grads[name]), 1e-30)
        assert err <= 10 * tol, (name, err)


def rate(fn, batch, seconds):
    fn()
    done, start = 0, time.perf_counter()
    while done < 3 or time.perf_counter() - start < seconds:
        fn()
        done += 1
    return done * batch / (time.perf_counter() - start)


def compare(path, batch, dtype, threads, reps, seconds, backend="auto", torch_compile=False):
    model = compile_model(path, backend=backend)
    rng = np.random.default_rng(0)
    params = model.init_params(0, dtype)
    x, t = synthetic_batch(model, batch, dtype, rng)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    torch.set_num_threads(threads)
    net = TorchNet(model, params, tdtype)
    # cnngraph: N threads in its kernels or split over the batch, one BLAS thread each;
    # the limit is on BLAS alone, so PyTorch's OpenMP pool keeps its N threads (checked)
    with threadpool_limits(1, user_api="blas"):
        check_same(model, net, params, x, t)
        ours_params = {k: v.copy() for k, v in params.items()}
        tx, tt = torch.as_tensor(x), torch.as_tensor(t)
        ours_train = sgd_step(model, ours_params, x, t, 1e-4, workers=threads)
        extras = {"infer": {"inf-mode": lambda: net.infer(tx, inference_mode=True)}}
        if torch_compile:
            started = time.perf_counter()
            train_c, infer_c = net.compiled(tx, tt, 1e-4)
            print(f"  torch.compile: {time.perf_counter() - started:.1f} s to compile "
                  f"({path}, batch {batch})", flush=True)
            extras["train"] = {"compiled": train_c}
            extras["infer"]["compiled"] = infer_c
        assert torch.get_num_threads() == threads, (torch.get_num_threads(), threads)
        pairs = {"train": [], "infer": []}
        others = {mode: {name: [] for name in table} for mode, table in extras.items()}
        for _ in range(reps):  # interleaved A/B
            pairs["train"].append((rate(ours_train, batch, seconds),
                                   rate(lambda: net.step(tx, tt, 1e-4), batch, seconds)))
            pairs["infer"].append((rate(lambda: model.forward(ours_params, x), batch, seconds),
                                   rate(lambda: net.infer(tx), batch, seconds)))
            for mode, table in extras.items():
                for name, fn in table.items():
                    others[mode][name].append(rate(fn, batch, seconds))
            assert torch.get_num_threads() == threads, (torch.get_num_threads(), threads)
    return pairs, others


def summarize(pairs):
    ratios = [a / b for a, b in pairs]
    return {"cnngraph": statistics.median(a for a, _ in pairs),
            "torch": statistics.median(b for _, b in pairs),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "pairs": [list(p) for p in pairs], "ratios": ratios}


def dlt_epoch(threads, backend="auto"):
    """A full 60 000-image epoch of dlt.cnn, float64, batch 50, plain SGD."""
    model = compile_model("models/dlt.cnn", backend=backend)
    rng = np.random.default_rng(0)
    params = model.init_params(0, np.float64)
    x, t = synthetic_batch(model, 60_000, np.float64, rng)
    optimizer = Optimizer.for_model(model, ("sgd", {}))
    reduce, state = threads_for(model, threads), {}
    with threadpool_limits(1, user_api="blas"):
        start = time.perf_counter()
        for i in range(0, 60_000, 50):
            params, state, _ = train_step(model, params, state, (x[i:i + 50], t[i:i + 50]),
                                          optimizer, 1.0, reduce)
        return 60_000 / (time.perf_counter() - start)


def roofline(rates: dict, flops: int, peak: float) -> dict:
    """Side -> GFLOP/s and fraction of ``peak`` at its images/s (``rates``)."""
    return {side: {"gflops_per_s": r * flops / 1e9, "peak_fraction": r * flops / peak}
            for side, r in rates.items()}


def format_row(head, s, rates, extra_names, roof):
    """A row's two lines: each side's images/s and the ratio cnngraph/PyTorch eager;
    under each side, its GFLOP/s and % of the peak (``head``: the row's first 44
    columns; ``rates`` and ``roof``: side -> images/s, `roofline`)."""
    def cells(text, middle):
        ours = "".join(f"{text(k):>12}" for k in ("cnngraph", "torch"))
        others = "".join(f"{text(k) if k in rates else '':>12}" for k in extra_names)
        return f"{ours}{middle:<19}{others}"

    def speed(k):
        return f"{rates[k]:,.0f}"

    def share(k):
        return f"{roof[k]['gflops_per_s']:.1f} {100 * roof[k]['peak_fraction']:4.1f}%"
    ratio = f"{s['ratio_median']:>7.2f}  {s['ratio_min']:.2f}-{s['ratio_max']:.2f}"
    return (f"{head:<44}{cells(speed, ratio)}".rstrip() + "\n"
            + f"{'':<18}{'GFLOP/s, % of peak':<26}{cells(share, '')}".rstrip())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["models/dlt.cnn", "models/lenet5.cnn"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 10, 50, 256])
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--json", metavar="FILE",
                        help="also write all numbers here, each A/B pair and its ratio included")
    parser.add_argument("--skip-epoch", action="store_true")
    parser.add_argument("--backend", default="auto",
                        help="cnngraph's kernels (default auto: numba where installed)")
    parser.add_argument("--torch-compile", action="store_true",
                        help="also time PyTorch through torch.compile (inductor)")
    args = parser.parse_args(argv)
    rows = []
    with threadpool_limits(1, user_api="blas"):  # as the timings run cnngraph's side
        print(format_machine(machine_facts()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads by default "
          f"(each row sets and checks its own); backend: {torch.backends.cpu.get_cpu_capability()}")
    # cnngraph's kernels run once before PyTorch sets its threads: numba's OpenMP layer
    # loads the system's libgomp beside PyTorch's, and loaded later, inside the
    # BLAS-only limit, it turned torch.get_num_threads() from 1 to 2 (checked below)
    warm = compile_model(args.models[0], backend=args.backend)
    with threadpool_limits(1, user_api="blas"):
        warm.forward(warm.init_params(0, np.float32),
                     synthetic_batch(warm, 40, np.float32, np.random.default_rng(0))[0])
    print(f"cnngraph backend: {warm.backend.name}")
    peaks = {dtype: gemm_peaks(np.dtype(dtype), args.threads) for dtype in args.dtype}
    print("peak, a 1536x1536 matrix product in NumPy's BLAS: " + "; ".join(
        f"{dtype} " + ", ".join(f"{p / 1e9:.0f} GFLOP/s on {n} thread(s)" for n, p in by_n.items())
        for dtype, by_n in peaks.items()))
    flops = {}
    for path in args.models:
        model = compile_model(path, backend=args.backend)
        flops[path] = {"train": step_flops(model), "infer": forward_flops(model)}
        print(f"{path}: a training step is {flops[path]['train'] / 1e6:.3f} MFLOP per image, "
              f"a forward pass (inference) {flops[path]['infer'] / 1e6:.3f}, on every side")
    extra_names = ["inf-mode"] + (["compiled"] if args.torch_compile else [])
    print(f"{'model':<18}{'dtype':<9}{'thr':>3}{'batch':>6}  {'mode':<6}"
          f"{'cnngraph':>12}{'torch':>12}{'ratio':>7}  {'min-max':<10}"
          + "".join(f"{name:>12}" for name in extra_names))
    for path in args.models:
        for dtype in args.dtype:
            for threads in args.threads:
                for batch in args.batch:
                    pairs, others = compare(path, batch, np.dtype(dtype).type, threads,
                                            args.reps, args.seconds, args.backend,
                                            args.torch_compile)
                    for mode, p in pairs.items():
                        s = summarize(p)
                        extra = {name: statistics.median(v)
                                 for name, v in others.get(mode, {}).items()}
                        rates = {"cnngraph": s["cnngraph"], "torch": s["torch"], **extra}
                        peak = peaks[dtype][threads]
                        roof = roofline(rates, flops[path][mode], peak)
                        rows.append({"model": path, "dtype": dtype, "threads": threads,
                                     "batch": batch, "mode": mode, **s,
                                     "torch_others": extra,
                                     "flops_per_image": flops[path][mode],
                                     "peak_flops_per_s": peak, "roofline": roof})
                        head = (f"{path.split('/')[-1]:<18}{dtype:<9}{threads:>3}{batch:>6}  "
                                f"{mode}")
                        print(format_row(head, s, rates, extra_names, roof), flush=True)
    result = {"rows": rows}
    if not args.skip_epoch:
        for threads in args.threads:
            ips = dlt_epoch(threads, args.backend)
            result[f"dlt_epoch_float64_batch50_threads{threads}"] = ips
            print(f"dlt.cnn full epoch, float64, batch 50, {threads} thread(s): "
                  f"{ips:,.0f} images/s (DeepLearnToolbox on Octave: ~800)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
