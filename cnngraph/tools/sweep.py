"""Sweeps: one model trained over a grid of train-block settings, each
configuration an independent `run_experiment` in its own folder, run in
parallel, and the results gathered into one table.

    result = run_sweep("models/dlt.cnn", {"lr": [0.5, 1.0], "seed": [1, 2, 3]},
                       "runs/sweep", limit_train=6000)
    result.rows, result.summary, result.written

Each configuration's folder is ``OUT/<name>``, the name made of the settings
that vary (``lr=0.5_seed=1``; ``run`` when none does).  A configuration runs in
a process of a local pool (`concurrent.futures.ProcessPoolExecutor`, ``jobs``
processes, BLAS limited to one thread in each), or, when the program was started
by ``mpiexec -n K`` with more than one rank and mpi4py is installed, on ranks
1..K-1 through `mpi4py.futures.MPICommExecutor`; rank 0 hands out the work and
writes the table, and `run_sweep` returns None on the other ranks.  A run gets
exactly what ``python -m cnngraph run MODEL --seed S --lr R ...`` would, so its
metrics are bitwise those of that command.

A configuration whose training diverges (`divergence.Diverged`) becomes a row with
status ``diverged`` and its message, one that fails otherwise (too little
memory, a bug) a row with status ``failed``; the others finish.
After all runs: OUT/sweep.csv (one row per configuration), OUT/summary.csv (per
configuration over seeds: median, min and max test error, counts), OUT/sweep.json
(both, with the grid) and, with matplotlib, OUT/sweep.png.  Nothing here prints;
progress goes to ``report`` as `SweepStarted` and `RunFinished` events, after
`experiment.FetchingData` when MNIST, found nowhere, is fetched first.
"""
from __future__ import annotations

import os
import signal
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import CnnError, UsageError, format_error
from ..training.world import detect_world
from .sweep_grid import configurations
from .sweep_tables import (
    RUNS_CSV,
    SETTINGS,
    SUMMARY_CSV,
    SWEEP_JSON,
    summarize,
    write_tables,
)


@dataclass(frozen=True)
class Job:
    """What a worker process needs to run one configuration (plain, picklable data)."""
    model: str
    ops: tuple
    overrides: dict
    out: str
    data: str
    limit_train: int | None
    limit_test: int | None
    plots: bool
    tensorboard: str | None   # its TensorBoard folder (the sweep's DIR/<name>), or None
    log_every: int
    settings: dict            # its settings, written there as hparams


@dataclass(frozen=True)
class SweepStarted:
    configurations: int
    workers: int          # processes (or MPI ranks) running configurations
    where: str            # "processes" or "MPI ranks"


@dataclass(frozen=True)
class RunFinished:
    row: dict             # as in sweep.csv
    done: int             # configurations finished so far, this one included
    total: int


@dataclass
class SweepResult:
    rows: list            # one dict per configuration, grid order (see ROW_FIELDS)
    summary: list         # one dict per configuration over seeds (see SUMMARY_FIELDS)
    varying: list         # the settings with more than one value, in SETTINGS order
    groups: list          # each row's configuration over seeds (a summary's name)
    written: list = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> list:
        """The rows that did not end with a result: not ok, and not diverged (a
        divergence is what that setting gives)."""
        return [r for r in self.rows if r["status"] not in ("ok", "diverged")]

# running ----------------------------------------------------------------------

