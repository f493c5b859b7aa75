"""Training sources in the detector-signal domain: the DICOM manifest, multi-scale copies, patch batches.

The realistic tasks (``sr_real``, ``denoise_real``) learn from what users
upload: full-resolution high-bit-depth DICOMs read through the studio reader
(:func:`train.signal.load_signal`, raw values kept) as well as the 8-bit
Hannover PNGs. :data:`DEFAULT_MANIFEST` (``splits/dicom-sources.json``) lists
the registry-package DICOMs by package-relative path with their licence, in a
``train`` and an ``external`` list (one whole source held out).
"""

from __future__ import annotations

import importlib
import json
import random
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2

from .config import DEFAULT_MANIFEST
from .data import Image, chw_tensor
from .signal import PNG_TABLE, SignalImage, load_signal, resize_signal

# Each DICOM is also used at 1/2 and 1/4 of its size: users upload full-resolution files (0.1-0.2 mm pixels)
# and downsized exports, and the Hannover PNGs are ~0.5 mm.
DICOM_SCALES = (1, 2, 4)


def manifest_paths(manifest: str | Path = DEFAULT_MANIFEST, subset: str = "train") -> list[Path]:
    """Absolute paths of the manifest's ``subset`` files ("train" or "external"); FileNotFoundError if missing."""
    entries = json.loads(Path(manifest).read_text())[subset]
    out = []
    for e in entries:
        try:
            root = Path(importlib.import_module(e["module"]).__file__).parent
        except ImportError:
            raise FileNotFoundError(f"{e['path']} needs the package {e['package']} (pip install {e['package']})") from None
        p = root / e["path"]
        if not p.is_file():
            raise FileNotFoundError(f"{p} listed in {manifest} is missing")
        out.append(p)
    return out


def multiscale(im: SignalImage, scales: tuple[int, ...] = DICOM_SCALES, min_side: int = 128) -> list[SignalImage]:
    """``im`` at 1/k of its size for each k in ``scales`` (signal-domain antialiased resize), ids ``<id>@1/k``;
    copies whose shorter side would fall under ``min_side`` px are skipped."""
    h, w = im.signal.shape
    out = []
    for k in scales:
        if min(h, w) // k < min_side:
            continue
        small = im if k == 1 else resize_signal(im, max(h, w) // k)
        out.append(SignalImage(f"{im.id}@1/{k}", small.signal, im.table, meta=im.meta))
    return out


def load_dicom_sources(manifest: str | Path = DEFAULT_MANIFEST, subset: str = "train",
                       scales: tuple[int, ...] = DICOM_SCALES) -> list[SignalImage]:
    """The manifest's ``subset`` DICOMs as signal images, each at every scale of ``scales``."""
    return [c for p in manifest_paths(manifest, subset) for c in multiscale(load_signal(p), scales)]


def png_sources(images: list[Image]) -> list[SignalImage]:
    """Display images (PNGs read by the reader, (H, W)) as signal images: ``s = 1 - x``, :data:`PNG_TABLE`."""
    return [SignalImage(im.id, (1.0 - im.pixels).astype(np.float32), PNG_TABLE) for im in images]


def sample_signal_patches(pngs: list[SignalImage], dicoms: list[SignalImage], batch: int, dicom_fraction: float,
                          transform: v2.Transform, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of augmented signal patches and their display windows.

    Each sample comes from ``dicoms`` with probability ``dicom_fraction``
    (when there are any), else from ``pngs``; the image is uniform within its
    pool. Randomness: ``rng`` (pool, image) and torch's global generator
    (crop, flips), as :func:`train.data.sample_patches`.

    Returns:
        ((batch, 1, P, P) float32 signal in [0, 1], (batch, 2) float32 [lo, hi] linear windows).
    """
    patches, windows = [], []
    for _ in range(batch):
        pool = dicoms if dicoms and (not pngs or rng.random() < dicom_fraction) else pngs
        im = rng.choice(pool)
        patches.append(transform(chw_tensor(im.signal)))
        windows.append(im.window)
    return torch.stack(patches).contiguous(), torch.tensor(windows, dtype=torch.float32)
