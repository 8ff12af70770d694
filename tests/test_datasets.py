"""Any image data set in (training/datasets.py): .npz files, folders of class folders of
images, IDX files named in a .json file; multi-map input end to end; crop and per-map
standardisation; every malformed data set an error naming the file and the field."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnngraph.cli.main import main
from cnngraph.compiler.program import compile_model
from cnngraph.core.errors import BuildError, DataError
from cnngraph.training.datasets import load_data, load_npz, resolve_data
from cnngraph.training.idx import MNIST_FILES, load_mnist
from cnngraph.training.image_folder import load_image_folder
from cnngraph.training.preprocess import make_splits

PIL = pytest.importorskip("PIL.Image", reason="image folders need Pillow (the images extra)")


def two_maps(x: np.ndarray) -> np.ndarray:
    """Each digit twice, shifted up 2 pixels and right 2 pixels: (N, 2, 28, 28)."""
    up, right = np.zeros_like(x), np.zeros_like(x)
    up[:, :-2], right[:, :, 2:] = x[:, 2:], x[:, :, :-2]
    return np.stack([up, right], axis=1)


TINTS = np.array([(1, .3, .3), (.3, 1, .3), (.3, .3, 1)])


def tinted(image: np.ndarray, label: int) -> np.ndarray:
    """A digit drawn in its class's colour (red, green or blue by label mod 3)."""
    return (image[:, :, None] * TINTS[label % 3]).astype(np.uint8)


def write_colour_folder(root: Path, ds, n_train: int, n_test: int) -> Path:
    for split, images, labels in (("train", ds.train_images[:n_train], ds.train_labels[:n_train]),
                                  ("test", ds.test_images[:n_test], ds.test_labels[:n_test])):
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / f"digit{label}"
            folder.mkdir(parents=True, exist_ok=True)
            PIL.fromarray(tinted(image, int(label))).save(folder / f"{i:05d}.png")
    return root


def small_net(maps: int, side: int = 28, extra: str = "") -> str:
    return f"""\
input x : {maps} x {side} x {side}
conv C1 <- x : maps=6, kernel=5, activation=lecun_tanh
subsample S2 <- C1 : factor=2, beta=0.25, bias=none
conv C3 <- S2 : maps=12, kernel=5, activation=lecun_tanh
subsample S4 <- C3 : factor=2, beta=0.25, bias=none
full out <- S4 : units=10
loss L <- out : function=softmax_cross_entropy
{extra}"""


TRAIN = """train {
  epochs = 3
  batch = 20
  lr = 0.05
  optimizer = sgd(momentum=0.9)
  DATA
}"""


@pytest.fixture(scope="module")
def digits():
    from conftest import mnist_dir
    folder = mnist_dir()
    if folder is None:
        pytest.skip("real MNIST not found (set CNNGRAPH_DATA)")
    return load_mnist(folder)


def cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- (a) an .npz with two maps ------------------------------------------------------------

