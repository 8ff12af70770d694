"""Every checkpoint field is checked on load, and a resume that could not go on bitwise is
refused (issue 21, item 2).  A table: each row mutates a real checkpoint of a tiny run
(finished after one epoch, or stopped after 3 of its 8 steps) and names the field the
message must name; each runs in-process through ``cnngraph.cli.main.main``, in
``run --resume`` and, where they read the field, ``eval`` and ``export``, and must
exit 2 naming the file and field, with no traceback.  No MNIST needed.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from cnngraph.cli.main import main
from cnngraph.compiler.program import compile_model
from cnngraph.tools.experiment import run_experiment
from cnngraph.training.loop import CHECKPOINT, Interrupted

TINY = """\
input x : 1 x 6 x 6
full H <- x : units=8, activation=lecun_tanh
full out <- H : units=3
loss L <- out : function=softmax_cross_entropy
train {
  epochs = 2
  batch = 8
  lr = 0.1
  optimizer = sgd(momentum=0.9)
  seed = 0
}
"""


@dataclass(frozen=True)
class Base:
    """The tiny model, its data (64 training images: 8 steps of 8) and three runs:
    ``done`` after epoch 1, ``stopped`` after 3 steps of epoch 1, ``whole`` the
    uninterrupted 2 epochs."""
    dir: Path

    @property
    def model(self) -> Path:
        return self.dir / "tiny.cnn"

    @property
    def data(self) -> Path:
        return self.dir / "data.npz"

    def argv(self, command: str, out: Path, *more: str) -> list[str]:
        flags = ["--data", str(self.data), "--backend", "numpy"]
        if command == "run":
            return ["run", str(self.model), *flags, "--threads", "1", "--no-plots",
                    "--quiet", "--out", str(out), *more]
        if command == "eval":
            return ["eval", "--checkpoint", str(out / CHECKPOINT), *flags, *more]
        return ["export", "--checkpoint", str(out / CHECKPOINT), "-o",
                str(out / "tiny.onnx"), "--data", str(self.data), *more]


def images(n: int, seed: int):
    """Seeded 6x6 noise, brighter in rows 2k and 2k+1 for class k: a run learns them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    x = rng.integers(0, 100, size=(n, 6, 6))
    for k in range(3):
        x[labels == k, 2 * k:2 * k + 2] += 150
    return x.astype(np.uint8), labels.astype(np.int64)


def run_main(argv: list[str]) -> tuple[int | None, str]:
    """(exit status, or None when an exception escaped; everything printed)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            return main(argv), out.getvalue()
        except BaseException:  # noqa: BLE001 - an escaping exception is the failure
            return None, out.getvalue() + traceback.format_exc()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    base = Base(tmp_path_factory.mktemp("fields"))
    base.model.write_text(TINY)
    (x_train, y_train), (x_test, y_test) = images(64, 0), images(32, 1)
    np.savez(base.data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    for name, more in (("done", ["--epochs", "1"]), ("whole", [])):
        code, text = run_main(base.argv("run", base.dir / name, *more))
        assert code == 0, text
    calls = iter(range(10 ** 6))
    with pytest.raises(Interrupted):
        run_experiment(compile_model(base.model, backend="numpy"), out=base.dir / "stopped",
                       data=base.data, plots=False, should_stop=lambda: next(calls) >= 2)
    return base


def read(path: Path) -> tuple[dict, dict]:
    """(header, arrays other than the header) of a checkpoint."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    return json.loads(arrays.pop("header").tobytes()), arrays


def write(path: Path, header: dict, arrays: dict) -> None:
    header["arrays"] = sorted(arrays)
    np.savez(path, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)


def at(header: dict, field: str, value) -> None:
    """Set a header field by its path ('rng_state.state.inc'); ... deletes it."""
    *path, last = [int(key) if key.isdigit() else key for key in field.split(".")]
    for key in path:
        header = header[key]
    if value is ...:
        del header[last]
    else:
        header[last] = value


def setting(field: str, value) -> Callable:
    return lambda header, arrays: at(header, field, value)


def arrays_(change: Callable) -> Callable:
    return lambda header, arrays: change(arrays)


