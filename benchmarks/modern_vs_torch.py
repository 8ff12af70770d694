"""models/modern.cnn trained by cnngraph beside the same network in PyTorch eager.

    pip install -e '.[bench]'          # torch==2.13.0, the CPU build; never a dependency
    python benchmarks/modern_vs_torch.py --batch 32 128 --threads 1 2 --reps 5 --seconds 1
        [--json FILE] [--skip-conv]

cnngraph's side is the training step `run` takes (train_step, the model's Adam,
`reduction_for`'s reduction, a fresh dropout `Draw` per step; numba, float32);
PyTorch's is `ModernTorch`, written as a PyTorch user would (Conv2d without bias,
BatchNorm, ReLU, MaxPool2d, Dropout, Linear, cross-entropy, torch.optim.Adam) with
the model file's momentum, eps, rates, betas and learning rate.  First, one step
from the same weights and cnngraph's dropout masks must give the same loss,
gradients, updated weights and running statistics (`TOLERANCE`).  Then, A/B
interleaved in one process: images/s of each, the ratio cnngraph/PyTorch (median,
min-max), each side's GFLOP/s (twice the training graph's multiply-adds,
`step_flops`) and share of a float32 matrix product's speed on as many threads,
and the threads each reported (asserted) and /proc saw busy.  BLAS has one thread,
as in `run`.  Last, cnngraph's 1-D and 3-D convolutions (forward, input and kernel
gradient) against torch's conv1d/conv3d forward and backward (`CONV_SHAPES`).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import summarize  # noqa: E402  (benchmarks/ is not a package)

from cnngraph import compile_model  # noqa: E402
from cnngraph.rules.norm import running_statistics  # noqa: E402
from cnngraph.tools.bench import gemm_flops_per_second, step_flops, synthetic_batch  # noqa: E402
from cnngraph.tools.machine import format_machine, machine_facts  # noqa: E402
from cnngraph.training.parallel import reduction_for  # noqa: E402
from cnngraph.training.step import Draw, Optimizer, train_step  # noqa: E402

MODEL = Path(__file__).resolve().parent.parent / "models" / "modern.cnn"
#: cnngraph's parameter suffixes -> PyTorch's (modules are named as the .cnn layers)
RENAME = {"kernel": "weight", "scale": "weight", "shift": "bias"}
#: the one-step check's tolerances, relative, in the norm of each array.  float64 is the
#: proof (a kink or tie that rounding flips is then out of reach); in float32 one flipped
#: ReLU kink or max-pool tie moves a whole gradient entry (up to 3e-3 seen in the
#: norm), and Adam's first step, sign(g) for |g| >> eps, flips with the sign of a
#: gradient of 1e-8: there the step is left to the float64 check
TOLERANCE = {"float64": {"loss": 1e-12, "grads": 1e-9, "params": 1e-9, "running": 1e-12},
             "float32": {"loss": 1e-5, "grads": 1e-2, "running": 1e-5}}


class ModernTorch(nn.Module):
    """models/modern.cnn as a PyTorch user writes it, with the batch norm and dropout
    options the model file sets (`layer_options`); ``masks`` (name -> array of 0 and
    1/(1 − rate)) replace Dropout's own draw, for the equivalence check."""

    def __init__(self, options: dict):
        super().__init__()

        def conv(c_in, c_out):
            return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.C1, self.C2, self.C3, self.C4 = conv(1, 16), conv(16, 16), conv(16, 32), conv(32, 32)
        self.B1, self.B2 = nn.BatchNorm2d(16, **options["B1"]), nn.BatchNorm2d(16, **options["B2"])
        self.B3, self.B4 = nn.BatchNorm2d(32, **options["B3"]), nn.BatchNorm2d(32, **options["B4"])
        self.F5 = nn.Linear(32 * 7 * 7, 128, bias=False)
        self.B5 = nn.BatchNorm1d(128, **options["B5"])
        self.out = nn.Linear(128, 10)
        self.D1, self.D2 = nn.Dropout(options["D1"]["p"]), nn.Dropout(options["D2"]["p"])
        self.relu, self.pool = nn.ReLU(), nn.MaxPool2d(2)

    def forward(self, x, masks=None):
        def drop(name, layer, v):
            return layer(v) if masks is None else v * masks[f"{name}.mask"]
        x = self.relu(self.B2(self.C2(self.relu(self.B1(self.C1(x))))))
        x = self.relu(self.B4(self.C4(self.relu(self.B3(self.C3(self.pool(x)))))))
        x = drop("D1", self.D1, self.pool(x)).flatten(1)
        x = drop("D2", self.D2, self.relu(self.B5(self.F5(x))))
        return self.out(x)


