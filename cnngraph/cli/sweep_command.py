"""The ``sweep`` command: a grid of train-block settings trained as independent
runs in a local pool of processes, or across MPI ranks under ``mpiexec``, then
one table of their results (the work is `cnngraph.tools.sweep.run_sweep`).

Exit status: 0 when every configuration ran (a diverged one, marked ``diverged``,
ran: it is what that setting gives), 1 when any failed, 2 for a wrong flag or
model, 130 when stopped with Ctrl-C.  Part of the CLI (only the CLI
prints).
"""
from __future__ import annotations

import os
import sys

from .args import ops_arg, plots_args
from .run_command import tensorboard_args

EXAMPLE = (
    "example: python -m cnngraph sweep models/dlt.cnn --lr 0.5 1 --seed 1 2 3 --out runs/sweep\n"
    "mpi:     mpiexec -n 7 python -m cnngraph sweep models/dlt.cnn --lr 0.5 1 --seed 1 2 3\n"
    "         (rank 0 hands out the runs and writes the table; ranks 1-6 train)\n"
    "writes OUT/<name>/ per configuration (name: the settings that vary, e.g. lr=0.5_seed=1),\n"
    "OUT/sweep.csv, OUT/summary.csv, OUT/sweep.json and, with matplotlib, OUT/sweep.png")


def add_sweep(sub):
    sub.epilog = EXAMPLE
    sub.add_argument("model", help="the .cnn model file")
    ops_arg(sub)
    grid = sub.add_argument_group(
        "the grid", "each flag takes one or more values and overrides the model's train "
        "block; every combination is one run")
    grid.add_argument("--seed", type=int, nargs="+", metavar="S", help="random seeds")
    grid.add_argument("--lr", type=float, nargs="+", metavar="R", help="learning rates")
    grid.add_argument("--batch", type=int, nargs="+", metavar="N", help="minibatch sizes")
    grid.add_argument("--epochs", type=int, nargs="+", metavar="E", help="epoch counts")
    grid.add_argument("--optimizer", nargs="+", metavar="TEXT",
                      help="optimizers as a train block writes them: sgd, "
                           "'sgd(momentum=0.9)', 'sdlm(mu=0.02)'")
    sub.add_argument("--out", default="runs/sweep", metavar="DIR",
                     help="the sweep's folder: one folder per run, and the tables "
                          "(default runs/sweep)")
    sub.add_argument("--jobs", type=int, metavar="N",
                     help="runs at once in the local pool (default: the number of cores; "
                          "under mpiexec the ranks but rank 0 run them)")
    sub.add_argument("--data", metavar="DIR", help="folder with the MNIST IDX files "
                     "(default: $CNNGRAPH_DATA, then ~/.cache/cnngraph/mnist, where MNIST "
                     "found nowhere is fetched)")
    sub.add_argument("--limit-train", type=int, metavar="N", help="train on the first N images")
    sub.add_argument("--limit-test", type=int, metavar="N",
                     help="evaluate on the first N test images")
    sub.add_argument("--dtype", choices=("float32", "float64"), help="for every run")
    sub.add_argument("--val", type=int, metavar="N",
                     help="validation images taken from the training set, for every run")
    sub.add_argument("--quiet", action="store_true",
                     help="print only the tables (no progress lines)")
    tensorboard_args(sub)  # one TensorBoard run per configuration, in DIR/<name>
    plots_args(sub, "also draw each run's pictures into its folder",
               "only sweep.png, when matplotlib is installed",
               "never draw pictures, not even sweep.png")


