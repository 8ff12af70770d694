"""The command line: ``python -m cnngraph COMMAND MODEL.cnn [flags]``.

Only this module prints or exits.  User mistakes exit 2 with a located
message; a failed gradient check exits 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..core.errors import CnnError, UsageError, format_error
from .console import RunPrinter, StopFlag, format_confusion
from .export_command import add_export, cmd_export
from .sweep_command import add_sweep, cmd_sweep

EPILOG = {
    "bench": "example: python -m cnngraph bench models/lenet5.cnn --batch 1 16 50 --threads 1",
    "check-ops": "example: python -m cnngraph check-ops --ops examples/maxpool.py",
    "run": "example: python -m cnngraph run models/dlt.cnn --data ../shared/data/mnist "
           "--out runs/dlt\n"
           "quick:   python -m cnngraph run models/dlt.cnn --out runs/dlt   (one epoch, about 40 s)",
    "eval": "example: python -m cnngraph eval models/dlt.cnn --checkpoint runs/dlt/checkpoint.npz",
    "download": "example: python -m cnngraph download --dir ~/mnist",
    "check": "example: python -m cnngraph check models/lenet5.cnn --sample 200",
    "dot": "example: python -m cnngraph dot models/lenet5.cnn --backward -o lenet5-backward.svg",
    "summary": "example: python -m cnngraph summary models/lenet5.cnn --json",
}


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except CnnError as e:
        print(format_error(e), file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnngraph", description="Compile, check, draw and train convolutional networks "
        "written as .cnn model files.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, handler, help_text, add in COMMANDS:
        sub = commands.add_parser(name, help=help_text, description=help_text,
                                  epilog=EPILOG.get(name),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        add(sub)
        sub.set_defaults(handler=handler)
    return parser


def _model_arg(sub):
    sub.add_argument("model", help="the .cnn model file")
    _ops_arg(sub)


def _ops_arg(sub, required=False):
    sub.add_argument("--ops", action="append", default=[], metavar="FILE.py|MODULE",
                     required=required,
                     help="load op and layer rules from a plugin (repeatable)")


def _backend_arg(sub):
    sub.add_argument("--backend", default="auto", metavar="NAME",
                     help="the kernels: numba (compiled; pip install 'cnngraph[fast]'), numpy, "
                          "or reference (plain and slow); auto, the default: numba where it is "
                          "installed, else numpy ($CNNGRAPH_BACKEND overrides auto)")


def _thread_count(text: str):
    if text == "auto":
        return text
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number or auto, got "
                                         f"'{text}'")
    return count


def _threads_arg(sub):
    sub.add_argument("--threads", type=_thread_count, metavar="N|auto", default="auto",
                     help="threads: the numba backend runs them in its kernels; auto, the "
                          "default, times one thread against all cores and keeps the faster, "
                          "trying again now and then (another process may take a core). The "
                          "numpy backend splits each batch across N threads, one BLAS "
                          "thread each (auto: one)")


def _registry(args):
    from ..compiler.program import default_registry
    from ..core.plugins import load_plugin
    registry = default_registry()
    for spec in args.ops:
        load_plugin(spec, registry)
    return registry


def _compile(args):
    from ..compiler.program import compile_model
    model = compile_model(args.model, _registry(args), getattr(args, "backend", "numpy"))
    for message, span in model.network.warnings:
        print(format_error(CnnError(message, span), "warning"), file=sys.stderr)
    return model


# check ------------------------------------------------------------------

def _add_check(sub):
    _model_arg(sub)
    _backend_arg(sub)
    sub.add_argument("--sample", type=int, metavar="N",
                     help="compare N random coordinates per tensor instead of all")
    sub.add_argument("--directions", type=int, default=0, metavar="K",
                     help="also compare K random directional derivatives per tensor")
    sub.add_argument("--batch", type=int, default=2, help="random patterns (default 2)")
    sub.add_argument("--eps", type=float, default=None, metavar="H",
                     help="fixed finite-difference step, with Richardson extrapolation (default: "
                          "chosen per tensor from 1e-1 down to 2e-5 by the least estimated "
                          "error); use 1e-5 for models with kinks such as relu or max-pooling")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_check(args) -> int:
    from ..tools.check_model import check_model
    from ..tools.check_ops import TOLERANCE
    model = _compile(args)
    if args.batch < 1 or (args.sample is not None and args.sample < 1):
        raise UsageError("--batch and --sample must be at least 1")
    eps = args.eps
    if eps is not None and not 0 < eps < 1:
        raise UsageError(f"--eps must be between 0 and 1, got {eps}")
    if not args.json:
        print(f"{'tensor':<14} {'size':>8} {'checked':>8} {'rel. error':>11} {'step':>8} "
              f"{'est. error':>11}")
    results = check_model(model, batch=args.batch, seed=args.seed, sample=args.sample,
                          directions=args.directions, eps=eps,
                          progress=None if args.json else _print_check_row)
    ok = all(r.ok for r in results)
    if args.json:
        def _finite(value):  # JSON has no NaN
            return value if np.isfinite(value) else None
        print(json.dumps({"model": args.model, "tolerance": TOLERANCE, "eps": eps,
                          "batch": args.batch, "ok": ok,
                          "tensors": [{"name": r.name, "size": r.size, "checked": r.checked,
                                       "directions": r.directions, "error": r.error,
                                       "step": _finite(r.step),
                                       "estimated_error": _finite(r.estimated_error),
                                       "ok": r.ok} for r in results]}))
    else:
        bad = [r.name for r in results if not r.ok]
        step = "step h chosen per tensor" if eps is None else f"h={eps:g}"
        print(f"{len(results) - len(bad)} of {len(results)} gradients agree within "
              f"{TOLERANCE:g} (norm-wise relative error; central differences in float64, "
              f"{step} with Richardson extrapolation, est. error |R(h) - R(h/2)|, "
              f"batch {args.batch})")
        if bad:
            print("FAILED: " + ", ".join(bad))
    return 0 if ok else 1


def _print_check_row(r):
    from ..tools.check_ops import TOLERANCE
    flag = "ok" if r.ok else "FAILED"
    if not r.ok and r.estimated_error > TOLERANCE:
        flag += " (est. error above tolerance: finite differences unsure, try --eps)"
    print(f"{r.name:<14} {r.size:>8} {r.checked:>8} {r.error:>11.2e} {r.step:>8.1e} "
          f"{r.estimated_error:>11.2e}  {flag}", flush=True)


# dot --------------------------------------------------------------------

def _add_dot(sub):
    _model_arg(sub)
    which = sub.add_mutually_exclusive_group()
    which.add_argument("--backward", action="store_true",
                       help="the forward graph plus the derived backward pass (gradients of "
                            "the parameters)")
    which.add_argument("--training", action="store_true",
                       help="the backward graph plus the curvature pass SDLM uses")
    sub.add_argument("-o", "--output", metavar="FILE",
                     help="write FILE (.dot, or .svg/.png/.pdf rendered with Graphviz) "
                          "instead of printing DOT")


def cmd_dot(args) -> int:
    from ..tools.dot import to_dot, write_graph
    model = _compile(args)
    if args.training:
        derived, _ = model.training_graph()
        graph, what = derived.graph, "training graph"
    elif args.backward:
        graph, what = model.backward_graph().graph, "backward graph"
    else:
        graph, what = model.graph, "forward graph"
    text = to_dot(graph, model.registry, f"{args.model}: {what}")
    if args.output:
        write_graph(text, args.output)
    else:
        sys.stdout.write(text)
    return 0


# summary ----------------------------------------------------------------

def _add_summary(sub):
    _model_arg(sub)
    sub.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_summary(args) -> int:
    from ..tools.summary import format_summary, summarize, summary_json
    model = _compile(args)
    rows = summarize(model)
    print(json.dumps(summary_json(model, rows)) if args.json else format_summary(model, rows))
    return 0


# run ------------------------------------------------------------------------

def _add_data(sub):
    sub.add_argument("--data", metavar="PATH",
                     help="the data set: a folder of MNIST's IDX files, a .json naming four "
                          "IDX files, an .npz with x_train, y_train, x_test, y_test, or a "
                          "folder with train/ and test/ folders of images, one per class "
                          "(default: the train block's data, then $CNNGRAPH_DATA, then "
                          "~/.cache/cnngraph/mnist)")
    _threads_arg(sub)
    sub.add_argument("--limit-test", type=int, metavar="N",
                     help="evaluate on the first N test images")


def _add_run(sub):
    _model_arg(sub)
    _backend_arg(sub)
    _add_data(sub)
    sub.add_argument("--out", default="runs/latest", metavar="DIR",
                     help="where metrics.json and checkpoint.npz go (default runs/latest)")
    for flag, kind, text in (("--epochs", int, "passes over the training set"),
                             ("--batch", int, "minibatch size (1 = online)"),
                             ("--lr", float, "global learning rate"),
                             ("--seed", int, "random seed"),
                             ("--val", int, "validation images taken from the training set"),
                             ("--shards", int, "cut each batch into N fixed pieces, combined "
                              "in order: under mpiexec the ranks share them, and any rank "
                              "count gives the same bits")):
        sub.add_argument(flag, type=kind, help=text + " (overrides the model's train block)")
    sub.add_argument("--dtype", choices=("float32", "float64"))
    sub.add_argument("--reduction", choices=("ordered", "allreduce"), default="ordered",
                     help="with shards: gather them and add in shard order (default; "
                          "bitwise the same for any rank count) or MPI_Allreduce (faster, "
                          "equal to rounding only)")
    sub.add_argument("--limit-train", type=int, metavar="N", help="train on the first N images")
    sub.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    sub.add_argument("--weights", metavar="FILE.npz",
                     help="start from these parameters (named as 'summary' names them)")
    sub.add_argument("--quiet", action="store_true", help="print only the final result")
    plots = sub.add_mutually_exclusive_group()
    plots.add_argument("--plots", action="store_true", default=None,
                       help="write PNG pictures of learning into OUT (default: when "
                            "matplotlib is installed)")
    plots.add_argument("--no-plots", dest="plots", action="store_false",
                       help="never draw pictures")
    sub.add_argument("--shuffle", action=argparse.BooleanOptionalAction,
                     help="visit the training set in a new random order each epoch, or in "
                          "file order (overrides the model's train block)")
    sub.add_argument("--threshold", type=float, default=0.1, metavar="T",
                     help="learned combinations: export pairs with strength >= T (default 0.1)")


def _overrides(args, cfg):
    changes = {k: getattr(args, k) for k in ("epochs", "batch", "lr", "seed", "val", "dtype",
                                             "shuffle", "shards")
               if getattr(args, k, None) is not None}
    for name in ("epochs", "batch", "limit_train", "limit_test", "shards"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if changes.get("lr", 1) <= 0 or changes.get("val", 0) < 0 or changes.get("seed", 0) < 0:
        raise UsageError("--lr must be positive; --val and --seed must not be negative")
    return dataclasses.replace(cfg, **changes)


def _load_data(args, model, cfg):
    """--data, else the train block's data (relative to the model file), else MNIST
    from $CNNGRAPH_DATA or the cache; read, checked and preprocessed for the model."""
    from ..training.datasets import load_data, resolve_data
    from ..training.preprocess import make_splits
    raw = load_data(resolve_data(args.data, getattr(cfg, "data", None),
                                 model.network.spec.file))
    return make_splits(model, raw, cfg.val, np.dtype(cfg.dtype),
                       getattr(args, "limit_train", None), args.limit_test)


def _threads(args):
    """BLAS runs single-threaded: parallelism comes from splitting the batch.  Two
    BLAS threads while another process held a core measured 62-460 images/s for
    LeNet-5 at batch 50 against 650-1270 with one (benchmarks, README)."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(1, user_api="blas")