def test_two_map_npz_trains_through_the_cli_and_evaluates(digits, tmp_path, capsys):
    """Two shifted copies of each digit as two maps, named by the train block's data
    (relative to the model file); trains well above chance; eval reads the same."""
    np.savez(tmp_path / "shifted.npz", x_train=two_maps(digits.train_images[:2000]),
             y_train=digits.train_labels[:2000], x_test=two_maps(digits.test_images[:500]),
             y_test=digits.test_labels[:500])
    model = tmp_path / "two.cnn"
    model.write_text(small_net(2, extra=TRAIN.replace("DATA", 'data = "shifted.npz"')))
    out = tmp_path / "run"
    code, printed, err = cli(["run", str(model), "--out", str(out), "--no-plots"], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_error"] < 0.3, metrics["test_error"]  # chance: 0.9
    assert "2000 images" in printed
    code, printed, err = cli(["eval", str(model), "--checkpoint", str(out / "checkpoint.npz"),
                              "--json"], capsys)
    assert code == 0, err
    assert json.loads(printed)["test_error"] == pytest.approx(metrics["test_error"])


def test_the_data_flag_overrides_the_train_block(digits, tmp_path, capsys):
    x, y = two_maps(digits.test_images[:60]), digits.test_labels[:60]
    np.savez(tmp_path / "flag.npz", x_train=x, y_train=y, x_test=x[:20], y_test=y[:20])
    model = tmp_path / "two.cnn"
    model.write_text(small_net(2, extra=TRAIN.replace("DATA", 'data = "missing.npz"')))
    code, _, err = cli(["run", str(model), "--out", str(tmp_path / "r"), "--no-plots",
                        "--epochs", "1", "--quiet"], capsys)
    assert code == 2 and "missing.npz does not exist" in err and "train block" in err
    code, printed, err = cli(["run", str(model), "--data", str(tmp_path / "flag.npz"),
                              "--out", str(tmp_path / "r"), "--no-plots", "--epochs", "1",
                              "--quiet"], capsys)
    assert code == 0, err
    assert "on 20 images" in printed


# --- (b) a folder of colour images --------------------------------------------------------

def test_colour_image_folder_trains_evaluates_and_draws(digits, tmp_path, capsys):
    """Digits tinted by class, one PNG each in train/digitK/ and test/digitK/: a 3-map
    model trains well above chance, eval agrees, and with matplotlib the pictures
    show the input in colour and the first kernels as colour patches."""
    from cnngraph.tools import plots
    root = write_colour_folder(tmp_path / "colour", digits, 1000, 300)
    model = tmp_path / "rgb.cnn"
    model.write_text(small_net(3, extra="preprocess { pixels = standardize(per_map=true) }\n"
                               + TRAIN.replace("DATA", "")))
    out = tmp_path / "run"
    draw = plots.have_matplotlib()
    code, _, err = cli(["run", str(model), "--data", str(root), "--out", str(out),
                        "--plots" if draw else "--no-plots", "--quiet"], capsys)
    assert code == 0, err
    error = json.loads((out / "metrics.json").read_text())["test_error"]
    assert error < 0.25, error
    code, printed, err = cli(["eval", str(model), "--data", str(root), "--checkpoint",
                              str(out / "checkpoint.npz"), "--json"], capsys)
    assert code == 0, err
    assert json.loads(printed)["test_error"] == pytest.approx(error)
    if draw:
        assert {"feature_maps.png", "kernels.png"} <= {p.name for p in out.glob("*.png")}


def test_image_folder_reads_classes_maps_and_order(digits, tmp_path):
    root = write_colour_folder(tmp_path / "c", digits, 200, 50)
    ds = load_image_folder(root)
    assert ds.classes == tuple(f"digit{k}" for k in range(10))
    assert ds.train_images.shape == (200, 3, 28, 28) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (50, 3, 28, 28)
    # the pixels and labels are the digits' (in another order)
    for images, labels, source, truth in ((ds.train_images, ds.train_labels,
                                           digits.train_images[:200], digits.train_labels[:200]),
                                          (ds.test_images, ds.test_labels,
                                           digits.test_images[:50], digits.test_labels[:50])):
        assert np.bincount(labels, minlength=10).tolist() == \
            np.bincount(truth, minlength=10).tolist()
        want = sorted(tinted(img, int(k)).transpose(2, 0, 1).tobytes()
                      for img, k in zip(source, truth))
        assert sorted(img.tobytes() for img in images) == want
    # every class spread over the whole set: the first 20 and the last 20 hold all of them
    assert set(ds.train_labels[:20]) == set(range(10)) == set(ds.train_labels[-20:])


def test_grayscale_folder_is_one_map_and_mixed_modes_are_rgb(digits, tmp_path):
    for split, count in (("train", 6), ("test", 3)):
        for k in range(2):
            folder = tmp_path / "g" / split / f"c{k}"
            folder.mkdir(parents=True)
            for i in range(count):
                PIL.fromarray(digits.train_images[i]).save(folder / f"{i}.png")
    gray = load_image_folder(tmp_path / "g")
    assert gray.train_images.shape == (12, 28, 28) and gray.classes == ("c0", "c1")
    # one RGBA and one palette image join them: every image becomes 3 maps, grey ones equal
    extra = tmp_path / "g" / "train" / "c1"
    rgba = np.dstack([tinted(digits.train_images[7], 1), np.full((28, 28), 9, np.uint8)])
    PIL.fromarray(rgba, "RGBA").save(extra / "rgba.png")
    PIL.fromarray(digits.train_images[8]).convert("P").save(extra / "palette.png")
    mixed = load_image_folder(tmp_path / "g")
    assert mixed.train_images.shape == (14, 3, 28, 28)
    channels = mixed.train_images
    grey = [img for img in channels if (img[0] == img[1]).all() and (img[1] == img[2]).all()]
    assert len(grey) >= 12
    assert any((img == tinted(digits.train_images[7], 1).transpose(2, 0, 1)).all()
               for img in channels)  # alpha dropped


# --- IDX files named in a .json file -------------------------------------------------------

def test_json_names_four_idx_files(digits, tmp_path):
    from test_data import idx_bytes
    arrays = {"train_images": digits.train_images[:30], "train_labels": digits.train_labels[:30],
              "test_images": digits.test_images[:10], "test_labels": digits.test_labels[:10]}
    (tmp_path / "idx").mkdir()
    for key, array in arrays.items():
        (tmp_path / "idx" / f"my-{key}.idx").write_bytes(idx_bytes(array))
    manifest = tmp_path / "set.json"
    manifest.write_text(json.dumps({key: f"idx/my-{key}.idx" for key in arrays}))
    ds = load_data(resolve_data(str(manifest)))
    assert ds.train_images.shape == (30, 28, 28) and ds.test_labels.tolist() == \
        digits.test_labels[:10].tolist()


def test_mnist_folder_still_loads(digits):
    from conftest import mnist_dir
    ds = load_data(resolve_data(str(mnist_dir())))
    assert ds.train_images.shape == (60000, 28, 28)


# --- (c) malformed data: the file and the field, exit code 2 -------------------------------

TINY = """\
input x : 1 x 8 x 8
conv C1 <- x : maps=2, kernel=3, activation=lecun_tanh
full out <- C1 : units=3
loss L <- out : function=softmax_cross_entropy
"""


def good_arrays(n=12):
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (n, 8, 8), dtype=np.uint8),
            "y_train": np.arange(n) % 3,
            "x_test": rng.integers(0, 256, (6, 8, 8), dtype=np.uint8),
            "y_test": np.arange(6) % 3}


