"""Exact replay of a run's steps from its snapshots (training/snapshots.py).

    record = load_run("runs/dlt")
    for replayed in replay_positions(record):          # or positions=[1, 40, 600]
        replayed.position, replayed.epoch, replayed.event.grads

Each step is recomputed by the `Trainer` itself: restored from the nearest snapshot
at or before the step's "before" state, as a resume restores its checkpoint, and
driven forward through its own epochs (batch order, distortions, reduction, learning
rate schedule), so the `StepEvent` it yields is bitwise what training computed on
the same backend, threads and shards (ordered reduction, or any reduction on one rank).
"""
from __future__ import annotations

import json
import operator
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import CheckpointError, CnnError, DataError
from .checkpoint import check_param_arrays, embedded_model, load_checkpoint
from .loop import CHECKPOINT, Trainer
from .observe import StepEvent
from .parallel import reduction_for
from .resume import check_resumable, check_step
from .snapshots import FOLDER, FORMAT, RUN, config_from_record, snapshot_files


@dataclass
class RunRecord:
    """A run folder's snapshots, and what replaying them needs."""
    run_dir: Path
    model: object          # compiled from the snapshots' model text, on the run's backend
    config: object         # the `TrainConfig` the run trained with
    positions: list        # the run's positions (global steps), increasing
    trained: int           # steps the run is known to have taken (an interrupted run's
                           # checkpoint, or its last snapshot)
    steps_per_epoch: int
    epochs: int
    snapshots: dict        # {position: file} of the snapshots on disk
    info: dict             # run.json as written
    train: object          # the training split, rebuilt as the run read it
    validation: object     # None without validation images
    test: object


@dataclass(frozen=True)
class Replayed:
    position: int          # the global step: the step that ends there
    epoch: float           # epochs done after it: position / steps per epoch
    event: StepEvent       # that step, recomputed
    state: dict            # the optimizer's state after it, {slot: {param: array}}
                           # (SDLM's "curvature": the estimate the step used)


