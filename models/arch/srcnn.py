"""SRCNN (Dong et al., "Image Super-Resolution Using Deep Convolutional Networks", TPAMI 2016)."""

from __future__ import annotations

import torch
from torch import nn

from ..resample import upscale_tensor


class SRCNN(nn.Module):
    """SRCNN 9-5-5 refining a bicubic upsample.

    Three convolutions (9x9 -> 64, 5x5 -> 32, 5x5 -> C) as in the paper's
    9-5-5 setting, with 'same' zero padding so the output keeps the input
    size. ``residual=True`` adds the bicubic input to the network output
    (global residual learning, as later popularised by VDSR): the network
    then learns only the missing detail, which converges far faster — the
    setting our shipped weights use, stated in their card.

    Args:
        scale: upscaling factor (the module includes the bicubic upsample).
        in_channels: 1 (grayscale) or 3.
        residual: predict detail added to bicubic instead of the whole image.
    Shapes: (N, C, h, w) in [0, 1] -> (N, C, h*scale, w*scale).
    """

    def __init__(self, scale: int = 2, in_channels: int = 1, residual: bool = True, f1: int = 64, f2: int = 32):
        super().__init__()
        self.scale, self.in_channels, self.residual = scale, in_channels, residual
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, f1, 9, padding=4),
            nn.ReLU(inplace=True),
            nn.Conv2d(f1, f2, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(f2, in_channels, 5, padding=2),
        )
        # 16 output pixels of context on each side = 8 (x2) / 4 (x4) input pixels + bicubic support.
        self.receptive_margin = 16 // scale + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = upscale_tensor(x, self.scale) if self.scale > 1 else x
        out = self.body(up)
        return out + up if self.residual else out
