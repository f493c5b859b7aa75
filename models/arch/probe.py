"""A small CNN that looks at a low-resolution input and says which of two SR specialists fits it.

The bicubic-trained SR networks gain on clean inputs and lose ~2 dB on noisy / blurred / JPEG ones; the
noise-aware networks the other way round on clean CLAHE-processed radiographs. A noise estimate alone cannot
tell them apart (on the Hannover PNGs the CLAHE texture reads as sigma ~0.01, like dose-2000 noise), so this
probe is trained on the decision itself: for random clean, noisy and realistic patches, the weight ``w`` in
[0, 1] of the second specialist that minimises the error of ``(1 - w) * clean_model + w * noise_model``
(:mod:`train.probe`). It sees the image and the estimated noise level plane, pools over the whole patch, and
returns one logit per sample.

Shapes: (N, 1, h, w) in [0, 1], h, w >= 8 -> (N, 1) logits (sigmoid = weight of the noise-aware specialist).
"""

from __future__ import annotations

import torch
from torch import nn

from ..noise import estimate_sigma_tensor, noise_map


class DegradationProbe(nn.Module):
    """conv-ReLU stack (two stride-2 stages), a 1x1 conv to one logit map, averaged over the image."""

    def __init__(self, feats: int = 16, convs: int = 6):
        super().__init__()
        self.in_channels, self.scale = 1, 1
        layers: list[nn.Module] = [nn.Conv2d(2, feats, 3, padding=1), nn.ReLU(inplace=True)]
        for i in range(convs - 1):
            stride = 2 if i in (1, 3) else 1  # two stride-2 stages: a 16 px context per output at little cost
            layers += [nn.Conv2d(feats, feats, 3, stride=stride, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(feats, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        sigma = estimate_sigma_tensor(x) if sigma is None else sigma
        return self.body(torch.cat([x, noise_map(sigma, x)], 1)).mean(dim=(2, 3))
