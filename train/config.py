"""Training configuration: one dataclass, filled from argparse by ``python -m train fit``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from pathlib import Path

DEFAULT_SPLIT = Path(__file__).resolve().parent.parent / "splits" / "hannover-cxr.json"
DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent / "splits" / "dicom-sources.json"


@dataclass
class FitConfig:
    model: str = "srcnn_x2"  # registry name; its spec gives architecture and scale
    data: str = "../shared/data/hannover-cxr/png"
    split_file: str = str(DEFAULT_SPLIT)
    out: str = ""  # weights file to write; default models/weights/<spec.weights>
    ckpt_dir: str = "checkpoints"
    steps: int = 3000
    batch: int = 16
    patch: int = 64  # high-resolution patch side in pixels (multiple of the scale)
    zoom: float = 0.0  # mild scale augmentation: patches cut at 1 +- zoom times their size and resized (e.g. 0.1)
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    # Exponential moving average of the weights (e.g. 0.999; 0 = off). Validation, best-on-validation selection
    # and the exported file use the averaged weights: averaging over the last ~1/(1 - ema) steps smooths out
    # the optimizer's step-to-step noise, the usual last step of SR training (BasicSR, Real-ESRGAN).
    ema: float = 0.0
    # Denoising only: train on Gaussian noise of exactly this sigma with the clean targets as they are
    # (0 = the task's blind mix of noise types and levels on varied targets). A non-blind model for
    # upper-bound experiments (scripts/oracle_split.py); the shipped denoisers are blind.
    noise_sigma: float = 0.0
    loss: str = "l1"  # weighted terms from train.losses.LOSSES, e.g. "l1+0.1*gradient"
    init: str = ""  # start from these weights (e.g. a PSNR-trained generator before GAN training)
    gan: str = ""  # "" (no discriminator), "standard" (SRGAN) or "relativistic" (ESRGAN)
    adv_weight: float = 5e-3  # weight of the generator's adversarial term
    d_lr: float = 1e-4
    d_feats: int = 32
    val_every: int = 250
    # Whole validation images by default: on the Hannover radiographs, 256 px centre crops (mostly smooth
    # mediastinum) moved a quarter to a half as much as the held-out test images between training stages, so
    # best-on-validation selection was nearly blind. Set a crop (HR px) for large images on a small machine.
    val_crop: int = 0
    select_by: str = "psnr"  # best-on-validation: psnr, ssim, or perceptual (lowest feature distance with PSNR >= bicubic)
    ckpt_every: int = 250
    resume: bool = False
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch default
    device: str = ""  # "" = cuda if available else cpu
    amp: str = "auto"  # mixed precision: "auto" (bf16 on CUDA, off on CPU), "bf16" (also on CPU), "off"
    notes: str = ""  # free text copied into the model card
    # Realistic tasks (*_real models) only: full-resolution DICOMs of this manifest's "train" list join the PNGs,
    # each training sample drawn from them with this probability (0 = PNGs only).
    dicom_manifest: str = str(DEFAULT_MANIFEST)
    dicom_fraction: float = 0.25
    extra: dict = field(default_factory=dict)


def add_fit_args(p: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`FitConfig` field (``--resume`` is a switch)."""
    for f in fields(FitConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", help=f"(default: {default})")
        else:
            p.add_argument(flag, type=type(default), default=default, help=f"(default: {default!r})")


def config_from_args(ns: argparse.Namespace) -> FitConfig:
    return FitConfig(**{f.name: getattr(ns, f.name) for f in fields(FitConfig) if f.name != "extra"})
