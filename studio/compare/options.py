"""What a comparison may ask for: modes, model groups, simulated degradations, and how a request is checked."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from models import get_spec, list_models
from studio import handlers
from train.realistic import DENOISE_REAL_EVAL, SR_REAL_EVAL
from train.tasks import DENOISE_EVAL, ENHANCE_EVAL

#: API value -> UI label of the comparison modes.
MODES: dict[str, str] = {
    "simulate": "Simulate: degrade a clean image, compare with the original",
    "reference": "Reference: upload the ground truth",
    "none": "No reference (indicators only)",
}


DEFAULT_MODE = "simulate"


#: UI label -> output scale. Models of one scale are compared together.
GROUPS: dict[str, int] = {"Super-resolution x2": 2, "Super-resolution x4": 4, "Denoise + enhance (x1)": 1}


DEFAULT_GROUP = "Super-resolution x2"


MAX_MODELS = 12


@dataclass(frozen=True)
class Degradation:
    """A simulate-mode degradation: ``steps`` for :func:`train.degrade.compose`; ``scale`` the models must have."""

    label: str
    scale: int
    steps: tuple[tuple[str, dict[str, Any]], ...]

    def describe(self) -> str:
        """``bicubic_down(scale=2)`` style text of the steps (what train.degrade runs)."""
        return " → ".join(f"{n}({', '.join(f'{k}={v}' for k, v in p.items())})" for n, p in self.steps)


#: API value -> degradation. SR ones are the SR evaluation degradation; noise ones are
#: train.tasks.DENOISE_EVAL; "enhance_eval" is train.tasks.ENHANCE_EVAL.
DEGRADATIONS: dict[str, Degradation] = {
    "down_x2": Degradation("Downsample x2 (bicubic, as SR evaluation)", 2, (("bicubic_down", {"scale": 2}),)),
    "down_x4": Degradation("Downsample x4 (bicubic, as SR evaluation)", 4, (("bicubic_down", {"scale": 4}),)),
    "gaussian_noise": Degradation("Gaussian noise, sigma 0.05 (denoise evaluation)", 1, (DENOISE_EVAL["gaussian"],)),
    "poisson_noise": Degradation("Poisson noise, peak 100 photons (denoise evaluation)", 1, (DENOISE_EVAL["poisson"],)),
    "rician_noise": Degradation("Rician noise, sigma 0.05 (denoise evaluation)", 1, (DENOISE_EVAL["rician"],)),
    "enhance_eval": Degradation("Enhance evaluation composite: contrast 0.5, gamma 1.5, brightness -0.05, "
                                "noise 0.02", 1, tuple(ENHANCE_EVAL)),
    "low_contrast": Degradation("Low contrast x0.5", 1, (("low_contrast", {"factor": 0.5}),)),
    "gaussian_blur": Degradation("Gaussian blur, sigma 1.5 px", 1, (("gaussian_blur", {"sigma": 1.5}),)),
    "jpeg": Degradation("JPEG, quality 30", 1, (("jpeg", {"quality": 30}),)),
    # The realistic evaluation degradations of train.realistic (what the *_real models are scored on):
    # detector blur and Poisson-Gaussian noise on the detector signal, then the display, then JPEG.
    "real_x2": Degradation(f"Realistic x2: detector blur, dose {SR_REAL_EVAL['dose']:g} noise, JPEG "
                           f"q{SR_REAL_EVAL['quality']} (realistic SR evaluation)", 2, (("sr_real_eval", {"scale": 2}),)),
    "real_x4": Degradation(f"Realistic x4: detector blur, dose {SR_REAL_EVAL['dose']:g} noise, JPEG "
                           f"q{SR_REAL_EVAL['quality']} (realistic SR evaluation)", 4, (("sr_real_eval", {"scale": 4}),)),
    **{f"detector_{level}": Degradation(f"Detector noise, Poisson-Gaussian, dose {p['dose']:g} (realistic denoise "
                                        "evaluation)", 1, (("poisson_gaussian", dict(p)),))
       for level, p in DENOISE_REAL_EVAL.items()},
    "detector_blur": Degradation("Detector blur, anisotropic PSF 1.2 x 0.6 px at 30 deg", 1,
                                 (("detector_blur", {"sigma_x": 1.2, "sigma_y": 0.6, "angle": 30.0}),)),
}


_DEFAULT_DEGRADATION = {1: "gaussian_noise", 2: "down_x2", 4: "down_x4"}


def mode_choices() -> list[tuple[str, str]]:
    """(label, value) pairs of the mode radio."""
    return [(label, value) for value, label in MODES.items()]


def degradation_choices(scale: int | None = None) -> list[tuple[str, str]]:
    """(label, value) pairs of the simulate dropdown; only those matching ``scale`` when given."""
    return [(d.label, k) for k, d in DEGRADATIONS.items() if scale is None or d.scale == scale]


def default_degradation(scale: int) -> str:
    """The simulate degradation preselected for models of ``scale``."""
    return _DEFAULT_DEGRADATION.get(scale, "down_x2" if scale == 2 else "gaussian_noise")


def model_choices(group: str | None) -> list[tuple[str, str]]:
    """(label, name) of every model of a group's scale (None: all models): automatic entries, networks, classical; missing weights say so."""
    scale = None if group is None else _group_scale(group)
    order = handlers.options.KIND_ORDER
    return [(f"{s.name} ({_kind_text(s)}, {handlers.options.kind_label(s)})", s.name)
            for s in sorted(list_models(scale=scale), key=lambda s: order[s.kind])]


