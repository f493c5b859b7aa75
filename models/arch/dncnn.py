"""DnCNN-style residual denoiser (Zhang et al., "Beyond a Gaussian Denoiser", TIP 2017)."""

from __future__ import annotations

import torch
from torch import nn

from .common import plain_conv_stack


class DnCNN(nn.Module):
    """``depth`` 3x3 convs with ReLU predicting the noise, subtracted from the input.

    The paper uses depth 17, 64 channels and batch norm; we drop batch norm
    (tiled inference must not depend on tile statistics) and ship width 32
    for CPU speed (stated in the card). Blind: trained over a range of noise
    levels and types, so it needs no sigma.

    Shapes: (N, C, H, W) in [0, 1] -> (N, C, H, W).
    """

    def __init__(self, in_channels: int = 1, depth: int = 17, width: int = 32):
        super().__init__()
        self.scale, self.in_channels = 1, in_channels
        self.body = plain_conv_stack(in_channels, width, depth)
        self.receptive_margin = depth + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)