def layer_options(model) -> dict:
    """Each batch norm layer's eps and momentum and each dropout layer's rate (as p),
    by layer name, as the model file sets them."""
    found = {}
    for _, data in model.graph.nodes(data=True):
        if data.get("op") == "norm_batch":
            found.setdefault(data["layer"], {})["eps"] = data["attrs"]["eps"]
        elif data.get("op") == "dropout":
            found[data["layer"]] = {"p": data["attrs"]["rate"]}
    for running in running_statistics(model):
        found[running["mean"].split(".")[0]]["momentum"] = running["momentum"]
    return found


def torch_name(name: str) -> str:
    layer, field = name.split(".")
    return f"{layer}.{RENAME.get(field, field)}"


def copy_into(net: ModernTorch, params: dict) -> None:
    """cnngraph's parameters (running statistics included) into ``net``; every one
    must have its PyTorch twin of the same shape, and the other way round."""
    state = net.state_dict()
    mine = {torch_name(k): v for k, v in params.items()}
    theirs = {k for k in state if not k.endswith("num_batches_tracked")}
    assert set(mine) == theirs, (sorted(set(mine) ^ theirs))
    net.load_state_dict({k: torch.as_tensor(v) for k, v in mine.items()}, strict=False)


def torch_twin(model, params: dict, optimizer: Optimizer):
    """(ModernTorch holding ``params``, in their dtype, in training mode; its Adam)."""
    net = ModernTorch(layer_options(model)).to(torch.from_numpy(params["C1.kernel"]).dtype)
    copy_into(net, params)
    options = optimizer.rule.options
    b1, b2, eps = (optimizer.args.get(k, options[k].default) for k in ("beta1", "beta2", "eps"))
    return net.train(), torch.optim.Adam(net.parameters(), lr=model.settings.train.lr,
                                         betas=(b1, b2), eps=eps)


def torch_step(net, optimizer, x, labels, masks=None):
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x, masks), labels)
    loss.backward()
    optimizer.step()
    return loss


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30))


def check_step(model, dtype, batch: int = 32, seed: int = 0) -> dict:
    """One training step on both sides from the same weights with cnngraph's dropout
    masks, in ``dtype``: worst relative error of the loss, gradients, updated weights
    and running statistics (asserted against TOLERANCE)."""
    cfg, tolerance = model.settings.train, TOLERANCE[np.dtype(dtype).name]
    params = model.init_params(seed, dtype)
    x, t = synthetic_batch(model, batch, dtype, np.random.default_rng(seed))
    optimizer = Optimizer.for_model(model, cfg.optimizer)
    draw = Draw.for_step(model, seed, 0, 0)
    new, _, stats = train_step(model, params, optimizer.start(params), (x, t), optimizer,
                               cfg.lr, reduction_for(cfg, model, workers=1), draw)
    net, opt = torch_twin(model, params, optimizer)
    masks = {k: torch.as_tensor(v) for k, v in draw.masks(model, batch, dtype).items()}
    loss = torch_step(net, opt, torch.as_tensor(x), torch.as_tensor(t.argmax(1)), masks)
    named, state = dict(net.named_parameters()), net.state_dict()
    found = dict.fromkeys(tolerance, 0.0)
    found["loss"] = rel(stats.loss, loss.item())
    for name, value in new.items():
        theirs = torch_name(name)
        if "running" in name:
            found["running"] = max(found["running"], rel(value, state[theirs]))
            continue
        found["grads"] = max(found["grads"], rel(stats.grads[name], named[theirs].grad))
        if "params" in found:  # the step itself, lr · m̂ / (sqrt(v̂) + eps), in its norm
            found["params"] = max(found["params"], rel(value - params[name],
                                                       state[theirs].numpy() - params[name]))
    bad = {k: v for k, v in found.items() if v > tolerance[k]}
    assert not bad, (f"cnngraph and PyTorch disagree on one {np.dtype(dtype).name} step: {bad} "
                     f"(tolerances {tolerance})")
    return found


