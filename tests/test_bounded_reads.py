"""Bounded reads (issue 21, item 3): a data file, image or model file is read only if
it is a regular file of a sane size, and what a header declares is checked against
the bytes that hold it before anything is allocated.  Each row is a hostile file made
in tmp_path and the message fragment its refusal must hold (the file and the field);
each is tried in-process through the library and the CLI: exit 2, no traceback."""
from __future__ import annotations

import gzip
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cnngraph.cli.main import main
from cnngraph.core.errors import DataError, ParseError
from cnngraph.language.parse import MAX_MODEL_BYTES, parse_file
from cnngraph.training.datasets import MAX_MANIFEST_BYTES, load_data
from cnngraph.training.idx import MAX_DATA_BYTES

TINY = """\
input x : 1 x 8 x 8
conv C1 <- x : maps=2, kernel=3, activation=lecun_tanh
full out <- C1 : units=3
loss L <- out : function=softmax_cross_entropy
"""


def arrays(n: int = 12) -> dict:
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (n, 8, 8), dtype=np.uint8),
            "y_train": np.arange(n) % 3,
            "x_test": rng.integers(0, 256, (6, 8, 8), dtype=np.uint8),
            "y_test": np.arange(6) % 3}


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def forged_npz(path: Path, shape: tuple, compression=zipfile.ZIP_STORED) -> Path:
    """An .npz whose x_train header declares ``shape`` (uint8) over 4 bytes of data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    header = buffer.getvalue() + bytes(4)
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, array in arrays().items():
            archive.writestr(f"{name}.npy", header if name == "x_train" else npy(array))
    return path


def declared_size(path: Path, member: str, size: int) -> Path:
    """Patch the uncompressed size the central directory declares for ``member``."""
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    while data[at + 46:at + 46 + len(member)] != member.encode():
        at = data.index(b"PK\x01\x02", at + 4)
    data[at + 24:at + 28] = size.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def npz(path: Path, compress: bool = False, **changes) -> Path:
    (np.savez_compressed if compress else np.savez)(path, **{**arrays(), **changes})
    return path


def idx(path: Path, array: np.ndarray, dims=None, packed: bool = False) -> Path:
    """An IDX file of uint8 ``array`` whose header declares ``dims`` (default its shape)."""
    dims = array.shape if dims is None else dims
    blob = bytes([0, 0, 0x08, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) \
        + array.tobytes()
    path.write_bytes(gzip.compress(blob) if packed else blob)
    return path


def manifest(folder: Path, **names) -> Path:
    """A manifest of four good IDX files, with ``names`` replacing some of them."""
    a = arrays()
    files = {"train_images": idx(folder / "ti", a["x_train"]),
             "train_labels": idx(folder / "tl", a["y_train"].astype(np.uint8)),
             "test_images": idx(folder / "si", a["x_test"]),
             "test_labels": idx(folder / "sl", a["y_test"].astype(np.uint8))}
    files.update(names)
    path = folder / "set.json"
    path.write_text(json.dumps({key: str(value) for key, value in files.items()}))
    return path


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no room on disk."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def image_folder(root: Path, odd: str) -> Path:
    """train/ and test/ of two classes of 8x8 PNGs; ``odd`` (fifo or large) is one more."""
    from PIL import Image
    for split in ("train", "test"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            Image.fromarray(np.full((8, 8), 40 * len(label), np.uint8)).save(
                root / split / label / "0.png")
    odd_file = root / "train" / "a" / "1.png"
    fifo(odd_file) if odd == "fifo" else sparse(odd_file, (1 << 26) + 1)
    return root


# name -> (make(tmp_path) -> the --data path, the fragment its refusal holds)
DATA_CASES = {
    "npz declaring 10**12 images": (
        lambda d: forged_npz(d / "huge.npz", (10 ** 12, 28, 28)),
        "huge.npz: x_train: shape (1000000000000, 28, 28) of uint8 declares 784000000000000 "
        "bytes but the archive holds 4 bytes for it"),
    "compressed npz declaring 10**12 images": (
        lambda d: forged_npz(d / "huge.npz", (10 ** 12, 28, 28), zipfile.ZIP_DEFLATED),
        "huge.npz: x_train: shape (1000000000000, 28, 28) of uint8 declares"),
    "npz member's size lie beyond deflate": (
        lambda d: declared_size(npz(d / "lie.npz", compress=True), "y_test.npy", 2 ** 32 - 1),
        "lie.npz: y_test: the archive declares 4294967295 bytes uncompressed from"),
    "npz member that is no .npy": (
        lambda d: _raw_member(d / "raw.npz"), "raw.npz: x_train: not a NumPy array (.npy)"),
    "npz that is a pipe": (lambda d: fifo(d / "pipe.npz"),
                           "pipe.npz: file: is a device, pipe or socket, not a regular file"),
    "npz above the size limit": (lambda d: sparse(d / "big.npz", MAX_DATA_BYTES + 1),
                                 f"big.npz: file: {MAX_DATA_BYTES + 1} bytes: larger than"),
    "0-d labels": (lambda d: npz(d / "scalar.npz", y_test=np.array(3)),
                   "scalar.npz: y_test: shape (): labels must be one class number per image"),
    "--data /dev/zero": (lambda d: Path("/dev/zero"),
                         "zero: file: is a device, pipe or socket, not a regular file"),
    "manifest naming /dev/zero": (
        lambda d: manifest(d, train_images="/dev/zero"),
        "zero: file: is a device, pipe or socket, not a regular file"),
    "manifest naming a folder": (lambda d: manifest(d, test_labels=d),
                                 "{d}: file: is a folder, not a regular file"),
    "manifest naming a pipe": (lambda d: manifest(d, train_labels=fifo(d / "pipe")),
                               "pipe: file: is a device, pipe or socket"),
    "manifest that is a pipe": (lambda d: fifo(d / "pipe.json"),
                                "pipe.json: file: is a device, pipe or socket"),
    "manifest above 1 MiB": (lambda d: sparse(d / "big.json", MAX_MANIFEST_BYTES + 1),
                             f"big.json: file: {MAX_MANIFEST_BYTES + 1} bytes: larger than "
                             f"the {MAX_MANIFEST_BYTES} bytes"),
    "gzip IDX declaring more than it can expand to": (
        lambda d: manifest(d, train_images=idx(d / "bomb.gz", np.zeros(0, np.uint8),
                                               (100000, 100, 100), packed=True)),
        "bomb.gz: dimensions: 100000 x 100 x 100 declares 1000000000 bytes of data, more "
        "than a"),
    "raw IDX declaring more than it holds": (
        lambda d: manifest(d, test_images=idx(d / "short", np.zeros(10, np.uint8),
                                              (6, 8, 8))),
        "short: data: truncated: expected 384 bytes of data after the header, found 10"),
    "truncated gzip IDX": (
        lambda d: manifest(d, train_labels=_cut(idx(d / "l.gz", np.zeros(12, np.uint8),
                                                    packed=True))),
        "l.gz: gzip stream: corrupt or truncated gzip data"),
    "image that is a pipe": (lambda d: image_folder(d / "images", "fifo"),
                             "train/a/1.png: image: is a device, pipe or socket"),
    "image above 64 MiB": (lambda d: image_folder(d / "images", "large"),
                           f"train/a/1.png: image: {(1 << 26) + 1} bytes: larger than"),
}


def _raw_member(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays().items():
            archive.writestr(f"{name}.npy" if name != "x_train" else name,
                             b"not an array" if name == "x_train" else npy(array))
    return path


def _cut(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:-9])
    return path


@pytest.mark.parametrize("case", DATA_CASES)
def test_hostile_data_files_are_refused_before_reading(tmp_path, capsys, case):
    make, fragment = DATA_CASES[case]
    if "image" in case:
        pytest.importorskip("PIL")
    work = tmp_path / "work"
    work.mkdir()
    data = make(work)
    fragment = fragment.replace("{d}", work.name)
    with pytest.raises(DataError) as refused:
        load_data(data)
    assert fragment in refused.value.message, refused.value.message
    (tmp_path / "tiny.cnn").write_text(TINY)
    code = main(["run", str(tmp_path / "tiny.cnn"), "--data", str(data), "--out",
                 str(tmp_path / "out"), "--no-plots", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and "Traceback" not in err, err


# name -> (make(tmp_path) -> a model file path, the fragment its refusal holds)
MODEL_CASES = {
    "/dev/zero": (lambda d: Path("/dev/zero"),
                  "/dev/zero: error: is a device, pipe or socket, not a model file"),
    "a pipe": (lambda d: fifo(d / "pipe.cnn"), "pipe.cnn: error: is a device, pipe or socket"),
    "a folder": (lambda d: d, "error: is a directory, not a model file"),
    "above 16 MiB": (lambda d: sparse(d / "big.cnn", MAX_MODEL_BYTES + 1),
                     f"big.cnn: error: {MAX_MODEL_BYTES + 1} bytes: larger than the "
                     f"{MAX_MODEL_BYTES} bytes a model file may hold"),
}


@pytest.mark.parametrize("case", MODEL_CASES)
def test_hostile_model_files_are_refused_before_reading(tmp_path, capsys, case):
    make, fragment = MODEL_CASES[case]
    path = make(tmp_path)
    with pytest.raises(ParseError) as refused:
        parse_file(path)
    assert refused.value.where == str(path)
    for command in ("summary", "check"):
        code = main([command, str(path)])
        err = capsys.readouterr().err
        assert code == 2 and fragment in err and "Traceback" not in err, (command, err)


def test_a_model_file_just_below_the_limit_is_read(tmp_path):
    """The limit is a bound, not a format: a long comment below it parses."""
    path = tmp_path / "long.cnn"
    path.write_text(TINY + "#" * (MAX_MODEL_BYTES - len(TINY) - 1) + "\n")
    assert parse_file(path).layers[-1].name == "L"


def test_arrays_that_do_not_fit_in_memory_are_named(tmp_path, monkeypatch):
    """Below the limits a file may still not fit in this machine's memory: the error
    names it (a MemoryError injected where the arrays are allocated)."""
    data = npz(tmp_path / "set.npz")
    manifest_path = manifest(tmp_path)

    def no_memory(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", no_memory)
    with pytest.raises(DataError, match="set.npz: x_train: does not fit in memory"):
        load_data(data)
    monkeypatch.setattr(np, "frombuffer", no_memory)
    with pytest.raises(DataError, match="ti: data: does not fit in memory"):
        load_data(manifest_path)
