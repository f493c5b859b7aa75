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


_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli & Bovik 2003


def _ssim_cs(p: np.ndarray, r: np.ndarray, data_range: float) -> tuple[float, float]:
    """(mean SSIM, mean contrast-structure term) of single-channel images."""
    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma=1.5, truncate=3.5, mode="reflect")

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mp, mr = blur(p), blur(r)
    vp, vr, cov = blur(p * p) - mp * mp, blur(r * r) - mr * mr, blur(p * r) - mp * mr
    cs = (2 * cov + c2) / (vp + vr + c2)
    lum = (2 * mp * mr + c1) / (mp * mp + mr * mr + c1)
    return float(_crop(lum * cs, 5).mean()), float(_crop(cs, 5).mean())


def _pool2(a: np.ndarray) -> np.ndarray:
    """2x2 average pooling of an (H, W) array (an odd last row/column is dropped)."""
    h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
    return a[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def ms_ssim(pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0, crop: int = 0) -> float:
    """Multi-scale SSIM (5 scales, 2x2 average pooling between scales, standard weights).

    Scales that would make the image smaller than 16 px are dropped and the
    remaining weights renormalised, so small images still get a score.
    Colour images: mean over channels.
    """
    p, r = _pair(pred, ref, crop)
    if p.ndim == 3:
        return float(np.mean([ms_ssim(p[..., c], r[..., c], data_range) for c in range(p.shape[-1])]))
    n = 1
    while n < 5 and min(p.shape) // 2**n >= 16:
        n += 1
    w = np.array(_MS_WEIGHTS[:n]) / sum(_MS_WEIGHTS[:n])
    vals = []
    for i in range(n):
        s, cs = _ssim_cs(p, r, data_range)
        vals.append(max(s if i == n - 1 else cs, 1e-12))  # luminance only at the coarsest scale
        if i < n - 1:
            p, r = _pool2(p), _pool2(r)
    return float(np.prod(np.array(vals) ** w))


# Rec. 601 luma weights: GMSD scores colour images on their luminance, as its authors do.
_LUMA = np.array([0.299, 0.587, 0.114])
# Prewitt kernel / 3 (the GMSD paper's); its transpose gives the vertical gradient.
_PREWITT = np.array([[1.0, 0.0, -1.0]] * 3) / 3.0


def _pool2_same(a: np.ndarray) -> np.ndarray:
    """The GMSD paper's downsampling: a 2x2 mean filter, then every second pixel.

    As the authors' MATLAB (``conv2(Y, ones(2)/4, 'same')`` then ``Y(1:2:end, 1:2:end)``) and piq
    do it: non-overlapping 2x2 blocks from the top-left corner; an odd last row or column is
    averaged with zeros (MATLAB's zero padding), not dropped.
    """
    h, w = a.shape
    a = np.pad(a, ((0, h % 2), (0, w % 2)))
    return a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).mean(axis=(1, 3))


def gmsd(pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0, crop: int = 0) -> float:
    """Gradient magnitude similarity deviation (Xue et al., IEEE TIP 2014): lower is better, 0 when identical.

    A full-reference perceptual-quality score with no learned weights (so nothing
    is downloaded), as the paper defines it and its authors' MATLAB code and piq compute it:
    both images are 2x2 mean-filtered and downsampled by 2 (:func:`_pool2_same`), Prewitt
    gradient magnitudes ``m`` are taken (kernel / 3, zero padding: MATLAB's ``conv2(..., 'same')``),
    the per-pixel similarity is ``(2 m_p m_r + c) / (m_p^2 + m_r^2 + c)`` with c = 170 on 0-255
    data (0.0026 on [0, 1]), and the score is the standard deviation of that map (over all
    pixels, as piq; MATLAB's ``std2`` divides by N - 1, a relative difference of 1/(2N)).
    Blur (lost edges) and invented or displaced edges both raise it, which is
    why it is reported next to PSNR for GAN super-resolution: PSNR rewards
    smooth outputs, GMSD does not. Colour images are scored on their luma (Rec. 601, the Y of
    YIQ, as piq). Typical values: 0.01-0.05 for good restorations, above 0.1 for heavy damage.
    Equal to ``piq.gmsd`` to float precision (tests/test_metrics.py).
    """
    p, r = _pair(pred, ref, crop)
    p, r = p / data_range, r / data_range
    if p.ndim == 3:
        p, r = p @ _LUMA, r @ _LUMA
    c = 170.0 / 255.0**2

    def magnitude(a: np.ndarray) -> np.ndarray:
        a = _pool2_same(a)
        gx = ndimage.correlate(a, _PREWITT, mode="constant", cval=0.0)
        gy = ndimage.correlate(a, _PREWITT.T, mode="constant", cval=0.0)
        return np.sqrt(gx * gx + gy * gy)

    mp, mr = magnitude(p), magnitude(r)
    return float(((2 * mp * mr + c) / (mp * mp + mr * mr + c)).std())


