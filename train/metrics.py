"""Image-quality metrics with an explicit data range and border crop.

All functions take float arrays in the studio convention ((H, W) or (H, W, 3),
values on a scale whose full range is ``data_range``, 1.0 for [0, 1] images)
and a ``crop`` of border pixels removed from both images first (SR papers
crop ``scale`` pixels because the border is not reconstructable). Every score
written anywhere is stored next to the data range and crop it used.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import ndimage

# A PSNR above this (or SSIM of exactly 1) on a real restoration result almost
# always means a wrong data range or a reference compared with itself.
PSNR_SUSPICIOUS_DB = 60.0


def _crop(a: np.ndarray, crop: int) -> np.ndarray:
    return a[crop:-crop, crop:-crop] if crop > 0 else a


def _pair(pred: np.ndarray, ref: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    if pred.shape != ref.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs reference {ref.shape}")
    return _crop(pred.astype(np.float64), crop), _crop(ref.astype(np.float64), crop)


def mse(pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0, crop: int = 0) -> float:
    """Mean squared error (in units of the data)."""
    p, r = _pair(pred, ref, crop)
    return float(np.mean((p - r) ** 2))


def psnr(pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0, crop: int = 0) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(data_range^2 / MSE); inf when identical."""
    m = mse(pred, ref, data_range, crop)
    return math.inf if m == 0 else 10.0 * math.log10(data_range**2 / m)


def snr(pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0, crop: int = 0) -> float:
    """Signal-to-noise ratio in dB: 10 log10(sum ref^2 / sum (pred - ref)^2)."""
    p, r = _pair(pred, ref, crop)
    noise = float(np.sum((p - r) ** 2))
    return math.inf if noise == 0 else 10.0 * math.log10(float(np.sum(r**2)) / noise)


def _ssim_map(p: np.ndarray, r: np.ndarray, data_range: float, sigma: float = 1.5) -> np.ndarray:
    # Gaussian-weighted SSIM (Wang et al. 2004), population statistics, window
    # radius 5 for sigma 1.5 -- the same as skimage's gaussian_weights=True.
    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma=sigma, truncate=3.5, mode="reflect")

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mp, mr = blur(p), blur(r)
    vp, vr, cov = blur(p * p) - mp * mp, blur(r * r) - mr * mr, blur(p * r) - mp * mr
    return ((2 * mp * mr + c1) * (2 * cov + c2)) / ((mp * mp + mr * mr + c1) * (vp + vr + c2))


def ssim(pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0, crop: int = 0) -> float:
    """Mean structural similarity (Gaussian window, sigma 1.5), averaged over channels.

    Matches ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=data_range)``.
    """
    p, r = _pair(pred, ref, crop)
    pad = 5  # skimage ignores the filter's reflected border when averaging
    if p.ndim == 2:
        return float(_crop(_ssim_map(p, r, data_range), pad).mean())
    return float(np.mean([_crop(_ssim_map(p[..., c], r[..., c], data_range), pad).mean() for c in range(p.shape[-1])]))


def abs_error_map(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|pred - ref| per pixel, averaged over colour channels: (H, W) float32."""
    if pred.shape != ref.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs reference {ref.shape}")
    err = np.abs(pred.astype(np.float32) - ref.astype(np.float32))
    return err.mean(axis=-1) if err.ndim == 3 else err


METRICS: dict[str, Callable[..., float]] = {"psnr": psnr, "ssim": ssim, "mse": mse, "snr": snr}


def sanity_warnings(scores: dict[str, float]) -> list[str]:
    """Warnings for scores that are almost certainly a bug, not a result."""
    out = []
    if scores.get("psnr", 0.0) > PSNR_SUSPICIOUS_DB:
        out.append(
            f"PSNR {scores['psnr']:.1f} dB > {PSNR_SUSPICIOUS_DB:.0f} dB: likely a wrong data range "
            "or the reference compared with itself"
        )
    if scores.get("ssim") == 1.0:
        out.append("SSIM exactly 1.0: the prediction is identical to the reference; likely a bug")
    return out
