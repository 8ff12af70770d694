"""The ``download`` command: MNIST's four files, each verified by its SHA-256 (the
work is `cnngraph.training.idx.download_mnist`).  Part of the CLI (only the CLI
prints)."""
from __future__ import annotations

EXAMPLE = "example: python -m cnngraph download --dir ~/mnist"


def add_download(sub):
    sub.epilog = EXAMPLE
    sub.add_argument("--dir", metavar="DIR", help="where to put the files "
                     "(default ~/.cache/cnngraph/mnist)")


def cmd_download(args) -> int:
    from ..core.outputs import check_output_dir, writing
    from ..training.idx import default_cache_dir, download_mnist
    target = check_output_dir(default_cache_dir() if args.dir is None else args.dir, "--dir")
    with writing(target, "the MNIST files"):
        paths = download_mnist(target)
    for path in paths:
        print(f"ok  {path}")
    return 0
