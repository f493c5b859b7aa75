"""The Enhance tab's choices and how its inputs are checked: tasks, models, window, strength, ensemble.

Each ``parse_*`` function turns what a browser or API client sent into a
checked value or raises ``gr.Error`` with a message for the user.
"""

from __future__ import annotations

import re
from typing import Any

import gradio as gr
import numpy as np

from models import get_spec, list_models, model_card
from models.io import WINDOW_PRESETS, printable
from studio.ui import render

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


def parse_noise_level(level: Any) -> float | None:
    """Box/API value -> the noise sigma a noise-aware model (or an ``auto_*`` entry) is told, in [0, 1] units;
    ``None``/``""``/0 -> None: the level is estimated from the image (:mod:`models.noise`).

    Raises:
        gr.Error: not a number, or outside (0, 1].
    """
    if level is None or level == "":
        return None
    try:
        value = float(level)
    except (TypeError, ValueError):
        value = float("nan")
    if value == 0.0:
        return None
    if not 0.0 < value <= 1.0:
        raise gr.Error(f"Noise level must be a sigma in [0, 1] units (0.05 = 5 % of the display range), or empty "
                       f"to estimate it; got {printable(str(level))[:40]!r}.", title="Bad noise level",
                       print_exception=False)
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
    return card["kind"] == "classical" or bool(card.get("weights_present"))  # auto: all its weights


KIND_ORDER = {"auto": 0, "network": 1, "classical": 2}  # the automatic entry first: it is the default


def model_choices(task_label: str) -> list[tuple[str, str]]:
    """(label, model name) pairs for a task label: the automatic entry, networks, then classical baselines.

    Networks whose weights are not trained yet stay listed (so users see what is
    coming) but say so; choosing one gives a clear error.
    """
    task, scale = _task(task_label)
    specs = list_models(task=task, scale=scale)
    out = []
    for s in sorted(specs, key=lambda s: KIND_ORDER[s.kind]):  # stable: registry order within a kind
        out.append((f"{s.name} ({kind_label(s)})", s.name))
    return out


def kind_label(spec: Any) -> str:
    """What a model is, for choice labels: automatic, network, your model or classical; "weights missing"."""
    kind = {"auto": "automatic", "classical": "classical"}.get(
        spec.kind, "your model" if spec.source == "user" else "network")
    return kind if _weights_ready(spec.name) else f"{kind}, weights missing"


def default_model(task_label: str) -> str | None:
    """The model preselected for a task: its automatic entry, else the first network with weights, else the first
    classical method."""
    names = [name for _, name in model_choices(task_label)]
    for name in names:
        if _weights_ready(name):
            return name
    return names[0] if names else None


def about_models() -> str:
    """Markdown of every registered model's card (the "About models" tab); re-read on each page load."""
    return render.models_overview_markdown([model_card(s.name) for s in list_models()])


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
