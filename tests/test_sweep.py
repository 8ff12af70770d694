"""``sweep``: a grid of train-block settings as independent runs, in a local pool of
processes or across MPI ranks, gathered into one table.  Each run is bitwise the
``run`` with the same flags; a failed configuration is a row, not the end of the
sweep; MPI's table equals the pool's."""
import contextlib
import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import MPIEXEC, ROOT, mnist_dir, needs_mpi

from cnngraph.cli.main import main
from cnngraph.tools.plots import have_matplotlib
from cnngraph.tools.sweep import configurations, load_model, run_sweep
from cnngraph.training.checkpoint import load_checkpoint

SMALL = ["--limit-train", "300", "--limit-test", "100", "--epochs", "1"]
GRID = ["--seed", "1", "2", "--lr", "1", "0.5"]
NAMES = ["lr=1_seed=1", "lr=1_seed=2", "lr=0.5_seed=1", "lr=0.5_seed=2"]
TIMING = ("seconds", "images_per_s")


def _main(argv):
    """(exit status, stdout) of ``python -m cnngraph ARGV``, run in this process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in argv])
    return code, out.getvalue()


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The 2-seed x 2-rate sweep of DLT, in a pool of two processes."""
    data = mnist_dir()
    if data is None:
        pytest.skip("real MNIST not found (set CNNGRAPH_DATA)")
    out = tmp_path_factory.mktemp("sweep") / "pool"
    code, printed = _main(["sweep", "models/dlt.cnn", *GRID, *SMALL, "--data", data,
                           "--jobs", "2", "--out", out])
    return code, printed, out, data


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_grid_writes_one_folder_and_row_per_configuration(swept):
    code, printed, out, _ = swept
    assert code == 0
    for name in NAMES:
        assert (out / name / "metrics.json").exists() and (out / name / "checkpoint.npz").exists()
    rows = _rows(out / "sweep.csv")
    assert [r["name"] for r in rows] == NAMES
    assert [(r["seed"], r["lr"]) for r in rows] == [("1", "1.0"), ("2", "1.0"),
                                                     ("1", "0.5"), ("2", "0.5")]
    assert all(r["status"] == "ok" and r["error"] == "" for r in rows)
    data = json.loads((out / "sweep.json").read_text())
    assert [r["name"] for r in data["runs"]] == NAMES
    assert data["varying"] == ["lr", "seed"] and data["grid"]["lr"] == [1.0, 0.5]
    for run in data["runs"]:
        metrics = json.loads((out / run["name"] / "metrics.json").read_text())
        assert run["test_error"] == metrics["test_error"]
        assert run["train_loss"] == metrics["epochs"][-1]["train_loss"]
        assert run["seconds"] > 0
    assert (out / "sweep.png").exists() == have_matplotlib()
    for name in NAMES:
        assert name in printed
    assert "test error over seeds" in printed


def test_summary_has_median_min_max_over_seeds(swept):
    _, _, out, _ = swept
    runs = json.loads((out / "sweep.json").read_text())["runs"]
    summary = json.loads((out / "sweep.json").read_text())["summary"]
    assert [s["name"] for s in summary] == ["lr=1", "lr=0.5"]
    for s in summary:
        errors = sorted(r["test_error"] for r in runs if r["lr"] == s["lr"])
        assert s["runs"] == s["ok"] == 2 and s["seeds"] == [1, 2]
        assert s["test_error_median"] == pytest.approx((errors[0] + errors[1]) / 2)
        assert (s["test_error_min"], s["test_error_max"]) == (errors[0], errors[1])
    rows = _rows(out / "summary.csv")
    assert [(r["name"], r["runs"], r["seeds"]) for r in rows] == [("lr=1", "2", "1 2"),
                                                                  ("lr=0.5", "2", "1 2")]


def test_each_run_is_bitwise_the_plain_run(swept, tmp_path):
    _, _, out, data = swept
    for name, seed, lr in [("lr=1_seed=1", 1, 1), ("lr=1_seed=2", 2, 1),
                           ("lr=0.5_seed=1", 1, 0.5), ("lr=0.5_seed=2", 2, 0.5)]:
        plain = tmp_path / name
        code, _ = _main(["run", "models/dlt.cnn", "--seed", seed, "--lr", lr, *SMALL,
                         "--data", data, "--no-plots", "--quiet", "--out", plain,
                         "--threads", 1])  # a sweep runs each job on one thread
        assert code == 0
        got, want = (json.loads((d / "metrics.json").read_text()) for d in (out / name, plain))
        for metrics in (got, want):
            for epoch in metrics["epochs"]:
                for key in TIMING:
                    epoch.pop(key)
        assert got == want, name
        a, b = (load_checkpoint(d / "checkpoint.npz").params for d in (out / name, plain))
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k], b[k]) for k in a), name


