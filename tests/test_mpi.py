"""Data-parallel training under mpiexec: bitwise equal to one process for any rank
count, resumable on another rank count, refusing mismatched ranks, and ending
cleanly when a rank is killed.  Skipped where no MPI can be had."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MPIEXEC, ROOT, needs_mpi
from test_data import mirror  # noqa: F401  (a fixture: MNIST-like files on 127.0.0.1)

from cnngraph.training.checkpoint import load_checkpoint

pytestmark = needs_mpi

MODEL = """\
input x : 1 x 28 x 28
conv C1 <- x : maps=3, kernel=5, activation=lecun_tanh
subsample S2 <- C1 : factor=4, activation=lecun_tanh
full out <- S2 : units=10
loss L <- out : function=softmax_cross_entropy
train {
  epochs = 2
  batch = 30
  lr = 0.05
  seed = 5
}
"""


def _run(tmp_path, mnist, out, ranks=None, *flags, model="model.cnn", timeout=120):
    """`python -m cnngraph run` under `mpiexec -n ranks` (None: a plain process)."""
    path = tmp_path / model
    if not path.exists():
        path.write_text(MODEL)
    command = [sys.executable, "-m", "cnngraph", "run", str(path), "--data", str(mnist),
               "--limit-train", "240", "--limit-test", "100", "--no-plots", "--quiet",
               "--out", str(tmp_path / out), *flags]
    if ranks is not None:
        command = [MPIEXEC, "-n", str(ranks), *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _params(tmp_path, out):
    ckpt = load_checkpoint(tmp_path / out / "checkpoint.npz")
    return ckpt.params, ckpt.optimizer


def _same_bits(a, b):
    (params_a, state_a), (params_b, state_b) = a, b
    assert params_a.keys() == params_b.keys() and state_a.keys() == state_b.keys()
    for name in params_a:
        assert np.array_equal(params_a[name], params_b[name]), name
    for name in state_a:
        assert np.array_equal(state_a[name], state_b[name]), name


@pytest.mark.parametrize("dtype,optimizer,lr", [("float64", "sgd(momentum=0.9)", 0.05),
                                                # SDLM's rates are LeCun's, far below SGD's:
                                                # at 0.05 this net diverges (exit 3)
                                                ("float32", "sdlm(mu=0.02, samples=50)", 0.002)])
def test_any_rank_count_gives_the_bits_of_one_process(tmp_path, mnist, dtype, optimizer, lr):
    (tmp_path / "model.cnn").write_text(
        MODEL.replace("  lr = 0.05", f"  lr = {lr}").replace(
            "  seed = 5", f"  seed = 5\n  optimizer = {optimizer}\n  dtype = {dtype}"))
    flags = ("--shards", "4")
    single = _run(tmp_path, mnist, "single", None, *flags)
    assert single.returncode == 0, single.stderr
    want = _params(tmp_path, "single")
    for ranks in (1, 2, 3, 4):
        done = _run(tmp_path, mnist, f"n{ranks}", ranks, *flags)
        assert done.returncode == 0, done.stderr
        _same_bits(_params(tmp_path, f"n{ranks}"), want)
        assert done.stdout == single.stdout   # the same test error line


def test_resuming_on_another_rank_count_continues_bitwise(tmp_path, mnist):
    whole = _run(tmp_path, mnist, "whole", 1, "--shards", "6")
    assert whole.returncode == 0, whole.stderr
    first = _run(tmp_path, mnist, "parts", 2, "--shards", "6", "--epochs", "1")
    assert first.returncode == 0, first.stderr
    rest = _run(tmp_path, mnist, "parts", 3, "--shards", "6", "--resume")
    assert rest.returncode == 0, rest.stderr
    _same_bits(_params(tmp_path, "parts"), _params(tmp_path, "whole"))


def test_mpiexec_without_shards_takes_one_per_rank_and_a_resume_keeps_them(tmp_path, mnist):
    """No --shards under mpiexec -n 2: two shards, recorded in the checkpoint, the bits
    of one process with --shards 2; one process resuming without --shards continues
    with them bitwise, and a resume naming other shards is refused."""
    two = _run(tmp_path, mnist, "two", 2)
    assert two.returncode == 0, two.stderr
    assert load_checkpoint(tmp_path / "two" / "checkpoint.npz").run["shards"] == 2
    single = _run(tmp_path, mnist, "single", None, "--shards", "2")
    assert single.returncode == 0, single.stderr
    _same_bits(_params(tmp_path, "two"), _params(tmp_path, "single"))
    first = _run(tmp_path, mnist, "parts", 2, "--epochs", "1")
    assert first.returncode == 0, first.stderr
    other = _run(tmp_path, mnist, "parts", None, "--resume", "--shards", "3")
    assert other.returncode == 2
    assert "started with shards 2 (the checkpoint's 'run.shards'), this one has 3" in other.stderr
    rest = _run(tmp_path, mnist, "parts", None, "--resume")
    assert rest.returncode == 0, rest.stderr
    _same_bits(_params(tmp_path, "parts"), _params(tmp_path, "two"))


def test_the_allreduce_mode_agrees_to_rounding(tmp_path, mnist):
    ordered = _run(tmp_path, mnist, "ordered", 2, "--shards", "2", "--dtype", "float64")
    fast = _run(tmp_path, mnist, "fast", 2, "--shards", "2", "--dtype", "float64",
                "--reduction", "allreduce")
    assert ordered.returncode == fast.returncode == 0, fast.stderr
    (a, _), (b, _) = _params(tmp_path, "ordered"), _params(tmp_path, "fast")
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-9, atol=1e-12)


def test_too_few_shards_for_the_ranks_is_refused(tmp_path, mnist):
    done = _run(tmp_path, mnist, "few", 3, "--shards", "2")
    assert done.returncode == 2
    assert "3 ranks share each batch's shards, but there are 2" in done.stderr
    assert done.stderr.count("error:") == 1   # said once, by rank 0


def test_ranks_running_different_models_are_refused_without_a_hang(tmp_path, mnist):
    (tmp_path / "model.cnn").write_text(MODEL)
    (tmp_path / "other.cnn").write_text(MODEL.replace("maps=3", "maps=4"))
    rank = [sys.executable, "-m", "cnngraph", "run", "--data", str(mnist), "--limit-train",
            "240", "--limit-test", "100", "--no-plots", "--shards", "2", "--out",
            str(tmp_path / "mixed")]
    started = time.monotonic()
    done = subprocess.run([MPIEXEC, "-n", "1", *rank, str(tmp_path / "model.cnn"), ":",
                           "-n", "1", *rank, str(tmp_path / "other.cnn")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode != 0 and time.monotonic() - started < 60
    assert "rank 1 differs from rank 0 in its network" in done.stderr


def _rank_pid(marker: str, rank: int):
    """The pid of the process of ``rank`` (its launcher's PMI_RANK) whose command line
    holds ``marker``."""
    for proc in Path("/proc").iterdir():
        try:
            if marker in (proc / "cmdline").read_text() and \
                    f"PMI_RANK={rank}" in (proc / "environ").read_text().split("\0"):
                return int(proc.name)
        except (OSError, ValueError):
            continue
    return None


def _first_run(tmp_path, url, checksums):
    """`mpiexec -n 2 cnngraph run` without --data, $CNNGRAPH_DATA nor a cache, MNIST
    fetched from ``url`` (files with these ``checksums``)."""
    (tmp_path / "model.cnn").write_text(MODEL)
    script = ("import functools, sys\n"
              "from cnngraph.training import idx\n"
              f"idx.Download = functools.partial(idx.Download, base_url={url!r}, "
              f"checksums={checksums!r})\n"
              "from cnngraph.cli.main import main\n"
              "sys.exit(main(sys.argv[1:]))")
    env = {k: v for k, v in os.environ.items() if k != "CNNGRAPH_DATA"}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"),
               PYTHONUNBUFFERED="1")
    return subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", script, "run",
                           str(tmp_path / "model.cnn"), "--epochs", "1", "--val", "0",
                           "--no-plots", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


def test_a_first_run_under_mpiexec_fetches_mnist_once(tmp_path, mirror):  # noqa: F811
    """Rank 0 fetches (and says so), the other rank then finds MNIST in the cache."""
    url, checksums, _, requested = mirror
    done = _first_run(tmp_path, url, checksums)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("MNIST not found (") == 1
    assert done.stderr.count("MNIST is in ") == 1
    assert len(requested) == 4 and "test error" in done.stdout
    assert load_checkpoint(tmp_path / "out" / "checkpoint.npz").run["shards"] == 2


def test_a_first_run_under_mpiexec_offline_fails_on_every_rank(tmp_path):
    """Rank 0's fetch fails: every rank stops with its error, none waits for it."""
    import socket
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    done = _first_run(tmp_path, f"http://127.0.0.1:{port}/mnist/", None)
    assert done.returncode == 2
    assert "error: MNIST data not found; looked in " in done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_rank_ends_the_job_and_the_checkpoint_resumes(tmp_path, mnist):
    (tmp_path / "model.cnn").write_text(MODEL.replace("epochs = 2", "epochs = 400"))
    out = tmp_path / "killed"
    command = [MPIEXEC, "-n", "2", sys.executable, "-m", "cnngraph", "run",
               str(tmp_path / "model.cnn"), "--data", str(mnist), "--limit-train", "240",
               "--limit-test", "100", "--no-plots", "--shards", "2", "--out", str(out)]
    job = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    deadline = time.monotonic() + 60
    while not (out / "checkpoint.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    pid = _rank_pid(str(out), 1)
    assert pid is not None and job.poll() is None
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    stdout, stderr = job.communicate(timeout=60)
    assert job.returncode != 0 and time.monotonic() - killed < 30
    assert f"rank 1: {pid}" in stdout          # our banner maps the pid to its rank
    assert str(pid) in stdout + stderr          # the launcher names the lost process
    ckpt = load_checkpoint(out / "checkpoint.npz")
    assert ckpt.epoch >= 1
    resumed = _run(tmp_path, mnist, "killed", 2, "--shards", "2", "--resume", "--epochs",
                   str(ckpt.epoch + 1))
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(out / "checkpoint.npz").epoch == ckpt.epoch + 1
