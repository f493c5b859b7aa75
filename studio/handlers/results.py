"""Where result files go: a private folder Gradio may serve, pruned of files older than an hour."""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.io.export import save_pil_png

_RESULTS_DIR: Path | None = None


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
    longer on every click (see ``models.io.export.PNG_COMPRESS_LEVEL``).
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
