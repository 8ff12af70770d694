"""Data in 1-D and 3-D (issue 22): the input declaration decides how arrays are read,
mismatches name both shapes, preprocessing in every rank, the synthetic volumes
(`training.synthetic`, ``make-data``), and tiny 1-D and 3-D runs through the CLI
with their pictures, eval and explorer page."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnngraph.cli.main import main
from cnngraph.compiler.program import compile_model
from cnngraph.core.errors import BuildError, DataError
from cnngraph.training.datasets import load_data, resolve_data
from cnngraph.training.idx import Dataset
from cnngraph.training.preprocess import make_splits
from cnngraph.training.synthetic import SHAPES, shapes3d

ROOT = Path(__file__).resolve().parents[1]
HEAD = "conv C1 <- x : maps=2, kernel=3\nfull out <- C1 : units=3\n" \
       "loss L <- out : function=softmax_cross_entropy\n"


def arrays(shape, n=12, seed=0) -> Dataset:
    """A random data set of ``n`` training and 6 test images of ``shape``, 3 classes."""
    rng = np.random.default_rng(seed)
    return Dataset(rng.integers(0, 256, (n, *shape), dtype=np.uint8), np.arange(n) % 3,
                   rng.integers(0, 256, (6, *shape), dtype=np.uint8), np.arange(6) % 3,
                   source="tiny.npz", names=("x_train", "y_train", "x_test", "y_test"))


def save(path: Path, data: Dataset) -> Path:
    np.savez(path, x_train=data.train_images, y_train=data.train_labels,
             x_test=data.test_images, y_test=data.test_labels)
    return path


def model(input_line: str, extra: str = ""):
    return compile_model(f"input x : {input_line}\n{HEAD}{extra}")


def splits(net, data, **options):
    return make_splits(net, data, 0, np.float64, **options)


def cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- the input declaration decides --------------------------------------------------------

def test_n_by_a_by_b_is_one_map_or_a_maps_as_the_model_says():
    data = arrays((8, 10))
    planar, _, _ = splits(model("1 x 8 x 10"), data)
    rows, _, test = splits(model("8 x 10"), data)
    assert planar.images.shape == (12, 1, 8, 10) and rows.images.shape == (12, 8, 10)
    assert test.images.shape == (6, 8, 10)
    np.testing.assert_array_equal(rows.images, planar.images[:, 0])
    np.testing.assert_array_equal(rows.images, data.train_images * (1 / 255))


@pytest.mark.parametrize("shape", [(4, 5, 6), (1, 4, 5, 6)], ids=["N-D-H-W", "N-1-D-H-W"])
def test_volumes_feed_a_3d_input_with_or_without_their_map_axis(shape):
    train, _, test = splits(model("1 x 4 x 5 x 6"), arrays(shape))
    assert train.images.shape == (12, 1, 4, 5, 6) and test.images.shape == (6, 1, 4, 5, 6)
    two, _, _ = splits(model("2 x 4 x 5 x 6"), arrays((2, 4, 5, 6)))
    assert two.images.shape == (12, 2, 4, 5, 6)


@pytest.mark.parametrize("shape, declared, fragment", [
    ((1, 8, 10), "8 x 10", "x_train of tiny.npz: shape (12, 1, 8, 10) does not fit the model's "
                           "input 8x10 (8 maps of length 10, 1-D), which reads arrays N x maps x L"),
    ((8, 10), "1 x 4 x 8 x 10", "x_train of tiny.npz: shape (12, 8, 10) does not fit the "
                                "model's input 1x4x8x10 (1 map of 4x8x10, 3-D)"),
    ((1, 4, 8, 10), "1 x 8 x 10", "shape (12, 1, 4, 8, 10) does not fit the model's input "
                                  "1x8x10 (1 map of 8x10, 2-D), which reads arrays N x H x W "
                                  "or N x maps x H x W"),
])
def test_a_rank_mismatch_names_the_array_both_shapes_and_the_input_line(shape, declared,
                                                                        fragment):
    net = model(declared)
    with pytest.raises(DataError) as exc:
        splits(net, arrays(shape))
    assert fragment in exc.value.message
    assert exc.value.span.line == 1 and exc.value.where == net.spec.file
    assert "these arrays feed an input declared" in exc.value.hint


def test_a_size_mismatch_in_1d_says_what_the_images_are():
    with pytest.raises(DataError, match="the model's input is 8x12 but the images of tiny.npz "
                                        "are 8x10 after padding by 0"):
        splits(model("8 x 12"), arrays((8, 10)))


# --- preprocessing in every rank ----------------------------------------------------------

def test_pad_borders_every_spatial_dimension_with_the_background():
    pre = "preprocess {\n  pixels = range(-0.5, 0.5)\n  pad = 2\n}\n"
    rows, _, _ = splits(model("8 x 14", pre), arrays((8, 10)))
    assert rows.images.shape == (12, 8, 14)
    assert (rows.images[:, :, :2] == -0.5).all() and (rows.images[:, :, -2:] == -0.5).all()
    volume, _, _ = splits(model("1 x 8 x 9 x 10", pre), arrays((4, 5, 6)))
    assert volume.images.shape == (12, 1, 8, 9, 10)
    inner = (slice(None), slice(None)) + (slice(2, -2),) * 3
    np.testing.assert_allclose(volume.images[inner],
                               arrays((4, 5, 6)).train_images[:, None] / 255 - 0.5)
    border = volume.images.copy()
    border[inner] = -0.5
    assert (border == -0.5).all()


def test_per_map_standardize_measures_each_1d_map():
    pre = "preprocess {\n  pixels = standardize(per_map=true)\n}\n"
    data = arrays((8, 10))
    rows, _, _ = splits(model("8 x 10", pre), data)
    assert len(rows.preprocessing.statistics["mean"]) == 8
    np.testing.assert_allclose(rows.images.mean(axis=(0, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(rows.images.std(axis=(0, 2)), 1, rtol=1e-12)
    volume, _, _ = splits(model("1 x 4 x 5 x 6", "preprocess {\n  pixels = standardize\n}\n"),
                          arrays((4, 5, 6)))
    assert abs(volume.images.mean()) < 1e-12 and np.isclose(volume.images.std(), 1)


def test_crop_off_2d_is_refused_at_its_line():
    net = model("8 x 6", "preprocess {\n  crop = [0, 0, 2, 2]\n}\n")
    with pytest.raises(DataError) as exc:
        splits(net, arrays((8, 10)))
    assert "crop [0, 0, 2, 2] cuts the top, bottom, left and right of 2-D images, but the " \
           "model's input is 8 maps of length 6, 1-D" in exc.value.message
    assert exc.value.span.line == 6


def test_augment_on_a_1d_input_is_an_error_at_its_section(tmp_path, capsys):
    source = f"input x : 8 x 10\n{HEAD}augment {{\n  rotation = 10\n}}\n"
    with pytest.raises(BuildError) as exc:
        splits(compile_model(source), arrays((8, 10)))
    assert "the augment section distorts 2-D images" in exc.value.message
    assert "8x10, 1-D" in exc.value.message and exc.value.span.line == 5
    (tmp_path / "a.cnn").write_text(source)
    code, _, err = cli(["run", tmp_path / "a.cnn", "--data", save(tmp_path / "tiny.npz",
                                                                 arrays((8, 10))),
                        "--out", tmp_path / "o", "--no-plots"], capsys)
    assert code == 2 and "a.cnn:5:1: error: the augment section distorts 2-D images" in err


# --- the synthetic volumes ----------------------------------------------------------------

def test_shapes3d_is_deterministic_balanced_and_split_by_seed():
    a, b = shapes3d(30, 10, seed=3), shapes3d(30, 10, seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["x_train"].shape == (30, 1, 16, 16, 16) and a["x_train"].dtype == np.uint8
    assert np.bincount(a["y_train"]).tolist() == [6] * len(SHAPES)
    more = shapes3d(40, 10, seed=3)   # the test set does not depend on --train
    assert np.array_equal(more["x_test"], a["x_test"]) and np.array_equal(more["y_test"],
                                                                          a["y_test"])
    other = shapes3d(30, 10, seed=4)
    assert not np.array_equal(other["x_train"], a["x_train"])
    bright = [a["x_train"][a["y_train"] == c].mean() for c in range(len(SHAPES))]
    assert min(bright) > a["x_train"].min() + 20   # every class holds a shape


def test_make_data_writes_an_npz_that_data_reads(tmp_path, capsys):
    code, out, err = cli(["make-data", "shapes3d", tmp_path, "--train", 10, "--test", 5,
                          "--seed", 2], capsys)
    assert code == 0, err
    path = tmp_path / "shapes3d.npz"
    assert str(path) in out
    data = load_data(resolve_data(str(path)))
    want = shapes3d(10, 5, seed=2)
    assert np.array_equal(data.train_images, want["x_train"])
    assert np.array_equal(data.test_labels, want["y_test"])
    code, _, err = cli(["make-data", "shapes3d", tmp_path / "x.txt"], capsys)
    assert code == 2 and "the data set is an .npz file" in err
    code, _, err = cli(["make-data", "shapes3d", tmp_path / "y.npz", "--train", 0], capsys)
    assert code == 2 and "--train 0: from 1 to" in err


def test_volumes_in_idx_files_named_by_a_manifest(tmp_path):
    """IDX holds up to 5 dimensions: N x maps x D x H x W volumes in four files."""
    arrays5 = shapes3d(10, 5, seed=1)
    for name, array in arrays5.items():
        array = array.astype(np.uint8)
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
            int(d).to_bytes(4, "big") for d in array.shape)
        (tmp_path / f"{name}.idx").write_bytes(header + array.tobytes())
    keys = {"train_images": "x_train", "train_labels": "y_train", "test_images": "x_test",
            "test_labels": "y_test"}
    (tmp_path / "v.json").write_text(json.dumps({k: f"{v}.idx" for k, v in keys.items()}))
    data = load_data(tmp_path / "v.json")
    assert np.array_equal(data.train_images, arrays5["x_train"])
    assert np.array_equal(data.test_labels, arrays5["y_test"])


def test_a_missing_synthetic_set_says_how_to_make_it():
    missing = ROOT / "examples" / "shapes3d.npz"
    if missing.exists():
        pytest.skip("examples/shapes3d.npz has been made here")
    with pytest.raises(DataError) as exc:
        resolve_data(None, "shapes3d.npz", str(ROOT / "examples" / "shapes3d.cnn"))
    assert exc.value.hint == f"make it with: python -m cnngraph make-data shapes3d {missing}"


# --- tiny runs through the CLI ------------------------------------------------------------

def run_and_eval(args, out, capsys, backend="numpy"):
    """run (pictures on) and eval of its checkpoint; the run's metrics."""
    code, _, err = cli(["run", *args, "--out", out, "--epochs", 1, "--backend", backend], capsys)
    assert code == 0, err
    pictures = {p.name for p in out.glob("*.png")}
    assert {"feature_maps.png", "kernels.png", "confusion.png"} <= pictures
    metrics = json.loads((out / "metrics.json").read_text())
    data = [a for a in args if str(a).endswith(".npz")]
    code, printed, err = cli(["eval", "--checkpoint", out / "checkpoint.npz", "--json",
                              "--backend", backend] + (["--data", data[0]] if data else []),
                             capsys)
    assert code == 0, err
    assert json.loads(printed)["test_error"] == pytest.approx(metrics["test_error"])
    return metrics


