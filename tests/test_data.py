"""Tests for cnngraph.training.idx: IDX reading, validation, locating, loading, downloading."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from cnngraph.core.errors import DataError
from cnngraph.training import idx as data
from cnngraph.training.idx import (
    MNIST_FILES,
    download_mnist,
    find_data_dir,
    load_mnist,
    load_pair,
    read_idx,
    sha256_file,
)

SHARED = Path("/work/shared/data/mnist")
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B,
         np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array as an IDX file (big-endian)."""
    big = array.astype(array.dtype.newbyteorder(">"))
    header = bytes([0, 0, CODES[big.dtype], array.ndim]) + struct.pack(f">{array.ndim}I",
                                                                         *array.shape)
    return header + big.tobytes()


def write(path: Path, payload: bytes, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def real_data_dir() -> Path | None:
    env = os.environ.get("CNNGRAPH_DATA")
    if env:
        return Path(env)
    return SHARED if SHARED.is_dir() else None


def assert_names(exc: pytest.ExceptionInfo, path: Path, field: str) -> None:
    message = str(exc.value)
    assert path.name in message, message
    assert field in message, message
    assert exc.value.where == str(path)


# --- real MNIST ----------------------------------------------------------------

def test_real_mnist_loads():
    folder = real_data_dir()
    if folder is None:
        pytest.skip("no MNIST data (set CNNGRAPH_DATA)")
    ds = load_mnist(folder)
    assert ds.train_images.shape == (60000, 28, 28) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (10000, 28, 28) and ds.test_images.dtype == np.uint8
    assert ds.train_labels.shape == (60000,) and ds.test_labels.shape == (10000,)
    assert np.bincount(ds.train_labels, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(ds.test_labels, minlength=10).tolist() == TEST_COUNTS
    assert ds.train_images.max() == 255 and ds.train_images.min() == 0
    assert abs(float(ds.test_images.mean()) - 33.7912) < 1e-3


def test_real_checksums_match_table():
    if not SHARED.is_dir():
        pytest.skip("no shared MNIST folder")
    for name in ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert sha256_file(SHARED / name) == MNIST_FILES[name]


# --- round trips ---------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_round_trip(tmp_path, compress, dtype):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = write(tmp_path / "x.idx", idx_bytes(array), compress)
    got = read_idx(path)
    assert got.shape == (3, 4, 5)
    assert got.dtype == np.dtype(dtype).newbyteorder("=") and got.dtype.isnative
    np.testing.assert_array_equal(got, array)
    got[0, 0, 0] = 0  # writable


def test_gzip_detected_by_magic_not_extension(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    path = write(tmp_path / "labels.raw", idx_bytes(labels), compress=True)
    np.testing.assert_array_equal(read_idx(path), labels)
    path = write(tmp_path / "labels.gz", idx_bytes(labels), compress=False)
    np.testing.assert_array_equal(read_idx(path), labels)


def test_one_and_four_dims(tmp_path):
    for shape in [(7,), (1, 2, 3, 4)]:
        array = np.ones(shape, dtype=np.uint8)
        assert read_idx(write(tmp_path / "a", idx_bytes(array))).shape == shape


# --- rejections ----------------------------------------------------------------

def good_images(n=4) -> bytes:
    return idx_bytes(np.zeros((n, 2, 3), dtype=np.uint8))


def test_truncated_data(tmp_path):
    path = write(tmp_path / "imgs-idx3-ubyte", good_images()[:-5], compress=True)
    with pytest.raises(DataError) as exc:
        read_idx(path)
    assert_names(exc, path, "data")
    assert "truncated: expected 24 bytes of data after the header, found 19" in str(exc.value)


def test_extra_trailing_bytes(tmp_path):
    path = write(tmp_path / "imgs", good_images() + b"\0\0")
    with pytest.raises(DataError, match="2 extra trailing bytes") as exc:
        read_idx(path)
    assert_names(exc, path, "data")


def test_wrong_magic(tmp_path):
    path = write(tmp_path / "imgs", b"\x01\x02" + good_images()[2:])
    with pytest.raises(DataError, match="not an IDX file") as exc:
        read_idx(path)
    assert_names(exc, path, "magic number")


def test_bad_dtype_code(tmp_path):
    payload = bytearray(good_images())
    payload[2] = 0x0A
    path = write(tmp_path / "imgs", bytes(payload))
    with pytest.raises(DataError, match="0x0A") as exc:
        read_idx(path)
    assert_names(exc, path, "magic number")


@pytest.mark.parametrize("ndim", [0, 6])
def test_bad_dimension_count(tmp_path, ndim):
    payload = bytearray(good_images())
    payload[3] = ndim
    path = write(tmp_path / "imgs", bytes(payload))
    with pytest.raises(DataError, match="number of dimensions") as exc:
        read_idx(path)
    assert_names(exc, path, "magic number")


def test_zero_dimension(tmp_path):
    path = write(tmp_path / "imgs", bytes([0, 0, 8, 3]) + struct.pack(">3I", 4, 2, 0))
    with pytest.raises(DataError, match="positive") as exc:
        read_idx(path)
    assert_names(exc, path, "dimension 2")


def test_absurd_size(tmp_path):
    path = write(tmp_path / "imgs", bytes([0, 0, 8, 3]) + struct.pack(">3I", 70000, 70000, 28))
    with pytest.raises(DataError, match="exceeds the limit") as exc:
        read_idx(path)
    assert_names(exc, path, "dimensions")


def test_short_header(tmp_path):
    path = write(tmp_path / "imgs", bytes([0, 0, 8, 3]) + b"\0\0\0\4")
    with pytest.raises(DataError, match="truncated") as exc:
        read_idx(path)
    assert_names(exc, path, "header")


def test_gzip_magic_with_garbage(tmp_path):
    path = write(tmp_path / "imgs.gz", b"\x1f\x8b" + b"this is not deflate data" * 4)
    with pytest.raises(DataError) as exc:
        read_idx(path)
    assert_names(exc, path, "gzip")


def test_truncated_gzip_stream(tmp_path):
    path = write(tmp_path / "imgs.gz", gzip.compress(good_images(100))[:-12])
    with pytest.raises(DataError) as exc:
        read_idx(path)
    assert_names(exc, path, "gzip")


def test_missing_file(tmp_path):
    path = tmp_path / "nope-idx1-ubyte.gz"
    with pytest.raises(DataError, match="not found") as exc:
        read_idx(path)
    assert_names(exc, path, "file")
    assert exc.value.hint


def test_label_out_of_range(tmp_path):
    imgs = write(tmp_path / "imgs", good_images(4))
    labels = write(tmp_path / "labels", idx_bytes(np.array([1, 9, 10, 12], dtype=np.uint8)))
    with pytest.raises(DataError, match="label 10 at index 2") as exc:
        load_pair(imgs, labels)
    assert_names(exc, labels, "data")
    images, got = load_pair(imgs, labels, num_classes=13)
    assert images.shape == (4, 2, 3) and got.tolist() == [1, 9, 10, 12]


def test_mismatched_counts(tmp_path):
    imgs = write(tmp_path / "imgs", good_images(4))
    labels = write(tmp_path / "labels", idx_bytes(np.zeros(3, dtype=np.uint8)))
    with pytest.raises(DataError) as exc:
        load_pair(imgs, labels)
    message = str(exc.value)
    assert "imgs" in message and "labels" in message and "4" in message and "3" in message


def test_wrong_kind_of_labels(tmp_path):
    imgs = write(tmp_path / "imgs", good_images(4))
    labels = write(tmp_path / "labels", idx_bytes(np.zeros(4, dtype=">i4")))
    with pytest.raises(DataError, match="1-D unsigned-byte") as exc:
        load_pair(imgs, labels)
    assert_names(exc, labels, "magic number")
    with pytest.raises(DataError, match="3-D unsigned-byte"):
        load_pair(labels, labels)


# --- locating and loading a folder -----------------------------------------------

def fake_mnist(folder: Path, compress: bool = True) -> Path:
    """Write four tiny MNIST-named files (canonical names, .gz or raw)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        n = 5 if name.startswith("train") else 3
        array = (np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2) if "images" in name
                 else np.arange(n, dtype=np.uint8))
        target = folder / (name if compress else name.removesuffix(".gz"))
        write(target, idx_bytes(array), compress)
    return folder


@pytest.mark.parametrize("compress", [True, False])
def test_load_mnist_small(tmp_path, compress):
    ds = load_mnist(fake_mnist(tmp_path / "d", compress))
    assert ds.train_images.shape == (5, 2, 2) and ds.test_labels.tolist() == [0, 1, 2]


def test_load_mnist_missing_file(tmp_path):
    folder = fake_mnist(tmp_path / "d")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_mnist(folder)


def test_find_data_dir_precedence(tmp_path):
    flag, env, xdg = (fake_mnist(tmp_path / n) for n in ("flag", "env", "xdg/cnngraph/mnist"))
    environ = {"CNNGRAPH_DATA": str(env), "XDG_CACHE_HOME": str(tmp_path / "xdg"),
               "HOME": str(tmp_path / "home")}
    assert find_data_dir(str(flag), environ) == flag
    assert find_data_dir(None, environ) == env
    assert find_data_dir(None, {**environ, "CNNGRAPH_DATA": str(tmp_path / "gone")}) == xdg
    del environ["CNNGRAPH_DATA"]
    assert find_data_dir(None, environ) == xdg
    home_cache = fake_mnist(tmp_path / "home/.cache/cnngraph/mnist")
    assert find_data_dir(None, {"HOME": str(tmp_path / "home")}) == home_cache


def test_find_data_dir_errors(tmp_path):
    environ = {"HOME": str(tmp_path / "home"), "CNNGRAPH_DATA": str(tmp_path / "env")}
    with pytest.raises(DataError, match="does not exist") as exc:
        find_data_dir(str(tmp_path / "missing"), environ)
    assert "missing" in str(exc.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="lacks"):
        find_data_dir(str(tmp_path / "empty"), environ)
    with pytest.raises(DataError) as exc:
        find_data_dir(None, environ)
    assert str(tmp_path / "env") in str(exc.value)
    assert str(tmp_path / "home/.cache/cnngraph/mnist") in str(exc.value)
    hint = exc.value.hint
    assert "--data DIR" in hint and "CNNGRAPH_DATA" in hint and "python -m cnngraph download" in hint


# --- downloading ---------------------------------------------------------------

@pytest.mark.parametrize("source", ["real", "synthetic"])
def test_download_accepts_good_bytes(tmp_path, monkeypatch, source):
    name = "t10k-labels-idx1-ubyte.gz"
    if source == "real":
        if not (SHARED / name).is_file():
            pytest.skip("no shared MNIST folder")
        payload = (SHARED / name).read_bytes()
        monkeypatch.setattr(data, "MNIST_FILES", {name: MNIST_FILES[name]})
    else:
        payload = gzip.compress(idx_bytes(np.arange(10, dtype=np.uint8)))
        monkeypatch.setattr(data, "MNIST_FILES", {name: hashlib.sha256(payload).hexdigest()})
    urls = []

    def fetch(url: str) -> bytes:
        urls.append(url)
        return payload

    dest = tmp_path / "dl"
    assert download_mnist(dest, base_url="https://mirror.test/mnist", fetch=fetch) == [dest / name]
    assert urls == ["https://mirror.test/mnist/" + name]
    assert (dest / name).read_bytes() == payload
    assert sorted(p.name for p in dest.iterdir()) == [name]  # no temp files left
    download_mnist(dest, fetch=fetch)  # already present and verified: no second fetch
    assert len(urls) == 1


def test_download_rejects_corrupt_payload(tmp_path, monkeypatch):
    name = "train-labels-idx1-ubyte.gz"
    monkeypatch.setattr(data, "MNIST_FILES", {name: hashlib.sha256(b"good").hexdigest()})
    dest = tmp_path / "dl"
    with pytest.raises(DataError) as exc:
        download_mnist(dest, fetch=lambda url: b"evil")
    message = str(exc.value)
    assert name in message and hashlib.sha256(b"good").hexdigest() in message
    assert hashlib.sha256(b"evil").hexdigest() in message
    assert list(dest.iterdir()) == []  # neither the final name nor a temp file


# --- the model's outputs against the data's classes (preprocess.make_splits) ----

CLASSES_MODEL = """\
input x : 1 x 8 x 8
conv C1 <- x : maps=2, kernel=3, activation=lecun_tanh
full out <- C1 : units=UNITS
loss L <- out : function=softmax_cross_entropy
"""


def digits_dataset(n: int = 40):
    """Tiny 8x8 images with labels 0..9 (10 classes), in train and test."""
    from cnngraph.training.idx import Dataset
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 8, 8), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return Dataset(images, labels, images[:20], labels[:20])


@pytest.mark.parametrize("units, fragment", [
    (768, "the loss reads 768 outputs but the data has 10 classes (labels 0 to 9): "
          "the extra outputs would never be a target"),
    (5, "the loss reads 5 outputs but the data has 10 classes (labels 0 to 9): "
        "some labels have no output"),
])
def test_outputs_must_match_the_classes_at_the_loss_layer(tmp_path, units, fragment):
    """More outputs than classes trained silently (a 768x768 confusion matrix on
    MNIST); fewer were refused without a place.  Both: an error at the loss layer."""
    from cnngraph.compiler.program import compile_model
    from cnngraph.core.errors import format_error
    from cnngraph.training.preprocess import make_splits
    path = tmp_path / "classes.cnn"
    path.write_text(CLASSES_MODEL.replace("UNITS", str(units)))
    model = compile_model(path)
    with pytest.raises(DataError) as exc:
        make_splits(model, digits_dataset(), 0, np.float32)
    error = exc.value
    assert error.message == fragment
    assert (error.span.file, error.span.line, error.span.column) == (str(path), 4, 6)
    assert error.hint == "set units=10 on 'out'"
    assert format_error(error).startswith(f"{path}:4:6: error: {fragment}\n"
                                          f"    4 | loss L <- out")


def test_outputs_equal_to_the_classes_are_accepted():
    from cnngraph.compiler.program import compile_model
    from cnngraph.training.preprocess import make_splits
    model = compile_model(CLASSES_MODEL.replace("UNITS", "10"))
    train, _, test = make_splits(model, digits_dataset(), 0, np.float32)
    assert train.targets.shape == (40, 10) and test.targets.shape == (20, 10)


def test_classes_count_the_test_labels_too():
    """Labels up to 9 only in the test set still make 10 classes."""
    from cnngraph.compiler.program import compile_model
    from cnngraph.training.idx import Dataset
    from cnngraph.training.preprocess import make_splits
    ds = digits_dataset()
    train = Dataset(ds.train_images[:9], ds.train_labels[:9], ds.test_images, ds.test_labels)
    model = compile_model(CLASSES_MODEL.replace("UNITS", "9"))
    with pytest.raises(DataError, match="the data has 10 classes"):
        make_splits(model, train, 0, np.float32)


# --- the Dataset a loader returns (any data set: tests/test_datasets.py) -------------------

def test_load_mnist_names_its_source_and_has_no_class_names(tmp_path):
    folder = fake_mnist(tmp_path / "d")
    ds = load_mnist(folder)
    assert ds.source == str(folder) and ds.classes is None
    from cnngraph.training.datasets import load_data, resolve_data
    again = load_data(resolve_data(str(folder)))
    assert again.train_images.shape == (5, 2, 2) and again.source == str(folder)


def test_make_splits_reads_maps_and_floats():
    """(N, maps, H, W) images keep their maps; floats are on a 0..1 scale."""
    from cnngraph.compiler.program import compile_model
    from cnngraph.training.idx import Dataset
    from cnngraph.training.preprocess import make_splits
    ds = digits_dataset()
    model = compile_model(CLASSES_MODEL.replace("UNITS", "10").replace("1 x 8", "2 x 8"))
    two = Dataset(np.stack([ds.train_images, 255 - ds.train_images], axis=1), ds.train_labels,
                  np.stack([ds.test_images, ds.test_images], axis=1), ds.test_labels)
    train, _, test = make_splits(model, two, 0, np.float64)
    assert train.images.shape == (40, 2, 8, 8) and test.images.shape == (20, 2, 8, 8)
    np.testing.assert_allclose(train.images[:, 1], 1 - ds.train_images / 255)
    floats = Dataset(two.train_images / 255, two.train_labels, two.test_images / 255,
                     two.test_labels)
    again, _, _ = make_splits(model, floats, 0, np.float64)
    np.testing.assert_allclose(again.images, train.images, atol=1e-12)


# --- the first run without data: fetched from a mirror on 127.0.0.1 ----------------

@pytest.fixture
def mirror(tmp_path):
    """A small MNIST-like set (four gzip IDX files under MNIST's names) served over
    HTTP on 127.0.0.1: (base URL, checksums, the arrays, the paths requested)."""
    import functools
    import http.server
    import threading
    served = tmp_path / "served" / "mnist"
    served.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {"train-images": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              "train-labels": np.arange(12, dtype=np.uint8) % 10,
              "t10k-images": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              "t10k-labels": np.arange(5, dtype=np.uint8)}
    checksums = {}
    for name in MNIST_FILES:
        payload = gzip.compress(idx_bytes(arrays[name.rsplit("-", 2)[0]]))
        (served / name).write_bytes(payload)
        checksums[name] = hashlib.sha256(payload).hexdigest()
    requested = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requested.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(served.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mnist/", checksums, arrays, requested
    finally:
        server.shutdown()
        server.server_close()


def test_the_first_run_fetches_mnist_into_the_cache(mirror, tmp_path):
    from cnngraph.training.datasets import load_data, resolve_data
    url, checksums, arrays, requested = mirror
    environ = {"HOME": str(tmp_path / "home")}
    cache = tmp_path / "home" / ".cache" / "cnngraph" / "mnist"
    said = []
    download = data.Download(said.append, base_url=url, checksums=checksums)
    assert resolve_data(None, environ=environ, download=download) == cache
    assert len(said) == 2 and "MNIST not found" in said[0] and url in said[0]
    assert str(cache) in said[0] and said[1] == f"MNIST is in {cache}"
    assert sorted(requested) == sorted(f"/mnist/{name}" for name in MNIST_FILES)
    got = load_data(cache)
    assert np.array_equal(got.train_images, arrays["train-images"])
    assert np.array_equal(got.test_labels, arrays["t10k-labels"])
    assert sorted(p.name for p in cache.iterdir()) == sorted(MNIST_FILES)  # no temporaries
    assert resolve_data(None, environ=environ, download=download) == cache  # found now
    assert len(said) == 2 and len(requested) == 4


def test_offline_the_first_run_keeps_the_not_found_error(tmp_path):
    import socket
    with socket.socket() as closed:  # a port nothing listens on: the fetch fails at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    said = []
    download = data.Download(said.append, base_url=f"http://127.0.0.1:{port}/mnist/")
    with pytest.raises(DataError) as exc:
        find_data_dir(None, {"HOME": str(tmp_path / "home")}, download)
    message = exc.value.message
    assert message.startswith("MNIST data not found; looked in ") and "failed" in message
    assert f"127.0.0.1:{port}" in message and "python -m cnngraph download" in exc.value.hint
    assert len(said) == 1
    cache = tmp_path / "home" / ".cache" / "cnngraph" / "mnist"
    assert list(cache.iterdir()) == []  # nothing half-written is left


def test_a_mirror_serving_other_bytes_is_refused(mirror, tmp_path):
    url, checksums, _, _ = mirror
    wrong = {**checksums, "t10k-images-idx3-ubyte.gz": hashlib.sha256(b"other").hexdigest()}
    download = data.Download(lambda line: None, base_url=url, checksums=wrong)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: checksum: SHA-256"):
        find_data_dir(None, {"HOME": str(tmp_path / "home")}, download)
    cache = tmp_path / "home" / ".cache" / "cnngraph" / "mnist"
    assert "t10k-images-idx3-ubyte.gz" not in {p.name for p in cache.iterdir()}


def test_local_data_named_by_the_environment_is_never_fetched(mirror, tmp_path):
    """$CNNGRAPH_DATA names local files (CI's): missing there, they stay an error, and
    without a Download nothing is fetched either."""
    url, checksums, _, requested = mirror
    download = data.Download(lambda line: None, base_url=url, checksums=checksums)
    (tmp_path / "local").mkdir()
    local = {"HOME": str(tmp_path / "home"), "CNNGRAPH_DATA": str(tmp_path / "local")}
    for environ, given in ((local, download), ({"HOME": str(tmp_path / "home")}, None)):
        with pytest.raises(DataError, match="MNIST data not found; looked in"):
            find_data_dir(None, environ, given)
    assert requested == []



@pytest.fixture
def first_run(tmp_path, monkeypatch):
    """No MNIST anywhere ($CNNGRAPH_DATA unset, HOME and XDG_CACHE_HOME in tmp_path):
    cli(url, checksums, *argv) -> (exit status, stdout, stderr) of the command line,
    MNIST fetched from ``url``; and the cache folder."""
    import functools

    from cnngraph.cli.main import main
    monkeypatch.delenv("CNNGRAPH_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    def cli(capsys, url, checksums, *argv):
        monkeypatch.setattr(data, "Download", functools.partial(
            data.Download, base_url=url, checksums=checksums))
        status = main(list(argv))
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return cli, tmp_path / "xdg" / "cnngraph" / "mnist"


MLP = str(Path(__file__).resolve().parent.parent / "models" / "mlp.cnn")


def test_run_without_data_fetches_mnist_and_trains(first_run, mirror, tmp_path, capsys):
    cli, cache = first_run
    url, checksums, arrays, requested = mirror
    argv = ["run", MLP, "--epochs", "1", "--val", "0", "--no-plots", "--out", str(tmp_path / "out")]
    status, out, err = cli(capsys, url, checksums, *argv)
    assert status == 0, err
    said = err.splitlines()
    assert said[0].startswith("MNIST not found (") and f"from {url} into {cache}" in said[0]
    assert said[1] == f"MNIST is in {cache}"
    assert sorted(requested) == sorted(f"/mnist/{name}" for name in MNIST_FILES)
    assert "training " in out and "12 images, 1 epochs" in out
    assert "test error" in out and "on 5 images" in out
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 1 and metrics["test_error"] is not None
    status, out, err = cli(capsys, url, checksums, *argv)  # found in the cache now
    assert status == 0 and "MNIST" not in err and len(requested) == 4


def test_run_without_data_offline_keeps_the_not_found_error(first_run, tmp_path, capsys):
    import socket
    cli, cache = first_run
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    status, out, err = cli(capsys, f"http://127.0.0.1:{port}/mnist/", None, "run", MLP,
                           "--epochs", "1", "--no-plots", "--out", str(tmp_path / "out"))
    assert status == 2 and out == ""
    assert err.startswith("MNIST not found (") and "error: MNIST data not found; looked in " in err
    assert f"fetching it from http://127.0.0.1:{port}/mnist/ failed" in err
    assert "python -m cnngraph download" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_sweep_without_data_fetches_mnist_first(first_run, mirror, tmp_path, capsys):
    cli, cache = first_run
    url, checksums, _, requested = mirror
    status, out, err = cli(capsys, url, checksums, "sweep", MLP, "--seed", "1", "--epochs", "1",
                           "--val", "0", "--jobs", "1", "--no-plots", "--quiet",
                           "--out", str(tmp_path / "sweep"))
    assert status == 0, out + err
    assert err.splitlines()[1] == f"MNIST is in {cache}" and len(requested) == 4
    table = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert table["fixed"]["data"] == str(cache)
    assert [row["status"] for row in table["runs"]] == ["ok"]
