"""From raw IDX arrays to what a model reads: preprocessing, targets, splits.

Preprocessing is the model file's: pixels mapped linearly from 0..255 onto
[lo, hi] (LeNet-5: −0.1 to 1.175) or standardised with the training images'
mean and spread (seed 2.1), then padding with the background value, what a
0 pixel maps to (28x28 -> 32x32 with pad = 2; LeNet-5's border is −0.1).
Targets are one-of-c codes with 0/1 or ±1 entries (seed 2.1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import DataError


@dataclass(frozen=True)
class Split:
    images: np.ndarray   # (N, 1, H, W), model dtype
    labels: np.ndarray   # (N,), int64
    targets: np.ndarray  # (N, classes), model dtype

    def __len__(self) -> int:
        return len(self.labels)


def pixel_transform(pixels: tuple, train_images: np.ndarray):
    """(scale, offset) such that x = pixel · scale + offset."""
    kind, args = pixels
    if kind == "standardize":
        mean = float(train_images.mean())
        std = float(train_images.std()) or 1.0
        return 1.0 / std, -mean / std
    lo, hi = args.get("lo", 0.0), args.get("hi", 1.0)
    return (hi - lo) / 255.0, lo


def prepare_images(raw: np.ndarray, scale: float, offset: float, pad: int, dtype) -> np.ndarray:
    kind = np.dtype(dtype).type
    x = raw.astype(dtype)[:, None]
    x *= kind(scale)
    x += kind(offset)
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=offset)
    return x


def one_of_c(labels: np.ndarray, classes: int, coding: str, dtype) -> np.ndarray:
    t = np.eye(classes, dtype=dtype)[labels]
    return 2 * t - 1 if coding == "plus_minus_one" else t


def _check_classes(model, found: int) -> None:
    """The model's outputs are one per class: as many as the labels have classes
    (the largest label + 1), else an error at the loss layer."""
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
                                         if more else "some labels have no output"),
                    span, hint=hint,
                    where=network.spec.file)


def make_splits(model, data, val: int, dtype, limit_train=None, limit_test=None):
    """(train, validation or None, test) for the model; the validation images are
    the last ``val`` training images, so the test set is untouched until the end."""
    pre = model.settings.preprocess
    want = model.input_shape
    n_train = len(data.train_labels)
    if val >= n_train:
        raise DataError(f"--val {val} leaves no training images (the set has {n_train})",
                        where="--val")
    train_raw, train_labels = data.train_images[:n_train - val], data.train_labels[:n_train - val]
    if limit_train:
        train_raw, train_labels = train_raw[:limit_train], train_labels[:limit_train]
    scale, offset = pixel_transform(pre.pixels, train_raw)
    got = (1,) + tuple(d + 2 * pre.pad for d in data.train_images.shape[1:])
    if got != tuple(want):
        raise DataError(f"the model's input is {'x'.join(map(str, want))} but the images are "
                        f"{'x'.join(map(str, got))} after padding by {pre.pad}",
                        where=model.network.spec.file,
                        hint="set 'pad' in the preprocess section, or change the input shape")
    classes, coding = model.classes, model.target_coding
    _check_classes(model, int(max(data.train_labels.max(), data.test_labels.max())) + 1)

    def split(raw, labels):
        labels = labels.astype(np.int64)
        return Split(prepare_images(raw, scale, offset, pre.pad, dtype), labels,
                     one_of_c(labels, classes, coding, dtype))

    validation = split(data.train_images[n_train - val:], data.train_labels[n_train - val:]) \
        if val else None
    test_raw, test_labels = data.test_images, data.test_labels
    if limit_test:
        test_raw, test_labels = test_raw[:limit_test], test_labels[:limit_test]
    return split(train_raw, train_labels), validation, split(test_raw, test_labels)
