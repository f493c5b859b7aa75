"""The ``/compare`` endpoint: read the upload, run the comparison, write the report and the ZIP."""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
import pandas as pd

from models.device import default_device
from models.io.export import save_png
from studio import handlers
from studio.compare import heatmap
from studio.compare.imported import read_imported, upload_paths
from studio.compare.options import DEFAULT_MODE, _seed, check_degradation, default_degradation, parse_mode, parse_models
from studio.compare.run import Run, logger, remember, run_comparison
from studio.compare.views import error_gallery, error_map_image, gallery
from models.csvsafe import safe_frame


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_").lower() or "image"


def _compare_dir(ttl_s: int) -> Path:
    """Per-process dir of comparison ZIPs (under the studio's results dir); older than ``ttl_s`` pruned."""
    d = handlers.results_dir(ttl_s) / "compare"
    d.mkdir(exist_ok=True)
    cutoff = time.time() - ttl_s
    for p in d.iterdir():
        try:
            if p.stat().st_mtime < cutoff:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        except OSError:  # another worker removed it first
            pass
    return d


def write_zip(run: Run, out_dir: Path, bits: int, report: str) -> Path:
    """One ZIP: ``results/*.png`` (``bits`` per grayscale sample), ``error_maps/*.png``, ``metrics.csv``, ``README.md``.

    File names are generated from the model names, never from the upload's name.
    """
    path = out_dir / f"medenhance_compare_{run.run_id}.zip"
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp, zipfile.ZipFile(path, "w") as zf:
        for i, (label, img) in enumerate(run.views().items()):
            name = f"{i:02d}_{_slug(label)}.png"
            save_png(img, Path(tmp) / name, bits=bits if img.ndim == 2 else 8)
            zf.write(Path(tmp) / name, f"results/{name}", compress_type=zipfile.ZIP_STORED)  # PNG is compressed
        for i, (label, err) in enumerate(run.errors.items()):
            name = f"{i:02d}_{_slug(label)}_abs_error.png"
            error_map_image(err, run.error_vmax).save(Path(tmp) / name, format="PNG")
            zf.write(Path(tmp) / name, f"error_maps/{name}", compress_type=zipfile.ZIP_STORED)
        # Model labels are text a spreadsheet could run as a formula: the one CSV rule (models.csvsafe).
        zf.writestr("metrics.csv", safe_frame(run.table()).to_csv(index=False), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("README.md", report + "\n", compress_type=zipfile.ZIP_DEFLATED)
    return path


def _size(img: np.ndarray) -> str:
    return f"{img.shape[1]} × {img.shape[0]} px {'colour' if img.ndim == 3 else 'grayscale'}"


def report_markdown(run: Run, source: str = "") -> str:
    """What was compared with what, how the numbers were made, and the warnings, as markdown."""
    parts = []
    if run.mode == "simulate":
        parts.append(f"### Simulate\nClean original: {_size(run.reference)}{source}. Degraded with **{run.degradation}** "
                     f"(`train.degrade`, seed {run.seed}) into the model input: {_size(run.input)}. Every model ran "
                     "on the degraded image; scores compare each result with the clean original.")
    elif run.mode == "reference":
        parts.append(f"### Reference\nInput: {_size(run.input)}{source}; ground truth: {_size(run.reference)}.")
    else:
        parts.append(f"### No reference\nInput: {_size(run.input)}{source}.")
    if run.input_note:
        parts.append(f"**Model input**: {run.input_note} (`models.noise`).")
    parts += [f"⚠️ {w}" for w in run.noise_warnings]
    if run.reference is not None:
        de = ", mean CIEDE2000 ΔE (lower is better)" if run.colour else ""
        parts.append(f"**Scores**: `train.metrics`, the functions training and evaluation use: PSNR and SNR in dB, "
                     f"SSIM (Gaussian window σ 1.5), MSE{de}, on display values in [0, 1]: **data range 1.0**, "
                     f"**border crop {run.crop} px**" + (" (= scale: the border cannot be reconstructed)"
                                                         if run.crop else "") +
                     ". Higher PSNR/SSIM/SNR and lower MSE are better. The error maps show |result − reference| "
                     f"(mean over colour channels) on one shared colour scale, 0 … {heatmap.format_value(run.error_vmax)} "
                     "(99.5th percentile of all maps; brighter = larger error).")
        base = run.scores.get(run.baseline, {}).get("psnr")
        ranked = sorted((s["psnr"], n) for n, s in run.scores.items() if n != run.baseline and "psnr" in s)
        if ranked and base is not None and math.isfinite(ranked[-1][0]) and math.isfinite(base):
            best, name = ranked[-1]
            parts.append(f"Highest PSNR: **{name}**, {best:.2f} dB ({best - base:+.2f} dB vs the baseline).")
    else:
        parts.append("**These numbers are not quality scores.** Without a reference nothing says which result is "
                     "closer to the truth. The table shows no-reference indicators: estimated noise σ "
                     "(`models.noise`: diagonal Haar detail, median block energy, [0, 1] units), sharpness (variance of the Laplacian; "
                     "noise and ringing raise it too) and RMS contrast (standard deviation of the luma). Use "
                     "*Simulate* or *Reference* mode for PSNR/SSIM.")
    parts.append("**Time**: seconds per image is one `enhance()` call on this server (networks on "
                 f"{_device_text()}), after a warm-up run of each network, so weight loading is not counted.")
    skipped = [f"{n} ({note})" for n, note in run.notes.items() if n not in run.outputs]
    if skipped:
        parts.append("**Not run**: " + "; ".join(skipped) + ".")
    if run.warnings:
        parts.append("**Metric sanity warnings**:\n" + "\n".join(f"- ⚠️ {w}" for w in run.warnings))
    return "\n\n".join(parts)


def _device_text() -> str:
    dev = str(default_device())
    return "GPU" if dev.startswith("cuda") else dev.upper()


def compare_file(
    file: Any,
    frame: Any = 0,
    window: Any = handlers.DEFAULT_WINDOW,
    models: Any = None,
    mode: Any = DEFAULT_MODE,
    reference: Any = None,
    degradation: Any = None,
    seed: Any = 0,
    results: Any = None,
    *,
    progress: Callable[[float, str], Any] | None = None,
    preview_max_side: int = 1024,
    result_ttl_s: int = 3600,
) -> tuple[list, list, pd.DataFrame, str, str, str]:
    """The ``/compare`` endpoint: read an image, run several models, compare them.

    Args:
        file: path of the uploaded image (DICOM, PNG, JPEG, TIFF; 8 or 16 bit).
        frame, window: as for ``/enhance`` (window: ``default``, ``auto``, ``full``, a preset, ``C,W``).
        models: registry names of one output scale (list, or comma-separated string).
        mode: ``"simulate"``, ``"reference"`` or ``"none"`` (see :data:`MODES`).
        reference: reference mode: the ground-truth file, input size × scale (read with frame 0 and ``window``).
        degradation: simulate mode: a key of :data:`DEGRADATIONS` matching the models' scale;
            empty = the default for that scale (downsample for SR, Gaussian noise at x1).
        seed: simulate mode: noise seed (same seed, same degraded input).
        results: results of this input made by another tool (files at the output size; labels from
            their names, :mod:`studio.compare.imported`): scored and shown beside the models.
        progress: ``progress(fraction, text)`` callback (the tab passes ``gr.Progress``).
        preview_max_side: long side of the browser previews; the ZIP holds full resolution.
    Returns:
        (results gallery [(PIL, caption)], error-map gallery [(PIL, caption)] (empty without reference),
        table as a DataFrame (rounded; None where not finite), markdown report, ZIP path, run id).
    Raises:
        gr.Error: every bad input (no file, unreadable file, no/unknown models, incompatible
        scales, wrong reference size, ...) and internal errors (logged with a reference).
    """
    mode_ = parse_mode(mode)
    names, scale = parse_models(models)
    deg = check_degradation(degradation or default_degradation(scale), scale) if mode_ == "simulate" else None
    seed_ = _seed(seed)
    if mode_ == "reference" and (reference is None or reference == ""):
        raise gr.Error("Reference mode needs the ground-truth image: upload it as 'Reference'.",
                       title="No reference", print_exception=False)
    path = handlers.uploads._upload_path(file)
    image, meta = handlers.load_image(path, frame, window)
    ref = handlers.load_image(reference, 0, window)[0] if mode_ == "reference" else None
    imported = read_imported(upload_paths(results), window, image.ndim == 3, set(names))

    t0 = time.perf_counter()
    run = run_comparison(image, names, scale, reference=ref, mode=mode_, degradation=deg, seed=seed_,
                         progress=progress, imported=imported)
    with handlers.errors._as_user_errors("writing the comparison", path):
        modality = f", {meta.modality}" if getattr(meta, "modality", "") else ""
        report = report_markdown(run, f" ({str(meta.source_format).upper()}{modality})")
        bits = 16 if not meta.is_colour and (meta.bits_stored or 8) > 8 else 8
        zip_path = write_zip(run, _compare_dir(result_ttl_s), bits, report)
        # Error maps at most 512 px in the grid so their scale-bar labels stay readable there.
        results, errors = gallery(run, preview_max_side), error_gallery(run, min(preview_max_side, 512))
        table = run.table(display=True)
    remember(run)
    # No file names or patient data in the log: a generated run id, the models and sizes only.
    logger.info("compare %s: mode=%s scale=%d models=%s input=%dx%d in %.2f s", run.run_id, mode_, scale,
                ",".join(names), run.input.shape[1], run.input.shape[0], time.perf_counter() - t0)
    return results, errors, table, report, str(zip_path), run.run_id
