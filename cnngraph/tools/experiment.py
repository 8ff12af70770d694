"""One experiment, as ``python -m cnngraph run`` performs it: prepare (compile,
settings, data, checks including memory), train, evaluate once on the test set,
write ``metrics.json`` and the checkpoint, export learned connections and draw
the pictures of learning.  `run`, `sweep`, notebooks and the Python API all go
through `run_experiment`.

    result = run_experiment("models/dlt.cnn", out="runs/dlt", config={"epochs": 2})
    result = run_experiment(model, train, validation, test, config, "runs/dlt")
    result.test_error, result.confusion, result.written

Nothing here prints.  Progress goes to ``report``: the trainer's events (a
`Progress` now and then, one dict per finished epoch) and this module's
`FetchingData` (MNIST found nowhere is fetched on first use), `Started`,
`Evaluated`, `ConnectionsExported` and `PicturesWritten`, in that order.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, TypeVar

import numpy as np

from ..compiler.program import Model, compile_model
from ..core.errors import CnnError, UsageError
from ..core.outputs import check_output_dir
from ..language.settings import TrainConfig
from ..training.checkpoint import load_checkpoint
from ..training.loop import (
    CHECKPOINT,
    METRICS,
    Diverged,
    Interrupted,
    Trainer,
    check_split,
    evaluate,
    write_json,
)
from ..training.observe import notify
from ..training.parallel import check_agreement, data_fingerprint, reduction_for
from ..training.preprocess import Preprocessing
from ..training.snapshots import SNAPSHOTS, SnapshotKeeper, check_snapshots, run_record
from ..training.world import SINGLE
from .outputs import (  # ConnectionsExported: one of this module's events
    ConnectionsExported,
    export_connections,
    pictures_wanted,
    write_augment_picture,
    write_pictures,
)


@dataclass(frozen=True)
class FetchingData:
    """A line about MNIST found nowhere and fetched into the per-user cache: one
    before the fetch and one after (`idx.Download`)."""
    line: str


@dataclass(frozen=True)
class Started:
    """Parameters are ready (fresh, given or resumed); training begins."""
    images: int          # training images
    validation: int      # validation images (0: none)
    config: TrainConfig
    resumed: bool


@dataclass(frozen=True)
class Evaluated:
    """Training ended and the test set was evaluated once; metrics.json is written."""
    error: float
    loss: float
    confusion: np.ndarray
    images: int
    metrics: Path        # OUT/metrics.json
    checkpoint: Path     # OUT/checkpoint.npz


@dataclass(frozen=True)
class PicturesWritten:
    paths: list          # empty when no pictures were drawn


@dataclass
class ExperimentResult:
    test_error: float
    test_loss: float
    confusion: np.ndarray          # rows: true class, columns: predicted
    metrics: dict                  # what OUT/metrics.json holds
    params: dict                   # the trained parameters
    connections: dict = field(default_factory=dict)  # per learned layer; {} if none
    pictures: list = field(default_factory=list)     # PNG files drawn
    written: list = field(default_factory=list)      # every file written, in order


def run_experiment(model: Model | str | Path, train=None, validation=None, test=None,
                   config: TrainConfig | Mapping | None = None, out: str | Path = "runs/latest",
                   *, data=None, limit_train: int | None = None, limit_test: int | None = None,
                   workers: int | str = 1, weights: dict | str | Path | None = None,
                   resume: bool = False, plots: bool | None = None, threshold: float = 0.1,
                   report: Callable | None = None,
                   should_stop: Callable[[], bool] | None = None, world=SINGLE,
                   reduction: str = "ordered", order: Callable | None = None,
                   observers=(), snapshots: int = SNAPSHOTS, snapshot_every: int = 1
                   ) -> ExperimentResult:
    """Prepare and run one experiment: train ``model`` (a `Model`, or a .cnn file
    compiled with the default backend), test once and write everything into ``out``.

    ``config``: the run's `TrainConfig`, or a mapping of train-block fields to change
    (``{"epochs": 2, "lr": 0.5}``, checked as ``run``'s flags are), or None for the
    model's train block.  The data: the splits ``train``, ``validation`` (None: no
    validation) and ``test`` as `preprocess.make_splits` makes them (`Split`:
    ``images`` (N, maps, H, W) preprocessed, ``labels`` (N,) int64 class numbers,
    ``targets`` (N, classes) coded as the loss wants, images and targets in the
    config's dtype); or, with ``train`` None, ``data`` is read and split as ``run`` does: a
    path as ``--data`` takes it (None: the train block's data, then
    $CNNGRAPH_DATA, then the cache, where MNIST found nowhere is fetched, as
    ``run`` does, saying so through `FetchingData`) or a data set
    `datasets.load_data` returned.
    Then the validation images are the last ``val`` training images, and
    ``limit_train``/``limit_test`` keep the first N training (after the validation
    images are taken out) and test images.  Splits of another dtype than the
    config's are refused before training, as is a run that would not fit in memory.

    ``weights`` (named arrays, or an .npz file) replaces the seeded initial
    parameters; ``resume`` continues from ``out``'s checkpoint instead.  ``plots``:
    see `pictures_wanted`.  ``threshold``: learned pairs with at least this
    strength go into connections.cnn.  ``order(epoch, n)``, if given, returns the
    indices of the training set in the order epoch ``epoch`` visits them, counting
    epochs from 0 (metrics and messages number them from 1), instead of the
    permutation drawn from the seed.  ``observers`` see every step and epoch
    (`training.observe`: TensorBoard logs, explorer snapshots).  ``snapshots`` (0:
    none) positions are kept in OUT/snapshots for exact replay, a snapshot for every
    ``snapshot_every``-th (`training.snapshots`; none with a given ``order``, which
    replay cannot repeat).  When ``should_stop()`` turns true, training
    stops between two steps, the checkpoint and metrics.json (without a test
    error) are written and `Interrupted` is raised; ``resume=True`` continues bitwise.
    When training diverges (`training.divergence`, or a NaN), metrics.json gets the good
    epochs with ``"diverged": true`` and a ``divergence`` record, the checkpoint of
    the last good epoch is kept, and `Diverged` is raised.

    ``world`` (training/world.py) runs it data-parallel: every rank calls this with
    the same arguments and the ranks share each batch's ``shards`` pieces
    (``reduction``: see `Shards`); rank 0 alone writes files and reports.  A config
    that leaves ``shards`` at 1 gets one shard per rank on a fresh start and, on
    resume, the shards the checkpoint records, so a run continues bitwise on any
    rank count; shards are part of what defines a run.
    """
    from threadpoolctl import threadpool_limits
    draw = pictures_wanted(plots)  # before any work: a missing matplotlib fails fast
    if not (isinstance(threshold, (int, float)) and 0 <= threshold <= 1):
        raise UsageError(f"--threshold must be a learned pair's strength, from 0 to 1, got "
                         f"{threshold}")
    check_snapshots(snapshots, snapshot_every)
    out = root_first(world, lambda root: check_output_dir(
        out, "--out", files=(CHECKPOINT, METRICS)) if root else Path(out))
    if not isinstance(model, Model):
        model = compile_model(model, backend="auto")
    recorded = recorded_run(Path(out) / CHECKPOINT, world) if resume else None
    cfg = run_config(model, config, world, recorded)
    observers = with_train_block_logger(observers, model, cfg)
    given = train is not None
    if train is None:
        from ..training.idx import Download
        fetch = Download(lambda line: (report or _ignore)(FetchingData(line)))
        # a resume maps pixels with the constants the run started with, whatever subset
        # it is given now
        train, validation, test = root_first(world, lambda root: read_splits(
            model, cfg, data, limit_train, limit_test,
            preprocessing=recorded.preprocessing if recorded else None,
            download=fetch if root else None))
    for what, split in (("training", train), ("validation", validation), ("test", test)):
        check_split(split, cfg.dtype, what)
    from ..training.resources import check_training_memory
    check_training_memory(model, cfg.batch, cfg.dtype, cfg.optimizer)
    if snapshots and order is None:
        observers = (*observers, SnapshotKeeper(out, run_record(
            model, cfg, data=None if given else data, given_splits=given,
            limit_train=limit_train, limit_test=limit_test, workers=workers,
            reduction=reduction, world=world), snapshots, snapshot_every))
    with threadpool_limits(1, user_api="blas"):  # parallelism comes from splitting batches
        return _train(model, train, validation, test, cfg, Path(out), draw, workers=workers,
                      weights=weights, resume=resume, plots=plots, threshold=threshold,
                      report=report, should_stop=should_stop, world=world,
                      reduction=reduction, order=order, observers=observers)


def with_train_block_logger(observers, model: Model, cfg: TrainConfig) -> tuple:
    """``observers``, and a `TensorBoardLogger` into the train block's ``tensorboard``
    folder when it names one and none is among them (``run --tensorboard`` gives its own)."""
    from .tensorboard import TensorBoardLogger
    observers = tuple(observers)
    if cfg.tensorboard and not any(isinstance(o, TensorBoardLogger) for o in observers):
        observers += (TensorBoardLogger(cfg.tensorboard, model, cfg.log_every),)
    return observers


def run_config(model: Model, config, world=SINGLE, recorded: Recorded | None = None
               ) -> TrainConfig:
    """The run's `TrainConfig` (see `run_experiment`).  A resume continues the run as
    it started: the settings its checkpoint ``recorded`` (batch, seed, val, lr) stand where
    ``config`` does not name them, and so do its shards, else one per rank."""
    changes = {}
    if config is None:
        cfg = model.settings.train
    elif isinstance(config, TrainConfig):
        cfg = config
    else:
        changes = check_changes(config)
        cfg = model.settings.train.replace(**changes)
    if recorded and not isinstance(config, TrainConfig):
        cfg = cfg.replace(**{name: value for name, value in recorded.run.items()
                             if name != "shards" and name not in changes})
    if "shards" in changes or cfg.shards != 1:
        return cfg
    return cfg.replace(shards=recorded.shards if recorded else world.size)


#: train-block fields a run may change, and what a value must be (None: the train
#: block's own checks, as for the optimizer)
CHANGES = {"epochs": (1, "at least 1"), "batch": (1, "at least 1"), "shards": (1, "at least 1"),
           "lr": (0, "a finite positive number"), "seed": (0, "0 or more"),
           "val": (0, "0 or more"),
           "dtype": None, "shuffle": None, "optimizer": None, "schedule": None, "data": None}


def check_changes(changes: Mapping) -> dict:
    """Changes to a train block, each checked; a wrong one is a `UsageError` naming its
    flag (``--epochs``)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    unknown = sorted(set(changes) - set(CHANGES))
    if unknown:
        raise UsageError(f"a run changes {', '.join(CHANGES)} of the train block, not "
                         f"{', '.join(unknown)}")
    for key, value in changes.items():
        if CHANGES[key] is None:
            continue
        least, need = CHANGES[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or value < least or (key == "lr" and not 0 < value < math.inf):
            raise UsageError(f"--{key} must be {need}, got {value}")
    dtype = changes.get("dtype", "float32")
    if dtype not in ("float32", "float64"):
        raise UsageError(f"--dtype must be float32 or float64, got {dtype}")
    return changes


@dataclass(frozen=True)
class Recorded:
    """What a run's checkpoint says of how the run is set up, which a resume keeps:
    its ``run`` settings (`checkpoint.RUN_FIELDS`; only shards before batch, seed, val
    and lr were recorded, none in format 1) and its ``preprocessing`` constants (None for
    a format-1 checkpoint: they are fitted again, as that run did)."""
    run: dict
    preprocessing: Preprocessing | None

    @property
    def shards(self) -> int:
        """The run's shards (1 for a checkpoint written before they were recorded)."""
        return self.run.get("shards", 1)


def recorded_run(path: Path, world=SINGLE) -> Recorded | None:
    """`Recorded` from the checkpoint at ``path``, read once by rank 0 and sent to the
    others; None without a readable checkpoint (the resume says why)."""
    found = None
    if world.is_root:
        try:
            ckpt = load_checkpoint(path)
            found = Recorded(ckpt.run, ckpt.preprocessing)
        except CnnError:
            found = None
    return world.bcast(found)


def read_splits(model: Model, cfg: TrainConfig, data=None, limit_train=None, limit_test=None,
                preprocessing=None, download=None):
    """(train, validation or None, test) as ``run`` makes them (see `run_experiment`).
    ``preprocessing``: the constants to map pixels with (a checkpoint's record; None:
    fitted to the training images); ``download`` (`idx.Download`): how to fetch MNIST
    found nowhere (None: it is an error)."""
    from ..training.datasets import load_data, resolve_data
    from ..training.preprocess import make_splits
    for flag, value in (("limit-train", limit_train), ("limit-test", limit_test)):
        if value is not None and value < 1:
            raise UsageError(f"--{flag} must be at least 1, got {value}")
    if data is None or isinstance(data, (str, os.PathLike)):
        data = load_data(resolve_data(data and str(data), cfg.data, model.file,
                                      download=download))
    return make_splits(model, data, cfg.val, np.dtype(cfg.dtype), limit_train, limit_test,
                       preprocessing)


T = TypeVar("T")


def root_first(world, read: Callable[[bool], T]) -> T:
    """``read(is_root)`` on every rank, rank 0 first, so that it alone fetches what is
    missing and the others then find it; an error on rank 0 stops every rank (none
    waits forever)."""
    found = failed = None
    if world.is_root:
        try:
            found = read(True)
        except CnnError as e:
            failed = e
    # sent as its parts (an exception's pickle drops them); bcast waits for rank 0
    sent = world.bcast(failed and (type(failed), failed.message, failed.where, failed.hint))
    if failed is not None:
        raise failed
    if sent is not None:
        raise sent[0](sent[1], where=sent[2], hint=sent[3])
    return found if world.is_root else read(False)


def _ignore(event) -> None:
    pass


def _train(model, train, validation, test, cfg, out, draw, *, workers, weights, resume,
           plots, threshold, report, should_stop, world, reduction, order, observers
           ) -> ExperimentResult:
    """Train, test once and write the outputs (`run_experiment`, once prepared)."""
    report = (report if world.is_root else None) or _ignore
    check_agreement(world, network=model.network_hash(), data=data_fingerprint(train, test),
                    settings=dataclasses.asdict(cfg), resume=resume)
    trainer = Trainer(model, cfg, out, report=report,
                      should_stop=should_stop or (lambda: False), workers=workers,
                      reduce=reduction_for(cfg, model, world, workers, reduction),
                      order=order, world=world, observers=observers)
    if resume:
        trainer.resume()
    else:
        trainer.start(read_weights(weights) if isinstance(weights, (str, Path)) else weights)
    report(Started(len(train), len(validation) if validation else 0, cfg, resume))
    try:
        trainer.fit(train, validation)
    except Interrupted:
        if world.is_root:
            write_json(out / METRICS, trainer.metrics())
        raise
    except Diverged as e:  # the good epochs, and where and how training diverged
        if world.is_root:
            write_json(out / METRICS, {**trainer.metrics(), "diverged": True,
                                       "divergence": e.record})
        raise
    error, confusion, loss = evaluate(model, trainer.params, test, world=world)
    metrics = trainer.metrics(error, confusion)
    notify(observers, "on_end", trainer, metrics)
    if not world.is_root:
        return ExperimentResult(error, loss, confusion, metrics, trainer.params)
    write_json(out / METRICS, metrics)
    result = ExperimentResult(error, loss, confusion, metrics, trainer.params,
                              written=[out / METRICS, out / CHECKPOINT])
    report(Evaluated(error, loss, confusion, len(test), out / METRICS, out / CHECKPOINT))
    exported = export_connections(model, trainer.params, threshold, out,
                                  draw, alpha_wanted=plots is None)
    if exported is not None:
        result.connections = exported.found
        result.written += exported.written
        report(exported)
    result.pictures = write_pictures(model, trainer.params, metrics, test, out) if draw else []
    if draw and trainer.augment is not None and len(train):
        result.pictures.append(write_augment_picture(trainer.augment, train, out))
    result.written += result.pictures
    report(PicturesWritten(result.pictures))
    return result


def read_weights(path) -> dict:
    """Named parameter arrays from an .npz file (read without pickle): plain arrays,
    or a run's checkpoint, whose parameters start a new run (fine-tuning)."""
    from ..training.checkpoint import CheckpointError, load_checkpoint
    try:
        with np.load(path, allow_pickle=False) as data:
            checkpoint = "header" in data.files  # load_checkpoint reads and checks it
            arrays = {} if checkpoint else {k: data[k] for k in data.files}
    except Exception as e:  # a damaged zip raises many kinds (BadZipFile, ...)
        raise CheckpointError(f"cannot read weights: {e}", where=str(path)) from None
    return load_checkpoint(Path(path)).params if checkpoint else arrays


