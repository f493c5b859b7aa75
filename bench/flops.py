"""FLOPs counted from the layers (forward hooks), not estimated from timings."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def flops_per_output_pixel(module: nn.Module, in_channels: int, scale: int, size: int = 64) -> float:
    """Multiply-adds x 2 of all conv / transposed-conv / linear layers per output pixel.

    Runs one (1, C, size, size) forward with hooks; interpolation, activations
    and additions are not counted (they are a few FLOPs per element, <1% here).
    """
    total = 0

    def conv_hook(m: nn.Module, inp, out) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1]
        cin = m.in_channels // m.groups
        if isinstance(m, nn.ConvTranspose2d):  # each input element is scattered over k * cout/groups outputs
            total += 2 * inp[0].numel() * k * (m.out_channels // m.groups)
        else:
            total += 2 * out.numel() * k * cin

    def linear_hook(m: nn.Module, inp, out) -> None:
        nonlocal total
        total += 2 * out.numel() * m.in_features

    hooks = []
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    try:
        module(torch.rand(1, in_channels, size, size))
    finally:
        for h in hooks:
            h.remove()
    return total / float((size * scale) ** 2)


def matmul_peak(dtype: torch.dtype, n: int = 3072, repeats: int = 7, device: str = "cpu") -> float:
    """Measured peak FLOP/s of an n x n matrix multiply (median of ``repeats``) on ``device``."""
    import time

    a = torch.rand(n, n, device=device, dtype=dtype)
    b = torch.rand(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b
    ts = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        a @ b
        sync()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return 2 * n**3 / ts[len(ts) // 2]
