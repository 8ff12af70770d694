"""Hostile output places, numbers and flags, and interrupts: the rows of the
hostile-input suite for where a run writes, what its flags say and a Ctrl-C at any
moment (tests/test_hostile.py).  Full disks and read-only file systems are injected
(`hostile_harness.failing_disk`): tests run as root, where chmod stops nothing."""
from __future__ import annotations

import contextlib
import errno
import urllib.error
import urllib.request
from unittest import mock

import numpy as np
from cnngraph.cli.run_command import DIVERGED
from hostile_harness import (
    SQUARED,
    Case,
    checkpoint_arrays,
    failing_disk,
    leftovers,
    metrics,
    run_main,
    run_process,
    same_arrays,
)

OUT, FLAGS, STOP = "output locations", "numerics and flags", "interrupts"


def out_case(id, out, says, prepare=None, check=None, code=2) -> Case:
    """run --out OUT (``out(env)``), after ``prepare(env)``."""
    def make(env):
        if prepare:
            prepare(env)
        return env.base.train_argv(out(env))
    return Case(f"out-{id}", OUT, make, code, says, check)


def disk(id, code, argv, says, under=lambda env: env.tmp / "out", check=None):
    """``argv(env)`` with the disk under ``under(env)`` failing with ``code``."""
    return Case(f"{id}", OUT, argv, 2, says, check, lambda env: mounted(under(env), code))


def mounted(folder, code):
    """A failing disk mounted on ``folder`` (made first: a mount point exists)."""
    folder.mkdir(parents=True, exist_ok=True)
    return failing_disk(folder, code)


def no_network():
    return mock.patch.object(urllib.request, "urlopen",
                             side_effect=urllib.error.URLError("no network in tests"))


def untouched(which):
    """The run's existing files are byte-identical and no temporary file is left."""
    def check(env, result):
        out, old = env.tmp / "out", getattr(env.base, which)
        assert (out / "metrics.json").read_bytes() == (old / "metrics.json").read_bytes()
        assert same_arrays(out / "checkpoint.npz", old / "checkpoint.npz")
        assert not leftovers(out), f"left {leftovers(out)}"
    return check


def clean_folder(name):
    def check(env, result):
        assert not leftovers(env.tmp / name), f"left {leftovers(env.tmp / name)}"
    return check


def dot(path):
    return lambda env: ["dot", str(env.base.model), "-o", str(path(env))]


def sweep(out):
    return lambda env: ["sweep", str(env.base.model), "--seed", "0", "--data",
                        str(env.base.data), "--jobs", "1", "--quiet", "--out", str(out(env))]


def export(path):
    return lambda env: ["export", str(env.base.model), "--checkpoint",
                        str(env.base.run2 / "checkpoint.npz"), "-o", str(path(env))]


def fresh(env):
    return env.base.train_argv(env.tmp / "out")


def over_run2(env):
    return env.base.train_argv(env.copy_run())


def plotted(env):
    return ["run", str(env.base.model), "--data", str(env.base.data), "--backend", "numpy",
            "--threads", "1", "--plots", "--quiet", "--out", str(env.tmp / "out")]


def resumed(env):
    return env.base.train_argv(env.copy_run("run1"), "--resume", "--epochs", "2")


def dot_file(env, result):
    assert (env.tmp / "new" / "deeper" / "g.dot").read_text().startswith("digraph")


def run_ok(env, result):
    assert 0 <= metrics(env.tmp / "link")["test_error"] <= 1


def stdout_full(argv):
    """``argv`` in a subprocess whose stdout is /dev/full."""
    def make(env):
        def go(tmp):
            with open("/dev/full", "w") as full:
                return run_process(argv(env), tmp, stdout=full)
        return go
    return make


