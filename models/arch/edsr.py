"""EDSR-baseline-style network (Lim et al., "Enhanced Deep Residual Networks for SISR", CVPRW 2017)."""

from __future__ import annotations

import torch
from torch import nn

from ..resample import upscale_tensor
from .common import PixelShuffleUpsampler, ResBlock, conv3


class EDSR(nn.Module):
    """EDSR-baseline: head conv, ``blocks`` residual blocks (no BN), long skip, pixel-shuffle tail.

    Works at low resolution and upsamples at the end (cheap). Unlike the paper
    we add the bicubic upsample of the input to the output so the network
    learns only the residual: same capacity, faster and more stable training
    on small data. The paper's baseline is 16 blocks x 64 features; our shipped
    weights use ``blocks=8, feats=48`` to train on CPU (stated in the card).

    Shapes: (N, C, h, w) in [0, 1] -> (N, C, h*scale, w*scale).
    """

    def __init__(self, scale: int = 2, in_channels: int = 1, blocks: int = 8, feats: int = 48, res_scale: float = 1.0):
        super().__init__()
        self.scale, self.in_channels = scale, in_channels
        self.head = conv3(in_channels, feats)
        self.body = nn.Sequential(*[ResBlock(feats, res_scale) for _ in range(blocks)], conv3(feats, feats))
        self.tail = nn.Sequential(PixelShuffleUpsampler(scale, feats), conv3(feats, in_channels))
        self.receptive_margin = 2 * blocks + 6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        return upscale_tensor(x, self.scale) + self.tail(f + self.body(f))