def cmd_run(args) -> int:
    from ..tools.experiment import pictures_wanted, run_experiment
    from ..training.loop import CHECKPOINT, Interrupted
    from ..training.resources import check_training_memory
    from ..training.world import detect_world
    world = detect_world()
    if not world.is_root:  # under mpiexec only rank 0 speaks
        sys.stdout = sys.stderr = open(os.devnull, "w")
    pids = world.allgather(os.getpid())
    if world.size > 1 and not args.quiet:  # the launcher names a lost process by its pid
        print(f"data-parallel on {world.size} ranks (pids " +
              ", ".join(f"rank {rank}: {pid}" for rank, pid in enumerate(pids)) + ")",
              flush=True)
    pictures_wanted(args.plots)  # --plots without matplotlib fails before any work
    model = _compile(args)
    cfg = _overrides(args, model.settings.train)
    train, validation, test = _load_data(args, model, cfg)
    check_training_memory(model, cfg.batch, cfg.dtype, cfg.optimizer)
    out = Path(args.out)
    stop = StopFlag()
    with _threads(args), stop:
        try:
            run_experiment(model, train, validation, test, cfg, out, workers=args.threads,
                           weights=args.weights, resume=args.resume, plots=args.plots,
                           threshold=args.threshold, report=RunPrinter(args.model, args.quiet),
                           should_stop=stop, world=world, reduction=args.reduction)
        except Interrupted as e:
            print(f"\n{e}; checkpoint saved in {out / CHECKPOINT}; continue with --resume",
                  file=sys.stderr)
            return 130
    return 0


