"""Event handlers of the studio as plain functions: call them from tests, scripts or Gradio.

The only Gradio object used is :class:`gr.Error`, the documented way to show a
message in the browser (and to return it to an API client) while the server
keeps serving. Every bad input surfaces as ``gr.Error``:

* every ``ValueError`` from :mod:`models` (``ImageReadError``,
  ``InvalidImageError``, ``UnknownModelError``, ``WeightsError``) becomes a
  ``gr.Error`` with the library's message;
* a full disk, a read-only or unwritable result folder (``OSError`` ENOSPC,
  EDQUOT, EROFS, EACCES, EPERM) and running out of memory are resource
  problems, not bugs: a ``gr.Error`` says which ("could not write the result:
  the disk is full");
* anything else is a bug: it is logged with a generated reference (never the
  uploaded file's name or path, which may carry patient identifiers) and the
  user sees "internal error (ref ...)".

DICOM uploads are de-identified before anything else happens to them
(:func:`prepare_upload`): the studio reads, previews, shows the header of and
exports from a de-identified copy in its private temp dir, never from the
upload itself (which is Gradio's temp file). UIDs and pseudonyms come from a
keyed hash with one key per server process (``MEDENHANCE_DEID_KEY`` to keep
them stable across restarts).

The model runs in :func:`run_model`, the one function Hugging Face ZeroGPU
wraps with ``spaces.GPU`` when the ``spaces`` package is importable.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr
import numpy as np
import pydicom
import torch
from PIL import Image

import models
from models import deid, enhance, get_spec, list_models, model_card, read_image
from models.dicom import is_codec_panic
from models.dicom_export import ExportOptions, export_derived_dicom
from models.errors import ExportError
from models.export import save_pil_png, save_png
from models.io import WINDOW_PRESETS, display_name, printable

from . import render

logger = logging.getLogger("medenhance.studio")
# Pillow logs every TIFF tag's value at DEBUG (ImageDescription, DocumentName, Artist... may name the
# patient): a server running at DEBUG must not copy them into its log.
logging.getLogger("PIL").setLevel(max(logging.getLogger("PIL").level, logging.INFO))

# UI label -> (registry task, scale or None for "any").
TASKS: dict[str, tuple[str, int | None]] = {
    "Super-resolution x2": ("sr", 2),
    "Super-resolution x4": ("sr", 4),
    "Denoise": ("denoise", None),
    "Enhance": ("enhance", None),
}
DEFAULT_TASK = "Super-resolution x2"

# Window dropdown value meaning "the file's own window (DICOM VOI), else automatic".
DEFAULT_WINDOW = "default"

_RESULTS_DIR: Path | None = None

# One de-identification key per server process: the same upload (or two files
# of one study) maps to the same UIDs and pseudonym while the server runs.
# Set MEDENHANCE_DEID_KEY to keep them stable across restarts; never logged.
_DEID_KEY = os.environ.get("MEDENHANCE_DEID_KEY", "").strip() or deid.new_key()

# Model wall time a ZeroGPU call may hold the GPU for (x4 networks on big radiographs take tens of seconds).
GPU_DURATION_S = int(os.environ.get("MEDENHANCE_GPU_DURATION", "120") or 120)


def _zero_gpu(duration: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``spaces.GPU(duration=...)`` on Hugging Face Spaces (ZeroGPU), else the identity.

    ``spaces.GPU`` has no effect outside ZeroGPU hardware, so having the
    package installed elsewhere is harmless; ``models`` never imports it.
    """
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


@_zero_gpu(GPU_DURATION_S)
def run_model(image: np.ndarray, name: str, strength: float = 1.0, ensemble: bool = False) -> np.ndarray:
    """Run model ``name`` on ``image`` (float32 [0, 1], (H, W[, 3])): the studio's only model call.

    ``strength`` in [0, 1] blends the output with the input; ``ensemble`` averages the
    8 rotations/flips (see :func:`models.enhance`).
    On ZeroGPU this runs in a GPU worker process: arguments and result are
    plain arrays, strings and floats so they pickle cheaply.
    """
    return enhance(image, name, strength=strength, ensemble=ensemble)


# --- choices for the UI ---------------------------------------------------------------

def window_choices() -> list[tuple[str, str]]:
    """(label, value) pairs of the window dropdown; values are what :func:`parse_window` takes."""
    presets = [(f"{name.capitalize()} (C {c:g} / W {w:g})", name) for name, (c, w) in WINDOW_PRESETS.items()]
    return [
        ("File's window, else auto", DEFAULT_WINDOW),
        ("Auto (from the pixel values)", "auto"),
        ("Full range (min…max)", "full"),
        *presets,
    ]


