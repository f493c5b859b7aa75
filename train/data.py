"""Datasets: a folder of images, patient-level splits, and random training patches.

* :func:`find_images` walks a folder recursively for DICOM/PNG/JPEG/TIFF files.
* :func:`make_split` assigns whole patients to train/val/test (seeded) and
  writes a JSON split file that evaluation reuses, so no patient ever sits on
  both sides. Patients come from an optional CSV (image id -> patient id);
  without one, every image is its own patient.
* :func:`load_images` reads them with the studio's own reader
  (:func:`models.read_image`), so training sees exactly what users upload.
* :func:`sample_patches` draws an augmented batch of patches (torchvision
  ``transforms.v2``: random crop, optionally at a mildly random scale, flips,
  90-degree rotations);
  :func:`sample_patches_on` draws the same distribution from images already on
  a GPU, so a fast accelerator is not starved by one CPU core cutting patches.
"""

from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2

from models import read_image

IMAGE_SUFFIXES = {".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ""}


def find_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursive, sorted). Files with no suffix count (DICOM)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def read_patient_map(csv_path: str | Path, image_col: str = "image_id", patient_col: str = "patient_id") -> dict[str, str]:
    """image id (file stem) -> patient id, from a CSV with those two columns."""
    with open(csv_path, newline="") as f:
        return {row[image_col]: row[patient_col] for row in csv.DictReader(f)}


def find_patient_csv(root: str | Path) -> Path | None:
    """A ``data.csv`` next to or above the images folder (the Hannover layout), if any."""
    root = Path(root)
    for cand in (root / "data.csv", root.parent / "data.csv"):
        if cand.is_file():
            return cand
    return None


