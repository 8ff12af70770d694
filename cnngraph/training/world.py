"""Worlds: the processes that train one model together, and their collectives.

`SINGLE` is one process, where every collective is the identity; `MpiWorld`
wraps an mpi4py communicator.  Only this module imports mpi4py, and only when
an MPI launcher started the process.
"""
from __future__ import annotations

import os

import numpy as np

from ..core.errors import CnnError

#: Environment variables MPI launchers set in every process they start (MPICH's
#: hydra and PMI, Open MPI, PMIx: srun with --mpi=pmi2 or pmix sets one too).  Not
#: SLURM_PROCID: a plain batch script has it, MPI or not.
LAUNCHER_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


class SingleProcess:
    """The world of one process: every collective is the identity."""

    rank, size = 0, 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def owned(self, count: int) -> range:
        """The contiguous group of ``count`` items (shards, batches) this rank computes."""
        return range(count * self.rank // self.size, count * (self.rank + 1) // self.size)

    def allgather(self, value) -> list:
        return [value]

    def bcast(self, value):
        return value

    def any(self, flag: bool) -> bool:
        return flag

    def barrier(self) -> None:
        pass

    def allreduce_sum(self, array: np.ndarray) -> np.ndarray:
        return array

    def gather_in_order(self, count: int, compute) -> list:
        """[compute(i) for i in range(count)], each item computed by the rank owning it
        and gathered to every rank in item order."""
        mine = [compute(i) for i in self.owned(count)]
        return [item for part in self.allgather(mine) for item in part]


SINGLE = SingleProcess()


class MpiWorld(SingleProcess):
    """The processes of an MPI communicator (mpi4py)."""

    def __init__(self, comm):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def allgather(self, value) -> list:
        return self.comm.allgather(value)

    def bcast(self, value):
        return self.comm.bcast(value, root=0)

    def any(self, flag: bool) -> bool:
        return bool(self.comm.allreduce(int(bool(flag)), op=self._mpi().MAX))

    def barrier(self) -> None:
        self.comm.Barrier()

    def allreduce_sum(self, array: np.ndarray) -> np.ndarray:
        out = np.empty_like(array)
        self.comm.Allreduce(np.ascontiguousarray(array), out, op=self._mpi().SUM)
        return out

    @staticmethod
    def _mpi():
        from mpi4py import MPI
        return MPI


def launched_by_mpi(environ=os.environ) -> bool:
    return any(name in environ for name in LAUNCHER_VARIABLES)


def detect_world(environ=os.environ) -> SingleProcess:
    """`MpiWorld` of COMM_WORLD when an MPI launcher started this process, else SINGLE.
    A launched process without mpi4py is an error that says how to install it."""
    if not launched_by_mpi(environ):
        return SINGLE
    try:
        from mpi4py import MPI
    except ImportError:
        raise CnnError("started by an MPI launcher, but mpi4py is not installed",
                       where="mpi", hint="pip install 'cnngraph[mpi]'") from None
    return MpiWorld(MPI.COMM_WORLD)
