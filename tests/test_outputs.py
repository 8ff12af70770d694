"""Where commands write (issue 21 items 1 and 6): places checked before any work,
operating-system failures while writing (injected: the tests run as root, where
chmod stops nothing) turned into one message naming the path, exit 2, nothing
half-written and no temporary file left; stdout that cannot be written; Ctrl-C
at any moment; long source lines cut around the caret.
"""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, default_sigint

from cnngraph.cli.main import main
from cnngraph.core import outputs
from cnngraph.core.errors import OutputError, ParseError, Span, format_error

TINY = """\
input x : 1 x 12 x 12
conv C1 <- x : maps=2, kernel=5, activation=lecun_tanh
full out <- C1 : units=10
loss L <- out : function=softmax_cross_entropy
train {
  batch = 8
  lr = 0.05
  optimizer = sgd(momentum=0.9)
  seed = 1
}
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny model, a tiny data set, and one run of it (one epoch)."""
    root = tmp_path_factory.mktemp("outputs")
    (root / "tiny.cnn").write_text(TINY)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(48, 12, 12), dtype=np.uint8)
    labels = rng.integers(0, 10, size=48)
    np.savez(root / "data.npz", x_train=images[:32], y_train=labels[:32],
             x_test=images[32:], y_test=labels[32:])
    assert main(run_argv(root, root / "run1")) == 0
    return root


def run_argv(base: Path, out, *more) -> list[str]:
    return ["run", str(base / "tiny.cnn"), "--data", str(base / "data.npz"), "--backend",
            "numpy", "--threads", "1", "--no-plots", "--quiet", "--out", str(out), *more]


