"""How much can super-resolution gain on a dataset? The score of a perfect band-limited reconstruction.

For each held-out image HR (patients of the split file's ``test`` list), compares with HR:

* bicubic: HR downsampled (antialiased bicubic, ``train.degrade``) and enlarged again;
* ideal low-pass: HR with every spatial frequency below the LR Nyquist limit kept *exactly* and
  every frequency above it removed (FFT mask) -- what a model scores if it recovers the LR band
  perfectly and predicts nothing beyond it.

The gap between the two is the gain available without predicting new high frequencies; anything
more must come from content above the LR Nyquist limit that is predictable from the LR image
(edges: yes; noise-like film grain or CLAHE texture: no). Same PSNR as ``train.metrics`` (data
range 1, border crop = scale).

    python scripts/sr_headroom.py ../shared/data/hannover-cxr/png --split splits/hannover-cxr.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import read_image  # noqa: E402
from train import degrade, metrics  # noqa: E402
from train.tasks import upscale  # noqa: E402


def ideal_lowpass(hr: np.ndarray, scale: int) -> np.ndarray:
    """(H, W) float32 [0, 1] -> HR with only the frequencies below the x``scale`` LR Nyquist limit, clipped."""
    h, w = hr.shape
    spectrum = np.fft.fftshift(np.fft.fft2(hr))
    yy, xx = np.mgrid[0:h, 0:w]
    keep = (np.abs(yy - h // 2) < h / (2 * scale)) & (np.abs(xx - w // 2) < w / (2 * scale))
    return np.clip(np.real(np.fft.ifft2(np.fft.ifftshift(spectrum * keep))), 0, 1).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="folder of images (searched recursively); file stems are the split's ids")
    ap.add_argument("--split", default="splits/hannover-cxr.json")
    ap.add_argument("--scales", default="2,4")
    args = ap.parse_args(argv)
    test_ids = set(json.loads(Path(args.split).read_text())["test"])
    files = sorted(p for p in Path(args.data).rglob("*") if p.stem in test_ids and p.is_file())
    print(f"{len(files)} held-out images")
    for s in (int(v) for v in args.scales.split(",")):
        bic, low = [], []
        for f in files:
            hr, _ = read_image(f)
            if hr.ndim == 3:
                hr = hr.mean(axis=2)
            hr = hr[: hr.shape[0] // s * s, : hr.shape[1] // s * s]
            bic.append(metrics.psnr(upscale(degrade.bicubic_down(hr, s), s), hr, 1.0, crop=s))
            low.append(metrics.psnr(ideal_lowpass(hr, s), hr, 1.0, crop=s))
        print(f"x{s}: bicubic {np.mean(bic):.2f} dB | ideal low-pass {np.mean(low):.2f} dB "
              f"(+{np.mean(low) - np.mean(bic):.2f} dB available without predicting frequencies above LR Nyquist)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
