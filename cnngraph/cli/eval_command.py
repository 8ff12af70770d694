"""The ``eval`` command: a checkpoint evaluated on the test set.  Part of the CLI
(only the CLI prints)."""
from __future__ import annotations

import dataclasses
import json

from .args import MODEL_HELP, backend_arg, data_args, model_and_checkpoint, one_blas_thread, \
    ops_arg
from .console import format_confusion

EXAMPLE = "example: python -m cnngraph eval models/dlt.cnn --checkpoint runs/dlt/checkpoint.npz"


def add_eval(sub):
    sub.epilog = EXAMPLE
    sub.add_argument("model", nargs="?", help=MODEL_HELP)
    ops_arg(sub)
    backend_arg(sub)
    data_args(sub)
    sub.add_argument("--checkpoint", required=True, metavar="FILE",
                     help="a checkpoint.npz written by 'run'")
    sub.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_eval(args) -> int:
    from ..tools.experiment import read_splits
    from ..training.checkpoint import check_param_arrays
    from ..training.loop import evaluate
    from ..training.resources import check_evaluation_memory
    from ..training.threads import forward_threads
    model, ckpt = model_and_checkpoint(args)
    check_param_arrays(ckpt.params, model.param_shapes, args.checkpoint)
    cfg = model.settings.train
    check_evaluation_memory(model, cfg.dtype)
    _, _, test = read_splits(model, dataclasses.replace(cfg, val=0), args.data,
                             limit_test=args.limit_test, preprocessing=ckpt.preprocessing)
    params = {k: v.astype(cfg.dtype) for k, v in ckpt.params.items()}
    with one_blas_thread():
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
