"""Measure an input before choosing a model: noise level, JPEG blocking, smoothness.

One estimator serves inference (:func:`measure_input`, on the whole image before tiling) and training (the
noise-aware networks are conditioned on :func:`estimate_sigma_tensor` of their degraded input, so what they
learn to use is exactly what they are given at inference, whatever the noise's true nature).

Noise: the finest diagonal Haar detail ``(a - b - c + d) / 2`` of 2x2 blocks has the variance of white noise of
the image and almost none of the smooth anatomy; the median of its energy over small blocks is a robust sigma
(after Donoho's wavelet MAD estimator). Edges and fine texture inflate it a little; the median keeps that small.
Signal-dependent (Poisson) noise gives its typical level over the image.

JPEG: 8x8 block boundaries carry larger steps than the pixels between them (blockiness ratio > ~1.15 after
a quality-90 or lower compression of an 8-bit image aligned to the grid).

Smoothness: the Haar detail energy relative to the image's local contrast; values near 0 mean the image is
already smoothed (heavily denoised, upscaled, or blurred).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # the reader's metadata; only its fields are read
    from .io.meta import ImageMeta

_BLOCK = 4  # Haar coefficients per block side (8 x 8 image pixels)
_CHI2_16_MEDIAN = 0.9586561803126005  # median of chi2(16) / 16: a block of white noise's energy / sigma^2


def luma(image: np.ndarray) -> np.ndarray:
    """(H, W) grey or (H, W, 3) RGB float image -> (H, W) float32 luma (ITU-R BT.601 weights)."""
    if image.ndim == 3:
        return (0.299 * image[..., 0] + 0.587 * image[..., 1] + 0.114 * image[..., 2]).astype(np.float32)
    return image.astype(np.float32, copy=False)


def _haar_hh(x: torch.Tensor) -> torch.Tensor:
    """Diagonal Haar detail of (N, C, H, W) -> (N, C, H//2, W//2): (a - b - c + d) / 2 per 2x2 block."""
    h, w = x.shape[-2:]
    x = x[..., : h - h % 2, : w - w % 2]
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return (a - b - c + d) * 0.5


def estimate_sigma_tensor(x: torch.Tensor) -> torch.Tensor:
    """Noise sigma of each sample of an (N, C, H, W) batch in [0, 1] -> (N, 1, 1, 1), same units.

    Channels are averaged first (luma-like). The diagonal Haar detail is squared and averaged over blocks of
    4 x 4 coefficients (8 x 8 px); the median block energy, corrected by the median of chi2(16) / 16, is
    sigma squared. Blocks rather than single coefficients: on 8-bit images single coefficients are multiples
    of 0.5/255, so their median moves in steps of 0.003; block means are continuous.
    """
    if x.shape[-1] < 2 or x.shape[-2] < 2:
        return torch.zeros(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)
    hh2 = _haar_hh(x.float().mean(1, keepdim=True)) ** 2
    if min(hh2.shape[-2:]) >= _BLOCK:
        energy = F.avg_pool2d(hh2, _BLOCK).flatten(1)
        median = energy.median(dim=1).values / _CHI2_16_MEDIAN
    else:  # tiny inputs: one block
        median = hh2.flatten(1).mean(1)
    return median.sqrt().view(-1, 1, 1, 1).to(x.dtype)


def estimate_sigma(image: np.ndarray) -> float:
    """Noise sigma of one image (float32 [0, 1], (H, W) or (H, W, 3)), in [0, 1] units."""
    t = torch.from_numpy(np.ascontiguousarray(luma(image)))[None, None]
    return float(estimate_sigma_tensor(t))


def jpeg_blockiness(image: np.ndarray) -> float:
    """Mean absolute step across 8-px block boundaries / the mean step elsewhere (1 = no blocking).

    Measured on rows and columns of the luma; images under 32 px a side give 1.0 (too few blocks).
    """
    y = luma(image).astype(np.float64)
    if min(y.shape) < 32:
        return 1.0
    dx = np.abs(np.diff(y, axis=1))  # dx[:, j] = step between columns j and j + 1
    dy = np.abs(np.diff(y, axis=0))
    bx = np.zeros(dx.shape[1], bool)
    bx[7::8] = True
    by = np.zeros(dy.shape[0], bool)
    by[7::8] = True
    at = dx[:, bx].mean() + dy[by, :].mean()
    off = dx[:, ~bx].mean() + dy[~by, :].mean()
    return float(at / off) if off > 0 else 1.0


def smoothness(image: np.ndarray) -> float:
    """Fine detail relative to local contrast, in [0, ~1]: low = the image is already smooth (blurred/denoised).

    The RMS of the finest diagonal Haar detail over the RMS of the horizontal + vertical first differences;
    white noise gives ~0.7, a blurred image far less.
    """
    y = torch.from_numpy(np.ascontiguousarray(luma(image)))[None, None].double()
    if min(y.shape[-2:]) < 4:
        return 0.0
    hh = _haar_hh(y)
    grad = torch.cat([(y[..., 1:, :] - y[..., :-1, :]).flatten(), (y[..., :, 1:] - y[..., :, :-1]).flatten()])
    g = float(grad.pow(2).mean().sqrt())
    return float(hh.pow(2).mean().sqrt()) / g if g > 0 else 0.0


@dataclass(frozen=True)
class InputMeasurement:
    """What :func:`measure_input` found. ``sigma`` in [0, 1] display units; ``sigma_stored`` in the file's stored
    values (``None`` when the image has no raw units, e.g. a PNG); ``jpeg`` = blockiness ratio (> 1.15: looks
    JPEG-compressed); ``smooth`` = :func:`smoothness` (< 0.15: looks already smoothed)."""

    sigma: float
    sigma_stored: float | None
    jpeg: float
    smooth: float

    @property
    def looks_jpeg(self) -> bool:
        return self.jpeg > JPEG_BLOCKY

    @property
    def looks_smoothed(self) -> bool:
        return self.smooth < SMOOTHED

    def summary(self) -> str:
        """One line for the UI: ``estimated noise sigma ~ 0.012 (3.1 stored units); no JPEG blocking; ...``."""
        stored = f" ({self.sigma_stored:.3g} stored units)" if self.sigma_stored is not None else ""
        parts = [f"estimated noise σ ≈ {self.sigma:.4f}{stored}",
                 "JPEG blocking visible" if self.looks_jpeg else "no JPEG blocking",
                 "already smooth" if self.looks_smoothed else "not smoothed"]
        return "; ".join(parts)

    def as_dict(self) -> dict:
        return {**asdict(self), "looks_jpeg": self.looks_jpeg, "looks_smoothed": self.looks_smoothed}


JPEG_BLOCKY = 1.15
SMOOTHED = 0.15


def stored_units_per_display_unit(meta: "ImageMeta") -> float | None:
    """Stored pixel values per display unit of an image read with ``meta``'s linear window (window width
    over rescale slope: an 8-bit PNG gives 255, a 12-bit CR read full range ~4095); None when the display
    mapping is not linear (a VOI LUT or a Modality LUT table) or unknown."""
    if meta.voi_lut_table is not None or meta.modality_lut == "lut" or not meta.window_width:
        return None
    return float(meta.window_width) / (float(meta.rescale_slope) or 1.0)


def measure_input(image: np.ndarray, stored_per_unit: float | None = None) -> InputMeasurement:
    """Noise, JPEG blocking and smoothness of an image (float32 [0, 1], (H, W) or (H, W, 3)).

    ``stored_per_unit``: stored values per display unit (e.g. the window width of a DICOM read with a window,
    see :func:`stored_units_per_display_unit`), to report sigma in the file's own units too.
    """
    sigma = estimate_sigma(image)
    return InputMeasurement(
        sigma=sigma,
        sigma_stored=None if stored_per_unit is None else sigma * float(stored_per_unit),
        jpeg=jpeg_blockiness(image),
        smooth=smoothness(image),
    )


def noise_map(sigma: torch.Tensor, like: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """A constant conditioning plane per sample: (N, 1, 1, 1) sigma -> (N, 1, H, W) ``sigma * scale``.

    ``scale`` brings typical levels (0.005-0.1) to ~0.1-2, the range of the images' other activations.
    """
    return (sigma.to(like.dtype) * scale).expand(like.shape[0], 1, *like.shape[-2:])


# An input whose estimated sigma is this many times the top of a model's training range is "far outside" it.
FAR_OUTSIDE = 2.0


def range_warning(model: str, noise_range: tuple[float, float] | None, sigma: float) -> str | None:
    """A warning when ``sigma`` (estimated on the input) is far above ``model``'s training range, else None."""
    if noise_range is None:
        return None
    hi = noise_range[1]
    if sigma > FAR_OUTSIDE * hi:
        return (f"The input's estimated noise σ ≈ {sigma:.3f} is far above what {model} was trained on "
                f"(σ ≤ {hi:.3f} as measured here): it may sharpen or keep the noise. An automatic (auto_*) or "
                "noise-aware (*_na) model fits such inputs.")
    return None
