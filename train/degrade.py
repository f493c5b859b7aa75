"""Degradations: small seeded functions that turn a clean image into a training input.

Used by training, evaluation and the studio's simulate mode. Each takes an
image in the studio convention (float32 in [0, 1], (H, W) or (H, W, 3)) plus
its documented parameters and a ``seed``, and returns the same convention
(resolution-changing ones return the smaller image). Same seed, same output.

Level conventions (all on the [0, 1] intensity scale):

* ``gaussian_noise(sigma)``: additive N(0, sigma^2); sigma 0.05 ~ 13/255.
* ``poisson_noise(peak)``: quantum noise; the image is scaled so white = ``peak``
  photons, Poisson-sampled and scaled back. Lower peak = noisier (peak 100 gives
  SNR 10 at white).
* ``rician_noise(sigma)``: MRI magnitude noise, |x + n1 + i n2| with n ~ N(0, sigma^2).
* ``gaussian_blur(sigma)`` in pixels; ``motion_blur(length, angle)`` in pixels/degrees.
* ``jpeg(quality)``: JPEG round trip at 8 bits, quality 1..95.
* ``low_contrast(factor)``: mean + factor * (x - mean), factor < 1 lowers contrast.
* ``gamma_shift(gamma)``: x ** gamma (gamma > 1 darkens); ``brightness(offset)``: x + offset.
* Realistic ones (:mod:`train.realistic`): ``poisson_gaussian(dose, read_sigma)`` detector noise,
  ``detector_blur(sigma_x, sigma_y, angle)``, and the x``scale`` chains ``real_world_down`` (random,
  second-order) and ``sr_real_eval`` (the fixed evaluation chain); :data:`DOWNSCALING` names the ones
  that return the smaller image.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from scipy import ndimage

from models.resample import downscale, downscale_tensor

from . import realistic
from .pixelops import _clip, _per_plane, _rng, jpeg


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so H and W are multiples of ``scale`` (so up(down(x)) fits x)."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def bicubic_down(image: np.ndarray, scale: int = 2, seed: int = 0) -> np.ndarray:
    """Antialiased bicubic downsampling by ``scale`` (2, 3, 4: the classic SR degradation).

    The image is first cropped to a multiple of ``scale``; returns
    (H // scale, W // scale[, 3]) float32 in [0, 1]. ``seed`` is unused (deterministic).
    """
    return downscale(crop_to_multiple(image, scale), scale)


def bicubic_down_tensor(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H//scale, W//scale); H, W multiples of ``scale``."""
    return downscale_tensor(x, scale)


def gaussian_blur(image: np.ndarray, sigma: float = 1.0, seed: int = 0) -> np.ndarray:
    """Isotropic Gaussian blur, ``sigma`` in pixels."""
    return _clip(_per_plane(image, lambda p: ndimage.gaussian_filter(p, sigma, mode="reflect")))


def motion_kernel(length: int, angle: float) -> np.ndarray:
    """A normalised line kernel of ``length`` px at ``angle`` degrees (0 = horizontal)."""
    size = max(int(length) | 1, 1)
    k = np.zeros((size, size), np.float32)
    c = size // 2
    t = np.deg2rad(angle)
    for s in np.linspace(-c, c, 4 * size):
        k[int(round(c + s * np.sin(t))), int(round(c + s * np.cos(t)))] = 1.0
    return k / k.sum()


def motion_blur(image: np.ndarray, length: int = 7, angle: float = 0.0, seed: int = 0) -> np.ndarray:
    """Linear motion blur of ``length`` px along ``angle`` degrees."""
    k = motion_kernel(length, angle)
    return _clip(_per_plane(image, lambda p: ndimage.convolve(p, k, mode="reflect")))


def gaussian_noise(image: np.ndarray, sigma: float = 0.05, seed: int = 0) -> np.ndarray:
    """Additive white Gaussian noise with standard deviation ``sigma``, clipped to [0, 1]."""
    return _clip(image + _rng(seed).normal(0.0, sigma, image.shape).astype(np.float32))


def poisson_noise(image: np.ndarray, peak: float = 100.0, seed: int = 0) -> np.ndarray:
    """Poisson (quantum) noise with ``peak`` expected photons at intensity 1."""
    return _clip(_rng(seed).poisson(np.clip(image, 0, 1) * peak).astype(np.float32) / peak)


def rician_noise(image: np.ndarray, sigma: float = 0.05, seed: int = 0) -> np.ndarray:
    """Rician noise (MRI magnitude): sqrt((x + n1)^2 + n2^2), n1, n2 ~ N(0, sigma^2)."""
    r = _rng(seed)
    n1 = r.normal(0.0, sigma, image.shape)
    n2 = r.normal(0.0, sigma, image.shape)
    return _clip(np.sqrt((image + n1) ** 2 + n2**2))


def low_contrast(image: np.ndarray, factor: float = 0.5, seed: int = 0) -> np.ndarray:
    """Shrink intensities towards the image mean by ``factor`` (0 < factor <= 1)."""
    m = float(image.mean())
    return _clip(m + factor * (image - m))


def gamma_shift(image: np.ndarray, gamma: float = 1.5, seed: int = 0) -> np.ndarray:
    """``x ** gamma``: gamma > 1 darkens mid-tones, < 1 brightens."""
    return _clip(np.power(np.clip(image, 0, 1), gamma))


def brightness(image: np.ndarray, offset: float = 0.1, seed: int = 0) -> np.ndarray:
    """Add a constant ``offset`` (negative darkens), clipped."""
    return _clip(image + offset)


DEGRADATIONS: dict[str, Callable[..., np.ndarray]] = {
    "bicubic_down": bicubic_down,
    "gaussian_blur": gaussian_blur,
    "motion_blur": motion_blur,
    "gaussian_noise": gaussian_noise,
    "poisson_noise": poisson_noise,
    "rician_noise": rician_noise,
    "jpeg": jpeg,
    "low_contrast": low_contrast,
    "gamma_shift": gamma_shift,
    "brightness": brightness,
    # realistic degradations (train.realistic): detector noise and blur, the second-order "real-world" chain
    **realistic.REALISTIC_DEGRADATIONS,
}
# The degradations that return a smaller image (the SR inputs); the others keep the shape.
DOWNSCALING: frozenset[str] = frozenset({"bicubic_down"} | realistic.DOWNSCALING)


def compose(steps: list[tuple[str, dict[str, Any]]]) -> Callable[..., np.ndarray]:
    """Chain degradations by name: ``compose([("low_contrast", {"factor": .5}), ("gaussian_noise", {"sigma": .03})])``.

    The returned function takes (image, seed=0); step i gets seed ``seed + i``
    so steps draw independent noise yet the whole chain is reproducible.
    """
    for name, _ in steps:
        if name not in DEGRADATIONS:
            raise KeyError(f"unknown degradation {name!r}; known: {sorted(DEGRADATIONS)}")

    def run(image: np.ndarray, seed: int = 0) -> np.ndarray:
        for i, (name, params) in enumerate(steps):
            image = DEGRADATIONS[name](image, **params, seed=seed + i)
        return image

    return run
