"""Resampling shared by the networks, the classical baselines and the degradations.

One bicubic implementation everywhere (``torch.nn.functional.interpolate``,
``align_corners=False``) so that "bicubic" means the same thing in the
bicubic baseline row, inside SRCNN/VDSR (which refine a bicubic upsample) and
in the training degradation (antialiased bicubic downsampling).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def bicubic_resize_tensor(x: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """Bicubic resize of an (N, C, H, W) float tensor to ``size`` = (h, w).

    ``antialias`` only matters when shrinking (it widens the kernel so the
    result is not aliased, like PIL/Matlab ``imresize``). Values are not
    clipped: bicubic overshoots slightly at edges, callers clamp if needed.
    """
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=antialias)


def upscale_tensor(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, h*scale, w*scale), bicubic, clamped to [0, 1]."""
    h, w = x.shape[-2:]
    return bicubic_resize_tensor(x, (h * scale, w * scale), antialias=False).clamp_(0.0, 1.0)


def downscale_tensor(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H//scale, W//scale), antialiased bicubic, clamped to [0, 1].

    H and W should be multiples of ``scale`` so that up(down(x)) has x's size.
    """
    h, w = x.shape[-2:]
    return bicubic_resize_tensor(x, (h // scale, w // scale), antialias=True).clamp_(0.0, 1.0)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) float32 array -> (1, C, H, W) tensor (shares memory when possible)."""
    if image.ndim == 2:
        return torch.from_numpy(np.ascontiguousarray(image))[None, None]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def to_numpy(x: torch.Tensor, colour: bool) -> np.ndarray:
    """(1, C, H, W) tensor -> (H, W) (``colour=False``) or (H, W, C) float32 array."""
    a = x.detach().to("cpu", torch.float32)[0].numpy()
    return np.ascontiguousarray(a.transpose(1, 2, 0)) if colour else a[0]


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upscaling of an (H, W[, 3]) [0, 1] image by an integer factor."""
    with torch.no_grad():
        return to_numpy(upscale_tensor(to_tensor(image.astype(np.float32, copy=False)), scale), image.ndim == 3)


def downscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Antialiased bicubic downscaling of an (H, W[, 3]) [0, 1] image by an integer factor."""
    with torch.no_grad():
        return to_numpy(downscale_tensor(to_tensor(image.astype(np.float32, copy=False)), scale), image.ndim == 3)