def load_run(run_dir, registry=None, splits=None) -> RunRecord:
    """The `RunRecord` of ``run_dir`` (what ``run --out`` wrote).  ``registry``: the ops
    (default the built-in ones; a run with --ops plugins needs them); ``splits``: the
    (train, validation, test) a caller gave `run_experiment` (a run records no data
    set then).  A `CnnError` naming the file when the folder has no snapshots, they
    do not match run.json, or the data is missing."""
    folder = Path(run_dir) / FOLDER
    if not (folder / RUN).is_file():
        raise CnnError("this run kept no snapshots (it ran before they were kept, or with "
                       "--snapshots 0)", where=str(folder / RUN),
                       hint="run it again with --snapshots N (50 by default)")
    info = _read_info(folder / RUN)
    files = snapshot_files(folder)
    if not files:
        raise CnnError("run.json lists positions but the folder holds no snapshot "
                       "(before-*.npz)", where=str(folder))
    first = files[min(files)]
    model, ckpt = embedded_model(first, registry, info["backend"])
    if info["model_hash"] != ckpt.network_hash:
        raise CheckpointError(f"run.json was written for the network {info['model_hash'][:12]}, "
                              f"the snapshot holds {ckpt.network_hash[:12]}: they come from "
                              "different runs", where=str(folder / RUN))
    if info["reduction"] != "ordered" and info["ranks"] > 1:
        raise CnnError(f"this run summed its shards with an allreduce across "
                       f"{info['ranks']} ranks, whose bits one process cannot repeat",
                       where=str(folder / RUN), hint="train with --reduction ordered")
    cfg = config_from_record(info["config"], model.registry, str(folder / RUN))
    if splits is None:
        splits = _read_data(model, cfg, info, ckpt.preprocessing, folder / RUN)
    train, validation, test = splits
    if -(-len(train) // cfg.batch) != info["steps_per_epoch"]:
        raise DataError(f"the training set now holds {len(train)} images, {cfg.batch} a "
                        f"batch, where the run took {info['steps_per_epoch']} steps an epoch",
                        where=str(folder / RUN), hint="replay with the data the run read")
    return RunRecord(Path(run_dir), model, cfg, info["positions"],
                     _trained(Path(run_dir), info, files), info["steps_per_epoch"],
                     info["epochs"], files, info, train, validation, test)


def _trained(run_dir: Path, info: dict, files: dict) -> int:
    """The steps the run has taken as far as its folder tells: its checkpoint's, or
    the last snapshot's when that is later (a run killed or diverged after it)."""
    done = max(files) - 1
    try:
        ckpt = load_checkpoint(run_dir / CHECKPOINT, info["model_hash"])
    except CnnError:  # none yet, or a new run's not written yet: the snapshots tell
        return done
    return max(done, ckpt.epoch * info["steps_per_epoch"] + ckpt.step)


def replay_positions(record: RunRecord, positions=None):
    """Yield a `Replayed` for the step of each position (default: the run's, up to the
    steps it has taken), in increasing order, each step run once: from the nearest
    snapshot at or before its "before" state, or on from the previous position when
    that is nearer."""
    if positions is None:
        positions = [g for g in record.positions if g <= record.trained]
    last = record.steps_per_epoch * record.epochs
    try:
        wanted = sorted({operator.index(g) for g in positions})
    except TypeError:
        raise CnnError(f"positions must be whole numbers, got {list(positions)}",
                       where="positions") from None
    outside = [g for g in wanted if not 1 <= g <= last]
    if outside:
        raise CnnError(f"position {outside[0]} is not a step of this run (1 to {last})",
                       where="positions")
    cfg, model, info = record.config, record.model, record.info
    reduce = reduction_for(cfg, model, workers=info["threads"], mode=info["reduction"])
    catch = _Catch()
    trainer = Trainer(model, cfg, workers=info["threads"], reduce=reduce, observers=[catch])
    done = None  # steps the trainer's state has taken
    from threadpoolctl import threadpool_limits
    for g in wanted:
        bases = [s for s in record.snapshots if s <= g]
        if not bases:
            raise CnnError(f"no snapshot at or before position {g} (the first is "
                           f"{min(record.snapshots)}: the run was resumed with snapshots "
                           "on after it began)", where=str(record.run_dir / FOLDER))
        if done is None or max(bases) - 1 > done:
            done = _restore(trainer, record, max(bases))
        with threadpool_limits(1, user_api="blas"):  # as run_experiment trains
            event, state = catch.walk(trainer, record.train, g)
        done = g
        yield Replayed(g, g / record.steps_per_epoch, event, state)


class _Reached(Exception):
    """The step replay wanted is done (raised from inside `Trainer.fit`)."""


class _Catch:
    """An observer that stops training right after the step of ``target``; after an
    epoch's last step, once the epoch is finished, so the trainer can go on."""

    def walk(self, trainer, train, target: int) -> tuple:
        """(the StepEvent of step ``target``, the optimizer state after it)."""
        self.target, self.event = target, None
        try:
            trainer.fit(train, None)
        except _Reached:
            pass
        if self.event is None:
            raise CnnError(f"training ended before position {target}", where="positions")
        if self.event.step < self.event.steps:  # go on as a resume would
            trainer.rng.bit_generator.state = self.event.epoch_state
        return self.event, self.state

    def on_step(self, trainer, event):
        if event.global_step == self.target:
            self.event, self.state = event, trainer.state
            if event.step < event.steps:
                raise _Reached

    def on_epoch(self, trainer, record):
        if self.event is not None:
            raise _Reached


def _restore(trainer, record: RunRecord, position: int) -> int:
    """Load the snapshot before ``position`` into ``trainer``; the steps it has taken."""
    path = record.snapshots[position]
    model = record.model
    ckpt = load_checkpoint(path, model.network_hash())
    check_param_arrays(ckpt.params, model.param_shapes, str(path))
    check_resumable(ckpt, model, record.config, trainer.optimizer, str(path))
    check_step(ckpt.epoch, ckpt.step, ckpt.meta["sums"]["seen"], len(record.train),
               record.config.batch, str(path))
    done = ckpt.epoch * record.steps_per_epoch + ckpt.step
    if done != position - 1:
        raise CheckpointError(f"the snapshot holds the state after {done} steps, its name "
                              f"says {position - 1}", where=str(path))
    trainer.restore(ckpt)
    return done


#: run.json's fields and their JSON types
FIELDS = {"format": int, "positions": list, "steps_per_epoch": int, "epochs": int,
          "every": int, "backend": str, "threads": (int, str), "reduction": str, "ranks": int,
          "model_hash": str, "config": dict}


def _read_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CnnError(f"run.json cannot be read ({e})", where=str(path)) from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CnnError(f"run.json is not a snapshot record of format {FORMAT}",
                       where=str(path))
    for name, kind in FIELDS.items():
        if not isinstance(info.get(name), kind):
            raise CnnError(f"run.json: '{name}' is missing or of the wrong type",
                           where=str(path))
    return info


def _read_data(model, cfg, info: dict, preprocessing, where: Path):
    """The run's splits, read from the data set run.json names, its pixels mapped with
    the constants the run recorded."""
    import numpy as np

    from .datasets import load_data
    from .preprocess import make_splits
    if info.get("data") is None:
        raise CnnError("the run was given its data by its caller, so run.json names no data "
                       "set", where=str(where),
                       hint="pass them: load_run(DIR, splits=(train, validation, test))")
    if not Path(info["data"]).exists():
        raise DataError(f"the run's data set {info['data']} is missing", where=str(where),
                        hint="put the data set back where the run read it")
    return make_splits(model, load_data(info["data"]), cfg.val, np.dtype(cfg.dtype),
                       info.get("limit_train"), info.get("limit_test"), preprocessing)
