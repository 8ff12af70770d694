"""PNG files written with zlib and struct alone (no Pillow), and the diverging
colour map signed data is drawn with: the explorer page's images and TensorBoard's
share them.

    png_bytes(pixels)               # (H, W) uint8 grey or (H, W, 3) uint8 RGB
    png_bytes(index, PALETTE)       # (H, W) uint8 indices into a palette
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

#: The diverging colour map's ends and middle (blue, white, red: negative, 0, positive).
COLD, MIDDLE, WARM = (np.array(c, dtype=np.float64) for c in
                      ((33, 102, 172), (247, 247, 247), (178, 24, 43)))
#: 255 colours from COLD (index 0, -limit) through MIDDLE (127, zero) to WARM (254,
#: +limit), and black (255) for a value that is not finite.
PALETTE = np.vstack([COLD + (MIDDLE - COLD) * np.linspace(0, 1, 128)[:, None],
                     MIDDLE + (WARM - MIDDLE) * np.linspace(0, 1, 128)[1:, None],
                     [[0, 0, 0]]]).round().astype(np.uint8)


def png_bytes(pixels: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """A PNG file of ``pixels``: (H, W) uint8 (grey, or indices into ``palette``, a
    (K, 3) uint8 array) or (H, W, 3) uint8 RGB."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    colour = 2 if pixels.ndim == 3 else (3 if palette is not None else 0)
    rows = pixels.reshape(height, -1)
    raw = np.hstack([np.zeros((height, 1), np.uint8), rows]).tobytes()  # filter 0 per row
    chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))]
    if colour == 3:
        chunks.append(_chunk(b"PLTE", np.ascontiguousarray(palette, np.uint8).tobytes()))
    chunks += [_chunk(b"IDAT", zlib.compress(raw, 9)), _chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + \
        struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
