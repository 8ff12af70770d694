"""A volumetric data set the project makes itself: solid shapes in 16³ volumes.

    arrays = shapes3d(train=3000, test=500, seed=0)     # x_train (N, 1, 16, 16, 16) uint8, ...
    write_shapes3d("shapes3d.npz", train=3000, test=500, seed=0)

Each volume holds one shape of ``SHAPES`` (its label is the index there): a ball,
a cube, a cylinder, a torus or a flat cross of two bars, with a random size,
centre, orientation (a uniformly random rotation) and brightness, its surface
anti-aliased over one voxel, on a dark background with Gaussian noise, as
uint8 pixels 0..255, one map (``N x 1 x D x H x W``: the layout a 3-D input
``input x : 1 x 16 x 16 x 16`` reads).  The classes are balanced and shuffled.
Everything comes from ``seed``: the training and the test volumes from two
streams of it, so the test set does not depend on how many training volumes
are asked for.  The result is an .npz that ``--data`` and the train block's
``data`` read (training/datasets.py); ``python -m cnngraph make-data shapes3d
FILE`` writes it.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

#: The data sets ``make-data`` writes.
SETS = ("shapes3d",)
SHAPES = ("ball", "cube", "cylinder", "torus", "cross")
#: The sizes a shape's outer radius is drawn from, in voxels (16³ volumes).
RADIUS = (4.5, 7.0)
#: The standard deviation of the noise, on the 0..1 scale of a full voxel.
NOISE = 0.08


def shapes3d(train: int = 3000, test: int = 500, seed: int = 0, size: int = 16,
             noise: float = NOISE) -> dict:
    """The data set as the four arrays an .npz holds (x_train, y_train, x_test, y_test)."""
    x_train, y_train = volumes(train, np.random.default_rng([seed, 0]), size, noise)
    x_test, y_test = volumes(test, np.random.default_rng([seed, 1]), size, noise)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write_shapes3d(path, train: int = 3000, test: int = 500, seed: int = 0, size: int = 16,
                   noise: float = NOISE) -> Path:
    """`shapes3d` written atomically to the .npz file ``path`` (compressed)."""
    from ..core.outputs import usual_mode, write_atomically
    arrays = shapes3d(train, test, seed, size, noise)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomically(path, lambda f: f.write(buffer.getvalue()), usual_mode(), "the data set")
    return Path(path)


def volumes(n: int, rng: np.random.Generator, size: int = 16,
            noise: float = NOISE) -> tuple[np.ndarray, np.ndarray]:
    """``n`` volumes (n, 1, size, size, size) uint8 and their labels (n,) int64."""
    labels = rng.permutation(np.arange(n) % len(SHAPES)).astype(np.int64)
    grid = np.stack(np.meshgrid(*(np.arange(size, dtype=np.float64),) * 3, indexing="ij"))
    out = np.empty((n, 1, size, size, size), np.uint8)
    scale = size / 16
    for k, label in enumerate(labels):
        radius = rng.uniform(*RADIUS) * scale
        margin = radius * 0.6
        centre = rng.uniform(margin, size - 1 - margin, 3)
        rotation = _rotation(rng)
        brightness = rng.uniform(0.6, 1.0)
        # local coordinates: u = Rᵀ (x − centre), one row per axis
        u = np.tensordot(rotation.T, grid - centre[:, None, None, None], axes=1)
        solid = np.clip(0.5 - _distance(SHAPES[label], u, radius), 0.0, 1.0)
        value = 0.1 + brightness * solid + rng.normal(0.0, noise, solid.shape)
        out[k, 0] = np.clip(np.rint(value * 255), 0, 255).astype(np.uint8)
    return out, labels


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix (from a unit quaternion)."""
    w, x, y, z = (q := rng.normal(size=4)) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _box(u: np.ndarray, half) -> np.ndarray:
    """Distance outside an axis-aligned box of half-sides ``half`` (negative inside)."""
    return np.max(np.abs(u) - np.asarray(half, np.float64)[:, None, None, None], axis=0)


def _distance(shape: str, u: np.ndarray, r: float) -> np.ndarray:
    """The signed distance (voxels, negative inside) of each voxel from the surface."""
    radial = np.hypot(u[0], u[1])
    if shape == "ball":
        return np.sqrt((u * u).sum(axis=0)) - r
    if shape == "cube":
        return _box(u, (0.7 * r,) * 3)
    if shape == "cylinder":
        return np.maximum(radial - 0.4 * r, np.abs(u[2]) - r)
    if shape == "torus":
        return np.hypot(radial - 0.65 * r, u[2]) - 0.35 * r
    bar = 0.3 * r  # the cross: two bars at right angles in one plane
    return np.minimum(_box(u, (r, bar, bar)), _box(u, (bar, r, bar)))
