"""Resumable checkpoints in safetensors (no pickle): model, best model, optimizer and RNG state."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    best: dict[str, torch.Tensor],
    opt: torch.optim.Optimizer,
    rng: random.Random,
    meta: dict[str, Any],
    disc: torch.nn.Module | None = None,
    d_opt: torch.optim.Optimizer | None = None,
    ema: torch.nn.Module | None = None,
) -> None:
    """Write everything needed to continue a run to ``path`` (atomically).

    With a GAN, the discriminator (``disc.*``) and its optimizer (``dopt.*``) are stored too; with a
    weight average, the averaged model (``ema.*``).
    """
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best.items()})
    tensors.update(_opt_tensors("opt", opt))
    meta = dict(meta, python_rng=rng.getstate(), param_groups=opt.state_dict()["param_groups"])
    if disc is not None and d_opt is not None:
        tensors.update({f"disc.{k}": v.detach().cpu().contiguous() for k, v in disc.state_dict().items()})
        tensors.update(_opt_tensors("dopt", d_opt))
        meta["d_param_groups"] = d_opt.state_dict()["param_groups"]
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    tensors["rng.torch"] = torch.get_rng_state()
    tmp = path.with_suffix(".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)})
    tmp.replace(path)  # a crash mid-write never leaves a half checkpoint


def _opt_tensors(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for idx, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{prefix}.{idx}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    return out


def _load_opt(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith(prefix + "."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": groups})


def _sub(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    rng: random.Random,
    disc: torch.nn.Module | None = None,
    d_opt: torch.optim.Optimizer | None = None,
    ema: torch.nn.Module | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore model, optimizer, discriminator, weight average and RNGs from ``path``; returns (best state dict, meta).

    A checkpoint written without a weight average starts ``ema`` from the restored model.
    """
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
    model.load_state_dict(_sub(tensors, "model"))
    best = _sub(tensors, "best")
    _load_opt("opt", opt, tensors, meta.pop("param_groups"))
    if disc is not None and d_opt is not None:
        disc.load_state_dict(_sub(tensors, "disc"))
        _load_opt("dopt", d_opt, tensors, meta.pop("d_param_groups"))
    if ema is not None:
        ema.load_state_dict(_sub(tensors, "ema") or model.state_dict())
    torch.set_rng_state(tensors["rng.torch"])
    py = meta.pop("python_rng")
    rng.setstate((py[0], tuple(py[1]), py[2]))
    return best, meta
