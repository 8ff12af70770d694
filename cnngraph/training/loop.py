"""The training loop: epochs of `train_step` over a training set, with
schedules, validation, metrics and checkpoints, resumable bitwise.

    trainer = Trainer(model, config, out="runs/dlt")
    trainer.start()
    history = trainer.fit(train, validation)

Randomness: parameters come from ``seed``; each epoch draws its curvature
sample (SDLM) and its permutation from one generator whose state at the start
of the epoch is kept in the checkpoint, so a run resumed after any step ends
bitwise equal to one never interrupted (same reduction strategy).  A given
``order`` replaces the drawn permutations.  Reports go to a callback; nothing
here prints.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..core import outputs
from ..core.errors import CheckpointError, CnnError, DataError
from ..language.settings import TrainConfig
from .augment import Augmenter
from .checkpoint import (RUN_FIELDS, Checkpoint, check_param_arrays, load_checkpoint,
                         save_checkpoint)
from .divergence import Diverged, beginning, check_epoch, kept, record, reported_at
from .observe import StepEvent, notify
from .parallel import reduction_for
from .provenance import describe, find_first_bad, finite, update_finite
from .rates import learning_rate, schedule_record
from .resume import check_resumable, check_step
from .step import Draw, Optimizer, estimate_curvature, train_step
from .world import SINGLE

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"


class Interrupted(Exception):
    """Training stopped on request; a checkpoint was saved."""


@dataclass
class Progress:
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    images_per_s: float
    eta_s: float


def check_split(split, dtype, what: str = "training") -> None:
    """Refuse a split (None passes) whose images or targets are not of ``dtype``, the
    run's: the parameters are of that dtype, and a mixed step would fail only when
    the first split of the other dtype is evaluated, after a whole epoch."""
    if split is None:
        return
    for field in ("images", "targets"):
        found = np.asarray(getattr(split, field)).dtype
        if found != np.dtype(dtype):
            raise DataError(f"the {what} {field} are {found} but the run trains in "
                            f"{np.dtype(dtype)}", where=f"{what} split",
                            hint=f"make the splits with dtype {np.dtype(dtype)} "
                                 f"(make_splits(..., np.{np.dtype(dtype)})) or set the run's "
                                 f"dtype to {found}")


def evaluate(model, params, split, batch: int = 1000, world=SINGLE, run=None):
    """(error fraction, confusion matrix rows=true cols=predicted, mean loss); the
    batches are shared among ``world``'s ranks and their losses summed in order.
    ``run(work, images)``, if given, runs each forward pass (`threads.forward_threads`)."""
    classes = model.classes
    starts = range(0, len(split), batch)
    run = run or (lambda work, images: work())

    def one(k):
        x, t = split.images[starts[k]:starts[k] + batch], split.targets[starts[k]:starts[k] + batch]
        out = run(lambda: model.forward(params, x), len(x))
        confusion = np.zeros((classes, classes), dtype=np.int64)
        np.add.at(confusion, (split.labels[starts[k]:starts[k] + batch], out.argmax(axis=1)), 1)
        return model.loss_value(out, t) * len(x), confusion
    confusion = np.zeros((classes, classes), dtype=np.int64)
    loss = 0.0
    for part_loss, part_confusion in world.gather_in_order(len(starts), one):
        loss += part_loss
        confusion += part_confusion
    errors = len(split) - np.trace(confusion)
    return errors / max(1, len(split)), confusion, loss / max(1, len(split))


class Trainer:
    """One training run, writing checkpoints and metrics into ``out`` (None: nowhere).

    The batch's gradient is reduced as `parallel.reduction_for` decides from the
    config's ``shards``, ``world`` and ``workers`` (> 1: threads); ``reduce`` hands in
    any other strategy.  ``order(epoch,
    n)``, if given, returns the indices of the training set in the order epoch
    ``epoch`` (0-based) visits them, instead of the permutation drawn from the seed.
    """

    def __init__(self, model, cfg: TrainConfig, out: Path | None = None,
                 report: Callable = lambda e: None,
                 should_stop: Callable[[], bool] = lambda: False, workers: int | str = 1,
                 reduce=None, order: Callable | None = None, world=SINGLE, observers=()):
        self.model, self.cfg, self.out = model, cfg, None if out is None else Path(out)
        self.observers = tuple(observers)  # `observe`: TensorBoard, snapshots
        self.world = world
        self.report, self.should_stop, self.workers = report, should_stop, workers
        # the train block's shards, the threads, the backend's own threads
        self.reduce = reduce or reduction_for(cfg, model, world, workers)
        self.order = order
        self.last_batch = None
        self.dtype = np.dtype(cfg.dtype)
        self.hash = model.network_hash()
        self.optimizer = Optimizer.for_model(model, cfg.optimizer)
        # the model file's augment section: training batches distorted on the fly, drawn
        # from (seed, epoch, step); outside the image, what a 0 pixel maps to
        augment = model.settings.augment
        self.augment = None
        if augment.active:
            kind, args = model.settings.preprocess.pixels
            pixels = model.registry.choice("preprocessing", kind)
            self.augment = Augmenter(augment, cfg.seed, where=model.file,
                                     background=pixels.value.background(**pixels.arguments(args)))

    def start(self, weights: dict | None = None):
        """Fresh parameters from the seed, or ``weights`` (named arrays, checked)."""
        self.params = self.model.init_params(self.cfg.seed, self.dtype)
        if weights is not None:
            check_param_arrays(weights, self.model.param_shapes, "--weights")
            self.params = {k: np.array(weights[k], dtype=self.dtype) for k in self.params}
        self.model.check_params(self.params, self.dtype)
        self.params = self.world.bcast(self.params)   # rank 0's, wherever they came from
        self.state = self.optimizer.start(self.params)
        self.rng = np.random.default_rng([self.cfg.seed, 1])
        self.epoch, self.step, self.history, self.sums = 0, 0, [], _zero_sums()
        self.first_batch = None  # its training loss and error (`divergence`)
        self.seeded = weights is None  # a trained net's first batch is no beginning

    def resume(self):
        """Continue from ``out``'s checkpoint, where it stopped: rank 0 reads it and
        every rank gets what it read (or the error it met)."""
        found = None
        if self.world.is_root:
            try:
                found = self._read_checkpoint()
            except CnnError as e:  # sent as its parts: an exception's pickle drops them
                found = ("error", type(e), e.message, e.where, e.hint)
        found = self.world.bcast(found)
        if found[0] == "error":
            raise found[1](found[2], where=found[3], hint=found[4])
        ckpt = found[1]
        check_resumable(ckpt, self.model, self.cfg, self.optimizer,
                        str(self._checkpoint_path()))
        for name, recorded in ckpt.run.items():  # those the checkpoint records (format 2)
            if recorded != getattr(self.cfg, name):
                raise CheckpointError(f"the run was started with {name} {recorded} (the "
                                      f"checkpoint's 'run.{name}'), this one has "
                                      f"{getattr(self.cfg, name)}: {name} is part of what "
                                      "defines a run", where=str(self._checkpoint_path()),
                                      hint=f"leave --{name} out to continue with {recorded}, "
                                           "or start anew in another --out")
        self.restore(ckpt)

    def restore(self, ckpt: Checkpoint):
        """Take up the state a checkpoint of this run holds (checked by the caller):
        where a resume continues, and where `replay` walks from."""
        self.params = {k: v.astype(self.dtype) for k, v in ckpt.params.items()}
        self.state = self.optimizer.start(self.params)
        for key, value in ckpt.optimizer.items():  # counts (`OptimizerRule`) stay whole
            slot, name = key.split("/", 1)
            like = self.state.get(slot, {}).get(name)
            self.state.setdefault(slot, {})[name] = value.astype(
                self.dtype if like is None else like.dtype)
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = ckpt.rng_state
        self.epoch, self.step = ckpt.epoch, ckpt.step
        self.history, self.sums = ckpt.meta["epochs"], ckpt.meta["sums"]
        self.first_batch = None  # not in the checkpoint (`divergence.beginning`)
        self.seeded = False

    def _read_checkpoint(self):
        ckpt = load_checkpoint(self._checkpoint_path(), self.hash)
        check_param_arrays(ckpt.params, self.model.param_shapes, str(self._checkpoint_path()))
        return "ok", ckpt

    def _checkpoint_path(self) -> Path:
        if self.out is None:
            raise CnnError("this run has no output folder to resume from", where="out")
        return self.out / CHECKPOINT

    def fit(self, train, validation=None) -> list:
        """Train until cfg.epochs; returns the per-epoch history."""
        cfg = self.cfg
        check_split(train, self.dtype, "training")
        check_split(validation, self.dtype, "validation")
        self.preprocessing = train.preprocessing  # the constants each checkpoint records
        steps = math.ceil(len(train) / cfg.batch)
        if self.step:  # resumed (or restored by `replay`) mid-epoch
            check_step(self.epoch, self.step, self.sums["seen"], len(train), cfg.batch,
                       str(self.out / CHECKPOINT) if self.out else "the restored state")
        notify(self.observers, "on_start", self, steps)
        while self.epoch < cfg.epochs:
            epoch_state = self.rng.bit_generator.state
            sample, order = self._draw(len(train))
            if self.optimizer.needs_curvature and (self.step == 0
                                                   or not self.state.get("curvature")):
                self.state = {**self.state, "curvature": estimate_curvature(
                    self.model, self.params, train.images[sample], train.targets[sample],
                    world=self.world)}
            self._run_epoch(train, order, steps, epoch_state)
            self._finish_epoch(train, validation, steps)
        return self.history

    def _draw(self, n):
        sample = None
        if self.optimizer.needs_curvature:
            sample = np.sort(self.rng.choice(n, size=min(self.optimizer.samples, n),
                                             replace=False))
        if self.order is not None:
            order = np.asarray(self.order(self.epoch, n))
            if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
                raise CnnError(f"order({self.epoch}, {n}) must return a permutation of "
                               f"0..{n - 1}, got an array of shape {order.shape}",
                               where="order")
        else:
            order = self.rng.permutation(n) if self.cfg.shuffle else np.arange(n)
        return sample, order

    def _run_epoch(self, train, order, steps, epoch_state):
        batch, sums = self.cfg.batch, self.sums
        started, last_report, done_at_start = time.perf_counter(), 0.0, self.step
        while self.step < steps:
            idx = order[self.step * batch:(self.step + 1) * batch]
            x, t = train.images[idx], train.targets[idx]
            if self.augment is not None:
                x = self.augment(x, self.epoch, self.step, train)
            lr = learning_rate(self.cfg, self.epoch, self.step, steps)  # `rates`
            draw = Draw.for_step(self.model, self.cfg.seed, self.epoch, self.step)  # dropout
            with np.errstate(all="ignore"):  # a NaN is diagnosed below, not warned about
                params, state, stats = train_step(self.model, self.params, self.state,
                                                  (x, t), self.optimizer, lr, self.reduce, draw)
            if not (math.isfinite(stats.loss) and finite(stats.grads.values())
                    and update_finite(params, state, self.params, self.state)):
                raise self._diverged(stats, x, t, lr, steps, draw)
            before, self.params, self.state = self.params, params, state
            self.last_batch = (x, stats.grads)
            if self.epoch == 0 and self.step == 0 and self.seeded:
                self.first_batch = (stats.loss, stats.errors / stats.size)
            sums["loss"] += stats.loss * stats.size
            sums["errors"] += stats.errors
            sums["seen"] += stats.size
            self.step += 1
            if self.observers:
                notify(self.observers, "on_step", self, StepEvent(
                    self.epoch, self.step, steps, x, t, before, params, stats.grads,
                    stats.loss, stats.errors, lr, epoch_state))
            now = time.perf_counter()
            if now - last_report > 0.5 or self.step == steps:
                last_report = now
                rate = (self.step - done_at_start) * batch / max(now - started, 1e-9)
                self.report(Progress(self.epoch + 1, self.cfg.epochs, self.step, steps,
                                     sums["loss"] / sums["seen"], rate,
                                     (steps - self.step) * batch / max(rate, 1e-9)))
            if self.world.any(self.should_stop()) and self.step < steps:
                sums["seconds"] += now - started
                self._save(epoch_state)
                raise Interrupted(f"stopped at epoch {self.epoch + 1}, step {self.step}")
        sums["seconds"] += time.perf_counter() - started

    def _diverged(self, stats, x, t, lr, steps, draw=None) -> Diverged:
        """The error for a step whose loss, gradient or update is not finite, naming the
        first node whose value went bad (`provenance`) at its layer's place in the model
        file.  Nothing is saved, so the last good checkpoint stays as it was."""
        path = self.out / CHECKPOINT if self.out is not None else None
        what = "the loss or a gradient" if not (math.isfinite(stats.loss) and finite(
            stats.grads.values())) else "the optimizer's update of a parameter"
        found = find_first_bad(self.model, self.params, self.state, x, t, self.optimizer, lr,
                               stats.grads, draw and draw.masks(self.model, len(x), x.dtype))
        at = {"epoch": self.epoch + 1, "step": self.step + 1,
              "global_step": self.epoch * steps + self.step + 1}
        span = self.model.training.graph.nodes[found["node"]].get("span") if found else None
        return Diverged(f"{what} became NaN or infinite at epoch {at['epoch']}, step "
                        f"{at['step']} (global step {at['global_step']}; loss "
                        f"{stats.loss:.6g}); replaying the step, {describe(found)}",
                        span, where=reported_at(path),
                        hint=f"lower the learning rate (it was {lr:g}); {kept(path)}",
                        record=record(self.epoch, None, None,
                                      beginning(self.epoch, self.first_batch, self.history),
                                      f"{what} became NaN or infinite",
                                      first_bad=found and {**found, **at}))

    def _finish_epoch(self, train, validation, steps):
        sums, last_rate = self.sums, learning_rate(self.cfg, self.epoch, steps - 1, steps)
        check_epoch(self.epoch, sums["loss"] / sums["seen"], sums["errors"] / sums["seen"],
                    self.first_batch, self.history, self.last_batch and self.last_batch[1],
                    self.out / CHECKPOINT if self.out is not None else None,
                    last_rate)  # before anything is saved
        val_error = evaluate(self.model, self.params, validation,
                             world=self.world)[0] if validation else None
        self.history.append({
            "epoch": self.epoch + 1, "train_loss": sums["loss"] / sums["seen"],
            "train_error": sums["errors"] / sums["seen"], "val_error": val_error,
            "seconds": sums["seconds"], "images_per_s": sums["seen"] / max(sums["seconds"], 1e-9),
            "lr": last_rate, "layers": self._layer_statistics()})
        self.epoch, self.step, self.sums = self.epoch + 1, 0, _zero_sums()
        self._save(self.rng.bit_generator.state)
        self.report(self.history[-1])
        notify(self.observers, "on_epoch", self, self.history[-1])

    def _layer_statistics(self) -> dict:
        """Per layer, on the epoch's last batch: activation mean and spread, and the
        norm of the gradient of its parameters (seed 4.2: lower layers get smaller
        gradients).  One extra forward pass per epoch; parameters are untouched."""
        if self.last_batch is None:
            return {}
        x, grads = self.last_batch
        graph = self.model.graph
        squares = {}
        for name, g in grads.items():
            layer = graph.nodes[name]["layer"]
            squares[layer] = squares.get(layer, 0.0) + float(np.sum(np.square(g, dtype=np.float64)))
        stats = {}
        for layer, y in self.model.layer_outputs(self.params, x).items():
            if layer == self.model.roles.input:
                continue
            stats[layer] = {"activation_mean": float(y.mean()), "activation_std": float(y.std()),
                            "grad_norm": math.sqrt(squares.get(layer, 0.0))}
        return stats

    def _save(self, rng_state):
        """Rank 0 writes, once every rank has finished the step."""
        self.world.barrier()
        if self.out is None or not self.world.is_root:
            return
        save_checkpoint(self.out / CHECKPOINT, self.checkpoint(rng_state))

    def checkpoint(self, rng_state) -> Checkpoint:
        """The run as it stands, as a checkpoint holds it (``rng_state``: the epoch
        generator's at the start of the epoch in progress); `snapshots` keeps these."""
        state = {f"{slot}/{name}": value for slot, arrays in self.state.items()
                 for name, value in arrays.items()}
        return Checkpoint(self.hash, self.params, state, rng_state, self.epoch, self.step,
                          {"epochs": self.history, "sums": self.sums},
                          model_text=self.model.spec.text, model_file=self.model.file,
                          preprocessing=self.preprocessing,
                          run={name: getattr(self.cfg, name) for name in RUN_FIELDS})

    def metrics(self, test_error=None, confusion=None) -> dict:
        cfg = self.cfg
        return {"model": self.model.file, "seed": cfg.seed,
                "model_hash": self.hash, "epochs": self.history, "test_error": test_error,
                "confusion": None if confusion is None else confusion.tolist(),
                "config": {"epochs": cfg.epochs, "batch": cfg.batch, "lr": cfg.lr,
                           "optimizer": [cfg.optimizer[0], cfg.optimizer[1]],
                           "schedule": schedule_record(cfg.schedule), "dtype": cfg.dtype,
                           "val": cfg.val, "shuffle": cfg.shuffle, "threads": self.workers,
                           "shards": cfg.shards, "ranks": self.world.size}}


def _zero_sums():
    return {"loss": 0.0, "errors": 0, "seen": 0, "seconds": 0.0}


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    write_text(path, json.dumps(data, indent=1) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write text atomically (`outputs.write_atomically`): never half a file, and a
    failure is an `OutputError` naming the file."""
    outputs.write_text(path, text, f"the file {Path(path).name}")