def npz_with(path: Path, **changes) -> Path:
    arrays = {**good_arrays(), **changes}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


NPZ_CASES = {
    "missing array": (dict(y_test=None), "y_test: missing: the archive holds x_train, "
                                         "y_train, x_test"),
    "wrong ndim": (dict(x_train=np.zeros((12, 64), np.uint8)),
                   "x_train: shape (12, 64): images must be N x H x W or N x maps x H x W"),
    "five dims": (dict(x_test=np.zeros((6, 1, 1, 8, 8), np.uint8)),
                  "x_test: shape (6, 1, 1, 8, 8)"),
    "mismatched N": (dict(y_train=np.arange(11) % 3),
                     "y_train: shape (11,): 11 labels but x_train holds 12 images"),
    "float labels": (dict(y_train=(np.arange(12) % 3).astype(float)),
                     "y_train: dtype float64: labels must be integers"),
    "negative label": (dict(y_test=np.array([0, 1, 2, -1, 0, 1])),
                       "y_test: label -1 at index 3 is negative"),
    "one-hot labels": (dict(y_train=np.eye(3, dtype=np.int64)[np.arange(12) % 3]),
                       "y_train: shape (12, 3): labels must be one class number per image"),
    "pixels out of range": (dict(x_train=np.full((12, 8, 8), 300, np.int16)),
                            "x_train: dtype int16: value 300 at index [0, 0, 0] is outside "
                            "0 to 255"),
    "not a number": (dict(x_test=np.where(np.eye(8) > 0, np.nan, 0.5)[None].repeat(6, 0),
                          x_train=np.zeros((12, 8, 8))),
                     "x_test: value nan at index [0, 0, 0]: pixels must be finite"),
    "bool pixels": (dict(x_train=np.zeros((12, 8, 8), bool)), "x_train: dtype bool"),
    "channels last": (dict(x_train=np.zeros((12, 8, 8, 3), np.uint8)),
                      "x_train: shape (12, 8, 8, 3): looks like N x H x W x maps"),
    "other size": (dict(x_test=np.zeros((6, 9, 8), np.uint8)),
                   "x_test: shape (6, 9, 8): images are 1x9x8 (maps x height x width) but "
                   "x_train's are 1x8x8"),
    "int and float": (dict(x_test=np.zeros((6, 8, 8), np.float32)),
                      "x_test: dtype float32: x_train holds integers (uint8)"),
    "object array": (dict(x_test=np.array([None] * 6, dtype=object)),
                     "x_test: an object array"),
    "no images": (dict(x_test=np.zeros((0, 8, 8), np.uint8), y_test=np.zeros(0, int)),
                  "x_test: shape (0, 8, 8): no images"),
}


