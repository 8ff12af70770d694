"""The ``dot`` command: Graphviz DOT of the forward, backward or training graph
(the work is `cnngraph.tools.dot`).  Part of the CLI (only the CLI prints)."""
from __future__ import annotations

import sys

from .args import compiled, model_arg

EXAMPLE = "example: python -m cnngraph dot models/lenet5.cnn --backward -o lenet5-backward.svg"


def add_dot(sub):
    sub.epilog = EXAMPLE
    model_arg(sub)
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
    from ..core.outputs import check_output_file
    from ..tools.dot import check_format, to_dot, write_graph
    if args.output is not None:  # before any work
        check_format(check_output_file(args.output, "-o"))
    model = compiled(args)
    if args.training:
        derived, _ = model.training_graph()
        graph, what = derived.graph, "training graph"
    elif args.backward:
        graph, what = model.backward_graph().graph, "backward graph"
    else:
        graph, what = model.graph, "forward graph"
    text = to_dot(graph, model.registry, f"{args.model}: {what}")
    if args.output is not None:
        write_graph(text, args.output)
    else:
        sys.stdout.write(text)
    return 0
