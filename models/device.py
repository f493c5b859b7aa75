"""Where and in which precision a network runs.

CUDA when present, CPU otherwise. On CUDA a network runs in bf16 (or fp16)
only if that passes a fidelity check against fp32 on a fixed test image
(PSNR >= 50 dB between the two outputs); otherwise it stays fp32. The check
runs once per model and device and is cached.
"""

from __future__ import annotations

import math
import os
import threading

import torch

FIDELITY_MIN_PSNR_DB = 50.0

_choice: dict[tuple[str, str], torch.dtype] = {}
_lock = threading.Lock()


def default_device() -> str:
    """``"cuda"`` if a GPU is usable (and ``MEDENHANCE_DEVICE`` does not say otherwise), else ``"cpu"``."""
    forced = os.environ.get("MEDENHANCE_DEVICE")
    if forced:
        return forced
    return "cuda" if torch.cuda.is_available() else "cpu"


def _fidelity_image(channels: int) -> torch.Tensor:
    # Smooth gradients plus fine texture: exercises both flat and detailed regions, deterministic.
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    base = 0.5 + 0.35 * torch.sin(6 * xx) * torch.cos(4 * yy)
    img = (base + 0.05 * torch.rand(64, 64, generator=g)).clamp(0, 1)
    return img.expand(1, channels, 64, 64).contiguous()


def psnr_torch(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two tensors with data range 1 (inf when identical)."""
    mse = float(torch.mean((a.float() - b.float()) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def pick_dtype(name: str, module: torch.nn.Module, device: str) -> torch.dtype:
    """The fastest dtype for ``module`` on ``device`` whose output agrees with fp32."""
    if not device.startswith("cuda"):
        return torch.float32
    key = (name, device)
    with _lock:
        if key in _choice:
            return _choice[key]
        x = _fidelity_image(module.in_channels).to(device)
        with torch.no_grad():
            ref = module(x).clamp(0, 1)
            chosen = torch.float32
            for dt in (torch.bfloat16, torch.float16):
                with torch.autocast("cuda", dtype=dt):
                    y = module(x).float().clamp(0, 1)
                if psnr_torch(ref, y) >= FIDELITY_MIN_PSNR_DB:
                    chosen = dt
                    break
        _choice[key] = chosen
        return chosen
