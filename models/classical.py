"""Classical baselines: interpolation, contrast/histogram methods and denoising filters.

Each function takes an image in the studio convention (float32 in [0, 1],
(H, W) or (H, W, 3)) plus keyword options and returns the same convention.
Contrast methods work on the luma of colour images so hues do not shift;
filters work per channel. They are registered in :mod:`models.zoo` exactly
like the networks, so every comparison table carries them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import exposure, filters, restoration

from .colour import apply_on_luma
from .resample import upscale


def _on_luma(image: np.ndarray, fn) -> np.ndarray:
    out = fn(image) if image.ndim == 2 else apply_on_luma(image, fn)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def _per_channel(image: np.ndarray, fn) -> np.ndarray:
    if image.ndim == 2:
        out = fn(image)
    else:
        out = np.stack([fn(np.ascontiguousarray(image[..., c])) for c in range(image.shape[-1])], axis=-1)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


# --- super-resolution -------------------------------------------------------

def bicubic(image: np.ndarray, scale: int = 2) -> np.ndarray:
    """Bicubic upscaling (the reference row of every SR table)."""
    return upscale(image, scale)


def lanczos(image: np.ndarray, scale: int = 2) -> np.ndarray:
    """Lanczos-3 upscaling with Pillow's float ('F') mode, per channel."""

    def one(plane: np.ndarray) -> np.ndarray:
        h, w = plane.shape
        im = Image.fromarray(plane.astype(np.float32), mode="F")
        return np.asarray(im.resize((w * scale, h * scale), Image.Resampling.LANCZOS), dtype=np.float32)

    return _per_channel(image, one)


# --- contrast and brightness -------------------------------------------------

def histogram_equalisation(image: np.ndarray, nbins: int = 256) -> np.ndarray:
    """Global histogram equalisation of the luma."""
    return _on_luma(image, lambda y: exposure.equalize_hist(y, nbins=nbins))


def clahe(image: np.ndarray, clip_limit: float = 0.01, kernel_size: int | None = None) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of the luma (tiles of 1/8 image by default)."""
    return _on_luma(image, lambda y: exposure.equalize_adapthist(y, kernel_size=kernel_size, clip_limit=clip_limit))


def contrast_stretch(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Linear stretch of the luma so its ``low``..``high`` percentiles span [0, 1]."""

    def one(y: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(y, (low, high))
        if hi - lo < 1e-6:  # flat image: nothing to stretch
            return y
        return (y - lo) / (hi - lo)

    return _on_luma(image, one)


def gamma(image: np.ndarray, gamma: float | None = None) -> np.ndarray:
    """Gamma correction ``y ** gamma`` of the luma.

    ``gamma=None`` picks it automatically so that the mean luma maps to 0.5,
    which corrects a global brightness shift without a free parameter.
    """

    def one(y: np.ndarray) -> np.ndarray:
        g = gamma
        if g is None:
            m = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
            g = float(np.clip(np.log(0.5) / np.log(m), 0.2, 5.0))
        return np.power(np.clip(y, 0.0, 1.0), g)

    return _on_luma(image, one)


def unsharp_mask(image: np.ndarray, radius: float = 2.0, amount: float = 1.0) -> np.ndarray:
    """Unsharp masking of the luma (sharpening; amplifies noise too)."""
    return _on_luma(image, lambda y: filters.unsharp_mask(y, radius=radius, amount=amount))


# --- denoising ----------------------------------------------------------------

def gaussian_filter(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian low-pass filter per channel (``sigma`` in pixels)."""
    return _per_channel(image, lambda p: ndimage.gaussian_filter(p, sigma=sigma, mode="reflect"))


def median_filter(image: np.ndarray, size: int = 3) -> np.ndarray:
    """Median filter per channel with a ``size`` x ``size`` window."""
    return _per_channel(image, lambda p: ndimage.median_filter(p, size=size, mode="reflect"))


def non_local_means(image: np.ndarray, sigma: float | None = None, h_factor: float = 0.8) -> np.ndarray:
    """Non-local means (scikit-image, fast mode, 5x5 patches, 13x13 search).

    Args:
        sigma: noise standard deviation on the [0, 1] scale; ``None`` estimates
            it from the image (wavelet MAD estimator). Evaluation passes the
            true sigma to give the baseline its best case.
        h_factor: filter strength as a multiple of sigma (0.8 is the
            scikit-image recommendation for fast mode with known sigma).
    """

    def one(p: np.ndarray) -> np.ndarray:
        s = float(restoration.estimate_sigma(p)) if sigma is None else float(sigma)
        if s <= 0:
            return p
        return restoration.denoise_nl_means(
            p, h=h_factor * s, sigma=s, fast_mode=True, patch_size=5, patch_distance=6
        )

    return _per_channel(image, one)


def nlm_then_lanczos(image: np.ndarray, scale: int = 2, sigma: float | None = None, h_factor: float = 0.8) -> np.ndarray:
    """The classical pipeline for noisy low-resolution inputs: :func:`non_local_means` (sigma estimated unless
    given), then :func:`lanczos` upscaling by ``scale``. The baseline row of realistic SR."""
    return np.clip(lanczos(non_local_means(image, sigma=sigma, h_factor=h_factor), scale), 0.0, 1.0)