def mpi_world():
    """(rank, size) when an MPI launcher started this process as one of several ranks
    (training/world.py; a launcher without mpi4py is an error), else None: one rank
    sweeps with the local pool."""
    world = detect_world()
    return (world.rank, world.size) if world.size > 1 else None


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def run_sweep(model: str | Path, grid: Mapping[str, Sequence], out: str | Path, *,
              ops: Sequence[str] = (), data: str | None = None, dtype: str | None = None,
              val: int | None = None, limit_train: int | None = None,
              limit_test: int | None = None, plots: bool | None = None,
              tensorboard: str | Path | None = None, log_every: int | None = None,
              jobs: int | None = None, executor=None, report: Callable | None = None,
              should_stop: Callable[[], bool] | None = None) -> SweepResult | None:
    """Train ``model`` (a .cnn file; ``ops``: plugins to load) once per combination of
    ``grid``'s values, each run in ``out``/<name>, and write the tables into ``out``.

    ``dtype`` and ``val`` apply to every run; ``data`` is the data set, as ``run``'s
    ``--data`` (`datasets.resolve_data`: else the train block's, else MNIST, fetched
    on first use as ``run`` does); ``limit_train``/``limit_test`` as ``run``'s flags.
    ``plots``: None draws sweep.png when matplotlib is installed, True also each
    run's pictures (matplotlib required), False nothing.  ``tensorboard``: a folder
    (None: the train block's ``tensorboard``, if any) where each configuration writes
    its TensorBoard logs (`tensorboard.TensorBoardLogger`, every ``log_every`` steps;
    None: the train block's) into <name>/, with its settings as hparams and its
    test error as their metric.  ``executor``: any
    `concurrent.futures` executor of processes to use instead of the local pool or
    MPI.  When ``should_stop()`` turns true, runs not started are dropped and, in
    the local pool, running ones stop between two steps with their checkpoint
    saved (status ``interrupted``); the tables are still written and the result
    has ``interrupted`` set.  Returns None on MPI ranks other than 0.
    """
    from ..core.outputs import check_output_dir
    from ..training.datasets import resolve_data
    from ..training.idx import Download
    from .experiment import FetchingData, root_first
    from .outputs import pictures_wanted
    for flag, value in (("limit-train", limit_train), ("limit-test", limit_test),
                        ("jobs", jobs)):
        if value is not None and value < 1:
            raise UsageError(f"--{flag} must be at least 1, got {value}")
    if val is not None and val < 0:
        raise UsageError(f"--val must not be negative, got {val}")
    draw = pictures_wanted(plots)
    compiled = load_model(str(model), tuple(ops))
    # the train block's logs, if it names a folder: one run per configuration there too
    tensorboard = tensorboard or compiled.settings.train.tensorboard
    log_every = compiled.settings.train.log_every if log_every is None else log_every
    if tensorboard is not None:  # tensorboardX missing: an error before any run
        from .tensorboard import check_logging
        tensorboard = check_logging(tensorboard, log_every)
    out = check_output_dir(out, "--out", files=(RUNS_CSV, SUMMARY_CSV, SWEEP_JSON))
    base = {k: v for k, v in (("dtype", dtype), ("val", val)) if v is not None}
    found = configurations(compiled, grid, base)
    report = report or (lambda event: None)
    fetch = Download(lambda line: report(FetchingData(line)))
    data_dir = str(root_first(detect_world(), lambda root: resolve_data(
        data, compiled.settings.train.data, compiled.file,
        download=fetch if root else None)).resolve())
    jobs_list = [Job(str(model), tuple(ops), c.overrides, str(out / c.name), data_dir,
                     limit_train, limit_test, bool(plots),
                     None if tensorboard is None else str(tensorboard / c.name), log_every,
                     c.settings)
                 for c in found]
    with _executor(executor, jobs, len(found)) as (pool, stop_event, workers, where):
        if pool is None:  # an MPI rank that served the manager
            return None
        out.mkdir(parents=True, exist_ok=True)
        report(SweepStarted(len(found), workers, where))
        rows, interrupted = _collect(pool, found, jobs_list, report, should_stop, stop_event)
    varying = [k for k in SETTINGS if len({c.settings[k] for c in found}) > 1]
    result = SweepResult(rows, summarize(found, rows), varying, [c.group for c in found],
                         interrupted=interrupted)
    result.written = write_tables(result, out, model=str(model), grid={
        k: list(dict.fromkeys(c.settings[k] for c in found)) for k in SETTINGS},
        fixed={"dtype": found[0].settings["dtype"],
               "val": compiled.settings.train.replace(**base).val,
               "limit_train": limit_train, "limit_test": limit_test, "data": data_dir},
        draw=draw)
    return result


@contextmanager
def _executor(given, jobs, count):
    """(executor or None, stop event or None, workers, where) for the runs: ``given``,
    MPI's ranks 1.. under mpiexec (None on those ranks once the work is done), or a
    local pool of spawned processes."""
    if given is not None:
        yield given, None, getattr(given, "_max_workers", 0), "processes"
        return
    world = mpi_world()
    if world is not None and world[1] > 1:
        from mpi4py import MPI
        from mpi4py.futures import MPICommExecutor
        with MPICommExecutor(MPI.COMM_WORLD, root=0) as pool:
            yield pool, None, world[1] - 1, "MPI ranks"
        return
    import multiprocessing
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    workers = max(1, min(jobs or default_jobs(), count))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(stop,)) as pool:
        yield pool, stop, workers, "processes"


