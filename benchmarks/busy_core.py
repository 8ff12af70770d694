"""Training speed on one thread, on all cores and with --threads auto, on an idle
machine and with another process holding one core (a busy loop pinned there).

    python benchmarks/busy_core.py --model models/dlt.cnn --batch 10 50 256

Each setting runs in a fresh process (`python -m cnngraph bench --json`), so numba's
thread pool starts clean; the busy loop is `taskset -c 0` on a Python `while True`.
Auto should be near the faster of the other two in each case: both cores when
idle, and never below one thread when a core is taken (where two threads
collapse).  Prints the machine, then images/s per batch and the threads auto chose.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time

from cnngraph.tools.machine import format_machine, machine_facts


def bench(model, batches, dtype, threads, seconds, backend):
    out = subprocess.run(
        [sys.executable, "-m", "cnngraph", "bench", model, "--batch", *map(str, batches),
         "--dtype", dtype, "--threads", str(threads), "--seconds", str(seconds),
         "--backend", backend, "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["results"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/dlt.cnn")
    parser.add_argument("--batch", type=int, nargs="+", default=[10, 50, 256])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    if shutil.which("taskset") is None:
        sys.exit("taskset (util-linux) is needed to pin the busy loop")
    print(format_machine(machine_facts()))
    print(f"{args.model}, {args.dtype}, training images/s (threads auto chose)")
    print(f"{'core 0':<8}{'batch':>6}{'1 thread':>12}{'2 threads':>12}{'auto':>12}{'chose':>7}")
    for busy in (False, True):
        loop = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c",
                                 "while True: pass"]) if busy else None
        try:
            time.sleep(0.5 if busy else 0)
            rows = {threads: bench(args.model, args.batch, args.dtype, threads, args.seconds,
                                   args.backend) for threads in (1, 2, "auto")}
        finally:
            if loop is not None:
                loop.kill()
        for k, batch in enumerate(args.batch):
            rates = [rows[n][k]["train_images_per_s"] for n in (1, 2, "auto")]
            print(f"{'busy' if busy else 'idle':<8}{batch:>6}" +
                  "".join(f"{r:>12,.0f}" for r in rates) +
                  f"{rows['auto'][k]['train_threads']:>7}", flush=True)


if __name__ == "__main__":
    main()
