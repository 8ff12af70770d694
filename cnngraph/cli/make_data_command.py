"""The ``make-data`` command: a synthetic data set the project makes itself, written
as an .npz that ``--data`` reads (the work is `cnngraph.training.synthetic`).  Part
of the CLI (only the CLI prints)."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import UsageError

EXAMPLE = ("example: python -m cnngraph make-data shapes3d examples/shapes3d.npz\n"
           "         python -m cnngraph run examples/shapes3d.cnn")
#: The data sets it makes (`synthetic.SETS`): name -> what it is.
SETS = {"shapes3d": "a ball, cube, cylinder, torus or cross in each 16x16x16 volume "
                    "(5 classes, one map)"}
MOST = 200_000


def add_make_data(sub):
    sub.epilog = EXAMPLE
    sub.add_argument("name", choices=sorted(SETS), help="; ".join(
        f"{name}: {what}" for name, what in SETS.items()))
    sub.add_argument("file", metavar="FILE", help="the .npz to write (a folder: "
                     "FOLDER/NAME.npz)")
    sub.add_argument("--train", type=int, default=3000, metavar="N",
                     help="training volumes (default 3000)")
    sub.add_argument("--test", type=int, default=500, metavar="N",
                     help="test volumes (default 500)")
    sub.add_argument("--seed", type=int, default=0, help="everything is drawn from it "
                     "(default 0); the test volumes do not depend on --train")


def cmd_make_data(args) -> int:
    from ..core.outputs import check_output_file
    from ..training.synthetic import write_shapes3d
    for flag in ("train", "test"):
        if not 1 <= getattr(args, flag) <= MOST:
            raise UsageError(f"--{flag} {getattr(args, flag)}: from 1 to {MOST} volumes "
                             f"(each is 4 kB)", where=f"--{flag}")
    if args.seed < 0:
        raise UsageError(f"--seed {args.seed}: seeds are 0 or more", where="--seed")
    path = Path(args.file).expanduser()
    if path.is_dir():
        path = path / f"{args.name}.npz"
    elif path.suffix.lower() != ".npz":
        raise UsageError(f"{args.file}: the data set is an .npz file", where="FILE",
                         hint=f"name it {path.name}.npz")
    path = check_output_file(path, "FILE")
    write_shapes3d(path, args.train, args.test, args.seed)
    print(f"{path}: {args.train} training and {args.test} test volumes of {SETS[args.name]}; "
          f"train on it with --data {path} (or data = \"...\" in the train block)")
    return 0