def explore(out, capsys):
    code, _, err = cli(["explore", out], capsys)
    assert code == 0, err
    html = (out / "explore.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html>")


ROWS = """input x : 28 x 28
conv    C1 <- x  : maps=4, kernel=5, bias=none
norm    B1 <- C1 : kind=batch, activation=relu
pool    P1 <- B1 : kind=max, size=2
conv    C2 <- P1 : maps=4, kernel=3, activation=relu
dropout D1 <- C2 : rate=0.25
full    out <- D1 : units=10
loss    L <- out : function=softmax_cross_entropy
"""


def test_a_1d_run_evaluates_and_explores(tmp_path, capsys):
    """A small model in the vocabulary of models/rows1d.cnn (which the shipped-model
    tests check) on MNIST-shaped arrays N x 28 x 28, read as 28 maps of length 28."""
    data = arrays((28, 28), n=96)
    digits = Dataset(data.train_images, np.arange(96) % 10, data.test_images,
                     np.arange(6) + 4, names=data.names)
    (tmp_path / "rows.cnn").write_text(ROWS)
    metrics = run_and_eval([tmp_path / "rows.cnn", "--data",
                            save(tmp_path / "digits.npz", digits), "--batch", 32],
                           tmp_path / "run", capsys)
    assert metrics["epochs"][0]["seconds"] > 0
    explore(tmp_path / "run", capsys)


