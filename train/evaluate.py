"""Evaluation: score registered models on held-out patients and write a table.

Every model goes through :func:`models.enhance` — the same code path the
studio uses — on whole images of the split's test patients. Baseline rows are
always present: bicubic and lanczos for SR; the degraded input and every
classical method of the task for denoising and enhancement. Absolute-error
maps of the first images are written next to the table so a reader can check
that no output carries structures absent from the input.

User model files (:mod:`models.plugins`) are scored like ours once registered
(:func:`register_user_models`, the CLI's ``--models-dir``); ``write_cards``
keeps their scores in ``NAME.scores.json`` beside the file, tied to its SHA-256,
instead of touching the file.
"""

from __future__ import annotations

import csv
import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from models import enhance, get_spec, list_models
from models.io.export import save_png
from models.loading import load_network, update_metadata, weights_path
from models.plugins import load_user_models, write_scores
from models.user_nets import param_count as _user_params
from models.resample import bicubic_resize_tensor, to_numpy, to_tensor

from . import metrics
from .data import Image, find_images, find_patient_csv, load_images, load_or_make_split, read_patient_map
from .degrade import crop_to_multiple
from .realistic import DENOISE_REAL_EVAL, SR_PG_EVAL, SR_REAL_EVAL
from .signal import SignalImage, load_signal, resize_signal, to_display
from .tasks import DENOISE_EVAL, TASKS, _eval_noise, registry_task

INPUT_ROW = "input (no processing)"
# Rows of a network run with the x8 geometric self-ensemble (models.ensemble) are named "<model>+x8".
ENSEMBLE_SUFFIX = "+x8"


def base_name(row: str) -> str:
    """The registry name behind a table row (``"edsr_x2+x8"`` -> ``"edsr_x2"``)."""
    return row.removesuffix(ENSEMBLE_SUFFIX)


def param_count(name: str) -> int:
    """Trainable parameters of a network (0 for classical baselines and the input row; an ONNX graph's weights)."""
    if name == INPUT_ROW or get_spec(base_name(name)).kind != "network":
        return 0
    return _user_params(load_network(get_spec(base_name(name)), "cpu"))


def register_user_models(folder: str | Path | None = None) -> list[str]:
    """Register the user model files of ``folder`` (default ``MEDENHANCE_MODELS_DIR``, else ``./user-models``).

    Returns the names registered; files that cannot be used are printed (they are not fatal).
    """
    report = load_user_models(folder)
    for p in report.problems:
        print(f"note: user model {p.file} not registered: {p.message}")
    return report.loaded


def external_split(data: str | Path) -> dict[str, Any]:
    """Every image under ``data`` as the ``external`` subset, grouped by patient when a
    ``data.csv`` is found (else one patient per image)."""
    files = find_images(data)
    csv_path = find_patient_csv(data)
    patients = read_patient_map(csv_path) if csv_path else {}
    return {"external": [p.stem for p in files],
            "patients": {"external": sorted({patients.get(p.stem, p.stem) for p in files})}}


def fit_side(im: Image, max_side: int) -> Image:
    """``im`` downscaled (antialiased bicubic, aspect kept) so its longer side is at most
    ``max_side`` px; unchanged when ``max_side`` is 0 or the image is small enough."""
    h, w = im.pixels.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return im
    f = max_side / max(h, w)
    size = (max(1, round(h * f)), max(1, round(w * f)))
    with torch.no_grad():
        small = bicubic_resize_tensor(to_tensor(im.pixels), size).clamp(0, 1)
    return Image(im.id, to_numpy(small, im.pixels.ndim == 3))


