"""The ``explore`` command: one self-contained HTML page for a run folder (the work is
`cnngraph.explore.build`).  Part of the CLI (only the CLI prints)."""
from __future__ import annotations

import time

EXAMPLE = ("example: python -m cnngraph run models/lenet5.cnn --out runs/lenet5\n"
           "         python -m cnngraph explore runs/lenet5   (writes runs/lenet5/explore.html)")


def add_explore(sub):
    sub.epilog = EXAMPLE
    sub.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a 'run'")
    sub.add_argument("-o", "--output", metavar="FILE.html",
                     help="where the page goes (default RUN_DIR/explore.html)")
    sub.add_argument("--image", type=int, default=0, metavar="K",
                     help="the test image whose maps and deltas the page shows (default 0)")
    sub.add_argument("--data", metavar="PATH",
                     help="the data set of a run without snapshots, as run's --data takes it "
                          "(default: the train block's data, then $CNNGRAPH_DATA, then the "
                          "cache); a run with snapshots reads the one it recorded")


def cmd_explore(args) -> int:
    from ..explore.build import page_size, write_page
    started = time.perf_counter()
    path = write_page(args.run_dir, args.output, image=args.image, data=args.data)
    print(f"wrote {path} ({page_size(path)}, made in {time.perf_counter() - started:.1f} s); "
          "open it in a browser: it needs no network")
    return 0
