"""Random distortions of the training images, drawn afresh for every batch: the
model file's ``augment`` section (language/settings.py, `Augment`).

    augmenter = Augmenter(model.settings.augment, seed, background=-0.1)
    x = augmenter(x, epoch, step)          # a distorted copy of the batch

Each image gets its own affine map (rotation, scale, shear, translation about the
image centre) and, with ``elastic_alpha`` > 0, an elastic displacement field
(Simard, Steinkraus and Platt 2003: uniform noise in ±1 per pixel, smoothed with
a Gaussian of ``elastic_sigma`` pixels, zero beyond the border as scipy's
``gaussian_filter(mode="constant")`` does, times ``elastic_alpha``).  Output pixel
q takes the input's value at  c + A⁻¹ (q + d(q) − c − t)  (c the centre, A the
affine matrix, t the translation, d the elastic field), bilinearly interpolated
(``scipy.ndimage.map_coordinates``, order 1), one call per batch.  All maps of an
image move together.

Outside the image the value is the *background*: what a 0 pixel maps to, the
value ``pad`` fills the border with (``range(lo, hi)``: lo; with ``standardize``
the training images' per-map minimum, which is that value whenever a map holds
a 0 pixel, as MNIST's do).

The draws come from a generator made from (seed, epoch, step) alone, not from
the trainer's epoch generator, so a resumed run draws the same distortions and
stays bitwise equal, and a run without augmentation is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import BuildError, CnnError

STREAM = 2  # the trainer's epoch generator is [seed, 1]
TRUNCATE = 4.0  # Gaussian kernel radius in sigmas, as scipy's gaussian_filter


def _ndimage(where=None):
    try:
        from scipy import ndimage
    except ImportError:
        raise CnnError("the augment section needs scipy, which is not installed",
                       where=where or "augment", hint="pip install scipy") from None
    return ndimage


def check_input(model) -> None:
    """The augment section's distortions move 2-D images (rotation, shear, elastic
    fields in a plane): with an input of 1 or 3 spatial dimensions an active
    section is an error at the section."""
    rank = len(model.input_shape) - 1
    if rank == 2 or not model.settings.augment.active:
        return
    span = next((s.span for s in model.spec.sections if s.name == "augment"), None)
    raise BuildError(f"the augment section distorts 2-D images (rotation, scaling, shear, "
                     f"translation and elastic fields in the image plane), but the model's "
                     f"input is {'x'.join(map(str, model.input_shape))}, {rank}-D",
                     span, where=model.file,
                     hint="remove the augment section, or distort the data before saving it")


@dataclass(frozen=True)
class Draw:
    """One batch's distortions, per image (arrays of length N; angles in radians)."""
    rotation: np.ndarray
    scale: np.ndarray
    shear: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    field: np.ndarray | None = None   # (N, 2, H, W): smoothed elastic (dy, dx), pixels

    def __len__(self):
        return len(self.rotation)

    def one(self, k: int) -> Draw:
        return Draw(*(None if a is None else a[k:k + 1] for a in
                      (self.rotation, self.scale, self.shear, self.tx, self.ty, self.field)))


def identity(n: int, h: int, w: int) -> Draw:
    zero = np.zeros(n)
    return Draw(zero, np.ones(n), zero, zero, zero)


class Augmenter:
    """``cfg``: an `Augment`.  ``background``: a number, one per map, or None for the
    training images' per-map minimum (given with the first call's ``train``)."""

    def __init__(self, cfg, seed: int, background=None, where=None):
        self.cfg, self.seed, self.background = cfg, int(seed), background
        self.ndimage = _ndimage(where)
        self._minimum = None   # (the training images, their per-map minimum)

    def generator(self, epoch: int, step: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, STREAM, int(epoch), int(step)])

    def draw(self, rng: np.random.Generator, n: int, h: int, w: int) -> Draw:
        """N images' distortions from ``rng``, always in the same order."""
        cfg = self.cfg
        rotation = np.radians(rng.uniform(*cfg.rotation, n))
        scale = rng.uniform(*cfg.scaling, n)
        shear = np.radians(rng.uniform(*cfg.shear, n))
        tx, ty = rng.uniform(*cfg.translate, n), rng.uniform(*cfg.translate, n)
        field = None
        if cfg.elastic_alpha != (0.0, 0.0):
            alpha = rng.uniform(*cfg.elastic_alpha, n)
            sigma = rng.uniform(*cfg.elastic_sigma, n)
            noise = rng.uniform(-1.0, 1.0, (n, 2, h, w))
            field = smooth(noise, sigma) * alpha[:, None, None, None]
        return Draw(rotation, scale, shear, tx, ty, field)

    def background_of(self, images: np.ndarray, train=None) -> np.ndarray:
        maps = images.shape[1]
        if self.background is not None:
            return np.broadcast_to(np.asarray(self.background, images.dtype), (maps,))
        source = images if train is None else train.images
        if self._minimum is None or self._minimum[0] is not source:
            self._minimum = (source, source.min(axis=(0, 2, 3)).astype(images.dtype))
        return self._minimum[1]

    def __call__(self, images: np.ndarray, epoch: int, step: int, train=None) -> np.ndarray:
        """A distorted copy of the (N, maps, H, W) batch ``images`` for this step."""
        n, _, h, w = images.shape
        d = self.draw(self.generator(epoch, step), n, h, w)
        return distort(images, d, self.background_of(images, train), self.ndimage)


