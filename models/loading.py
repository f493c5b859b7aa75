"""Weights I/O: safetensors only (never pickle), with the model card in the metadata.

The one loader seam of every network: :func:`load_network` builds the zoo's modules and loads
their safetensors here, and asks a user model's spec (:mod:`models.plugins`) to build itself from
its file (spandrel weights through ``torch.load(weights_only=True)`` or safetensors, or an ONNX
graph), checked against the SHA-256 it was registered with.

A weights file holds the state dict plus string metadata (safetensors allows
only ``dict[str, str]``): each value is JSON-encoded, so numbers and nested
dicts (config, scores) round-trip. The studio shows this metadata as the card.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .errors import WeightsError
from .registry import ModelSpec

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

_lock = threading.Lock()
_CACHE: dict[tuple[str, str], torch.nn.Module] = {}


def weights_path(spec: ModelSpec) -> Path:
    """Absolute path of a network's weights file (it may not exist yet); a user model's own file."""
    if spec.source == "user" and spec.path:
        return Path(spec.path)
    if spec.weights is None:
        raise WeightsError(f"model {spec.name!r} has no weights file")
    return WEIGHTS_DIR / spec.weights


def save_weights(module: torch.nn.Module, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``module``'s state dict to ``path`` as safetensors; metadata values are JSON-encoded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata={k: json.dumps(v) for k, v in metadata.items()})
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON-decoded metadata of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (OSError, ValueError, RuntimeError) as e:  # missing, truncated or not safetensors
        raise WeightsError(f"cannot read weights {path}: {e}") from e
    out: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def update_metadata(path: str | Path, updates: dict[str, Any]) -> None:
    """Merge ``updates`` into a weights file's metadata (rewrites the file; tensors unchanged)."""
    meta = read_metadata(path)
    meta.update(updates)
    tensors = load_file(str(path))
    save_file(tensors, str(path), metadata={k: json.dumps(v) for k, v in meta.items()})


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (provenance of every output)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_network(spec: ModelSpec, device: str = "cpu") -> torch.nn.Module:
    """Build ``spec``'s module, load its weights and keep it warm (cached per device).

    Raises:
        WeightsError: the weights file is missing or does not fit the architecture.
    """
    key = (spec.name, device)
    with _lock:  # concurrent first requests must not build the model twice
        if key not in _CACHE:
            _CACHE[key] = _build_and_load(spec, device)
        return _CACHE[key]


def clear_cache() -> None:
    """Forget loaded modules (after retraining, or to free GPU memory)."""
    with _lock:
        _CACHE.clear()


def forget(name: str) -> None:
    """Forget the loaded modules of one model, on every device (a user model reloaded or removed)."""
    with _lock:
        for key in [k for k in _CACHE if k[0] == name]:
            del _CACHE[key]


def _build_and_load(spec: ModelSpec, device: str) -> torch.nn.Module:
    name = spec.name
    path = weights_path(spec)
    if not path.is_file():
        raise WeightsError(f"weights file for {name!r} is missing: {path}")
    if spec.source == "user":
        # The spec's build reads the file, checks its registered SHA-256 and returns the network
        # with its weights (models.plugins); a file that changed or broke is a WeightsError here.
        try:
            module = spec.build()
        except (OSError, ValueError, RuntimeError) as e:
            raise WeightsError(f"model file of {name!r} is unusable: {e}") from e
        return module.eval().requires_grad_(False).to(device)
    try:
        state = load_file(str(path), device="cpu")
        module = spec.build()
        module.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError) as e:
        raise WeightsError(f"weights file for {name!r} is unusable: {e}") from e
    return module.eval().requires_grad_(False).to(device)