taken = lambda env: env.write("taken", "x")  # noqa: E731 - a file where a folder should be
ROFS, FULL = errno.EROFS, errno.ENOSPC
OUT_CASES = [
    out_case("existing-file", lambda env: env.tmp / "taken", r"taken", taken),
    out_case("under-file", lambda env: env.tmp / "taken" / "sub", r"taken", taken),
    out_case("300-characters", lambda env: env.tmp / ("a" * 300), r"--out.*(300|long)"),
    out_case("proc", lambda env: "/proc/hostile-out", r"/proc/hostile-out"),
    out_case("dev-null", lambda env: "/dev/null", r"/dev/null"),
    out_case("empty", lambda env: "", r"--out"),
    out_case("checkpoint-is-folder", lambda env: env.tmp / "out", r"checkpoint\.npz",
             lambda env: env.write("out/checkpoint.npz/x", "")),
    out_case("metrics-is-folder", lambda env: env.tmp / "out", r"metrics\.json",
             lambda env: env.write("out/metrics.json/x", "")),
    out_case("new-nested", lambda env: env.tmp / "a" / "b" / "c", "", code=0,
             check=lambda env, r: metrics(env.tmp / "a" / "b" / "c")),
    out_case("symlink", lambda env: env.tmp / "link", "", code=0, check=run_ok,
             prepare=lambda env: (env.tmp / "link").symlink_to(env.write("real/x", "").parent)),
    disk("rofs-fresh", ROFS, fresh, r"out.*read-only"),
    disk("full-fresh", FULL, fresh, r"out.*(no space|full)", check=clean_folder("out")),
    disk("full-over-run", FULL, over_run2, r"out.*(no space|full)", check=untouched("run2")),
    disk("full-plots", FULL, plotted, r"out.*(no space|full)", check=clean_folder("out")),
    disk("full-resume", FULL, resumed, r"out.*(no space|full)", check=untouched("run1")),
    disk("rofs-resume", ROFS, resumed, r"out.*read-only", check=untouched("run1")),
    disk("dot-rofs", ROFS, dot(lambda env: env.tmp / "g" / "graph.dot"),
         r"(graph\.dot|/g):.*read-only",
         under=lambda env: env.tmp / "g"),
    disk("dot-full", FULL, dot(lambda env: env.tmp / "g" / "graph.dot"), r"graph\.dot",
         under=lambda env: env.tmp / "g", check=clean_folder("g")),
    Case("dot-under-file", OUT, lambda env: (taken(env), dot(lambda e: e.tmp / "taken" / "g.dot")
                                             (env))[1], 2, r"taken"),
    Case("dot-is-folder", OUT, lambda env: (env.write("g.dot/x", ""), dot(
        lambda e: e.tmp / "g.dot")(env))[1], 2, r"g\.dot"),
    Case("dot-new-folder", OUT, dot(lambda env: env.tmp / "new" / "deeper" / "g.dot"), 0, "",
         dot_file),
    Case("sweep-out-file", OUT, lambda env: (taken(env), sweep(lambda e: e.tmp / "taken")(env))[1],
         2, r"taken"),
    Case("sweep-out-under-file", OUT, lambda env: (taken(env), sweep(
        lambda e: e.tmp / "taken" / "s")(env))[1], 2, r"taken"),
    disk("sweep-rofs", ROFS, sweep(lambda env: env.tmp / "s"), r"read-only",
         under=lambda env: env.tmp / "s"),
    Case("download-dir-file", OUT, lambda env: ["download", "--dir", str(taken(env))], 2,
         r"taken", fault=lambda env: no_network()),
    Case("download-under-file", OUT, lambda env: (taken(env), ["download", "--dir", str(
        env.tmp / "taken" / "m")])[1], 2, r"taken", fault=lambda env: no_network()),
    Case("download-rofs", OUT, lambda env: ["download", "--dir", str(env.tmp / "m")], 2,
         r"read-only", fault=lambda env: _both(mounted(env.tmp / "m", ROFS), no_network())),
    Case("export-under-file", OUT, lambda env: (taken(env), export(
        lambda e: e.tmp / "taken" / "m.onnx")(env))[1], 2, r"taken"),
    disk("export-rofs", ROFS, export(lambda env: env.tmp / "x" / "m.onnx"),
         r"(m\.onnx|/x):.*read-only",
         under=lambda env: env.tmp / "x"),
    disk("export-full", FULL, export(lambda env: env.tmp / "x" / "m.onnx"), r"m\.onnx",
         under=lambda env: env.tmp / "x", check=clean_folder("x")),
    Case("stdout-full-summary", OUT, stdout_full(lambda env: ["summary", str(env.base.model)]),
         2, r"stdout|no space", subprocess=True),
    Case("stdout-full-run", OUT, stdout_full(lambda env: env.base.train_argv(env.tmp / "out")),
         2, r"stdout|no space", subprocess=True),
]


def _both(a, b):
    stack = contextlib.ExitStack()
    stack.enter_context(a)
    stack.enter_context(b)
    return stack


def flag(id, *more, says, code=2, check=None, model=None, command=None) -> Case:
    def make(env):
        text = env.write("model.cnn", model) if model else None
        if command:
            return command(env, *more)
        return env.base.train_argv(env.tmp / "out", *more, model=text)
    return Case(f"flag-{id}", FLAGS, make, code, says, check)


def trained(env, result):
    assert 0 <= metrics(env.tmp / "out")["test_error"] <= 1


def untrained(env, result, out="out"):
    """Refused before training: no result was written."""
    written = [p.name for p in (env.tmp / out).rglob("*") if p.is_file()]
    assert not written, f"{', '.join(written)} written: the flag was refused late"


