"""One training step as a function, and the strategies that reduce a batch's
gradient.

    params, state, stats = train_step(model, params, state, (x, t), optimizer, lr)

The step never edits what it is given.  How the batch's loss and gradients are
computed is a strategy handed in: `WholeBatch` (one pass), `ThreadSplit`
(slices of the batch on threads, combined in a fixed order); a data-parallel
strategy across processes plugs in the same way.  A model with dropout gets the
step's `Draw`, which each slice asks for the masks of its own images.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from ..core.registry import OptimizerRule
from ..rules.dropout import draw_masks
from ..rules.norm import running_statistics
from .running import follow_running, shard_moments
from .world import SINGLE

#: The smallest slice worth a thread of its own.  2 threads against 1 on this
#: 2-core machine (issue 4's closing note): a batch of 16 split in two trained at
#: 0.5-1.1x, 50 at 0.8-1.4x, 100 at 0.9-1.6x (Python between kernels holds the
#: GIL, so small slices mostly wait), so a batch is split only into slices of 40 or more.
MIN_SPLIT = 40


@dataclass(frozen=True)
class Optimizer:
    """An optimizer rule with the arguments a train block gave it, and each
    parameter's learning-rate multiplier (seed 4.2)."""

    rule: OptimizerRule
    args: dict = field(default_factory=dict)
    lr_scale: dict = field(default_factory=dict)

    @classmethod
    def for_model(cls, model, optimizer: tuple = ("sgd", {})) -> "Optimizer":
        """From a train block's ``optimizer`` setting, (name, arguments)."""
        name, args = optimizer
        scales = {p: info.lr_scale for p, info in model.param_info.items()}
        return cls(model.registry.optimizer(name), dict(args), scales)

    def start(self, params) -> dict:
        return self.rule.state(params, self.args)

    def update(self, params, grads, state, lr: float):
        rates = {name: lr * self.lr_scale.get(name, 1.0) for name in grads}
        return self.rule.update(params, grads, state, rates, self.args)

    @property
    def needs_curvature(self) -> bool:
        return self.rule.curvature

    @property
    def samples(self) -> int:
        """Patterns for each curvature estimate (the option's declared default where
        the train block leaves it out)."""
        return int(self.args.get("samples", self.rule.options["samples"].default))


@dataclass(frozen=True)
class StepStats:
    loss: float        # the batch's mean loss
    errors: int        # misclassified patterns
    size: int          # patterns in the batch
    grads: dict        # the batch's gradients, by parameter
    #: batch norm's shard statistics, by running parameter (`running.shard_moments`)
    statistics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Draw:
    """The dropout masks of one training step: those of (seed, epoch, step), for the
    images of the global batch from ``start`` on (rules/dropout.py says how they
    are drawn: image by image, so any slicing of the batch gets the same bits)."""

    seed: int
    epoch: int
    step: int
    start: int = 0

    @classmethod
    def for_step(cls, model, seed: int, epoch: int, step: int) -> "Draw | None":
        """The step's draw, or None for a model without dropout."""
        return cls(seed, epoch, step) if model.masks else None

    def at(self, offset: int) -> "Draw":
        """The draw of the slice that begins ``offset`` images further on."""
        return replace(self, start=self.start + int(offset))

    def masks(self, model, count: int, dtype) -> dict:
        return draw_masks(model.graph, self.seed, self.epoch, self.step, self.start, count,
                          dtype)


def batch_stats(model, params, x, t, draw: Draw | None = None) -> StepStats:
    """One pass of the gradient plan over (x, t), with ``draw``'s dropout masks."""
    masks = None if draw is None else draw.masks(model, len(x), x.dtype)
    values = model.run(model.plans.gradients, params, x, t, masks)
    errors = int(np.sum(values[model.roles.prediction].argmax(axis=1) != t.argmax(axis=1)))
    grads = {p: values[node] for p, node in model.training.results.items()}
    return StepStats(float(values[model.roles.loss]), errors, len(x), grads,
                     shard_moments(model, values))