# eval -----------------------------------------------------------------------

def _add_eval(sub):
    from .export_command import MODEL_HELP
    sub.add_argument("model", nargs="?", help=MODEL_HELP)
    _ops_arg(sub)
    _backend_arg(sub)
    _add_data(sub)
    sub.add_argument("--checkpoint", required=True, metavar="FILE",
                     help="a checkpoint.npz written by 'run'")
    sub.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_eval(args) -> int:
    from ..training.checkpoint import check_param_arrays
    from ..training.loop import evaluate
    from ..training.resources import check_evaluation_memory
    from ..training.threads import forward_threads
    from .export_command import model_and_checkpoint
    model, ckpt = model_and_checkpoint(args)
    check_param_arrays(ckpt.params, model.param_shapes, args.checkpoint)
    cfg = model.settings.train
    check_evaluation_memory(model, cfg.dtype)
    _, _, test = _load_data(args, model, dataclasses.replace(cfg, val=0))
    params = {k: v.astype(cfg.dtype) for k, v in ckpt.params.items()}
    with _threads(args):
        chooser = forward_threads(model, args.threads)
        error, confusion, loss = evaluate(model, params, test, run=chooser and chooser.run)
    if args.json:
        print(json.dumps({"model": args.model or ckpt.model_file, "checkpoint": args.checkpoint,
                          "test_error": error, "test_loss": loss,
                          "confusion": confusion.tolist()}))
    else:
        print(f"test error {100 * error:.2f}% on {len(test)} images (loss {loss:.4f})")
        print(format_confusion(confusion))
    return 0


