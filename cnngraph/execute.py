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
