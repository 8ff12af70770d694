"""What a training run tells its observers (TensorBoard logs, explorer snapshots):
the hooks `Trainer` calls, and the record of one step.

    class Printer:
        def on_step(self, trainer, event): print(event.global_step, event.loss)
    Trainer(model, cfg, observers=[Printer()])

An observer defines any of ``on_start(trainer, steps)`` (parameters ready, before the
first step; ``steps`` per epoch), ``on_step(trainer, event)`` (a step's update was
accepted), ``on_epoch(trainer, record)`` (an epoch's history record, after its
checkpoint) and ``on_end(trainer, metrics)`` (the test set was evaluated; the
metrics.json dict).  Every rank calls them; an observer that writes files asks
``trainer.world.is_root``.  Observers read what they are given and change nothing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepEvent:
    """One accepted training step: the batch as trained (distorted where the model
    augments), the parameters before and after the update, and the batch's gradients."""
    epoch: int             # 0-based
    step: int              # steps done in this epoch, this one included (1..steps)
    steps: int             # steps per epoch
    x: object              # the batch's images, as the step saw them
    t: object              # its targets
    params_before: dict
    params: dict           # after the update
    grads: dict            # the batch's mean gradients, by parameter
    loss: float            # the batch's mean loss
    errors: int
    lr: float
    epoch_state: dict      # the generator's state at the start of this epoch

    @property
    def global_step(self) -> int:
        """Steps done since training began: epoch * steps + step."""
        return self.epoch * self.steps + self.step


def notify(observers, hook: str, *args) -> None:
    """Call ``hook`` on each observer that defines it, in order."""
    for observer in observers:
        method = getattr(observer, hook, None)
        if method is not None:
            method(*args)