def diverged(env, result):
    assert "diverged" in (env.tmp / "out" / "metrics.json").read_text()


def sweep_flags(env, *more):
    return ["sweep", str(env.write("model.cnn", SQUARED)), "--data", str(env.base.data),
            "--jobs", "1", "--quiet", "--out", str(env.tmp / "s"), *more]


def sweep_diverged(env, result):
    assert "diverged" in result.out.lower() + "".join(
        p.read_text() for p in (env.tmp / "s").rglob("*.json")).lower()


def weights_file(edit):
    def make(env):
        arrays = {k[6:]: v for k, v in checkpoint_arrays(env.base.run2 / "checkpoint.npz")
                  .items() if k.startswith("param/")}
        np.savez(env.tmp / "w.npz", **edit(arrays))
        return env.base.train_argv(env.tmp / "out", "--weights", str(env.tmp / "w.npz"))
    return make


FLAG_CASES = [
    flag("lr-nan", "--lr", "nan", says=r"--lr", check=untrained),
    flag("lr-inf", "--lr", "inf", says=r"--lr", check=untrained),
    flag("lr-negative", "--lr", "-1", says=r"--lr"),
    flag("lr-zero", "--lr", "0", says=r"--lr"),
    flag("lr-1e3-saturates", "--lr", "1e3", says=r"learning rate|--lr", code=DIVERGED,
         check=diverged, model=SQUARED),
    flag("lr-1e6-saturates", "--lr", "1e6", says=r"learning rate|--lr", code=DIVERGED,
         check=diverged, model=SQUARED),
    flag("lr-1e8-saturates", "--lr", "1e8", says=r"learning rate|--lr", code=DIVERGED,
         check=diverged, model=SQUARED),
    flag("lr-1e308-overflows", "--lr", "1e308", says=r"learning rate", code=DIVERGED,
         check=diverged),
    flag("sweep-lr-nan", "--lr", "0.1", "nan", says=r"--lr", command=sweep_flags,
         check=lambda env, r: untrained(env, r, "s")),
    flag("sweep-lr-1e6", "--lr", "0.1", "1e6", says="", code=0, check=sweep_diverged,
         command=sweep_flags),
    flag("epochs-zero", "--epochs", "0", says=r"--epochs"),
    flag("epochs-negative", "--epochs", "-1", says=r"--epochs"),
    flag("epochs-word", "--epochs", "two", says=r"--epochs"),
    flag("batch-zero", "--batch", "0", says=r"--batch"),
    flag("batch-negative", "--batch", "-3", says=r"--batch"),
    flag("batch-beyond-data", "--batch", "1000", says="", code=0, check=trained),
    flag("val-all", "--val", "64", says=r"--val|val"),
    flag("val-negative", "--val", "-1", says=r"--val"),
    flag("limit-train-zero", "--limit-train", "0", says=r"--limit-train"),
    flag("limit-train-negative", "--limit-train", "-3", says=r"--limit-train"),
    flag("limit-test-zero", "--limit-test", "0", says=r"--limit-test"),
    flag("seed-negative", "--seed", "-1", says=r"--seed"),
    flag("shards-zero", "--shards", "0", says=r"--shards"),
    flag("shards-beyond-batch", "--shards", "9", says="", code=0, check=trained),
    flag("threads-zero", "--threads", "0", says=r"--threads"),
    flag("dtype-float16", "--dtype", "float16", says=r"--dtype"),
    flag("threshold-nan", "--threshold", "nan", says=r"--threshold"),
    flag("backend-unknown", "--backend", "fortran", says=r"fortran"),
    flag("limit-train-small", "--limit-train", "8", says="", code=0, check=trained),
    flag("limit-train-beyond-data", "--limit-train", "1000000000", says="", code=0,
         check=trained),
    flag("val-beyond-data", "--val", "1000000000", says=r"--val.*no training images"),
    flag("batch-beyond-memory", "--batch", "1000000000", says=r"memory.*--batch"),
    flag("lr-1e-300", "--lr", "1e-300", says="", code=0, check=trained),
    flag("seed-2e70", "--seed", str(2 ** 70), says="", code=0, check=trained),
    Case("flag-weights-missing", FLAGS, lambda env: env.base.train_argv(
        env.tmp / "out", "--weights", str(env.tmp / "w.npz")), 2, r"w\.npz"),
    Case("flag-weights-nan", FLAGS, weights_file(
        lambda a: {**a, "H.bias": np.full_like(a["H.bias"], np.nan)}), 2,
        r"(w\.npz|--weights).*H\.bias"),
    Case("flag-weights-shape", FLAGS, weights_file(
        lambda a: {**a, "H.weight": a["H.weight"].T}), 2, r"(w\.npz|--weights).*H\.weight"),
    Case("flag-weights-extra", FLAGS, weights_file(lambda a: {**a, "ghost": a["H.bias"]}), 2,
         r"(w\.npz|--weights).*ghost"),
]


