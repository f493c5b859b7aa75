"""Building blocks shared by the post-upsampling SR networks."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn


def conv3(cin: int, cout: int) -> nn.Conv2d:
    """3x3 convolution with 'same' zero padding."""
    return nn.Conv2d(cin, cout, 3, padding=1)


class PixelShuffleUpsampler(nn.Sequential):
    """x2 stages of conv + pixel shuffle (ESPCN) up to ``scale`` (a power of 2, or 3).

    ``act`` is a factory: each stage gets its own activation (a shared module would
    share parameters, e.g. PReLU slopes, which safetensors refuses to save).
    """

    def __init__(self, scale: int, feats: int, act: Callable[[], nn.Module] | None = None):
        stages: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                stages += [conv3(feats, 4 * feats), nn.PixelShuffle(2)]
                if act is not None:
                    stages.append(act())
        elif scale == 3:
            stages += [conv3(feats, 9 * feats), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"unsupported scale {scale}")
        super().__init__(*stages)


class ResBlock(nn.Module):
    """EDSR residual block: conv-ReLU-conv, scaled, plus identity (no batch norm)."""

    def __init__(self, feats: int, res_scale: float = 1.0, act: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.body = nn.Sequential(conv3(feats, feats), act(), conv3(feats, feats))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


def plain_conv_stack(in_channels: int, width: int, depth: int) -> nn.Sequential:
    """``depth`` 3x3 convs with ReLU between them (VDSR / DnCNN body), He-initialised.

    With PyTorch's default init a 20-layer plain ReLU stack barely propagates
    signal and does not start learning for hundreds of steps; the last conv
    starts near zero so the network starts as the identity (its input skip).
    """
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True)]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(width, in_channels, 3, padding=1))
    body = nn.Sequential(*layers)
    for m in body:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    nn.init.normal_(body[-1].weight, std=1e-3)
    return body
