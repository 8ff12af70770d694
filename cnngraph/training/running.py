"""Batch norm's running statistics in training (rules/norm.py has the layer).

Each pass of the gradient plan over one shard (the whole batch when ``shards`` is
1) normalises with that shard's statistics; `shard_moments` takes the same
shard's mean and unbiased variance of every normalised map.  `step.combine`
weights them by shard size and adds them in shard order, as it does the
gradients, so the result depends on the shards alone, never on the threads or
the MPI ranks that computed them.  After the optimizer's update (which leaves
these parameters alone: no entry is trainable, learning-rate scale 0),
`follow_running` moves them as PyTorch does:

    running = (1 − momentum) · running + momentum · combined
"""
from __future__ import annotations

import numpy as np

from ..rules.norm import batch_moments, running_statistics


def shard_moments(model, values) -> dict:
    """{running parameter: this pass's mean or unbiased variance per map}, from the
    gradient plan's ``values`` (which hold every normalised input)."""
    moments = {}
    for running in running_statistics(model):
        mean, var = batch_moments(np.asarray(values[running["input"]]))
        moments[running["mean"]], moments[running["var"]] = mean, var
    return moments


def follow_running(model, params: dict, moments: dict) -> dict:
    """``params`` with each running statistic moved toward the step's ``moments``
    (a new dict; the arrays given are not changed)."""
    if not moments:
        return params
    params = dict(params)
    for running in running_statistics(model):
        m = running["momentum"]
        for name in (running["mean"], running["var"]):
            old = params[name]
            params[name] = ((1 - m) * old + m * moments[name]).astype(old.dtype, copy=False)
    return params