def parse_strength(strength: Any) -> float:
    """Slider/API value -> a strength in [0, 1] (``None``/``""`` -> 1, the model's output).

    Raises:
        gr.Error: not a number, or outside [0, 1].
    """
    if strength is None or strength == "":
        return 1.0
    try:
        value = float(strength)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise gr.Error(f"Strength must be a number from 0 (the input) to 1 (the model's output), got "
                       f"{printable(str(strength))[:40]!r}.", title="Bad strength", print_exception=False)
    return value


def parse_ensemble(ensemble: Any) -> bool:
    """Checkbox/API value -> whether to run the x8 self-ensemble (``None``/``""`` -> off).

    Raises:
        gr.Error: anything but a boolean (or "true"/"false", as some clients send form values).
    """
    if ensemble is None or ensemble == "":
        return False
    if isinstance(ensemble, (bool, np.bool_)):
        return bool(ensemble)
    if isinstance(ensemble, str) and ensemble.strip().lower() in ("true", "false"):
        return ensemble.strip().lower() == "true"
    raise gr.Error(f"Self-ensemble must be true or false, got {printable(str(ensemble))[:40]!r}.",
                   title="Bad self-ensemble choice", print_exception=False)


def parse_window(window: Any) -> None | str | tuple[float, float]:
    """Dropdown/API value -> ``read_image``'s ``window`` argument.

    ``None``/``""``/``"default"`` -> None (file's own window, else auto);
    ``"auto"``, ``"full"`` and preset names pass through; ``"C,W"`` or ``"C/W"``
    (e.g. ``"40,400"``) -> ``(center, width)`` in stored/modality units (HU for CT).

    Raises:
        gr.Error: anything else, listing what is accepted.
    """
    if window is None:
        return None
    text = str(window).strip().lower()
    if text in ("", DEFAULT_WINDOW, "none", "file"):
        return None
    if text in ("auto", "full") or text in WINDOW_PRESETS:
        return text
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d*)?)\s*[,/ ]\s*(\d+(?:\.\d*)?)\s*", text)
    if m:
        center, width = float(m.group(1)), float(m.group(2))
        if width > 0:
            return (center, width)
    names = ", ".join([DEFAULT_WINDOW, "auto", "full", *WINDOW_PRESETS])
    raise gr.Error(f"Unknown window {window!r}: use one of {names}, or 'center,width' such as '40,400'.",
                   title="Bad window", print_exception=False)


def _weights_ready(name: str) -> bool:
    card = model_card(name)
    return card["kind"] == "classical" or bool(card.get("weights_present"))


def model_choices(task_label: str) -> list[tuple[str, str]]:
    """(label, model name) pairs for a task label: networks first, then classical baselines.

    Networks whose weights are not trained yet stay listed (so users see what is
    coming) but say so; choosing one gives a clear error.
    """
    task, scale = _task(task_label)
    specs = list_models(task=task, scale=scale)
    out = []
    for s in sorted(specs, key=lambda s: s.kind != "network"):  # stable: registry order within a kind
        if s.kind == "network":
            label = f"{s.name} (network)" if _weights_ready(s.name) else f"{s.name} (network, weights missing)"
        else:
            label = f"{s.name} (classical)"
        out.append((label, s.name))
    return out


def default_model(task_label: str) -> str | None:
    """The model preselected for a task: the first network with weights, else the first classical."""
    names = [name for _, name in model_choices(task_label)]
    for name in names:
        if _weights_ready(name):
            return name
    return names[0] if names else None


def about_models() -> str:
    """Markdown of every registered model's card (the "About models" tab); re-read on each page load."""
    return render.models_overview_markdown([model_card(s.name) for s in list_models()])


# --- input checking ------------------------------------------------------------------------

def _task(task_label: str) -> tuple[str, int | None]:
    try:
        return TASKS[task_label]
    except (KeyError, TypeError):
        raise gr.Error(f"Unknown task {task_label!r}: choose one of {', '.join(TASKS)}.",
                       title="Bad task", print_exception=False) from None


def _check_model(task_label: str | None, model: str | None) -> str:
    """The model name, checked against the task (an API client may send any pair)."""
    if not model:
        raise gr.Error("Choose a model.", title="No model", print_exception=False)
    try:
        spec = get_spec(str(model))
    except ValueError as e:
        raise gr.Error(str(e), title="Unknown model", print_exception=False) from None
    if task_label:  # empty task: trust the model's own task (convenient for API clients)
        task, scale = _task(task_label)
        if spec.task != task or (scale is not None and spec.scale != scale):
            fits = ", ".join(name for _, name in model_choices(task_label))
            raise gr.Error(f"Model {spec.name!r} does not do '{task_label}'; models for it: {fits}.",
                           title="Model does not fit the task", print_exception=False)
    return spec.name


