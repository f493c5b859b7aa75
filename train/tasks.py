"""What "degraded input" and "baseline" mean for each task.

A :class:`Task` bundles, for one task of the registry (``sr``, ``denoise``,
``enhance``):

* ``train_degrade(hr, scale, gen)``: random degradation of a (N, C, H, W)
  batch for training (a new level per sample, so models are blind to it);
* ``train_target(hr, gen)``: how the clean training patches are varied before
  they are degraded (``None``: not at all; :func:`random_site_tensor` for
  denoising — not for enhancement, where a varied target look makes the
  correction ambiguous: 4,000 such steps only lowered validation PSNR);
* ``eval_degrade(img, scale, seed)``: the fixed, seeded degradation that
  validation and evaluation use, so scores are comparable across runs;
* ``baseline(inp, scale)``: what the model must beat (bicubic for SR; the
  degraded input itself for restoration);
* ``description``: the text written into model cards;
* ``signal_train`` / ``signal_eval`` (realistic tasks ``sr_real``, ``denoise_real``):
  the same degradations on detector-signal images (:mod:`train.signal`), so noise
  and blur act before the display window of full-resolution DICOMs; the display
  versions above treat a display image as a PNG (``s = 1 - x``).

Registry names ending in ``_real`` train and evaluate on ``<task>_real``
(:func:`task_name`); the others on their registry task.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch

from models.resample import upscale

from . import degrade, realistic, realistic_torch
from .signal import PNG_TABLE, Table, to_display


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return (lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=gen)).to(like.device, like.dtype)


def random_noise_tensor(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per sample one of Gaussian (sigma 0.005-0.10), Poisson (peak 30-3000, log-uniform) or
    Rician (sigma 0.005-0.10) noise; (N, C, H, W) in [0, 1] -> same, clipped."""
    n = x.shape[0]
    kind = torch.randint(0, 3, (n,), generator=gen)
    sigma = _uniform(n, 0.005, 0.10, gen, x)
    peak = torch.exp(_uniform(n, float(np.log(30)), float(np.log(3000)), gen, x))
    g1 = torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    g2 = torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    gauss = x + sigma * g1
    # Poisson via its variance-matched Gaussian approximation (exact enough above ~20 photons, and differentiable-free fast)
    pois = x + torch.sqrt(x.clamp_min(0) / peak) * g1
    rice = torch.sqrt((x + sigma * g1) ** 2 + (sigma * g2) ** 2)
    k = kind.view(n, 1, 1, 1).to(x.device)
    return torch.where(k == 0, gauss, torch.where(k == 1, pois, rice)).clamp(0, 1)


