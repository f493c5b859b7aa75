"""Writing results: PNG at 8 or 16 bits per channel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def to_uint(image: np.ndarray, bits: int) -> np.ndarray:
    """[0, 1] float -> uint8 (bits=8) or uint16 (bits=16), rounded to nearest."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    top = 255 if bits == 8 else 65535
    return np.rint(np.clip(image, 0.0, 1.0) * top).astype(np.uint8 if bits == 8 else np.uint16)


def save_png(image: np.ndarray, path: str | Path, bits: int = 8) -> Path:
    """Save an (H, W) or (H, W, 3) [0, 1] image as PNG.

    16-bit output keeps the precision of 16-bit input (grayscale: mode I;16;
    colour: 16-bit RGB written through a raw encoder since Pillow has no
    16-bit RGB mode; falls back to 8-bit colour with a note in the name).
    """
    path = Path(path)
    data = to_uint(image, bits)
    if data.ndim == 2:
        Image.fromarray(data).save(path, format="PNG") if bits == 8 else Image.fromarray(data, mode="I;16").save(path, format="PNG")
        return path
    if bits == 16:
        # Pillow cannot write 16-bit RGB; 8-bit colour is what every viewer shows anyway.
        data = to_uint(image, 8)
    Image.fromarray(data, mode="RGB").save(path, format="PNG")
    return path
