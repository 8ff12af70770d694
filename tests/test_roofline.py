"""FLOPs per image and the roofline columns of ``bench`` and benchmarks/compare.py.

The counts are exact (twice the multiply-adds each op rule's ``macs`` declares; the
ops without a rule, bias additions, activations, reshapes, upsampling, count 0).
The speeds are whatever the machine gives: only the arithmetic tying images/s,
FLOPs and the peak together is checked, never a timing."""
import json

import pytest
from conftest import ROOT, benchmark_module

from cnngraph import compile_model
from cnngraph.cli.main import main
from cnngraph.tools.bench import forward_flops, step_flops

#: DeepLearnToolbox's net (models/dlt.cnn), multiply-adds per image, forward pass:
DLT_FORWARD_MACS = (
    1 * 6 * 5 * 5 * 24 * 24      # C1: 1 -> 6 maps, 5x5 taps, 24x24 outputs: 86 400
    + 6 * 24 * 24                # S2: every C1 value added once into its 2x2 block sum
    + 6 * 12 * 12                # S2: each block sum times beta = 1/4
    + 6 * 12 * 5 * 5 * 8 * 8     # C3: all 6 x 12 pairs, 5x5 taps, 8x8 outputs: 115 200
    + 12 * 8 * 8 + 12 * 4 * 4    # S4: block sums, times beta
    + 192 * 10)                  # out: 192 -> 10 units
#: ... and what a training step adds (the loss's own arithmetic has no rule):
DLT_BACKWARD_MACS = (
    2 * 192 * 10                 # out: delta W (10 x 192) and the delta into S4
    + 12 * 4 * 4                 # S4: the upsampled delta times beta (the upsample: 0)
    + 6 * 12 * 5 * 5 * 8 * 8     # C3: full convolution of delta into S2
    + 6 * 12 * 5 * 5 * 8 * 8     # C3: kernel gradient
    + 6 * 12 * 12                # S2: times beta
    + 1 * 6 * 5 * 5 * 24 * 24)   # C1: kernel gradient (the input needs no delta)
#: LeNet-5 (models/lenet5.cnn, 32x32 input), forward pass:
LENET5_FORWARD_MACS = (
    1 * 6 * 25 * 28 * 28         # C1: 117 600
    + 6 * 28 * 28 + 6 * 14 * 14  # S2: block sums, times the trainable beta per map
    + 60 * 25 * 10 * 10          # C3: the table's 60 connected pairs (6x3 + 9x4 + 1x6)
    + 16 * 10 * 10 + 16 * 5 * 5  # S4
    + 16 * 120 * 25              # C5: 5x5 maps to 1x1, every pair
    + 120 * 84 + 84 * 10)        # F6, out


def test_forward_flops_count_the_forward_ops_by_hand():
    assert DLT_FORWARD_MACS == 208_800
    assert forward_flops(compile_model(ROOT / "models/dlt.cnn")) == 2 * DLT_FORWARD_MACS
    assert forward_flops(compile_model(ROOT / "models/lenet5.cnn")) == 2 * LENET5_FORWARD_MACS


def test_step_flops_are_the_forward_and_backward_ops():
    model = compile_model(ROOT / "models/dlt.cnn")
    assert step_flops(model) == 2 * (DLT_FORWARD_MACS + DLT_BACKWARD_MACS) == 1_060_992


def _agree(rate, flops, peak, gflops, fraction):
    assert gflops == pytest.approx(rate * flops / 1e9)
    assert fraction == pytest.approx(rate * flops / peak)
    assert rate > 0 and 0 < fraction


def test_bench_json_gives_each_row_gflops_and_share_of_the_peak(capsys):
    assert main(["bench", "models/dlt.cnn", "--batch", "1", "3", "--seconds", "0.05",
                 "--threads", "1", "--json", "--backend", "numpy"]) == 0
    data = json.loads(capsys.readouterr().out)
    flops = {"train": data["step_flops_per_image"], "infer": data["forward_flops_per_image"]}
    assert flops == {"train": 1_060_992, "infer": 2 * DLT_FORWARD_MACS}
    assert set(data["gemm_flops_per_s"]) == {"1"}
    for r in data["results"]:
        for mode in ("train", "infer"):
            _agree(r[f"{mode}_images_per_s"], flops[mode],
                   data["gemm_flops_per_s"][str(r[f"{mode}_threads"])],
                   r[f"{mode}_gflops_per_s"], r[f"{mode}_peak_fraction"])


def test_bench_table_has_both_modes_roofline_columns(capsys):
    assert main(["bench", "models/dlt.cnn", "--batch", "2", "--seconds", "0.05",
                 "--threads", "1", "--backend", "numpy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("a forward pass (inference) 0.418;" in line for line in lines)
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["batch"])
    assert "training" in lines[header - 1] and "inference" in lines[header - 1]
    assert lines[header].split() == ["batch"] + ["images/s", "threads", "GFLOP/s", "peak"] * 2
    row = lines[header + 1].split()
    assert row[0] == "2" and len(row) == 9 and row[4].endswith("%") and row[8].endswith("%")


def test_compare_rows_give_every_side_gflops_and_share_of_the_peak(capsys):
    pytest.importorskip("torch", reason="benchmarks/compare.py runs PyTorch beside cnngraph: "
                                        "pip install -e '.[bench]' brings torch==2.13.0 (CPU)")
    compare = benchmark_module("compare")
    dlt = str(ROOT / "models/dlt.cnn")
    result = compare.main(["--models", dlt, "--batch", "2", "--dtype", "float32",
                           "--threads", "1", "--reps", "1", "--seconds", "0.01",
                           "--skip-epoch", "--backend", "numpy"])
    flops = {"train": 1_060_992, "infer": 2 * DLT_FORWARD_MACS}
    assert [r["mode"] for r in result["rows"]] == ["train", "infer"]
    for r in result["rows"]:
        assert r["flops_per_image"] == flops[r["mode"]]
        rates = {"cnngraph": r["cnngraph"], "torch": r["torch"], **r["torch_others"]}
        assert set(r["roofline"]) == set(rates) == (
            {"cnngraph", "torch", "inf-mode"} if r["mode"] == "infer" else {"cnngraph", "torch"})
        for side, rate in rates.items():
            _agree(rate, flops[r["mode"]], r["peak_flops_per_s"],
                   r["roofline"][side]["gflops_per_s"], r["roofline"][side]["peak_fraction"])
    out = capsys.readouterr().out
    assert "peak, a 1536x1536 matrix product in NumPy's BLAS: float32 " in out
    assert out.count("GFLOP/s, % of peak") == 2
