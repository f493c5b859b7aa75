"""Running a model on an upload: the Enhance tab's ``/enhance`` endpoint and the Python call behind it.

The model runs in :func:`run_model`, the one function Hugging Face ZeroGPU
wraps with ``spaces.GPU`` when the ``spaces`` package is importable.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from models import enhance, get_spec, model_card
from models.errors import ExportError
from models.io.dicom_export import ExportOptions, export_derived_dicom
from models.io.export import save_png
from studio.handlers.errors import _as_user_errors, logger
from studio.handlers.measure import input_report, report_markdown
from studio.handlers.options import DEFAULT_WINDOW, _check_model, parse_ensemble, parse_noise_level, parse_strength
from studio.handlers.results import preview_file, preview_files, result_bits, results_dir
from studio.handlers.uploads import _DEID_KEY, _upload_path, load_image, prepare_upload
from studio.ui import render

# Model wall time a ZeroGPU call may hold the GPU for (x4 networks on big radiographs take tens of seconds).
GPU_DURATION_S = int(os.environ.get("MEDENHANCE_GPU_DURATION", "120") or 120)


def _spaces() -> Any:
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return None
    return spaces


def _zero_gpu(duration: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``spaces.GPU(duration=...)`` on Hugging Face Spaces (ZeroGPU), else the identity.

    ``spaces.GPU`` has no effect outside ZeroGPU hardware, so having the
    package installed elsewhere is harmless; ``models`` never imports it.
    """
    spaces = _spaces()
    return (lambda fn: fn) if spaces is None else spaces.GPU(duration=duration)


# On ZeroGPU run_model runs in another process: a progress callback would have to be pickled.
_CALLBACKS_REACH_THE_MODEL = _spaces() is None


@_zero_gpu(GPU_DURATION_S)
def run_model(image: np.ndarray, name: str, strength: float = 1.0, ensemble: bool = False,
              progress: Callable[[int, int], None] | None = None, noise_level: float | None = None) -> np.ndarray:
    """Run model ``name`` on ``image`` (float32 [0, 1], (H, W[, 3])): the studio's only model call.

    ``strength`` in [0, 1] blends the output with the input; ``ensemble`` averages the
    8 rotations/flips (see :func:`models.enhance`); ``noise_level`` (sigma in [0, 1] units, None =
    estimated) is told to a noise-aware model or an ``auto_*`` entry; ``progress(done, total)`` is called per
    tile and may raise to stop the run (:class:`studio.handlers.progress.TileProgress`).
    On ZeroGPU this runs in a GPU worker process: arguments and result are
    plain arrays, strings and floats so they pickle cheaply (the callers pass no ``progress`` there).
    """
    return enhance(image, name, strength=strength, ensemble=ensemble, progress=progress, noise_level=noise_level)


# --- the handlers ---------------------------------------------------------------------------


@dataclass
class EnhanceResult:
    """Everything one enhance request produces (the ``/enhance`` endpoint returns the first three).

    Attributes:
        pair: (before, after) 8-bit PIL previews of equal size.
        markdown: timing, image metadata, de-identification notes and model card.
        png_path: full-resolution result PNG.
        dicom_path: derived, de-identified DICOM of the result (DICOM uploads only), else None.
        after_is_png: the PNG holds exactly the *after* preview's pixels (8-bit, not downsampled).
    """

    pair: tuple[Image.Image, Image.Image]
    markdown: str
    png_path: str
    dicom_path: str | None = None
    after_is_png: bool = False

    def slider_files(self, ttl_s: int = 3600) -> tuple[str, str]:
        """(before, after) PNG paths for ``gr.ImageSlider`` (see :func:`preview_files`).

        When the result PNG already holds the *after* pixels it is served as is,
        which saves encoding the same image twice on the click's path.
        """
        if not self.after_is_png:
            return preview_files(self.pair, ttl_s)
        return preview_file(self.pair[0], ttl_s), self.png_path  # type: ignore[return-value]


def enhance_file(
    file: Any,
    task: str | None,
    model: str | None,
    frame: Any = 0,
    window: Any = DEFAULT_WINDOW,
    strength: Any = 1.0,
    ensemble: Any = False,
    noise_level: Any = None,
    *,
    preview_max_side: int = 2048,
    result_ttl_s: int = 3600,
) -> tuple[tuple[Image.Image, Image.Image], str, str]:
    """The ``/enhance`` endpoint: read an uploaded image, run a model, return before/after and a PNG.

    Same as :func:`enhance_upload` without the DICOM download (API compatibility).

    Args:
        file: path of the uploaded file (DICOM, PNG, JPEG, TIFF; 8 or 16 bit).
        task: a key of :data:`TASKS` (e.g. ``"Super-resolution x2"``); empty = the model's own task.
        model: a registry name (e.g. ``"bicubic_x2"``) that fits ``task``.
        frame: frame index for multi-frame DICOM (0-based).
        window: see :func:`parse_window`.
        strength: 0-1, see :func:`parse_strength` (1 = the model's output; optional for old clients).
        ensemble: average the model over the 8 rotations/flips of the input (8x the time, a
            slightly lower error; see :func:`parse_ensemble`; optional for old clients).
        noise_level: the noise sigma in [0, 1] units told to a noise-aware model or an ``auto_*`` entry
            instead of the estimate (empty = estimated; :func:`parse_noise_level`; optional).
        preview_max_side: long side of the browser preview; the PNG is full size.
    Returns:
        ((before, after) 8-bit PIL images of equal size for ``gr.ImageSlider``,
        markdown with timing, image metadata and model card,
        path of the result PNG: 16-bit grayscale when the input had > 8 bits stored, else 8-bit).
    Raises:
        gr.Error: for every bad input and internal error.
    """
    r = enhance_upload(file, task, model, frame, window, strength, ensemble, noise_level,
                       preview_max_side=preview_max_side, result_ttl_s=result_ttl_s)
    return r.pair, r.markdown, r.png_path


