"""Realistic degradations, per image in NumPy: detector noise and blur, JPEG, second-order chains.

Physics first: noise and blur happen on the detector, in the **signal** domain
(:mod:`train.signal`: stored values normalised to [0, 1], 1 = most exposure),
then the display mapping (window / VOI LUT / MONOCHROME1) turns the signal into
what the studio shows, and JPEG re-compression acts on that 8-bit display
image (PACS exports, screenshots). The functions named ``*_signal`` take
``(signal, table, ...)``; the ones registered in
:data:`train.degrade.DEGRADATIONS` (:data:`REALISTIC_DEGRADATIONS`) take a display image in the studio
convention (float32 [0, 1], (H, W) or (H, W, 3)) and treat it as a PNG
(``s = 1 - x``, linear display), so ``compose()`` and the Compare tab can use
them. Same seed, same output. The batched torch twins for training are in
:mod:`train.realistic_torch`; both draw from :data:`REAL_SR_RANGES`.

Levels:

* ``dose``: expected photons at full-scale signal (s = 1). Poisson-Gaussian:
  ``s' = Poisson(dose * s) / dose + N(0, read_sigma^2)``, so the signal
  variance is ``s / dose + read_sigma^2`` (a straight line in s).
* Detector blur: an anisotropic Gaussian point-spread function, ``sigma_x``
  along ``angle`` degrees and ``sigma_y`` across it (px); its MTF is
  ``exp(-2 pi^2 sigma^2 f^2)`` along each axis.
* ``quality``: JPEG quality 1..95 of the 8-bit display image.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .pixelops import _per_plane, _rng, jpeg
from .signal import PNG_TABLE, Table, to_display

# Ranges of the random "real-world" SR chain (Real-ESRGAN's second-order model, sized for radiographs: detector
# PSFs of ~1 px, clinical doses, export-grade JPEG). Stage 1 acts in the signal domain, stage 2 on the display.
REAL_SR_RANGES: dict[str, Any] = {
    "blur1_sigma": (0.2, 1.5), "blur1_aniso_p": 0.5, "blur1_ratio": (1.0, 2.0),
    "resize1": (1.0, 1.5),  # intermediate size = final LR size * this (the rest of the way in stage 2)
    "dose": (300.0, 10000.0), "read_sigma": (0.0, 0.003),  # dose log-uniform
    "jpeg1_p": 0.5, "jpeg1_q": (70, 95),
    "stage2_p": 0.7,
    "blur2_sigma": (0.2, 0.8), "blur2_p": 0.5,
    "noise2_sigma": (0.0, 0.008),  # display-domain Gaussian (re-digitisation)
    "jpeg2_p": 0.5, "jpeg2_q": (80, 95),
}
RESIZE_MODES = ("bicubic", "bilinear", "area")

# Fixed evaluation degradations (validation, `python -m train eval`, cards): mid-range levels, seeded per image.
SR_REAL_EVAL: dict[str, Any] = {"sigma_x": 0.8, "sigma_y": 0.5, "angle": 30.0, "dose": 2000.0, "read_sigma": 0.002,
                                "quality": 90}
# Poisson-Gaussian rows of the SR tables (sr_pg): the detector's pixels are the LR pixels, no blur, no JPEG.
SR_PG_EVAL: dict[str, float] = {"dose": 500.0, "read_sigma": 0.002}
DENOISE_REAL_EVAL: dict[str, dict[str, float]] = {
    "dose250": {"dose": 250.0, "read_sigma": 0.002},  # low dose: display sigma ~0.045 at mid-grey of a PNG
    "dose2000": {"dose": 2000.0, "read_sigma": 0.002},  # routine dose: ~0.016
}


# ----------------------------------------------------------------- signal-domain building blocks


def poisson_gaussian_signal(signal: np.ndarray, dose: float, read_sigma: float,
                            rng: np.random.Generator) -> np.ndarray:
    """Poisson-Gaussian detector noise on ``signal`` in [0, 1]: variance ``s / dose + read_sigma**2``; clipped."""
    s = np.clip(signal, 0.0, 1.0).astype(np.float64)
    out = rng.poisson(s * dose) / dose + rng.normal(0.0, read_sigma, s.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def psf_kernel(sigma_x: float, sigma_y: float | None = None, angle: float = 0.0) -> np.ndarray:
    """Normalised anisotropic Gaussian PSF, (K, K) float32, K = 2 * ceil(3 * max sigma) + 1.

    ``sigma_x`` along ``angle`` degrees (0 = image rows' direction), ``sigma_y`` across (default = sigma_x).
    """
    sigma_y = sigma_x if sigma_y is None else sigma_y
    r = max(1, math.ceil(3.0 * max(sigma_x, sigma_y)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    t = math.radians(angle)
    u = xx * math.cos(t) + yy * math.sin(t)
    v = -xx * math.sin(t) + yy * math.cos(t)
    k = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (k / k.sum()).astype(np.float32)


def blur_signal(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve (H, W) or (H, W, C) ``x`` with ``kernel`` (reflect borders); float32."""
    return _per_plane(x.astype(np.float32), lambda p: ndimage.convolve(p, kernel, mode="reflect"))


def resize(x: np.ndarray, size: tuple[int, int], mode: str = "bicubic") -> np.ndarray:
    """Resize (H, W) ``x`` to ``size`` with ``mode`` in :data:`RESIZE_MODES` (antialiased when shrinking)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]
    with torch.no_grad():
        y = resize_tensor(t, size, mode)
    return y[0, 0].numpy()


def resize_tensor(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, *size): ``bicubic``/``bilinear`` (antialiased) or ``area``; not clipped."""
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True)


