"""Reading an upload: de-identify a DICOM first, then read, preview and describe it.

DICOM uploads are de-identified before anything else happens to them
(:func:`prepare_upload`): the studio reads, previews, shows the header of and
exports from a de-identified copy in its private temp dir, never from the
upload itself (which is Gradio's temp file). UIDs and pseudonyms come from a
keyed hash with one key per server process (``MEDENHANCE_DEID_KEY`` to keep
them stable across restarts).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np
import pydicom
from PIL import Image

from models import read_image
from models.io import deid, dicom_header
from studio.handlers.errors import _as_user_errors
from studio.handlers.options import DEFAULT_WINDOW, _frame, parse_window
from studio.handlers.results import results_dir
from studio.ui import render

# One de-identification key per server process: the same upload (or two files
# of one study) maps to the same UIDs and pseudonym while the server runs.
# Set MEDENHANCE_DEID_KEY to keep them stable across restarts; never logged.
_DEID_KEY = os.environ.get("MEDENHANCE_DEID_KEY", "").strip() or deid.new_key()


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
    from models.io.reader import _looks_like_headerless_dicom

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
            header = dicom_header.header_rows(pydicom.dcmread(copy, stop_before_pixels=True, force=True))
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
