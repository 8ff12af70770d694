"""Data-parallel training across processes (MPI), bitwise equal to one process.

Every rank holds the whole model and data set and draws the same batch order
from the seed.  Each global batch is cut into ``shards`` fixed pieces
(`shard_bounds`: where they fall depends on the batch alone, never on the number
of ranks); rank r computes a contiguous group of them, and every rank gathers
all pieces and combines them in shard order with the same arithmetic as one
process computing the shards one after another (`combine`).  So a run with
``shards = K`` ends with the same bits on 1, 2, 3 or K ranks and in a single
process.  The ``allreduce`` mode sums each rank's part with MPI_Allreduce
instead: faster for large models, equal to rounding only.

The communicator is a world (training/world.py).
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..core.errors import CnnError
from ..rules.norm import running_statistics
from .step import StepStats, batch_stats, combine, shard_bounds, thread_split
from .threads import threads_for
from .world import SINGLE


class Shards:
    """A batch's gradient over ``count`` fixed shards, computed across ``world``'s
    ranks and combined in shard order (``mode='ordered'``: the same bits for any
    number of ranks), or summed with an allreduce (``mode='allreduce'``: equal to
    rounding only)."""

    def __init__(self, count: int, world=SINGLE, mode: str = "ordered"):
        if mode not in ("ordered", "allreduce"):
            raise CnnError(f"unknown reduction mode '{mode}'; modes: ordered, allreduce")
        self.count, self.world, self.mode = count, world, mode

    def __call__(self, model, params, x, t, draw=None) -> StepStats:
        bounds = shard_bounds(len(x), self.count)

        def piece(s):
            return batch_stats(model, params, x[bounds[s]:bounds[s + 1]],
                               t[bounds[s]:bounds[s + 1]], draw and draw.at(bounds[s]))
        if self.mode == "ordered":
            return combine(self.world.gather_in_order(len(bounds) - 1, piece), bounds)
        mine = self.world.owned(len(bounds) - 1)
        names = list(model.training.results)
        moments = [r[k] for r in running_statistics(model) for k in ("mean", "var")]
        weights = np.diff(bounds) / bounds[-1]
        local = np.zeros(2 + sum(np.prod(model.param_shapes[n], dtype=int)
                                 for n in names + moments))
        for s in mine:
            p = piece(s)
            local += np.concatenate([[weights[s] * p.loss, p.errors]] +
                                    [weights[s] * p.grads[n].ravel() for n in names] +
                                    [weights[s] * p.statistics[n].ravel() for n in moments])
        total = self.world.allreduce_sum(local)
        grads, statistics, at = {}, {}, 2
        for into, n in [(grads, n) for n in names] + [(statistics, n) for n in moments]:
            size = int(np.prod(model.param_shapes[n], dtype=int))
            into[n] = total[at:at + size].reshape(model.param_shapes[n])
            at += size
        return StepStats(float(total[0]), int(round(total[1])), len(x), grads, statistics)


def reduction_for(cfg, model, world=SINGLE, workers: int | str = 1, mode: str = "ordered"):
    """The strategy a run reduces its batches with: the whole batch or threads for one
    process with one shard; `Shards` when the batch is sharded or ranks share it.
    ``workers`` threads ("auto": `threads.AutoThreads`) run in the kernels of a backend
    that has its own (`threads_for`; under mpiexec, auto is one per rank), else they
    split the batch (auto: one)."""
    own = model.backend.set_threads is not None
    split = 1 if own or workers == "auto" else workers
    if cfg.shards == 1 and world.size == 1 and mode == "ordered":
        reduce = thread_split(split)
    else:
        if split > 1:
            raise CnnError("--threads splits a batch across threads, --shards and mpiexec "
                           "across shards; use one of them", where="--threads")
        if cfg.shards < world.size:
            raise CnnError(f"{world.size} ranks share each batch's shards, but there are "
                           f"{cfg.shards}", where="--shards",
                           hint=f"use --shards {world.size} or more (a multiple of the rank "
                                "count balances the work; the same --shards gives the same "
                                "bits on any number of ranks and in one process)")
        reduce = Shards(cfg.shards, world, mode)
    if own and world.size > 1 and workers == "auto":
        workers = 1  # the ranks share the cores
    return threads_for(model, workers, reduce) if own else reduce


def data_fingerprint(*splits) -> str:
    """A short hash of the data a rank loaded: labels, shapes and a sample of pixels."""
    digest = hashlib.sha256()
    for split in splits:
        digest.update(repr((split.images.shape, str(split.images.dtype))).encode())
        digest.update(np.ascontiguousarray(split.labels).tobytes())
        digest.update(np.ascontiguousarray(split.images.reshape(len(split), -1)[::97]).tobytes())
    return digest.hexdigest()[:16]


def check_agreement(world, **facts) -> None:
    """Every rank must hold the same ``facts`` (network hash, data, settings); else an
    error on every rank (no rank waits forever) naming the first rank that differs."""
    gathered = world.allgather(facts)
    for rank, other in enumerate(gathered[1:], start=1):
        differing = [name for name in facts if other[name] != gathered[0][name]]
        if differing:
            raise CnnError(f"rank {rank} differs from rank 0 in its {', '.join(differing)}",
                           where="mpi", hint="every rank must run the same model file, data "
                                             "and flags")