def _task_ticks() -> dict:
    """CPU clock ticks (user + system) of each thread of this process."""
    ticks = {}
    for task in os.scandir("/proc/self/task"):
        try:
            fields = Path(task.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a thread that ended
            continue
        ticks[task.name] = int(fields[11]) + int(fields[12])
    return ticks


def timed(step, batch: int, seconds: float, least: int = 3) -> tuple[float, int, float]:
    """(images/s, threads that ran at least a quarter of the busiest one's CPU time,
    CPU seconds per wall second) of ``step`` run for about ``seconds``, at least
    ``least`` times, after one warm-up call when ``least`` > 1 (relative to the busiest
    thread: on a loaded machine every thread gets less than the wall time)."""
    if least > 1:
        step()
    before, done, start = _task_ticks(), 0, time.perf_counter()
    while done < least or time.perf_counter() - start < seconds:
        step()
        done += 1
    wall = time.perf_counter() - start
    after, hz = _task_ticks(), os.sysconf("SC_CLK_TCK")
    used = [(after[k] - before.get(k, 0)) / hz for k in after]
    busy = sum(u >= 0.25 * max(used) for u in used) if max(used) > 0 else 0
    return done * batch / wall, busy, sum(used) / wall


def cnngraph_trainer(model, params, x, t, threads: int):
    """cnngraph's training step as `run` takes it, on ``threads`` numba threads."""
    cfg = model.settings.train
    optimizer = Optimizer.for_model(model, cfg.optimizer)
    reduce = reduction_for(cfg, model, workers=threads)  # sets the kernels' threads
    state = {"params": params, "optimizer": optimizer.start(params), "step": 0}

    def step():
        draw = Draw.for_step(model, cfg.seed, 0, state["step"])  # fresh masks each step
        state["params"], state["optimizer"], _ = train_step(
            model, state["params"], state["optimizer"], (x, t), optimizer, cfg.lr, reduce, draw)
        state["step"] += 1
    return step, optimizer


def reported_threads() -> tuple[int, int]:
    import numba
    return numba.get_num_threads(), torch.get_num_threads()


def interleaved(sides: dict, batch: int, threads: int, reps: int, seconds: float,
                least: int = 3) -> dict:
    """``sides`` (cnngraph, torch: a step each) `timed` A/B over ``reps`` repetitions,
    both reporting ``threads`` threads before each run: `compare.summarize`'s numbers
    and each side's median busy threads and CPU seconds per wall second."""
    runs = {side: [] for side in sides}
    for _ in range(reps):
        for side, step in sides.items():
            assert reported_threads() == (threads, threads), (reported_threads(), threads)
            runs[side].append(timed(step, batch, seconds, least))
    row = summarize([(a[0], b[0]) for a, b in zip(*runs.values())])
    for side, measured in runs.items():
        row[f"{side}_busy_threads"] = statistics.median(m[1] for m in measured)
        row[f"{side}_cpu_per_wall"] = statistics.median(m[2] for m in measured)
    return row


def train_row(model, batch: int, threads: int, reps: int, seconds: float) -> dict:
    params = model.init_params(0, np.float32)
    x, t = synthetic_batch(model, batch, np.float32, np.random.default_rng(batch))
    ours, optimizer = cnngraph_trainer(model, params, x, t, threads)
    torch.set_num_threads(threads)
    net, opt = torch_twin(model, params, optimizer)
    tx, labels = torch.as_tensor(x), torch.as_tensor(t.argmax(1))
    return interleaved({"cnngraph": ours, "torch": lambda: torch_step(net, opt, tx, labels)},
                       batch, threads, reps, seconds)


# ---- 1-D and 3-D convolutions -------------------------------------------------------

#: (name, x shape (N, C, *spatial), output maps, kernel size, padding per side): the
#: conv layers of models/rows1d.cnn and examples/shapes3d.cnn at their train batch, and
#: a padded ("same") layer of each rank
CONV_SHAPES = [
    ("rows1d C1", (64, 28, 28), 64, 5, 0),
    ("rows1d C2", (64, 64, 12), 128, 5, 0),
    ("1-D k9 same", (32, 16, 512), 32, 9, 4),
    ("shapes3d C1", (32, 1, 16, 16, 16), 8, 3, 0),
    ("shapes3d C2", (32, 8, 7, 7, 7), 16, 4, 0),
    ("3-D k3 same", (16, 8, 8, 8, 8), 16, 3, 1),
]


def conv_ops(backend, x, kernel, pad: int):
    """cnngraph's forward, input gradient and kernel gradient of one conv layer, as the
    compiler emits them: conv_valid's ops without padding, conv_strided's with it."""
    d = x.ndim - 2
    if pad == 0:
        ops = [("conv_valid", {}), ("conv_full", {}),
               ("conv_grad_kernel", {"size": kernel.shape[2:]})]
    else:
        geometry = {"stride": (1,) * d, "padding": ((pad, pad),) * d, "dilation": (1,) * d}
        ops = [("conv_strided", geometry),
               ("conv_strided_full", {"map_size": x.shape[2:], **geometry}),
               ("conv_strided_grad_kernel", {"size": kernel.shape[2:], **geometry})]
    return [(backend.kernel(op).run, attrs) for op, attrs in ops]


def conv_pair(backend, shape, maps: int, k: int, pad: int):
    """(cnngraph's step, PyTorch's step), each forward + both gradients, after a check
    that the two agree to float32 rounding."""
    rng = np.random.default_rng(0)
    d = len(shape) - 2
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = rng.standard_normal((maps, shape[1]) + (k,) * d).astype(np.float32)
    forward, full, grad_kernel = conv_ops(backend, x, kernel, pad)
    y = forward[0](x, kernel, **forward[1])
    delta = rng.standard_normal(y.shape).astype(np.float32)

    def ours():
        return (forward[0](x, kernel, **forward[1]), full[0](delta, kernel, **full[1]),
                grad_kernel[0](x, delta, **grad_kernel[1]))
    conv = {1: F.conv1d, 3: F.conv3d}[d]
    tx, tk, td = (torch.tensor(a, requires_grad=True) for a in (x, kernel, delta))

    def theirs():
        out = conv(tx, tk, padding=pad)
        return (out,) + torch.autograd.grad(out, (tx, tk), td)
    worst = max(rel(b.detach().numpy(), a) for a, b in zip(ours(), theirs()))
    assert worst <= 1e-4, f"conv {shape} k={k} pad={pad}: relative error {worst}"
    return ours, theirs


def conv_rows(threads_list, reps: int, seconds: float, shapes=CONV_SHAPES) -> list[dict]:
    """A row per shape and thread count; a shape cnngraph fails on (no kernel for its
    rank, or results that disagree with PyTorch's) gets its error instead."""
    from cnngraph.compiler.program import default_registry
    backend = default_registry().backend("numba")
    rows = []
    for threads in threads_list:
        backend.set_threads(threads)
        torch.set_num_threads(threads)
        for name, shape, maps, k, pad in shapes:
            row = {"conv": name, "threads": threads, "shape": shape, "maps": maps,
                   "kernel": k, "padding": pad}
            try:
                ours, theirs = conv_pair(backend, shape, maps, k, pad)
            except Exception as error:  # reported in its row: the other shapes still run
                said = f"{type(error).__name__}: {(str(error) or '-').splitlines()[0]}"
                rows.append({**row, "error": said})
                print(f"{name:<20}{threads:>3}  FAILED: {said}", flush=True)
                continue
            # warm from the check; one call may be long (a rank on the reference kernels)
            row.update(interleaved({"cnngraph": ours, "torch": theirs}, shape[0], threads,
                                   reps, seconds, least=1))
            rows.append(row)
            print(f"{name:<20}{threads:>3}{row['cnngraph']:>11,.0f}{row['torch']:>11,.0f}"
                  f"{row['ratio_median']:>7.2f}  {row['ratio_min']:.2f}-{row['ratio_max']:.2f}"
                  f"{row['cnngraph_busy_threads']:>10g} / {row['torch_busy_threads']:g}",
                  flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="seconds of each timed run (one side, one repetition)")
    parser.add_argument("--skip-conv", action="store_true",
                        help="leave out the 1-D and 3-D convolutions")
    parser.add_argument("--json", metavar="FILE", help="also write every number here")
    args = parser.parse_args(argv)
    model = compile_model(MODEL, backend="numba")
    result = {"train": [], "conv": []}
    # BLAS on one thread, as `run` trains; PyTorch's intra-op pool is not BLAS (checked)
    with threadpool_limits(1, user_api="blas"):
        print(format_machine(machine_facts()))
        # cnngraph's kernels first (compiled or loaded from numba's cache): numba's
        # OpenMP layer, loaded after PyTorch set its threads, changed torch's count
        # (compare.py), and the first step's compiling is timed by no one
        checks = {np.dtype(d).name: check_step(model, d) for d in (np.float64, np.float32)}
        import numba
        print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}); "
              f"numba {numba.__version__}, threading layer {numba.threading_layer()}")
        for dtype, found in checks.items():
            print(f"one {dtype} step from the same weights and dropout masks, worst relative "
                  "error: " + ", ".join(f"{k} {v:.1e} (<= {TOLERANCE[dtype][k]:g})"
                                        for k, v in found.items()) + ": the same")
        result["check"] = checks
        flops = step_flops(model)
        peaks = {n: gemm_flops_per_second(np.float32, n) for n in args.threads}
        print(f"a training step is {flops / 1e6:.2f} MFLOP per image; a float32 matrix "
              "product (the GEMM peak): " + ", ".join(f"{p / 1e9:.0f} GFLOP/s on {n} thread(s)"
                                                      for n, p in peaks.items()))
        print(f"\n{'thr':>3}{'batch':>6}{'cnngraph':>10}{'torch':>10}{'ratio':>7}  "
              f"{'min-max':<11}{'GFLOP/s':>8}{'peak':>6}{'GFLOP/s':>9}{'peak':>6}"
              f"{'busy threads':>14}")
        for threads in args.threads:
            for batch in args.batch:
                row = train_row(model, batch, threads, args.reps, args.seconds)
                gflops = {s: row[s] * flops / 1e9 for s in ("cnngraph", "torch")}
                row.update(threads=threads, batch=batch, step_flops=flops,
                           gemm_peak=peaks[threads],
                           **{f"{s}_gflops": g for s, g in gflops.items()})
                result["train"].append(row)
                share = {s: 100 * g * 1e9 / peaks[threads] for s, g in gflops.items()}
                print(f"{threads:>3}{batch:>6}{row['cnngraph']:>10,.0f}{row['torch']:>10,.0f}"
                      f"{row['ratio_median']:>7.2f}  "
                      f"{row['ratio_min']:.2f}-{row['ratio_max']:.2f}".ljust(38)
                      + f"{gflops['cnngraph']:>8.1f}{share['cnngraph']:>5.1f}%"
                      f"{gflops['torch']:>9.1f}{share['torch']:>5.1f}%"
                      f"{row['cnngraph_busy_threads']:>8g} / {row['torch_busy_threads']:g}",
                      flush=True)
        if not args.skip_conv:
            print(f"\nconvolutions, forward + input and kernel gradients, images/s\n"
                  f"{'shape':<20}{'thr':>3}{'cnngraph':>11}{'torch':>11}{'ratio':>7}  "
                  f"{'min-max':<9}{'busy threads':>14}")
            result["conv"] = conv_rows(args.threads, args.reps, args.seconds)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
