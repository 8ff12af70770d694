"""The ``check`` command: a finite-difference check (seed 4.4) of every parameter
and input gradient in float64 (the work is `cnngraph.tools.check_model`).

Exit status: 0 when every gradient agrees within tolerance, 1 when one does not,
2 for a wrong flag or model.  Part of the CLI (only the CLI prints)."""
from __future__ import annotations

import json
import math

from .args import backend_arg, compiled, model_arg

EXAMPLE = "example: python -m cnngraph check models/lenet5.cnn --sample 200"


def add_check(sub):
    sub.epilog = EXAMPLE
    model_arg(sub)
    backend_arg(sub)
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
    from ..core.errors import UsageError
    from ..tools.check_model import check_model
    from ..tools.check_ops import TOLERANCE
    model = compiled(args)
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
                          progress=None if args.json else _print_row)
    ok = all(r.ok for r in results)
    if args.json:
        print(json.dumps({"model": args.model, "tolerance": TOLERANCE, "eps": eps,
                          "batch": args.batch, "ok": ok,
                          "tensors": [{"name": r.name, "size": r.size, "checked": r.checked,
                                       "directions": r.directions, "error": r.error,
                                       "step": _finite(r.step),
                                       "estimated_error": _finite(r.estimated_error),
                                       "refined": r.refined, "ok": r.ok} for r in results]}))
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


def _finite(value):
    """JSON has no NaN."""
    return value if math.isfinite(value) else None


def _print_row(r):
    from ..tools.check_ops import TOLERANCE
    flag = "ok" if r.ok else "FAILED"
    if not r.ok and r.estimated_error > TOLERANCE:
        flag += " (est. error above tolerance: finite differences unsure, try --eps)"
    if r.refined:
        flag += f" ({r.refined} near a kink: at a smaller step)"
    print(f"{r.name:<14} {r.size:>8} {r.checked:>8} {r.error:>11.2e} {r.step:>8.1e} "
          f"{r.estimated_error:>11.2e}  {flag}", flush=True)