def rename(old: str, new: str) -> Callable:
    return arrays_(lambda arrays: arrays.__setitem__(new, arrays.pop(old)))


def drop(prefix: str) -> Callable:
    return arrays_(lambda arrays: [arrays.pop(k) for k in list(arrays) if k.startswith(prefix)])


def poison(name: str, value: float) -> Callable:
    def change(arrays):
        arrays[name] = arrays[name].copy()
        arrays[name].flat[0] = value
    return arrays_(change)


def reshape(name: str) -> Callable:
    return arrays_(lambda arrays: arrays.__setitem__(name, arrays[name][:-1]))


def retype(prefix: str, dtype) -> Callable:
    return arrays_(lambda arrays: arrays.update(
        {k: v.astype(dtype) for k, v in arrays.items() if k.startswith(prefix)}))


MT19937 = {"bit_generator": "MT19937", "state": {"key": [0] * 624, "pos": 624}}

#: (id, the run it mutates, the mutation, the extra run flags, what the message must name,
#: the commands that read the field besides run --resume)
ROWS = [
    # the generator's state, by PCG64's schema
    ("rng-negative", "done", setting("rng_state.state.state", -1), [],
     "'rng_state.state.state'", ()),
    ("rng-string", "done", setting("rng_state.state.state", "12"), [],
     "'rng_state.state.state'", ()),
    ("rng-2**200", "done", setting("rng_state.state.state", 2 ** 200), [],
     "'rng_state.state.state'", ()),
    ("rng-1.5", "done", setting("rng_state.state.state", 1.5), [],
     "'rng_state.state.state'", ("eval",)),
    ("rng-inc-even", "done", setting("rng_state.state.inc", 2), [], "'rng_state.state.inc'", ()),
    ("rng-missing", "done", setting("rng_state", ...), [], "'rng_state'", ()),
    ("rng-inner-missing", "done", setting("rng_state.state", ...), [], "'rng_state'", ()),
    ("rng-mt19937", "done", setting("rng_state", MT19937), [], "'rng_state.bit_generator'", ()),
    ("rng-has-uint32-string", "done", setting("rng_state.has_uint32", "1"), [],
     "'rng_state.has_uint32'", ()),
    ("rng-has-uint32-2", "done", setting("rng_state.has_uint32", 2), [],
     "'rng_state.has_uint32'", ()),
    ("rng-uinteger-2**32", "done", setting("rng_state.uinteger", 2 ** 32), [],
     "'rng_state.uinteger'", ()),
    # where the run is: within its epochs, steps within the epoch of its data and batch
    ("epoch-negative", "done", setting("epoch", -3), [], "'epoch'", ()),
    ("epoch-1e9", "done", setting("epoch", 10 ** 9), [], "'epoch'", ()),
    ("epoch-true", "done", setting("epoch", True), [], "'epoch'", ()),
    ("epoch-0-step-1", "done",
     lambda header, arrays: header.update(epoch=0, step=1), [], "'epoch'", ()),
    ("epoch-past-the-run", "whole", lambda header, arrays: None, ["--epochs", "1"],
     "'epoch'", ()),
    ("step-negative", "stopped", setting("step", -1), [], "'step'", ()),
    ("step-huge", "stopped", setting("step", 10 ** 12), [], "'step'", ()),
    ("step-huge-at-epoch-start", "done", setting("step", 10 ** 12), [], "'step'", ()),
    ("step-other-batch", "stopped", setting("run.batch", ...), ["--batch", "16"], "'step'",
     ()),  # a checkpoint from before the batch was recorded
    ("run-other-batch", "stopped", lambda header, arrays: None, ["--batch", "16"],
     "'run.batch'", ()),
    ("run-other-seed", "done", lambda header, arrays: None, ["--seed", "9"], "'run.seed'", ()),
    ("run-other-lr", "done", lambda header, arrays: None, ["--lr", "0.5"], "'run.lr'", ()),
    ("run-lr-zero", "done", setting("run.lr", 0), [], "'run.lr'", ()),
    ("run-lr-text", "done", setting("run.lr", "0.1"), [], "'run.lr'", ()),
    ("step-past-less-data", "stopped", lambda header, arrays: None, ["--limit-train", "16"],
     "'step'", ()),
    # meta: the history of done epochs and the sums of the one in progress
    ("meta-empty", "done", setting("meta", {}), [], "'meta.epochs'", ()),
    ("meta-not-an-object", "done", setting("meta", [1]), [], "'meta'", ()),
    ("meta-sums-missing", "done", setting("meta.sums", ...), [], "'meta.sums'", ()),
    ("meta-sums-partial", "stopped", setting("meta.sums.seen", ...), [], "'meta.sums'", ()),
    ("meta-seen-negative", "stopped", setting("meta.sums.seen", -8), [],
     "'meta.sums.seen'", ()),
    ("meta-epoch-entry-empty", "done", setting("meta.epochs", [{}]), [],
     "'meta.epochs[0]'", ()),
    ("meta-train-loss-string", "done", setting("meta.epochs.0.train_loss", "x"), [],
     "'meta.epochs[0].train_loss'", ()),
    # the arrays: optimizer state complete, of its parameters' shapes, everything finite
    ("optim-key-without-slash", "stopped", rename("optim/velocity/H.bias", "optim/H.bias"), [],
     "'optim/H.bias'", ()),
    ("optim-of-no-parameter", "stopped",
     rename("optim/velocity/H.bias", "optim/velocity/G.bias"), [], "'optim/velocity/G.bias'",
     ()),
    ("optim-wrong-shape", "stopped", reshape("optim/velocity/H.weight"), [],
     "'velocity/H.weight'", ()),
    ("optim-other-dtype", "stopped", retype("optim/velocity/H.bias", np.float64), [],
     "'velocity/H.bias'", ()),
    ("optim-missing", "stopped", drop("optim/"), [], "velocity/H.bias", ()),
    ("optim-one-missing", "done", drop("optim/velocity/out.weight"), [],
     "velocity/out.weight", ()),
    ("optim-foreign-slot", "done", rename("optim/velocity/H.bias", "optim/adam/H.bias"), [],
     "'adam'", ()),
    ("optim-nan", "stopped", poison("optim/velocity/H.weight", np.nan), [],
     "'velocity/H.weight'", ()),
    ("optim-inf", "done", poison("optim/velocity/out.bias", np.inf), [],
     "'velocity/out.bias'", ()),
    ("array-of-no-kind", "done", rename("param/H.bias", "H.bias"), [], "'H.bias'", ("eval",)),
    ("param-nan", "done", poison("param/H.weight", np.nan), [], "'H.weight'", ("eval", "export")),
    ("param-other-dtype", "done", retype("", np.float64), [], "float64", ()),
]


