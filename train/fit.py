"""``fit()``: train one registered network and export its weights with a model card.

A plain loop (nanoGPT style): sample a batch of clean patches, degrade them,
step the optimizer (and a discriminator for GAN training; with ``--ema``, update a
moving average of the weights, which is what gets validated), validate every
``val_every`` steps on held-out patients, keep the best state, checkpoint
every ``ckpt_every`` steps, export the best weights as safetensors whose
metadata is the model card.

Multi-GPU: launch the same command with ``torchrun --nproc_per_node N -m train
fit ...``; each rank draws its own patches (seed + rank), gradients are
averaged by DDP, rank 0 validates, checkpoints and exports.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import os
import platform
import random
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from safetensors.torch import load_file
from tqdm import tqdm

from models import ModelSpec, UnknownModelError, get_spec
from models.arch.discriminator import Discriminator
from models.arch.noise_aware import expand_input_channels
from models.loading import WEIGHTS_DIR, save_weights
from models.resample import to_numpy, to_tensor

from . import metrics
from .checkpoint import load_checkpoint, save_checkpoint
from .config import FitConfig
from .data import Image, augmentation, chw_tensor, load_images, load_or_make_split, sample_patches, sample_patches_on
from .degrade import crop_to_multiple
from .drafts import DRAFTS
from .losses import ADVERSARIAL, FeatureNet, parse_loss
from .signal import to_display_tensor
from .sources import load_dicom_sources, png_sources, sample_signal_patches
from .tasks import TASKS, Task, known_gaussian, task_name


def lr_at(step: int, cfg: FitConfig, peak: float | None = None) -> float:
    """Linear warm-up to ``peak`` (default ``cfg.lr``) then cosine decay to ``cfg.min_lr``."""
    peak = cfg.lr if peak is None else peak
    if step < cfg.warmup:
        return peak * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (peak - cfg.min_lr) * (1 + math.cos(math.pi * min(t, 1.0)))


@torch.no_grad()
def ema_update(avg: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``avg <- decay * avg + (1 - decay) * model`` for floating-point weights and buffers; others are copied."""
    for a, m in zip(avg.state_dict().values(), model.state_dict().values()):
        if a.is_floating_point():
            a.lerp_(m, 1.0 - decay)
        else:
            a.copy_(m)


