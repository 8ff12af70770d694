"""The machinery of the hostile-input suite (tests/test_hostile.py): a case is a row
(id, category, how to make the hostile input, the argv, the expected outcome); this
module builds the shared inputs once (a tiny model, a tiny data set, trained runs),
runs a case in-process through ``cnngraph.cli.main.main`` (or in a subprocess, for
signals and stdout), injects operating-system failures (tests run as root, where
chmod stops nothing) and sorts each outcome into the campaign's columns (issue 21).
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from conftest import default_sigint

ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = ("data files (.npz, IDX, JSON manifests)", "checkpoints (resume, eval, export)",
              "output locations", "numerics and flags", "interrupts", "model files")
COLUMNS = ("clean error", "handled", "traceback", "silent wrong")

TINY = """\
input x : 1 x 6 x 6
full H <- x : units=8, activation=lecun_tanh
full out <- H : units=3
loss L <- out : function=softmax_cross_entropy
train {
  epochs = 2
  batch = 8
  lr = 0.05
  optimizer = sgd(momentum=0.9)
  seed = 0
}
"""
#: tanh outputs and squared error (as mlp.cnn): a huge rate saturates the units, no NaN
SQUARED = TINY.replace("full out <- H : units=3\nloss L <- out : function=softmax_cross_entropy",
                       "full out <- H : units=3, activation=lecun_tanh\n"
                       "loss L <- out : function=squared_error, targets=plus_minus_one")


@dataclass(frozen=True)
class Case:
    """One row: ``make(env)`` builds the hostile input under ``env.tmp`` and returns the
    argv; the expected exit status ``code`` and a regular expression ``says`` that the
    output must hold (the file and field); ``check(env, result)`` asserts what must be
    true afterwards (for exit 0: that the result is right); ``fault(env)``: a context
    manager that injects an OS failure."""
    id: str
    category: str
    make: Callable
    code: int = 2
    says: str = ""
    check: Callable | None = None
    fault: Callable | None = None
    subprocess: bool = False


@dataclass
class Result:
    code: int | None        # None: an exception escaped main
    out: str
    err: str
    traceback: str = ""

    @property
    def text(self) -> str:
        return self.out + self.err + self.traceback


@dataclass
class Base:
    """What every case may start from, built once: a model, a data set, two runs."""
    dir: Path
    model: Path = field(init=False)
    data: Path = field(init=False)
    run1: Path = field(init=False)   # trained one epoch
    run2: Path = field(init=False)   # trained two epochs (the same run, uninterrupted)

    def __post_init__(self):
        self.model = self.dir / "tiny.cnn"
        self.model.write_text(TINY)
        self.data = self.dir / "data.npz"
        x_train, y_train = images(64, 0)
        x_test, y_test = images(32, 1)
        np.savez(self.data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
        self.run1, self.run2 = self.dir / "run1", self.dir / "run2"
        for out, epochs in ((self.run1, "1"), (self.run2, "2")):
            result = run_main(self.train_argv(out, "--epochs", epochs), self.dir)
            assert result.code == 0, result.text

    def flags(self, data=None) -> list[str]:
        return ["--data", str(data or self.data), "--backend", "numpy", "--threads", "1",
                "--no-plots", "--quiet"]

    def train_argv(self, out, *more, model=None, data=None) -> list[str]:
        return ["run", str(model or self.model), *self.flags(data), "--out", str(out), *more]


@dataclass
class Env:
    base: Base
    tmp: Path

    def copy_run(self, which: str = "run2") -> Path:
        out = self.tmp / "out"
        shutil.copytree(getattr(self.base, which), out)
        return out

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
        return path


def images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded 6x6 uint8 images labelled 0..2 by their brightness (learnable)."""
    x = np.random.default_rng(seed).integers(0, 256, size=(n, 6, 6)).astype(np.uint8)
    return x, np.digitize(x.mean(axis=(1, 2)), [122.5, 132.5]).astype(np.int64)


# --- running a case -------------------------------------------------------------------

