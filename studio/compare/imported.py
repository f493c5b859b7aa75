"""Results from another tool in a comparison: uploaded images, labelled by method, scored like the models.

Each uploaded file is one method's result of the comparison's input, at the output size
(input × scale). Its label is the file's name without extension, reduced to letters, digits and
``_ . -`` (so it is safe in the table, the CSV, the ZIP's file names and the report). In Simulate
mode the tool must have run on the degraded input the studio made (the ZIP's ``results/00_input.png``,
reproducible with the same seed); in Reference mode on the uploaded input.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from studio import handlers

MAX_IMPORTED = 8
_LABEL_RE = re.compile(r"[^A-Za-z0-9_.-]+")
# Labels the comparison uses itself (views, rows).
_RESERVED = {"input", "reference"}


def imported_label(file_name: str) -> str:
    """A method label from an uploaded file's name: ``"My Tool v2.png"`` -> ``"My_Tool_v2"`` (at most 48 characters)."""
    label = _LABEL_RE.sub("_", Path(file_name).stem).strip("._-")[:48]
    return label or "result"


def upload_paths(results: Any) -> list[str]:
    """Paths of the uploaded result files (one path, a list, or None/empty)."""
    if not results:
        return []
    items = results if isinstance(results, (list, tuple)) else [results]
    return [handlers.uploads._upload_path(r) for r in items if r]


def read_imported(paths: list[str], window: Any, colour: bool, taken: set[str]) -> dict[str, np.ndarray]:
    """Read uploaded results: label -> float32 [0, 1] image, grayscale when the input is (colour results -> luma).

    ``taken``: labels already in the comparison (model names); a result may not reuse one.

    Raises:
        gr.Error: too many files, an unreadable one, a label used twice or taken, or a grayscale
            result of a colour input (the message names the file).
    """
    if len(paths) > MAX_IMPORTED:
        raise gr.Error(f"{len(paths)} results uploaded; at most {MAX_IMPORTED} at once.", title="Too many results",
                       print_exception=False)
    out: dict[str, np.ndarray] = {}
    for path in paths:
        label = imported_label(Path(path).name)
        if label.lower() in _RESERVED or label in taken or label in out:
            raise gr.Error(f"Two results (or a result and a model) would both be called '{label}'; rename the file.",
                           title="Result name taken", print_exception=False)
        image, _ = handlers.load_image(path, 0, window)
        if image.ndim == 3 and not colour:
            image = (image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
        elif image.ndim == 2 and colour:
            raise gr.Error(f"The result '{label}' is grayscale but the input is colour; upload the colour result.",
                           title="Result does not match", print_exception=False)
        out[label] = image
    return out