def test_the_shapes3d_example_runs_and_evaluates(tmp_path, capsys):
    code, _, err = cli(["make-data", "shapes3d", tmp_path / "s.npz", "--train", 40, "--test",
                        20], capsys)
    assert code == 0, err
    metrics = run_and_eval([ROOT / "examples" / "shapes3d.cnn", "--data", tmp_path / "s.npz",
                            "--batch", 20], tmp_path / "run", capsys)
    assert len(metrics["confusion"]) == len(SHAPES)


def test_a_3d_run_explores(tmp_path, capsys):
    """The explorer page of a 3-D run (8x8x8 volumes: its gradient checks run a
    few thousand forward passes)."""
    (tmp_path / "v.cnn").write_text("input x : 1 x 8 x 8 x 8\nconv C1 <- x : maps=2, kernel=3, "
                                    "activation=relu\npool P1 <- C1 : kind=max, size=2\n"
                                    "full out <- P1 : units=5\n"
                                    "loss L <- out : function=softmax_cross_entropy\n")
    np.savez(tmp_path / "v.npz", **shapes3d(40, 20, size=8))
    run_and_eval([tmp_path / "v.cnn", "--data", tmp_path / "v.npz", "--batch", 20],
                 tmp_path / "run", capsys)
    explore(tmp_path / "run", capsys)