@pytest.mark.parametrize("case", NPZ_CASES)
def test_malformed_npz_names_the_file_and_the_field(tmp_path, capsys, case):
    changes, fragment = NPZ_CASES[case]
    path = npz_with(tmp_path / "bad.npz", **changes)
    (tmp_path / "tiny.cnn").write_text(TINY)
    code, _, err = cli(["run", str(tmp_path / "tiny.cnn"), "--data", str(path), "--out",
                        str(tmp_path / "o"), "--no-plots", "--quiet"], capsys)
    assert code == 2
    assert f"bad.npz: {fragment}" in err, err
    assert "Traceback" not in err
    with pytest.raises(DataError) as exc:
        load_npz(path)
    assert exc.value.where == str(path)


def test_npz_that_is_not_an_archive(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip file at all")
    code, _, err = cli(["run", "models/dlt.cnn", "--data", str(bad), "--no-plots"], capsys)
    assert code == 2 and "bad.npz: file: not a readable .npz archive" in err
    np.save(tmp_path / "one.npy", np.zeros(3))
    (tmp_path / "one.npy").rename(tmp_path / "one.npz")
    with pytest.raises(DataError, match="one.npz: file: holds a single array"):
        load_npz(tmp_path / "one.npz")


def write_folder(root: Path, layout: dict) -> Path:
    """layout: relative path -> an image array, bytes (written as they are) or None (a folder)."""
    for rel, content in layout.items():
        path = root / rel
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            PIL.fromarray(content).save(path)
    return root


def _png(side=(8, 8), value=0):
    return np.full(side, value, np.uint8)


def _good_folder():
    return {"train/a/1.png": _png(), "train/a/2.png": _png(value=9), "train/b/1.png": _png(),
            "train/c/1.png": _png(), "test/a/1.png": _png(), "test/b/1.png": _png()}


def _truncated_png() -> bytes:
    import io
    buffer = io.BytesIO()
    PIL.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)).save(
        buffer, "PNG")
    return buffer.getvalue()[:60]


FOLDER_CASES = {
    "no classes": (lambda f: {k: v for k, v in f.items() if not k.startswith("train")}
                   | {"train": None}, "train: classes: no class folders"),
    "no test folder": (lambda f: {k: v for k, v in f.items() if not k.startswith("test")},
                       "test/: folder: missing"),
    "unreadable file": (lambda f: f | {"train/b/notes.png": b"not an image"},
                        "train/b/notes.png: image: cannot read (UnidentifiedImageError"),
    "truncated file": (lambda f: f | {"test/a/cut.png": _truncated_png()},
                       "test/a/cut.png: image: cannot read"),
    "mixed sizes": (lambda f: f | {"train/c/wide.png": _png((8, 9))},
                    "train/c/wide.png: size: 9x8 (width x height) but train/a/1.png is 8x8"),
    "file outside a class": (lambda f: f | {"train/stray.png": _png()},
                             "train/stray.png: file: outside a class folder"),
    "empty class": (lambda f: f | {"train/d": None}, "train/d: class: no images"),
    "unknown test class": (lambda f: f | {"test/z/1.png": _png()},
                           "test/z: class: 'z' has no folder in train/"),
    "16-bit image": (lambda f: f | {"train/a/deep.png": np.zeros((8, 8), np.uint16)},
                     "train/a/deep.png: mode: I;16 pixels"),
    "no test images": (lambda f: {k: v for k, v in f.items() if not k.startswith("test")}
                       | {"test/a": None}, "test: images: none in any class folder"),
    "folder in a class": (lambda f: f | {"train/a/sub": None},
                          "train/a/sub: folder: inside a class folder"),
}