def run_main(argv: list[str], cwd: Path, fault=None) -> Result:
    """main(argv) in ``cwd`` with stdout and stderr captured; an escaping exception is
    recorded as a traceback, SystemExit (argparse) as its status."""
    from cnngraph.cli.main import main
    out, err, escaped = io.StringIO(), io.StringIO(), ""
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err), memory_guard():
        try:
            with fault or contextlib.nullcontext():
                code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001 - a traceback is what the suite counts
            code, escaped = None, traceback.format_exc()
    return Result(code, out.getvalue(), err.getvalue(), escaped)


def run_process(argv: list[str], cwd: Path, stdout=subprocess.PIPE, sigint_after=(),
                once: Path | None = None, timeout: float = 60) -> Result:
    """``python -m cnngraph ARGV``; ``sigint_after``: seconds at which to send SIGINT,
    measured from the start, or, with ``once``, from when that file appears.  Killed by
    SIGINT reads as 130, as a shell reports it (Python's own exit on an uncaught
    KeyboardInterrupt)."""
    proc = subprocess.Popen([sys.executable, "-m", "cnngraph", *argv], cwd=cwd, stdout=stdout,
                            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    start = time.monotonic()
    while once and not once.exists() and proc.poll() is None \
            and time.monotonic() < start + timeout:
        time.sleep(0.02)
    start = time.monotonic()
    for at in sigint_after:
        time.sleep(max(0.0, start + at - time.monotonic()))
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return Result(None, out or "", err or "", "timed out")
    code = 130 if proc.returncode == -signal.SIGINT else proc.returncode
    return Result(code, out or "", err or "")


def run_case(case: Case, base: Base, tmp: Path) -> tuple[Env, Result]:
    env = Env(base, tmp)
    argv = case.make(env)
    if case.subprocess:
        return env, argv(tmp) if callable(argv) else run_process(argv, tmp)
    return env, run_main(argv, tmp, case.fault(env) if case.fault else None)


def outcome(case: Case, env: Env, result: Result) -> str:
    """The campaign's column for this result."""
    if result.code is None or "Traceback (most recent call last)" in result.text:
        return "traceback"
    if result.code != 0:
        return "clean error"
    if case.code != 0:
        return "silent wrong"
    try:
        if case.check:
            case.check(env, result)
    except Exception:  # noqa: BLE001 - a check that cannot even look failed
        return "silent wrong"
    return "handled"


def problems(case: Case, env: Env, result: Result) -> list[str]:
    """What differs from the expected outcome (empty: the row passes)."""
    found = []
    if result.code is None or "Traceback (most recent call last)" in result.text:
        found.append("a traceback")
    if result.code != case.code:
        found.append(f"exit {result.code}, expected {case.code}")
    if case.says and not re.search(case.says, result.out + result.err, re.I | re.S):
        found.append(f"the output does not match /{case.says}/")
    if case.check:
        try:
            case.check(env, result)
        except Exception as e:  # noqa: BLE001 - a missing file fails the check
            found.append(f"check failed: {e}")
    return found


@contextlib.contextmanager
def memory_guard(spare: int = 3 << 30):
    """At most ``spare`` more bytes of address space while a case runs: a case that
    reads /dev/zero or trusts a declared size fails with MemoryError (counted as the
    traceback it is) instead of taking the machine's memory."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (size + spare, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# --- operating-system failures ---------------------------------------------------------

@contextlib.contextmanager
def failing_disk(under: Path, code: int):
    """Writes under ``under`` fail with ``code``: EROFS refuses to create or open a file
    for writing, to make a folder or to rename into it (and os.access says so); ENOSPC
    opens the file but fails its writes and fsync, as a full disk does (os.statvfs and
    os.access tell a read-only file system as the kernel does)."""
    under = os.path.realpath(under)
    message = os.strerror(code)
    doomed: set[int] = set()
    real = {name: getattr(os, name) for name in ("open", "mkdir", "replace", "rename",
                                                 "access", "fsync", "write", "statvfs")}
    real_io_open = io.open

    def inside(path) -> bool:
        if isinstance(path, int):
            return path in doomed
        full = os.path.realpath(os.fspath(path))
        return full == under or full.startswith(under + os.sep)

    def fail(path=None):
        raise OSError(code, message, None if isinstance(path, int) else os.fspath(path))

    def writing(flags: int) -> bool:
        return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))

    def os_open(path, flags, *args, **kwargs):
        if inside(path) and writing(flags):
            if code == errno.EROFS:
                fail(path)
            fd = real["open"](path, flags, *args, **kwargs)
            doomed.add(fd)
            return fd
        return real["open"](path, flags, *args, **kwargs)

    def io_open(file, mode="r", *args, **kwargs):
        if inside(file) and any(c in mode for c in "wax+"):
            if code == errno.EROFS:
                fail(file)
            return _FullFile(real_io_open(file, mode, *args, **kwargs), code, message)
        return real_io_open(file, mode, *args, **kwargs)

    def guarded(name):
        def call(path, *args, **kwargs):
            if inside(path) and code == errno.EROFS:
                fail(path)
            return real[name](path, *args, **kwargs)
        return call

    def rename(src, dst, *args, **kwargs):
        if code == errno.EROFS and (inside(src) or inside(dst)):
            fail(dst)
        return real["replace"](src, dst, *args, **kwargs)

    def access(path, mode, *args, **kwargs):
        if inside(path) and mode & os.W_OK and code == errno.EROFS:
            return False
        return real["access"](path, mode, *args, **kwargs)

    def statvfs(path):
        found = real["statvfs"](path)
        if not (inside(path) and code == errno.EROFS):
            return found
        fields = list(found)
        fields[8] |= os.ST_RDONLY  # f_flag: mounted read-only
        return os.statvfs_result(fields)

    def fd_call(name):
        def call(fd, *args):
            if fd in doomed:
                fail(fd)
            return real[name](fd, *args)
        return call

    patches = {(os, "open"): os_open, (os, "mkdir"): guarded("mkdir"), (os, "replace"): rename,
               (os, "rename"): rename, (os, "access"): access, (os, "fsync"): fd_call("fsync"),
               (os, "write"): fd_call("write"), (os, "statvfs"): statvfs, (io, "open"): io_open}
    import builtins
    patches[(builtins, "open")] = io_open
    saved = {key: getattr(*key) for key in patches}
    for (owner, name), value in patches.items():
        setattr(owner, name, value)
    try:
        yield
    finally:
        for (owner, name), value in saved.items():
            setattr(owner, name, value)


class _FullFile:
    """A file on a full disk: it opens, but nothing can be written or flushed to it."""

    def __init__(self, file, code: int, message: str):
        self._file, self._code, self._message = file, code, message

    def _fail(self, *args, **kwargs):
        raise OSError(self._code, self._message)

    write = writelines = flush = _fail

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()

    def __iter__(self):
        return iter(self._file)


# --- checkpoints ------------------------------------------------------------------------

def edit_checkpoint(path: Path, header=None, arrays=None) -> Path:
    """Rewrite a checkpoint in place: ``header(h)`` edits its JSON header, ``arrays(a, h)``
    its arrays (the header's list of arrays is kept as the edit leaves it)."""
    with np.load(path) as archive:
        held = {name: archive[name] for name in archive.files}
    head = json.loads(held.pop("header").tobytes())
    if header:
        header(head)
    if arrays:
        arrays(held, head)
    held["header"] = np.frombuffer(json.dumps(head).encode(), dtype=np.uint8)
    np.savez(path, **held)
    return path


def checkpoint_arrays(path: Path) -> dict:
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files if name != "header"}


def same_arrays(a: Path, b: Path) -> bool:
    left, right = checkpoint_arrays(a), checkpoint_arrays(b)
    return sorted(left) == sorted(right) and all(
        left[k].dtype == right[k].dtype and left[k].tobytes() == right[k].tobytes()
        for k in left)


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def leftovers(folder: Path) -> list[str]:
    """Temporary files a writer left behind."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.name.endswith((".tmp", ".part")) or p.name.startswith(".") and
                  p.name.count(".") >= 2)