# download -------------------------------------------------------------------

def _add_download(sub):
    sub.add_argument("--dir", metavar="DIR", help="where to put the files "
                     "(default ~/.cache/cnngraph/mnist)")


def cmd_download(args) -> int:
    from ..training.idx import default_cache_dir, download_mnist
    target = Path(args.dir) if args.dir else default_cache_dir()
    for path in download_mnist(target):
        print(f"ok  {path}")
    return 0


# check-ops ------------------------------------------------------------------

def _add_check_ops(sub):
    _ops_arg(sub, required=True)
    sub.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_check_ops(args) -> int:
    from ..compiler.program import default_registry
    from ..core.plugins import load_plugin
    from ..tools.check_ops import verify_op
    registry = default_registry()
    added = [name for spec in args.ops for name in load_plugin(spec, registry)]
    ops = [name for name in added if not name.startswith("layer ")]
    reports = [r for name in ops for r in verify_op(registry, name)]
    ok = all(r.ok for r in reports)
    if args.json:
        print(json.dumps({"ops": ops, "ok": ok, "checks": [
            {"op": r.op, "check": r.check, "slot": r.slot, "error": r.error, "ok": r.ok,
             "detail": r.detail} for r in reports]}))
        return 0 if ok else 1
    print(f"{'op':<24} {'check':<10} {'slot':<8} {'rel. error':>11}")
    for r in reports:
        flag = "ok" if r.ok else "FAILED"
        detail = f"  {r.detail}" if r.detail else ""
        print(f"{r.op:<24} {r.check:<10} {r.slot:<8} {r.error:>11.2e}  {flag}{detail}")
    bad = [f"{r.op} ({r.check}, slot '{r.slot}', error {r.error:.2e})" for r in reports
           if not r.ok]
    print(f"{len(reports) - len(bad)} of {len(reports)} checks passed for "
          f"{len(ops)} ops: {', '.join(ops)}")
    if bad:
        print("FAILED: " + "; ".join(bad))
    return 0 if ok else 1


