"""SRResNet / SRGAN generator (Ledig et al., "Photo-Realistic SISR Using a GAN", CVPR 2017)."""

from __future__ import annotations

import torch
from torch import nn

from ..resample import upscale_tensor
from .common import PixelShuffleUpsampler, ResBlock, conv3


class SRResNet(nn.Module):
    """SRResNet: 9x9 head, residual blocks with PReLU, long skip, pixel-shuffle + PReLU, 9x9 tail.

    The paper uses 16 blocks x 64 channels with batch norm; we drop batch norm
    (as EDSR and ESRGAN later showed, it hurts SR and makes tiled inference
    depend on tile statistics) and ship ``blocks=8, feats=48`` to fit CPU
    training. The same module is the SRGAN generator (different weights).
    As in our EDSR, the output is added to the bicubic upsample of the input
    (last conv initialised near zero) so short CPU training starts at bicubic.

    Shapes: (N, C, h, w) in [0, 1] -> (N, C, h*scale, w*scale).
    """

    def __init__(self, scale: int = 4, in_channels: int = 1, blocks: int = 8, feats: int = 48):
        super().__init__()
        self.scale, self.in_channels = scale, in_channels
        self.head = nn.Sequential(nn.Conv2d(in_channels, feats, 9, padding=4), nn.PReLU(feats))
        self.body = nn.Sequential(*[ResBlock(feats, 1.0, nn.PReLU) for _ in range(blocks)], conv3(feats, feats))
        self.tail = nn.Sequential(PixelShuffleUpsampler(scale, feats, lambda: nn.PReLU(feats)), nn.Conv2d(feats, in_channels, 9, padding=4))
        last = self.tail[-1]
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)
        self.receptive_margin = 2 * blocks + 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        return upscale_tensor(x, self.scale) + self.tail(f + self.body(f))
