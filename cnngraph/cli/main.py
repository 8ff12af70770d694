"""The command line: ``python -m cnngraph COMMAND MODEL.cnn [flags]``.

One module per command (``cli/<command>_command.py``, each an ``add_<command>``
that declares its flags and a ``cmd_<command>`` that runs it); this module holds
the table of commands.  Only the CLI prints or exits: user mistakes exit 2 with a
located message, as does a place that cannot be written (`core.outputs`), stdout
included (a closed pipe, a full disk); a failed gradient check exits 1; Ctrl-C at
any moment exits 130 with one line.
"""
from __future__ import annotations

import argparse
import io
import os
import sys

from ..core.errors import CnnError, format_error
from ..core.interrupts import caused_by_ctrl_c, interrupted
from ..core.outputs import output_error
from .bench_command import add_bench, cmd_bench
from .check_command import add_check, cmd_check
from .check_ops_command import add_check_ops, cmd_check_ops
from .dot_command import add_dot, cmd_dot
from .download_command import add_download, cmd_download
from .eval_command import add_eval, cmd_eval
from .export_command import add_export, cmd_export
from .explore_command import add_explore, cmd_explore
from .list_command import add_list, cmd_list
from .make_data_command import add_make_data, cmd_make_data
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
    ("make-data", cmd_make_data, "write a synthetic data set (shapes3d: shapes in 16x16x16 "
     "volumes) as an .npz for --data", add_make_data),
    ("check", cmd_check, "finite-difference check of every gradient (seed 4.4)", add_check),
    ("bench", cmd_bench, "training and inference speed, time per op and per layer, peak memory",
     add_bench),
    ("check-ops", cmd_check_ops, "the generated rule checks, run on a plugin's ops",
     add_check_ops),
    ("dot", cmd_dot, "Graphviz DOT of the forward, backward or training graph", add_dot),
    ("explore", cmd_explore, "one self-contained HTML page for a run folder: its graphs "
     "coloured by how each node learns, maps, deltas and kernels at replayed steps, "
     "mistakes", add_explore),
    ("summary", cmd_summary, "layer table: output shape, parameters, multiply-adds",
     add_summary),
    ("export", cmd_export, "write a trained model's forward graph as an ONNX file (float32)",
     add_export),
    ("list", cmd_list, "the registry's named choices (layers, ops, init schemes, losses, "
     "optimizers, ...) with their options", add_list),
]


def main(argv=None) -> int:
    try:
        return _run(argv)
    except BaseException as e:  # Ctrl-C before a command's own handling starts, or twice
        if not caused_by_ctrl_c(e):
            raise
        return interrupted()


def _run(argv) -> int:
    stdout = sys.stdout = GuardedStdout(sys.stdout)
    try:
        parser = make_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit:  # --help, or a wrong flag: argparse printed why
            sys.stdout.flush()
            raise
        if not getattr(args, "command", None):
            parser.print_help()
            code = 2
        else:
            code = args.handler(args)
        sys.stdout.flush()  # a full disk or a closed pipe shows here, not at exit
        return code
    except CnnError as e:
        print(format_error(e), file=sys.stderr)
        return 2
    finally:
        if sys.stdout is stdout:
            sys.stdout = stdout.stream
        stdout.close_if_failed()


class GuardedStdout:
    """``sys.stdout`` while a command runs: a write that fails (a closed pipe, a full
    disk) is an `OutputError` naming stdout, and later output is dropped."""

    def __init__(self, stream):
        self.stream, self.failed = stream, False

    def write(self, text: str) -> int:
        return self._guard(self.stream.write, text)

    def flush(self) -> None:
        self._guard(self.stream.flush)

    def _guard(self, call, *args):
        if self.failed:
            return len(args[0]) if args else None
        try:
            return call(*args)
        except OSError as e:
            self.failed = True
            raise output_error(e, "stdout", "the output") from None

    def close_if_failed(self) -> None:
        """After a failure, point the stream at the null device, so that exiting
        (which flushes what it still holds) does not fail once more."""
        if self.failed:
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
            except (OSError, ValueError, io.UnsupportedOperation):
                pass

    def __getattr__(self, name):
        return getattr(self.stream, name)


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