def centre_crop(img: np.ndarray, size: int, multiple: int) -> np.ndarray:
    """Centre crop of ``size`` px (0 = whole image), then cropped to a multiple of ``multiple``."""
    if size:
        h, w = img.shape[:2]
        y, x = max((h - size) // 2, 0), max((w - size) // 2, 0)
        img = img[y : y + size, x : x + size]
    return crop_to_multiple(img, multiple)


def degrade_pair(img: np.ndarray, task: str, scale: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(input, target): the task's fixed evaluation degradation of ``img`` and the clean target."""
    target = crop_to_multiple(img, scale)
    return TASKS[task].eval_degrade(target, scale, seed), target


def _feature_distance(net: FeatureNet, a: np.ndarray, b: np.ndarray) -> float:
    with torch.no_grad():
        fa, fb = net(to_tensor(a)), net(to_tensor(b))
        return float(sum(torch.mean(torch.abs(x - y)) for x, y in zip(fa, fb)))


def _scores(pairs: list[tuple[np.ndarray, np.ndarray]], scale: int) -> dict[str, float]:
    """Mean PSNR/SSIM (data range 1, border crop = scale) and feature distance of (output, target) pairs."""
    feat = FeatureNet(1 if pairs[0][1].ndim == 2 else 3)
    ps = [metrics.psnr(o, t, 1.0, crop=scale) for o, t in pairs]
    ss = [metrics.ssim(o, t, 1.0, crop=scale) for o, t in pairs]
    fd = [_feature_distance(feat, o, t) for o, t in pairs]
    out = {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "perceptual": float(np.mean(fd))}
    if pairs[0][1].ndim == 3:
        out["delta_e"] = float(np.mean([metrics.delta_e(o, t, 1.0, crop=scale) for o, t in pairs]))
    return out


@torch.no_grad()
def validate(model: torch.nn.Module, images: list[Image], task: str, scale: int, crop: int, device: str) -> dict[str, float]:
    """Scores of ``model`` on the task's fixed degradation of centre crops of ``images``."""
    model.eval()
    pairs = []
    for i, im in enumerate(images):
        inp, target = degrade_pair(centre_crop(im.pixels, crop, scale), task, scale, seed=i)
        out = to_numpy(model(to_tensor(inp).to(device)).clamp(0, 1).float().cpu(), target.ndim == 3)
        pairs.append((out, target))
    model.train()
    return _scores(pairs, scale)


def varied_copies(images: list[Image], task: str | Task, seed: int = 12345) -> list[Image]:
    """``images`` once more, varied as the task varies its training targets (fixed seed).

    Validating on these too makes best-on-validation selection reward the whole
    training distribution, not only the Hannover look; empty for tasks that do
    not vary their targets. ``task``: a name in ``TASKS`` or a :class:`Task`.
    """
    vary = (TASKS[task] if isinstance(task, str) else task).train_target
    if vary is None:
        return []
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return [Image(f"{im.id}~varied", to_numpy(vary(to_tensor(im.pixels), gen), im.pixels.ndim == 3)) for im in images]


def baseline_scores(images: list[Image], task: str, scale: int, crop: int) -> dict[str, float]:
    """The baseline row (baseline / degraded input) on exactly the validation crops the model is scored on."""
    pairs = []
    for i, im in enumerate(images):
        inp, target = degrade_pair(centre_crop(im.pixels, crop, scale), task, scale, seed=i)
        pairs.append((TASKS[task].baseline(inp, scale), target))
    return _scores(pairs, scale)


def _better(val: dict[str, float], best: float, cfg: FitConfig, baseline: dict[str, float]) -> tuple[bool, float]:
    """Is this validation better than ``best``? Returns (better, its score; higher is better)."""
    if cfg.select_by == "perceptual":
        # GAN models: most perceptually faithful state that does not fall below baseline in PSNR.
        s = -val["perceptual"] if val["psnr"] >= baseline["psnr"] else -math.inf
    else:
        s = val[cfg.select_by]
    return s > best, s


def _dist_setup(cfg: FitConfig) -> tuple[int, int, str]:
    """(rank, world size, device); initialises torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available() and not cfg.device.startswith("cpu")
        tdist.init_process_group("nccl" if cuda else "gloo")
        device = f"cuda:{local}" if cuda else "cpu"
        if cuda:
            torch.cuda.set_device(local)
        return rank, world, device
    return 0, 1, cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")


def _dicom_card(manifest: str, dicoms: list) -> list[dict[str, Any]]:
    """The manifest's training entries (package, path, licence, what) and the multi-scale copies used."""
    import json

    entries = json.loads(Path(manifest).read_text())["train"]
    return [dict(e, copies=[d.id for d in dicoms if d.id.split("@")[0] == Path(e["path"]).stem]) for e in entries]


def training_spec(name: str) -> ModelSpec:
    """The registry spec of ``name`` (or its draft in :mod:`train.drafts`); a ``*_real`` name not registered yet gets its base model's architecture
    (``srcnn_x2_real`` -> ``srcnn_x2``) under its own name and weights file, so it can be trained before the
    registry entry exists."""
    if name in DRAFTS:
        return DRAFTS[name]
    try:
        return get_spec(name)
    except UnknownModelError:
        if not name.endswith("_real"):
            raise
        base = get_spec(name.removesuffix("_real"))
        return replace(base, name=name, weights=f"{name}.safetensors")


def fit(cfg: FitConfig) -> dict[str, Any]:
    """Train ``cfg.model`` and export its best weights; returns the card metadata written (rank 0)."""
    spec = training_spec(cfg.model)
    if spec.kind != "network":
        raise ValueError(f"{cfg.model} is a classical baseline; nothing to train")
    if cfg.patch % spec.scale:
        raise ValueError(f"--patch {cfg.patch} must be a multiple of the scale {spec.scale}")
    if not 0.0 <= cfg.ema < 1.0:
        raise ValueError(f"--ema {cfg.ema} must be in [0, 1) (0 = off; e.g. 0.999)")
    if cfg.gan and cfg.gan not in ADVERSARIAL:
        raise ValueError(f"--gan must be one of {sorted(ADVERSARIAL)}")
    if cfg.noise_sigma < 0:
        raise ValueError(f"--noise-sigma {cfg.noise_sigma} must be >= 0 (0 = the blind mix)")
    if cfg.noise_sigma and spec.task != "denoise":
        raise ValueError(f"--noise-sigma is for denoising models; {cfg.model} is a {spec.task} model")
    if not 0.0 <= cfg.dicom_fraction <= 1.0:
        raise ValueError(f"--dicom-fraction {cfg.dicom_fraction} must be in [0, 1]")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank, world, device = _dist_setup(cfg)
    main = rank == 0
    torch.manual_seed(cfg.seed + rank)
    rng = random.Random(cfg.seed + rank)
    cuda = device.startswith("cuda")
    amp_on = cfg.amp == "bf16" or (cfg.amp == "auto" and cuda)
    amp_dev = "cuda" if cuda else "cpu"
    if cuda:
        torch.backends.cudnn.benchmark = True

    split = load_or_make_split(cfg.data, cfg.split_file, seed=cfg.seed)
    gray = spec.in_channels == 1
    train_imgs = load_images(cfg.data, split["train"], grayscale=gray)
    val_imgs = load_images(cfg.data, split["val"], grayscale=gray) if main else []
    n_val = len(val_imgs)
    task_key = task_name(spec.name, spec.task)  # "*_real" models: the realistic task
    task = known_gaussian(TASKS[task_key], cfg.noise_sigma) if cfg.noise_sigma else TASKS[task_key]
    # Realistic tasks degrade in the detector-signal domain: PNGs as s = 1 - x, plus the manifest's DICOMs.
    signal = task.signal_train is not None and not cfg.noise_sigma
    pngs = png_sources(train_imgs) if signal else []
    dicoms = load_dicom_sources(cfg.dicom_manifest) if signal and cfg.dicom_fraction > 0 else []
    val_imgs += varied_copies(val_imgs, task)
    model = spec.build().to(device).train()
    if cfg.init:
        # A plain network's weights also start its noise-aware twin (the noise-level input channel at zero).
        model.load_state_dict(expand_input_channels(load_file(cfg.init), model.state_dict()))
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    ema = copy.deepcopy(model).requires_grad_(False) if cfg.ema else None
    judged = ema if ema is not None else model  # the weights validated, selected and exported
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = parse_loss(cfg.loss)
    disc = d_opt = None
    if cfg.gan:
        disc = Discriminator(spec.in_channels, cfg.d_feats).to(device).train()
        disc = torch.nn.parallel.DistributedDataParallel(disc) if world > 1 else disc
        d_opt = torch.optim.Adam(disc.parameters(), lr=cfg.d_lr, betas=(0.9, 0.99))
        g_adv, d_adv = ADVERSARIAL[cfg.gan]
    transform = augmentation(cfg.patch, cfg.zoom)
    # On a GPU the patches are cut where the images live, so one CPU core running transforms.v2 per patch
    # cannot starve it (an H100 ran 41-61 steps/s of 64 x 128 px patches this way). Same distribution; the
    # CPU path stays as it was, so CPU runs reproduce. Zoomed crops are cut by transforms.v2 on the CPU.
    on_device = [chw_tensor(im.pixels).to(device) for im in train_imgs] if cuda and not cfg.zoom and not signal else []
    flip_gen = torch.Generator().manual_seed(cfg.seed * 7919 + rank)
    noise_gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    ckpt = Path(cfg.ckpt_dir) / f"{cfg.model}.ckpt.safetensors"

    step, best_score, best_step, best_val = 0, -math.inf, 0, {}
    best = {k: v.detach().clone() for k, v in judged.state_dict().items()}
    elapsed = 0.0
    if cfg.resume and ckpt.is_file():
        best, meta = load_checkpoint(ckpt, model, opt, rng, disc=disc, d_opt=d_opt, ema=ema)
        step, best_score, best_step, best_val, elapsed = (
            meta["step"], meta["best_score"], meta["best_step"], meta["best_val"], meta["elapsed"]
        )
        noise_gen.manual_seed(cfg.seed * 1000 + rank + step)  # fresh, reproducible noise stream after resume
        flip_gen.manual_seed(cfg.seed * 7919 + rank + step)
        if main:
            print(f"resumed {cfg.model} at step {step} (best {cfg.select_by} {best_score:.4f} at {best_step})")
    baseline = baseline_scores(val_imgs, task_key, spec.scale, cfg.val_crop) if main else {}
    if main and step == 0 and cfg.init:
        # Fine-tuning (e.g. GAN from a PSNR model): the starting weights are the state to beat.
        best_val = validate(judged, val_imgs, task_key, spec.scale, cfg.val_crop, device)
        best_score = _better(best_val, -math.inf, cfg, baseline)[1]

    t0 = time.time() - elapsed
    skipped = 0
    bar = tqdm(total=cfg.steps, initial=step, desc=cfg.model, dynamic_ncols=True, disable=not main)
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        if signal:
            sig, win = sample_signal_patches(pngs, dicoms, cfg.batch, cfg.dicom_fraction, transform, rng)
            if task.train_target is not None:
                sig = task.train_target(sig, noise_gen)  # the scene varied (blur, contrast, gamma) before the detector
            hr = to_display_tensor(sig, win).to(device)
            lr_img = task.signal_train(sig, win, spec.scale, noise_gen).to(device)
        else:
            if on_device:
                hr = sample_patches_on(on_device, cfg.batch, cfg.patch, rng, flip_gen)
            else:
                hr = sample_patches(train_imgs, cfg.batch, transform, rng).to(device, non_blocking=True)
            if task.train_target is not None:
                hr = task.train_target(hr, noise_gen)
            lr_img = task.train_degrade(hr, spec.scale, noise_gen)
        with torch.autocast(amp_dev, dtype=torch.bfloat16, enabled=amp_on):  # weights and optimizer stay fp32
            sr = net(lr_img).float()
            if disc is not None:
                real_logits = disc(hr).float().detach()
                fake_logits = disc(sr).float()
        loss = loss_fn(sr, hr)  # losses in fp32: colour conversions and SSIM are precision-sensitive
        if disc is not None:
            adv = g_adv(real_logits, fake_logits)
            loss = loss + cfg.adv_weight * adv
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            # One degenerate batch must not poison the weights: skip it and count it in the card.
            skipped += 1
            step += 1
            bar.update(1)
            continue
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if ema is not None:
            ema_update(ema, model, cfg.ema)
        if disc is not None:
            for g in d_opt.param_groups:
                g["lr"] = lr_at(step, cfg, cfg.d_lr)
            with torch.autocast(amp_dev, dtype=torch.bfloat16, enabled=amp_on):
                d_loss = d_adv(disc(hr).float(), disc(sr.detach()).float())
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
        step += 1
        bar.update(1)
        if main and (step % cfg.val_every == 0 or step == cfg.steps):
            val = validate(judged, val_imgs, task_key, spec.scale, cfg.val_crop, device)
            better, s = _better(val, best_score, cfg, baseline)
            if better or not best_val:  # always record something, even if no state meets the criterion
                best_score, best_step, best_val = s, step, val
                best = {k: v.detach().clone() for k, v in judged.state_dict().items()}
            tqdm.write(
                f"step {step}: loss {loss.item():.5f} val PSNR {val['psnr']:.3f} SSIM {val['ssim']:.4f} "
                f"feat {val['perceptual']:.4f} ({task.baseline_name} {baseline['psnr']:.3f} / {baseline['ssim']:.4f} / "
                f"{baseline['perceptual']:.4f})"
            )
        if main and (step % cfg.ckpt_every == 0 or step == cfg.steps):
            save_checkpoint(ckpt, model, best, opt, rng, {
                "step": step, "best_score": best_score, "best_step": best_step,
                "best_val": best_val, "elapsed": time.time() - t0,
            }, disc=disc, d_opt=d_opt, ema=ema)
    bar.close()
    if world > 1:
        tdist.barrier()
        tdist.destroy_process_group()
    if not main:
        return {}

    model.load_state_dict(best)
    card = {
        "model": spec.name,
        "arch": type(model).__name__,
        "task": spec.task,
        "scale": spec.scale,
        "params": sum(p.numel() for p in model.parameters()),
        "training": {
            **{k: v for k, v in asdict(cfg).items() if k not in ("extra", "resume", "ckpt_dir", "out")},
            "init": Path(cfg.init).name if cfg.init else "",
            "data_name": Path(cfg.data).resolve().parent.name if Path(cfg.data).name == "png" else Path(cfg.data).name,
            "train_images": len(train_imgs),
            "train_patients": len(split["patients"]["train"]),
            "val_images": n_val,
            "val_varied_copies": len(val_imgs) - n_val,
            "val_patients": len(split["patients"]["val"]),
            "task": task_key,
            "degradation": task.description.format(scale=spec.scale),
            "dicom_sources": _dicom_card(cfg.dicom_manifest, dicoms) if dicoms else [],
            "discriminator": f"Discriminator(feats={cfg.d_feats}), {cfg.gan} GAN" if cfg.gan else "",
            "device": device,
            "mixed_precision": "bf16 autocast" if amp_on else "fp32",
            "world_size": world,
            "skipped_nonfinite_steps": skipped,
            "wall_seconds": round(time.time() - t0, 1),
            "torch": torch.__version__,
            "machine": platform.machine(),
        },
        "val": {**best_val, "best_step": best_step, "baseline": baseline, "baseline_name": task.baseline_name, "data_range": 1.0,
                "border_crop": spec.scale, "crop": cfg.val_crop},
        "created": dt.date.today().isoformat(),
    }
    out = Path(cfg.out) if cfg.out else WEIGHTS_DIR / spec.weights
    save_weights(model, out, card)
    print(f"wrote {out}: val PSNR {best_val.get('psnr', float('nan')):.3f} dB vs baseline {baseline['psnr']:.3f} dB")
    return card
