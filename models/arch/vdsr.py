"""VDSR (Kim et al., "Accurate Image Super-Resolution Using Very Deep Convolutional Networks", CVPR 2016)."""

from __future__ import annotations

import torch
from torch import nn

from ..resample import upscale_tensor
from .common import plain_conv_stack


class VDSR(nn.Module):
    """VDSR: ``depth`` 3x3 convolutions with ReLU learning the residual over bicubic.

    The paper uses depth 20 and 64 channels. Our shipped weights use depth 20
    and ``width`` 32: four times fewer FLOPs, which is what lets a 512x512
    output run in well under a second on a 2-core CPU and lets it train on
    CPU at all; the card states the width.

    Args:
        scale: upscaling factor (the module includes the bicubic upsample).
        in_channels: 1 (grayscale) or 3.
        depth: number of convolution layers (>= 3).
        width: channels of the hidden layers.
    Shapes: (N, C, h, w) in [0, 1] -> (N, C, h*scale, w*scale).
    """

    def __init__(self, scale: int = 2, in_channels: int = 1, depth: int = 20, width: int = 32):
        super().__init__()
        self.scale, self.in_channels = scale, in_channels
        self.body = plain_conv_stack(in_channels, width, depth)
        # Receptive field is 2*depth+1 output pixels; half of it, in input pixels, plus bicubic support.
        self.receptive_margin = depth // scale + 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = upscale_tensor(x, self.scale) if self.scale > 1 else x
        return up + self.body(up)