def _kind_text(spec: Any) -> str:
    return f"sr x{spec.scale}" if spec.task == "sr" else spec.task


def default_models(group: str) -> list[str]:
    """Preselected models: the automatic entry and every network with weights, plus the first classical method of
    each task (not bicubic: it is the baseline row anyway). A short default keeps the first run quick."""
    out, tasks_seen = [], set()
    for _, name in model_choices(group):
        spec = get_spec(name)
        if spec.kind in ("auto", "network") and handlers.options._weights_ready(name):
            out.append(name)
        elif spec.kind == "classical" and spec.task not in tasks_seen and not name.startswith("bicubic_"):
            out.append(name)
            tasks_seen.add(spec.task)
    return out[:MAX_MODELS]


def _group_scale(group: str) -> int:
    try:
        return GROUPS[group]
    except (KeyError, TypeError):
        raise gr.Error(f"Unknown model group {group!r}: choose one of {', '.join(GROUPS)}.",
                       title="Bad model group", print_exception=False) from None


def parse_models(models: Any) -> tuple[list[str], int]:
    """Chosen model names (list, or a comma-separated string from API clients) -> (names, common scale).

    Raises:
        gr.Error: none chosen, an unknown name, too many, or models of different output scales.
    """
    if models is None:
        names: list[str] = []
    elif isinstance(models, str):
        names = [m.strip() for m in models.split(",")]
    else:
        names = [str(m).strip() for m in models]
    names = list(dict.fromkeys(n for n in names if n))  # drop blanks and repeats, keep order
    if not names:
        raise gr.Error("Choose at least one model to compare.", title="No models", print_exception=False)
    if len(names) > MAX_MODELS:
        raise gr.Error(f"{len(names)} models chosen; compare at most {MAX_MODELS} at once.",
                       title="Too many models", print_exception=False)
    specs = []
    for n in names:
        try:
            specs.append(get_spec(n))
        except ValueError as e:
            raise gr.Error(str(e), title="Unknown model", print_exception=False) from None
    scales = sorted({s.scale for s in specs})
    if len(scales) > 1:
        listed = ", ".join(f"{s.name} (x{s.scale})" for s in specs)
        raise gr.Error(f"Incompatible scales: {listed}. Results must have the same size to be compared: "
                       "choose super-resolution x2 models together, x4 models together, or denoise and "
                       "enhance models (x1) together.", title="Incompatible scales", print_exception=False)
    return [s.name for s in specs], scales[0]


def parse_mode(mode: Any) -> str:
    """API/UI value (or its label) -> a key of :data:`MODES`; empty means ``"none"``."""
    text = str(mode or "none").strip().lower()
    for key, label in MODES.items():
        if text in (key, label.lower()):
            return key
    raise gr.Error(f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.", title="Bad mode", print_exception=False)


def check_degradation(key: Any, scale: int) -> Degradation:
    """The simulate degradation ``key`` (or its label), checked against the models' scale."""
    text = str(key or "").strip()
    deg = DEGRADATIONS.get(text) or next((d for d in DEGRADATIONS.values() if d.label == text), None)
    if deg is None:
        raise gr.Error(f"Unknown degradation {key!r}: use one of {', '.join(DEGRADATIONS)}.",
                       title="Bad degradation", print_exception=False)
    if deg.scale != scale:
        fits = ", ".join(k for k, d in DEGRADATIONS.items() if d.scale == scale)
        what = f"a x{deg.scale} super-resolution input" if deg.scale > 1 else "an input of the same size"
        raise gr.Error(f"'{deg.label}' makes {what}, but the chosen models work at x{scale}. "
                       f"Degradations for x{scale} models: {fits}.", title="Incompatible scales",
                       print_exception=False)
    return deg


def _seed(seed: Any) -> int:
    if seed is None or seed == "":
        return 0
    try:
        f = float(seed)
    except (TypeError, ValueError):
        f = math.nan
    if not f.is_integer() or f < 0:
        raise gr.Error(f"Seed must be a whole number >= 0, got {seed!r}.", title="Bad seed", print_exception=False)
    return int(f)


def check_reference(reference: np.ndarray, image: np.ndarray, scale: int) -> None:
    """Raise ``gr.Error`` unless ``reference`` has the results' size and colour (input size x scale)."""
    h, w = image.shape[:2]
    want_h, want_w = h * scale, w * scale
    rh, rw = reference.shape[:2]
    if (rh, rw) != (want_h, want_w):
        how = f"the input ({w} × {h} px) × {scale}" if scale > 1 else f"the input ({w} × {h} px)"
        raise gr.Error(f"Reference of the wrong size: it is {rw} × {rh} px, but the results are {want_w} × {want_h} px "
                       f"({how}). Upload the ground truth at the output size.", title="Wrong reference size",
                       print_exception=False)
    if (reference.ndim == 3) != (image.ndim == 3):
        kinds = ("colour" if reference.ndim == 3 else "grayscale", "colour" if image.ndim == 3 else "grayscale")
        raise gr.Error(f"The reference is {kinds[0]} but the input is {kinds[1]}; both must be the same kind.",
                       title="Reference does not match", print_exception=False)