def tampered(base: Base, tmp_path: Path, run: str, change: Callable) -> Path:
    out = tmp_path / "out"
    shutil.copytree(base.dir / run, out)
    header, arrays = read(out / CHECKPOINT)
    change(header, arrays)
    write(out / CHECKPOINT, header, arrays)
    return out


@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_a_wrong_field_is_refused_naming_the_file_and_field(row, base, tmp_path):
    _, run, change, flags, field, readers = row
    out = tampered(base, tmp_path, run, change)
    before = (out / CHECKPOINT).read_bytes()
    for command in ("run", *readers):
        more = ["--resume", *flags] if command == "run" else []
        code, text = run_main(base.argv(command, out, *more))
        assert "Traceback" not in text and code == 2, f"{command}: exit {code}\n{text}"
        assert str(out / CHECKPOINT) in text and field in text, f"{command}:\n{text}"
    assert (out / CHECKPOINT).read_bytes() == before  # a refused resume writes nothing


def test_the_untampered_checkpoints_resume_bitwise(base, tmp_path):
    """The control: read and written back unchanged, both checkpoints resume to the
    uninterrupted run's parameters and optimizer state, bit for bit."""
    _, want = read(base.dir / "whole" / CHECKPOINT)
    for run in ("done", "stopped"):
        out = tampered(base, tmp_path / run, run, lambda header, arrays: None)
        code, text = run_main(base.argv("run", out, "--resume"))
        assert code == 0, text
        _, got = read(out / CHECKPOINT)
        assert sorted(got) == sorted(want)
        assert all(np.array_equal(got[k], want[k]) for k in want), run