def _options(name: str, task: str, noise: str, inp: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    """Give non-local means the true noise sigma (its best case), as the issue asks.

    Poisson-Gaussian noise (``denoise_real``) has no single sigma: NLM gets the
    measured standard deviation of this image's noise, ``std(input - target)``.
    """
    if name == "nlm" and task == "denoise" and noise in ("gaussian", "rician"):
        return {"sigma": DENOISE_EVAL[noise][1]["sigma"]}
    if name == "nlm" and task == "denoise_real":
        return {"sigma": float(np.std(inp.astype(np.float64) - target))}
    return {}


def load_signal_images(data: str | Path, ids: list[str], max_side: int = 0) -> list[SignalImage]:
    """The images with those ids (file stems) under ``data`` as signal images (DICOM raw values kept,
    PNGs as ``s = 1 - x``), downscaled in the signal domain to a longer side <= ``max_side`` (0 = never)."""
    wanted = set(ids)
    out = [resize_signal(load_signal(p), max_side) for p in find_images(data) if p.stem in wanted]
    missing = wanted - {im.id for im in out}
    if missing:
        raise FileNotFoundError(f"{len(missing)} images of the split are missing from {data}, e.g. {sorted(missing)[:3]}")
    return out


def _pair(im: Any, i: int, task: str, scale: int, noise: str) -> tuple[np.ndarray, np.ndarray]:
    """(degraded input, clean target) of image ``i``: display images, or signal images for realistic tasks."""
    if isinstance(im, SignalImage):
        sig = crop_to_multiple(im.signal, scale)
        level = scale if registry_task(task) == "sr" else noise
        return TASKS[task].signal_eval(sig, im.table, level, i), to_display(sig, im.table)
    target = crop_to_multiple(im.pixels, scale)
    if task == "denoise":
        return _eval_noise(target, scale, seed=i, kind=noise), target
    return TASKS[task].eval_degrade(target, scale, i), target


def native_crops(im: Any, side: int) -> list[Any]:
    """Up to four ``side``-px crops of ``im`` (an :class:`Image` or :class:`SignalImage`) at its native
    resolution, centred at 1/3 and 2/3 of its height and width (one centred crop if the image is smaller than
    two crops); ids ``<id>@crop<k>``. What users upload is full resolution: shrinking a radiograph to 640 px
    (``max_side``) makes it sharper per pixel than an upload, and scores there do not hold at native size."""
    arr = im.signal if isinstance(im, SignalImage) else im.pixels
    h, w = arr.shape[:2]
    s = min(side, h, w)
    centres = [(h // 2, w // 2)] if min(h, w) < 2 * s else [(h * i // 3, w * j // 3) for i in (1, 2) for j in (1, 2)]
    out = []
    for k, (cy, cx) in enumerate(centres):
        y, x = min(max(cy - s // 2, 0), h - s), min(max(cx - s // 2, 0), w - s)
        if isinstance(im, SignalImage):
            out.append(SignalImage(f"{im.id}@crop{k}", np.ascontiguousarray(arr[y : y + s, x : x + s]), im.table,
                                   meta=im.meta))
        else:
            out.append(Image(f"{im.id}@crop{k}", np.ascontiguousarray(arr[y : y + s, x : x + s])))
    return out


def _row_names(names: list[str], task: str, scale: int, ensemble: bool = False) -> list[str]:
    """Baseline rows, then ``names``; with ``ensemble`` each network once more as ``<name>+x8``."""
    reg = registry_task(task)  # sr_real models are SR models, etc.
    if reg == "sr":
        base = [f"bicubic_x{scale}", f"lanczos_x{scale}"]
        if task != "sr":  # noisy inputs: the classical denoise-then-upscale pipeline too
            base.append(f"nlm_lanczos_x{scale}")
    else:
        base = [INPUT_ROW] + [s.name for s in list_models(task=reg) if s.kind == "classical"]
    out = base + [n for n in names if n not in base]
    for n in out[1 if reg != "sr" else 0 :]:
        spec = get_spec(n)
        if spec.task != reg or spec.scale != scale:
            raise ValueError(f"{n} is a {spec.task} x{spec.scale} model, not {reg} x{scale}")
    if ensemble:
        out += [n + ENSEMBLE_SUFFIX for n in out if n != INPUT_ROW and get_spec(n).kind == "network"]
    return out


def evaluate(
    names: list[str],
    task: str = "sr",
    scale: int = 2,
    data: str = "../shared/data/hannover-cxr/png",
    split_file: str = "",
    subset: str = "test",
    limit: int = 0,
    out_dir: str = "results",
    write_cards: bool = False,
    noise: str = "gaussian",
    maps: int = 2,
    colour: bool = False,
    max_side: int = 0,
    ensemble: bool = False,
    crop: int = 0,
) -> list[dict[str, Any]]:
    """Score ``names`` (plus baseline rows) on the ``subset`` images of the split.

    ``subset="external"`` scores every image under ``data`` and ignores the
    split: data from another site that no model was trained or selected on.
    ``max_side`` > 0 first downscales (antialiased) images whose longer side
    exceeds it, so full-resolution radiographs match the scale the models were
    trained at (the Hannover PNGs are 640 px). ``ensemble`` adds a row
    ``<model>+x8`` per network: the same weights with the x8 geometric
    self-ensemble (:mod:`models.ensemble`). ``crop`` > 0 (instead of ``max_side``) scores up to four
    native-resolution crops of ``crop`` px per image (:func:`native_crops`): the resolution users upload.

    Degradation: the task's fixed evaluation degradation (:mod:`train.tasks`;
    for denoising the ``noise`` kind), seeded per image. Metrics on [0, 1]
    data (data range 1), border crop ``scale`` px for SR and 0 otherwise.
    Writes ``{task}{_xS|_noise}_{subset}.csv``/``.md`` and error maps into
    ``out_dir``; returns one row per model.
    """
    from .config import DEFAULT_SPLIT

    sr = registry_task(task) == "sr"
    real = TASKS[task].signal_eval is not None  # realistic tasks degrade in the detector-signal domain
    if task == "denoise_real" and noise not in DENOISE_REAL_EVAL:
        raise ValueError(f"denoise_real evaluates at --noise {' or '.join(DENOISE_REAL_EVAL)}, not {noise!r}")
    if real and colour:
        raise ValueError(f"{task} is grayscale (detector signal); --colour does not apply")
    scale = scale if sr else 1
    if crop and max_side:
        raise ValueError("give --crop (native-resolution crops) or --max-side (shrunk images), not both")
    native = crop
    crop = scale if sr else 0
    rows_for = _row_names(names, task, scale, ensemble)
    split = external_split(data) if subset == "external" else load_or_make_split(data, split_file or DEFAULT_SPLIT)
    ids = split[subset][:limit] if limit else split[subset]
    if real:
        images: list[Any] = load_signal_images(data, ids, max_side)
    else:
        images = [fit_side(im, max_side) for im in load_images(data, ids, grayscale=not colour)]
    if native:
        images = [c for im in images for c in native_crops(im, native)]
    tag = {"sr": f"sr_x{scale}", "sr_real": f"sr_real_x{scale}", "sr_pg": f"sr_pg_x{scale}", "denoise": f"denoise_{noise}",
           "denoise_real": f"denoise_real_{noise}", "enhance": "enhance"}[task]
    tag += "_colour" if colour else ""
    tag += f"_native{native}" if native else ""
    out = Path(out_dir)
    (out / "maps").mkdir(parents=True, exist_ok=True)

    per: dict[str, dict[str, list[float]]] = {n: {} for n in rows_for}
    # One step per (image, row): with many rows (x8 ensembles, large images) a bar per image stands still.
    bar = tqdm(total=len(images) * len(rows_for), desc=f"eval {tag} ({subset})", unit="run", dynamic_ncols=True)
    for i, im in enumerate(images):
        inp, target = _pair(im, i, task, scale, noise)
        for n in rows_for:
            bar.set_postfix_str(f"image {i + 1}/{len(images)} {n}", refresh=False)
            t = time.perf_counter()
            res = inp if n == INPUT_ROW else enhance(inp, base_name(n), ensemble=n != base_name(n),
                                                      **_options(n, task, noise, inp, target))
            secs = time.perf_counter() - t
            s = metrics.score(res, target, 1.0, crop, names=("psnr", "ssim", "gmsd") + (("delta_e",) if res.ndim == 3 else ()))
            s["seconds"] = secs
            for k, v in s.items():
                per[n].setdefault(k, []).append(v)
            if i < maps:
                err = metrics.abs_error_map(res, target)
                # Error maps are scaled x5 so a 0.2 error is white: small differences stay visible.
                save_png(np.clip(err * 5, 0, 1), out / "maps" / f"{tag}_{im.id}_{n.replace(' ', '_').replace('(', '').replace(')', '')}.png")
            bar.update()
        if i < maps:
            save_png(inp, out / "maps" / f"{tag}_{im.id}_degraded.png")
            save_png(target, out / "maps" / f"{tag}_{im.id}_target.png")
    bar.close()

    ref_name = rows_for[0]
    mean = {n: {k: float(np.mean(v)) for k, v in per[n].items()} for n in rows_for}
    rows = []
    for n in rows_for:
        m = mean[n]
        row = {
            "model": n,
            "kind": "input" if n == INPUT_ROW else get_spec(base_name(n)).kind,
            "params": param_count(n),
            "psnr": round(m["psnr"], 3),
            "ssim": round(m["ssim"], 4),
            f"gain_vs_{'bicubic' if sr else 'input'}_db": round(m["psnr"] - mean[ref_name]["psnr"], 3),
        }
        if sr:
            row["gain_vs_lanczos_db"] = round(m["psnr"] - mean[rows_for[1]]["psnr"], 3)
            nlm = f"nlm_lanczos_x{scale}"
            if nlm in mean:
                row["gain_vs_nlm_lanczos_db"] = round(m["psnr"] - mean[nlm]["psnr"], 3)
        row["ssim_vs_" + ("bicubic" if sr else "input")] = round(m["ssim"] - mean[ref_name]["ssim"], 4)
        # Perceptual quality next to PSNR (lower is better): how the GAN models are judged.
        row["gmsd"] = round(m["gmsd"], 4)
        if "delta_e" in m:
            row["delta_e"] = round(m["delta_e"], 3)
        row.update({
            "median_seconds_per_image": round(float(np.median(per[n]["seconds"])), 4),
            "images": len(images),
            "patients": len(split["patients"][subset]) if not limit else None,
            "data_range": 1.0,
            "border_crop": crop,
        })
        for w in metrics.sanity_warnings({"psnr": m["psnr"], "ssim": m["ssim"]}):
            print(f"WARNING {n}: {w}")
        rows.append(row)

    with open(out / f"{tag}_{subset}.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    where = (f"{len(images)} images of {len(split['patients'][subset])} patients from other sites ({Path(data).name}), "
             "never used for training or selection" if subset == "external" else
             f"{len(images)} {subset} images of {len(split['patients'][subset])} held-out patients")
    where += f", longer side <= {max_side} px" if max_side else ""
    where += f", native-resolution crops of {native} px (up to 4 per image)" if native else ""
    what = {"sr": f"x{scale} super-resolution (antialiased bicubic degradation)",
            "denoise": f"denoising, {noise} noise {DENOISE_EVAL.get(noise, ('', {}))[1]}",
            "enhance": "enhancement (contrast 0.5, gamma 1.5, brightness -0.05, noise 0.02)",
            "sr_real": f"realistic x{scale} super-resolution (detector PSF {SR_REAL_EVAL['sigma_x']}/"
            f"{SR_REAL_EVAL['sigma_y']} px at {SR_REAL_EVAL['angle']:g} deg, bicubic down, Poisson-Gaussian dose "
            f"{SR_REAL_EVAL['dose']:g} read {SR_REAL_EVAL['read_sigma']} in the signal domain, display window, "
            f"JPEG q{SR_REAL_EVAL['quality']})",
            "sr_pg": f"x{scale} super-resolution of noisy inputs (antialiased bicubic sampling of the detector signal, "
            f"Poisson-Gaussian dose {SR_PG_EVAL['dose']:g} read {SR_PG_EVAL['read_sigma']} at the LR pixels, display "
            "window)",
            "denoise_real": f"denoising, Poisson-Gaussian detector noise {DENOISE_REAL_EVAL.get(noise)} in the signal "
            "domain before the display window (NLM given each image's measured noise sigma)"}[task]
    md = to_markdown(rows, f"{what} on {where}, {dt.date.today().isoformat()}")
    (out / f"{tag}_{subset}.md").write_text(md)
    print(md)

    if write_cards:
        for r in rows:
            # Cards describe the weights as the studio runs them: one pass, so no "+x8" rows.
            if r["kind"] == "network" and r["model"] == base_name(r["model"]):
                entry = {
                    **{k: v for k, v in r.items() if k not in ("model", "kind", "params")},
                    "baseline": {"model": ref_name, "psnr": mean[ref_name]["psnr"], "ssim": mean[ref_name]["ssim"]},
                    "command": f"python -m train eval --task {task} --models {r['model']}"
                    + (f" --scale {scale}" if sr else "") + (f" --noise {noise}" if registry_task(task) == "denoise" else "")
                    + (" --colour" if colour else "")
                    + (f" --subset external --data {data}" if subset == "external" else "")
                    + (f" --max-side {max_side}" if max_side else "") + (f" --crop {native}" if native else ""),
                }
                spec = get_spec(r["model"])
                if spec.source == "user":  # never rewrite a user's file: scores go beside it, tied to its SHA-256
                    write_scores(spec.name, f"{subset}_{tag}", entry)
                else:
                    update_metadata(weights_path(spec), {f"{subset}_{tag}": entry})
    return rows


def to_markdown(rows: list[dict[str, Any]], title: str) -> str:
    """A GitHub markdown table of evaluation rows (all columns but the bookkeeping ones)."""
    cols = [c for c in rows[0] if c not in ("kind", "images", "patients", "data_range", "border_crop")]
    lines = [f"**{title}** — data range 1.0, border crop {rows[0]['border_crop']} px", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"
