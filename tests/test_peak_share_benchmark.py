"""benchmarks/peak_share.py: each round's share of the matrix-product peak timed beside it."""
import statistics

import pytest
from conftest import ROOT, benchmark_module

from cnngraph import compile_model
from cnngraph.tools.bench import forward_flops, step_flops


def test_each_round_divides_the_models_rate_by_that_rounds_peak(capsys, monkeypatch):
    pytest.importorskip("numba", reason="the benchmark times the numba backend: "
                                        "pip install -e '.[fast]'")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # it imports two_threads.py's calls
    module = benchmark_module("peak_share")
    path = str(ROOT / "models/dlt.cnn")
    result = module.main(["--models", path, "--batch", "2", "--threads", "1",
                          "--rounds", "3", "--seconds", "0.01"])
    model = compile_model(path)
    flops = {"train": step_flops(model), "infer": forward_flops(model)}
    rows = result["rows"]
    assert [(r["mode"], r["threads"], r["batch"]) for r in rows] == [("train", 1, 2),
                                                                      ("infer", 1, 2)]
    for r in rows:
        rounds = r["rounds"]
        assert len(rounds) == 3 and all(x["peak"] > 0 and x["flops_per_s"] > 0 for x in rounds)
        fractions = [x["flops_per_s"] / x["peak"] for x in rounds]
        assert r["share_median"] == statistics.median(fractions)
        assert (r["share_min"], r["share_max"]) == (min(fractions), max(fractions))
        assert r["gflops"] == pytest.approx(statistics.median(
            x["flops_per_s"] for x in rounds) / 1e9)
        assert r["images_per_s"] == pytest.approx(statistics.median(
            x["flops_per_s"] / flops[r["mode"]] for x in rounds))
    # the two modes of a round share its peak
    assert [x["peak"] for x in rows[0]["rounds"]] == [x["peak"] for x in rows[1]["rounds"]]
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].split()[:4] == ["dlt.cnn", "1", "2", "infer"]
    assert lines[-1].split()[7] == f"{rows[1]['share_median']:.1%}"
