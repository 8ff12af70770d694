"""Divergence without NaN: a learning rate that saturates the units without
overflowing leaves every number finite and the network useless.  At the end of
each epoch, training stops as diverged when

- the epoch's training loss is above RISE times the loss where the run began while
  its training error is not below BETTER times the error there, or
- every gradient entry of its last batch is below VANISHED (saturated units)
  while its training loss is above LEARNED times the loss where the run began;

where the run began (`beginning`) is its first batch for epoch 1, epoch 1 for later
epochs.  A run started from given weights (`--weights`) has no beginning in epoch 1:
a trained net's first batch may have a tenth of its epoch's loss and no error.
A healthy run, however noisy, ends no epoch with twice its starting loss unless its
error falls, and keeps some gradient; nothing is computed differently for it.  The
trainer checks before saving the epoch, so the checkpoint of the last good epoch
stays.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import CnnError

RISE, BETTER, VANISHED, LEARNED = 2.0, 0.9, 1e-30, 0.01


class Diverged(CnnError):
    """Training diverged: the loss or a gradient became NaN or infinite, or an epoch
    ended as `diverged` says.  ``record`` is what metrics.json says about it
    (`record`)."""

    def __init__(self, message, span=None, hint=None, where=None, record=None):
        super().__init__(message, span, hint=hint, where=where)
        self.record = record or {}


def diverged(loss: float, error: float, start: tuple, grads: dict) -> str | None:
    """Why an epoch with this training loss and error, a run that began at ``start``
    (`beginning`) and a last batch with these gradients diverged (see the module); None
    if it did not."""
    start_loss, start_error, where = start
    if loss > RISE * start_loss and error >= BETTER * start_error:
        return (f"its training loss, {loss:.6g}, is above {RISE:g} times {where}'s, "
                f"{start_loss:.6g}, and its training error, {100 * error:.2f} %, is not "
                f"below {BETTER:g} times {where}'s, {100 * start_error:.2f} %")
    if loss > LEARNED * start_loss and all(
            float(np.max(np.abs(g), initial=0.0)) < VANISHED for g in grads.values()):
        return (f"every gradient of its last batch is below {VANISHED:g} (saturated units) "
                f"while its training loss, {loss:.6g}, is above {LEARNED:g} times "
                f"{where}'s, {start_loss:.6g}")
    return None


def beginning(epoch: int, first_batch: tuple | None, history: list) -> tuple | None:
    """(loss, error, what) 0-based ``epoch`` is compared with: in epoch 1 those of
    the run's first batch (``first_batch``), later epoch 1's (kept in the checkpoint,
    so a resumed run decides as one never interrupted); None in an epoch 1 resumed
    midway, whose first batch is not kept, or of a run from given weights."""
    if epoch == 0:
        return None if first_batch is None else (*first_batch, "the run's first batch")
    if not history:
        return None
    return history[0]["train_loss"], history[0]["train_error"], "epoch 1"


def record(epoch: int, loss: float | None, error: float | None, began, reason: str,
           first_bad: dict | None = None) -> dict:
    """What metrics.json's ``divergence`` says: the 1-based epoch, its training loss
    and error (None when not finite), where the run began and its loss and error
    there, why, and for a NaN or an infinity the first node whose value became so
    (`provenance.find_first_bad`'s dict with its 1-based "epoch", "step" and
    "global_step"; None otherwise)."""
    began = began or (None, None, None)
    return {"epoch": epoch + 1, "train_loss": loss, "train_error": error,
            "start": began[2], "start_loss": began[0], "start_error": began[1],
            "reason": reason, "first_bad": first_bad}


def kept(checkpoint: Path | None) -> str:
    """The hint's words about the last good checkpoint."""
    if _written(checkpoint):
        return f"the last good checkpoint, {checkpoint}, is kept"
    return "no checkpoint had been written yet"


def reported_at(checkpoint: Path | None) -> str:
    """Where a divergence is reported: the checkpoint once one is written, else
    'training'."""
    return str(checkpoint) if _written(checkpoint) else "training"


def _written(checkpoint: Path | None) -> bool:
    return checkpoint is not None and checkpoint.exists()


def check_epoch(epoch: int, loss: float, error: float, first_batch: tuple | None,
                history: list, grads: dict | None, checkpoint: Path | None,
                rate: float) -> None:
    """Raise `Diverged` if 0-based ``epoch``, ending with this training loss and error
    and its last batch's ``grads``, diverged (`diverged`)."""
    began = beginning(epoch, first_batch, history)
    if began is None or grads is None:
        return
    reason = diverged(loss, error, began, grads)
    if reason is None:
        return
    raise Diverged(f"training diverged in epoch {epoch + 1}: {reason}",
                   where=reported_at(checkpoint),
                   hint=f"lower the learning rate (it was {rate:g}); {kept(checkpoint)}",
                   record=record(epoch, loss, error, began, reason))
