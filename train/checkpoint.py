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
) -> None:
    """Write everything needed to continue a run bit-for-bit to ``path`` (atomically)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best.items()})
    opt_state = opt.state_dict()
    for idx, st in opt_state["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = dict(meta, python_rng=rng.getstate(), param_groups=opt_state["param_groups"])
    tmp = path.with_suffix(".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)})
    tmp.replace(path)  # a crash mid-write never leaves a half checkpoint


def load_checkpoint(
    path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, rng: random.Random
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore model, optimizer and RNGs from ``path``; returns (best state dict, meta)."""
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    torch.set_rng_state(tensors["rng.torch"])
    py = meta.pop("python_rng")
    rng.setstate((py[0], tuple(py[1]), py[2]))
    return best, meta
