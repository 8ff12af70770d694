"""What the command line shows while it works: the live progress line, the
per-epoch lines, what ``run`` reports after training, the confusion table, and
Ctrl-C handling.  Part of the CLI
(only the CLI prints)."""
from __future__ import annotations

import signal
import sys

from ..core.interrupts import CtrlC


class StopFlag:
    """Ctrl-C sets a flag the trainer checks between steps (parameters are never
    left half-updated); a second Ctrl-C interrupts at once.  A Ctrl-C that came before,
    and was lost (`CtrlC`), interrupts on entry."""

    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def __enter__(self):
        if CtrlC.seen:
            raise KeyboardInterrupt
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


class Printer:
    """A live progress line on a terminal; one line per epoch always."""

    def __init__(self):
        self.live = sys.stderr.isatty()
        self.width = 0  # of the longest live line, to erase it

    def __call__(self, event):
        from ..training.loop import Progress
        if isinstance(event, Progress):
            if self.live:
                done = int(24 * event.step / event.steps)
                bar = "█" * done + "·" * (24 - done)
                line = (f"  epoch {event.epoch}/{event.epochs} {bar} {event.step}/{event.steps}"
                        f"  loss {event.loss:.4f}  {event.images_per_s:,.0f} images/s"
                        f"  ETA {duration(event.eta_s)}   ")
                self.width = max(self.width, len(line))
                print("\r" + line, end="", file=sys.stderr, flush=True)
            return
        if self.live:
            print("\r" + " " * self.width + "\r", end="", file=sys.stderr)
        val = "" if event["val_error"] is None else f"  val error {100 * event['val_error']:.2f}%"
        print(f"epoch {event['epoch']:>3}  loss {event['train_loss']:.4f}  train error "
              f"{100 * event['train_error']:.2f}%{val}  {event['seconds']:.1f}s  "
              f"{event['images_per_s']:,.0f} images/s", flush=True)


class RunPrinter:
    """What ``run`` shows, from `run_experiment`'s events: MNIST being fetched on
    first use (on stderr, even with ``quiet``), the training line, the epochs
    (through `Printer`), the test result, learned connections, the pictures.
    With ``quiet``, only the test error.  Last, where the TensorBoard logs are
    (``tensorboard``: their folder, if any) and the command that makes the page."""

    def __init__(self, model: str, quiet: bool = False, tensorboard=None):
        self.model, self.quiet, self.tensorboard = model, quiet, tensorboard
        self.epochs = None if quiet else Printer()
        self.out = None  # the run folder, known once the test set is evaluated

    def __call__(self, event):
        from ..tools.experiment import (ConnectionsExported, Evaluated, FetchingData,
                                        PicturesWritten, Started)
        if isinstance(event, FetchingData):
            print(event.line, file=sys.stderr, flush=True)
        elif isinstance(event, Evaluated):
            self.out = event.metrics.parent
            print(f"test error {100 * event.error:.2f}% on {event.images} images")
            if not self.quiet:
                print(format_confusion(event.confusion))
                print(f"wrote {event.metrics} and {event.checkpoint}")
        elif self.quiet:
            return
        elif isinstance(event, Started):
            cfg = event.config
            print(f"training {self.model}: {event.images} images, {cfg.epochs} epochs, batch "
                  f"{cfg.batch}, {cfg.optimizer[0]}, lr {cfg.lr:g}, {cfg.dtype}, seed {cfg.seed}"
                  + (f", validation {event.validation}" if event.validation else ""),
                  flush=True)
        elif isinstance(event, ConnectionsExported):
            for name, layer in event.found.items():
                print(f"{name}: on average {layer['mean_inputs_for_90_percent']:.2f} input maps "
                      f"carry 90 % of an output map's alpha; as a table (strength >= "
                      f"{event.threshold}):")
                print(layer["table"], end="")
            if event.no_matplotlib:
                print("matplotlib is not installed: no alpha.png (pip install 'cnngraph[plots]')")
        elif isinstance(event, PicturesWritten):
            if event.paths:
                print("pictures: " + ", ".join(str(p) for p in event.paths))
            print(where_to_look(self.out, self.tensorboard))
        else:
            self.epochs(event)


def where_to_look(out, tensorboard=None) -> str:
    """The lines saying where a run's TensorBoard logs are and how to make its page."""
    lines = [f"TensorBoard logs: {tensorboard} (view: tensorboard --logdir {tensorboard})"] \
        if tensorboard else []
    return "\n".join(lines + [f"explore: python -m cnngraph explore {out}"])


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds}s"


def format_confusion(confusion) -> str:
    n = len(confusion)
    lines = ["confusion (rows: true class, columns: predicted)",
             "      " + "".join(f"{j:>6}" for j in range(n))]
    lines += [f"{i:>6}" + "".join(f"{v:>6}" for v in row) for i, row in enumerate(confusion)]
    return "\n".join(lines)
