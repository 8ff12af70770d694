"""The command line: ``python -m cnngraph COMMAND MODEL.cnn [flags]``.

One module per command (``cli/<command>_command.py``, each an ``add_<command>``
that declares its flags and a ``cmd_<command>`` that runs it); this module holds
the table of commands.  Only the CLI prints or exits: user mistakes exit 2 with a
located message; a failed gradient check exits 1.
"""
from __future__ import annotations

import argparse
import sys

from ..core.errors import CnnError, format_error
from .bench_command import add_bench, cmd_bench
from .check_command import add_check, cmd_check
from .check_ops_command import add_check_ops, cmd_check_ops
from .dot_command import add_dot, cmd_dot
from .download_command import add_download, cmd_download
from .eval_command import add_eval, cmd_eval
from .export_command import add_export, cmd_export
from .list_command import add_list, cmd_list
from .run_command import add_run, cmd_run
from .summary_command import add_summary, cmd_summary
from .sweep_command import add_sweep, cmd_sweep

#: (name, what runs it, its one-line help, what declares its flags), in help order
COMMANDS = [
    ("run", cmd_run, "train on MNIST, then evaluate once on the test set", add_run),
    ("sweep", cmd_sweep, "train a grid of settings (seeds, rates, ...) as independent runs, "
     "in parallel processes or MPI ranks, and tabulate them", add_sweep),
    ("eval", cmd_eval, "evaluate a checkpoint on the test set", add_eval),
    ("download", cmd_download, "fetch the four MNIST files, verifying SHA-256", add_download),
    ("check", cmd_check, "finite-difference check of every gradient (seed 4.4)", add_check),
    ("bench", cmd_bench, "training and inference speed, time per op and per layer, peak memory",
     add_bench),
    ("check-ops", cmd_check_ops, "the generated rule checks, run on a plugin's ops",
     add_check_ops),
    ("dot", cmd_dot, "Graphviz DOT of the forward, backward or training graph", add_dot),
    ("summary", cmd_summary, "layer table: output shape, parameters, multiply-adds",
     add_summary),
    ("export", cmd_export, "write a trained model's forward graph as an ONNX file (float32)",
     add_export),
    ("list", cmd_list, "the registry's named choices (layers, ops, init schemes, losses, "
     "optimizers, ...) with their options", add_list),
]


def main(argv=None) -> int:
    parser = make_parser()
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


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnngraph", description="Compile, check, draw and train convolutional networks "
        "written as .cnn model files.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, handler, help_text, add in COMMANDS:
        sub = commands.add_parser(name, help=help_text, description=help_text,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        add(sub)
        sub.set_defaults(handler=handler)
    return parser
