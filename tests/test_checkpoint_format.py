"""Checkpoint format 2 reads format 1: checkpoints written by cnngraph 0463f99
(tests/data/format1, see its README) load in eval, export and run --resume, give
the numbers 0463f99 gave, and a resume continues bitwise as the pinned resumes of the
same kind of machine did (0463f99's own on the Intel Xeon with AMX)."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from cnngraph.cli.main import main
from cnngraph.tools.machine import machine_facts
from cnngraph.training.checkpoint import FORMAT_VERSION, embedded_model, load_checkpoint

FORMAT1 = ROOT / "tests" / "data" / "format1"
#: fixture -> (its model file, 0463f99's eval --limit-test 500 (error, loss), the
#: fingerprints of run --resume --epochs 2 --limit-train 200 --limit-test 50 by machine
#: kind (`machine_kind`), and the backend whose eval still gives those numbers: the
#: default for dlt, NumPy's for the two tanh models, whose float32 tanh numba computes in
#: its own way since 0463f99.  A resume trains on the numba backend, which compiles for
#: the CPU it runs on, so its bits are the machine kind's: on the Intel Xeon with AMX the
#: fingerprints are 0463f99's own resumes (dlt) and those of that change's numba backend
#: (the tanh models: no backend now makes 0463f99's bits of their training in float32);
#: on the AMD EPYC Zen 4 they are this code's resumes at 9f5c702, which guard the format-1
#: path against later changes there.  learned's C3 is one to one (a connection table),
#: whose kernel gradient has summed its joined pairs alone since 384032e, in another
#: order: its Zen 4 fingerprint is e00efd4's resume (the same on 1 and 2 threads), and
#: its Xeon one (25c955dfef186e15 before) waits to be pinned again on such a machine
#: (till then the test skips there).
NUMPY = ("--backend", "numpy")
OLD = {
    "dlt": (ROOT / "models" / "dlt.cnn", (0.916, 0.4770169633274351),
            {"xeon-amx": "97be8f4a32ab1de1", "zen4": "994da4f678893089"}, ()),
    "standardize": (FORMAT1 / "standardize.cnn", (0.516, 1.5937765836715698),
                    {"xeon-amx": "52edcaa1e3d6d981", "zen4": "4bd54c144e4e6954"}, NUMPY),
    "learned": (FORMAT1 / "learned.cnn", (0.828, 2.3965060710906982),
                {"zen4": "d5ea4a830ff7d3f6"}, NUMPY),
}


def machine_kind() -> str | None:
    """The kind of machine a resume fingerprint was pinned on, or None: an Intel Xeon with
    AMX (its flags name amx_tile) or an AMD EPYC Zen 4 (family 25, model 17)."""
    facts = machine_facts()
    if "amx_tile" in facts["simd"]:
        return "xeon-amx"
    if facts["cpu"].startswith("AMD EPYC") and (facts["cpu_family"], facts["cpu_model"]) == \
            ("25", "17"):
        return "zen4"
    return None


def fingerprint(out: Path) -> str:
    """SHA-256 of every parameter and optimizer array of OUT's checkpoint and of the
    losses and errors in its metrics.json."""
    digest = hashlib.sha256()
    with np.load(out / "checkpoint.npz", allow_pickle=False) as archive:
        for key in sorted(name for name in archive.files if name != "header"):
            a = archive[key]
            digest.update(f"{key} {a.dtype} {a.shape}".encode()
                          + np.ascontiguousarray(a).tobytes())
    metrics = json.loads((out / "metrics.json").read_text())
    digest.update(json.dumps([metrics["test_error"], [
        [e["train_loss"], e["train_error"], e["val_error"]] for e in metrics["epochs"]]]).encode())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("name", OLD)
def test_format_1_loads_without_a_record(name):
    path = FORMAT1 / f"{name}.npz"
    assert path.stat().st_size < 100_000
    ckpt = load_checkpoint(path)
    assert (ckpt.version, ckpt.preprocessing, ckpt.run) == (1, None, {})
    model, again = embedded_model(path)
    assert model.network_hash() == ckpt.network_hash == again.network_hash
    assert FORMAT_VERSION == 2


@pytest.mark.parametrize("name", OLD)
def test_eval_of_format_1_gives_what_0463f99_gave(name, mnist, capsys):
    """With no constants recorded, eval computes them from the training data as before."""
    assert main(["eval", "--checkpoint", str(FORMAT1 / f"{name}.npz"), "--data", str(mnist),
                 "--limit-test", "500", "--json", *OLD[name][3]]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["test_error"], got["test_loss"]) == OLD[name][1]


def test_export_of_format_1_uses_the_constants_0463f99_used(mnist, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "standardize.onnx"
    assert main(["export", "--checkpoint", str(FORMAT1 / "standardize.npz"), "-o", str(out),
                 "--data", str(mnist)]) == 0
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["cnngraph.preprocess.pixel_scale"] == "[0.011288812139601992]"
    assert props["cnngraph.preprocess.pixel_offset"] == "[-0.5108504241748094]"


@pytest.mark.parametrize("name", OLD)
def test_resume_of_format_1_continues_bitwise(name, mnist, tmp_path, capsys):
    """dlt and standardize stopped after epoch 1, learned after 5 of 13 steps (with
    momentum); each resumed to epoch 2 ends where its pinned resume ended (0463f99's for
    dlt), and its checkpoint is then of format 2, with the constants recorded."""
    model, _, pinned, _ = OLD[name]
    shutil.copy(FORMAT1 / f"{name}.npz", tmp_path / "checkpoint.npz")
    assert main(["run", str(model), "--resume", "--epochs", "2", "--limit-train", "200",
                 "--limit-test", "50", "--no-plots", "--quiet", "--out", str(tmp_path),
                 "--data", str(mnist)]) == 0
    resumed = load_checkpoint(tmp_path / "checkpoint.npz")
    assert resumed.version == 2 and resumed.preprocessing is not None
    kind = machine_kind()
    if kind not in pinned:
        pytest.skip("no resume fingerprint pinned for this CPU (the numba backend's bits "
                    "are the CPU's); the resume ran and wrote format 2")
    got = fingerprint(tmp_path)
    assert got == pinned[kind], f"on this {kind} machine the resume gave {got}"
