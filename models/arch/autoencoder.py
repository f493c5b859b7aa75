"""Convolutional denoising autoencoder with skip connections (a small U-Net)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class DenoisingAutoencoder(nn.Module):
    """Encoder (``levels`` stride-2 stages) - bottleneck - decoder with skip connections.

    The encoder compresses the image into coarse features where noise and
    structure separate; the skips carry the fine structure back so edges are
    not blurred. Output = input + predicted correction. Any H, W (padded to a
    multiple of 2**levels internally).

    Shapes: (N, C, H, W) in [0, 1] -> (N, C, H, W).
    """

    def __init__(self, in_channels: int = 1, width: int = 24, levels: int = 2):
        super().__init__()
        self.scale, self.in_channels, self.levels = 1, in_channels, levels
        ws = [width * 2**i for i in range(levels + 1)]
        self.enc = nn.ModuleList([_block(in_channels, ws[0])] + [_block(ws[i], ws[i + 1]) for i in range(levels)])
        self.up = nn.ModuleList(nn.ConvTranspose2d(ws[i + 1], ws[i], 2, stride=2) for i in range(levels))
        self.dec = nn.ModuleList(_block(2 * ws[i], ws[i]) for i in range(levels))
        self.out = nn.Conv2d(ws[0], in_channels, 1)
        # Receptive radius: two 3x3 convs per encoder level (2 * 2**i px each) and per decoder level,
        # 6 * 2**levels - 4 px, plus up to 2**levels from pooling and the transposed convs; a multiple
        # of tile_align (tests/test_models.py checks it with random weights).
        self.receptive_margin = 7 * 2**levels
        # Pooling makes the output depend on where the 2**levels grid falls: tiles must start on it.
        self.tile_align = 2**levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.levels
        xp = F.pad(x, (0, (-w) % m, 0, (-h) % m), mode="replicate")
        skips = [self.enc[0](xp)]
        for i in range(self.levels):
            skips.append(self.enc[i + 1](F.avg_pool2d(skips[-1], 2)))
        f = skips.pop()
        for i in reversed(range(self.levels)):
            f = self.dec[i](torch.cat([self.up[i](f), skips.pop()], 1))
        return (xp + self.out(f))[..., :h, :w]
