"""Compact encodings for the explorer page: arrays as 8-bit PNG data URIs and
numbers rounded to 4 significant digits.

    encode_maps(y[0])            # (maps, H, W) -> {"shape", "range", "png": [...]}
    png_uri(pixels)              # (H, W) uint8 grey, or (H, W, 3) uint8 colour

Signed data (maps, deltas, kernels, saliency) use a diverging colour map centred
on 0 over [-m, m], m the largest magnitude, recorded as "range" so that the page
can draw the legend; images use grey over their own [lo, hi].  The PNG is
written by `tools.png` (zlib + struct), so the page needs no Pillow: each image is
stored as an 8-bit palette PNG or as RGB, whichever is the shorter.
"""
from __future__ import annotations

import base64
import math

import numpy as np

from ..tools.png import PALETTE, png_bytes

#: The most kernels one mosaic draws (`encode_kernels`).
MOSAIC_TILES = 256
#: Significant digits of every number the page shows.
DIGITS = 4


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_uri(pixels: np.ndarray) -> str:
    """``pixels`` (uint8 grey or RGB) as a PNG data URI."""
    return data_uri(png_bytes(pixels))


def signed_limit(values: np.ndarray) -> float:
    """The diverging map's half-width: the largest finite magnitude (1 if none)."""
    finite = np.abs(values[np.isfinite(values)])
    top = float(finite.max()) if finite.size else 0.0
    return top if top > 0 else 1.0


def diverging_uri(values: np.ndarray, limit: float) -> str:
    """A 2-D array as a diverging-colour PNG over [-limit, limit] (non-finite: black)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    index = np.clip(np.round(np.where(finite, values, 0) / limit * 127 + 127), 0, 254)
    index = np.where(finite, index, 255).astype(np.uint8)
    indexed, rgb = png_bytes(index, PALETTE), png_bytes(PALETTE[index])
    return data_uri(min(indexed, rgb, key=len))


def grey_uri(values: np.ndarray, lo: float, hi: float) -> str:
    """A 2-D array as grey over [lo, hi] (lo black, hi white)."""
    span = hi - lo if hi > lo else 1.0
    scaled = np.clip((np.asarray(values, np.float64) - lo) / span * 255, 0, 255)
    return png_uri(np.nan_to_num(scaled).round().astype(np.uint8))


def encode_maps(maps: np.ndarray) -> dict:
    """One layer's maps (or deltas) of one image, one PNG per map over a shared
    diverging range.  Maps of (maps, H, W); 1-D maps (maps, L) each as a strip one
    pixel high, 3-D maps (maps, D, H, W) each by its middle slice across the depth
    ("depth": which slice; "plane": each PNG's height and width; "note" says so);
    a layer of units (units,), or of maps of one pixel, is one 1×units strip with
    the numbers themselves in "values" (a PNG per unit would cost far more than the
    number)."""
    maps = np.asarray(maps, dtype=np.float64)
    limit = signed_limit(maps)
    entry = {"shape": list(maps.shape), "range": [round_sig(-limit), round_sig(limit)]}
    if maps.ndim < 2 or math.prod(maps.shape[1:]) == 1:
        flat = maps.reshape(1, -1)
        return {**entry, "png": [diverging_uri(flat, limit)],
                "values": round_sig(flat[0].tolist())}
    if maps.ndim == 2:
        entry.update(plane=[1, maps.shape[1]], note="1-D maps: each a strip one pixel high")
        maps = maps[:, None]
    elif maps.ndim == 4:
        depth = maps.shape[1] // 2
        entry.update(plane=list(maps.shape[2:]), depth=depth,
                     note=f"3-D maps: each by its middle slice across the depth (slice "
                          f"{depth} of {maps.shape[1]})")
        maps = maps[:, depth]
    return {**entry, "png": [diverging_uri(m, limit) for m in maps]}


def picture(image: np.ndarray) -> np.ndarray:
    """What the page draws of one input image (maps, *spatial): its first map; a 1-D
    input whole, a row per map (MNIST read as 28 rows of 28 is the digit again); a
    3-D one by its first map's middle slice across the depth."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    first = image[0]
    return first[len(first) // 2] if first.ndim == 3 else first


def encode_kernels(kernel: np.ndarray) -> dict:
    """A parameter tensor as one mosaic PNG over a diverging range (taken over the
    whole tensor): a conv kernel (out, in, k, k) as rows of in tiles of k×k, one pixel
    apart, tile (j, i) at (j·tile[0], i·tile[1]); a weight matrix (out, in) as itself,
    "tile" None.  Only the first "rows" output maps are drawn when the mosaic would
    pass `MOSAIC_TILES` tiles (C5's 120 × 16 kernels are noise at a glance, and cost
    70 kB a position).  A 1-D kernel (out, in, k) is the matrix (out, in·k); a 3-D
    one is drawn by its middle slice across the depth."""
    kernel = np.asarray(kernel, dtype=np.float64)
    limit = signed_limit(kernel)
    entry = {"shape": list(kernel.shape), "range": [round_sig(-limit), round_sig(limit)]}
    if kernel.ndim == 5:  # 3-D kernels by their middle slice across the depth
        kernel = kernel[:, :, kernel.shape[2] // 2]
    if kernel.ndim != 4:
        matrix = kernel.reshape(kernel.shape[0], -1)
        return {**entry, "tile": None, "rows": len(matrix),
                "png": [diverging_uri(matrix, limit)]}
    out, inputs, kh, kw = kernel.shape
    rows = max(1, min(out, MOSAIC_TILES // inputs))
    mosaic = np.zeros((rows * (kh + 1) - 1, inputs * (kw + 1) - 1))
    for j in range(rows):
        for i in range(inputs):
            mosaic[j * (kh + 1):j * (kh + 1) + kh, i * (kw + 1):i * (kw + 1) + kw] = kernel[j, i]
    return {**entry, "tile": [kh + 1, kw + 1], "rows": rows, "png": [diverging_uri(mosaic, limit)]}


def round_sig(value, digits: int = DIGITS):
    """``value`` (a number, array or nested lists/dicts/tuples of them) with every
    float rounded to ``digits`` significant digits; NaN and infinities become the
    strings "NaN", "Infinity", "-Infinity" (JSON has no such numbers)."""
    kind = type(value)  # by type first: explanations hold ~10^5 numbers
    if kind is float:
        return _round(value, digits)
    if kind is list or kind is tuple:
        return [round_sig(v, digits) for v in value]
    if kind is dict:
        return {k: round_sig(v, digits) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return round_sig(value.tolist(), digits)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, np.floating):
        return _round(float(value), digits)
    return value


def _round(value: float, digits: int):
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return float(f"{value:.{digits - 1}e}") if value else 0.0
