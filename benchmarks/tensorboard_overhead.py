"""What TensorBoard logging costs: epoch time with and without a `TensorBoardLogger`
at a cadence, repetitions interleaved in one process (so drift of a shared machine
falls on both alike), BLAS on one thread as `run` trains.

    python benchmarks/tensorboard_overhead.py --model models/lenet5.cnn --images 4000

Prints the machine, each repetition's epoch seconds, the medians (and the fastest)
and the overhead; the time spent in the logger's own hooks, which a busy shared
machine does not blur as it blurs the difference of two epoch times; and the cost
of one log (vital signs, histograms), from which the overhead of any other cadence
follows: cost of a log / (every x seconds a step).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from cnngraph.compiler.program import compile_model
from cnngraph.tools.experiment import read_splits
from cnngraph.tools.machine import format_machine, machine_facts
from cnngraph.tools.tensorboard import DEFAULT_EVERY, TensorBoardLogger
from cnngraph.training.loop import Trainer


class Timed(TensorBoardLogger):
    """The logger, timing its own hooks: ``seconds`` in all of them, ``log_seconds``
    of each on_step that writes a log."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds, self.log_seconds = 0.0, []

    def _timed(self, hook, *args) -> float:
        started = time.perf_counter()
        hook(*args)
        spent = time.perf_counter() - started
        self.seconds += spent
        return spent

    def on_start(self, trainer, steps):
        self._timed(super().on_start, trainer, steps)

    def on_step(self, trainer, event):
        spent = self._timed(super().on_step, trainer, event)
        if event.global_step % self.every == 0 or event.global_step == 1:
            self.log_seconds.append(spent)

    def on_epoch(self, trainer, record):
        self._timed(super().on_epoch, trainer, record)


def epoch_seconds(model, cfg, train, observers) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds, every thread's) of one epoch."""
    trainer = Trainer(model, cfg, None, observers=observers)
    trainer.start()
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(train)
    return time.perf_counter() - wall, time.process_time() - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/lenet5.cnn")
    parser.add_argument("--images", type=int, default=4000, help="training images an epoch")
    parser.add_argument("--every", type=int, default=DEFAULT_EVERY, help="steps between logs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--data", help="MNIST folder (default: as run finds it)")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits
    model = compile_model(args.model, backend=args.backend)
    cfg = model.settings.train.replace(epochs=1, val=0)
    train, _, _ = read_splits(model, cfg, args.data, args.images, 1)
    with threadpool_limits(1, user_api="blas"):
        print(format_machine(machine_facts()))
        steps = -(-len(train) // cfg.batch)
        print(f"{args.model} ({model.backend.name} backend), {len(train)} images, batch "
              f"{cfg.batch}: {steps} steps an epoch, a log every {args.every} steps")
        epoch_seconds(model, cfg, train, [])  # warm up: compiled kernels, allocator
        times, cpu = {"without": [], "with": []}, {"without": [], "with": []}
        costs, own = [], []
        with tempfile.TemporaryDirectory() as folder:
            for k in range(args.repeats):
                for mode in (("without", "with") if k % 2 == 0 else ("with", "without")):
                    logger = Timed(f"{folder}/{k}", model, every=args.every)
                    seconds = epoch_seconds(model, cfg, train, [logger] if mode == "with"
                                            else [])
                    times[mode].append(seconds[0])
                    cpu[mode].append(seconds[1])
                    if mode == "with":  # fit() ends before on_end, which closes the file
                        logger.writer.close()
                        costs += logger.log_seconds
                        own.append(logger.seconds)
                print(f"repeat {k + 1}: without {times['without'][-1]:.3f} s, with "
                      f"{times['with'][-1]:.3f} s, in the logger {own[-1]:.3f} s (CPU: "
                      f"without {cpu['without'][-1]:.3f} s, with {cpu['with'][-1]:.3f} s)",
                      flush=True)
    for clock, values in (("wall", times), ("CPU", cpu)):
        for what, pick in (("median", statistics.median), ("fastest", min)):
            without, with_ = pick(values["without"]), pick(values["with"])
            print(f"{what} epoch, {clock} time: without {without:.3f} s, with {with_:.3f} s:"
                  f" overhead {100 * (with_ / without - 1):+.2f} %")
    without = statistics.median(times["without"])
    print(f"time in the logger's hooks: median {statistics.median(own):.3f} s an epoch, "
          f"{100 * statistics.median(own) / without:.2f} % of the median epoch without")
    step, cost = without / steps, statistics.median(costs)
    print(f"one log: {1000 * cost:.1f} ms (median of {len(costs)}), a step {1000 * step:.2f} ms:"
          f" a log every {args.every} steps costs {100 * cost / (args.every * step):.2f} % of "
          f"the steps' time")


if __name__ == "__main__":
    main()