def cnr(image: np.ndarray, roi: np.ndarray, background: np.ndarray) -> float:
    """Contrast-to-noise ratio |mean(roi) - mean(background)| / std(background).

    ``roi`` and ``background`` are boolean masks of the image's (H, W) shape
    (colour images use the mean over channels). Higher is better; no reference
    image needed, so it also scores real data without ground truth.
    """
    img = image.mean(axis=-1) if image.ndim == 3 else image
    bg = img[background].astype(np.float64)
    sd = float(bg.std())
    diff = abs(float(img[roi].mean()) - float(bg.mean()))
    return math.inf if sd == 0 else diff / sd


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (H, W, 3) -> CIE L*a*b* (D65 white), float64."""
    c = np.asarray(rgb, dtype=np.float64)
    lin = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005) per pixel, kL = kC = kH = 1."""
    L1, a1, b1 = np.moveaxis(lab1, -1, 0)
    L2, a2, b2 = np.moveaxis(lab2, -1, 0)
    cbar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(cbar**7 / (cbar**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dL, dC = L2 - L1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    dH = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2)
    Lbar, cbarp = (L1 + L2) / 2, (c1p + c2p) / 2
    hsum = h1p + h2p
    hbar = np.where(np.abs(h1p - h2p) > 180, np.where(hsum < 360, hsum + 360, hsum - 360), hsum) / 2
    hbar = np.where(c1p * c2p == 0, hsum, hbar)
    t = (1 - 0.17 * np.cos(np.radians(hbar - 30)) + 0.24 * np.cos(np.radians(2 * hbar))
         + 0.32 * np.cos(np.radians(3 * hbar + 6)) - 0.20 * np.cos(np.radians(4 * hbar - 63)))
    sl = 1 + 0.015 * (Lbar - 50) ** 2 / np.sqrt(20 + (Lbar - 50) ** 2)
    sc = 1 + 0.045 * cbarp
    sh = 1 + 0.015 * cbarp * t
    rt = -2 * np.sqrt(cbarp**7 / (cbarp**7 + 25.0**7)) * np.sin(np.radians(60 * np.exp(-(((hbar - 275) / 25) ** 2))))
    return np.sqrt((dL / sl) ** 2 + (dC / sc) ** 2 + (dH / sh) ** 2 + rt * (dC / sc) * (dH / sh))


def delta_e(pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0, crop: int = 0) -> float:
    """Mean CIEDE2000 DeltaE between two (H, W, 3) sRGB images (lower is better; ~1 is just noticeable)."""
    p, r = _pair(pred, ref, crop)
    if p.ndim != 3:
        raise ValueError("DeltaE needs colour (H, W, 3) images")
    return float(ciede2000(rgb_to_lab(r / data_range), rgb_to_lab(p / data_range)).mean())


METRICS: dict[str, Callable[..., float]] = {
    "psnr": psnr, "ssim": ssim, "ms_ssim": ms_ssim, "mse": mse, "snr": snr, "gmsd": gmsd,
    "delta_e": delta_e,
}


def score(pred: np.ndarray, ref: np.ndarray, data_range: float = 1.0, crop: int = 0, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """All applicable metrics at once, with ``data_range`` and ``crop`` stored next to the scores."""
    names = names or tuple(n for n in METRICS if n != "delta_e" or pred.ndim == 3)
    out: dict[str, float] = {n: METRICS[n](pred, ref, data_range, crop) for n in names}
    out["data_range"], out["border_crop"] = data_range, crop
    return out


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
