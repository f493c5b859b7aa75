"""Compact SR network (after Real-ESRGAN's SRVGGNetCompact, Wang et al. 2021): every conv at the input resolution.

The post-upsampling networks (SRResNet, RRDBNet, EDSR x4) run their last convolutions on 4x or 16x the
pixels, where a 2-core CPU is memory-bound (26 % of its matmul peak for SRResNet x4, docs/performance.md).
Here the body is a plain stack of 3x3 convs with PReLU at low resolution, the last conv predicts the
``scale**2`` sub-pixels of each output pixel, and one pixel shuffle at the very end rearranges them; the
result is added to the bicubic enlargement of the input, so the network learns only the residual and a
freshly initialised one starts as bicubic.
"""

from __future__ import annotations

import torch
from torch import nn

from ..resample import upscale_tensor


class CompactSR(nn.Module):
    """``convs`` 3x3 convs of ``feats`` channels with PReLU, a conv to ``C * scale**2``, pixel shuffle, + bicubic.

    Shapes: (N, C, h, w) in [0, 1] -> (N, C, h*scale, w*scale), unclamped.
    FLOPs per input pixel ~ 2 * 9 * feats * (C + feats * (convs - 1) + C * scale**2).
    """

    def __init__(self, scale: int = 4, in_channels: int = 1, feats: int = 48, convs: int = 12):
        super().__init__()
        if convs < 2:
            raise ValueError("CompactSR needs at least 2 convolutions")
        self.scale, self.in_channels = scale, in_channels
        layers: list[nn.Module] = [nn.Conv2d(in_channels, feats, 3, padding=1), nn.PReLU(feats)]
        for _ in range(convs - 2):
            layers += [nn.Conv2d(feats, feats, 3, padding=1), nn.PReLU(feats)]
        last = nn.Conv2d(feats, in_channels * scale * scale, 3, padding=1)
        # Near-zero last layer: the untrained network is bicubic, so short CPU training starts from the baseline.
        nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)
        self.body = nn.Sequential(*layers, last)
        self.shuffle = nn.PixelShuffle(scale)
        self.receptive_margin = convs + 2  # one input pixel per 3x3 conv, plus bicubic's 2 px
        self.lr_feats = feats  # every activation has this many channels: tiles are sized to keep two in cache

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upscale_tensor(x, self.scale) + self.shuffle(self.body(x))