def _collect(pool, found, jobs, report, should_stop, stop_event):
    rows = [None] * len(found)
    futures = {pool.submit(run_configuration, job): i for i, job in enumerate(jobs)}
    pending, done_count, stopping = set(futures), 0, False
    try:
        while pending:
            done, pending = wait(pending, timeout=0.25 if should_stop else None,
                                 return_when=FIRST_COMPLETED)
            for future in sorted(done, key=futures.get):
                i = futures[future]
                rows[i] = {"name": found[i].name, **found[i].settings, **_outcome(future)}
                done_count += 1
                report(RunFinished(rows[i], done_count, len(found)))
            if should_stop and not stopping and pending and should_stop():
                stopping = True
                if stop_event is not None:
                    stop_event.set()
                for future in pending:
                    future.cancel()
    except BaseException:
        for future in pending:
            future.cancel()
        if stop_event is not None:
            stop_event.set()
        raise
    return rows, stopping


def _outcome(future) -> dict:
    empty = {"status": "failed", "test_error": None, "val_error": None, "train_loss": None,
             "test_loss": None, "seconds": None, "error": None}
    if future.cancelled():
        return {**empty, "status": "not run", "error": "the sweep was stopped first"}
    error = future.exception()
    if error is not None:  # the worker itself failed (killed, out of memory, ...)
        return {**empty, "error": f"the worker running it failed: "
                                  f"{type(error).__name__}: {error}"}
    return {**empty, **future.result()}


# in a worker process --------------------------------------------------------

_STOP = None    # the pool's stop event, in a worker process
_CACHE = {}     # per process: compiled models and data sets


def _start_worker(stop) -> None:
    """A pool process: Ctrl-C is the manager's to handle (it sets ``stop``)."""
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _should_stop() -> bool:
    return _STOP is not None and _STOP.is_set()


def load_model(path: str, ops: tuple = ()):
    """The compiled model, compiled once per process."""
    key = ("model", path, ops)
    if key not in _CACHE:
        from ..compiler.program import compile_model, default_registry
        _CACHE[key] = compile_model(path, default_registry(ops), "auto")  # as run's default
    return _CACHE[key]


def _dataset(path: str):
    """The data set at ``path``, read once per process."""
    if ("data", path) not in _CACHE:
        from ..training.datasets import load_data
        _CACHE[("data", path)] = load_data(path)
    return _CACHE[("data", path)]


def run_configuration(job: Job) -> dict:
    """Run one configuration as ``python -m cnngraph run`` would (`run_experiment`),
    with one BLAS thread; the results as a row's fields.  Never raises for a failed
    run."""
    from ..training.loop import Diverged, Interrupted
    from .experiment import run_experiment
    from .tensorboard import TensorBoardLogger
    started = time.perf_counter()
    seen = []  # numpy's overflow warnings and the like: kept in the row, not printed
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            model = load_model(job.model, job.ops)
            observers = [] if job.tensorboard is None else [TensorBoardLogger(
                job.tensorboard, model, job.log_every, hparams=job.settings)]
            result = run_experiment(model, config=job.overrides, out=job.out,
                                    data=_dataset(job.data), limit_train=job.limit_train,
                                    limit_test=job.limit_test, plots=job.plots,
                                    should_stop=_should_stop, observers=observers)
    except Interrupted as e:
        row = {"status": "interrupted", "error": f"{e}; its checkpoint is in {job.out}"}
    except Diverged as e:
        row = {"status": "diverged", "error": format_error(e),
               "train_loss": e.record.get("train_loss")}
    except CnnError as e:
        row = {"status": "failed", "error": format_error(e)}
    except Exception as e:  # a bug, or MemoryError: this row fails, the sweep goes on
        row = {"status": "failed", "error": f"{type(e).__name__}: {e}",
               "traceback": traceback.format_exc()}
    else:
        last = result.metrics["epochs"][-1]
        row = {"status": "ok", "test_error": float(result.test_error),
               "val_error": last["val_error"], "train_loss": last["train_loss"],
               "test_loss": float(result.test_loss)}
    row["seconds"] = time.perf_counter() - started
    messages = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in seen))
    if messages:
        row["warnings"] = messages[:5]
    return row