def enhance_upload(
    file: Any,
    task: str | None,
    model: str | None,
    frame: Any = 0,
    window: Any = DEFAULT_WINDOW,
    strength: Any = 1.0,
    ensemble: Any = False,
    noise_level: Any = None,
    *,
    preview_max_side: int = 2048,
    result_ttl_s: int = 3600,
    progress: Callable[[int, int], None] | None = None,
) -> EnhanceResult:
    """Read an upload (DICOM: its de-identified copy), run a model, write the PNG and, for DICOM, a derived DICOM.

    Arguments as :func:`enhance_file`. The DICOM is written with
    :func:`models.io.dicom_export.export_derived_dicom` from the de-identified
    copy: same (remapped) study, new series, the source referenced, pixels in
    the source's stored units. If only the DICOM export fails, the PNG is
    still returned and the report says why. ``progress(done, total)`` is called per tile (see
    :func:`run_model`); a :class:`studio.handlers.progress.Cancelled` it raises stops the run.

    Raises:
        gr.Error: for every bad input and internal error (``Cancelled`` when stopped).
    """
    name = _check_model(task, model)
    strength = parse_strength(strength)
    ensemble = parse_ensemble(ensemble)
    level = parse_noise_level(noise_level)
    path = _upload_path(file)
    image, meta = load_image(path, frame, window)
    upload = prepare_upload(path, result_ttl_s)
    with _as_user_errors("enhancing the image", path):
        t0 = time.perf_counter()
        if progress is not None and _CALLBACKS_REACH_THE_MODEL:
            out = run_model(image, name, strength, ensemble, progress=progress, noise_level=level)
        else:
            out = run_model(image, name, strength, ensemble, noise_level=level)
        seconds = time.perf_counter() - t0
    with _as_user_errors("saving the result", path):
        bits = result_bits(meta, out)
        # Generated name: never echo the upload's name (it may contain patient identifiers).
        stem = f"medenhance_{name}_{uuid.uuid4().hex[:12]}"
        result_path = results_dir(result_ttl_s) / f"{stem}.png"
        try:
            save_png(out, result_path, bits=bits)
        except OSError:  # disk full / read-only: leave no half-written PNG behind
            result_path.unlink(missing_ok=True)
            raise
        dicom_path, dicom_note = None, ""
        if upload.is_dicom:
            dicom_path, dicom_note = _export_dicom(upload.path, out, meta, name, result_path.with_suffix(".dcm"))
        before, after, note = render.preview_pair(image, out, preview_max_side)
        h, w = out.shape[:2]
        downloads = f"{bits}-bit PNG, full resolution" + (" and a derived DICOM (de-identified)" if dicom_path else "")
        blend = "" if strength == 1.0 else (f" at strength **{strength:g}** (blended with the "
                                             f"{'bicubic-enlarged ' if get_spec(name).scale > 1 else ''}input)")
        how = " with the ×8 self-ensemble (averaged over the 8 rotations and flips)" if ensemble else ""
        if level is not None:
            how += f", told noise σ = {level:g} instead of the estimate"
        result = (f"### Result\n\n**{name}**{how}{blend} ran in **{render.format_duration(seconds)}** "
                  f"on {image.shape[1]} × {image.shape[0]} px → {w} × {h} px. "
                  f"Download: {downloads}.\n\n{note}\n\n{dicom_note}").rstrip()
        # What the input looked like (noise, JPEG, smoothness), what an automatic entry chose, and a warning
        # when the model is far outside its training noise range.
        result += "\n\n" + report_markdown(input_report(image, meta, name))
        image_md = "### Image\n\n" + render.meta_markdown(meta.to_dict())
        if upload.is_dicom:
            image_md += "\n\n" + render.deid_markdown(upload.warnings)
        md = "\n\n".join([result, image_md, render.card_markdown(model_card(name))])
    logger.info("enhanced with %s in %.3f s -> %s (%dx%d, %d-bit%s)", name, seconds, result_path.name, w, h, bits,
                ", +DICOM" if dicom_path else "")
    return EnhanceResult((before, after), md, str(result_path), str(dicom_path) if dicom_path else None,
                         after_is_png=bits == 8 and after.size == (w, h))


def _export_dicom(source: str, out: np.ndarray, meta: Any, name: str, dst: Path) -> tuple[Path | None, str]:
    """Write the derived DICOM; (path, "") on success, (None, a sentence for the report) on an export error."""
    try:
        export_derived_dicom(source, out, meta, name, dst, ExportOptions(deid_key=_DEID_KEY))
    except ExportError as e:
        return None, f"No DICOM download: {e}"
    return dst, ""
