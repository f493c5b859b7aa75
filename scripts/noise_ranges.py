"""Measure each network's training noise range: the ``noise_range`` of its registry entry (models/zoo.py).

For every training image of the split, the model's training degradation (``train.tasks``; a new random draw
per image, ``--draws`` times) is applied to the whole image and :func:`models.noise.estimate_sigma` is
measured on the result, the network's input. The 1st and 99th percentiles are the range; the studio warns
when an upload's estimate is more than ``models.noise.FAR_OUTSIDE`` times the top of it.

Usage::

    python scripts/noise_ranges.py [--data ../shared/data/hannover-cxr/png] [--models edsr_x2,dae]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from models import list_models  # noqa: E402
from models.noise import estimate_sigma_tensor  # noqa: E402
from train.config import DEFAULT_SPLIT  # noqa: E402
from train.data import load_images, load_or_make_split  # noqa: E402
from train.tasks import TASKS, task_name  # noqa: E402


@torch.no_grad()
def training_sigmas(task: str, scale: int, images: list[np.ndarray], draws: int, seed: int = 0) -> np.ndarray:
    """Estimated sigma of every (image, draw) training input of ``task``; images as PNGs (s = 1 - x)."""
    t = TASKS[task]
    gen = torch.Generator().manual_seed(seed)
    out = []
    for img in images:
        h, w = img.shape
        x = torch.from_numpy(img[: h - h % scale, : w - w % scale].copy())[None, None]
        for _ in range(draws):
            hr = t.train_target(x, gen) if t.train_target is not None else x
            inp = t.train_degrade(hr, scale, gen)
            out.append(float(estimate_sigma_tensor(inp)))
    return np.asarray(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/hannover-cxr/png")
    p.add_argument("--split-file", default=str(DEFAULT_SPLIT))
    p.add_argument("--models", default="", help="comma-separated names (default: every network)")
    p.add_argument("--draws", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    split = load_or_make_split(args.data, args.split_file)
    images = [im.pixels for im in load_images(args.data, split["train"], grayscale=True)]
    wanted = set(filter(None, args.models.split(",")))
    seen: dict[tuple[str, int], tuple[float, float]] = {}
    for spec in list_models():
        if spec.kind != "network" or spec.in_channels != 1 or (wanted and spec.name not in wanted):
            continue
        task = task_name(spec.name, spec.task)
        if task not in TASKS or spec.task == "enhance":
            continue
        key = (task, spec.scale)
        if key not in seen:
            s = training_sigmas(task, spec.scale, images, args.draws)
            seen[key] = (float(np.percentile(s, 1)), float(np.percentile(s, 99)))
        lo, hi = seen[key]
        print(f"{spec.name:20s} {task:12s} x{spec.scale}  noise_range=({lo:.4f}, {hi:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
