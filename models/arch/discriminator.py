"""Patch discriminator for SRGAN/ESRGAN training (used by ``train``, never served)."""

from __future__ import annotations

import torch
from torch import nn


class Discriminator(nn.Module):
    """VGG-style discriminator (SRGAN paper, Fig. 4), fully convolutional.

    Strided conv stages halve the resolution while doubling features; the
    output is a per-patch logit map (N, 1, H/16, W/16) rather than one score,
    so any patch size works. Spectral norm keeps GAN training stable at small
    batch sizes on CPU.

    Shapes: (N, C, H, W) in [0, 1] -> (N, 1, H/16, W/16) logits.
    """

    def __init__(self, in_channels: int = 1, feats: int = 32):
        super().__init__()
        sn = nn.utils.spectral_norm
        layers: list[nn.Module] = [sn(nn.Conv2d(in_channels, feats, 3, padding=1)), nn.LeakyReLU(0.2, True)]
        c = feats
        for i in range(4):
            nxt = feats * 2 ** min(i + 1, 3)
            layers += [sn(nn.Conv2d(c, c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, True),
                       sn(nn.Conv2d(c, nxt, 3, padding=1)), nn.LeakyReLU(0.2, True)]
            c = nxt
        layers.append(nn.Conv2d(c, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
