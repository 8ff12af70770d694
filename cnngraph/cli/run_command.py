"""The ``run`` command: train, then evaluate once on the test set; alone or as one
rank of ``mpiexec -n N`` (the work is `cnngraph.tools.experiment.run_experiment`).

Exit status: 0 when trained, 2 for a wrong flag, model or data set or a place
that cannot be written (the last checkpoint written is kept), 130 when stopped
with Ctrl-C (the checkpoint is saved), 3 when training diverged (`divergence`:
metrics.json says where; the checkpoint of the last good epoch is kept).  Part of
the CLI (only the CLI prints)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .args import backend_arg, compiled, data_args, model_arg, plots_args
from .console import RunPrinter, StopFlag

DIVERGED = 3  # run's exit status when training diverged

EXAMPLE = (
    "example: python -m cnngraph run models/dlt.cnn --data ../shared/data/mnist --out runs/dlt\n"
    "quick:   python -m cnngraph run models/dlt.cnn --out runs/dlt   (one epoch, about 40 s)\n"
    "mpi:     mpiexec -n 2 python -m cnngraph run models/dlt.cnn   (one shard per rank)")

#: flags that change the model's train block: (flag, type, help)
CHANGES = (("--epochs", int, "passes over the training set"),
           ("--batch", int, "minibatch size (1 = online)"),
           ("--lr", float, "global learning rate"),
           ("--seed", int, "random seed"),
           ("--val", int, "validation images taken from the training set"),
           ("--shards", int, "cut each batch into N fixed pieces, combined in order: the "
            "ranks of mpiexec share them, and any rank count gives the same bits (default: "
            "one per rank at the run's first start, then what the checkpoint records)"))


def add_run(sub):
    sub.epilog = EXAMPLE
    model_arg(sub)
    backend_arg(sub)
    data_args(sub)
    sub.add_argument("--out", default="runs/latest", metavar="DIR",
                     help="where metrics.json and checkpoint.npz go (default runs/latest)")
    for flag, kind, text in CHANGES:
        sub.add_argument(flag, type=kind, help=text + " (overrides the model's train block)")
    sub.add_argument("--dtype", choices=("float32", "float64"))
    sub.add_argument("--reduction", choices=("ordered", "allreduce"), default="ordered",
                     help="with shards: gather them and add in shard order (default; "
                          "bitwise the same for any rank count) or MPI_Allreduce (faster, "
                          "equal to rounding only)")
    sub.add_argument("--limit-train", type=int, metavar="N", help="train on the first N images")
    sub.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    sub.add_argument("--weights", metavar="FILE.npz",
                     help="start from these parameters: arrays named as 'summary' names them, "
                          "or a run's checkpoint.npz (its optimizer state is not used)")
    sub.add_argument("--quiet", action="store_true", help="print only the final result")
    plots_args(sub, "write PNG pictures of learning into OUT", "when matplotlib is installed")
    sub.add_argument("--shuffle", action=argparse.BooleanOptionalAction,
                     help="visit the training set in a new random order each epoch, or in "
                          "file order (overrides the model's train block)")
    sub.add_argument("--threshold", type=float, default=0.1, metavar="T",
                     help="learned combinations: export pairs with strength >= T (default 0.1)")
    tensorboard_args(sub)
    sub.add_argument("--snapshots", type=int, default=50, metavar="N",
                     help="keep the parameters before N steps (dense early) in OUT/snapshots, "
                          "from which 'explore' replays those steps exactly (default 50; "
                          "0: none)")
    sub.add_argument("--snapshot-every", type=int, default=1, metavar="K",
                     help="write a snapshot for every K-th of those steps only; replay walks "
                          "forward from the nearest earlier one (default 1)")


def cmd_run(args) -> int:
    from ..core.errors import format_error
    from ..core.outputs import check_output_dir
    from ..tools.experiment import root_first, run_experiment
    from ..training.loop import CHECKPOINT, METRICS, Diverged, Interrupted
    from ..training.world import detect_world
    world = detect_world()
    if not world.is_root:  # under mpiexec only rank 0 speaks
        sys.stdout = sys.stderr = open(os.devnull, "w")
    pids = world.allgather(os.getpid())
    if world.size > 1 and not args.quiet:  # the launcher names a lost process by its pid
        print(f"data-parallel on {world.size} ranks (pids " +
              ", ".join(f"rank {rank}: {pid}" for rank, pid in enumerate(pids)) + ")",
              flush=True)
    # where it writes, before any work (run_experiment checks it again, for the API)
    root_first(world, lambda root: root and check_output_dir(args.out, "--out"))
    model = compiled(args)
    observers = tensorboard_observers(args, model)  # before training: tensorboardX missing
    changes = {flag[2:]: getattr(args, flag[2:]) for flag, _, _ in CHANGES}
    changes.update(dtype=args.dtype, shuffle=args.shuffle)
    with StopFlag() as stop:
        try:
            run_experiment(model, config=changes, out=args.out, data=args.data,
                           limit_train=args.limit_train, limit_test=args.limit_test,
                           workers=args.threads, weights=args.weights, resume=args.resume,
                           plots=args.plots, threshold=args.threshold,
                           report=RunPrinter(args.model, args.quiet,
                                                    tensorboard_folder(args, model)),
                           should_stop=stop,
                           world=world, reduction=args.reduction, observers=observers,
                           snapshots=args.snapshots,
                           snapshot_every=args.snapshot_every)
        except Interrupted as e:
            print(f"\n{e}; checkpoint saved in {Path(args.out) / CHECKPOINT}; continue "
                  "with --resume", file=sys.stderr)
            return 130
        except Diverged as e:
            print(format_error(e), file=sys.stderr)
            print(f"the good epochs and the divergence are in {Path(args.out) / METRICS}",
                  file=sys.stderr)
            if args.snapshots:  # its page replays the steps before and names the bad node
                print(f"explore: python -m cnngraph explore {args.out}", file=sys.stderr)
            return DIVERGED
    return 0


def tensorboard_args(sub):
    """--tensorboard DIR and --log-every N (run and sweep)."""
    sub.add_argument("--tensorboard", metavar="DIR",
                     help="write TensorBoard logs into DIR (a sweep: one run per "
                          "configuration in DIR/<name>, its settings as hparams); needs "
                          "tensorboardX: pip install -e '.[tensorboard]'; view them with: "
                          "tensorboard --logdir DIR (overrides the train block's "
                          "tensorboard)")
    sub.add_argument("--log-every", type=int, metavar="N",
                     help="with TensorBoard logs: the vital signs and histograms every N "
                          "steps (default: the train block's log_every, 500)")


def tensorboard_folder(args, model) -> str | None:
    """Where the logs go: --tensorboard, else the train block's ``tensorboard``."""
    return args.tensorboard or model.settings.train.tensorboard


def tensorboard_observers(args, model) -> list:
    """[a `TensorBoardLogger`] when the run logs (`tensorboard_folder`), else []; made
    now, so that a missing tensorboardX or an unwritable DIR is an error before any
    training."""
    folder = tensorboard_folder(args, model)
    if folder is None:
        return []
    from ..tools.tensorboard import TensorBoardLogger
    every = model.settings.train.log_every if args.log_every is None else args.log_every
    return [TensorBoardLogger(folder, model, every)]
