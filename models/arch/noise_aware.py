"""Noise-aware networks: our EDSR, SRResNet and U-Net autoencoder with the input's noise level as one more input.

As FFDNet (Zhang et al. 2018) and SRMD (Zhang et al. 2018) condition on a noise-level map, the first conv sees
the image plus a constant plane ``20 * sigma``. ``sigma`` is :func:`models.noise.estimate_sigma_tensor` of the
*whole* input image (``image_stats``, the same global-statistics protocol as the gated enhancer: computed once
before tiling, so every tile gets the same level) unless the caller gives one (``stats=``; the studio's "noise
level" option). Training calls ``forward`` without ``stats``, so each patch is conditioned on its own estimate:
the network learns to use what the estimator reports, and a user-given level overrides it.

Shapes: (N, C, h, w) in [0, 1] (and optionally ``stats`` (N, 1, 1, 1) sigma in [0, 1] units) ->
(N, C, h * scale, w * scale), unclamped.

Weights of the plain network load into its noise-aware twin with the extra input channel at zero
(:func:`expand_input_channels`), so a noise-aware model starts as the model it was made from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..noise import estimate_sigma_tensor, noise_map
from ..resample import upscale_tensor
from .autoencoder import DenoisingAutoencoder
from .common import conv3
from .edsr import EDSR
from .srresnet import SRResNet


class _NoiseInput:
    """The global-statistics protocol for a noise level (see the module docstring)."""

    global_stats = True
    noise_aware = True

    def image_stats(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) whole images -> (N, 1, 1, 1) estimated noise sigma."""
        return estimate_sigma_tensor(x)

    def _with_level(self, x: torch.Tensor, stats: torch.Tensor | None) -> torch.Tensor:
        sigma = self.image_stats(x) if stats is None else stats
        return torch.cat([x, noise_map(sigma, x)], 1)


class NoiseAwareEDSR(_NoiseInput, EDSR):
    """:class:`EDSR` whose head conv also sees the noise-level plane."""

    def __init__(self, scale: int = 2, in_channels: int = 1, blocks: int = 8, feats: int = 48):
        super().__init__(scale, in_channels, blocks, feats)
        self.head = conv3(in_channels + 1, feats)

    def forward(self, x: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        f = self.head(self._with_level(x, stats))
        return upscale_tensor(x, self.scale) + self.tail(f + self.body(f))


class NoiseAwareSRResNet(_NoiseInput, SRResNet):
    """:class:`SRResNet` whose 9x9 head conv also sees the noise-level plane."""

    def __init__(self, scale: int = 4, in_channels: int = 1, blocks: int = 8, feats: int = 48):
        super().__init__(scale, in_channels, blocks, feats)
        self.head[0] = nn.Conv2d(in_channels + 1, feats, 9, padding=4)

    def forward(self, x: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        f = self.head(self._with_level(x, stats))
        return upscale_tensor(x, self.scale) + self.tail(f + self.body(f))


class NoiseAwareAutoencoder(_NoiseInput, DenoisingAutoencoder):
    """:class:`DenoisingAutoencoder` (U-Net) whose first conv also sees the noise-level plane."""

    def __init__(self, in_channels: int = 1, width: int = 32, levels: int = 3):
        super().__init__(in_channels, width, levels)
        self.enc[0][0] = nn.Conv2d(in_channels + 1, width, 3, padding=1)

    def forward(self, x: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.levels
        xp = F.pad(x, (0, (-w) % m, 0, (-h) % m), mode="replicate")
        sigma = self.image_stats(x) if stats is None else stats  # on the unpadded image
        skips = [self.enc[0](torch.cat([xp, noise_map(sigma, xp)], 1))]
        for i in range(self.levels):
            skips.append(self.enc[i + 1](F.avg_pool2d(skips[-1], 2)))
        f = skips.pop()
        for i in reversed(range(self.levels)):
            f = self.dec[i](torch.cat([self.up[i](f), skips.pop()], 1))
        return (xp + self.out(f))[..., :h, :w]


def expand_input_channels(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A plain network's state dict made to fit its noise-aware twin: conv weights with fewer input channels
    than the target get zero weights for the extra (noise-level) channel; everything else is unchanged."""
    out = {}
    for k, v in state.items():
        t = target.get(k)
        if t is not None and v.ndim == 4 and t.ndim == 4 and v.shape[1] < t.shape[1] and v.shape[0] == t.shape[0]:
            pad = torch.zeros(v.shape[0], t.shape[1] - v.shape[1], *v.shape[2:], dtype=v.dtype)
            v = torch.cat([v, pad], 1)
        out[k] = v
    return out
