"""Training losses, looked up by name in :data:`LOSSES`. Each maps (pred, target) (N, C, H, W) -> scalar."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Differentiable L1: mean sqrt((pred - target)^2 + eps^2)."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss,
    "mse": F.mse_loss,
    "charbonnier": charbonnier,
}
