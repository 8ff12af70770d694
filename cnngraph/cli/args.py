"""What several commands share: their common flags, the registry with the
plugins they name, a compiled model with its warnings printed, and the model
and checkpoint ``eval`` and ``export`` read.  Part of the CLI (only the CLI
prints)."""
from __future__ import annotations

import argparse
import sys

MODEL_HELP = ("the .cnn model file (default: the model text the checkpoint embeds, "
              "which must hash to its network hash)")


def model_arg(sub) -> None:
    sub.add_argument("model", help="the .cnn model file")
    ops_arg(sub)


def ops_arg(sub, required: bool = False, help_text: str | None = None) -> None:
    sub.add_argument("--ops", action="append", default=[], metavar="FILE.py|MODULE",
                     required=required, help=help_text or
                     "load op and layer rules from a plugin (repeatable)")


def backend_arg(sub) -> None:
    sub.add_argument("--backend", default="auto", metavar="NAME",
                     help="the kernels: numba (compiled; pip install 'cnngraph[fast]'), numpy, "
                          "or reference (plain and slow); auto, the default: numba where it is "
                          "installed, else numpy ($CNNGRAPH_BACKEND overrides auto)")


def thread_count(text: str):
    """A positive whole number, or "auto"."""
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


def threads_arg(sub) -> None:
    sub.add_argument("--threads", type=thread_count, metavar="N|auto", default="auto",
                     help="threads: the numba backend runs them in its kernels; auto, the "
                          "default, times one thread against all cores and keeps the faster, "
                          "trying again now and then (another process may take a core). The "
                          "numpy backend splits each batch across N threads, one BLAS "
                          "thread each (auto: one)")


def data_args(sub) -> None:
    """--data, --threads and --limit-test: what ``run`` and ``eval`` read data with."""
    sub.add_argument("--data", metavar="PATH",
                     help="the data set: a folder of MNIST's IDX files, a .json naming four "
                          "IDX files, an .npz with x_train, y_train, x_test, y_test, or a "
                          "folder with train/ and test/ folders of images, one per class "
                          "(default: the train block's data, then $CNNGRAPH_DATA, then "
                          "~/.cache/cnngraph/mnist, where run fetches MNIST, checked by "
                          "SHA-256, when it is found nowhere)")
    threads_arg(sub)
    sub.add_argument("--limit-test", type=int, metavar="N",
                     help="evaluate on the first N test images")


def plots_args(sub, draws: str, default: str, never: str = "never draw pictures") -> None:
    """--plots / --no-plots (None: draw when matplotlib is installed)."""
    plots = sub.add_mutually_exclusive_group()
    plots.add_argument("--plots", action="store_true", default=None,
                       help=f"{draws} (default: {default})")
    plots.add_argument("--no-plots", dest="plots", action="store_false", help=never)


def registry(args):
    """The built-in rules and backends, and the plugins ``--ops`` names."""
    from ..compiler.program import default_registry
    return default_registry(args.ops)


def print_warnings(model) -> None:
    from ..core.errors import CnnError, format_error
    for message, span in model.warnings:
        print(format_error(CnnError(message, span), "warning"), file=sys.stderr)


def compiled(args):
    """MODEL compiled with ``--ops`` and ``--backend``; its warnings printed."""
    from ..compiler.program import compile_model
    model = compile_model(args.model, registry(args), getattr(args, "backend", "numpy"))
    print_warnings(model)
    return model


def model_and_checkpoint(args):
    """(model, checkpoint) for ``eval`` and ``export``: the MODEL file compiled and the
    checkpoint checked against its network hash, or, without MODEL, the model text
    the checkpoint embeds, compiled and checked the same way."""
    from ..training.checkpoint import embedded_model, load_checkpoint
    if args.model is not None:
        model = compiled(args)
        return model, load_checkpoint(args.checkpoint, model.network_hash())
    model, ckpt = embedded_model(args.checkpoint, registry(args),
                                 getattr(args, "backend", "numpy"))
    print_warnings(model)
    return model, ckpt


def one_blas_thread():
    """BLAS runs single-threaded: parallelism comes from splitting the batch.  Two
    BLAS threads while another process held a core measured 62-460 images/s for
    LeNet-5 at batch 50 against 650-1270 with one (benchmarks, docs/performance.md)."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(1, user_api="blas")
