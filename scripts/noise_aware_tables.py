"""Summarise the noise-aware evaluation (issue 35) against its targets, from the CSVs ``train eval`` wrote.

Reads ``DIR/{hann,ext640,extcrop}/*.csv`` (scripts/evaluate_all.sh, noise-aware section) and prints the
markdown tables of docs/noise-aware.md: per scale, task and data set the PSNR / SSIM of bicubic, non-local
means then Lanczos, the clean and the realistic specialist, the noise-aware model and the automatic entry,
the automatic entry's distance to the better specialist and whether each target holds.

Usage::

    python scripts/noise_aware_tables.py [docs/results/noise-aware]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

DATASETS = {  # folder -> (file suffix, title)
    "hann": ("test", "Hannover test patients, 640 px"),
    "ext640": ("external", "external CRs, <= 640 px"),
    "extcrop": ("native512_external", "external CRs, native-resolution 512 px crops"),
}
SR = {2: ("edsr_x2", "edsr_x2_real", "edsr_x2_na", "auto_x2"),
      4: ("srresnet_x4", "srresnet_x4_real", "srresnet_x4_na", "auto_x4")}
SR_TASKS = {"sr": "clean (bicubic)", "sr_real": "realistic", "sr_pg": "Poisson-Gaussian"}
DENOISE = {"denoise_gaussian": "Gaussian sigma 0.05", "denoise_real_dose250": "Poisson-Gaussian dose 250",
           "denoise_real_dose2000": "Poisson-Gaussian dose 2000"}
WITHIN_DB = 0.3  # the automatic choice within this of the better specialist
OVER_NLM_DB = 1.0  # realistic SR and denoising: at least this over the classical pipeline


def read(path: Path) -> dict[str, dict[str, float]]:
    """model -> {psnr, ssim} of one evaluation CSV (empty if the file is missing)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {r["model"]: {"psnr": float(r["psnr"]), "ssim": float(r["ssim"])} for r in csv.DictReader(f)}


def _cell(rows: dict[str, dict[str, float]], name: str) -> str:
    r = rows.get(name)
    return f"{r['psnr']:.2f} / {r['ssim']:.3f}" if r else "-"


def sr_table(root: Path, scale: int) -> list[str]:
    clean, real, na, auto = SR[scale]
    out = [f"| input | data | bicubic | NLM then Lanczos | {clean} | {real} | {na} | **{auto}** | {auto} - better "
           f"of {clean} / {real} (dB) | vs NLM+Lanczos (dB) | targets |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for task, title in SR_TASKS.items():
        for folder, (suffix, data) in DATASETS.items():
            rows = read(root / folder / f"{task}_x{scale}_{suffix}.csv")
            if auto not in rows:
                continue
            a, bic = rows[auto], rows[f"bicubic_x{scale}"]
            best = max(rows[clean]["psnr"], rows[real]["psnr"])
            gap = a["psnr"] - best
            ok = gap >= -WITHIN_DB and a["psnr"] >= bic["psnr"] and a["ssim"] >= bic["ssim"]
            nlm = rows.get(f"nlm_lanczos_x{scale}")
            over = a["psnr"] - nlm["psnr"] if nlm else None
            if task == "sr_real" and over is not None:
                ok = ok and over >= OVER_NLM_DB
            out.append(f"| {title} | {data} | {_cell(rows, f'bicubic_x{scale}')} | {_cell(rows, f'nlm_lanczos_x{scale}')} "
                       f"| {_cell(rows, clean)} | {_cell(rows, real)} | {_cell(rows, na)} | **{_cell(rows, auto)}** "
                       f"| {gap:+.2f} | {'' if over is None else f'{over:+.2f}'} | {'met' if ok else '**not met**'} |")
    return out


def denoise_table(root: Path) -> list[str]:
    out = ["| noise | data | noisy input | NLM (true sigma) | dncnn | dae | dae_na | **auto_denoise** | "
           "auto_denoise vs NLM (dB) | target (+1.0 dB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for task, title in DENOISE.items():
        for folder, (suffix, data) in DATASETS.items():
            rows = read(root / folder / f"{task}_{suffix}.csv")
            if "auto_denoise" not in rows:
                continue
            over = rows["auto_denoise"]["psnr"] - rows["nlm"]["psnr"]
            out.append(f"| {title} | {data} | {_cell(rows, 'input (no processing)')} | {_cell(rows, 'nlm')} "
                       f"| {_cell(rows, 'dncnn')} | {_cell(rows, 'dae')} | {_cell(rows, 'dae_na')} "
                       f"| **{_cell(rows, 'auto_denoise')}** | {over:+.2f} | {'met' if over >= OVER_NLM_DB else '**not met**'} |")
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "docs/results/noise-aware")
    for scale in SR:
        print(f"\n**Super-resolution x{scale}** (PSNR dB / SSIM)\n")
        print("\n".join(sr_table(root, scale)))
    print("\n**Denoising** (PSNR dB / SSIM)\n")
    print("\n".join(denoise_table(root)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
