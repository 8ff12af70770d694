"""From a data set's arrays to what a model reads: preprocessing, targets, splits.

Preprocessing is the model file's.  Images are (N, H, W) or (N, maps, H, W),
uint8 pixels 0..255 or floats on a 0..1 scale.  First ``crop`` cuts pixels from
the borders; then the pixels are mapped linearly from 0..255 (floats: 0..1) onto
[lo, hi] (LeNet-5: −0.1 to 1.175), or standardised with the (cropped) training
images' mean and spread (seed 2.1), over all maps together or, with
``standardize(per_map=true)``, each input map on its own; then ``pad`` adds a
border of the background value, what a 0 pixel maps to in each map (28x28 ->
32x32 with pad = 2; LeNet-5's border is −0.1).
Targets are one-of-c codes with 0/1 or ±1 entries (seed 2.1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import DataError


@dataclass(frozen=True)
class Split:
    images: np.ndarray   # (N, maps, H, W), model dtype
    labels: np.ndarray   # (N,), int64
    targets: np.ndarray  # (N, classes), model dtype

    def __len__(self) -> int:
        return len(self.labels)


def as_maps(images: np.ndarray) -> np.ndarray:
    """(N, H, W) as a (N, 1, H, W) view; (N, maps, H, W) as it is."""
    return images[:, None] if images.ndim == 3 else images


def full_scale(images: np.ndarray) -> float:
    """What the brightest pixel is: 255 for integer images, 1 for floats."""
    return 1.0 if images.dtype.kind == "f" else 255.0


def crop_images(images: np.ndarray, crop=(0, 0, 0, 0)) -> np.ndarray:
    """A view without ``crop`` = (top, bottom, left, right) pixels at the borders."""
    top, bottom, left, right = crop
    x = as_maps(images)
    return x[:, :, top:x.shape[2] - bottom, left:x.shape[3] - right]


def pixel_transform(pixels: tuple, train_images: np.ndarray, scale_of: float | None = None):
    """(scale, offset) such that x = pixel · scale + offset: floats, or with
    ``standardize(per_map=true)`` one of each per map (arrays of the map count).
    ``scale_of``: what a full pixel is (default: 255 for integers, 1 for floats)."""
    kind, args = pixels
    if kind == "standardize":
        if args.get("per_map"):
            x = as_maps(train_images)
            means, stds = np.empty(x.shape[1]), np.empty(x.shape[1])
            for c in range(x.shape[1]):
                means[c] = float(x[:, c].mean(dtype=np.float64))
                stds[c] = float(x[:, c].std(dtype=np.float64)) or 1.0
            return 1.0 / stds, -means / stds
        mean = float(train_images.mean())
        std = float(train_images.std()) or 1.0
        return 1.0 / std, -mean / std
    lo, hi = args.get("lo", 0.0), args.get("hi", 1.0)
    full = full_scale(train_images) if scale_of is None else scale_of
    return (hi - lo) / full, lo


def prepare_images(raw: np.ndarray, scale, offset, pad: int, dtype,
                   crop=(0, 0, 0, 0)) -> np.ndarray:
    """Cropped, mapped (x = pixel · scale + offset, per map when they are arrays) and
    padded with each map's background value (its offset)."""
    raw = crop_images(raw, crop)
    n, maps, h, w = raw.shape
    dtype = np.dtype(dtype)
    scale = np.broadcast_to(np.asarray(scale, np.float64), (maps,)).astype(dtype)
    offset = np.broadcast_to(np.asarray(offset, np.float64), (maps,)).astype(dtype)
    x = np.empty((n, maps, h + 2 * pad, w + 2 * pad), dtype)
    if pad:
        x[...] = offset[:, None, None]
    inner = x[:, :, pad:pad + h, pad:pad + w]
    inner[...] = raw
    inner *= scale[:, None, None]
    inner += offset[:, None, None]
    return x


def one_of_c(labels: np.ndarray, classes: int, coding: str, dtype) -> np.ndarray:
    t = np.eye(classes, dtype=dtype)[labels]
    return 2 * t - 1 if coding == "plus_minus_one" else t


