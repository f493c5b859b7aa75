"""FLOPs counted from the layers (torch's FlopCounterMode), not estimated from timings; the matmul peak."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def flops_per_output_pixel(module: nn.Module, in_channels: int, scale: int, size: int = 64) -> float:
    """FLOPs (2 x multiply-adds of convolutions, transposed convolutions and matrix products) per output pixel.

    Runs one (1, C, size, size) forward under :class:`torch.utils.flop_counter.FlopCounterMode`, which
    counts the aten operators (functional convolutions included); interpolation, activations and additions
    are not counted (a few FLOPs per element, <1% here). Count the network as built, not a plan's
    rewrite of it (:mod:`models.fold` adds dense FLOPs): efficiency is about the useful work.
    """
    x = torch.rand(1, in_channels, size, size, generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() / float((size * scale) ** 2)


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
