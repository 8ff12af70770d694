"""From a data set's arrays to what a model reads: preprocessing, targets, splits.

Preprocessing is the model file's.  Images are (N, H, W) or (N, maps, H, W),
uint8 pixels 0..255 or floats; for a model whose input has 1 or 3 spatial
dimensions, (N, maps, L) signals or (N, [maps,] D, H, W) volumes: the input
declaration decides (`image_layout`).  First ``crop`` cuts pixels from the borders
(2-D only);
then the pixels are mapped linearly from 0..255 (floats: 0..1; floats outside
that are refused) onto [lo, hi] (LeNet-5: −0.1 to 1.175), or standardised with
the (cropped) training images' mean and spread (seed 2.1), over all maps
together or, with ``standardize(per_map=true)``, each input map on its own, or
fed as they are (``as_is``: already standardized data); then ``pad`` adds a
border of the background value, what a 0 pixel maps to in each map, on both
sides of every spatial dimension (28x28 -> 32x32 with pad = 2; LeNet-5's border
is −0.1).
Targets are one-of-c codes with 0/1 or ±1 entries (seed 2.1).

Every constant of that mapping (the pixel scheme and what it measured on the
training images, the full-scale pixel, crop and pad) is a `Preprocessing`,
which the splits carry and a checkpoint records: evaluating or exporting a
trained model maps images with its run's constants, never with ones recomputed
from whatever training images are at hand then.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import DataError
from ..rules.choices import PREPROCESSINGS
from .augment import check_input


#: What each built-in pixel scheme measures on the training images
#: (`Preprocessing.statistics`), for checking a checkpoint's record.
STATISTICS = {choice.name: choice.value.statistics for choice in PREPROCESSINGS}


@dataclass(frozen=True)
class Preprocessing:
    """The constants that map a data set's pixels onto what the model reads, as a run
    computed them: ``pixels``, the model's scheme (kind, options); ``statistics``,
    what it measured on the (cropped) training images (standardize: ``mean`` and
    ``std``, numbers or one per map; range: nothing); ``full_scale``, a full pixel
    (255 for integer images, 1 for floats); ``crop`` (top, bottom, left, right) and
    ``pad``."""
    pixels: tuple
    statistics: dict
    full_scale: float
    crop: tuple
    pad: int

    def scale_offset(self, registry):
        """(scale, offset) with x = pixel · scale + offset: numbers, or arrays of one
        per map for ``standardize(per_map=true)``; the scheme is ``registry``'s
        preprocessing of that name (rules/choices.py, `Pixels`)."""
        kind, args = self.pixels
        scheme = registry.choice("preprocessing", kind)
        return scheme.value.scale_offset(self.statistics, self.full_scale,
                                         **scheme.arguments(args))

    def record(self) -> dict:
        """As JSON (a checkpoint's ``preprocess``); `checkpoint` reads it back."""
        kind, args = self.pixels
        return {"pixels": kind, "options": dict(args), "statistics": dict(self.statistics),
                "full_scale": self.full_scale, "crop": list(self.crop), "pad": self.pad}


def fit_preprocessing(pre, train_images: np.ndarray | None, full: float,
                      registry, rank: int = 2) -> Preprocessing:
    """The `Preprocessing` of settings ``pre`` (the model's preprocess section) for
    these training images (uncropped; read only by schemes that measure them;
    ``full``: their full-scale pixel; ``rank``: the model input's spatial
    dimensions), the scheme ``registry``'s."""
    kind, args = pre.pixels
    scheme = registry.choice("preprocessing", kind)
    statistics = {}
    if scheme.value.statistics:
        with np.errstate(over="ignore", invalid="ignore"):  # checked below, not warned
            statistics = scheme.value.measure(crop_images(train_images, tuple(pre.crop), rank),
                                              **scheme.arguments(args))
    for name, value in statistics.items():
        if not np.all(np.isfinite(value)):
            raise DataError(f"the training images' {name} is {value}: their pixels are too "
                            f"large for {kind} to measure", where="preprocess",
                            hint="scale the images down first")
    return Preprocessing((kind, dict(args)), statistics, float(full), tuple(pre.crop),
                         int(pre.pad))


@dataclass(frozen=True)
class Split:
    images: np.ndarray   # (N, maps, *spatial), model dtype
    labels: np.ndarray   # (N,), int64
    targets: np.ndarray  # (N, classes), model dtype
    preprocessing: Preprocessing | None = None  # how images were made (None: elsewhere)

    def __len__(self) -> int:
        return len(self.labels)


def as_maps(images: np.ndarray, rank: int = 2) -> np.ndarray:
    """Images for a model input of ``rank`` spatial dimensions as (N, maps, *spatial):
    (N, *spatial) as a (N, 1, *spatial) view, (N, maps, *spatial) as it is."""
    return images[:, None] if images.ndim == rank + 1 else images


#: How arrays of images look for an input of 1, 2 or 3 spatial dimensions.
FORMS = {1: "N x maps x L", 2: "N x H x W or N x maps x H x W",
         3: "N x D x H x W or N x maps x D x H x W"}


def image_layout(model, images: np.ndarray, name: str, source: str = "") -> tuple:
    """(maps, spatial sizes) of one of ``images`` as the model's input declaration
    reads them: an array (N, a, b) is one map of a x b for ``input x : 1 x a x b``
    and a maps of length b for ``input x : a x b``; (N, C, D, H, W) is C maps of
    D x H x W volumes (N, D, H, W: one map).  Any other rank is a DataError naming
    the array (``name`` of ``source``) and the input declaration, with both shapes."""
    want = tuple(model.input_shape)
    rank, shape = len(want) - 1, tuple(int(d) for d in images.shape[1:])
    if len(shape) == rank + 1:
        return shape[0], shape[1:]
    if len(shape) == rank and rank > 1:
        return 1, shape
    spec = model.spec
    at = spec.inputs[0].span if spec.inputs else None
    raise DataError(f"{name}{source}: shape {(len(images),) + shape} does not fit the model's "
                    f"input {_size(want)} ({_describe(want)}), which reads arrays "
                    f"{FORMS[rank]}", at, where=spec.file,
                    hint="these arrays feed an input declared "
                         + " or ".join(f"'{' x '.join(map(str, s))}'"
                                       for s in _inputs_for(shape)))


def _describe(shape) -> str:
    maps, *spatial = shape
    each = f"length {spatial[0]}" if len(spatial) == 1 else _size(spatial)
    return f"{maps} map{'s' if maps != 1 else ''} of {each}, {len(spatial)}-D"


def _inputs_for(shape) -> list:
    """The input shapes that read an image of this shape (a leading 1 is a map axis)."""
    found = [shape] if 2 <= len(shape) <= 4 else []
    return found + [(1,) + shape] if 2 <= len(shape) <= 3 and shape[0] != 1 else found


def full_scale(images: np.ndarray) -> float:
    """What the brightest pixel is: 255 for integer images, 1 for floats."""
    return 1.0 if images.dtype.kind == "f" else 255.0


def crop_images(images: np.ndarray, crop=(0, 0, 0, 0), rank: int = 2) -> np.ndarray:
    """A (N, maps, *spatial) view without ``crop`` = (top, bottom, left, right) pixels
    at the borders (2-D; other ranks are never cropped: `make_splits` refuses)."""
    x = as_maps(images, rank)
    if rank != 2:
        return x
    top, bottom, left, right = crop
    return x[:, :, top:x.shape[2] - bottom, left:x.shape[3] - right]


def prepare_images(raw: np.ndarray, scale, offset, pad: int, dtype,
                   crop=(0, 0, 0, 0), rank: int = 2) -> np.ndarray:
    """Cropped, mapped (x = pixel · scale + offset, per map when they are arrays) and
    padded in every spatial dimension with each map's background value (its offset)."""
    raw = crop_images(raw, crop, rank)
    n, maps, *spatial = raw.shape
    dtype = np.dtype(dtype)
    each = (maps,) + (1,) * len(spatial)  # one value per map
    scale = np.broadcast_to(np.asarray(scale, np.float64), (maps,)).astype(dtype).reshape(each)
    offset = np.broadcast_to(np.asarray(offset, np.float64), (maps,)).astype(dtype).reshape(each)
    x = np.empty((n, maps, *(d + 2 * pad for d in spatial)), dtype)
    if pad:
        x[...] = offset
    inner = x[(slice(None), slice(None)) + tuple(slice(pad, pad + d) for d in spatial)]
    inner[...] = raw
    inner *= scale
    inner += offset
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
    layers = model.spec.layers
    loss = model.graph.nodes[model.roles.data_loss]
    span = next((layer.span for layer in layers if layer.name == loss["layer"]), loss["span"])
    output = next((ref.name for layer in layers if layer.name == loss["layer"]
                   for ref in layer.sources), "the output layer")
    kind = next((layer.kind for layer in layers if layer.name == output), None)
    hint = (f"set units={found} on '{output}'" if kind == "full"
            else f"make '{output}' give {found} values, one per class")
    more = outputs > found
    raise DataError(f"the loss reads {outputs} output{'s' if outputs != 1 else ''} but the "
                    f"data has {found} class{'es' if found != 1 else ''} (labels 0 to "
                    f"{found - 1}): " + ("the extra outputs would never be a target"
                                         if more else "some labels have no output")
                    + _absent(absent),
                    span, hint=hint, where=model.file)


def _absent(absent) -> str:
    if not len(absent):
        return ""
    shown = ", ".join(map(str, list(absent)[:10])) + (", ..." if len(absent) > 10 else "")
    return (f" (no image has label{'s' if len(absent) > 1 else ''} {shown}: are the "
            "labels numbered from 1, or with gaps?)")


def _size(shape) -> str:
    return "x".join(map(str, shape))


def make_splits(model, data, val: int, dtype, limit_train=None, limit_test=None,
                preprocessing: Preprocessing | None = None):
    """(train, validation or None, test) for the model; the validation images are
    the last ``val`` training images, so the test set is untouched until the end.
    ``preprocessing``: the constants to map pixels with (a checkpoint's record);
    None fits them to the training images (the first ``limit_train`` of those
    left after the validation images are taken out), as a run does."""
    check_input(model)
    pre = model.settings.preprocess
    want = tuple(model.input_shape)
    n_train = len(data.train_labels)
    if val >= n_train:
        raise DataError(f"--val {val} leaves no training images (the set has {n_train})",
                        where="--val")
    crop, rank = tuple(pre.crop), len(want) - 1
    source = f" of {data.source}" if data.source else ""
    maps, spatial = image_layout(model, data.train_images, data.names[0], source)
    image_layout(model, data.test_images, data.names[2], source)  # (N, H, W) beside (N, 1, H, W)
    top, bottom, left, right = crop
    spec = model.spec
    at = spec.inputs[0].span if spec.inputs else None
    if rank != 2 and any(crop):
        raise DataError(f"crop [{top}, {bottom}, {left}, {right}] cuts the top, bottom, left "
                        f"and right of 2-D images, but the model's input is "
                        f"{_describe(want)}", _setting_span(spec, "preprocess", "crop"),
                        where=spec.file, hint="cut the arrays before saving them")
    if rank == 2 and (top + bottom >= spatial[0] or left + right >= spatial[1]):
        raise DataError(f"crop [{top}, {bottom}, {left}, {right}] (top, bottom, left, right) "
                        f"leaves no pixels of the {_size(spatial)} images{source}",
                        where=spec.file, hint="crop less in the preprocess section")
    cropped = (maps,) + ((spatial[0] - top - bottom, spatial[1] - left - right) if rank == 2
                         else spatial)
    got = (maps,) + tuple(d + 2 * pre.pad for d in cropped[1:])
    if got != want:
        how = (f"after cropping [{top}, {bottom}, {left}, {right}] and padding by {pre.pad}"
               if any(crop) else f"after padding by {pre.pad}")
        hint = (f"make the input {maps} x ... : the images have {maps} map"
                f"{'s' if maps != 1 else ''}" if maps != want[0] else
                "set 'pad' or 'crop' in the preprocess section, or change the input shape")
        raise DataError(f"the model's input is {_size(want)} but the images{source} are "
                        f"{_size(got)} {how}", at, hint=hint, where=spec.file)
    _check_floats(model, data, source)
    train_raw, train_labels = data.train_images[:n_train - val], data.train_labels[:n_train - val]
    if limit_train:
        train_raw, train_labels = train_raw[:limit_train], train_labels[:limit_train]
    full = full_scale(data.train_images)
    if preprocessing is None:
        preprocessing = fit_preprocessing(pre, train_raw, full, model.registry, rank)
    else:
        _check_recorded(preprocessing, pre, full, maps, source)
    scale, offset = preprocessing.scale_offset(model.registry)
    classes, coding = model.classes, model.target_coding
    found = int(max(data.train_labels.max(), data.test_labels.max())) + 1
    if found != classes:
        present = np.union1d(np.unique(data.train_labels), np.unique(data.test_labels))
        _check_classes(model, found, np.setdiff1d(np.arange(min(found, 1 << 20)), present))

    def split(raw, labels):
        labels = labels.astype(np.int64)
        return Split(prepare_images(raw, scale, offset, pre.pad, dtype, crop, rank), labels,
                     one_of_c(labels, classes, coding, dtype), preprocessing)

    validation = split(data.train_images[n_train - val:], data.train_labels[n_train - val:]) \
        if val else None
    test_raw, test_labels = data.test_images, data.test_labels
    if limit_test:
        test_raw, test_labels = test_raw[:limit_test], test_labels[:limit_test]
    return split(train_raw, train_labels), validation, split(test_raw, test_labels)


def _check_floats(model, data, source: str) -> None:
    """Float pixels must lie in the range the model's pixel scheme reads floats on
    (`Pixels.floats`; range: 0 to 1), else an error naming the array, the values
    found and the schemes that read any floats."""
    kind, args = model.settings.preprocess.pixels
    bounds = model.registry.choice("preprocessing", kind).value.floats
    if bounds is None:
        return
    for images, name in ((data.train_images, data.names[0]), (data.test_images, data.names[2])):
        if images.dtype.kind != "f":
            continue
        lo, hi = float(images.min()), float(images.max())
        if bounds[0] <= lo and hi <= bounds[1]:
            continue
        at = _setting_span(model.spec, "preprocess", "pixels")
        written = kind + ("(" + ", ".join(f"{v:g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in args.items()) + ")" if args else "")
        others = [other for other, choice in model.registry.choices("preprocessing").items()
                  if choice.value.floats is None]
        raise DataError(f"{name}{source}: float pixels run from {lo:g} to {hi:g}, but "
                        f"pixels = {written}{'' if at else ' (the default)'} reads floats on "
                        f"a {bounds[0]:g} to {bounds[1]:g} scale", at, where=model.file,
                        hint=f"pixels 0..255 stored as floats: divide them by 255, or store "
                             f"uint8; to read floats otherwise, set pixels = "
                             f"{' or '.join(others)} in the preprocess section")


def _setting_span(spec, section: str, option: str):
    """Where ``option`` of ``section`` is written in the model file, or None."""
    return next((written.span for written_section in spec.sections
                 if written_section.name == section
                 for written in written_section.options if written.name == option), None)


def _check_recorded(recorded: Preprocessing, pre, full: float, maps: int, source: str):
    """A recorded preprocessing must be the model's settings (the network hash
    covers them, so only an altered record differs), with statistics for each of
    the images' ``maps`` when it has them per map, and its run must have read
    pixels of the same scale as these images."""
    for name, value in recorded.statistics.items():
        if isinstance(value, list) and len(value) != maps:
            raise DataError(f"the recorded preprocessing has {len(value)} {name} values, "
                            f"one per map, but the images{source} have {maps} map"
                            f"{'s' if maps != 1 else ''}", where="preprocess")
    settings = {"pixels": (pre.pixels[0], dict(pre.pixels[1])), "crop": tuple(pre.crop),
                "pad": pre.pad}
    for field, want in settings.items():
        if getattr(recorded, field) != want:
            raise DataError(f"the recorded preprocessing's {field} {getattr(recorded, field)} "
                            f"is not the model's {want}", where="preprocess",
                            hint="evaluate the checkpoint with the model it was trained with")
    if recorded.full_scale != full:
        kinds = {255.0: "integer pixels 0 to 255", 1.0: "float pixels 0 to 1"}
        read = kinds.get(recorded.full_scale, f"pixels 0 to {recorded.full_scale}")
        raise DataError(f"the images{source} hold {kinds[full]} but the run that made the "
                        f"checkpoint read {read}", where="preprocess",
                        hint="give the data in the form the model was trained on")
