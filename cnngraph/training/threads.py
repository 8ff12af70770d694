"""How many threads a backend with its own threads should use: ``--threads auto``.

Both cores help when they are idle (dlt.cnn at batch 50, float32: 25 500 images/s
on one thread, 36 700 on two), but when another process holds one of them, the
kernels' OpenMP threads wait for a thread that the scheduler rarely runs: two
threads then trained at 764 images/s against 25 500 on one (a busy loop pinned on
one core; measured for commit 782575c, benchmarks/busy_core.py reruns it).
Nothing in /proc tells in advance which case holds, so `AutoThreads` measures:
it tries one thread and all of them on the first steps, runs the faster, and
now and then tries the other again, each time twice as rarely while it keeps
losing.  The backend's bits do not depend on its thread
count (runtime/numba_conv.py), so switching never changes what is computed.
"""
from __future__ import annotations

import time
from typing import Callable

from ..core.backend import usable_cores
from .step import WHOLE_BATCH, StepStats, batch_gradients, thread_split

#: a trial of the other thread count runs up to TRIAL steps and wins when they took,
#: per image, under MARGIN of the current count's recent steps
TRIAL, MARGIN = 8, 0.95
#: a lost trial's extra time may be at most BUDGET of the time until the next one
#: (a step on a collapsing count costs about 60), which waits at least TRIAL_WAIT seconds
BUDGET, TRIAL_WAIT = 0.02, 0.5


def threads_for(model, workers: int | str, inner=None):
    """How one process runs a batch on ``workers`` threads ("auto": `AutoThreads`):
    in the kernels, for a backend that runs its own (`Backend.set_threads`), else by
    splitting the batch (auto: one thread).  ``inner``: the reduction to run the
    threads in (default: the whole batch, or its split)."""
    backend = model.backend
    if backend.set_threads is None:
        return inner or thread_split(1 if workers == "auto" else workers)
    if workers == "auto":
        return AutoThreads(backend, inner=inner or WHOLE_BATCH)
    backend.set_threads(workers)
    return inner or WHOLE_BATCH


def forward_threads(model, workers: int | str) -> "AutoThreads | None":
    """For forward passes (`loop.evaluate`'s ``run=chooser.run``): an `AutoThreads` that
    picks their threads (auto), or None once a fixed count is set (or the backend has
    no threads)."""
    if model.backend.set_threads is None:
        return None
    if workers == "auto":
        return AutoThreads(model.backend)
    model.backend.set_threads(workers)
    return None


class AutoThreads:
    """A batch reduction (wrapping ``inner``) that picks 1 or ``most`` threads for
    ``backend`` by timing the steps it runs.  It starts on one thread; after a step that
    compiles and a step that measures, it tries the other count for up to TRIAL steps,
    stopping as soon as that count can no longer win (a step on a collapsing count
    costs about 60); a win makes it the choice.  Trials come again when a lost one's
    extra time is at most BUDGET of the time since."""

    def __init__(self, backend, most: int | None = None, inner=WHOLE_BATCH,
                 clock: Callable[[], float] = time.perf_counter):
        self.backend, self.inner, self.clock = backend, inner, clock
        self.choices = sorted({1, most or usable_cores()})
        self.current = 1
        self.recent: float | None = None  # the current count's seconds per image
        self.steps, self.trial = 0, []     # the trial's seconds per image so far
        self.trial_at = 0.0

    def other(self) -> int:
        return next((n for n in self.choices if n != self.current), self.current)

    def threads(self) -> int:
        """The thread count for the next step."""
        if self.trial or (self.steps >= 2 and self.clock() >= self.trial_at):
            return self.other()
        return self.current

    def __call__(self, model, params, x, t, draw=None) -> StepStats:
        return self.run(lambda: batch_gradients(model, params, x, t, self.inner, draw), len(x))

    def run(self, work: Callable, images: int):
        """work() on the thread count `threads` picks, timed per image; the chosen count
        stays set afterwards (for the evaluations between steps)."""
        threads = self.threads()
        self.backend.set_threads(threads)
        started = self.clock()
        result = work()
        self._record(threads, (self.clock() - started) / max(1, images), images)
        self.backend.set_threads(self.current)
        return result

    def _record(self, threads: int, per_image: float, images: int) -> None:
        self.steps += 1
        if self.steps == 1:  # the first step loads and compiles: it measures nothing
            return
        if threads == self.current:
            self.recent = per_image if self.recent is None else 0.5 * (self.recent + per_image)
            return
        self.trial.append(per_image)
        spent, bar = sum(self.trial), MARGIN * self.recent * TRIAL
        if spent > bar:  # lost: it can no longer come in under the bar
            extra = (spent - self.recent * len(self.trial)) * images
            self.trial_at = self.clock() + max(TRIAL_WAIT, extra / BUDGET)
            self.trial = []
        elif len(self.trial) == TRIAL:  # won
            self.current, self.recent = threads, spent / TRIAL
            self.trial_at = self.clock() + TRIAL_WAIT
            self.trial = []
