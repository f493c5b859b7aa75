"""RRDBNet, the ESRGAN generator (Wang et al., "ESRGAN: Enhanced SRGAN", ECCVW 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..resample import upscale_tensor


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs (growth ``gc``), LeakyReLU, residual scaled by 0.2."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(nf + i * gc, gc if i < 4 else nf, 3, padding=1) for i in range(5))
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, 1))
            if i < 4:
                feats.append(self.act(out))
        return x + 0.2 * out


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs and an outer residual scaled by 0.2."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.rdbs = nn.Sequential(ResidualDenseBlock(nf, gc), ResidualDenseBlock(nf, gc), ResidualDenseBlock(nf, gc))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdbs(x)


class RRDBNet(nn.Module):
    """RRDBNet: conv, ``nb`` RRDBs, trunk conv + long skip, nearest-neighbour x2 upsampling stages.

    The paper uses nb=23, nf=64, gc=32 (16.7 M parameters, 67 MB); our shipped
    weights use nb=4, nf=32, gc=16 so a file stays far below 10 MB and the
    network trains on CPU (stated in the card). Scale must be 2 or 4.
    Unlike the paper, the output is added to the bicubic upsample of the input
    (the last conv starts near zero): trained from scratch for a few hundred
    CPU steps, the paper's version is still far below bicubic, the residual
    version starts at bicubic and improves from there.

    Shapes: (N, C, h, w) in [0, 1] -> (N, C, h*scale, w*scale).
    """

    def __init__(self, scale: int = 4, in_channels: int = 1, nb: int = 4, nf: int = 32, gc: int = 16):
        super().__init__()
        if scale not in (2, 4):
            raise ValueError("RRDBNet supports scale 2 or 4")
        self.scale, self.in_channels = scale, in_channels
        self.conv_first = nn.Conv2d(in_channels, nf, 3, padding=1)
        self.body = nn.Sequential(*[RRDB(nf, gc) for _ in range(nb)])
        self.conv_body = nn.Conv2d(nf, nf, 3, padding=1)
        self.ups = nn.ModuleList(nn.Conv2d(nf, nf, 3, padding=1) for _ in range(scale // 2))
        self.conv_hr = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_last = nn.Conv2d(nf, in_channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        nn.init.normal_(self.conv_last.weight, std=1e-3)
        nn.init.zeros_(self.conv_last.bias)
        self.receptive_margin = 16 * nb + 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv_first(x)
        f = f + self.conv_body(self.body(f))
        for up in self.ups:
            f = self.act(up(F.interpolate(f, scale_factor=2, mode="nearest")))
        return upscale_tensor(x, self.scale) + self.conv_last(self.act(self.conv_hr(f)))
