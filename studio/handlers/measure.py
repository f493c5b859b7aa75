"""What the input looks like before a model runs: noise, JPEG blocking, smoothness, the automatic choice.

:func:`input_report` is shown in the Enhance tab with every result; :func:`measure_file` is the ``/measure``
API endpoint (JSON). Both use :mod:`models.noise` (the estimator the noise-aware models are conditioned on)
and :func:`models.auto.decide` (what an ``auto_*`` entry runs), and warn when a model is used far outside the
noise range it was trained on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models import get_spec
from models.auto import ROUTES, decide
from models.noise import measure_input, range_warning, stored_units_per_display_unit
from studio.handlers.options import DEFAULT_WINDOW, _check_model
from studio.handlers.uploads import _upload_path, load_image


def input_report(image: np.ndarray, meta: Any, model: str | None = None) -> dict[str, Any]:
    """Measurement of ``image`` (float32 [0, 1], (H, W[, 3])) read with ``meta``, and for ``model``: what an
    automatic entry decides, and a warning if the input is far outside the model's training noise range.

    Returns a JSON-able dict: ``measurement`` (sigma in [0, 1] units, ``sigma_stored`` in the file's stored
    values or None, ``jpeg``, ``smooth``, flags), ``summary`` (one line), ``auto`` (the decision, for an
    ``auto_*`` model) and ``warning`` (a sentence or None).
    """
    m = measure_input(image, stored_units_per_display_unit(meta) if meta is not None else None)
    out: dict[str, Any] = {"measurement": m.as_dict(), "summary": m.summary(), "auto": None, "warning": None}
    if model:
        if model in ROUTES:
            d = decide(image, model)
            out["auto"] = d.as_dict()
            out["warning"] = range_warning(d.models[-1], get_spec(d.models[-1]).noise_range, m.sigma)
        else:
            out["warning"] = range_warning(model, get_spec(model).noise_range, m.sigma)
    return out


def report_markdown(report: dict[str, Any]) -> str:
    """The Enhance tab's "Input" paragraph of :func:`input_report`."""
    parts = [f"**Input**: {report['summary']} (`models.noise`)."]
    if report["auto"]:
        parts.append(f"**Automatic choice**: {report['auto']['summary']}.")
    if report["warning"]:
        parts.append(f"⚠️ {report['warning']}")
    return "\n\n".join(parts)


def measure_file(file: Any, frame: Any = 0, window: Any = DEFAULT_WINDOW, model: str | None = None) -> dict[str, Any]:
    """The ``/measure`` endpoint: :func:`input_report` of an uploaded file (DICOM, PNG, JPEG, TIFF).

    Args:
        file: path of the upload; frame, window: as ``/enhance``; model: optional registry name.
    Returns:
        The :func:`input_report` dict.
    Raises:
        gr.Error: unreadable file, unknown model.
    """
    path = _upload_path(file)
    image, meta = load_image(path, frame, window)
    if model:
        model = _check_model(None, model)
    return input_report(image, meta, model)
