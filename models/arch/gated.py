"""Residual-gated perceptual enhancement network, after Sharif et al.,
"Deep Perceptual Enhancement for Medical Image Analysis", IEEE JBHI 2022."""

from __future__ import annotations

import torch
from torch import nn


class GatedResidualBlock(nn.Module):
    """x + g(x) * f(x): a residual block whose update is gated per pixel and channel.

    f = conv-LeakyReLU-conv (the correction), g = sigmoid(conv) (how much of it
    to apply). The gate lets the network leave well-exposed regions alone while
    correcting dark, flat or noisy ones.
    """

    def __init__(self, feats: int):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(feats, feats, 3, padding=1), nn.LeakyReLU(0.2, True), nn.Conv2d(feats, feats, 3, padding=1))
        self.g = nn.Sequential(nn.Conv2d(feats, feats, 3, padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.g(x) * self.f(x)


class GatedEnhancer(nn.Module):
    """Fully convolutional contrast/brightness/noise corrector.

    Two paths: a full-resolution path of gated residual blocks (local detail
    and noise), and a global path that pools the image to a few statistics
    and predicts per-channel gain and offset (global contrast and brightness,
    which a purely local network of small receptive field cannot see). Output
    = gain * x + offset + local correction, so an identity mapping is easy to
    learn and the output keeps the input's structures.

    Shapes: (N, C, H, W) in [0, 1] -> (N, C, H, W); C = ``in_channels`` (1 or 3).
    """

    def __init__(self, in_channels: int = 3, feats: int = 32, blocks: int = 4):
        super().__init__()
        self.scale, self.in_channels = 1, in_channels
        self.head = nn.Conv2d(in_channels, feats, 3, padding=1)
        self.body = nn.Sequential(*[GatedResidualBlock(feats) for _ in range(blocks)])
        self.tail = nn.Conv2d(feats, in_channels, 3, padding=1)
        # Global statistics -> per-channel gain/offset (image-level exposure and contrast).
        self.stats = nn.Sequential(nn.Linear(4 * in_channels, 32), nn.LeakyReLU(0.2, True), nn.Linear(32, 2 * in_channels))
        nn.init.zeros_(self.stats[-1].weight)
        nn.init.zeros_(self.stats[-1].bias)
        self.receptive_margin = 4 * blocks + 4
        self.global_stats = True

    def image_stats(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 4C): mean, std, 5th and 95th percentile per channel."""
        flat = x.flatten(2)
        if flat.shape[-1] > 65536:  # subsample: quantiles of huge images are slow and need no precision
            flat = flat[..., :: flat.shape[-1] // 65536]
        q = torch.quantile(flat.float(), torch.tensor([0.05, 0.95], device=x.device), dim=-1).permute(1, 2, 0)
        return torch.cat([flat.mean(-1), flat.std(-1), q.flatten(1)], 1).to(x.dtype)

    def forward(self, x: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        """``stats``: precomputed :meth:`image_stats` of the whole image (tiled inference passes them)."""
        s = self.image_stats(x) if stats is None else stats
        gain_offset = self.stats(s)
        c = self.in_channels
        gain = 1 + gain_offset[:, :c, None, None]
        offset = gain_offset[:, c:, None, None]
        return gain * x + offset + self.tail(self.body(self.head(x)))
