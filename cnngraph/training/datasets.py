"""Data sources: where a data set is, and reading it into a checked `Dataset`.

``--data PATH`` (or ``data = "PATH"`` in the train block) is one of

* a folder holding MNIST's four IDX files (their canonical names, ``.gz`` or not);
* a ``.json`` file naming four IDX files (``train_images``, ``train_labels``,
  ``test_images``, ``test_labels``; relative to the JSON file's folder);
* an ``.npz`` file holding ``x_train``, ``y_train``, ``x_test`` and ``y_test``;
* a folder with ``train/`` and ``test/`` subfolders, each holding one folder of
  images per class (read with Pillow, the ``images`` extra).

Images are ``N x H x W`` (one map) or ``N x maps x H x W``: integers 0..255
(uint8, or any integer type whose values fit) or floats, which are taken to be on
a 0..1 scale.  Labels are integers 0..K-1 and K, the number of classes, is the
largest label + 1 (a number below it that no image carries is allowed: a subset
may lack a class).  Anything malformed is an error whose message names the file
and the field (array, shape, dtype, label), and nothing here prints.
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

from ..core.errors import DataError
from .idx import (
    Dataset,
    _fail,
    _missing,
    find_data_dir,
    load_mnist,
    read_idx,
)

__all__ = ["Dataset", "FORMS", "NPZ_ARRAYS", "MANIFEST_KEYS", "resolve_data", "load_data",
           "load_npz", "load_manifest", "load_image_folder", "check_dataset"]

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
MANIFEST_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
FORMS = ("--data takes a folder of MNIST's four IDX files, a .json file naming four IDX "
         "files, an .npz file with x_train, y_train, x_test and y_test, or a folder with "
         "train/ and test/ folders of images, one folder per class")
_IMAGES_HINT = "pip install 'cnngraph[images]' (Pillow reads the image folders)"


# --- where the data is ---------------------------------------------------------------

def resolve_data(flag: str | None, setting: str | None = None, model_file: str | None = None,
                 environ: Mapping[str, str] | None = None) -> Path:
    """The data set to read: ``--data`` (relative to the working folder), else the train
    block's ``data`` (relative to the model file's folder), else MNIST in
    $CNNGRAPH_DATA or the per-user cache (`find_data_dir`)."""
    if flag:
        path, origin = Path(flag).expanduser(), "--data"
    elif setting:
        path = Path(setting).expanduser()
        if not path.is_absolute() and model_file and Path(model_file).is_file():
            path = Path(model_file).parent / path
        origin = f"the train block's data (in {model_file})" if model_file else "data"
    else:
        return find_data_dir(None, environ)
    if not path.exists():
        raise DataError(f"{origin}: {path} does not exist", where=str(path), hint=FORMS)
    if path.is_dir():
        if (path / "train").is_dir() or (path / "test").is_dir():
            return path
        missing = _missing(path)
        if missing:
            raise DataError(f"{origin}: the folder {path} holds neither MNIST's IDX files "
                            f"(it lacks {', '.join(missing)}) nor train/ and test/ image "
                            f"folders", where=str(path), hint=FORMS)
        return path
    if _kind(path) is None:
        raise DataError(f"{path.name}: file: not a data set (expected an .npz or a .json "
                        f"file, or a folder)", where=str(path), hint=FORMS)
    return path


def _kind(path: Path) -> str | None:
    if path.is_dir():
        return "images" if (path / "train").is_dir() or (path / "test").is_dir() else "idx"
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
                         "floats (0 to 1)")
    if x.ndim not in (3, 4):
        raise field.fail(f"shape {_shape(x.shape)}: images must be N x H x W or "
                         f"N x maps x H x W, found {x.ndim} dimension"
                         f"{'s' if x.ndim != 1 else ''}")
    if x.shape[0] == 0:
        raise field.fail(f"shape {_shape(x.shape)}: no images")
    if 0 in x.shape:
        raise field.fail(f"shape {_shape(x.shape)}: images must have at least one map and "
                         "one pixel")
    if x.ndim == 4 and x.shape[3] in (1, 3, 4) and x.shape[1] > 4:
        raise field.fail(f"shape {_shape(x.shape)}: looks like N x H x W x maps (channels "
                         "last); images must be N x maps x H x W",
                         hint="store np.moveaxis(x, -1, 1)")
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
                else "store y.ravel()" if y.size == y.shape[0] else None)
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
    shapes = [x.shape[1:] if x.ndim == 4 else (1,) + x.shape[1:] for x in xs]
    if shapes[0] != shapes[1]:
        raise x_test.fail(f"shape {_shape(xs[1].shape)}: images are "
                          f"{'x'.join(map(str, shapes[1]))} (maps x height x width) but "
                          f"{x_train.label}'s are {'x'.join(map(str, shapes[0]))}")
    if (xs[0].dtype.kind == "f") != (xs[1].dtype.kind == "f"):
        raise x_test.fail(f"dtype {xs[1].dtype}: {x_train.label} holds "
                          f"{'floats' if xs[0].dtype.kind == 'f' else 'integers'} "
                          f"({xs[0].dtype}); both must be integers 0 to 255 or both floats")
    return Dataset(xs[0], ys[0], xs[1], ys[1], classes=classes, source=source)


# --- .npz ------------------------------------------------------------------------------

def load_npz(path: str | os.PathLike[str]) -> Dataset:
    """x_train, y_train, x_test, y_test from an .npz archive (read without pickle)."""
    path = Path(path)
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
                arrays[name] = archive[name]
            except ValueError as exc:
                detail = ("an object array (Python objects, which are not unpickled); "
                          "store numbers" if "allow_pickle" in str(exc)
                          else f"cannot read ({exc})")
                raise _fail(path, name, detail) from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise _fail(path, name, f"cannot read ({exc})") from None
    fields = {name: _Field(arrays[name], path, name) for name in NPZ_ARRAYS}
    return check_dataset(*fields.values(), source=str(path))


# --- four IDX files named in a .json file ------------------------------------------------

def load_manifest(path: str | os.PathLike[str]) -> Dataset:
    """Four IDX files (any names) listed in a JSON object: {"train_images": FILE,
    "train_labels": FILE, "test_images": FILE, "test_labels": FILE}; relative paths
    start at the JSON file's folder."""
    path = Path(path)
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


