"""The ``list`` command: every registered name with its options, from the registry
the parser reads, so that what it lists is what a model file may write."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnngraph.cli.list_command import KINDS, add_list, cmd_list
from cnngraph.compiler.program import compile_model, default_registry
from cnngraph.core.errors import BuildError
from cnngraph.rules.activations import activation_choices

ROOT = Path(__file__).resolve().parents[1]
RELU = str(ROOT / "examples" / "relu.py")
TINY = ("input x : 1 x 6 x 6\n"
        "full out <- x : units=2, activation={activation}\n"
        "loss L <- out : function={loss}\n"
        "init {{\n  weights = {init}\n}}\n"
        "preprocess {{\n  pixels = {pixels}\n}}\n")


def listed(capsys, *argv) -> str:
    parser = argparse.ArgumentParser()
    add_list(parser)
    assert cmd_list(parser.parse_args(list(argv))) == 0
    return capsys.readouterr().out


def test_every_kind_is_listed_with_options_types_defaults_and_docs(capsys):
    out = listed(capsys)
    for heading in KINDS.values():
        assert heading in out
    assert "  uniform_fan_in: uniform in ±c / fan_in" in out
    assert "      c (number > 0; default 2.4): bound times fan_in" in out
    assert "      maps (integer 1..1048576; required): number of output maps" in out
    assert "      momentum (number 0..1; default 0):" in out
    assert "      per_map (true | false; default false): each input map on its own" in out
    assert "  lecun_tanh: 1.7159 tanh(2u/3)" in out and "  numba: " in out
    # a per-dimension default as a model file writes it, whatever the input's rank
    assert "      stride (integer >= 1 or [one per dimension]; default 1): " in out
    assert "      dilation (integer >= 1 or [one per dimension]; default 1): " in out


def test_json_lists_exactly_what_the_registry_holds(capsys):
    found = json.loads(listed(capsys, "--json"))
    registry = default_registry()
    names = {kind: [entry["name"] for entry in entries] for kind, entries in found.items()}
    assert list(found) == list(KINDS)
    assert names["layer"] == list(registry.layers)
    assert names["op"] == sorted(registry.ops)
    assert names["backend"] == list(registry.backends)
    assert names["activation"] == list(activation_choices(registry))
    for kind in ("loss", "init", "optimizer", "schedule", "preprocessing"):
        assert names[kind] == list(registry.choices(kind)), kind
    [sgd] = [e for e in found["optimizer"] if e["name"] == "sgd"]
    assert sgd["doc"] and {"name": "weight_decay", "type": "number >= 0", "default": 0.0,
                           "required": False,
                           "doc": "adds weight_decay · w to each gradient"} in sgd["options"]
    [conv] = [e for e in found["layer"] if e["name"] == "conv"]
    assert {"name": "bias", "type": "trainable | none", "default": "trainable",
            "required": False, "doc": "additive bias b_j"} in conv["options"]


def test_one_kind_and_a_plugins_entries(capsys):
    assert list(json.loads(listed(capsys, "init", "--json"))) == ["init"]
    without = [e["name"] for e in json.loads(listed(capsys, "activation", "--json"))["activation"]]
    found = json.loads(listed(capsys, "activation", "--json", "--ops", RELU))["activation"]
    assert "relu6" not in without and "relu6" in [e["name"] for e in found]
    assert "  relu6(u): min(max(0, u), 6) [elementwise]" in listed(capsys, "op", "--ops", RELU)


def test_the_parser_accepts_every_listed_name_and_refuses_others(capsys):
    """What ``list`` prints is what a model file may write, and nothing else."""
    found = json.loads(listed(capsys, "--json"))
    defaults = {"activation": "sigmoid", "loss": "squared_error", "init": "glorot_uniform",
                "pixels": "standardize"}
    for kind, key in (("activation", "activation"), ("loss", "loss"), ("init", "init"),
                      ("preprocessing", "pixels")):
        for entry in found[kind]:
            compile_model(TINY.format(**{**defaults, key: entry["name"]}))
        with pytest.raises(BuildError) as caught:
            compile_model(TINY.format(**{**defaults, key: "nonesuch"}))
        listed_names = [e["name"] for e in found[kind]]
        text = caught.value.message + " " + (caught.value.hint or "")
        assert all(name in text for name in listed_names if kind != "activation"), text


def test_python_m_cnngraph_list():
    done = subprocess.run([sys.executable, "-m", "cnngraph", "list", "schedule"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(KINDS["schedule"])
    assert "  piecewise: " in done.stdout and "epochs ([integer, ...]; required)" in done.stdout
