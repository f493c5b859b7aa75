"""``fit()``: train one registered network and export its weights with a model card.

A plain loop (nanoGPT style): sample a batch of clean patches, degrade them,
step the optimizer, validate every ``val_every`` steps on held-out patients,
keep the best state, checkpoint every ``ckpt_every`` steps, export the best
weights as safetensors whose metadata is the model card.
"""

from __future__ import annotations

import datetime as dt
import math
import platform
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from models import get_spec
from models.loading import WEIGHTS_DIR, save_weights
from models.resample import to_numpy, to_tensor

from . import metrics
from .checkpoint import load_checkpoint, save_checkpoint
from .config import FitConfig
from .data import Image, augmentation, load_images, load_or_make_split, sample_patches
from .degrade import bicubic_down, bicubic_down_tensor, crop_to_multiple
from .losses import LOSSES


def lr_at(step: int, cfg: FitConfig) -> float:
    """Linear warm-up to ``cfg.lr`` then cosine decay to ``cfg.min_lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(t, 1.0)))


def centre_crop(img: np.ndarray, size: int, multiple: int) -> np.ndarray:
    """Centre crop of ``size`` px (0 = whole image), then cropped to a multiple of ``multiple``."""
    if size:
        h, w = img.shape[:2]
        y, x = max((h - size) // 2, 0), max((w - size) // 2, 0)
        img = img[y : y + size, x : x + size]
    return crop_to_multiple(img, multiple)


def degrade_pair(img: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(input, target) for SR: (bicubic-downscaled image, image cropped to a multiple of scale)."""
    hr = crop_to_multiple(img, scale)
    return bicubic_down(hr, scale), hr


@torch.no_grad()
def validate(model: torch.nn.Module, images: list[Image], scale: int, crop: int, device: str) -> dict[str, float]:
    """Mean PSNR/SSIM (data range 1, border crop = scale) of ``model`` on centre crops."""
    model.eval()
    ps, ss = [], []
    for im in images:
        lr, hr = degrade_pair(centre_crop(im.pixels, crop, scale), scale)
        sr = to_numpy(model(to_tensor(lr).to(device)).clamp(0, 1).cpu(), hr.ndim == 3)
        ps.append(metrics.psnr(sr, hr, 1.0, crop=scale))
        ss.append(metrics.ssim(sr, hr, 1.0, crop=scale))
    model.train()
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss))}


def baseline_scores(images: list[Image], scale: int, crop: int) -> dict[str, float]:
    """The bicubic row on exactly the validation crops the model is scored on."""
    from models.resample import upscale

    ps, ss = [], []
    for im in images:
        lr, hr = degrade_pair(centre_crop(im.pixels, crop, scale), scale)
        up = upscale(lr, scale)
        ps.append(metrics.psnr(up, hr, 1.0, crop=scale))
        ss.append(metrics.ssim(up, hr, 1.0, crop=scale))
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss))}


def fit(cfg: FitConfig) -> dict[str, Any]:
    """Train ``cfg.model`` and export its best weights; returns the card metadata written."""
    spec = get_spec(cfg.model)
    if spec.kind != "network":
        raise ValueError(f"{cfg.model} is a classical baseline; nothing to train")
    if cfg.patch % spec.scale:
        raise ValueError(f"--patch {cfg.patch} must be a multiple of the scale {spec.scale}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)

    split = load_or_make_split(cfg.data, cfg.split_file, seed=cfg.seed)
    train_imgs = load_images(cfg.data, split["train"])
    val_imgs = load_images(cfg.data, split["val"])
    model = spec.build().to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = LOSSES[cfg.loss]
    transform = augmentation(cfg.patch)
    ckpt = Path(cfg.ckpt_dir) / f"{cfg.model}.ckpt.safetensors"

    step, best_score, best_step, best_val = 0, -math.inf, 0, {}
    best = {k: v.detach().clone() for k, v in model.state_dict().items()}
    elapsed = 0.0
    if cfg.resume and ckpt.is_file():
        best, meta = load_checkpoint(ckpt, model, opt, rng)
        step, best_score, best_step, best_val, elapsed = (
            meta["step"], meta["best_score"], meta["best_step"], meta["best_val"], meta["elapsed"]
        )
        print(f"resumed {cfg.model} at step {step} (best {cfg.select_by} {best_score:.4f} at {best_step})")
    bicubic = baseline_scores(val_imgs, spec.scale, cfg.val_crop)

    t0 = time.time() - elapsed
    bar = tqdm(total=cfg.steps, initial=step, desc=cfg.model, dynamic_ncols=True)
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        hr = sample_patches(train_imgs, cfg.batch, transform, rng).to(device)
        lr_img = bicubic_down_tensor(hr, spec.scale)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            loss = loss_fn(model(lr_img).float(), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        bar.update(1)
        if step % cfg.val_every == 0 or step == cfg.steps:
            val = validate(model, val_imgs, spec.scale, cfg.val_crop, device)
            if val[cfg.select_by] > best_score:
                best_score, best_step, best_val = val[cfg.select_by], step, val
                best = {k: v.detach().clone() for k, v in model.state_dict().items()}
            bar.set_postfix(loss=f"{loss.item():.4f}", val_psnr=f"{val['psnr']:.2f}", bicubic=f"{bicubic['psnr']:.2f}")
            tqdm.write(
                f"step {step}: loss {loss.item():.5f} val PSNR {val['psnr']:.3f} SSIM {val['ssim']:.4f} "
                f"(bicubic {bicubic['psnr']:.3f} / {bicubic['ssim']:.4f})"
            )
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, model, best, opt, rng, {
                "step": step, "best_score": best_score, "best_step": best_step,
                "best_val": best_val, "elapsed": time.time() - t0,
            })
    bar.close()

    model.load_state_dict(best)
    card = {
        "model": spec.name,
        "arch": type(model).__name__,
        "task": spec.task,
        "scale": spec.scale,
        "params": sum(p.numel() for p in model.parameters()),
        "training": {
            **{k: v for k, v in asdict(cfg).items() if k not in ("extra", "resume", "ckpt_dir", "out")},
            "data_name": Path(cfg.data).resolve().parent.name if Path(cfg.data).name == "png" else Path(cfg.data).name,
            "train_images": len(train_imgs),
            "train_patients": len(split["patients"]["train"]),
            "val_images": len(val_imgs),
            "val_patients": len(split["patients"]["val"]),
            "degradation": f"antialiased bicubic downsampling x{spec.scale}",
            "device": device,
            "wall_seconds": round(time.time() - t0, 1),
            "torch": torch.__version__,
            "machine": platform.machine(),
        },
        "val": {**best_val, "best_step": best_step, "bicubic": bicubic, "data_range": 1.0,
                "border_crop": spec.scale, "crop": cfg.val_crop},
        "created": dt.date.today().isoformat(),
    }
    out = Path(cfg.out) if cfg.out else WEIGHTS_DIR / spec.weights
    save_weights(model, out, card)
    print(f"wrote {out}: val PSNR {best_val.get('psnr', float('nan')):.3f} dB vs bicubic {bicubic['psnr']:.3f} dB")
    return card