def jpeg_display(x: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip of a display image at 8 bits (shape kept, float32 [0, 1])."""
    return jpeg(x, quality=int(quality))


# ------------------------------------------------------------------------- fixed pipelines


def sr_real_eval_signal(signal: np.ndarray, table: Table, scale: int, seed: int) -> np.ndarray:
    """Fixed realistic SR degradation of an (H, W) signal (H, W multiples of ``scale``) -> LR display.

    Detector blur (:data:`SR_REAL_EVAL`: sigma 0.8 / 0.5 px at 30 degrees) of
    the high-resolution signal, antialiased bicubic sampling by ``scale`` (the
    detector's pixels), Poisson-Gaussian noise at those pixels (dose 2000,
    read 0.002), the display mapping, JPEG quality 90. Returns
    (H/scale, W/scale) float32 in [0, 1].
    """
    p = SR_REAL_EVAL
    rng = _rng(seed)
    h, w = signal.shape
    x = blur_signal(signal, psf_kernel(p["sigma_x"], p["sigma_y"], p["angle"]))
    x = np.clip(resize(x, (h // scale, w // scale), "bicubic"), 0.0, 1.0)
    x = poisson_gaussian_signal(x, p["dose"], p["read_sigma"], rng)
    return jpeg_display(to_display(x, table), p["quality"])


def sr_pg_eval_signal(signal: np.ndarray, table: Table, scale: int, seed: int) -> np.ndarray:
    """Antialiased bicubic sampling of an (H, W) signal by ``scale``, Poisson-Gaussian noise at those pixels
    (:data:`SR_PG_EVAL`), the display mapping: the noisy-but-sharp case. -> (H/scale, W/scale) float32 [0, 1]."""
    h, w = signal.shape
    x = np.clip(resize(signal, (h // scale, w // scale), "bicubic"), 0.0, 1.0)
    x = poisson_gaussian_signal(x, SR_PG_EVAL["dose"], SR_PG_EVAL["read_sigma"], _rng(seed))
    return to_display(x, table)


def denoise_real_eval_signal(signal: np.ndarray, table: Table, level: str, seed: int) -> np.ndarray:
    """Poisson-Gaussian noise of :data:`DENOISE_REAL_EVAL` ``level`` on the signal, then the display mapping."""
    p = DENOISE_REAL_EVAL[level]
    return to_display(poisson_gaussian_signal(signal, p["dose"], p["read_sigma"], _rng(seed)), table)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _random_psf(rng: np.random.Generator, sigma: tuple[float, float], aniso_p: float,
                ratio: tuple[float, float]) -> np.ndarray:
    sx = rng.uniform(*sigma)
    sy = sx / rng.uniform(*ratio) if rng.random() < aniso_p else sx
    return psf_kernel(sx, sy, rng.uniform(0.0, 180.0))


def real_sr_random_signal(signal: np.ndarray, table: Table, scale: int,
                          seed: int | np.random.Generator) -> np.ndarray:
    """The random second-order "real-world" chain of :data:`REAL_SR_RANGES`, one image -> LR display.

    Stage 1 (signal): random PSF, resize to ``resize1`` x the final size with a
    random mode, Poisson-Gaussian noise (dose log-uniform), display mapping,
    JPEG (p 0.5). Stage 2 (display, p 0.7): weaker blur (p 0.5), resize to the
    final size, Gaussian noise, JPEG (p 0.5); without stage 2 only the resize.
    (H, W) signal with H, W multiples of ``scale`` -> (H/scale, W/scale) float32 in [0, 1].
    """
    r, rng = REAL_SR_RANGES, _rng(seed)
    h, w = signal.shape
    final = (h // scale, w // scale)
    f = rng.uniform(*r["resize1"])
    mid = (min(h, max(final[0], round(final[0] * f))), min(w, max(final[1], round(final[1] * f))))
    x = blur_signal(signal, _random_psf(rng, r["blur1_sigma"], r["blur1_aniso_p"], r["blur1_ratio"]))
    x = np.clip(resize(x, mid, RESIZE_MODES[rng.integers(3)]), 0.0, 1.0)
    x = poisson_gaussian_signal(x, _log_uniform(rng, *r["dose"]), rng.uniform(*r["read_sigma"]), rng)
    x = to_display(x, table)
    if rng.random() < r["jpeg1_p"]:
        x = jpeg_display(x, rng.integers(r["jpeg1_q"][0], r["jpeg1_q"][1] + 1))
    if rng.random() < r["stage2_p"]:
        if rng.random() < r["blur2_p"]:
            x = blur_signal(x, psf_kernel(rng.uniform(*r["blur2_sigma"])))
        x = resize(x, final, RESIZE_MODES[rng.integers(3)])
        x = np.clip(x + rng.normal(0.0, rng.uniform(*r["noise2_sigma"]), x.shape), 0.0, 1.0).astype(np.float32)
        if rng.random() < r["jpeg2_p"]:
            x = jpeg_display(x, rng.integers(r["jpeg2_q"][0], r["jpeg2_q"][1] + 1))
        return x
    return np.clip(resize(x, final, "bicubic"), 0.0, 1.0)


# --------------------------------------------------- display-image versions for DEGRADATIONS / compose()


def _on_png_signal(image: np.ndarray, fn) -> np.ndarray:
    """Apply ``fn(signal) -> signal`` to a display image taken as a PNG (s = 1 - x), per channel."""
    return np.clip(1.0 - _per_plane(image, lambda p: fn(1.0 - p)), 0.0, 1.0).astype(np.float32)


def poisson_gaussian(image: np.ndarray, dose: float = 1000.0, read_sigma: float = 0.002, seed: int = 0) -> np.ndarray:
    """Poisson-Gaussian detector noise at ``dose`` on a display image (linear display assumed, s = 1 - x)."""
    rng = _rng(seed)
    return _on_png_signal(image, lambda s: poisson_gaussian_signal(s, dose, read_sigma, rng))


def detector_blur(image: np.ndarray, sigma_x: float = 1.0, sigma_y: float | None = None, angle: float = 0.0,
                  seed: int = 0) -> np.ndarray:
    """Anisotropic Gaussian detector blur (PSF of :func:`psf_kernel`); deterministic (``seed`` unused)."""
    return np.clip(blur_signal(image, psf_kernel(sigma_x, sigma_y, angle)), 0.0, 1.0).astype(np.float32)


def _down_per_plane(image: np.ndarray, scale: int, chain) -> np.ndarray:
    """Crop to a multiple of ``scale`` and run ``chain(signal) -> LR display`` on each plane (s = 1 - x).
    Colour planes get the same seeded chain, so levels and noise are shared (luma-like noise)."""
    img = image[: image.shape[0] - image.shape[0] % scale, : image.shape[1] - image.shape[1] % scale]
    return _per_plane(img, lambda p: chain(1.0 - p)).astype(np.float32)


def real_world_down(image: np.ndarray, scale: int = 2, seed: int = 0) -> np.ndarray:
    """The random second-order chain (:func:`real_sr_random_signal`) on a display image taken as a PNG;
    (H, W[, 3]) -> (H // scale, W // scale[, 3]) float32 in [0, 1]."""
    return _down_per_plane(image, scale, lambda s: real_sr_random_signal(s, PNG_TABLE, scale, seed))


def sr_real_eval(image: np.ndarray, scale: int = 2, seed: int = 0) -> np.ndarray:
    """The fixed realistic SR degradation (:func:`sr_real_eval_signal`) on a display image taken as a PNG;
    (H, W[, 3]) -> (H // scale, W // scale[, 3]) float32 in [0, 1]."""
    return _down_per_plane(image, scale, lambda s: sr_real_eval_signal(s, PNG_TABLE, scale, seed))


DOWNSCALING = frozenset({"real_world_down", "sr_real_eval"})  # these return the smaller (LR) image
REALISTIC_DEGRADATIONS = {
    "poisson_gaussian": poisson_gaussian,
    "detector_blur": detector_blur,
    "real_world_down": real_world_down,
    "sr_real_eval": sr_real_eval,
}
