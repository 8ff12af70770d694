"""Checkpoint format 2 reads format 1: checkpoints written by cnngraph 0463f99
(tests/data/format1, see its README) load in eval, export and run --resume, give
the numbers 0463f99 gave, and a resume continues bitwise as 0463f99's did."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from cnngraph.cli.main import main
from cnngraph.training.checkpoint import FORMAT_VERSION, embedded_model, load_checkpoint

FORMAT1 = ROOT / "tests" / "data" / "format1"
#: fixture -> (its model file, 0463f99's eval --limit-test 500 (error, loss), the
#: fingerprint of 0463f99's run --resume --epochs 2 --limit-train 200 --limit-test 50,
#: and the backend whose eval still gives those numbers: the default for dlt, NumPy's
#: for the two tanh models, whose float32 tanh numba computes in its own way since
#: 0463f99.  Their resume fingerprints are those of that change's numba backend: no
#: backend now makes 0463f99's bits of a tanh model's training in float32.
NUMPY = ("--backend", "numpy")
OLD = {
    "dlt": (ROOT / "models" / "dlt.cnn", (0.916, 0.4770169633274351), "97be8f4a32ab1de1", ()),
    "standardize": (FORMAT1 / "standardize.cnn", (0.516, 1.5937765836715698),
                    "52edcaa1e3d6d981", NUMPY),
    "learned": (FORMAT1 / "learned.cnn", (0.828, 2.3965060710906982), "25c955dfef186e15",
                NUMPY),
}


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
    model, _, expected, _ = OLD[name]
    shutil.copy(FORMAT1 / f"{name}.npz", tmp_path / "checkpoint.npz")
    assert main(["run", str(model), "--resume", "--epochs", "2", "--limit-train", "200",
                 "--limit-test", "50", "--no-plots", "--quiet", "--out", str(tmp_path),
                 "--data", str(mnist)]) == 0
    assert fingerprint(tmp_path) == expected
    resumed = load_checkpoint(tmp_path / "checkpoint.npz")
    assert resumed.version == 2 and resumed.preprocessing is not None
