"""The cases of a study: import source images (de-identified) and render the variants readers see."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from db import ORIGINAL
from models import enhance, get_spec, read_image, validate_image
from models.auto import ROUTES, decide
from models.io.dicom_export import weights_sha256
from models.io.export import save_png
from models.loading import sha256, weights_path
from studio.study.checks import MAX_FILES, StudyError
from studio.study.store import StudyStore
from studio.ui import render


def folder_files(import_root: Path | None, folder: Any, limit: int = MAX_FILES) -> list[Path]:
    """Files under ``folder``, which must lie inside ``import_root`` (``STUDIO_IMPORT_ROOT``).

    ``folder`` may be relative to the root or absolute. Symbolic links are
    resolved first, so neither ``..`` nor a link can reach outside the root;
    hidden files and folders are skipped.

    Raises:
        StudyError: import disabled, folder outside the root, missing, or with no files.
    """
    return list(folder_members(import_root, folder, limit).values())


def folder_members(import_root: Path | None, folder: Any, limit: int = MAX_FILES) -> dict[str, Path]:
    """{path relative to ``folder`` (posix): resolved file} of the files :func:`folder_files` returns (same checks)."""
    if import_root is None:
        raise StudyError("Importing from a server folder is disabled: the operator must set STUDIO_IMPORT_ROOT.")
    try:
        root = Path(import_root).resolve(strict=True)
        given = Path(str(folder or "").strip() or ".")
        target = (given if given.is_absolute() else root / given).resolve()
    except (OSError, ValueError, RuntimeError):  # missing root, NUL bytes, symlink loops
        raise StudyError("That folder cannot be used.") from None
    if not target.is_relative_to(root):
        raise StudyError("That folder is outside the allowed import folder (STUDIO_IMPORT_ROOT).")
    if not target.is_dir():
        raise StudyError("No such folder inside the import folder.")
    files: dict[str, Path] = {}
    for path in sorted(target.rglob("*")):
        rel = path.relative_to(target)
        if any(part.startswith(".") for part in rel.parts):
            continue
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if real.is_file() and real.is_relative_to(root):  # a link pointing outside the root is ignored
            files[rel.as_posix()] = real
        if len(files) > limit:
            raise StudyError(f"More than {limit} files in that folder; split the study.")
    if not files:
        raise StudyError("That folder holds no files.")
    return files


@dataclass
class _Source:
    stored_name: str
    upload_sha256: str
    stored_sha256: str
    width: int
    height: int
    info: dict[str, Any]


# Technical facts kept about a source; everything else in a DICOM header (names, IDs, dates) is dropped.
_KEPT_META = ("source_format", "modality", "bits_stored", "photometric", "window_center", "window_width",
              "window_source", "frame", "frame_count", "is_colour")


def store_source(store: StudyStore, path: str | Path, window: Any = None, frame: int = 0) -> _Source:
    """Read an image and keep only its pixels, as the models will see them, under a generated name.

    Raises:
        StudyError: the file is not a readable image (message without the file's name).
    """
    path = Path(path)
    try:
        image, meta = read_image(path, frame=frame, window=window)
    except ValueError as e:  # ImageReadError, bad window
        msg = str(e).replace(str(path), "the file").replace(path.name, "the file")
        raise StudyError(f"cannot read it as an image ({msg})") from None
    name = f"{uuid.uuid4().hex}.png"
    target = store.source_path(name)
    # 16-bit grayscale keeps the windowed precision of CT/MR; colour is 8-bit like its source.
    save_png(image, target, bits=16 if image.ndim == 2 else 8)
    meta_d = meta.to_dict()
    info = {k: meta_d.get(k) for k in _KEPT_META if meta_d.get(k) is not None}
    return _Source(name, sha256(path), sha256(target), int(image.shape[1]), int(image.shape[0]), info)


@dataclass
class _Rendered:
    model: str
    file_name: str
    file_sha256: str
    output_width: int
    output_height: int
    seconds: float
    weights_sha256: str | None
    options: dict[str, Any]


def _provenance(model: str) -> tuple[str | None, dict[str, Any]]:
    """(weights SHA-256 or None, options) of a variant's model.

    A user model (:mod:`models.plugins`) is identified by the SHA-256 its file was registered and
    loaded with; its options say so, with its file name, format and architecture.
    """
    if model == ORIGINAL:
        return None, {}
    spec = get_spec(model)
    if spec.source == "user":
        return spec.sha256, {"user_model": {k: spec.info.get(k) for k in ("file", "format", "architecture")}}
    if spec.kind == "network":
        return sha256(weights_path(spec)), {}
    if spec.kind == "auto":  # identity of everything it may run; the choice made per case is in "automatic"
        return weights_sha256(spec), dict(spec.options)
    return None, dict(spec.options)


def _to_display(image: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """[0, 1] image -> 8-bit PIL of ``size`` (w, h): bicubic when enlarging, area average when shrinking."""
    pil = render.to_display(image)
    if pil.size == size:
        return pil
    up = size[0] > pil.size[0] or size[1] > pil.size[1]
    return pil.resize(size, Image.Resampling.BICUBIC if up else Image.Resampling.BOX)


def render_variants(store: StudyStore, image: np.ndarray, models: Sequence[str], max_side: int,
                    precomputed: dict[str, tuple[np.ndarray, dict[str, Any]]] | None = None) -> list[_Rendered]:
    """Render one case: the original, every model, and every precomputed result, at one common display size.

    Args:
        image: the stored case read back with ``read_image``, float32 [0, 1], (H, W[, 3]).
        models: model names (without ``"original"``).
        max_side: cap on the display's long side.
        precomputed: another tool's results of this case (:mod:`studio.study.results_import`):
            method -> (float32 [0, 1] image of the case's size or a whole multiple, provenance
            options stored with the variant).
    Returns:
        One entry per variant, ``"original"`` first, then models, then methods; the PNGs are
        written to ``variants/``. The display size is the largest output (e.g. 2H x 2W when a
        x2 model takes part), so every variant of a case is shown at the same size.
    """
    outputs = []
    for model in (ORIGINAL, *models):
        t0 = time.perf_counter()
        # The original takes the same path minus the model: same checks, same resize, same PNG writer.
        out = validate_image(image) if model == ORIGINAL else enhance(image, model)
        outputs.append((model, out, time.perf_counter() - t0))
    extra = {}
    for method, (out, options) in (precomputed or {}).items():
        # A tool's result goes through the same checks, resize and PNG writer: nothing of its file survives.
        outputs.append((method, validate_image(out), 0.0))
        extra[method] = options
    h = max(o.shape[0] for _, o, _ in outputs)
    w = max(o.shape[1] for _, o, _ in outputs)
    f = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    rendered = []
    for model, out, seconds in outputs:
        name = f"{uuid.uuid4().hex}.png"
        path = store.variant_path(name)
        _to_display(out, size).save(path, format="PNG")
        weights, options = (None, dict(extra[model])) if model in extra else _provenance(model)
        if model in ROUTES:
            options["automatic"] = decide(image, model).as_dict()
        rendered.append(_Rendered(model, name, sha256(path), int(out.shape[1]), int(out.shape[0]),
                                  seconds, weights, options))
    return rendered