@pytest.mark.parametrize("case", FOLDER_CASES)
def test_malformed_image_folder_names_the_file(tmp_path, capsys, case):
    change, fragment = FOLDER_CASES[case]
    root = write_folder(tmp_path / "imgs", change(_good_folder()))
    (tmp_path / "tiny.cnn").write_text(TINY)
    code, _, err = cli(["run", str(tmp_path / "tiny.cnn"), "--data", str(root), "--out",
                        str(tmp_path / "o"), "--no-plots", "--quiet"], capsys)
    assert code == 2
    assert f"imgs: error: {fragment}" in err, err
    assert "Traceback" not in err


def test_the_small_folder_reads(tmp_path):
    """The folder the malformed cases start from."""
    ds = load_image_folder(write_folder(tmp_path / "imgs", _good_folder()))
    assert ds.train_images.shape == (4, 8, 8) and ds.classes == ("a", "b", "c")
    assert sorted(ds.train_labels.tolist()) == [0, 0, 1, 2]
    assert sorted(ds.test_labels.tolist()) == [0, 1]


def test_missing_pillow_is_one_error(tmp_path, monkeypatch, capsys):
    import builtins
    real = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no PIL")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_pil)
    root = write_folder(tmp_path / "imgs", {"train/a/1.png": b"", "test/a/1.png": b""})
    with pytest.raises(DataError) as exc:
        load_image_folder(root)
    assert "Pillow" in exc.value.message and "cnngraph[images]" in exc.value.hint


MANIFEST_CASES = {
    "bad json": ("{", "set.json: JSON: line 1 column 2"),
    "not an object": ("[1]", "set.json: JSON: expected an object"),
    "missing key": (json.dumps({"train_images": "a", "train_labels": "b",
                                "test_images": "c"}), "set.json: test_labels: missing"),
    "unknown key": (json.dumps({"train_imgs": "a"}), "set.json: train_imgs: unknown key"),
    "not a name": (json.dumps({"train_images": 3, "train_labels": "b", "test_images": "c",
                               "test_labels": "d"}),
                   "set.json: train_images: expected a file name, found 3"),
    "missing file": (json.dumps({"train_images": "ti", "train_labels": "tl",
                                 "test_images": "nope", "test_labels": "sl"}),
                     "nope: file: not found"),
    "labels as images": (json.dumps({"train_images": "tl", "train_labels": "tl",
                                     "test_images": "si", "test_labels": "sl"}),
                         "tl: train_images: shape (4,): images must be"),
    "negative label": (json.dumps({"train_images": "ti", "train_labels": "signed",
                                   "test_images": "si", "test_labels": "sl"}),
                       "signed: train_labels: label -1 at index 1 is negative"),
    "float labels": (json.dumps({"train_images": "ti", "train_labels": "floats",
                                 "test_images": "si", "test_labels": "sl"}),
                     "floats: train_labels: dtype float32: labels must be integers"),
    "4-D labels": (json.dumps({"train_images": "ti", "train_labels": "tl",
                               "test_images": "si", "test_labels": "ti"}),
                   "ti: test_labels: shape (4, 8, 8): labels must be one class number"),
}


