"""Parameter snapshots kept during training, from which `replay` recomputes any step
bitwise (the explorer's step slider).

A run with an output folder keeps, in DIR/snapshots/, ``run.json`` (the positions,
and everything replay needs to rebuild the same batches: `run_record`) and, for
every ``every``-th of the positions, ``before-{g:08d}.npz``: a checkpoint
(training/checkpoint.py) of the state after g - 1 steps, right before the step of
position g.  Positions are global step counts (epoch * steps per epoch + step):
at most ``count`` of them, 1 and the last step always, spaced geometrically (dense
early, where most changes).  A fresh run replaces the folder's snapshots; a resumed
run of the same record keeps them and goes on.

    keeper = SnapshotKeeper("runs/dlt", run_record(...), count=50, every=1)
    Trainer(model, cfg, out="runs/dlt", observers=[keeper])
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from ..core.errors import UsageError
from ..core.outputs import writing
from .checkpoint import save_checkpoint
from .loop import write_json
from .rates import read_schedule_record, schedule_record

FOLDER = "snapshots"
RUN = "run.json"
FORMAT = 1
#: positions kept by default (``run --snapshots N``)
SNAPSHOTS = 50


def positions(steps_per_epoch: int, epochs: int, count: int = SNAPSHOTS) -> list[int]:
    """At most ``count`` distinct global steps from 1 to the last, both included,
    spaced geometrically: every step while the geometric spacing from there to the
    last step is under one, then ever wider.  A resumed run computes the same."""
    last = steps_per_epoch * epochs
    if count < 1 or last < 1:
        return []
    if last <= count:
        return list(range(1, last + 1))
    if count == 1:
        return [last]
    chosen = [1]
    for i in range(1, count):  # the geometric ratio from here to the last step
        ratio = (last / chosen[-1]) ** (1 / (count - i))
        chosen.append(min(max(chosen[-1] + 1, round(chosen[-1] * ratio)),
                          last - (count - 1 - i)))
    return chosen


def snapshot_name(position: int) -> str:
    return f"before-{position:08d}.npz"


def snapshot_files(folder: Path) -> dict[int, Path]:
    """{position: file} of the snapshots in ``folder``."""
    found = {}
    for path in Path(folder).glob("before-*.npz"):
        digits = path.name[len("before-"):-len(".npz")]
        if digits.isdigit():
            found[int(digits)] = path
    return dict(sorted(found.items()))


def check_snapshots(count: int, every: int) -> None:
    """``--snapshots`` must be 0 (none) or more, ``--snapshot-every`` at least 1."""
    for flag, value, least in (("snapshots", count, 0), ("snapshot-every", every, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise UsageError(f"--{flag} must be a whole number of at least {least}, got "
                             f"{value}")


def run_record(model, cfg, *, data=None, given_splits=False, limit_train=None,
               limit_test=None, workers=1, reduction="ordered", world=None) -> dict:
    """What replay needs to rebuild the run's batches and steps: the data set's resolved
    path (None: the caller gave the splits or a data set), the limits, the train
    config as run (`config_from_record` reads it back), backend, threads, shards and
    reduction, and the network hash."""
    source = None
    if not given_splits and (data is None or isinstance(data, (str, os.PathLike))):
        from .datasets import resolve_data  # the run has just read it: nothing to fetch
        source = str(resolve_data(data and str(data), cfg.data, model.file).resolve())
    config = dataclasses.asdict(cfg)
    config.update(optimizer=[cfg.optimizer[0], dict(cfg.optimizer[1])],
                  schedule=schedule_record(cfg.schedule))
    return {"data": source, "limit_train": limit_train, "limit_test": limit_test,
            "val": cfg.val, "dtype": cfg.dtype, "backend": model.backend.name,
            "threads": workers, "shards": cfg.shards, "reduction": reduction,
            "ranks": 1 if world is None else world.size, "model_hash": model.network_hash(),
            "model_file": model.file, "config": config}


def config_from_record(config: dict, registry, where: str):
    """The `TrainConfig` `run_record` wrote (its schedule rebuilt with ``registry``'s)."""
    from ..language.settings import TrainConfig
    name, args = config["optimizer"]
    return TrainConfig(**{**config, "optimizer": (name, dict(args)),
                          "schedule": read_schedule_record(config["schedule"], registry,
                                                           where)})


class SnapshotKeeper:
    """An observer (training/observe.py) that writes DIR/snapshots/ on rank 0: run.json
    when training starts, and a snapshot before each kept position's step."""

    def __init__(self, out, record: dict, count: int = SNAPSHOTS, every: int = 1):
        check_snapshots(count, every)
        if count == 0:
            raise UsageError("a SnapshotKeeper keeps at least one position")
        self.folder, self.record = Path(out) / FOLDER, record
        self.count, self.every = count, every
        self.kept: set[int] = set()
        self.steps = 0  # per epoch, known when training starts

    def on_start(self, trainer, steps):
        if not trainer.world.is_root:
            return
        self.steps = steps
        done = trainer.epoch * steps + trainer.step
        wanted = positions(steps, trainer.cfg.epochs, self.count)
        self.kept = set(wanted[::self.every])
        info = {"format": FORMAT, "positions": wanted, "steps_per_epoch": steps,
                "epochs": trainer.cfg.epochs, "every": self.every, **self.record}
        old = self._old_record()
        same = old is not None and _replayable(old) == _replayable(info)
        with writing(self.folder, "the snapshots"):
            if done == 0 or not same:  # a fresh run, or another one: never mix them
                for path in snapshot_files(self.folder).values():
                    path.unlink()
            self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / RUN, info)
        # a base to walk from, unless the folder holds the steps before this one
        if done < steps * trainer.cfg.epochs and (done + 1 in self.kept or not same):
            self._write(trainer, done + 1, trainer.rng.bit_generator.state)

    def on_step(self, trainer, event):
        # after the last step of an epoch the state is written by on_epoch, once the
        # epoch is finished (epoch + 1, step 0), as a checkpoint holds it
        if trainer.world.is_root and event.step < event.steps \
                and event.global_step + 1 in self.kept:
            self._write(trainer, event.global_step + 1, event.epoch_state)

    def on_epoch(self, trainer, record):
        done = trainer.epoch * self.steps
        if trainer.world.is_root and done + 1 in self.kept:
            self._write(trainer, done + 1, trainer.rng.bit_generator.state)

    def _write(self, trainer, position: int, rng_state) -> None:
        save_checkpoint(self.folder / snapshot_name(position), trainer.checkpoint(rng_state))

    def _old_record(self) -> dict | None:
        try:
            old = json.loads((self.folder / RUN).read_text())
        except (OSError, ValueError):
            return None
        return old if isinstance(old, dict) else None


def _replayable(info: dict) -> dict:
    """What must stay the same for a resumed run to add to a folder's snapshots: all
    but the positions, which follow the epochs (a resume may add some), and the model
    file's name (the network hash stands for it)."""
    config = {k: v for k, v in info.get("config", {}).items() if k != "epochs"}
    return {**{k: v for k, v in info.items() if k not in ("positions", "epochs", "model_file")},
            "config": config}
