"""execute: walk a `Plan` with NumPy, one kernel call per step."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .schedule import Plan


def run_plan(plan: Plan, feeds: Mapping[str, np.ndarray], dtype=np.float64) -> dict[str, np.ndarray]:
    """Evaluate the plan on fed values (constants in ``dtype``); the outputs by node id."""
    env = {name: feeds[name] for name in plan.sources}
    env.update((name, np.asarray(value, dtype)) for name, value in plan.constants.items())
    for name in plan.source_frees:
        del env[name]
    for step in plan.steps:
        env[step.node] = step.kernel(*[env[i] for i in step.inputs], **step.attrs)
        for name in step.frees:
            del env[name]
    return {name: env[name] for name in plan.outputs}


def first_nonfinite(plan: Plan, feeds: Mapping[str, np.ndarray], dtype=np.float64) -> str | None:
    """Walk the plan as `run_plan` does, checking every fed value and then every step's
    output; the node id of the first holding NaN or an infinity, or None.

    For diagnosis after a step went bad: the check reads every buffer, which the
    normal path (`run_plan`) never pays for.
    """
    env = {name: feeds[name] for name in plan.sources}
    for name, value in env.items():
        if not np.isfinite(value).all():
            return name
    env.update((name, np.asarray(value, dtype)) for name, value in plan.constants.items())
    with np.errstate(all="ignore"):
        for step in plan.steps:
            env[step.node] = value = step.kernel(*[env[i] for i in step.inputs], **step.attrs)
            if not np.isfinite(value).all():
                return step.node
            for name in step.frees:
                del env[name]
    return None
