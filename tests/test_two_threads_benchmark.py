"""benchmarks/two_threads.py: one thread against two, round by round, in one process."""
import statistics

import pytest
from conftest import ROOT, benchmark_module


def _two_threads(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # --side torch imports compare.py
    return benchmark_module("two_threads")


def _check_rows(rows, side):
    assert [(r["mode"], r["side"]) for r in rows] == [("train", side), ("infer", side)]
    for r in rows:
        assert len(r["pairs"]) == 3 and all(a > 0 and b > 0 for a, b in r["pairs"])
        quotients = [b / a for a, b in r["pairs"]]
        assert r["speedup_median"] == statistics.median(quotients)
        assert (r["speedup_min"], r["speedup_max"]) == (min(quotients), max(quotients))
        assert r["one"] == statistics.median(a for a, _ in r["pairs"])
        assert r["two"] == statistics.median(b for _, b in r["pairs"])


def test_cnngraph_side_alternates_one_and_two_kernel_threads(capsys, monkeypatch):
    pytest.importorskip("numba", reason="the benchmark times the numba backend's threads: "
                                        "pip install -e '.[fast]'")
    import numba
    module = _two_threads(monkeypatch)
    result = module.main(["--models", str(ROOT / "models/dlt.cnn"), "--batch", "2",
                          "--rounds", "3", "--seconds", "0.01"])
    _check_rows(result["rows"], "cnngraph")
    probes = result["machine_probe"]
    assert [p["probe"] for p in probes] == ["arithmetic", "stream 1 MiB", "stream 4 MiB",
                                            "stream 64 MiB"]
    assert [p["bytes_per_call"] for p in probes] == [0, 2 * 2**20, 8 * 2**20, 128 * 2**20]
    assert all(len(p["pairs"]) == 3 for p in probes)
    assert numba.get_num_threads() == min(2, numba.config.NUMBA_NUM_THREADS)  # the last set
    out = capsys.readouterr().out
    assert "cnngraph: float32, 3 rounds of 0.01 s per thread count" in out
    probed = [line.split() for line in out.splitlines() if line.startswith("machine: ")]
    assert [words[1:5] for words in probed][-1] == ["stream", "64", "MiB", "two"]
    assert out.count("GiB/s") == 6  # one and two threads for each streamed size
    assert out.splitlines()[-1].split()[:3] == ["dlt.cnn", "2", "infer"]


def test_steps_times_each_step_of_the_training_plan_on_both_counts(capsys, monkeypatch):
    pytest.importorskip("numba", reason="the benchmark times the numba backend's threads: "
                                        "pip install -e '.[fast]'")
    from cnngraph import compile_model
    module = _two_threads(monkeypatch)
    result = module.main(["--models", str(ROOT / "models/dlt.cnn"), "--batch", "2",
                          "--rounds", "1", "--seconds", "0.01", "--no-machine-probe",
                          "--steps", "3"])
    [found] = result["steps"]
    plan = compile_model(ROOT / "models/dlt.cnn", backend="numba").plans.gradients
    assert [r["op"] for r in found["steps"]] == [step.op for step in plan.steps]
    assert all(r["one_us"] > 0 and r["two_us"] > 0 for r in found["steps"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].split()[:4] == ["sum", "of", "the", "steps"]
    one, two = (sum(r[k] for r in found["steps"]) for k in ("one_us", "two_us"))
    assert float(lines[-1].split()[-1]) == pytest.approx(one / two, abs=0.006)


def test_torch_side_sets_and_checks_pytorch_threads(monkeypatch):
    pytest.importorskip("torch", reason="--side torch runs PyTorch: pip install -e '.[bench]'")
    module = _two_threads(monkeypatch)
    result = module.main(["--models", str(ROOT / "models/dlt.cnn"), "--batch", "2",
                          "--rounds", "3", "--seconds", "0.01", "--side", "torch"])
    _check_rows(result["rows"], "torch")
    assert result["machine_probe"] == []  # the probes time numba's threads: cnngraph's side
