"""DnCNN-style residual denoiser (Zhang et al., "Beyond a Gaussian Denoiser", TIP 2017)."""

from __future__ import annotations

import torch
from torch import nn


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
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, in_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        # He initialisation as in the paper: with PyTorch's default init a 20-layer plain ReLU
        # stack barely propagates signal and does not start learning for hundreds of steps.
        for m in self.body:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.body[-1].weight, std=1e-3)  # start close to the identity / bicubic
        self.receptive_margin = depth + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)
