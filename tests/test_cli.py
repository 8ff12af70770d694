"""The command line's contracts: help, JSON outputs, exit codes."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from cnngraph.cli.main import COMMANDS, main


@pytest.mark.parametrize("command", [c[0] for c in COMMANDS])
def test_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    assert "example:" in capsys.readouterr().out


def test_summary_json(capsys):
    assert main(["summary", "models/lenet5.cnn", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_params"] == 60_850
    c1 = data["layers"][1]
    assert c1["name"] == "C1" and c1["output"] == [6, 28, 28] and c1["macs"] == 117_600


def test_check_json(capsys):
    assert main(["check", "models/dlt.cnn", "--sample", "5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and len(data["tensors"]) == 7


def test_bench_json_profiles_every_op_and_layer(capsys):
    """The shape of bench's report (never its speed): rates, a per-op and a per-layer
    profile that each add up to the step, and the peak of live buffers beside the
    lifetimes' prediction."""
    assert main(["bench", "models/lenet5.cnn", "--batch", "1", "3", "--seconds", "0.05",
                 "--json", "--backend", "numpy"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backend"] == "numpy"
    assert [r["batch"] for r in data["results"]] == [1, 3]
    assert all(r["train_images_per_s"] > 0 and r["infer_images_per_s"] > 0
               for r in data["results"])
    ops = {(r["op"], r["pass"]) for r in data["ops"]}
    assert {("im2col", "forward"), ("add_bias+tanh", "forward"), ("conv_full", "backward"),
            ("conv_grad_kernel", "backward"), ("poly+mul", "backward")} <= ops
    layers = [r["layer"] for r in data["layers"] if r["pass"] == "forward"]
    assert layers == ["C1", "S2", "C3", "S4", "C5", "F6", "out", "L"]
    for rows in (data["ops"], data["layers"]):
        assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert data["peak_bytes"] == data["predicted_peak_bytes"] > 0
    # the machine, with the BLAS thread count bench really timed with (one: BLAS capped)
    machine = data["machine"]
    assert machine["cpu"] and machine["usable_cpus"] >= 1 and machine["versions"]["numpy"]
    assert all(pool["num_threads"] == 1 for pool in machine["blas"]
               if pool["internal_api"] in ("openblas", "mkl", "blis"))


def test_machine_facts_read_the_simd_level():
    from cnngraph.tools.machine import format_machine, machine_facts
    facts = machine_facts("model name\t: Some CPU\nflags\t\t: fpu sse4_2 avx avx2 fma "
                          "avx512f amx_tile\n")
    assert facts["cpu"] == "Some CPU"
    assert facts["simd"] == ["sse4_2", "avx", "fma", "avx2", "avx512f", "amx_tile"]
    assert "SIMD: sse4_2 avx fma avx2 avx512f amx_tile" in format_machine(facts)
    assert "cpu: Some CPU, " in format_machine(facts)  # no family or model: none printed


def test_machine_facts_name_the_cpu_generation_by_family_and_model():
    from cnngraph.tools.machine import format_machine, machine_facts
    facts = machine_facts("vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
                          "model name\t: AMD EPYC\nflags\t\t: avx512f\n")
    assert (facts["cpu"], facts["cpu_family"], facts["cpu_model"]) == ("AMD EPYC", "25", "17")
    assert format_machine(facts).startswith("cpu: AMD EPYC (family 25, model 17), ")


def test_missing_model_file_exits_2_without_traceback():
    done = subprocess.run([sys.executable, "-m", "cnngraph", "summary", "no/such.cnn"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "no/such.cnn: error: no such model file" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_flag_values_exit_2(capsys):
    assert main(["run", "models/dlt.cnn", "--epochs", "0"]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err


def _quick_run(mnist, out, *flags):
    return ["run", "models/dlt.cnn", "--data", str(mnist), "--limit-train", "200",
            "--limit-test", "50", "--out", str(out), *flags]


def test_plots_without_matplotlib_fail_before_training(monkeypatch, capsys, mnist, tmp_path):
    from cnngraph.tools import plots
    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)
    assert main(_quick_run(mnist, tmp_path / "out", "--plots", "--quiet")) == 2
    captured = capsys.readouterr()
    assert "pictures need matplotlib" in captured.err and "cnngraph[plots]" in captured.err
    assert captured.out == ""  # no test error: nothing was trained
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["--no-plots", None])
def test_without_matplotlib_no_plots_and_the_default_draw_nothing(flag, monkeypatch, capsys,
                                                                  mnist, tmp_path):
    """--no-plots never draws and never fails; the default draws only with matplotlib,
    silently."""
    from cnngraph.tools import plots
    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)
    assert main(_quick_run(mnist, tmp_path, "--quiet", *([flag] if flag else []))) == 0
    out, err = capsys.readouterr()
    assert list(tmp_path.glob("*.png")) == []
    assert out.startswith("test error ") and out.count("\n") == 1 and err == ""
    assert (tmp_path / "metrics.json").exists()


def test_quiet_run_prints_only_the_test_error(capsys, mnist, tmp_path):
    assert main(_quick_run(mnist, tmp_path, "--quiet", "--no-plots")) == 0
    out, err = capsys.readouterr()
    assert re.fullmatch(r"test error \d+\.\d\d% on 50 images\n", out) and err == ""


def test_run_prints_its_setup_epochs_result_and_files(capsys, mnist, tmp_path):
    assert main(_quick_run(mnist, tmp_path, "--no-plots", "--val", "20", "--epochs", "2")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("training models/dlt.cnn: 200 images, 2 epochs, batch 50, sgd, lr 1, "
                        "float64, seed 0, validation 20")
    assert lines[1].startswith("epoch   1  loss ") and lines[2].startswith("epoch   2  loss ")
    assert re.fullmatch(r"test error \d+\.\d\d% on 50 images", lines[3])
    assert lines[4] == "confusion (rows: true class, columns: predicted)"
    assert lines[-2] == f"wrote {tmp_path / 'metrics.json'} and {tmp_path / 'checkpoint.npz'}"
    assert lines[-1] == f"explore: python -m cnngraph explore {tmp_path}"


def test_no_shuffle_changes_the_run_and_is_recorded(mnist, tmp_path):
    """Same seed, file order instead of a permutation per epoch: other parameters."""
    from cnngraph.compiler.program import compile_model
    from cnngraph.training.checkpoint import load_checkpoint
    network_hash = compile_model("models/dlt.cnn").network_hash()
    runs = {}
    for name, flags in (("default", []), ("shuffle", ["--shuffle"]),
                        ("no_shuffle", ["--no-shuffle"])):
        out = tmp_path / name
        assert main(_quick_run(mnist, out, "--batch", "20", "--no-plots", "--quiet",
                               *flags)) == 0
        runs[name] = (json.loads((out / "metrics.json").read_text()),
                      load_checkpoint(out / "checkpoint.npz", network_hash).params)
    assert [runs[n][0]["config"]["shuffle"] for n in runs] == [True, True, False]
    for name in ("default", "shuffle", "no_shuffle"):
        assert runs[name][0]["seed"] == 0
    same = runs["default"][1], runs["shuffle"][1]
    assert all(np.array_equal(same[0][k], same[1][k]) for k in same[0])
    other = runs["no_shuffle"][1]
    assert any(not np.array_equal(same[0][k], other[k]) for k in other)
    assert runs["default"][0]["epochs"][0]["train_loss"] \
        != runs["no_shuffle"][0]["epochs"][0]["train_loss"]
