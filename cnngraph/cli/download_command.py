"""The ``download`` command: MNIST's four files, each verified by its SHA-256 (the
work is `cnngraph.training.idx.download_mnist`).  Part of the CLI (only the CLI
prints)."""
from __future__ import annotations

from pathlib import Path

EXAMPLE = "example: python -m cnngraph download --dir ~/mnist"


def add_download(sub):
    sub.epilog = EXAMPLE
    sub.add_argument("--dir", metavar="DIR", help="where to put the files "
                     "(default ~/.cache/cnngraph/mnist)")


def cmd_download(args) -> int:
    from ..training.idx import default_cache_dir, download_mnist
    target = Path(args.dir) if args.dir else default_cache_dir()
    for path in download_mnist(target):
        print(f"ok  {path}")
    return 0
