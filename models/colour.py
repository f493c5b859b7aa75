"""Colour conversions for running grayscale models on colour images.

Grayscale networks (``in_channels == 1``) see the luma channel Y of a colour
image; the chroma channels are upscaled bicubically (SR) or kept (denoise,
enhance). That is the usual practice in SR literature and keeps hues intact.
Uses full-range BT.601 (JPEG) YCbCr, values in [0, 1].
"""

from __future__ import annotations

from typing import Callable

import numpy as np

_RGB2YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32
)
_YCC2RGB = np.linalg.inv(_RGB2YCC).astype(np.float32)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> (H, W, 3) YCbCr with Y, Cb, Cr in [0, 1] (chroma centred on 0.5)."""
    ycc = rgb @ _RGB2YCC.T
    ycc[..., 1:] += 0.5
    return ycc.astype(np.float32, copy=False)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`; output clipped to [0, 1]."""
    centred = ycc.copy()
    centred[..., 1:] -= 0.5
    return np.clip(centred @ _YCC2RGB.T, 0.0, 1.0).astype(np.float32, copy=False)


def apply_on_luma(
    rgb: np.ndarray,
    luma_fn: Callable[[np.ndarray], np.ndarray],
    chroma_fn: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Run a grayscale function on the luma of an (H, W, 3) image.

    Args:
        rgb: (H, W, 3) float32 in [0, 1].
        luma_fn: (H, W) -> (H', W') grayscale function (the model).
        chroma_fn: applied to the (H, W, 2) chroma planes so they match
            (H', W'); ``None`` keeps them (H' == H).
    Returns:
        (H', W', 3) float32 RGB in [0, 1].
    """
    ycc = rgb_to_ycbcr(rgb)
    y = luma_fn(np.ascontiguousarray(ycc[..., 0]))
    chroma = ycc[..., 1:] if chroma_fn is None else chroma_fn(np.ascontiguousarray(ycc[..., 1:]))
    return ycbcr_to_rgb(np.concatenate([y[..., None], chroma], axis=-1))
