"""A run's preprocessing constants are recorded in its checkpoint, and eval and export
use them: a model with pixels = standardize trained on a subset (--limit-train) is
exported with the subset's mean and spread, not the whole training set's, so the
ONNX model fed images prepared as its metadata says gives cnngraph's own outputs."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import ROOT

from cnngraph.cli.main import main
from cnngraph.core.errors import DataError
from cnngraph.training.checkpoint import embedded_model, load_checkpoint
from cnngraph.training.datasets import load_data
from cnngraph.training.loop import evaluate
from cnngraph.training.preprocess import fit_preprocessing, make_splits

#: plain standardize (one mean and spread), and per map with crop and pad
STANDARDIZED = [ROOT / "models" / "mlp.cnn", ROOT / "tests" / "data" / "format1" /
                "standardize.cnn"]
SUBSET = 300


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """path -> (model, checkpoint, folder) of a one-epoch run on the first 300 images."""
    from conftest import mnist_dir
    if mnist_dir() is None:
        pytest.skip("real MNIST not found (set CNNGRAPH_DATA)")
    runs = {}
    for path in STANDARDIZED:
        out = tmp_path_factory.mktemp(path.stem)
        assert main(["run", str(path), "--epochs", "1", "--limit-train", str(SUBSET),
                     "--limit-test", "10", "--no-plots", "--quiet", "--out", str(out),
                     "--data", str(mnist_dir())]) == 0
        model, ckpt = embedded_model(out / "checkpoint.npz")
        runs[path.name] = model, ckpt, out
    return runs


def _relative_error(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def _as_the_metadata_says(raw: np.ndarray, props: dict, scale_offset=None) -> np.ndarray:
    """Images prepared from raw pixels as the ONNX file's metadata_props describe
    (crop, pixel · scale + offset in float32, a border of the offset), or with
    another ``scale_offset``."""
    top, bottom, left, right = map(int, props["cnngraph.preprocess.crop"].split(","))
    pad = int(props["cnngraph.preprocess.pad"])
    scale, offset = scale_offset or (json.loads(props["cnngraph.preprocess.pixel_scale"]),
                                     json.loads(props["cnngraph.preprocess.pixel_offset"]))
    scale = np.asarray(scale, np.float32).reshape(-1, 1, 1)
    offset = np.asarray(offset, np.float32).reshape(-1, 1, 1)
    x = raw[:, None, top:raw.shape[1] - bottom, left:raw.shape[2] - right].astype(np.float32)
    x = x * scale + offset
    framed = np.empty(x.shape[:2] + (x.shape[2] + 2 * pad, x.shape[3] + 2 * pad), np.float32)
    framed[...] = offset
    framed[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]] = x
    return framed


@pytest.mark.parametrize("path", STANDARDIZED, ids=lambda p: p.stem)
def test_export_of_a_subset_run_gives_cnngraphs_outputs(path, trained, mnist, tmp_path,
                                                        capsys):
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    model, ckpt, out = trained[path.name]
    data = load_data(mnist)
    train, _, test = make_splits(model, data, 0, np.float32, limit_train=SUBSET,
                                 limit_test=500)
    assert ckpt.preprocessing == train.preprocessing  # the subset's constants
    whole = fit_preprocessing(model.settings.preprocess, data.train_images, 255.0,
                              model.registry)
    assert whole.statistics != ckpt.preprocessing.statistics
    exported = tmp_path / "model.onnx"  # --data names no data set: none is read
    assert main(["export", "--checkpoint", str(out / "checkpoint.npz"), "-o", str(exported),
                 "--data", str(tmp_path / "absent")]) == 0
    proto = onnx.load(str(exported))
    props = {p.key: p.value for p in proto.metadata_props}
    session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    raw = data.test_images[:500]
    images = _as_the_metadata_says(raw, props)
    np.testing.assert_array_equal(images, test.images)
    params = {k: v.astype(np.float32) for k, v in ckpt.params.items()}
    want = model.forward(params, test.images)
    got = session.run(None, {"x": images})[0]
    assert _relative_error(got, want) <= 1e-5
    # the constants the whole training set gives, as export used before they were
    # recorded, miss by far more than round-off
    before = session.run(None, {"x": _as_the_metadata_says(raw, props,
                                                           whole.scale_offset(
                                                               model.registry))})[0]
    assert _relative_error(before, want) > 1e-4


@pytest.mark.parametrize("path", STANDARDIZED, ids=lambda p: p.stem)
def test_eval_prepares_images_with_the_recorded_constants(path, trained, mnist):
    """Splits made with a checkpoint's record are the run's, whatever subset of the
    training set they are made with now."""
    model, ckpt, _ = trained[path.name]
    data = load_data(mnist)
    _, _, run_test = make_splits(model, data, 0, np.float32, limit_train=SUBSET,
                                 limit_test=200)
    _, _, again = make_splits(model, data, 0, np.float32, limit_test=200,
                              preprocessing=ckpt.preprocessing)
    np.testing.assert_array_equal(again.images, run_test.images)


def test_cli_eval_uses_the_recorded_constants(trained, mnist, capsys):
    """eval of a subset run gives what the run's own test split gives, not what
    constants fitted to the whole training set would."""
    model, ckpt, out = trained["mlp.cnn"]
    assert main(["eval", "--checkpoint", str(out / "checkpoint.npz"), "--data", str(mnist),
                 "--limit-test", "200", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    _, _, test = make_splits(model, load_data(mnist), 0, np.float32, limit_train=SUBSET,
                             limit_test=200)
    params = {k: v.astype(np.float32) for k, v in ckpt.params.items()}
    error, _, loss = evaluate(model, params, test)
    assert (got["test_error"], got["test_loss"]) == (error, loss)


def test_a_record_that_is_not_the_models_is_refused(trained, mnist):
    model, ckpt, _ = trained["standardize.cnn"]
    data = load_data(mnist)
    cases = {
        "pad": dataclasses.replace(ckpt.preprocessing, pad=0),
        "crop": dataclasses.replace(ckpt.preprocessing, crop=(0, 0, 0, 0)),
        "pixels": dataclasses.replace(ckpt.preprocessing, pixels=("standardize", {})),
        "3 mean values": dataclasses.replace(ckpt.preprocessing, statistics={
            "mean": [1.0, 2.0, 3.0], "std": [1.0, 1.0, 1.0]}),
        "float pixels 0 to 1": ckpt.preprocessing,
    }
    floats = dataclasses.replace(data, train_images=data.train_images[:50] / 255.0,
                                 train_labels=data.train_labels[:50],
                                 test_images=data.test_images[:50] / 255.0,
                                 test_labels=data.test_labels[:50])
    for words, record in cases.items():
        given = floats if words.startswith("float") else data
        with pytest.raises(DataError, match=words):
            make_splits(model, given, 0, np.float32, limit_test=10, preprocessing=record)


def test_the_record_survives_the_checkpoint_exactly(trained):
    for model, ckpt, out in trained.values():
        again = load_checkpoint(out / "checkpoint.npz")
        assert again.preprocessing == ckpt.preprocessing
        for a, b in zip(again.preprocessing.scale_offset(model.registry),
                        ckpt.preprocessing.scale_offset(model.registry)):
            assert np.array_equal(a, b)
        with np.load(out / "checkpoint.npz") as archive:
            header = json.loads(archive["header"].tobytes().decode())
        assert header["format_version"] == 2
        assert header["preprocess"]["statistics"]["std"] == ckpt.preprocessing.statistics["std"]


def test_a_resume_on_another_subset_keeps_the_recorded_constants(trained, mnist, tmp_path):
    """Refitting on the new subset would change the pixels under the run's feet."""
    import shutil
    model, ckpt, out = trained["mlp.cnn"]
    again = tmp_path / "again"
    shutil.copytree(out, again)
    assert main(["run", str(STANDARDIZED[0]), "--epochs", "2", "--limit-train", "200",
                 "--limit-test", "10", "--no-plots", "--quiet", "--out", str(again),
                 "--data", str(mnist), "--resume"]) == 0
    assert load_checkpoint(again / "checkpoint.npz").preprocessing == ckpt.preprocessing
    refit = fit_preprocessing(model.settings.preprocess, load_data(mnist).train_images[:200],
                              255.0, model.registry)
    assert refit.statistics != ckpt.preprocessing.statistics  # the test can tell them apart
