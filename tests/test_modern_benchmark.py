"""benchmarks/modern_vs_torch.py in a tiny run: its one-step check against PyTorch
holds, its tables have every row, and cnngraph's 1-D and 3-D convolutions agree with
PyTorch's.  No timing is asserted (the machine decides those); the benchmark itself
is run by hand (docs/performance.md)."""
import pytest

from conftest import benchmark_module

pytest.importorskip("torch", reason="the benchmark compares with PyTorch: "
                                    "pip install -e '.[bench]' brings torch==2.13.0 (CPU)")
pytest.importorskip("numba", reason="the benchmark times the numba backend: "
                                    "pip install -e '.[fast]'")


@pytest.fixture(scope="module")
def bench():
    return benchmark_module("modern_vs_torch")


def test_checks_then_times_every_row(bench, capsys):
    result = bench.main(["--batch", "8", "16", "--threads", "1", "--reps", "2",
                         "--seconds", "0.01", "--skip-conv"])
    for dtype, found in result["check"].items():  # main asserts them too: here, they ran
        assert set(found) == set(bench.TOLERANCE[dtype])
        assert all(found[k] <= bench.TOLERANCE[dtype][k] for k in found)
    assert [(r["threads"], r["batch"]) for r in result["train"]] == [(1, 8), (1, 16)]
    for row in result["train"]:
        assert len(row["pairs"]) == 2 and all(a > 0 and b > 0 for a, b in row["pairs"])
        assert 0 < row["ratio_min"] <= row["ratio_median"] <= row["ratio_max"]
        assert row["cnngraph_gflops"] == pytest.approx(row["cnngraph"] * row["step_flops"] / 1e9)
        assert row["cnngraph_busy_threads"] >= 1 and row["torch_busy_threads"] >= 1
    out = capsys.readouterr().out
    assert "cpu: " in out and "SIMD: " in out and "kernel " in out  # the machine and BLAS
    assert out.count(": the same") == 2 and "min-max" in out


def test_convolutions_agree_and_are_timed(bench, capsys):
    shapes = [("1-D same", (3, 2, 40), 4, 3, 1), ("1-D valid", (3, 2, 40), 4, 5, 0),
              ("3-D same", (2, 2, 6, 6, 6), 3, 3, 1), ("3-D valid", (2, 2, 6, 6, 6), 3, 3, 0)]
    rows = bench.conv_rows([1], 1, 0.01, shapes)
    assert [r["conv"] for r in rows] == [s[0] for s in shapes]
    assert not [r["error"] for r in rows if "error" in r]
    assert all(r["cnngraph"] > 0 and r["torch"] > 0 for r in rows)
    assert "FAILED" not in capsys.readouterr().out
