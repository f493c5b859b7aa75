"""Realistic degradations for (N, C, H, W) training batches, drawn with a ``torch.Generator``.

The batched twins of :mod:`train.realistic` (same formulas, same
:data:`~train.realistic.REAL_SR_RANGES`, one random level per sample). Inputs
are detector-signal batches (:mod:`train.signal`) with a per-sample linear
display window ``(N, 2)`` = [lo, hi]; outputs are display batches in [0, 1].
All randomness comes from ``gen`` (a CPU generator), so a seeded run is
reproducible; tensors may live on any device.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg, encode_jpeg

from models.resample import downscale_tensor

from .realistic import REAL_SR_RANGES, RESIZE_MODES, resize_tensor
from .signal import to_display_tensor


def _u(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _log_u(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.exp(_u(n, math.log(lo), math.log(hi), gen))


def poisson_gaussian_tensor(s: torch.Tensor, dose: torch.Tensor, read_sigma: torch.Tensor,
                            gen: torch.Generator) -> torch.Tensor:
    """Poisson-Gaussian noise per sample: ``Poisson(dose * s) / dose + N(0, read^2)``; (N, C, H, W) signal
    in [0, 1], ``dose``/``read_sigma`` (N,) -> same shape, clipped to [0, 1]."""
    n = s.shape[0]
    d = dose.view(n, 1, 1, 1).to(torch.float32)
    rate = (s.detach().to("cpu", torch.float32).clamp(0, 1) * d)
    counts = torch.poisson(rate, generator=gen)
    read = read_sigma.view(n, 1, 1, 1) * torch.randn(s.shape, generator=gen)
    return (counts / d + read).clamp(0, 1).to(s.device, s.dtype)


def psf_kernels(sigma_x: torch.Tensor, sigma_y: torch.Tensor, angle_deg: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, 2r+1, 2r+1) normalised anisotropic Gaussian PSFs (as :func:`train.realistic.psf_kernel`)."""
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    yy, xx = torch.meshgrid(taps, taps, indexing="ij")
    t = torch.deg2rad(angle_deg).view(-1, 1, 1)
    u = xx * torch.cos(t) + yy * torch.sin(t)
    v = -xx * torch.sin(t) + yy * torch.cos(t)
    k = torch.exp(-0.5 * ((u / sigma_x.view(-1, 1, 1)) ** 2 + (v / sigma_y.view(-1, 1, 1)) ** 2))
    return k / k.sum(dim=(1, 2), keepdim=True)