def _upload_path(file: Any) -> str:
    """The local path of an uploaded file (str, Path, gradio FileData dict or tempfile wrapper)."""
    if file is None or file == "":
        raise gr.Error("No file uploaded: choose a DICOM (.dcm or no extension), PNG, JPEG or TIFF image.",
                       title="No file", print_exception=False)
    if isinstance(file, dict):
        file = file.get("path") or file.get("name")
    path = getattr(file, "name", file) if not isinstance(file, (str, os.PathLike)) else file
    path = os.fspath(path) if path is not None else ""
    if not path or not os.path.isfile(path):
        raise gr.Error("The uploaded file is no longer available; please upload it again.",
                       title="No file", print_exception=False)
    return path


def _frame(frame: Any) -> int:
    if frame is None or frame == "":
        return 0
    try:
        f = float(frame)
    except (TypeError, ValueError):
        raise gr.Error(f"Frame must be a whole number, got {frame!r}.", title="Bad frame", print_exception=False) from None
    if not f.is_integer() or f < 0:
        raise gr.Error(f"Frame must be a whole number >= 0, got {frame!r}.", title="Bad frame", print_exception=False)
    return int(f)


# Server install location, removed from messages shown to users (e.g. weights file paths).
_INSTALL_DIR = str(Path(models.__file__).resolve().parent.parent) + os.sep


def _scrub(text: str, path: str | None) -> str:
    """Remove the upload's path and file name (possibly a patient's name) and server paths from a message.

    Also in the escaped / shortened forms the reader's messages use (``models.io.display_name``).
    """
    text = text.replace(_INSTALL_DIR, "")
    if path:
        base = os.path.basename(path)
        forms = {path, base, str(Path(path).parent), printable(path), printable(base), display_name(path)}
        for s in sorted(forms, key=len, reverse=True):
            if len(s) > 3:
                text = text.replace(s, "the uploaded file")
    return text


# Write failures that are the server's resources, not a bug: errno -> what to tell the user
# (only in the stages that write files; elsewhere an OSError is a bug).
_WRITE_STAGES = ("saving the result", "de-identifying the DICOM header")
_WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the result folder is on a read-only file system",
    errno.EACCES: "the result folder is not writable",
    errno.EPERM: "the result folder is not writable",
}


@contextmanager
def _as_user_errors(stage: str, path: str | None = None) -> Iterator[None]:
    """Map library errors to ``gr.Error``; log and hide everything unexpected."""
    try:
        yield
    except gr.Error:
        raise
    except OSError as e:
        reason = _WRITE_ERRORS.get(e.errno) if stage in _WRITE_STAGES else None
        if reason is None:
            _internal_error(e, stage, path)
        logger.error("could not write while %s: %s (errno %s)", stage, reason, errno.errorcode.get(e.errno, e.errno))
        what = "the result" if stage == "saving the result" else f"a working file (while {stage})"
        raise gr.Error(f"Could not write {what}: {reason}. Nothing was saved; the server keeps running — "
                       "please tell its operator.", title="Cannot save", print_exception=False) from None
    except (MemoryError, torch.OutOfMemoryError):
        logger.error("out of memory while %s", stage)
        raise gr.Error(f"The server ran out of memory while {stage}. Try a smaller image, a smaller frame "
                       "or another model.", title="Out of memory", print_exception=False) from None
    except ValueError as e:  # every documented MedEnhanceError is a ValueError
        title = {"ImageReadError": "Cannot read this file", "InvalidImageError": "Unsupported image",
                 "UnknownModelError": "Unknown model", "WeightsError": "Model not available",
                 "InvalidOptionError": "Bad option",
                 "DeidentificationError": "Cannot de-identify this file",
                 "ExportError": "Cannot export"}.get(type(e).__name__, "Bad input")
        raise gr.Error(_scrub(str(e), path) or title, title=title, print_exception=False) from None
    except Exception as e:  # a bug: keep serving, keep the log free of identifiers
        _internal_error(e, stage, path)
    except BaseException as e:  # a Rust codec's panic is a BaseException: still one failed request, not a dead worker
        if not is_codec_panic(e):
            raise
        _internal_error(e, stage, path)


