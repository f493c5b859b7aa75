"""Train the degradation probe of an automatic SR entry (:mod:`models.auto`): ``python -m train probe ...``.

The probe learns the decision itself. For random training patches degraded as the noise-aware models are
trained (``sr_mix``: clean, Poisson-Gaussian, realistic; the clean scene also varied in blur, window and gamma
half of the time, so smooth unprocessed radiographs are in both groups) both specialists are run once, and for
each patch three numbers are kept: ``a = mean((A - T)^2)``, ``b = mean((A - T)(A - B))``, ``c = mean((B - A)^2)``
(``A`` clean model, ``B`` noise-aware model, ``T`` target). The blend ``A + w (B - A)`` then has squared error
``a - 2 w b + w^2 c``, and the probe's ``w = sigmoid(probe(LR))`` is trained to minimise the mean of
``log10`` of it: the mean PSNR of the blended outputs. Validation: whole validation images under the clean,
realistic and Poisson-Gaussian evaluation degradations, the PSNR of each specialist and of the automatic choice
(:func:`models.auto.decide` rules: one model under 0.25 / over 0.75, else the blend).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from models.arch.probe import DegradationProbe
from models.auto import BLEND_HIGH, BLEND_LOW, PROBE_CROP, PROBE_CROPS, _crops
from models.loading import save_weights, weights_path
from models.noise import estimate_sigma_tensor
from models.resample import to_numpy, to_tensor

from . import metrics
from .config import DEFAULT_MANIFEST, DEFAULT_SPLIT
from .data import augmentation, load_images, load_or_make_split
from .fit import degrade_pair, training_spec
from .realistic_torch import denoise_mix_batch, sr_mix_batch
from .signal import to_display_tensor
from .sources import load_dicom_sources, png_sources, sample_signal_patches
from .tasks import random_noise_tensor, random_site_tensor

# The kinds of input the automatic entry must get right, per registry task (denoise_mix's evaluation
# degradation rotates Gaussian sigma 0.05 / Poisson-Gaussian dose 250 / dose 2000 image by image).
EVAL_TASKS = {"sr": ("sr", "sr_real", "sr_pg"), "denoise": ("denoise_mix",)}


@dataclass
class ProbeConfig:
    clean: str = "edsr_x2"  # specialist for clean inputs (registry name)
    noisy: str = "edsr_x2_na"  # noise-aware specialist (registry or draft name)
    noisy_weights: str = ""  # its weights file if not the registry's (e.g. a fresh training run)
    data: str = "../shared/data/hannover-cxr/png"
    split_file: str = str(DEFAULT_SPLIT)
    dicom_manifest: str = str(DEFAULT_MANIFEST)
    dicom_fraction: float = 0.25
    samples: int = 6000  # training patches in the bank
    patch: int = 128  # HR patch side
    steps: int = 3000
    batch: int = 64
    lr: float = 1e-3
    seed: int = 0
    threads: int = 0
    out: str = "probe.safetensors"


def add_probe_args(p: argparse.ArgumentParser) -> None:
    for f in fields(ProbeConfig):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                       help=f"(default: {f.default!r})")


def config_from_args(ns: argparse.Namespace) -> ProbeConfig:
    return ProbeConfig(**{f.name: getattr(ns, f.name) for f in fields(ProbeConfig)})


def load_specialist(name: str, weights: str = "") -> torch.nn.Module:
    """A specialist network in eval mode: registry weights, or ``weights`` for a model not shipped yet."""
    spec = training_spec(name)
    module = spec.build()
    module.load_state_dict(load_file(weights or str(weights_path(spec))))
    return module.eval().requires_grad_(False)


@torch.no_grad()
def build_bank(cfg: ProbeConfig, clean: torch.nn.Module, noisy: torch.nn.Module, scale: int) -> dict[str, torch.Tensor]:
    """``cfg.samples`` LR patches with their (a, b, c) blend statistics (module docstring); seeded."""
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    split = load_or_make_split(cfg.data, cfg.split_file, seed=0)
    pngs = png_sources(load_images(cfg.data, split["train"], grayscale=True))
    dicoms = load_dicom_sources(cfg.dicom_manifest) if cfg.dicom_fraction > 0 else []
    transform = augmentation(cfg.patch)
    lrs, stats = [], []
    for _ in range(math.ceil(cfg.samples / 32)):
        sig, win = sample_signal_patches(pngs, dicoms, 32, cfg.dicom_fraction, transform, rng)
        sig = random_site_tensor(sig, gen)
        hr = to_display_tensor(sig, win)
        # The inputs the route meets: the noise-aware models' own training mix (SR or denoising).
        lr = sr_mix_batch(sig, win, scale, gen) if scale > 1 else denoise_mix_batch(sig, win, gen, random_noise_tensor)
        a_out, b_out = clean(lr).clamp(0, 1), noisy(lr).clamp(0, 1)
        c = slice(scale, -scale)  # border crop as in evaluation (1 px for denoising)
        d_a, d_ab = (a_out - hr)[..., c, c], (a_out - b_out)[..., c, c]
        stats.append(torch.stack([d_a.pow(2).mean((1, 2, 3)), (d_a * d_ab).mean((1, 2, 3)), d_ab.pow(2).mean((1, 2, 3))], 1))
        lrs.append(lr)
    return {"lr": torch.cat(lrs)[: cfg.samples], "abc": torch.cat(stats)[: cfg.samples].double()}


def blend_log_error(w: torch.Tensor, abc: torch.Tensor) -> torch.Tensor:
    """Mean log10 squared error of the blends ``A + w (B - A)``; (N,) weights, (N, 3) statistics."""
    a, b, c = abc.unbind(1)
    err = a - 2 * w.double() * b + w.double() ** 2 * c
    return torch.log10(err.clamp_min(1e-12)).mean()


def choose(w: float) -> str:
    """The rule of :func:`models.auto.decide`: ``clean``, ``noisy`` or ``blend``."""
    return "clean" if w <= BLEND_LOW else "noisy" if w >= BLEND_HIGH else "blend"


@torch.no_grad()
def probe_weight(probe: DegradationProbe, lr: np.ndarray) -> float:
    """As :func:`models.auto.probe_weight`: whole-image sigma, up to 9 crops, mean logit."""
    x = to_tensor(lr)
    crops = _crops(x, PROBE_CROP, PROBE_CROPS)
    return float(torch.sigmoid(probe(crops, estimate_sigma_tensor(x).expand(crops.shape[0], 1, 1, 1)).mean()))


@torch.no_grad()
def validate_routes(probe: DegradationProbe, clean: torch.nn.Module, noisy: torch.nn.Module, scale: int,
                    images: list, tasks: tuple[str, ...] = EVAL_TASKS["sr"]) -> dict[str, dict[str, float]]:
    """Per evaluation task: mean PSNR of bicubic (the noisy input for denoising), each specialist and the
    automatic choice, and the choices made."""
    from models.resample import upscale

    probe.eval()
    out = {}
    for task in tasks:
        rows: dict[str, list[float]] = {"bicubic": [], "clean": [], "noisy": [], "auto": []}
        picks = {"clean": 0, "noisy": 0, "blend": 0}
        for i, im in enumerate(images):
            inp, target = degrade_pair(im.pixels, task, scale, seed=i)
            a = to_numpy(clean(to_tensor(inp)).clamp(0, 1), False)
            b = to_numpy(noisy(to_tensor(inp)).clamp(0, 1), False)
            w = probe_weight(probe, inp)
            pick = choose(w)
            picks[pick] += 1
            auto = a if pick == "clean" else b if pick == "noisy" else a + np.float32(w) * (b - a)
            for k, v in (("bicubic", upscale(inp, scale)), ("clean", a), ("noisy", b), ("auto", auto)):
                rows[k].append(metrics.psnr(v, target, 1.0, crop=scale))
        out[task] = {**{k: round(float(np.mean(v)), 3) for k, v in rows.items()}, **{f"picked_{k}": v for k, v in picks.items()}}
    return out


def fit_probe(cfg: ProbeConfig) -> dict[str, Any]:
    """Build the bank, train the probe, validate, write ``cfg.out`` (safetensors with the card); returns the card."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    clean_spec = training_spec(cfg.clean)
    scale = clean_spec.scale
    if (training_spec(cfg.noisy).scale, training_spec(cfg.noisy).task) != (scale, clean_spec.task):
        raise ValueError(f"{cfg.clean} and {cfg.noisy} differ in task or scale")
    clean, noisy = load_specialist(cfg.clean), load_specialist(cfg.noisy, cfg.noisy_weights)
    bank = build_bank(cfg, clean, noisy, scale)
    print(f"bank: {len(bank['lr'])} patches in {time.time() - t0:.0f} s")
    torch.manual_seed(cfg.seed)
    probe = DegradationProbe().train()
    opt = torch.optim.Adam(probe.parameters(), lr=cfg.lr)
    n = len(bank["lr"])
    sigma = estimate_sigma_tensor(bank["lr"])
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        idx = torch.randint(0, n, (cfg.batch,))
        w = torch.sigmoid(probe(bank["lr"][idx], sigma[idx]))[:, 0]
        loss = blend_log_error(w, bank["abc"][idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 500 == 0:
            print(f"step {step + 1}: mean log10 blend error {loss.item():.4f}")
    probe.eval()
    with torch.no_grad():
        w_all = torch.sigmoid(probe(bank["lr"], sigma))[:, 0]
        train_gain = {
            "always_clean": float(-10 * blend_log_error(torch.zeros(n), bank["abc"])),
            "always_noisy": float(-10 * blend_log_error(torch.ones(n), bank["abc"])),
            "probe": float(-10 * blend_log_error(w_all, bank["abc"])),
        }
    split = load_or_make_split(cfg.data, cfg.split_file, seed=0)
    val_images = load_images(cfg.data, split["val"], grayscale=True)
    task = clean_spec.task
    val = validate_routes(probe, clean, noisy, scale, val_images, EVAL_TASKS[task])
    card = {
        "model": Path(cfg.out).stem, "arch": "DegradationProbe", "task": task, "scale": scale,
        "params": sum(p.numel() for p in probe.parameters()),
        "training": {**asdict(cfg), "noisy_weights": Path(cfg.noisy_weights).name if cfg.noisy_weights else "",
                     "bank_mean_psnr_of_blend": train_gain, "wall_seconds": round(time.time() - t0, 1),
                     "train_images": len(split["train"]),
                     "degradation": f"{'sr_mix' if scale > 1 else 'denoise_mix'} (train.tasks)"},
        "val": {"images": len(val_images), "patients": len(split["patients"]["val"]), **val},
        "created": dt.date.today().isoformat(),
    }
    save_weights(probe, cfg.out, card)
    print(f"wrote {cfg.out}: bank PSNR of the blend {train_gain}; validation {val}")
    return card
