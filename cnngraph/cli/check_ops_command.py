"""The ``check-ops`` command: the generated rule checks (shape, gradient, adjoint)
run on a plugin's ops, and each backend's own kernel of them against the op's
reference (the work is `cnngraph.tools.check_ops`).

Exit status: 0 when every check passes, 1 when one fails, 2 for a wrong flag or
plugin.  Part of the CLI (only the CLI prints)."""
from __future__ import annotations

import json

from .args import ops_arg

EXAMPLE = "example: python -m cnngraph check-ops --ops examples/maxpool.py"


def add_check_ops(sub):
    sub.epilog = EXAMPLE
    ops_arg(sub, required=True)
    sub.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_check_ops(args) -> int:
    from ..compiler.program import default_registry
    from ..core.plugins import load_plugin
    from ..tools.check_ops import verify_op, verify_own_kernels
    registry = default_registry()
    added = [name for spec in args.ops for name in load_plugin(spec, registry)]
    ops = [name for name in added if not name.startswith("layer ")]
    reports = [r for name in ops for r in verify_op(registry, name)
               + verify_own_kernels(registry, name)]
    ok = all(r.ok for r in reports)
    if args.json:
        print(json.dumps({"ops": ops, "ok": ok, "checks": [
            {"op": r.op, "check": r.check, "slot": r.slot, "error": r.error, "ok": r.ok,
             "detail": r.detail} for r in reports]}))
        return 0 if ok else 1
    print(f"{'op':<24} {'check':<10} {'slot':<14} {'rel. error':>11}")
    for r in reports:
        flag = "ok" if r.ok else "FAILED"
        detail = f"  {r.detail}" if r.detail else ""
        print(f"{r.op:<24} {r.check:<10} {r.slot:<14} {r.error:>11.2e}  {flag}{detail}")
    bad = [f"{r.op} ({r.check}, slot '{r.slot}', error {r.error:.2e})" for r in reports
           if not r.ok]
    print(f"{len(reports) - len(bad)} of {len(reports)} checks passed for "
          f"{len(ops)} ops: {', '.join(ops)}")
    if bad:
        print("FAILED: " + "; ".join(bad))
    return 0 if ok else 1