def blur_tensor(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each sample of (N, C, H, W) ``x`` with its own (N, K, K) kernel (reflect borders)."""
    n, c, h, w = x.shape
    r = kernels.shape[-1] // 2
    k = kernels.to(x).repeat_interleave(c, 0).unsqueeze(1)  # (N*C, 1, K, K): one kernel per plane
    y = F.pad(x.reshape(1, n * c, h, w), (r, r, r, r), mode="reflect")
    return F.conv2d(y, k, groups=n * c).view(n, c, h, w)


def resize_random(x: torch.Tensor, size: tuple[int, int], mode: torch.Tensor) -> torch.Tensor:
    """Resize each sample to ``size`` with mode index ``mode`` (N,) into :data:`RESIZE_MODES`."""
    out = torch.empty(x.shape[0], x.shape[1], *size, dtype=x.dtype, device=x.device)
    for i, name in enumerate(RESIZE_MODES):
        sel = (mode == i).nonzero().flatten().to(x.device)
        if len(sel):
            out[sel] = resize_tensor(x[sel], size, name)
    return out


def jpeg_tensor(x: torch.Tensor, quality: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """JPEG round trip (8 bits, torchvision) of the samples where ``apply`` (N,) is True, at ``quality`` (N,)."""
    out = x.clone()
    for i in apply.nonzero().flatten().tolist():
        u8 = (x[i].detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
        dec = decode_jpeg(encode_jpeg(u8, quality=int(quality[i])))
        out[i] = (dec.to(torch.float32) / 255.0).to(x.device, x.dtype)
    return out


def real_sr_batch(s: torch.Tensor, window: torch.Tensor, scale: int, gen: torch.Generator) -> torch.Tensor:
    """The random second-order chain of :func:`train.realistic.real_sr_random_signal`, per sample.

    (N, C, H, W) signal in [0, 1] (H, W multiples of ``scale``), (N, 2)
    windows -> (N, C, H/scale, W/scale) LR display batch in [0, 1]. The
    intermediate size is shared by the batch (one draw), levels are per sample.
    """
    r = REAL_SR_RANGES
    n, _, h, w = s.shape
    final = (h // scale, w // scale)
    f = float(_u(1, *r["resize1"], gen))
    mid = (min(h, max(final[0], round(final[0] * f))), min(w, max(final[1], round(final[1] * f))))
    sx = _u(n, *r["blur1_sigma"], gen)
    aniso = torch.rand(n, generator=gen) < r["blur1_aniso_p"]
    sy = torch.where(aniso, sx / _u(n, *r["blur1_ratio"], gen), sx)
    radius = math.ceil(3 * r["blur1_sigma"][1])
    x = blur_tensor(s, psf_kernels(sx, sy, _u(n, 0.0, 180.0, gen), radius))
    x = resize_random(x, mid, torch.randint(0, 3, (n,), generator=gen)).clamp(0, 1)
    x = poisson_gaussian_tensor(x, _log_u(n, *r["dose"], gen), _u(n, *r["read_sigma"], gen), gen)
    x = to_display_tensor(x, window)
    q1 = torch.randint(r["jpeg1_q"][0], r["jpeg1_q"][1] + 1, (n,), generator=gen)
    x = jpeg_tensor(x, q1, torch.rand(n, generator=gen) < r["jpeg1_p"])
    # Stage 2 for a random subset of the batch; the others only resized to the final size (bicubic).
    stage2 = torch.rand(n, generator=gen) < r["stage2_p"]
    s2 = _u(n, *r["blur2_sigma"], gen)
    b2 = torch.rand(n, generator=gen) < r["blur2_p"]
    r2 = math.ceil(3 * r["blur2_sigma"][1])
    blurred = blur_tensor(x, psf_kernels(s2, s2, torch.zeros(n), r2))
    y = torch.where((stage2 & b2).view(n, 1, 1, 1).to(x.device), blurred, x)
    mode = torch.where(stage2, torch.randint(0, 3, (n,), generator=gen), torch.zeros(n, dtype=torch.long))
    y = resize_random(y, final, mode)
    sigma = torch.where(stage2, _u(n, *r["noise2_sigma"], gen), torch.zeros(n)).view(n, 1, 1, 1)
    y = (y + (sigma * torch.randn(y.shape, generator=gen)).to(y)).clamp(0, 1)
    q2 = torch.randint(r["jpeg2_q"][0], r["jpeg2_q"][1] + 1, (n,), generator=gen)
    return jpeg_tensor(y, q2, stage2 & (torch.rand(n, generator=gen) < r["jpeg2_p"]))


# Training range of the realistic denoisers: doses log-uniform over both evaluation doses and beyond.
DENOISE_REAL_DOSE = (100.0, 20000.0)
DENOISE_REAL_READ = (0.0, 0.004)


def denoise_real_batch(s: torch.Tensor, window: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Poisson-Gaussian noise per sample (dose log-uniform in :data:`DENOISE_REAL_DOSE`, read sigma uniform
    in :data:`DENOISE_REAL_READ`) on the signal, then the display window; (N, C, H, W) -> same, [0, 1]."""
    n = s.shape[0]
    noisy = poisson_gaussian_tensor(s, _log_u(n, *DENOISE_REAL_DOSE, gen), _u(n, *DENOISE_REAL_READ, gen), gen)
    return to_display_tensor(noisy, window)



# Mixtures of the noise-aware models (tasks sr_mix, denoise_mix): the share of each kind of input per batch.
SR_MIX = {"clean": 0.3, "poisson_gaussian": 0.2, "realistic": 0.5}
DENOISE_MIX = {"display_noise": 0.4, "poisson_gaussian": 0.45, "near_clean": 0.15}
NEAR_CLEAN_SIGMA = 0.004  # "near clean" samples: Gaussian sigma 0..this, so a clean input is left alone


def _pick(kinds: list[torch.Tensor], shares: dict[str, float], gen: torch.Generator) -> torch.Tensor:
    """Per sample one of ``kinds`` (same shapes), drawn with probabilities ``shares`` (in that order)."""
    n = kinds[0].shape[0]
    edges = torch.tensor(list(shares.values())).cumsum(0)
    k = torch.bucketize(torch.rand(n, generator=gen) * edges[-1], edges, right=True).clamp_max(len(kinds) - 1)
    out = kinds[-1].clone()
    for i, x in enumerate(kinds[:-1]):
        out = torch.where((k == i).view(n, 1, 1, 1).to(x.device), x, out)
    return out


def sr_mix_batch(s: torch.Tensor, window: torch.Tensor, scale: int, gen: torch.Generator) -> torch.Tensor:
    """Per sample (shares :data:`SR_MIX`): clean antialiased bicubic downsampling of the display image;
    Poisson-Gaussian noise at the LR detector pixels (dose and read sigma as the realistic denoisers:
    :data:`DENOISE_REAL_DOSE`, :data:`DENOISE_REAL_READ`); or the realistic chain (:func:`real_sr_batch`).
    (N, C, H, W) signal, (N, 2) windows -> (N, C, H/scale, W/scale) LR display in [0, 1]."""
    n = s.shape[0]
    clean = downscale_tensor(to_display_tensor(s, window), scale)
    lr_sig = downscale_tensor(s, scale)
    pg = to_display_tensor(poisson_gaussian_tensor(lr_sig, _log_u(n, *DENOISE_REAL_DOSE, gen),
                                                   _u(n, *DENOISE_REAL_READ, gen), gen), window)
    return _pick([clean, pg, real_sr_batch(s, window, scale, gen)], SR_MIX, gen)


def denoise_mix_batch(s: torch.Tensor, window: torch.Tensor, gen: torch.Generator,
                      display_noise: Callable[[torch.Tensor, torch.Generator], torch.Tensor]) -> torch.Tensor:
    """Per sample (shares :data:`DENOISE_MIX`): ``display_noise`` of the display image (the blind denoisers'
    Gaussian / Poisson / Rician mix); Poisson-Gaussian detector noise (:func:`denoise_real_batch`); or
    near-clean (Gaussian sigma 0..:data:`NEAR_CLEAN_SIGMA`). (N, C, H, W) signal -> same, display [0, 1]."""
    n = s.shape[0]
    hr = to_display_tensor(s, window)
    sigma = _u(n, 0.0, NEAR_CLEAN_SIGMA, gen).view(n, 1, 1, 1).to(hr)
    near = (hr + sigma * torch.randn(hr.shape, generator=gen).to(hr)).clamp(0, 1)
    return _pick([display_noise(hr, gen), denoise_real_batch(s, window, gen), near], DENOISE_MIX, gen)
