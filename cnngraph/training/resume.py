"""What a resume must hold to continue a run bitwise, beyond a readable checkpoint
(`checkpoint.load_checkpoint` checks each field on its own): parameters of the run's
dtype, exactly its optimizer's state, an epoch within the run's, and a step that is
one of the run's epoch for its data and batch.  Anything else would be another run
that looks like a continued one, so each is an error naming the checkpoint.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import CheckpointError


def check_resumable(ckpt, model, cfg, optimizer, path: str) -> None:
    """Refuse ``ckpt`` (a `Checkpoint`) if the run ``cfg`` of ``model`` with
    ``optimizer`` (`step.Optimizer`) cannot continue it bitwise: parameters of another
    dtype, another optimizer's state or not all of this one's (missing arrays would
    restart at zero), or an epoch past the run's last."""
    dtypes = sorted({str(a.dtype) for a in ckpt.params.values()})
    dtype = np.dtype(cfg.dtype).name
    if dtypes != [dtype]:
        raise CheckpointError(f"the checkpoint's parameters are {', '.join(dtypes)}, this run "
                              f"trains in {dtype}", where=path,
                              hint=f"resume with --dtype {dtypes[0]}, as the run started")
    named = optimizer_name(cfg.optimizer)
    counts = set(optimizer.rule.counts)
    slots = set(optimizer.rule.slots(optimizer.args)) | counts
    foreign = sorted({key.partition("/")[0] for key in ckpt.optimizer} - slots)
    if foreign:
        raise CheckpointError(f"the checkpoint holds optimizer state '{foreign[0]}', which "
                              f"{named} does not keep: another optimizer wrote it", where=path,
                              hint="resume with the optimizer the run was started with")
    if ckpt.step == 0 and optimizer.rule.curvature:
        slots.discard("curvature")  # estimated anew at each epoch's start
    missing = sorted(f"{slot}/{name}" for slot in slots for name in model.param_shapes
                     if f"{slot}/{name}" not in ckpt.optimizer)
    if missing:
        raise CheckpointError(f"the checkpoint lacks {len(missing)} optimizer array(s) that "
                              f"{named} keeps ({', '.join(missing[:3])}"
                              f"{', ...' if len(missing) > 3 else ''}): restarted at zero, the "
                              "run would not go on as it was", where=path,
                              hint="resume with the optimizer the run was started with")
    for key, value in ckpt.optimizer.items():
        if (key.partition("/")[0] in counts) != (value.shape == () and value.dtype.kind in "iu"):
            raise CheckpointError(f"optimizer array '{key}' of shape {value.shape} and dtype "
                                  f"{value.dtype} is not what {named} keeps there (a count "
                                  "is one whole number, other state as large as its "
                                  "parameter)", where=path)
    last = ckpt.epoch + (ckpt.step > 0)  # the epochs done, and the one in progress
    if last > cfg.epochs:
        doing = f" and {ckpt.step} steps of the next" if ckpt.step else ""
        raise CheckpointError(f"the checkpoint has {ckpt.epoch} epoch(s) done{doing} ('epoch', "
                              f"'step'), more than this run's {cfg.epochs}", where=path,
                              hint=f"resume with --epochs {last} or more")


def check_step(epoch: int, step: int, seen: int, images: int, batch: int, path: str) -> None:
    """A resumed ``step`` of 0-based ``epoch``, after ``seen`` images, must be one of
    this run's epoch: ``images`` in batches of ``batch``, each step a whole batch."""
    steps = -(-images // batch)
    if step < steps and seen == step * batch:
        return
    raise CheckpointError(f"the checkpoint's 'step' {step} of epoch {epoch + 1} came after "
                          f"{seen} images; this run's epoch is {images} images in {steps} "
                          f"batches of {batch}, where that step cannot be", where=path,
                          hint="resume with the batch and training data (--limit-train) the "
                               "run was started with")


def optimizer_name(optimizer: tuple) -> str:
    """A train block's ``optimizer`` as written: sgd(momentum=0.9, nesterov=true)."""
    name, args = optimizer
    written = (f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in args.items())
    return f"{name}({', '.join(written)})"