# bench ----------------------------------------------------------------------

def _add_bench(sub):
    _model_arg(sub)
    _backend_arg(sub)
    sub.add_argument("--batch", type=int, nargs="+", default=[1, 10, 50], metavar="N",
                     help="batch sizes (default 1 10 50)")
    sub.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    _threads_arg(sub)
    sub.add_argument("--seconds", type=float, default=2.0,
                     help="time per measurement (default 2)")
    sub.add_argument("--profile-batch", type=int, metavar="N",
                     help="batch for the per-op profile (default: the largest)")
    sub.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_bench(args) -> int:
    import time

    from ..tools.bench import (first_use, gemm_flops_per_second, measure, profile_ops,
                               step_flops)
    from ..tools.machine import format_machine, machine_facts
    from ..training.resources import step_peak_bytes
    started = time.perf_counter()
    model = _compile(args)
    compile_s = time.perf_counter() - started
    if min(args.batch) < 1 or args.seconds <= 0:
        raise UsageError("--batch sizes must be at least 1 and --seconds positive")
    dtype = np.dtype(args.dtype)
    with _threads(args):
        machine = machine_facts()  # inside the limits: the thread counts timing runs with
        first = {"compile_s": compile_s, **first_use(model, dtype)}
        results = measure(model, args.batch, dtype, args.seconds, workers=args.threads)
        profile_batch = args.profile_batch or max(args.batch)
        ops, layers, peak = profile_ops(model, profile_batch, dtype)
    flops = step_flops(model)
    gemm = {n: gemm_flops_per_second(dtype, n) for n in
            sorted({r["train_threads"] for r in results})}
    for r in results:
        r["roofline_fraction"] = r["train_images_per_s"] * flops / gemm[r["train_threads"]]
    predicted = step_peak_bytes(model, profile_batch, dtype)
    threads = args.threads
    if args.json:
        print(json.dumps({"model": args.model, "machine": machine, "threads": threads,
                          "backend": model.backend.name, "first_use": first,
                          "step_flops_per_image": flops,
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
    print(f"a training step is {flops / 1e6:.3f} MFLOP per image; a large matrix product runs "
          "at " + ", ".join(f"{v / 1e9:.0f} GFLOP/s on {n} thread(s)" for n, v in gemm.items())
          + " (the roofline)")
    print(f"{'batch':>6} {'train images/s':>15} {'threads':>8} {'roofline':>9} "
          f"{'infer images/s':>15} {'threads':>8}")
    for r in results:
        print(f"{r['batch']:>6} {r['train_images_per_s']:>15,.0f} {r['train_threads']:>8} "
              f"{100 * r['roofline_fraction']:>8.1f}% "
              f"{r['infer_images_per_s']:>15,.0f} {r['infer_threads']:>8}")
    print(f"\ntime per op, one training step at batch {profile_batch}:")
    for r in ops:
        print(f"  {r['op']:<30} {r['pass']:<9} {r['ms_per_step']:8.3f} ms  "
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


COMMANDS = [
    ("run", cmd_run, "train on MNIST, then evaluate once on the test set", _add_run),
    ("sweep", cmd_sweep, "train a grid of settings (seeds, rates, ...) as independent runs, "
     "in parallel processes or MPI ranks, and tabulate them", add_sweep),
    ("eval", cmd_eval, "evaluate a checkpoint on the test set", _add_eval),
    ("download", cmd_download, "fetch the four MNIST files, verifying SHA-256", _add_download),
    ("check", cmd_check, "finite-difference check of every gradient (seed 4.4)", _add_check),
    ("bench", cmd_bench, "training and inference speed, time per op and per layer, peak memory",
     _add_bench),
    ("check-ops", cmd_check_ops, "the generated rule checks, run on a plugin's ops",
     _add_check_ops),
    ("dot", cmd_dot, "Graphviz DOT of the forward, backward or training graph", _add_dot),
    ("summary", cmd_summary, "layer table: output shape, parameters, multiply-adds",
     _add_summary),
    ("export", cmd_export, "write a trained model's forward graph as an ONNX file (float32)",
     add_export),
]