def _internal_error(e: BaseException, stage: str, path: str | None) -> None:
    """Log an unexpected exception under a generated reference and raise the user's ``gr.Error``."""
    ref = uuid.uuid4().hex[:8]
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    logger.error("internal error ref=%s during %s:\n%s", ref, stage, _scrub(tb, path))
    raise gr.Error(f"Internal error while {stage} (reference {ref}); it has been logged. "
                   "Try again, or another model or file.", title="Internal error", print_exception=False) from None


# --- de-identified uploads ------------------------------------------------------------------

@dataclass
class Upload:
    """An upload as the studio uses it.

    Attributes:
        path: what to read: the de-identified copy for DICOM, else the upload itself.
        is_dicom: whether the upload was DICOM (and ``path`` is our de-identified copy).
        header: (keyword, value) rows of the de-identified header (DICOM only).
        warnings: de-identification warnings (burned-in text).
    """

    path: str
    is_dicom: bool = False
    header: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


_UPLOADS: "OrderedDict[tuple[str, int, int], Upload]" = OrderedDict()
_UPLOADS_MAX = 32
_uploads_lock = threading.Lock()


def _looks_like_dicom(path: str) -> bool:
    """'DICM' at byte 128, or a headerless dataset start that Pillow does not claim."""
    from models.io import _looks_like_headerless_dicom

    with open(path, "rb") as fh:
        head = fh.read(132)
    if head[128:132] == b"DICM":
        return True
    if not _looks_like_headerless_dicom(head):
        return False
    try:
        with Image.open(path):
            return False
    except Exception:  # not an image Pillow knows: treat as headerless DICOM
        return True


def prepare_upload(file: Any, ttl_s: int = 3600) -> Upload:
    """De-identify a DICOM upload into our temp dir (once per upload; cached), before anything else uses it.

    Non-DICOM uploads are returned as they are (PNG/JPEG/TIFF have no header to clean).

    Raises:
        gr.Error: no file, unreadable DICOM, or a header that cannot be de-identified
            (then the file is refused rather than used with identifiers).
    """
    path = _upload_path(file)
    try:
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    except OSError:
        raise gr.Error("The uploaded file is no longer available; please upload it again.",
                       title="No file", print_exception=False) from None
    with _uploads_lock:
        cached = _UPLOADS.get(key)
        if cached is not None and os.path.isfile(cached.path):
            _UPLOADS.move_to_end(key)
            return cached
    with _as_user_errors("checking the file type", path):
        dicom = _looks_like_dicom(path)
    if not dicom:
        upload = Upload(path=path)
    else:
        with _as_user_errors("de-identifying the DICOM header", path):
            # Generated name: the upload's own name may contain the patient's name.
            copy = results_dir(ttl_s) / f"upload_{uuid.uuid4().hex[:12]}.dcm"
            result = deid.deidentify_file(path, copy, _DEID_KEY)
            header = deid.header_rows(pydicom.dcmread(copy, stop_before_pixels=True, force=True))
        upload = Upload(path=str(copy), is_dicom=True, header=header, warnings=list(result.warnings))
    with _uploads_lock:
        _UPLOADS[key] = upload
        while len(_UPLOADS) > _UPLOADS_MAX:
            _UPLOADS.popitem(last=False)
    return upload


def header_panel(file: Any) -> str:
    """Markdown of the de-identified DICOM header of an upload (the Enhance tab's header panel).

    Returns ``""`` for no file and a one-line note for non-DICOM uploads.
    """
    if file is None:
        return ""
    upload = prepare_upload(file)
    if not upload.is_dicom:
        return "No DICOM header: this upload is a plain image file."
    return render.header_markdown(upload.header, upload.warnings)


# --- the handlers ---------------------------------------------------------------------------

def load_image(file: Any, frame: Any = 0, window: Any = DEFAULT_WINDOW) -> tuple[np.ndarray, Any]:
    """Read an upload like :func:`models.read_image`, with errors as ``gr.Error``.

    DICOM uploads are read from their de-identified copy (:func:`prepare_upload`).

    Returns:
        (image float32 [0, 1] of shape (H, W) or (H, W, 3), ImageMeta).
    """
    frame_i, win = _frame(frame), parse_window(window)
    upload = prepare_upload(file)
    with _as_user_errors("reading the image", _upload_path(file)):
        return read_image(upload.path, frame=frame_i, window=win)


