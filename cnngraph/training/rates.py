"""The learning rate of each training step, from the train block's ``lr`` and
``schedule``, and the schedule as a run's records hold it.

A per-epoch schedule (piecewise, a plugin's steps) gives every step of an epoch
the epoch's rate.  A `Curve` (step, cosine, warmup) is evaluated for each step at
the fractional epoch where the step starts, e = epoch + step / steps (0-based
epoch, step the steps done before it in the epoch), with the step's length 1 /
steps (warmup's ramp reads the step's end).  A step's rate thus depends only on
the config, its epoch and step, and the steps per epoch: a resumed run takes the
same rates as an uninterrupted one.
"""
from __future__ import annotations

from ..core.choices import Curve
from ..core.errors import CnnError


def learning_rate(cfg, epoch: int, step: int = 0, steps: int = 1) -> float:
    """The rate of step ``step`` (0-based, steps done before it) of 0-based ``epoch``
    in epochs of ``steps`` steps: lr, then piecewise steps (1-based epochs), or the
    schedule's `Curve` at e = epoch + step / steps."""
    if isinstance(cfg.schedule, Curve):
        return float(cfg.schedule.rate(cfg.lr, epoch + step / steps, 1 / steps, cfg.epochs))
    rate = cfg.lr
    for first, value in cfg.schedule:
        if epoch + 1 >= first:
            rate = value
    return rate


def schedule_record(schedule):
    """A config's schedule as JSON data: [[first epoch, rate], ...] for per-epoch steps,
    {"name": ..., "options": {...}} for a `Curve` (a nested one likewise)."""
    if isinstance(schedule, Curve):
        return {"name": schedule.name,
                "options": {k: schedule_record(v) if isinstance(v, Curve) else v
                            for k, v in schedule.options.items()}}
    return [list(s) for s in schedule]


def read_schedule_record(record, registry, where: str):
    """The schedule `schedule_record` wrote, rebuilt with ``registry``'s schedules."""
    if not isinstance(record, dict):
        return tuple(tuple(s) for s in record)
    try:
        choice = registry.choice("schedule", record["name"])
        options = {k: read_schedule_record(v, registry, where) if isinstance(v, dict) else v
                   for k, v in record["options"].items()}
        found = choice.value(**choice.arguments(options))
    except (CnnError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise CnnError(f"the recorded schedule {record} cannot be rebuilt ({e})",
                       where=where) from None
    if not isinstance(found, Curve):
        raise CnnError(f"the recorded schedule {record} is not one evaluated at every step",
                       where=where)
    return found