def raise_in(target: str):
    """Ctrl-C (KeyboardInterrupt) raised when ``target`` (module:attribute) is called."""
    module, name = target.split(":")
    return lambda env: mock.patch(f"{module}.{name}", side_effect=KeyboardInterrupt)


def one_line(env, result):
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, f"{len(lines)} lines on stderr"


def stopped_then_resumed(checks: int):
    """Ctrl-C (the stop flag) seen at the trainer's ``checks``-th look, then --resume:
    the run ends bitwise as run2, uninterrupted."""
    def make(env):
        looks = iter(range(10 ** 6))
        with mock.patch("cnngraph.cli.console.StopFlag.__call__",
                        side_effect=lambda: next(looks) >= checks - 1):
            first = run_main(env.base.train_argv(env.tmp / "out"), env.tmp)
        assert first.code == 130, first.text
        return env.base.train_argv(env.tmp / "out", "--resume")
    return make


def resumed_bitwise(env, result):
    assert same_arrays(env.tmp / "out" / "checkpoint.npz", env.base.run2 / "checkpoint.npz")


def long_run(*at):
    """A run of 100000 epochs, sent SIGINT ``at`` seconds after its first checkpoint."""
    def make(env):
        return lambda tmp: run_process(env.base.train_argv(tmp / "out", "--epochs", "100000"),
                                       tmp, sigint_after=at, once=tmp / "out" / "checkpoint.npz")
    return make


def saved(env, result):
    assert "--resume" in result.err
    assert checkpoint_arrays(env.tmp / "out" / "checkpoint.npz")


INTERRUPT_CASES = [
    Case("ctrl-c-compiling", STOP, fresh, 130, r"interrupt|ctrl-c|stopped", one_line,
         raise_in("cnngraph.compiler.program:compile_model")),
    Case("ctrl-c-reading-data", STOP, fresh, 130, r"interrupt|ctrl-c|stopped", one_line,
         raise_in("cnngraph.training.datasets:load_npz")),
    Case("ctrl-c-evaluating", STOP, fresh, 130, r"interrupt|ctrl-c|stopped", one_line,
         raise_in("cnngraph.tools.experiment:evaluate")),
    Case("ctrl-c-saving", STOP, resumed, 130, r"interrupt|ctrl-c|stopped", untouched("run1"),
         raise_in("numpy:savez")),
    Case("stop-flag", STOP, fresh, 130, r"--resume", saved,
         lambda env: mock.patch("cnngraph.cli.console.StopFlag.__call__", return_value=True)),
    Case("stop-then-resume", STOP, stopped_then_resumed(1), 0, "", resumed_bitwise),
    Case("stop-mid-epoch-then-resume", STOP, stopped_then_resumed(4), 0, "", resumed_bitwise),
    Case("stop-second-epoch-then-resume", STOP, stopped_then_resumed(11), 0, "",
         resumed_bitwise),
    Case("ctrl-c-summary", STOP, lambda env: ["summary", str(env.base.model)], 130,
         r"interrupt|ctrl-c|stopped", one_line,
         raise_in("cnngraph.compiler.program:compile_model")),
    Case("ctrl-c-eval", STOP, lambda env: ["eval", "--checkpoint", str(
        env.base.run2 / "checkpoint.npz"), *env.base.flags()[:6]], 130,
        r"interrupt|ctrl-c|stopped", one_line, raise_in("cnngraph.training.loop:evaluate")),
    Case("ctrl-c-dot-write", STOP, dot(lambda env: env.tmp / "g" / "g.dot"), 130,
         r"interrupt|ctrl-c|stopped", clean_folder("g"), raise_in("os:replace")),
    Case("ctrl-c-export-write", STOP, export(lambda env: env.tmp / "x" / "m.onnx"), 130,
         r"interrupt|ctrl-c|stopped", clean_folder("x"), raise_in("os:replace")),
    Case("sigint-at-start", STOP, lambda env: lambda tmp: run_process(
        env.base.train_argv(tmp / "out"), tmp, sigint_after=(0.3,)), 130,
        r"interrupt|ctrl-c|stopped", one_line, subprocess=True),
    Case("sigint-training", STOP, long_run(0.2), 130, r"--resume", saved, subprocess=True),
    Case("sigint-twice", STOP, long_run(0.2, 0.25), 130, r"interrupt|ctrl-c|stopped",
         subprocess=True),
]
