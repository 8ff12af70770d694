"""The ``summary`` command: one row per layer with its output shape, parameters
and multiply-adds (the work is `cnngraph.tools.summary`).  Part of the CLI (only
the CLI prints)."""
from __future__ import annotations

import json

from .args import compiled, model_arg

EXAMPLE = "example: python -m cnngraph summary models/lenet5.cnn --json"


def add_summary(sub):
    sub.epilog = EXAMPLE
    model_arg(sub)
    sub.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_summary(args) -> int:
    from ..tools.summary import format_summary, summarize, summary_json
    model = compiled(args)
    rows = summarize(model)
    print(json.dumps(summary_json(model, rows)) if args.json else format_summary(model, rows))
    return 0
