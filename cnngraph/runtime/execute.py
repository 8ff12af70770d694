"""execute: walk a `Plan`, one kernel call per step, whatever the backend."""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from ..core.plan import Plan


def run_plan(plan: Plan, feeds: Mapping[str, np.ndarray], dtype=np.float64,
             watch: Callable | None = None) -> dict[str, np.ndarray] | None:
    """Evaluate the plan on fed values (constants in ``dtype``); the outputs by node id.

    ``watch(step, value, env)``, if given, sees each step's value and every live
    buffer before the step's frees (for profiling and diagnosis); when it returns
    True the walk stops and returns None.
    """
    env = {name: feeds[name] for name in plan.sources}
    env.update((name, np.asarray(value, dtype)) for name, value in plan.constants.items())
    for name in plan.source_frees:
        del env[name]
    for step in plan.steps:
        env[step.node] = value = step.kernel.run(*[env[i] for i in step.inputs], **step.attrs)
        if watch is not None and watch(step, value, env):
            return None
        for name in step.frees:
            del env[name]
    return {name: env[name] for name in plan.outputs}


def first_nonfinite(plan: Plan, feeds: Mapping[str, np.ndarray], dtype=np.float64) -> str | None:
    """The node id of the first fed value, then step output, holding NaN or an
    infinity, or None.  For diagnosis after a step went bad: the check reads
    every buffer, which the normal walk never pays for."""
    for name in plan.sources:
        if not np.isfinite(feeds[name]).all():
            return name
    found = first_nonfinite_step(plan, feeds, dtype)
    return found[0].node if found else None


def first_nonfinite_step(plan: Plan, feeds: Mapping[str, np.ndarray], dtype=np.float64):
    """(step, its input values in order) of the first step whose output holds NaN or
    an infinity, whatever the fed values hold, or None; floating-point warnings are
    silenced (the diagnosis reports them)."""
    bad = []

    def watch(step, value, env):
        if not np.isfinite(value).all():
            bad.append((step, [env[i] for i in step.inputs]))
            return True
        return False
    with np.errstate(all="ignore"):
        run_plan(plan, feeds, dtype, watch)
    return bad[0] if bad else None