# --- folders of images ---------------------------------------------------------------------

def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise DataError("image folders are read with Pillow, which is not installed",
                        where="--data", hint=_IMAGES_HINT) from None
    return Image


# Modes read as one map (grayscale) or three (RGB); alpha is dropped.
_GRAY = {"1", "L", "LA", "La"}
_COLOUR = {"RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "P", "PA"}


def _listing(folder: Path, root: Path, what: str) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise DataError(f"{folder.relative_to(root)}: {what}: cannot list "
                        f"({exc.strerror or exc})", where=str(root)) from None


def load_image_folder(root: str | os.PathLike[str]) -> Dataset:
    """train/CLASS/* and test/CLASS/*: class names sorted give labels 0..K-1 (the
    training folder's classes; the test folder may lack some).  Every file not
    starting with '.' must be an image; all of one size; grayscale images are one
    map, colour ones three (RGB; a set mixing both reads every image as RGB).  Each
    split is put in a fixed order that spreads every class evenly over it, so
    --limit-train, --limit-test and --val's images from the end see every class."""
    root = Path(root)
    Image = _pillow()

    def fail(path: Path, field: str, detail: str, hint: str | None = None) -> DataError:
        return DataError(f"{path.relative_to(root).as_posix()}: {field}: {detail}",
                         where=str(root), hint=hint)

    classes: list[str] = []
    splits = {}
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            raise DataError(f"{split}/: folder: missing; an image data set holds train/ and "
                            "test/, each with one folder of images per class",
                            where=str(root), hint=FORMS)
        entries = _listing(folder, root, "folder")
        for entry in entries:
            if not entry.is_dir():
                raise fail(entry, "file", "outside a class folder: images go in "
                           f"{split}/CLASS/")
        names = [entry.name for entry in entries]
        if split == "train":
            if not names:
                raise fail(folder, "classes", "no class folders: put each class's images "
                           "in its own folder, train/CLASS/")
            classes = names
        else:
            for name in names:
                if name not in classes:
                    raise fail(folder / name, "class", f"'{name}' has no folder in train/ "
                               f"(its classes: {', '.join(classes[:10])}"
                               f"{', ...' if len(classes) > 10 else ''})")
        per_class = []
        for label, name in enumerate(classes):
            if name not in names:
                per_class.append([])
                continue
            files = _listing(folder / name, root, "class")
            for file in files:
                if file.is_dir():
                    raise fail(file, "folder", "inside a class folder: images must sit "
                               f"directly in {split}/{name}/")
            if split == "train" and not files:
                raise fail(folder / name, "class", "no images: every class needs training "
                           "images (remove the folder, or add images)")
            per_class.append(files)
        if not any(per_class):
            raise fail(folder, "images", "none in any class folder")
        splits[split] = per_class

    first: list = []  # (path, (width, height)) of the first image read
    read = {}
    colour = False
    for split, per_class in splits.items():
        images, labels = [], []
        for label, files in enumerate(per_class):
            for file in files:
                pixels = _read_image(Image, file, fail)
                size = (pixels.shape[1], pixels.shape[0])
                if not first:
                    first = [file, size]
                elif size != first[1]:
                    raise fail(file, "size", f"{size[0]}x{size[1]} (width x height) but "
                               f"{first[0].relative_to(root).as_posix()} is "
                               f"{first[1][0]}x{first[1][1]}: all images must have one size",
                               hint="resize the images to one size first")
                colour = colour or pixels.ndim == 3
                images.append(pixels)
                labels.append(label)
        read[split] = (images, np.asarray(labels, dtype=np.int64), per_class)
    out = []
    for split in ("train", "test"):
        images, labels, per_class = read[split]
        order = _spread([len(files) for files in per_class])
        if colour:
            x = np.stack([images[i] if images[i].ndim == 3 else
                          np.repeat(images[i][:, :, None], 3, axis=2) for i in order])
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        else:
            x = np.stack([images[i] for i in order])
        out += [x, labels[order]]
    return Dataset(*out, classes=tuple(classes), source=str(root))


def _read_image(Image, file: Path, fail) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 pixels of one image file."""
    try:
        with Image.open(file) as image:
            image.load()
            mode = image.mode
            if mode in _GRAY:
                converted = image if mode == "L" else image.convert("L")
            elif mode in _COLOUR:
                converted = image if mode == "RGB" else image.convert("RGB")
            else:
                raise fail(file, "mode", f"{mode} pixels (16-bit, 32-bit or float) are not "
                           "read: save 8-bit grayscale or RGB images")
            return np.asarray(converted, dtype=np.uint8).copy()
    except DataError:
        raise
    except Exception as exc:  # Pillow raises many kinds for a damaged or foreign file
        raise fail(file, "image", f"cannot read ({type(exc).__name__}: {exc})",
                   hint="remove the file or replace it with a readable image") from None


def _spread(counts: list[int]) -> np.ndarray:
    """Indices into the class-by-class concatenation, ordered so that each class's
    images are spread evenly over the whole sequence (the k-th of n sits at
    (k + 0.5) / n); ties go to the lower class."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    keys, index = [], []
    for start, n in zip(starts, counts):
        keys.append((np.arange(n) + 0.5) / max(n, 1))
        index.append(start + np.arange(n))
    if not keys:
        return np.zeros(0, dtype=np.int64)
    keys, index = np.concatenate(keys), np.concatenate(index)
    return index[np.lexsort((index, keys))]