def test_a_diverged_configuration_is_reported_and_the_others_finish(tmp_path, mnist):
    """LeNet-5 at rate 1e9 diverges (its loss turns NaN); the sweep goes on, tabulates
    the point as diverged with its message and exits 0: a diverged point is a result
    of the grid, not a failure of the sweep."""
    out = tmp_path / "sweep"
    code, printed = _main(["sweep", "models/lenet5.cnn", "--lr", "0.01", "1e9", *SMALL,
                           "--data", mnist, "--jobs", "2", "--no-plots", "--out", out])
    assert code == 0
    rows = {r["name"]: r for r in _rows(out / "sweep.csv")}
    assert rows.keys() == {"lr=0.01", "lr=1e09"}
    assert rows["lr=0.01"]["status"] == "ok" and float(rows["lr=0.01"]["test_error"]) < 1
    assert rows["lr=1e09"]["status"] == "diverged" and rows["lr=1e09"]["test_error"] == ""
    assert "NaN or infinite" in rows["lr=1e09"]["error"]
    assert (out / "lr=0.01" / "metrics.json").exists()
    assert "1 of 2 configurations diverged" in printed and "lower the learning rate" in printed
    summary = json.loads((out / "sweep.json").read_text())["summary"]
    assert [(s["name"], s["ok"], s["test_error_median"]) for s in summary][1] == \
        ("lr=1e09", 0, None)


def test_a_failed_configuration_is_reported_and_the_others_finish(tmp_path, mnist):
    """A batch of 10⁹ fails its run's memory check inside the worker: the sweep goes
    on, tabulates the failure with its message and exits 1."""
    out = tmp_path / "sweep"
    code, printed = _main(["sweep", "models/mlp.cnn", "--batch", "20", "1000000000", *SMALL,
                           "--data", mnist, "--jobs", "2", "--no-plots", "--out", out])
    assert code == 1
    rows = {r["name"]: r for r in _rows(out / "sweep.csv")}
    assert rows["batch=20"]["status"] == "ok"
    assert rows["batch=1000000000"]["status"] == "failed"
    assert "needs about" in rows["batch=1000000000"]["error"]
    assert "1 of 2 configurations failed" in printed


def test_wrong_values_are_refused_before_any_run(tmp_path, capsys):
    for flags, message in ((["--lr", "0.01", "1e-2"], "--lr lists 0.01 twice"),
                           (["--seed", "-1"], "--seed values must be from 0"),
                           (["--optimizer", "sgd(momentum=5)"], "expects a number <= 1"),
                           (["--optimizer", "adagrad"], "unknown 'adagrad'")):
        assert main(["sweep", "models/dlt.cnn", *flags, "--out", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_names_order_and_optimizers_of_the_grid():
    model = load_model("models/dlt.cnn")
    found = configurations(model, {"seed": [3, 1], "optimizer": ["sgd", "sgd(momentum=0.9)"],
                                   "batch": [10]})
    assert [c.name for c in found] == ["optimizer=sgd_seed=3", "optimizer=sgd_seed=1",
                                       "optimizer=sgd-momentum=0.9_seed=3",
                                       "optimizer=sgd-momentum=0.9_seed=1"]
    assert [c.group for c in found] == ["optimizer=sgd"] * 2 + ["optimizer=sgd-momentum=0.9"] * 2
    assert found[2].overrides == {"seed": 3, "optimizer": ("sgd", {"momentum": 0.9}),
                                  "batch": 10}
    assert found[2].settings["optimizer"] == "sgd(momentum=0.9)"
    assert all(c.settings["batch"] == 10 and c.settings["lr"] == 1.0 for c in found)
    assert [c.name for c in configurations(model, {"lr": [0.5]})] == ["run"]


def test_stopping_drops_the_runs_not_started(tmp_path, mnist):
    """should_stop (Ctrl-C in the CLI) cancels what has not started; started runs stop
    between two steps with their checkpoint; the table is still written."""
    events = []
    result = run_sweep("models/dlt.cnn", {"seed": [1, 2, 3, 4, 5, 6]}, tmp_path, data=str(mnist),
                       limit_train=300, limit_test=100, plots=False, jobs=2,
                       report=events.append, should_stop=lambda: True)
    assert result.interrupted
    statuses = [r["status"] for r in result.rows]
    assert set(statuses) <= {"ok", "interrupted", "not run"} and "not run" in statuses
    assert len(events) == 7  # started, then one per configuration
    assert len(_rows(tmp_path / "sweep.csv")) == 6


@needs_mpi
def test_under_mpiexec_the_table_is_the_pools(swept, tmp_path):
    _, _, pool, data = swept
    out = tmp_path / "mpi"
    command = [MPIEXEC, "-n", "3", sys.executable, "-m", "cnngraph", "sweep", "models/dlt.cnn",
               *GRID, *SMALL, "--data", str(data), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT,
                          check=False, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr
    assert "on 2 MPI ranks" in done.stdout
    assert done.stdout.count("test error over seeds") == 1  # rank 0 alone prints
    got, want = (json.loads((d / "sweep.json").read_text()) for d in (out, pool))
    for table in (got, want):
        for run in table["runs"]:
            run.pop("seconds")
    assert got["runs"] == want["runs"] and got["summary"] == want["summary"]
    for name in NAMES:
        assert (out / name / "checkpoint.npz").exists()
