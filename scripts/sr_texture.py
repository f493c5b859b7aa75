"""Does a super-resolution model restore texture or invent it? High-frequency energy next to PSNR and GMSD.

For each held-out image (the split file's ``test`` list) HR is downsampled x``scale`` (antialiased
bicubic, ``train.degrade``) and enlarged by bicubic interpolation and by each model. Reported per
method, averaged over images: PSNR and GMSD against HR (``train.metrics``, border crop = scale) and the
high-frequency energy -- the standard deviation of the output minus its Gaussian blur (sigma 1 px),
border crop 2 x scale -- next to HR's own. PSNR-trained networks sit far below HR's energy (they
predict the mean); GAN outputs move towards it, and PSNR/GMSD tell whether the added texture is the
reference's or invented.

    python scripts/sr_texture.py ../shared/data/hannover-cxr/png --scale 4 --models srresnet_x4,srgan_x4,rrdbnet_x4
    # an unshipped state (a `python -m train fit` checkpoint or export) in a registered architecture:
    python scripts/sr_texture.py ../shared/data/hannover-cxr/png --models rrdbnet_x4 \\
        --weights rrdbnet_x4=checkpoints/esrgan_x4.ckpt.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import enhance, get_spec  # noqa: E402
from train import degrade, metrics  # noqa: E402
from train.data import load_images, load_or_make_split  # noqa: E402
from train.tasks import upscale  # noqa: E402


def high_freq_energy(image: np.ndarray, crop: int = 0) -> float:
    """Std of (H, W) float [0, 1] ``image`` minus its Gaussian blur (sigma 1 px), ``crop`` px border ignored."""
    detail = image - gaussian_filter(image, 1.0)
    return float(np.std(detail[crop:-crop, crop:-crop] if crop else detail))


def load_state(arch: str, path: str) -> torch.nn.Module:
    """Registered architecture ``arch`` with the weights in ``path``: an export of ``python -m train fit``
    or its checkpoint (whose generator weights carry the prefix ``model.``)."""
    state = load_file(path)
    if any(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    module = get_spec(arch).build()
    module.load_state_dict(state, strict=True)
    return module.eval().requires_grad_(False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="folder of images (searched recursively); file stems are the split's ids")
    ap.add_argument("--split", default="splits/hannover-cxr.json")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--models", default="", help="comma-separated registered SR models of that scale")
    ap.add_argument("--weights", action="append", default=[], metavar="ARCH=PATH",
                    help="an unshipped weights file in a registered architecture (repeatable)")
    args = ap.parse_args(argv)
    s = args.scale
    states = {f"{a} <- {Path(p).name}": load_state(a, p) for a, p in (w.split("=", 1) for w in args.weights)}
    split = load_or_make_split(args.data, args.split)
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for im in load_images(args.data, split["test"]):
        hr = im.pixels[: im.pixels.shape[0] // s * s, : im.pixels.shape[1] // s * s]
        lr = degrade.bicubic_down(hr, s)
        outs = {"HR reference": hr, f"bicubic_x{s}": upscale(lr, s)}
        outs.update({m: enhance(lr, m, device="cpu") for m in filter(None, args.models.split(","))})
        with torch.no_grad():
            outs.update({n: m(torch.from_numpy(lr)[None, None])[0, 0].clamp(0, 1).numpy() for n, m in states.items()})
        for name, out in outs.items():
            scores = (metrics.psnr(out, hr, 1.0, crop=s) if out is not hr else float("inf"),
                      metrics.gmsd(out, hr, 1.0, crop=s), high_freq_energy(out, crop=2 * s))
            rows.setdefault(name, []).append(scores)
    print(f"{len(split['test'])} held-out images, x{s}")
    print(f"{'method':<48} {'PSNR':>7} {'GMSD':>7} {'high-freq energy':>17}")
    for name, v in rows.items():
        psnr, gmsd, hf = np.mean(v, axis=0)
        print(f"{name:<48} {psnr:7.2f} {gmsd:7.4f} {hf:17.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