def gaussian_matrices(sigma: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size): row i holds the normalised Gaussian weights of sigma[k] around
    i, cut at radius int(4 sigma + 0.5) and zero beyond the border (scipy's
    ``gaussian_filter1d(mode="constant", cval=0)`` as a matrix)."""
    sigma = np.asarray(sigma, np.float64)[:, None]
    radius = np.floor(TRUNCATE * sigma + 0.5)
    reach = max(int(radius.max()), size - 1)
    offsets = np.arange(-reach, reach + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2) * (np.abs(offsets) <= radius)
    kernel /= kernel.sum(axis=1, keepdims=True)
    index = np.arange(size)[:, None] - np.arange(size)[None, :] + reach
    return kernel[:, index]


def smooth(noise: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """(N, fields, H, W) noise, each image's fields smoothed with its own sigma."""
    _, _, h, w = noise.shape
    rows = gaussian_matrices(sigma, h)[:, None]
    cols = rows if w == h else gaussian_matrices(sigma, w)[:, None]
    return rows @ noise @ np.swapaxes(cols, -1, -2)


def source_coordinates(d: Draw, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns), each (N, H, W): where each output pixel reads the input."""
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y = np.arange(h, dtype=np.float64)[None, :, None] - cy - d.ty[:, None, None]
    x = np.arange(w, dtype=np.float64)[None, None, :] - cx - d.tx[:, None, None]
    if d.field is not None:
        y, x = y + d.field[:, 0], x + d.field[:, 1]
    # A = rotation · shear · scale, so A⁻¹ = scale⁻¹ · shear⁻¹ · rotation⁻¹ on (x, y)
    cos, sin, tan = np.cos(d.rotation), np.sin(d.rotation), np.tan(d.shear)
    inv = 1.0 / d.scale
    b00, b01 = inv * (cos + tan * sin), inv * (sin - tan * cos)
    b10, b11 = inv * -sin, inv * cos
    e = lambda a: a[:, None, None]
    cols = cx + e(b00) * x + e(b01) * y
    rows = cy + e(b10) * x + e(b11) * y
    return np.broadcast_to(rows, (len(d), h, w)), np.broadcast_to(cols, (len(d), h, w))


def distort(images: np.ndarray, d: Draw, background, ndimage=None) -> np.ndarray:
    """Every image of the (N, maps, H, W) batch under its distortion, in one
    ``map_coordinates`` call: the images, each framed by one pixel of its map's
    background, are stacked into one tall picture and the coordinates clamped to
    each image's frame, so that reading outside an image reads its background."""
    ndimage = ndimage or _ndimage()
    n, maps, h, w = images.shape
    framed = np.empty((n, maps, h + 2, w + 2), images.dtype)
    framed[...] = np.broadcast_to(np.asarray(background, images.dtype), (maps,))[:, None, None]
    framed[:, :, 1:-1, 1:-1] = images
    rows, cols = source_coordinates(d, h, w)
    coords = np.empty((2, n, maps, h, w))
    first = (np.arange(n * maps, dtype=np.float64) * (h + 2)).reshape(n, maps, 1, 1)
    coords[0] = first + (np.clip(rows, -1, h) + 1)[:, None]
    coords[1] = (np.clip(cols, -1, w) + 1)[:, None]
    out = ndimage.map_coordinates(framed.reshape(n * maps * (h + 2), w + 2),
                                  coords.reshape(2, -1), order=1, mode="nearest",
                                  output=images.dtype)
    return out.reshape(images.shape)


def distort_one(image: np.ndarray, d: Draw, background, ndimage=None) -> np.ndarray:
    """The plain way for one (maps, H, W) image and a one-image `Draw`: one
    ``map_coordinates`` call per map in mode "grid-constant" (the background as
    cval, interpolated across the border).
    `distort` does this for a whole batch at once (tests compare them)."""
    ndimage = ndimage or _ndimage()
    maps, h, w = image.shape
    rows, cols = source_coordinates(d, h, w)
    background = np.broadcast_to(np.asarray(background, image.dtype), (maps,))
    return np.stack([ndimage.map_coordinates(image[c], [rows[0], cols[0]], order=1,
                                             mode="grid-constant", cval=float(background[c]),
                                             output=image.dtype)
                     for c in range(maps)])


def describe(cfg) -> str:
    """The section's non-identity ranges in words, for picture titles."""
    parts = []
    for name, (lo, hi), unit, neutral in (
            ("rotation", cfg.rotation, "°", (0.0, 0.0)), ("scaling", cfg.scaling, "", (1.0, 1.0)),
            ("shear", cfg.shear, "°", (0.0, 0.0)), ("translate", cfg.translate, " px", (0.0, 0.0)),
            ("elastic_alpha", cfg.elastic_alpha, " px", (0.0, 0.0))):
        if (lo, hi) != neutral:
            parts.append(f"{name} {lo:g}{unit}" if lo == hi else f"{name} ±{hi:g}{unit}"
                         if lo == -hi else f"{name} {lo:g}..{hi:g}{unit}")
    if cfg.elastic_alpha != (0.0, 0.0):
        lo, hi = cfg.elastic_sigma
        parts.append(f"elastic_sigma {lo:g}" + ("" if lo == hi else f"..{hi:g}") + " px")
    return ", ".join(parts) or "none"