def inspect_upload(file: Any, frame: Any = 0, window: Any = DEFAULT_WINDOW) -> tuple[Image.Image | None, str, int]:
    """Preview of an upload before enhancing it (on upload, frame or window change).

    Returns:
        (8-bit PIL preview or None, metadata markdown, frame count). An empty
        upload (the user cleared it) gives ``(None, "", 1)`` instead of an error.
    """
    if file is None:
        return None, "", 1
    path = _upload_path(file)
    image, meta = load_image(path, frame, window)
    upload = prepare_upload(path)
    with _as_user_errors("preparing the preview", path):
        md = "### Image\n\n" + render.meta_markdown(meta.to_dict())
        if upload.is_dicom:
            md += "\n\n" + render.deid_markdown(upload.warnings)
        return render.to_display(image), md, int(meta.frame_count or 1)


def results_dir(ttl_s: int = 3600) -> Path:
    """This process's private temp dir for result PNGs; files older than ``ttl_s`` are pruned.

    Gradio copies returned files into its own cache (cleaned by ``delete_cache``),
    so ours only need to outlive one request; the TTL is generous for API clients.
    """
    global _RESULTS_DIR
    if _RESULTS_DIR is None or not _RESULTS_DIR.is_dir():
        _RESULTS_DIR = Path(tempfile.mkdtemp(prefix="medenhance-results-"))
    cutoff = time.time() - ttl_s
    for p in _RESULTS_DIR.iterdir():  # result PNG/DICOM files and de-identified upload copies
        try:
            if p.stat().st_mtime < cutoff:
                p.unlink()
        except OSError:  # another worker removed it first
            pass
    return _RESULTS_DIR


def preview_file(image: Image.Image | None, ttl_s: int = 3600) -> str | None:
    """Write an 8-bit preview as a PNG in :func:`results_dir` and return its path (None stays None).

    For Gradio image outputs: given a path, Gradio serves our file instead of
    re-encoding the PIL image at Pillow's slow default level, which takes ~3x
    longer on every click (see ``models.export.PNG_COMPRESS_LEVEL``).
    """
    if image is None:
        return None
    return str(save_pil_png(image, results_dir(ttl_s) / f"preview_{uuid.uuid4().hex[:12]}.png"))


def preview_files(pair: tuple[Image.Image, Image.Image], ttl_s: int = 3600) -> tuple[str, str]:
    """:func:`preview_file` for a (before, after) pair of ``gr.ImageSlider``."""
    return preview_file(pair[0], ttl_s), preview_file(pair[1], ttl_s)  # type: ignore[return-value]


def result_bits(meta: Any, result: np.ndarray) -> int:
    """16 for grayscale results of inputs stored with more than 8 bits, else 8."""
    return 16 if result.ndim == 2 and not meta.is_colour and (meta.bits_stored or 8) > 8 else 8


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
        preview_max_side: long side of the browser preview; the PNG is full size.
    Returns:
        ((before, after) 8-bit PIL images of equal size for ``gr.ImageSlider``,
        markdown with timing, image metadata and model card,
        path of the result PNG: 16-bit grayscale when the input had > 8 bits stored, else 8-bit).
    Raises:
        gr.Error: for every bad input and internal error.
    """
    r = enhance_upload(file, task, model, frame, window, strength, ensemble, preview_max_side=preview_max_side,
                       result_ttl_s=result_ttl_s)
    return r.pair, r.markdown, r.png_path


def enhance_upload(
    file: Any,
    task: str | None,
    model: str | None,
    frame: Any = 0,
    window: Any = DEFAULT_WINDOW,
    strength: Any = 1.0,
    ensemble: Any = False,
    *,
    preview_max_side: int = 2048,
    result_ttl_s: int = 3600,
) -> EnhanceResult:
    """Read an upload (DICOM: its de-identified copy), run a model, write the PNG and, for DICOM, a derived DICOM.

    Arguments as :func:`enhance_file`. The DICOM is written with
    :func:`models.dicom_export.export_derived_dicom` from the de-identified
    copy: same (remapped) study, new series, the source referenced, pixels in
    the source's stored units. If only the DICOM export fails, the PNG is
    still returned and the report says why.

    Raises:
        gr.Error: for every bad input and internal error.
    """
    name = _check_model(task, model)
    strength = parse_strength(strength)
    ensemble = parse_ensemble(ensemble)
    path = _upload_path(file)
    image, meta = load_image(path, frame, window)
    upload = prepare_upload(path, result_ttl_s)
    with _as_user_errors("enhancing the image", path):
        t0 = time.perf_counter()
        out = run_model(image, name, strength, ensemble)
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
        result = (f"### Result\n\n**{name}**{how}{blend} ran in **{render.format_duration(seconds)}** "
                  f"on {image.shape[1]} × {image.shape[0]} px → {w} × {h} px. "
                  f"Download: {downloads}.\n\n{note}\n\n{dicom_note}").rstrip()
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
