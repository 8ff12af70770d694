"""The command line: ``python -m cnngraph COMMAND MODEL.cnn [flags]``.

Only this module prints or exits.  User mistakes exit 2 with a located
message; a failed gradient check exits 1.
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import CnnError, UsageError, format_error

EPILOG = {
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


def _compile(args):
    from .model import compile_model
    return compile_model(args.model)


# check ------------------------------------------------------------------

def _add_check(sub):
    _model_arg(sub)
    sub.add_argument("--sample", type=int, metavar="N",
                     help="compare N random coordinates per tensor instead of all")
    sub.add_argument("--directions", type=int, default=0, metavar="K",
                     help="also compare K random directional derivatives per tensor")
    sub.add_argument("--batch", type=int, default=2, help="random patterns (default 2)")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_check(args) -> int:
    from .check import EPS, check_model
    from .verify import TOLERANCE
    model = _compile(args)
    if args.batch < 1 or (args.sample is not None and args.sample < 1):
        raise UsageError("--batch and --sample must be at least 1")
    if not args.json:
        print(f"{'tensor':<14} {'size':>8} {'checked':>8} {'rel. error':>11}")
    results = check_model(model, batch=args.batch, seed=args.seed, sample=args.sample,
                          directions=args.directions,
                          progress=None if args.json else _print_check_row)
    ok = all(r.ok for r in results)
    if args.json:
        print(json.dumps({"model": args.model, "tolerance": TOLERANCE, "eps": EPS,
                          "batch": args.batch, "ok": ok,
                          "tensors": [{"name": r.name, "size": r.size, "checked": r.checked,
                                       "directions": r.directions, "error": r.error,
                                       "ok": r.ok} for r in results]}))
    else:
        bad = [r.name for r in results if not r.ok]
        print(f"{len(results) - len(bad)} of {len(results)} gradients agree within "
              f"{TOLERANCE:g} (norm-wise relative error; central differences in float64, "
              f"h={EPS:g} with Richardson extrapolation, batch {args.batch})")
        if bad:
            print("FAILED: " + ", ".join(bad))
    return 0 if ok else 1


def _print_check_row(r):
    flag = "ok" if r.ok else "FAILED"
    print(f"{r.name:<14} {r.size:>8} {r.checked:>8} {r.error:>11.2e}  {flag}", flush=True)


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
    from .dot import to_dot, write_graph
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
    from .summary import format_summary, summarize, summary_json
    model = _compile(args)
    rows = summarize(model)
    print(json.dumps(summary_json(model, rows)) if args.json else format_summary(model, rows))
    return 0


COMMANDS = [
    ("check", cmd_check, "finite-difference check of every gradient (seed 4.4)", _add_check),
    ("dot", cmd_dot, "Graphviz DOT of the forward, backward or training graph", _add_dot),
    ("summary", cmd_summary, "layer table: output shape, parameters, multiply-adds",
     _add_summary),
]