def make_split(
    files: list[Path],
    patients: dict[str, str] | None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> dict[str, list[str]]:
    """Split image files into train/val/test by patient, deterministically.

    Returns:
        {"train": [...], "val": [...], "test": [...]} of image ids (file
        stems), plus "patients": {split: [patient ids]}.
    """
    by_patient: dict[str, list[str]] = {}
    for p in files:
        pid = (patients or {}).get(p.stem, p.stem)
        by_patient.setdefault(pid, []).append(p.stem)
    ids = sorted(by_patient)
    random.Random(seed).shuffle(ids)
    n_test = max(1, round(len(ids) * test_fraction))
    n_val = max(1, round(len(ids) * val_fraction))
    groups = {"test": ids[:n_test], "val": ids[n_test : n_test + n_val], "train": ids[n_test + n_val :]}
    split: dict = {k: sorted(s for pid in v for s in by_patient[pid]) for k, v in groups.items()}
    split["patients"] = {k: sorted(v) for k, v in groups.items()}
    return split


def load_or_make_split(data: str | Path, split_file: str | Path, seed: int = 0) -> dict[str, list[str]]:
    """Reuse ``split_file`` if it exists (evaluation must see the training split), else create it."""
    split_file = Path(split_file)
    if split_file.is_file():
        return json.loads(split_file.read_text())
    files = find_images(data)
    csv_path = find_patient_csv(data)
    split = make_split(files, read_patient_map(csv_path) if csv_path else None, seed=seed)
    split["seed"] = seed
    split["source"] = str(Path(data).name)
    split_file.parent.mkdir(parents=True, exist_ok=True)
    # Under torchrun every rank gets here at once: write to a private file and rename it into
    # place, so no rank ever reads another's half-written JSON (the split is the same on all ranks).
    tmp = split_file.with_name(f".{split_file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(split, indent=1))
    os.replace(tmp, split_file)
    return split


@dataclass
class Image:
    id: str
    pixels: np.ndarray  # float32 [0, 1], (H, W) or (H, W, 3)


def load_images(data: str | Path, ids: list[str], grayscale: bool = True) -> list[Image]:
    """Read the images with those ids (file stems) from ``data`` with the studio reader.

    ``grayscale=True`` (grayscale models): colour images become the mean of their
    channels, (H, W). ``grayscale=False`` (colour models): grey images get three
    equal channels, (H, W, 3), so one batch can mix both -- the way the studio
    feeds a grey image to a colour network.
    """
    wanted = set(ids)
    out = []
    for p in find_images(data):
        if p.stem in wanted:
            img, _ = read_image(p)
            if grayscale and img.ndim == 3:
                img = img.mean(axis=-1, dtype=np.float32)
            elif not grayscale and img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=-1)
            out.append(Image(p.stem, img))
    missing = wanted - {i.id for i in out}
    if missing:
        raise FileNotFoundError(f"{len(missing)} images of the split are missing from {data}, e.g. {sorted(missing)[:3]}")
    return out


class ZoomCrop(torch.nn.Module):
    """Random square crop of ``patch * f`` px, ``f`` uniform in [1 - zoom, 1 + zoom], resized to ``patch`` px.

    Mild scale augmentation: the same anatomy at slightly different pixel
    spacings, as radiographs from other detectors and downsampling chains show
    it. Resizing is antialiased bicubic, clamped back to [0, 1]. Randomness
    comes from torch's global generator, like the other v2 transforms.

    Shapes: (C, H, W) -> (C, patch, patch), float32 in [0, 1].
    """

    def __init__(self, patch: int, zoom: float):
        super().__init__()
        if not 0.0 <= zoom < 1.0:
            raise ValueError(f"zoom must be in [0, 1), got {zoom}")
        self.patch, self.zoom = patch, zoom

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        h, w = t.shape[-2:]
        f = 1.0 + self.zoom * (2.0 * float(torch.rand(())) - 1.0)
        side = max(1, min(round(self.patch * f), h, w))
        y = int(torch.randint(h - side + 1, ()))
        x = int(torch.randint(w - side + 1, ()))
        crop = t[..., y : y + side, x : x + side]
        if side == self.patch:
            return crop
        out = v2.functional.resize(crop, [self.patch, self.patch], interpolation=v2.InterpolationMode.BICUBIC,
                                   antialias=True)
        return out.clamp_(0.0, 1.0)


def augmentation(patch: int, zoom: float = 0.0) -> v2.Transform:
    """Random crop of ``patch`` px (with ``zoom`` > 0: of 1 ± zoom times that, resized; see :class:`ZoomCrop`),
    horizontal/vertical flips and a random 90-degree rotation."""
    return v2.Compose([
        ZoomCrop(patch, zoom) if zoom else v2.RandomCrop(patch),
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.RandomApply([v2.Lambda(lambda t: t.transpose(-1, -2))], p=0.5),  # with the flips: all 8 rot90/flip variants
    ])


def chw_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, 3) float32 array -> (C, H, W) tensor sharing its memory where it can."""
    return torch.from_numpy(img[None] if img.ndim == 2 else img.transpose(2, 0, 1))


def sample_patches(images: list[Image], batch: int, transform: v2.Transform, rng: random.Random) -> torch.Tensor:
    """A (batch, C, P, P) float32 tensor of augmented patches, images drawn uniformly.

    Randomness comes from ``rng`` (image choice) and torch's global generator
    (transforms), both seeded by ``fit`` so runs are reproducible.
    """
    out = []
    for _ in range(batch):
        out.append(transform(chw_tensor(rng.choice(images).pixels)))
    return torch.stack(out).contiguous()


def sample_patches_on(images: list[torch.Tensor], batch: int, patch: int, rng: random.Random,
                      gen: torch.Generator) -> torch.Tensor:
    """Like :func:`sample_patches`, from (C, H, W) float32 tensors already on the training device.

    Same distribution (uniform image, uniform crop position, all 8 flip/rot90
    variants), but cut and augmented where the images live. Image choice and
    crop offsets come from ``rng``; the flips from ``gen`` (a CPU generator).

    Returns:
        (batch, C, patch, patch) float32 on the images' device, values in [0, 1].
    """
    out = []
    for _ in range(batch):
        img = rng.choice(images)
        h, w = img.shape[-2:]
        if h < patch or w < patch:
            raise ValueError(f"image of {h}x{w} px is smaller than the {patch} px patch")
        y, x = rng.randrange(h - patch + 1), rng.randrange(w - patch + 1)
        out.append(img[:, y : y + patch, x : x + patch])
    x = torch.stack(out)
    flips = torch.rand(3, batch, generator=gen) < 0.5  # horizontal, vertical, transpose
    m = [f.to(x.device).view(batch, 1, 1, 1) for f in flips]
    x = torch.where(m[0], x.flip(-1), x)
    x = torch.where(m[1], x.flip(-2), x)
    return torch.where(m[2], x.transpose(-1, -2), x).contiguous()