@pytest.mark.parametrize("case", MANIFEST_CASES)
def test_malformed_json_and_idx_name_the_file_and_the_field(tmp_path, capsys, case):
    from test_data import idx_bytes
    text, fragment = MANIFEST_CASES[case]
    files = {"ti": np.zeros((4, 8, 8), np.uint8), "tl": np.array([0, 1, 2, 0], np.uint8),
             "si": np.zeros((2, 8, 8), np.uint8), "sl": np.array([1, 2], np.uint8),
             "signed": np.array([0, -1, 2, 1], np.int8),
             "floats": np.array([0, 1, 2, 1], ">f4")}
    for name, array in files.items():
        (tmp_path / name).write_bytes(idx_bytes(array))
    (tmp_path / "set.json").write_text(text)
    (tmp_path / "tiny.cnn").write_text(TINY)
    code, _, err = cli(["run", str(tmp_path / "tiny.cnn"), "--data", str(tmp_path / "set.json"),
                        "--out", str(tmp_path / "o"), "--no-plots", "--quiet"], capsys)
    assert code == 2
    assert fragment in err, err
    assert "Traceback" not in err


def test_paths_that_are_no_data_set(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    for path, fragment in ((tmp_path / "gone", "--data: " + str(tmp_path / "gone") +
                            " does not exist"),
                           (tmp_path / "empty", "holds neither MNIST's IDX files (it lacks "
                            + next(iter(MNIST_FILES))),
                           (tmp_path / "notes.txt", "notes.txt: file: not a data set")):
        code, _, err = cli(["run", "models/dlt.cnn", "--data", str(path), "--no-plots"], capsys)
        assert code == 2 and fragment in err, err
        assert "--data takes a folder of MNIST's four IDX files" in err  # the hint


def test_maps_that_differ_from_the_input_are_located(digits, tmp_path, capsys):
    np.savez(tmp_path / "rgb.npz", x_train=np.zeros((10, 3, 28, 28), np.uint8),
             y_train=np.arange(10), x_test=np.zeros((5, 3, 28, 28), np.uint8),
             y_test=np.arange(5))
    (tmp_path / "two.cnn").write_text(small_net(2))
    code, _, err = cli(["run", str(tmp_path / "two.cnn"), "--data", str(tmp_path / "rgb.npz"),
                        "--no-plots", "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert f"{tmp_path / 'two.cnn'}:1:7: error: the model's input is 2x28x28 but the " \
           f"images of {tmp_path / 'rgb.npz'} are 3x28x28 after padding by 0" in err, err
    assert "hint: make the input 3 x" in err


def test_labels_with_gaps_are_classes_without_images(tmp_path, capsys):
    """A subset may lack a class: K is still the largest label + 1.  Labels numbered
    from 1 then need one output more, and the error at the loss layer says why."""
    arrays = good_arrays()
    path = npz_with(tmp_path / "gaps.npz", y_train=arrays["y_train"] * 2 + 1,
                    y_test=arrays["y_test"] * 2 + 1)  # 1, 3, 5: six classes
    ds = load_npz(path)
    model = compile_model(TINY.replace("units=3", "units=6"))
    train, _, test = make_splits(model, ds, 0, np.float32)
    assert train.targets.shape == (12, 6) and not train.targets[:, [0, 2, 4]].any()
    (tmp_path / "three.cnn").write_text(TINY)
    code, _, err = cli(["run", str(tmp_path / "three.cnn"), "--data", str(path), "--no-plots",
                        "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert ("the loss reads 3 outputs but the data has 6 classes (labels 0 to 5): some labels "
            "have no output (no image has labels 0, 2, 4: are the labels numbered from 1, or "
            "with gaps?)") in err, err


def test_classes_from_npz_labels_checked_at_the_loss_layer(tmp_path, capsys):
    path = npz_with(tmp_path / "three.npz")  # labels 0..2
    model = tmp_path / "ten.cnn"
    model.write_text(TINY.replace("units=3", "units=10"))
    code, _, err = cli(["run", str(model), "--data", str(path), "--no-plots",
                        "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert f"{model}:4:6: error: the loss reads 10 outputs but the data has 3 classes" in err


@pytest.mark.parametrize("setting, fragment", [
    ("data = 5", "option 'data' expects a path in double quotes"),
    ('data = ""', "option 'data' expects a path in double quotes"),
])
def test_data_setting_must_be_a_path(setting, fragment):
    with pytest.raises(BuildError, match=fragment):
        compile_model(TINY + f"train {{ {setting} }}\n")


# --- (d) crop and per-map standardisation -------------------------------------------------

def with_pre(maps: int, side: int, pre: str):
    return compile_model(f"input x : {maps} x {side} x {side}\n"
                         "conv C1 <- x : maps=2, kernel=3\n"
                         "full out <- C1 : units=10\n"
                         "loss L <- out : function=softmax_cross_entropy\n"
                         f"preprocess {{\n{pre}\n}}\n")


def digits_npz(digits, n=300, m=100):
    from cnngraph.training.idx import Dataset
    return Dataset(two_maps(digits.train_images[:n]), digits.train_labels[:n],
                   two_maps(digits.test_images[:m]), digits.test_labels[:m])


def test_crop_feeds_27x27_and_other_sizes(digits):
    ds = digits_npz(digits)
    model = with_pre(2, 27, "crop = [0, 1, 0, 1]")
    assert model.settings.preprocess.crop == (0, 1, 0, 1)
    train, _, test = make_splits(model, ds, 0, np.float32)
    assert train.images.shape == (300, 2, 27, 27) and test.images.shape == (100, 2, 27, 27)
    np.testing.assert_allclose(train.images, ds.train_images[:, :, :27, :27] / 255, rtol=1e-6)
    # crop = 2 on every border, then pad = 1 of background: 28 -> 24 -> 26
    model = with_pre(2, 26, "pixels = range(-1, 1)\ncrop = 2\npad = 1")
    train, _, _ = make_splits(model, ds, 0, np.float64)
    inner = ds.train_images[:, :, 2:-2, 2:-2] * (2 / 255) - 1
    np.testing.assert_allclose(train.images[:, :, 1:-1, 1:-1], inner)
    border = train.images.copy()
    border[:, :, 1:-1, 1:-1] = -1
    assert (border == -1).all()  # the pad holds what a 0 pixel maps to


def test_crop_errors(digits):
    ds = digits_npz(digits, 20, 10)
    with pytest.raises(DataError) as exc:
        make_splits(with_pre(2, 27, "crop = 1"), ds, 0, np.float32)
    assert "the model's input is 2x27x27 but the images are 2x26x26 after cropping " \
           "[1, 1, 1, 1] and padding by 0" in exc.value.message
    assert exc.value.span.line == 1
    with pytest.raises(DataError, match=r"crop \[14, 14, 0, 0\] .* leaves no pixels of the "
                                        "28x28 images"):
        make_splits(with_pre(2, 28, "crop = [14, 14, 0, 0]"), ds, 0, np.float32)
    for bad, fragment in (("crop = [1, 2]", "expects an integer or \\[top, bottom, left, "
                                            "right\\], got a list of 2"),
                          ("crop = -1", "an integer from 0 to 1024"),
                          ("crop = two", "expects an integer or")):
        with pytest.raises(BuildError, match=fragment):
            with_pre(2, 28, bad)


def test_per_map_standardisation(digits):
    """Each map's mean and spread over the (cropped) training images; the pad is
    each map's background; test images use the training statistics."""
    ds = digits_npz(digits)
    ds = type(ds)(ds.train_images.copy(), ds.train_labels, ds.test_images, ds.test_labels)
    ds.train_images[:, 1] //= 4  # the second map dimmer: its own statistics differ
    model = with_pre(2, 26, "pixels = standardize(per_map=true)\ncrop = 2\npad = 1")
    assert model.settings.preprocess.pixels == ("standardize", {"per_map": True})
    train, _, test = make_splits(model, ds, 0, np.float64)
    inner = train.images[:, :, 1:-1, 1:-1]
    np.testing.assert_allclose(inner.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(inner.std(axis=(0, 2, 3)), 1, atol=1e-12)
    cropped = ds.train_images[:, :, 2:-2, 2:-2].astype(np.float64)
    mean, std = cropped.mean(axis=(0, 2, 3)), cropped.std(axis=(0, 2, 3))
    for c in range(2):
        assert train.images[0, c, 0, 0] == pytest.approx(-mean[c] / std[c])  # background
        np.testing.assert_allclose(test.images[:, c, 1:-1, 1:-1],
                                   (ds.test_images[:, c, 2:-2, 2:-2] - mean[c]) / std[c])
    # over all maps together (plain standardize), the maps' means are not all 0
    train, _, _ = make_splits(with_pre(2, 26, "pixels = standardize\ncrop = 2\npad = 1"), ds, 0,
                              np.float64)
    means = train.images[:, :, 1:-1, 1:-1].mean(axis=(0, 2, 3))
    assert abs(means.mean()) < 1e-12 and abs(means[0] - means[1]) > 0.1


def test_per_map_false_is_plain_standardize_and_crop_is_in_the_hash():
    plain = with_pre(1, 28, "pixels = standardize")
    same = with_pre(1, 28, "pixels = standardize(per_map=false)")
    assert same.settings.preprocess.pixels == ("standardize", {})
    assert same.network_hash() == plain.network_hash()
    assert with_pre(1, 28, "pixels = standardize(per_map=true)").network_hash() != \
        plain.network_hash()
    assert with_pre(1, 27, "crop = [0, 1, 0, 1]").network_hash() != \
        with_pre(1, 27, "crop = [1, 0, 1, 0]").network_hash()


def test_float_images_are_on_a_0_to_1_scale(digits):
    """Floats are taken as 0..1: range(lo, hi) maps them as it maps uint8's 0..255."""
    from cnngraph.training.idx import Dataset
    ds = digits_npz(digits, 50, 20)
    floats = Dataset(ds.train_images / 255.0, ds.train_labels, ds.test_images / 255.0,
                     ds.test_labels)
    model = with_pre(2, 28, "pixels = range(-0.1, 1.175)")
    a = make_splits(model, ds, 0, np.float64)
    b = make_splits(model, floats, 0, np.float64)
    for x, y in zip(a, b):
        if x is not None:
            np.testing.assert_allclose(x.images, y.images, atol=1e-12)


def test_both_new_kinds_of_data_train_below_five_percent(digits, tmp_path, capsys):
    """Issue 15's bar, on real digits: a two-map .npz and a colour image folder each
    train a small net to under 5 % test error in 4 epochs (30 000 training images of
    two maps; 10 000 colour PNGs, which reach 2.2 % here, 1.2 % from 30 000: writing
    and decoding the other 20 000 PNGs cost time and proved nothing more)."""
    np.savez(tmp_path / "shifted.npz", x_train=two_maps(digits.train_images[:30000]),
             y_train=digits.train_labels[:30000], x_test=two_maps(digits.test_images[:2000]),
             y_test=digits.test_labels[:2000])
    write_colour_folder(tmp_path / "colour", digits, 10000, 2000)
    for maps, data in ((2, tmp_path / "shifted.npz"), (3, tmp_path / "colour")):
        model = tmp_path / f"net{maps}.cnn"
        model.write_text(small_net(maps, extra=TRAIN.replace("DATA", "")))
        out = tmp_path / f"run{maps}"
        # lr 0.02: at TRAIN's 0.05 the two-map net ended at 4.1-5.6 % over seeds 0-3 and
        # the two backends' roundings, too close to the bar; at 0.02 at 2.7-3.4 %
        code, _, err = cli(["run", str(model), "--data", str(data), "--out", str(out),
                            "--epochs", "4", "--lr", "0.02", "--no-plots", "--quiet"], capsys)
        assert code == 0, err
        error = json.loads((out / "metrics.json").read_text())["test_error"]
        with capsys.disabled():
            print(f"\n{maps}-map data: {100 * error:.2f} % test error")
        assert error < 0.05, (maps, error)