def shard_bounds(size: int, count: int) -> np.ndarray:
    """Where ``count`` fixed, contiguous shards of a batch of ``size`` begin and end
    (fewer when the batch is smaller than that)."""
    return np.linspace(0, size, min(count, size) + 1).astype(int)


def combine(pieces, bounds) -> StepStats:
    """The batch's statistics from its shards': loss and gradients are batch means, so
    the batch's are the shards' weighted by shard size, summed in shard order."""
    weights = np.diff(bounds) / bounds[-1]
    return StepStats(float(sum(w * piece.loss for w, piece in zip(weights, pieces))),
                     sum(piece.errors for piece in pieces), int(bounds[-1]),
                     {name: sum(w * piece.grads[name] for w, piece in zip(weights, pieces))
                      for name in pieces[0].grads},
                     {name: sum(w * piece.statistics[name] for w, piece in zip(weights, pieces))
                      for name in pieces[0].statistics})


class WholeBatch:
    """The batch's loss and gradients in one pass of the gradient plan."""

    def __call__(self, model, params, x, t, draw=None) -> StepStats:
        return batch_stats(model, params, x, t, draw)


class ThreadSplit:
    """The batch split into ``workers`` slices of at least ``min_split`` patterns,
    run on threads (NumPy releases the GIL inside its kernels; BLAS should have
    one thread each) and combined in slice order: the same bits for a given
    number of workers."""

    def __init__(self, workers: int, min_split: int = MIN_SPLIT):
        self.workers, self.min_split = workers, min_split
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="cnngraph") \
            if workers > 1 else None

    def __call__(self, model, params, x, t, draw=None) -> StepStats:
        if self.pool is None or len(x) < self.min_split * self.workers \
                or running_statistics(model):  # batch norm: the shards' statistics only
            return batch_stats(model, params, x, t, draw)
        bounds = shard_bounds(len(x), self.workers)
        caller = np.geterr()  # NumPy keeps error handling per thread: the slices get the caller's

        def piece(k):
            with np.errstate(**caller):
                return batch_stats(model, params, x[bounds[k]:bounds[k + 1]],
                                   t[bounds[k]:bounds[k + 1]], draw and draw.at(bounds[k]))
        return combine(list(self.pool.map(piece, range(self.workers))), bounds)


WHOLE_BATCH = WholeBatch()


def thread_split(workers: int):
    """The batch split across ``workers`` threads, or the whole batch for one."""
    return ThreadSplit(workers) if workers > 1 else WHOLE_BATCH



def batch_gradients(model, params, x, t, reduce=WHOLE_BATCH, draw=None) -> StepStats:
    """The loss, misclassification count and gradients of one batch; ``draw`` (the
    dropout masks) goes to ``reduce`` only when there is one, so a reduction written
    for models without dropout still serves them."""
    return reduce(model, params, x, t) if draw is None else reduce(model, params, x, t, draw)


def train_step(model, params: dict, state: dict, batch, optimizer: Optimizer, lr: float,
               reduce=WHOLE_BATCH, draw: Draw | None = None):
    """(new params, new optimizer state, StepStats) after one step on ``batch``
    = (images, targets) with ``draw``'s dropout masks; nothing given is changed."""
    x, t = batch
    stats = batch_gradients(model, params, x, t, reduce, draw)
    new_params, state = optimizer.update(params, stats.grads, state, lr)
    return follow_running(model, new_params, stats.statistics), state, stats


def estimate_curvature(model, params, images, targets, batch: int = 100,
                       world=SINGLE) -> dict:
    """SDLM's h: the derived Gauss-Newton diagonal averaged over the given patterns,
    batches shared among ``world``'s ranks and summed in batch order."""
    starts = range(0, len(images), batch)

    def weighted(k):
        x, t = images[starts[k]:starts[k] + batch], targets[starts[k]:starts[k] + batch]
        return {name: h * len(x) for name, h in model.curvatures(params, x, t).items()}
    total = {name: np.zeros_like(p) for name, p in params.items()}
    for part in world.gather_in_order(len(starts), weighted):
        for name, h in part.items():
            total[name] += h  # curvatures() averages over its batch
    return {name: h / len(images) for name, h in total.items()}