def refused(capsys, argv, where: str, cause: str) -> str:
    """Run ``argv``: exit 2 with one message that starts with ``where: error:`` and
    says ``cause``; no traceback."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{where}: error: "), err
    assert cause in err.splitlines()[0], err
    assert "Traceback" not in err
    return err


def leftovers(folder: Path) -> list[str]:
    """Temporary files a failed write would leave behind."""
    return sorted(p.name for p in folder.rglob(".*")) if folder.exists() else []


# places checked before any work ------------------------------------------------------

@pytest.mark.parametrize("case", ["empty", "file", "under a file", "long name", "proc",
                                  "dev null", "checkpoint a folder", "metrics a folder"])
def test_run_refuses_a_bad_place_before_any_work(base, tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a file").write_text("x")
    out, where, cause = {
        "empty": ("", "--out", "--out is empty"),
        "file": ("a file", "a file", "not a folder"),
        "under a file": ("a file/run", "a file/run", "which is a file, not a folder"),
        "long name": ("r" * 300, "r" * 59 + "…" + "r" * 59, "more than the file system's 255"),
        "proc": ("/proc/cnngraph-run", "/proc/cnngraph-run", "special file system"),
        "dev null": ("/dev/null", "/dev/null", "special file system"),
        "checkpoint a folder": ("ck", "ck/checkpoint.npz", "is a folder, not a file"),
        "metrics a folder": ("me", "me/metrics.json", "is a folder, not a file"),
    }[case]
    for name in ("ck/checkpoint.npz", "me/metrics.json"):
        (tmp_path / name).mkdir(parents=True)
    refused(capsys, run_argv(base, out), where, cause)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a file", "ck", "me"]  # nothing made


def test_read_only_places_are_named_for_every_writer(base, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(outputs.os, "statvfs", lambda path: type(
        "S", (), {"f_flag": os.ST_RDONLY})())
    ro = tmp_path / "ro"
    for argv in (run_argv(base, ro), ["dot", str(base / "tiny.cnn"), "-o", str(ro / "g.dot")],
                 ["sweep", str(base / "tiny.cnn"), "--seed", "1", "--out", str(ro)],
                 ["download", "--dir", str(ro)]):
        refused(capsys, argv, str(ro), "the file system is read-only")
    assert list(tmp_path.iterdir()) == []


def test_dot_refuses_a_special_file_rather_than_replace_it(base, capsys):
    refused(capsys, ["dot", str(base / "tiny.cnn"), "-o", "/dev/null"], "/dev/null",
            "special file system")
    assert Path("/dev/null").is_char_device()


def test_export_and_sweep_refuse_a_file_as_their_folder(base, tmp_path, capsys):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    pytest.importorskip("onnx")
    refused(capsys, ["export", str(base / "tiny.cnn"), "--checkpoint",
                     str(base / "run1" / "checkpoint.npz"), "-o", str(blocker / "m.onnx")],
            str(blocker), "not a folder")
    refused(capsys, ["sweep", str(base / "tiny.cnn"), "--seed", "1", "--out", str(blocker)],
            str(blocker), "not a folder")


# failures while writing ------------------------------------------------------------

def fail_on(monkeypatch, name: str, code: int, after: int = 0):
    """os.replace raises ``code`` for targets named ``name``, after ``after`` good ones."""
    replace, seen = os.replace, []

    def failing(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            seen.append(dst)
            if len(seen) > after:
                raise OSError(code, os.strerror(code))
        return replace(src, dst, *args, **kwargs)
    monkeypatch.setattr(os, "replace", failing)


def test_full_disk_during_a_run_keeps_the_last_checkpoint(base, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(run_argv(base, out, "--epochs", "1")) == 0
    before = (out / "checkpoint.npz").read_bytes()
    fail_on(monkeypatch, "checkpoint.npz", errno.ENOSPC)
    err = refused(capsys, run_argv(base, out, "--epochs", "3", "--resume"),
                  str(out / "checkpoint.npz"), "no space is left on the device")
    assert "checkpoint.npz is left as it was" in err
    assert (out / "checkpoint.npz").read_bytes() == before
    assert leftovers(out) == []


@pytest.mark.parametrize("name, code, cause", [
    ("metrics.json", errno.ENOSPC, "no space is left"),
    ("metrics.json", errno.EIO, "input/output error"),
    ("checkpoint.npz", errno.EACCES, "permission denied"),
    ("checkpoint.npz", errno.EISDIR, "it is a folder"),
])
def test_a_run_turns_each_write_error_into_one_message(base, tmp_path, capsys, monkeypatch,
                                                       name, code, cause):
    out = tmp_path / "run"
    fail_on(monkeypatch, name, code)
    refused(capsys, run_argv(base, out), str(out / name), cause)
    assert leftovers(out) == []


def test_pictures_on_a_full_disk(base, tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    fail_on(monkeypatch, "learning_curves.png", errno.ENOSPC)
    argv = [a for a in run_argv(base, out) if a != "--no-plots"] + ["--plots"]
    refused(capsys, argv, str(out / "learning_curves.png"), "no space is left")
    assert leftovers(out) == [] and not (out / "learning_curves.png").exists()


def test_dot_on_a_full_disk_leaves_no_temporary_file(base, tmp_path, capsys, monkeypatch):
    fail_on(monkeypatch, "g.dot", errno.ENOSPC)
    refused(capsys, ["dot", str(base / "tiny.cnn"), "-o", str(tmp_path / "g.dot")],
            str(tmp_path / "g.dot"), "no space is left")
    assert list(tmp_path.iterdir()) == []


def test_export_on_a_full_disk_keeps_the_old_file(base, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnx")
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    fail_on(monkeypatch, "m.onnx", errno.ENOSPC)
    refused(capsys, ["export", str(base / "tiny.cnn"), "--checkpoint",
                     str(base / "run1" / "checkpoint.npz"), "-o", str(target)],
            str(target), "no space is left")
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_download_write_error(tmp_path, capsys, monkeypatch):
    import cnngraph.training.idx as idx

    def failing(dest, *args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    monkeypatch.setattr(idx, "download_mnist", failing)
    refused(capsys, ["download", "--dir", str(tmp_path / "m")], str(tmp_path / "m"),
            "input/output error")


def test_write_atomically_cleans_up_after_a_failed_write(tmp_path):
    target = tmp_path / "t.bin"

    def full(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(OutputError) as caught:
        outputs.write_atomically(target, full, what="the table")
    assert caught.value.where == str(target)
    assert "cannot write the table: no space" in caught.value.message
    assert list(tmp_path.iterdir()) == []


# stdout ----------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["summary", "run", "--help"])
@pytest.mark.parametrize("stream", ["/dev/full", "closed pipe"])
def test_stdout_that_cannot_be_written(base, tmp_path, capsys, monkeypatch, command, stream):
    if stream == "/dev/full":
        if not Path("/dev/full").exists():
            pytest.skip("no /dev/full")
        sink, cause = open("/dev/full", "w"), "no space is left"
    else:
        read, write = os.pipe()
        os.close(read)
        sink, cause = os.fdopen(write, "w"), "closed pipe"
    argv = {"summary": ["summary", str(base / "tiny.cnn")], "--help": ["--help"],
            "run": [a for a in run_argv(base, tmp_path / "run") if a != "--quiet"]}[command]
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdout", sink)
    code = main(argv)
    monkeypatch.undo()
    sink.close()
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("stdout: error: cannot write the output: ") and cause in err, err
    assert "Traceback" not in err


# Ctrl-C ----------------------------------------------------------------------------

@pytest.mark.parametrize("moment", [0.2, 0.4, "training"])
def test_ctrl_c_at_any_moment_exits_130_with_one_line(base, tmp_path, moment):
    argv = run_argv(base, tmp_path / "run", "--epochs", "10000")
    argv.remove("--quiet")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "cnngraph", *argv], cwd=tmp_path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=default_sigint)
    if moment == "training":
        for line in process.stdout:  # the first epoch's line: training has begun
            if line.startswith("epoch"):
                break
    else:
        time.sleep(moment)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err


def test_a_ctrl_c_a_library_swallowed_still_stops_the_run(base, tmp_path):
    """Ctrl-C while a ``__del__`` runs: Python prints "Exception ignored" and goes on;
    the run must not train as if no Ctrl-C had come."""
    argv = run_argv(base, tmp_path / "run", "--epochs", "3")
    code = (
        "import os, signal, sys, time\n"
        "from cnngraph.core.interrupts import CtrlC\n"
        "CtrlC.watch()\n"
        "class Finaliser:\n"
        "    def __del__(self):\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(1)  # the KeyboardInterrupt is raised here, and swallowed\n"
        "Finaliser()\n"
        f"sys.argv[1:] = {argv!r}\n"
        "from cnngraph.__main__ import entry\n"
        "sys.exit(entry())\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          preexec_fn=default_sigint, timeout=120)
    assert "Exception ignored" in done.stderr  # Python did swallow it
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines()[-1] == "interrupted"
    assert not (tmp_path / "run").exists()


def test_a_ctrl_c_python_rewrapped_exits_130_with_one_line(base, tmp_path, capsys,
                                                             monkeypatch):
    """Python 3.11 wraps a KeyboardInterrupt raised in a class body's ``__set_name__``
    (as when it lands while a module defines a dataclass) in a RuntimeError."""
    class Field:
        def __set_name__(self, owner, name):
            raise KeyboardInterrupt

    def importing(*args, **kwargs):
        class Partition:  # noqa: F841 (defining it is the point)
            partition_dict = Field()
    monkeypatch.setattr("cnngraph.tools.experiment.run_experiment", importing)
    capsys.readouterr()
    assert main(run_argv(base, tmp_path / "run")) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_a_ctrl_c_while_the_commands_load_exits_130_with_one_line(tmp_path):
    """A KeyboardInterrupt out of an exec() of a string while the commands import (as
    when it lands while a module defines a dataclass) leaves ``python -m`` set to kill
    itself by SIGINT at exit: the exit status must still be 130."""
    (tmp_path / "loading.py").write_text(
        "import sys\n"
        "class Loading:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'cnngraph.cli.main':\n"
        "            exec('raise KeyboardInterrupt')\n"
        "sys.meta_path.insert(0, Loading())\n"
        "from cnngraph.__main__ import entry\n"
        "sys.exit(entry())\n")
    done = subprocess.run([sys.executable, "-m", "loading"], cwd=tmp_path,
                          capture_output=True, text=True, preexec_fn=default_sigint,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert (done.returncode, done.stderr) == (130, "interrupted\n")


# long source lines -----------------------------------------------------------------

def test_a_long_source_line_is_cut_around_the_caret():
    line = "x" * 500_000 + "BAD" + "y" * 500_000
    error = ParseError("unexpected 'BAD'", Span("m.cnn", 1, 500_001, 3, line + "\n"))
    text = format_error(error)
    source, caret = text.splitlines()[1:3]
    assert len(text) < 400 and source.count("…") == 2
    assert source[caret.index("^"):caret.rindex("^") + 1] == "BAD"


def test_a_short_line_is_shown_whole():
    error = ParseError("unexpected 'BAD'", Span("m.cnn", 2, 5, 3, "input x\nab  BAD cd\n"))
    assert format_error(error).splitlines()[1:] == ["    2 | ab  BAD cd", "      |     ^^^"]
