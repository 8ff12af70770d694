"""Float pixels (issue 21, item 4): range(lo, hi) reads floats on a 0..1 scale and
refuses others, naming the array, the values found and the schemes that read them;
standardize reads any finite floats; pixels = as_is feeds pixels unchanged (scale 1,
offset 0), as a run, its checkpoint and an ONNX export record it.  Integer pixels
read as before."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cnngraph.cli.main import main
from cnngraph.compiler.program import compile_model
from cnngraph.core.errors import DataError
from cnngraph.training.checkpoint import load_checkpoint
from cnngraph.training.datasets import load_data
from cnngraph.training.idx import Dataset
from cnngraph.training.preprocess import Preprocessing, make_splits
from cnngraph.tools.export import _metadata, pixel_scale_offset

NET = """\
input x : 1 x 8 x 8
conv C1 <- x : maps=2, kernel=3, activation=lecun_tanh
full out <- C1 : units=3
loss L <- out : function=softmax_cross_entropy
"""


def model_text(pixels: str | None, pad: int = 0) -> str:
    lines = ([f"  pixels = {pixels}"] if pixels else []) + ([f"  pad = {pad}"] if pad else [])
    side = 8 + 2 * pad
    return NET.replace("1 x 8 x 8", f"1 x {side} x {side}") + ("preprocess {\n" + "\n".join(lines) + "\n}\n" if lines else "")


def blocks(n: int, low: float, high: float, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """n 8x8 images at ``low`` with a ``high`` block at a place set by the class (0..2)."""
    labels = np.arange(n) % 3
    images = np.full((n, 8, 8), low, dtype)
    for i, label in enumerate(labels):
        images[i, 2 * label:2 * label + 3, 1:6] = high
    return images, labels


def npz(path, train=(0.0, 1.0), test=None, dtype=np.float64):
    x_train, y_train = blocks(12, *train, dtype=dtype)
    x_test, y_test = blocks(6, *(test or train), dtype=dtype)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


# pixels, train range, test range (None: the train range), dtype -> the message, or None: read
CASES = {
    "0..255 floats, default range": (
        None, (0.0, 255.0), None, np.float64,
        "x_train of {data}: float pixels run from 0 to 255, but pixels = range(0, 1) (the "
        "default) reads floats on a 0 to 1 scale"),
    "standardized floats, LeNet-5 range": (
        "range(-0.1, 1.175)", (-0.5, 0.5), None, np.float32,
        "x_train of {data}: float pixels run from -0.5 to 0.5, but pixels = "
        "range(-0.1, 1.175) reads floats on a 0 to 1 scale"),
    "only the test images out of range": (
        "range(0, 1)", (0.0, 1.0), (0.0, 1.5), np.float64,
        "x_test of {data}: float pixels run from 0 to 1.5"),
    "float16 just above 1": (None, (0.0, 1.001), None, np.float16,
                             "float pixels run from 0 to 1.00098"),
    "0..1 floats, range": ("range(-0.1, 1.175)", (0.0, 1.0), None, np.float64, None),
    "0..255 floats, as_is": ("as_is", (0.0, 255.0), None, np.float64, None),
    "standardized floats, as_is": ("as_is", (-0.5, 0.5), None, np.float32, None),
    "0..255 floats, standardize": ("standardize", (0.0, 255.0), None, np.float64, None),
    "signed floats, standardize per map": ("standardize(per_map=true)", (-3.0, 7.0), None,
                                           np.float64, None),
    "integers 0..255, range": ("range(-0.1, 1.175)", (0, 255), None, np.uint8, None),
}


@pytest.mark.parametrize("case", CASES)
def test_float_pixels_are_read_by_the_models_scheme(tmp_path, capsys, case):
    pixels, train, test, dtype, message = CASES[case]
    data = npz(tmp_path / "floats.npz", train, test, dtype)
    model = compile_model(model_text(pixels))
    if message is None:
        splits = make_splits(model, load_data(data), 0, np.float64)
        assert all(np.isfinite(split.images).all() for split in splits if split is not None)
        return
    expected = message.format(data=data)
    with pytest.raises(DataError) as refused:
        make_splits(model, load_data(data), 0, np.float64)
    assert expected in refused.value.message
    assert "as_is" in refused.value.hint and "standardize" in refused.value.hint
    (tmp_path / "m.cnn").write_text(model_text(pixels))
    code = main(["run", str(tmp_path / "m.cnn"), "--data", str(data), "--out",
                 str(tmp_path / "out"), "--no-plots", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err, err
    if pixels:  # the caret is under the setting that says how to read the pixels
        assert f"m.cnn:6:3: error: {expected}" in err, err


def test_the_message_names_an_idx_file_the_manifest_lists(tmp_path):
    """IDX files hold floats too (type 0x0D); the refusal names the file."""
    images, labels = blocks(12, 0.0, 255.0, np.dtype(">f4"))

    def idx(name, array, code):
        header = bytes([0, 0, code, array.ndim]) + b"".join(
            int(d).to_bytes(4, "big") for d in array.shape)
        (tmp_path / name).write_bytes(header + array.tobytes())
    idx("images", images, 0x0D)
    idx("labels", labels.astype(np.uint8), 0x08)
    (tmp_path / "set.json").write_text(json.dumps(
        {"train_images": "images", "train_labels": "labels", "test_images": "images",
         "test_labels": "labels"}))
    with pytest.raises(DataError, match="images of .*set.json: float pixels run from 0 to 255"):
        make_splits(compile_model(NET), load_data(tmp_path / "set.json"), 0, np.float64)


def test_as_is_feeds_pixels_unchanged_and_pads_with_zero():
    images, labels = blocks(12, -0.25, 3.5)
    data = Dataset(images, labels, images[:6], labels[:6])
    train, _, test = make_splits(compile_model(model_text("as_is", pad=2)), data, 0,
                                 np.float64)
    assert np.array_equal(train.images[:, 0, 2:-2, 2:-2], images)
    assert np.array_equal(test.images[:, 0, 2:-2, 2:-2], images[:6])
    border = train.images.copy()
    border[:, :, 2:-2, 2:-2] = 0
    assert not border.any()
    integers = Dataset(*blocks(12, 0, 255, np.uint8), *blocks(6, 0, 255, np.uint8))
    train, _, _ = make_splits(compile_model(model_text("as_is")), integers, 0, np.float32)
    assert np.array_equal(train.images[:, 0], integers.train_images.astype(np.float32))
    assert train.preprocessing == Preprocessing(("as_is", {}), {}, 255.0, (0, 0, 0, 0), 0)


def test_standardize_refuses_floats_too_large_to_measure():
    images, labels = blocks(12, 0.0, 1e300)
    data = Dataset(images, labels, images, labels)
    with pytest.raises(DataError, match="the training images' std is inf: their pixels are "
                                        "too large for standardize to measure"):
        make_splits(compile_model(model_text("standardize")), data, 0, np.float64)


def test_as_is_is_its_own_network_and_exports_scale_one_offset_zero():
    as_is, default = compile_model(model_text("as_is")), compile_model(NET)
    assert as_is.network_hash() != default.network_hash()
    assert compile_model(model_text("range(0, 1)")).network_hash() == default.network_hash()
    assert pixel_scale_offset(as_is) == (1.0, 0.0)
    assert pixel_scale_offset(as_is, full_scale=1.0) == (1.0, 0.0)
    meta = _metadata(as_is, 1.0, 0.0, "x", "out")
    assert meta["cnngraph.preprocess.pixels"] == "as_is"
    assert (meta["cnngraph.preprocess.pixel_scale"],
            meta["cnngraph.preprocess.pixel_offset"]) == ("1.0", "0.0")
    assert "pixels fed as they are (as_is)" in meta["cnngraph.preprocess"]


def test_an_as_is_run_records_and_exports_its_pixels(tmp_path, capsys):
    """A run of an as_is model on standardized floats: its checkpoint records the
    scheme (no statistics, full scale 1), eval reads it back, export writes scale 1."""
    pytest.importorskip("onnx")
    data = npz(tmp_path / "signals.npz", (-0.5, 0.5))
    (tmp_path / "m.cnn").write_text(model_text("as_is"))
    out = tmp_path / "out"
    code = main(["run", str(tmp_path / "m.cnn"), "--data", str(data), "--out", str(out),
                 "--epochs", "1", "--lr", "0.01", "--no-plots", "--quiet"])
    assert code == 0, capsys.readouterr().err
    ckpt = load_checkpoint(out / "checkpoint.npz")
    assert ckpt.preprocessing == Preprocessing(("as_is", {}), {}, 1.0, (0, 0, 0, 0), 0)
    code = main(["eval", str(tmp_path / "m.cnn"), "--checkpoint", str(out / "checkpoint.npz"),
                 "--data", str(data)])
    assert code == 0, capsys.readouterr().err
    code = main(["export", str(tmp_path / "m.cnn"), "--checkpoint",
                 str(out / "checkpoint.npz"), "-o", str(tmp_path / "m.onnx")])
    assert code == 0, capsys.readouterr().err
    import onnx
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert (props["cnngraph.preprocess.pixels"], props["cnngraph.preprocess.pixel_scale"],
            props["cnngraph.preprocess.pixel_offset"]) == ("as_is", "1.0", "0.0")