def cmd_sweep(args) -> int:
    from ..tools.sweep import load_model, mpi_world, run_sweep
    from .args import print_warnings
    from .console import StopFlag
    world = mpi_world()
    if world is not None and world[0] != 0:  # under mpiexec only rank 0 speaks
        sys.stdout = sys.stderr = open(os.devnull, "w")
    print_warnings(load_model(args.model, tuple(args.ops)))
    grid = {k: getattr(args, k) for k in ("seed", "lr", "batch", "epochs", "optimizer")
            if getattr(args, k)}
    printer = SweepPrinter(args.model, args.quiet)
    try:
        with StopFlag() as stop:
            result = run_sweep(args.model, grid, args.out, ops=args.ops, data=args.data,
                               dtype=args.dtype, val=args.val, limit_train=args.limit_train,
                               limit_test=args.limit_test, plots=args.plots, jobs=args.jobs,
                               tensorboard=args.tensorboard, log_every=args.log_every,
                               report=printer, should_stop=stop)
    except KeyboardInterrupt:
        print("\nsweep interrupted; no table written", file=sys.stderr)
        return 130
    if result is None:  # an MPI rank that ran configurations for rank 0
        return 0
    print(format_sweep(result))
    if not args.quiet:
        print("wrote " + ", ".join(str(p) for p in result.written))
    if result.interrupted:
        print("sweep stopped: runs not started are marked 'not run', stopped ones "
              "'interrupted'", file=sys.stderr)
        return 130
    return 1 if result.failed else 0


class SweepPrinter:
    """MNIST being fetched on first use (on stderr, even with ``quiet``); a line when
    the sweep starts and one per finished configuration (not with ``quiet``)."""

    def __init__(self, model: str, quiet: bool = False):
        self.model, self.quiet = model, quiet

    def __call__(self, event):
        from ..tools.experiment import FetchingData
        from ..tools.sweep import RunFinished, SweepStarted
        if isinstance(event, FetchingData):
            print(event.line, file=sys.stderr, flush=True)
        elif self.quiet:
            return
        elif isinstance(event, SweepStarted):
            print(f"sweep of {self.model}: {event.configurations} configuration"
                  f"{'s' if event.configurations != 1 else ''} on {event.workers} "
                  f"{event.where}", flush=True)
        elif isinstance(event, RunFinished):
            row = event.row
            width = len(str(event.total))
            head = f"[{event.done:>{width}}/{event.total}] {row['name']}"
            if row["status"] == "ok":
                print(f"{head}  test error {_percent(row['test_error'])}  train loss "
                      f"{row['train_loss']:.4f}  {row['seconds']:.1f}s", flush=True)
            else:
                print(f"{head}  {row['status']}: {_first_line(row['error'])}", flush=True)


def format_sweep(result) -> str:
    """The runs table, the summary over seeds (when a configuration has several runs)
    and every failure's full message."""
    with_val = any(r.get("val_error") is not None for r in result.rows)
    head = ["configuration", "status", "test error"] + (["val error"] if with_val else []) \
        + ["train loss", "seconds"]
    body = [[r["name"], r["status"], _percent(r["test_error"])]
            + ([_percent(r["val_error"])] if with_val else [])
            + [_fixed(r["train_loss"], 4), _fixed(r["seconds"], 1)] for r in result.rows]
    parts = [_table(head, body)]
    if any(s["runs"] > 1 for s in result.summary):
        head = ["configuration", "runs", "ok", "median", "min", "max"]
        body = [[s["name"], str(s["runs"]), str(s["ok"]), _percent(s["test_error_median"]),
                 _percent(s["test_error_min"]), _percent(s["test_error_max"])]
                for s in result.summary]
        parts.append("test error over seeds\n" + _table(head, body))
    for status in ("failed", "diverged"):
        rows = [r for r in result.rows if r["status"] == status]
        if rows:
            parts.append(f"{len(rows)} of {len(result.rows)} configurations {status}:\n"
                         + "\n".join(f"{r['name']}:\n" + _indent(r["error"]) for r in rows))
    return "\n\n".join(parts)


def _table(head, body) -> str:
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in [head, *body]]
    return "\n".join(lines)


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _fixed(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _first_line(text, width: int = 160) -> str:
    line = (text or "").split("\n", 1)[0]
    return line if len(line) <= width else line[:width - 3] + "..."


def _indent(text) -> str:
    return "\n".join("  " + line for line in (text or "").split("\n"))
