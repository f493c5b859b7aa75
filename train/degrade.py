"""Degradations: small seeded functions that turn a clean image into a training input.

Used by training, evaluation and the studio's simulate mode. Each takes and
returns the studio convention (float32 in [0, 1], (H, W) or (H, W, 3)); the
tensor variants used inside the training loop take (N, C, H, W).
"""

from __future__ import annotations

import numpy as np
import torch

from models.resample import downscale, downscale_tensor


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so H and W are multiples of ``scale`` (so up(down(x)) fits x)."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def bicubic_down(image: np.ndarray, scale: int) -> np.ndarray:
    """Antialiased bicubic downsampling by ``scale`` (the classic SR degradation).

    The image is first cropped to a multiple of ``scale``; returns
    (H // scale, W // scale[, 3]) float32 in [0, 1].
    """
    return downscale(crop_to_multiple(image, scale), scale)


def bicubic_down_tensor(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H//scale, W//scale); H, W multiples of ``scale``."""
    return downscale_tensor(x, scale)
