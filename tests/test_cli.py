"""The command line's contracts: help, JSON outputs, exit codes."""
import json
import subprocess
import sys

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
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
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


def test_missing_model_file_exits_2_without_traceback():
    done = subprocess.run([sys.executable, "-m", "cnngraph", "summary", "no/such.cnn"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "no/such.cnn: error: no such model file" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_flag_values_exit_2(capsys):
    assert main(["run", "models/dlt.cnn", "--epochs", "0"]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err
