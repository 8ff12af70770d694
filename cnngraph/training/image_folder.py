"""Image data sets as folders: ``train/CLASS/*`` and ``test/CLASS/*``, one folder of
images per class, read with Pillow (the ``images`` extra) into a checked `Dataset`
(`datasets.load_data` reads every form; this is the one that needs Pillow).
Anything malformed is an error naming the file and the field; nothing here prints.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from ..core.errors import DataError
from .idx import Dataset

#: The largest image file read (64 MiB: a 4096x4096 RGB image uncompressed is 48 MiB);
#: Pillow's own limit on decoded pixels (``Image.MAX_IMAGE_PIXELS``) guards the rest.
MAX_IMAGE_BYTES = 1 << 26
_IMAGES_HINT = "pip install 'cnngraph[images]' (Pillow reads the image folders)"
_LAYOUT = ("an image data set is a folder holding train/ and test/, each with one folder "
           "of images per class: train/CLASS/*.png")


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
                            where=str(root), hint=_LAYOUT)
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
    """(H, W) or (H, W, 3) uint8 pixels of one image file, a regular file of at most
    MAX_IMAGE_BYTES."""
    try:
        info = file.stat()
    except OSError as exc:
        raise fail(file, "image", f"cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise fail(file, "image", "is a device, pipe or socket, not a regular file")
    if info.st_size > MAX_IMAGE_BYTES:
        raise fail(file, "image", f"{info.st_size} bytes: larger than the "
                   f"{MAX_IMAGE_BYTES} bytes an image file may hold")
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
