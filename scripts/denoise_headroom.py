"""How much can denoising gain on a dataset whose "clean" references already carry noise?

The Hannover PNGs are CLAHE-processed radiographs: the contrast equalisation amplifies the quantum
noise of the original exposure, so the reference a denoiser is scored against is itself noisy.
The part of that noise hidden under the added noise cannot be predicted from the input, which caps
every method's PSNR and shrinks the gaps between methods. For each image this script reports

* ``ref_sigma``: the noise already in the reference (``skimage.restoration.estimate_sigma``, the
  wavelet median-absolute-deviation estimate; CLAHE texture counts as noise too);
* ``oracle``: the PSNR of a denoiser that knows the noise-free signal exactly and estimates the
  reference's own noise optimally (Wiener) -- for white Gaussian noise of levels s_r (reference) and
  s (added) its error variance is s_r^2 s^2 / (s_r^2 + s^2), so PSNR = -10 log10 of that;
* measured PSNRs of non-local means (true sigma) and the listed networks, on the same seeded noise
  as ``python -m train eval --task denoise --noise gaussian``.

A second experiment makes the mechanism causal: on images with clean references (``--external``,
e.g. the other-site radiographs), it adds white noise of the Hannover median ``ref_sigma`` to the
reference first, then scores the same methods against that noisier reference.

    python scripts/denoise_headroom.py ../shared/data/hannover-cxr/png --external /tmp/external
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from skimage.restoration import estimate_sigma

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import enhance  # noqa: E402
from train import degrade, metrics  # noqa: E402
from train.data import load_images, load_or_make_split  # noqa: E402
from train.evaluate import external_split, fit_side  # noqa: E402
from train.tasks import DENOISE_EVAL, TASKS  # noqa: E402

SIGMA = DENOISE_EVAL["gaussian"][1]["sigma"]  # the denoising target's added Gaussian noise (0.05)


def oracle_psnr(ref_sigma: float, sigma: float = SIGMA) -> float:
    """PSNR (data range 1) of the ideal estimate of a reference with white noise ``ref_sigma`` seen
    through further white noise ``sigma``: error variance ref_sigma^2 sigma^2 / (ref_sigma^2 + sigma^2)."""
    var = ref_sigma**2 * sigma**2 / (ref_sigma**2 + sigma**2)
    return float(10 * np.log10(1.0 / max(var, 1e-12)))


def score(refs: list[np.ndarray], methods: list[str], device: str) -> dict[str, list[float]]:
    """Per-image PSNR of every method on ``refs`` ((H, W) float32 [0, 1]) with the eval's seeded noise."""
    rows: dict[str, list[float]] = {"input": [], **{m: [] for m in methods}}
    for i, ref in enumerate(refs):
        noisy = TASKS["denoise"].eval_degrade(ref, 1, seed=i, kind="gaussian")
        rows["input"].append(metrics.psnr(noisy, ref, 1.0))
        for m in methods:
            opts = {"sigma": SIGMA} if m == "nlm" else {"device": device}
            rows[m].append(metrics.psnr(enhance(noisy, m, **opts), ref, 1.0))
    return rows


def report(title: str, refs: list[np.ndarray], methods: list[str], device: str) -> list[float]:
    """Print mean ref_sigma, oracle and measured PSNRs, and each network's gain over NLM; return the ref_sigmas."""
    sig = [float(estimate_sigma(r)) for r in refs]
    rows = score(refs, methods, device)
    print(f"\n{title}: {len(refs)} images, reference noise sigma median {np.median(sig):.4f} "
          f"(min {min(sig):.4f}, max {max(sig):.4f})")
    print(f"  oracle (noise-free signal known)  {np.mean([oracle_psnr(s) for s in sig]):7.2f} dB")
    for m, v in rows.items():
        gain = f"  ({np.mean(v) - np.mean(rows['nlm']):+.2f} dB vs nlm)" if m not in ("input", "nlm") else ""
        print(f"  {m:<32} {np.mean(v):7.2f} dB{gain}")
    for m in methods if len(refs) >= 10 else []:  # a correlation over a handful of images says nothing
        if m != "nlm":
            d = np.array(rows[m]) - np.array(rows["nlm"])
            print(f"  corr(ref_sigma, {m} - nlm) = {np.corrcoef(sig, d)[0, 1]:+.2f}")
    return sig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="folder of images (searched recursively); file stems are the split's ids")
    ap.add_argument("--split", default="splits/hannover-cxr.json")
    ap.add_argument("--external", default="", help="folder of images with clean references (optional)")
    ap.add_argument("--models", default="nlm,dncnn,dae", help="comma-separated; must include nlm")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    methods = args.models.split(",")
    split = load_or_make_split(args.data, args.split)
    refs = [im.pixels for im in load_images(args.data, split["test"])]
    ref_sigmas = report("held-out patients", refs, methods, args.device)
    if args.external:
        ext = [fit_side(im, 640).pixels for im in load_images(args.external, external_split(args.external)["external"])]
        report("other sites, clean references", ext, methods, args.device)
        added = float(np.median(ref_sigmas))
        noisy_refs = [degrade.gaussian_noise(r, sigma=added, seed=1000 + i) for i, r in enumerate(ext)]
        report(f"other sites, references given the held-out median noise (sigma {added:.4f})",
               noisy_refs, methods, args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