def _check_classes(model, found: int, absent=()) -> None:
    """The model's outputs are one per class: as many as the labels have classes
    (the largest label + 1), else an error at the loss layer.  ``absent``: class
    numbers below that which no label carries, named in the message."""
    outputs = model.classes
    if outputs == found:
        return
    network = model.network
    loss = network.graph.nodes[network.data_loss]
    span = next((layer.span for layer in network.spec.layers if layer.name == loss["layer"]),
                loss["span"])
    output = next((ref.name for layer in network.spec.layers if layer.name == loss["layer"]
                   for ref in layer.sources), "the output layer")
    kind = next((layer.kind for layer in network.spec.layers if layer.name == output), None)
    hint = (f"set units={found} on '{output}'" if kind == "full"
            else f"make '{output}' give {found} values, one per class")
    more = outputs > found
    raise DataError(f"the loss reads {outputs} output{'s' if outputs != 1 else ''} but the "
                    f"data has {found} class{'es' if found != 1 else ''} (labels 0 to "
                    f"{found - 1}): " + ("the extra outputs would never be a target"
                                         if more else "some labels have no output")
                    + _absent(absent),
                    span, hint=hint,
                    where=network.spec.file)


def _absent(absent) -> str:
    if not len(absent):
        return ""
    shown = ", ".join(map(str, list(absent)[:10])) + (", ..." if len(absent) > 10 else "")
    return (f" (no image has label{'s' if len(absent) > 1 else ''} {shown}: are the "
            "labels numbered from 1, or with gaps?)")


def _size(shape) -> str:
    return "x".join(map(str, shape))


def make_splits(model, data, val: int, dtype, limit_train=None, limit_test=None):
    """(train, validation or None, test) for the model; the validation images are
    the last ``val`` training images, so the test set is untouched until the end."""
    pre = model.settings.preprocess
    want = tuple(model.input_shape)
    n_train = len(data.train_labels)
    if val >= n_train:
        raise DataError(f"--val {val} leaves no training images (the set has {n_train})",
                        where="--val")
    crop = tuple(getattr(pre, "crop", (0, 0, 0, 0)))
    maps, height, width = as_maps(data.train_images).shape[1:]
    top, bottom, left, right = crop
    source = f" of {data.source}" if getattr(data, "source", None) else ""
    spec = model.network.spec
    at = spec.inputs[0].span if spec.inputs else None
    if top + bottom >= height or left + right >= width:
        raise DataError(f"crop [{top}, {bottom}, {left}, {right}] (top, bottom, left, right) "
                        f"leaves no pixels of the {height}x{width} images{source}",
                        where=spec.file, hint="crop less in the preprocess section")
    cropped = (maps, height - top - bottom, width - left - right)
    got = (maps,) + tuple(d + 2 * pre.pad for d in cropped[1:])
    if got != want:
        how = (f"after cropping [{top}, {bottom}, {left}, {right}] and padding by {pre.pad}"
               if any(crop) else f"after padding by {pre.pad}")
        hint = (f"make the input {maps} x ... : the images have {maps} map"
                f"{'s' if maps != 1 else ''}" if maps != want[0] else
                "set 'pad' or 'crop' in the preprocess section, or change the input shape")
        raise DataError(f"the model's input is {_size(want)} but the images{source} are "
                        f"{_size(got)} {how}", at, hint=hint, where=spec.file)
    train_raw, train_labels = data.train_images[:n_train - val], data.train_labels[:n_train - val]
    if limit_train:
        train_raw, train_labels = train_raw[:limit_train], train_labels[:limit_train]
    scale, offset = pixel_transform(pre.pixels, crop_images(train_raw, crop),
                                    full_scale(data.train_images))
    classes, coding = model.classes, model.target_coding
    found = int(max(data.train_labels.max(), data.test_labels.max())) + 1
    if found != classes:
        present = np.union1d(np.unique(data.train_labels), np.unique(data.test_labels))
        _check_classes(model, found, np.setdiff1d(np.arange(min(found, 1 << 20)), present))

    def split(raw, labels):
        labels = labels.astype(np.int64)
        return Split(prepare_images(raw, scale, offset, pre.pad, dtype, crop), labels,
                     one_of_c(labels, classes, coding, dtype))

    validation = split(data.train_images[n_train - val:], data.train_labels[n_train - val:]) \
        if val else None
    test_raw, test_labels = data.test_images, data.test_labels
    if limit_test:
        test_raw, test_labels = test_raw[:limit_test], test_labels[:limit_test]
    return split(train_raw, train_labels), validation, split(test_raw, test_labels)