def _blur_per_sample(x: torch.Tensor, sigma: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """Separable Gaussian blur of each sample of (N, C, H, W) ``x`` with its own ``sigma`` (N,) in pixels."""
    n, c, h, w = x.shape
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (taps[None] / sigma.view(n, 1)) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, taps): one kernel per plane
    y = torch.nn.functional.pad(x.reshape(1, n * c, h, w), (radius,) * 4, mode="reflect")
    y = torch.nn.functional.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
    y = torch.nn.functional.conv2d(y, k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def random_site_tensor(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Vary clean images the way other sites' radiographs differ from the Hannover PNGs.

    The Hannover PNGs are CLAHE-processed: mid-grey, rarely near 0 or 1, with
    amplified fine texture (estimated sigma 0.01-0.02). A denoiser trained only
    on them learns to keep that much "texture", so it leaves noise on smooth,
    unprocessed radiographs, and never sees clipped noise at 0 or 1. Per
    sample, independently with probability ``p`` each:

    * Gaussian blur, sigma 0.5-1.5 px: smooth anatomy with little texture;
    * a new window: contrast x0.7-2.5 (log-uniform) about the sample mean,
      moved to a mean of 0.15-0.85, then gamma 0.6-1.6 (log-uniform): values
      reaching 0 and 1, with saturated flat areas.

    (N, C, H, W) in [0, 1] -> same (H, W >= 5).
    """
    n = x.shape[0]
    blur = (torch.rand(n, generator=gen) < p).to(x.device).view(n, 1, 1, 1)
    window = (torch.rand(n, generator=gen) < p).to(x.device).view(n, 1, 1, 1)
    sigma = _uniform(n, 0.5, 1.5, gen, x).view(n)
    contrast = torch.exp(_uniform(n, float(np.log(0.7)), float(np.log(2.5)), gen, x))
    centre = _uniform(n, 0.15, 0.85, gen, x)
    gamma = torch.exp(_uniform(n, float(np.log(0.6)), float(np.log(1.6)), gen, x))
    y = torch.where(blur, _blur_per_sample(x, sigma), x)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    windowed = (centre + contrast * (y - mean)).clamp(0, 1) ** gamma
    return torch.where(window, windowed, y).clamp(0, 1)


def random_enhance_tensor(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Composed exposure degradation per sample: low contrast (factor 0.3-0.9 around the
    sample mean), gamma 0.6-1.8 (log-uniform), brightness offset -0.15..0.15 and Gaussian
    noise sigma 0-0.03; (N, C, H, W) in [0, 1] -> same, clipped."""
    n = x.shape[0]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    y = mean + _uniform(n, 0.3, 0.9, gen, x) * (x - mean)
    gamma = torch.exp(_uniform(n, float(np.log(0.6)), float(np.log(1.8)), gen, x))
    y = y.clamp(0, 1) ** gamma
    y = y + _uniform(n, -0.15, 0.15, gen, x)
    y = y + _uniform(n, 0.0, 0.03, gen, x) * torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    return y.clamp(0, 1)


def known_gaussian(task: "Task", sigma: float) -> "Task":
    """``task`` (denoising) trained on white Gaussian noise of exactly ``sigma`` on unvaried targets:
    a non-blind denoiser for upper-bound experiments; evaluation and baseline unchanged."""

    def degrade_batch(x: torch.Tensor, scale: int, gen: torch.Generator) -> torch.Tensor:
        return (x + sigma * torch.randn(x.shape, generator=gen).to(x.device, x.dtype)).clamp(0, 1)

    return replace(task, train_degrade=degrade_batch, train_target=None,
                   description=f"Gaussian noise sigma {sigma} only (known level), targets not varied")


# The fixed evaluation degradations (issue targets are stated for these).
DENOISE_EVAL = {"gaussian": ("gaussian_noise", {"sigma": 0.05}), "poisson": ("poisson_noise", {"peak": 100.0}),
                "rician": ("rician_noise", {"sigma": 0.05})}
ENHANCE_EVAL = [("low_contrast", {"factor": 0.5}), ("gamma_shift", {"gamma": 1.5}),
                ("brightness", {"offset": -0.05}), ("gaussian_noise", {"sigma": 0.02})]


@dataclass(frozen=True)
class Task:
    train_degrade: Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
    eval_degrade: Callable[[np.ndarray, int, int], np.ndarray]
    baseline: Callable[[np.ndarray, int], np.ndarray]
    baseline_name: str
    description: str
    train_target: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    # (signal (N, C, H, W), windows (N, 2), scale, gen) -> degraded display batch
    signal_train: Callable[[torch.Tensor, torch.Tensor, int, torch.Generator], torch.Tensor] | None = None
    # (signal (H, W), display table, scale or noise level, seed) -> degraded display image
    signal_eval: Callable[[np.ndarray, Table, Any, int], np.ndarray] | None = None


def _eval_noise(img: np.ndarray, scale: int, seed: int, kind: str = "gaussian") -> np.ndarray:
    name, params = DENOISE_EVAL[kind]
    return degrade.DEGRADATIONS[name](img, **params, seed=seed)


TASKS: dict[str, Task] = {
    "sr": Task(
        train_degrade=lambda hr, s, gen: degrade.bicubic_down_tensor(hr, s),
        eval_degrade=lambda img, s, seed: degrade.bicubic_down(img, s),
        baseline=upscale,
        baseline_name="bicubic",
        description="antialiased bicubic downsampling x{scale}",
    ),
    "denoise": Task(
        train_degrade=lambda x, s, gen: random_noise_tensor(x, gen),
        eval_degrade=_eval_noise,
        baseline=lambda inp, s: inp,
        baseline_name="noisy input",
        description="blind noise: Gaussian sigma 0.005-0.10, Poisson peak 30-3000, Rician sigma 0.005-0.10; "
        "clean targets varied (Gaussian blur 0.5-1.5 px, window and gamma; p 0.5 each) so the model does not learn "
        "the Hannover PNGs' look (validation: Gaussian sigma 0.05 on the validation crops, plain and varied)",
        train_target=random_site_tensor,
    ),
    "enhance": Task(
        train_degrade=lambda x, s, gen: random_enhance_tensor(x, gen),
        eval_degrade=lambda img, s, seed: degrade.compose(ENHANCE_EVAL)(img, seed=seed),
        baseline=lambda inp, s: inp,
        baseline_name="degraded input",
        description="low contrast 0.3-0.9, gamma 0.6-1.8, brightness -0.15..0.15, Gaussian noise 0-0.03 "
        "(validation: contrast 0.5, gamma 1.5, brightness -0.05, noise 0.02)",
    ),
}


# --- realistic tasks (issue 29): degradations where they physically happen ------------------------------------


def _png_window(x: torch.Tensor) -> torch.Tensor:
    """(N, 2) windows of display batches taken as PNGs: [lo, hi] = [0, 1], i.e. display = 1 - s."""
    return torch.tensor([[0.0, 1.0]]).expand(x.shape[0], 2)


def _png_train(signal_train: Callable) -> Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]:
    return lambda x, s, gen: signal_train(1.0 - x, _png_window(x), s, gen)


DENOISE_REAL_VAL = "dose250"  # the validation level of denoise_real (the harder of the two evaluation doses)

TASKS["sr_real"] = Task(
    train_degrade=_png_train(realistic_torch.real_sr_batch),
    eval_degrade=lambda img, s, seed: realistic.sr_real_eval_signal(1.0 - img, PNG_TABLE, s, seed),
    baseline=upscale,
    baseline_name="bicubic",
    description="realistic x{scale} (second-order, after Real-ESRGAN, sized for radiographs): in the detector-signal "
    "domain a Gaussian PSF sigma 0.2-1.5 px (anisotropic p 0.5, ratio <= 2), resize to 1-1.5x the LR size "
    "(bicubic/bilinear/area), Poisson-Gaussian noise dose 300-10000 (log-uniform) + read sigma 0-0.003; display "
    "window; JPEG q 70-95 (p 0.5); then p 0.7: blur 0.2-0.8 px (p 0.5), resize to LR, Gaussian 0-0.008, JPEG q "
    "80-95 (p 0.5). Validation: PSF 0.8/0.5 px at 30 deg, bicubic down, dose 2000 read 0.002, JPEG 90",
    signal_train=realistic_torch.real_sr_batch,
    signal_eval=realistic.sr_real_eval_signal,
)
TASKS["denoise_real"] = Task(
    train_degrade=_png_train(lambda sig, win, s, gen: realistic_torch.denoise_real_batch(sig, win, gen)),
    eval_degrade=lambda img, s, seed: realistic.denoise_real_eval_signal(1.0 - img, PNG_TABLE, DENOISE_REAL_VAL, seed),
    baseline=lambda inp, s: inp,
    baseline_name="noisy input",
    description="Poisson-Gaussian detector noise in the signal domain before the display window: dose 100-20000 "
    "photons at full scale (log-uniform), read sigma 0-0.004; clean signals varied first as for denoise (Gaussian "
    "blur 0.5-1.5 px, window and gamma; p 0.5 each) so smooth, unprocessed radiographs are in the training "
    "distribution (validation: dose 250, read 0.002, on the validation images plain and varied)",
    train_target=random_site_tensor,
    signal_train=lambda sig, win, s, gen: realistic_torch.denoise_real_batch(sig, win, gen),
    signal_eval=lambda sig, table, level, seed: realistic.denoise_real_eval_signal(sig, table, level, seed),
)


# --- noise-aware models (issue 35): one model for clean, noisy and realistic inputs ----------------------------


def _sr_mix_eval_signal(signal: np.ndarray, table: Table, scale: int, seed: int) -> np.ndarray:
    """Validation of sr_mix: image ``seed`` gets the clean, the realistic or the Poisson-Gaussian degradation
    in turn (seed % 3), so best-on-validation selection weighs all three."""
    kind = seed % 3
    if kind == 0:
        return degrade.bicubic_down(to_display(signal, table), scale)
    if kind == 1:
        return realistic.sr_real_eval_signal(signal, table, scale, seed)
    return realistic.sr_pg_eval_signal(signal, table, scale, seed)


DENOISE_MIX_VAL = ("gaussian", "dose250", "dose2000")  # validation of denoise_mix, image by image in turn


def _denoise_mix_eval_signal(signal: np.ndarray, table: Table, level: Any, seed: int) -> np.ndarray:
    kind = DENOISE_MIX_VAL[seed % 3]
    if kind == "gaussian":
        return _eval_noise(to_display(signal, table), 1, seed, "gaussian")
    return realistic.denoise_real_eval_signal(signal, table, kind, seed)


TASKS["sr_pg"] = Task(
    train_degrade=_png_train(lambda sig, win, s, gen: realistic_torch.sr_mix_batch(sig, win, s, gen)),
    eval_degrade=lambda img, s, seed: realistic.sr_pg_eval_signal(1.0 - img, PNG_TABLE, s, seed),
    baseline=upscale,
    baseline_name="bicubic",
    description="evaluation only: antialiased bicubic sampling x{scale} of the detector signal, Poisson-Gaussian "
    f"noise dose {realistic.SR_PG_EVAL['dose']:g} read {realistic.SR_PG_EVAL['read_sigma']} at the LR pixels, "
    "display window (noisy but not blurred, no JPEG)",
    signal_eval=realistic.sr_pg_eval_signal,
)
TASKS["sr_mix"] = Task(
    train_degrade=_png_train(realistic_torch.sr_mix_batch),
    eval_degrade=lambda img, s, seed: _sr_mix_eval_signal(1.0 - img, PNG_TABLE, s, seed),
    baseline=upscale,
    baseline_name="bicubic",
    description="a mix per sample: 30 % clean antialiased bicubic x{scale}; 20 % Poisson-Gaussian detector noise "
    "at the LR pixels, dose 100-20000 (log-uniform), read sigma 0-0.004; 50 % the realistic chain of sr_real "
    "(blur, resampling, Poisson-Gaussian noise, JPEG, second order). Conditioned on the estimated noise sigma of "
    "the LR input (models.noise). Validation: clean / realistic / Poisson-Gaussian dose 500, image by image",
    signal_train=realistic_torch.sr_mix_batch,
    signal_eval=_sr_mix_eval_signal,
)
TASKS["denoise_mix"] = Task(
    train_degrade=_png_train(lambda sig, win, s, gen: realistic_torch.denoise_mix_batch(sig, win, gen, random_noise_tensor)),
    eval_degrade=lambda img, s, seed: _denoise_mix_eval_signal(1.0 - img, PNG_TABLE, None, seed),
    baseline=lambda inp, s: inp,
    baseline_name="noisy input",
    description="a mix per sample: 40 % display-domain Gaussian / Poisson / Rician noise (sigma 0.005-0.10, peak "
    "30-3000, as denoise); 45 % Poisson-Gaussian detector noise in the signal domain (dose 100-20000, read 0-0.004, "
    "as denoise_real); 15 % near-clean (Gaussian sigma 0-0.004). Clean signals varied first (blur, window, gamma; "
    "p 0.5 each). Conditioned on the estimated noise sigma of the input (models.noise). Validation: Gaussian "
    "sigma 0.05 / dose 250 / dose 2000, image by image, plain and varied",
    train_target=random_site_tensor,
    signal_train=lambda sig, win, s, gen: realistic_torch.denoise_mix_batch(sig, win, gen, random_noise_tensor),
    signal_eval=_denoise_mix_eval_signal,
)

# Registry-name suffix -> training task suffix: "*_real" models train on "<task>_real", noise-aware "*_na" ones
# on "<task>_mix".
_SUFFIX_TASK = {"_real": "_real", "_na": "_mix"}


def task_name(model: str, registry_task: str) -> str:
    """The training/evaluation task of registry model ``model``: ``<task>_real`` for ``*_real`` models,
    ``<task>_mix`` for noise-aware ``*_na`` models, else the registry task."""
    for suffix, task_suffix in _SUFFIX_TASK.items():
        if model.endswith(suffix):
            return registry_task + task_suffix
    return registry_task


def registry_task(task: str) -> str:
    """The registry task a training task's models belong to (``sr_real``, ``sr_pg``, ``sr_mix`` -> ``sr``)."""
    return task.split("_")[0]
