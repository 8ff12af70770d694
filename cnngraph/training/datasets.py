"""Data sources: where a data set is, and reading it into a checked `Dataset`.

``--data PATH`` (or ``data = "PATH"`` in the train block) is one of

* a folder holding MNIST's four IDX files (their canonical names, ``.gz`` or not);
* a ``.json`` file naming four IDX files (``train_images``, ``train_labels``,
  ``test_images``, ``test_labels``; relative to the JSON file's folder);
* an ``.npz`` file holding ``x_train``, ``y_train``, ``x_test`` and ``y_test``;
* a folder with ``train/`` and ``test/`` subfolders, each holding one folder of
  images per class (read with Pillow, the ``images`` extra; `image_folder`).

Images are ``N x H x W`` (one map) or ``N x maps x H x W``; 1-D signals ``N x maps x L``
and 3-D volumes ``N x [maps x] D x H x W`` (the model's input declaration says which
an array is: `preprocess.input_layout`): integers 0..255
(uint8, or any integer type whose values fit) or finite floats (how the model reads
those is its ``pixels``: `preprocess`).  Every file is read only if it is a regular
file of a sane size, and an array's declared size is checked against the bytes
that hold it before anything is allocated.  Labels are integers 0..K-1 and K, the number of classes, is the
largest label + 1 (a number below it that no image carries is allowed: a subset
may lack a class).  Anything malformed is an error whose message names the file
and the field (array, shape, dtype, label), and nothing here prints.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

from ..core.errors import DataError
from .idx import (
    MAX_DATA_BYTES,
    Dataset,
    Download,
    _fail,
    _missing,
    find_data_dir,
    load_mnist,
    read_idx,
    regular_file,
)
from .image_folder import load_image_folder
from .synthetic import SETS as SYNTHETIC

__all__ = ["Dataset", "FORMS", "NPZ_ARRAYS", "MANIFEST_KEYS", "resolve_data", "load_data",
           "load_npz", "load_manifest", "check_dataset", "check_npz_member"]

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
MANIFEST_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
#: The largest JSON manifest read (it names four files: a few hundred bytes).
MAX_MANIFEST_BYTES = 1 << 20
_OBJECTS = "an object array (Python objects, which are not unpickled); store numbers"
#: The most deflate expands its input (1032 to 1), with room for the member's header.
_DEFLATE_RATIO = 1040
FORMS = ("--data takes a folder of MNIST's four IDX files, a .json file naming four IDX "
         "files, an .npz file with x_train, y_train, x_test and y_test, or a folder with "
         "train/ and test/ folders of images, one folder per class")


# --- where the data is ---------------------------------------------------------------

def resolve_data(flag: str | None, setting: str | None = None, model_file: str | None = None,
                 environ: Mapping[str, str] | None = None,
                 download: Download | None = None) -> Path:
    """The data set to read: ``--data`` (relative to the working folder), else the train
    block's ``data`` (relative to the model file's folder), else MNIST in
    $CNNGRAPH_DATA or the per-user cache (`find_data_dir`), fetched into the cache
    with ``download`` when it is found nowhere."""
    if flag:
        path, origin = Path(flag).expanduser(), "--data"
    elif setting:
        path = Path(setting).expanduser()
        if not path.is_absolute() and model_file and Path(model_file).is_file():
            path = Path(model_file).parent / path
        origin = f"the train block's data (in {model_file})" if model_file else "data"
    else:
        return find_data_dir(None, environ, download)
    if not path.exists():
        made = path.suffix == ".npz" and path.stem in SYNTHETIC
        raise DataError(f"{origin}: {path} does not exist", where=str(path),
                        hint=f"make it with: python -m cnngraph make-data {path.stem} {path}"
                        if made else FORMS)
    if path.is_dir():
        if (path / "train").is_dir() or (path / "test").is_dir():
            return path
        missing = _missing(path)
        if missing:
            raise DataError(f"{origin}: the folder {path} holds neither MNIST's IDX files "
                            f"(it lacks {', '.join(missing)}) nor train/ and test/ image "
                            f"folders", where=str(path), hint=FORMS)
        return path
    regular_file(path, hint=FORMS)
    if _kind(path) is None:
        raise DataError(f"{path.name}: file: not a data set (expected an .npz or a .json "
                        f"file, or a folder)", where=str(path), hint=FORMS)
    return path


def _kind(path: Path) -> str | None:
    if path.is_dir():
        return "images" if (path / "train").is_dir() or (path / "test").is_dir() else "idx"
    if not path.is_file():
        return None  # a device or a pipe is never opened (`regular_file` says what it is)
    suffix = path.suffix.lower()
    if suffix in (".npz", ".json"):
        return suffix[1:]
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return None
    return "npz" if head[:2] == b"PK" else None


def load_data(path: str | os.PathLike[str]) -> Dataset:
    """Read any of the four forms (see the module's docstring) into a checked Dataset."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        regular_file(path, hint=FORMS)
    kind = _kind(path) if path.exists() else None
    if kind == "npz":
        return load_npz(path)
    if kind == "json":
        return load_manifest(path)
    if kind == "images":
        return load_image_folder(path)
    if kind == "idx":
        return load_mnist(path)
    raise DataError(f"{path.name}: file: not found or not a data set", where=str(path),
                    hint=FORMS)


# --- checks shared by every form ------------------------------------------------------

class _Field:
    """An array, the file it came from and its name there (an npz key, or 'data')."""

    def __init__(self, array: np.ndarray, path: Path, name: str, label: str | None = None):
        self.array, self.path, self.name = array, path, name
        self.label = label or name  # how other messages refer to it

    def fail(self, detail: str, hint: str | None = None) -> DataError:
        return _fail(self.path, self.name, detail, hint)


def _shape(shape) -> str:
    return str(tuple(int(d) for d in shape))


def _check_images(field: _Field) -> np.ndarray:
    """N x H x W or N x maps x H x W pixels: integers in 0..255 (returned as uint8) or
    finite floats (returned as they are)."""
    x = field.array
    if x.dtype.kind not in "uif":
        raise field.fail(f"dtype {x.dtype}: images must be integers 0 to 255 (uint8) or "
                         "floats")
    if x.ndim not in (3, 4, 5):
        raise field.fail(f"shape {_shape(x.shape)}: images must be N x H x W or "
                         f"N x maps x H x W (2-D), N x maps x L (1-D) or N x maps x D x H x W "
                         f"(3-D), found {x.ndim} dimension{'s' if x.ndim != 1 else ''}",
                         hint="store x[:, None] for signals of one map" if x.ndim == 2
                         else None)
    if x.shape[0] == 0:
        raise field.fail(f"shape {_shape(x.shape)}: no images")
    if 0 in x.shape:
        raise field.fail(f"shape {_shape(x.shape)}: images must have at least one map and "
                         "one pixel")
    if x.ndim == 4 and x.shape[3] in (1, 3, 4) and x.shape[1] > 4:
        raise field.fail(f"shape {_shape(x.shape)}: looks like N x H x W x maps (channels "
                         "last); images must be N x maps x H x W",
                         hint="store np.moveaxis(x, -1, 1) (volumes of one map: store "
                              "x[:, None], N x 1 x D x H x W)")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            at = np.unravel_index(int(np.argmax(bad)), x.shape)
            raise field.fail(f"value {x[at]} at index {list(map(int, at))}: pixels must be "
                             "finite numbers")
        return x
    if x.dtype != np.uint8:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            worst = lo if lo < 0 else hi
            at = np.unravel_index(int(np.argmax(x == worst)), x.shape)
            raise field.fail(f"dtype {x.dtype}: value {worst} at index {list(map(int, at))} "
                             "is outside 0 to 255: integer pixels are 0 to 255",
                             hint="scale the images to 0..255 (uint8) or to floats 0..1")
        x = x.astype(np.uint8)
    return x


def _check_labels(field: _Field, images: _Field) -> np.ndarray:
    y = field.array
    if y.ndim != 1:
        hint = ("one-hot rows? store y.argmax(axis=1)" if y.ndim == 2 and y.shape[-1] > 1
                else "store y.ravel()" if y.ndim and y.size == y.shape[0] else None)
        raise field.fail(f"shape {_shape(y.shape)}: labels must be one class number per "
                         "image (1 dimension)", hint=hint)
    if y.dtype.kind not in "ui":
        raise field.fail(f"dtype {y.dtype}: labels must be integers (class numbers 0 to "
                         "K-1)", hint="store y.astype(np.int64) if they are whole numbers")
    if len(y) != len(images.array):
        raise field.fail(f"shape {_shape(y.shape)}: {len(y)} labels but {images.label} "
                         f"holds {len(images.array)} images")
    if y.size and y.min() < 0:
        i = int(np.argmax(y < 0))
        raise field.fail(f"label {int(y[i])} at index {i} is negative: labels are class "
                         "numbers 0 to K-1")
    return y


def check_dataset(x_train: _Field, y_train: _Field, x_test: _Field, y_test: _Field,
                  source: str, classes: tuple | None = None) -> Dataset:
    """Check two splits (see `_check_images`, `_check_labels`) and that they agree:
    one image size and map count, one kind of pixel (integer or float).  Labels
    need not use every number below the largest (a subset may lack a class)."""
    xs = [_check_images(x_train), _check_images(x_test)]
    ys = [_check_labels(y_train, x_train), _check_labels(y_test, x_test)]
    flat = max(xs[0].ndim, xs[1].ndim) <= 4  # N x H x W is one map of N x maps x H x W
    shapes = [(1,) + x.shape[1:] if flat and x.ndim == 3 else x.shape[1:] for x in xs]
    if shapes[0] != shapes[1]:
        raise x_test.fail(f"shape {_shape(xs[1].shape)}: images are "
                          f"{'x'.join(map(str, shapes[1]))}"
                          f"{' (maps x height x width)' if flat else ''} but "
                          f"{x_train.label}'s are {'x'.join(map(str, shapes[0]))}")
    if (xs[0].dtype.kind == "f") != (xs[1].dtype.kind == "f"):
        raise x_test.fail(f"dtype {xs[1].dtype}: {x_train.label} holds "
                          f"{'floats' if xs[0].dtype.kind == 'f' else 'integers'} "
                          f"({xs[0].dtype}); both must be integers 0 to 255 or both floats")
    return Dataset(xs[0], ys[0], xs[1], ys[1], classes=classes, source=source,
                   names=(x_train.label, y_train.label, x_test.label, y_test.label))


# --- .npz ------------------------------------------------------------------------------

def load_npz(path: str | os.PathLike[str]) -> Dataset:
    """x_train, y_train, x_test, y_test from an .npz archive (read without pickle);
    each array's declared shape is checked against its size in the archive
    (`check_npz_member`) before it is read."""
    path = Path(path)
    regular_file(path, hint=FORMS)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise _fail(path, "file", "not found", hint=FORMS) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _fail(path, "file", f"not a readable .npz archive ({exc})") from None
    if not hasattr(archive, "files"):
        raise _fail(path, "file", "holds a single array (.npy); expected an .npz archive "
                    "with " + ", ".join(NPZ_ARRAYS),
                    hint="np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
    with archive:
        missing = [name for name in NPZ_ARRAYS if name not in archive.files]
        if missing:
            held = ", ".join(archive.files) or "no arrays"
            raise _fail(path, missing[0], f"missing: the archive holds {held}; it needs "
                        + ", ".join(NPZ_ARRAYS),
                        hint="np.savez(path, x_train=..., y_train=..., x_test=..., "
                             "y_test=...)")
        arrays = {}
        for name in NPZ_ARRAYS:
            try:
                check_npz_member(archive.zip, path, name)
                arrays[name] = archive[name]
            except ValueError as exc:
                detail = _OBJECTS if "allow_pickle" in str(exc) else f"cannot read ({exc})"
                raise _fail(path, name, detail) from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise _fail(path, name, f"cannot read ({exc})") from None
            except MemoryError:
                raise _fail(path, name, "does not fit in memory", hint="use a smaller subset "
                            "of the data, or a machine with more memory") from None
    fields = {name: _Field(arrays[name], path, name) for name in NPZ_ARRAYS}
    return check_dataset(*fields.values(), source=str(path))


def check_npz_member(archive: zipfile.ZipFile, path: Path, name: str) -> None:
    """The .npy header of array ``name``: its shape x item size must be the bytes the
    archive holds for it, and those at most MAX_DATA_BYTES (for a compressed member,
    also at most what its compressed bytes can expand to); no Python objects.  A
    DataError names ``path`` and ``name``.  Any .npz reader can call it before
    ``archive[name]`` (``archive.zip`` is an NpzFile's ZipFile)."""
    member = f"{name}.npy" if f"{name}.npy" in archive.NameToInfo else name
    info = archive.getinfo(member)
    if info.file_size > MAX_DATA_BYTES:
        raise _fail(path, name, f"{info.file_size} bytes uncompressed: larger than the "
                    f"{MAX_DATA_BYTES} bytes an array may hold")
    if (info.compress_type == zipfile.ZIP_DEFLATED
            and info.file_size > _DEFLATE_RATIO * info.compress_size + 1024):
        raise _fail(path, name, f"the archive declares {info.file_size} bytes uncompressed "
                    f"from {info.compress_size} compressed bytes, more than deflate expands "
                    "to: the archive is damaged or forged")
    with archive.open(member) as f:
        try:
            version = np.lib.format.read_magic(f)
        except ValueError:
            raise _fail(path, name, "not a NumPy array (.npy) in the archive",
                        hint="store arrays with np.savez") from None
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(f)
        start = f.tell()
    if dtype.hasobject:
        raise _fail(path, name, _OBJECTS)
    declared = math.prod(shape) * dtype.itemsize
    if start + declared != info.file_size:
        raise _fail(path, name, f"shape {_shape(shape)} of {dtype} declares {declared} bytes "
                    f"but the archive holds {info.file_size - start} bytes for it: the archive is "
                    "damaged or forged")


# --- four IDX files named in a .json file ------------------------------------------------

def load_manifest(path: str | os.PathLike[str]) -> Dataset:
    """Four IDX files (any names) listed in a JSON object: {"train_images": FILE,
    "train_labels": FILE, "test_images": FILE, "test_labels": FILE}; relative paths
    start at the JSON file's folder."""
    path = Path(path)
    regular_file(path, MAX_MANIFEST_BYTES, hint=FORMS)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(path, "file", "not found", hint=FORMS) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, "file", f"cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise _fail(path, "JSON", f"line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    example = ", ".join(f'"{k}": "..."' for k in MANIFEST_KEYS)
    if not isinstance(manifest, dict):
        raise _fail(path, "JSON", f"expected an object {{{example}}}")
    for key in manifest:
        if key not in MANIFEST_KEYS:
            raise _fail(path, str(key), "unknown key; the keys are " + ", ".join(MANIFEST_KEYS))
    files = {}
    for key in MANIFEST_KEYS:
        value = manifest.get(key)
        if not isinstance(value, str) or not value:
            raise _fail(path, key, "missing" if key not in manifest else
                        f"expected a file name, found {json.dumps(value)}",
                        hint=f"the keys are {', '.join(MANIFEST_KEYS)}")
        file = Path(value).expanduser()
        files[key] = file if file.is_absolute() else path.parent / file
    fields = [_Field(read_idx(files[key]), files[key], key, label=files[key].name)
              for key in MANIFEST_KEYS]
    return check_dataset(*fields, source=str(path))
