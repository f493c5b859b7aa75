"""Small per-image helpers shared by :mod:`train.degrade` and :mod:`train.realistic` (studio convention:
float32 in [0, 1], (H, W) or (H, W, 3))."""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
from PIL import Image


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _per_plane(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn`` on an (H, W) image, or on each channel of an (H, W, C) one (restacked on the last axis)."""
    if image.ndim == 2:
        return fn(image)
    return np.stack([fn(image[..., c]) for c in range(image.shape[-1])], axis=-1)


def jpeg(image: np.ndarray, quality: int = 30, seed: int = 0) -> np.ndarray:
    """JPEG compression round trip at 8 bits (Pillow, 4:2:0 for colour)."""
    u8 = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buf), dtype=np.float32) / 255.0
