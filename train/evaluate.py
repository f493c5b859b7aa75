"""Evaluation: score registered models on held-out patients and write a table.

Every model goes through :func:`models.enhance` — the same code path the
studio uses — on whole images of the split's test patients. The bicubic and
lanczos rows are always present so gains are stated against them.
"""

from __future__ import annotations

import csv
import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models import enhance, get_spec
from models.loading import update_metadata, weights_path, load_network

from . import metrics
from .data import load_images, load_or_make_split
from .degrade import bicubic_down, crop_to_multiple


def param_count(name: str) -> int:
    """Trainable parameters of a network (0 for classical baselines)."""
    spec = get_spec(name)
    if spec.kind != "network":
        return 0
    return sum(p.numel() for p in load_network(spec, "cpu").parameters())


def evaluate_sr(
    names: list[str],
    scale: int,
    data: str,
    split_file: str,
    subset: str = "test",
    limit: int = 0,
    out_dir: str = "results",
    write_cards: bool = False,
) -> list[dict[str, Any]]:
    """Score SR models at ``scale`` on the ``subset`` images of the split.

    Degradation: antialiased bicubic downsampling x``scale`` of each whole
    image; metrics on [0, 1] data (data range 1) with a border crop of
    ``scale`` px. Returns one row per model (bicubic and lanczos included)
    and writes ``sr_x{scale}_{subset}.csv`` and ``.md`` into ``out_dir``.
    """
    base = [f"bicubic_x{scale}", f"lanczos_x{scale}"]
    names = base + [n for n in names if n not in base]
    for n in names:
        if get_spec(n).scale != scale or get_spec(n).task != "sr":
            raise ValueError(f"{n} is not an x{scale} SR model")
    split = load_or_make_split(data, split_file)
    ids = split[subset][:limit] if limit else split[subset]
    images = load_images(data, ids)

    per: dict[str, dict[str, list[float]]] = {n: {"psnr": [], "ssim": [], "seconds": []} for n in names}
    for im in tqdm(images, desc=f"eval x{scale} ({subset})"):
        hr = crop_to_multiple(im.pixels, scale)
        lr = bicubic_down(hr, scale)
        for n in names:
            t = time.perf_counter()
            sr = enhance(lr, n)
            per[n]["seconds"].append(time.perf_counter() - t)
            per[n]["psnr"].append(metrics.psnr(sr, hr, 1.0, crop=scale))
            per[n]["ssim"].append(metrics.ssim(sr, hr, 1.0, crop=scale))

    rows = []
    mean = {n: {k: float(np.mean(v)) for k, v in per[n].items()} for n in names}
    for n in names:
        m = mean[n]
        row = {
            "model": n,
            "params": param_count(n),
            "psnr": round(m["psnr"], 3),
            "ssim": round(m["ssim"], 4),
            "gain_vs_bicubic_db": round(m["psnr"] - mean[base[0]]["psnr"], 3),
            "gain_vs_lanczos_db": round(m["psnr"] - mean[base[1]]["psnr"], 3),
            "ssim_vs_bicubic": round(m["ssim"] - mean[base[0]]["ssim"], 4),
            "median_seconds_per_image": round(float(np.median(per[n]["seconds"])), 4),
            "images": len(images),
            "patients": len({p for p in split["patients"][subset]}) if not limit else None,
            "data_range": 1.0,
            "border_crop": scale,
        }
        for w in metrics.sanity_warnings({"psnr": m["psnr"], "ssim": m["ssim"]}):
            print(f"WARNING {n}: {w}")
        rows.append(row)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"sr_x{scale}_{subset}"
    with open(f"{stem}.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    md = to_markdown(rows, f"x{scale} SR on {len(images)} {subset} images ({data}), {dt.date.today().isoformat()}")
    Path(f"{stem}.md").write_text(md)
    print(md)

    if write_cards:
        for r in rows:
            spec = get_spec(r["model"])
            if spec.kind == "network":
                update_metadata(weights_path(spec), {subset: {
                    k: r[k] for k in ("psnr", "ssim", "gain_vs_bicubic_db", "gain_vs_lanczos_db", "ssim_vs_bicubic",
                                      "images", "patients", "data_range", "border_crop")
                } | {"bicubic_psnr": mean[base[0]]["psnr"], "bicubic_ssim": mean[base[0]]["ssim"],
                     "command": f"python -m train eval --models {','.join(names[2:])} --scale {scale} --write-cards"}})
    return rows


def to_markdown(rows: list[dict[str, Any]], title: str) -> str:
    """A GitHub markdown table of evaluation rows."""
    cols = ["model", "params", "psnr", "ssim", "gain_vs_bicubic_db", "gain_vs_lanczos_db", "ssim_vs_bicubic", "median_seconds_per_image"]
    head = ["model", "params", "PSNR (dB)", "SSIM", "Δ vs bicubic (dB)", "Δ vs lanczos (dB)", "ΔSSIM vs bicubic", "s / image"]
    lines = [f"**{title}** — data range 1.0, border crop = scale", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"
