"""execute: walk a `Plan` with NumPy, one kernel call per step."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from typing import Callable, Mapping

import numpy as np

from ..compiler.schedule import Plan

#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BELOW = 1 << 30


@functools.cache
def reuse_freed_buffers() -> bool:
    """Ask glibc's malloc to hand freed buffers to later steps instead of back to
    the system; True if it took.  Off with CNNGRAPH_KEEP_MEMORY=0, and a no-op
    where the C library is not glibc.

    Every step frees and allocates the same buffers again.  By default glibc
    hands freed memory back to the system (large buffers are their own mmap()s,
    the heap's top is trimmed), so the next step page-faults it in again; with
    the fused plan keeping patch matrices alive across the step, dlt.cnn at
    batch 50 in float64 trained at 2 763 images/s that way and at 5 128 with the
    heap kept, the same code in the same run (issue 4's closing note).  The
    price: the process keeps its peak heap between steps, up to buffers of
    1 GiB, which still get their own mapping.
    """
    if os.environ.get("CNNGRAPH_KEEP_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BELOW) and mallopt(_M_TRIM_THRESHOLD, _KEEP_BELOW))


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
        env[step.node] = value = step.kernel(*[env[i] for i in step.inputs], **step.attrs)
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
    bad = []

    def watch(step, value, env):
        if not np.isfinite(value).all():
            bad.append(step.node)
            return True
        return False
    with np.errstate(all="ignore"):
        run_plan(plan, feeds, dtype, watch)
    return bad[0] if bad else None
