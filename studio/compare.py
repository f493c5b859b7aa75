"""The Compare tab's work as plain functions: N models on one image, side by side, with numbers.

:func:`compare_file` is the ``/compare`` endpoint:

1. read the upload like the Enhance tab (frame, window) into float32 [0, 1] display values;
2. choose what the results are compared with (``mode``):

   * ``"simulate"``: the upload is a clean original; a degradation of the training
     package (:mod:`train.degrade`, with the evaluation settings of :mod:`train.tasks`)
     makes the model input and the clean image is the reference;
   * ``"reference"``: the upload is the model input and a second upload the ground truth;
   * ``"none"``: no reference, so only no-reference indicators (not quality scores);

3. run the baseline (bicubic for SR, the input itself at scale 1) and every chosen
   model through :func:`models.enhance`, timing each call;
4. score every result with :mod:`train.metrics`: the same functions, data range (1.0)
   and border crop (= scale for SR) as training and evaluation, so numbers agree;
5. absolute-error heat maps and one ZIP with the results, the maps and the table (CSV).

The float results stay in memory under a run id (the last :data:`MAX_RUNS_KEPT`
runs) for the before/after slider (:func:`slider_pair`) and the synchronized zoom
(:func:`zoom_views`), which only re-crop; they never re-run a model.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from scipy import ndimage
from skimage.restoration import estimate_sigma

from models import enhance, get_spec, list_models, model_card
from models.device import default_device
from models.errors import WeightsError
from models.export import save_png
from train import metrics
from train.degrade import compose, crop_to_multiple
from train.tasks import DENOISE_EVAL, ENHANCE_EVAL
from train.tasks import TASKS as TRAIN_TASKS

from . import handlers, heatmap, render

logger = logging.getLogger("medenhance.studio")

# --- choices -------------------------------------------------------------------------------

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
}
_DEFAULT_DEGRADATION = {1: "gaussian_noise", 2: "down_x2", 4: "down_x4"}

INPUT, REFERENCE = "input", "reference"


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
    """(label, name) of every model of a group's scale (None: all models): networks first; missing weights say so."""
    scale = None if group is None else _group_scale(group)
    out = []
    for s in sorted(list_models(scale=scale), key=lambda s: s.kind != "network"):
        if s.kind == "network":
            ready = handlers._weights_ready(s.name)
            label = f"{s.name} ({_kind_text(s)}, network{'' if ready else ', weights missing'})"
        else:
            label = f"{s.name} ({_kind_text(s)}, classical)"
        out.append((label, s.name))
    return out


def _kind_text(spec: Any) -> str:
    return f"sr x{spec.scale}" if spec.task == "sr" else spec.task


def default_models(group: str) -> list[str]:
    """Preselected models: every network with weights, plus the first classical method of each task
    (not bicubic: it is the baseline row anyway). A short default keeps the first run quick."""
    out, tasks_seen = [], set()
    for _, name in model_choices(group):
        spec = get_spec(name)
        if spec.kind == "network" and handlers._weights_ready(name):
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


# --- checking a request ----------------------------------------------------------------------

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


# --- numbers ---------------------------------------------------------------------------------

def no_reference_indicators(image: np.ndarray) -> dict[str, float]:
    """Indicators that need no reference. They describe an image; they do not say it is better.

    Args:
        image: float [0, 1], (H, W) or (H, W, 3).
    Returns:
        ``noise_sigma``: estimated Gaussian noise sigma ([0, 1] units; wavelet MAD, skimage ``estimate_sigma``);
        ``sharpness``: variance of the Laplacian of the luma (noise raises it as well);
        ``rms_contrast``: standard deviation of the luma.
    """
    colour = image.ndim == 3
    luma = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) if colour else image.astype(np.float64)
    sigma = float(estimate_sigma(image, channel_axis=-1 if colour else None, average_sigmas=True))
    return {"noise_sigma": sigma, "sharpness": float(ndimage.laplace(luma).var()), "rms_contrast": float(luma.std())}


def metric_names(colour: bool) -> tuple[str, ...]:
    """The train.metrics scores of the table: PSNR, SSIM, MSE, SNR, GMSD, and CIEDE2000 for colour images."""
    return ("psnr", "ssim", "mse", "snr", "gmsd") + (("delta_e",) if colour else ())


def border_crop(scale: int) -> int:
    """Border pixels left out of every score: ``scale`` for SR (not reconstructable), 0 at scale 1."""
    return scale if scale > 1 else 0


# Column name in the table -> key in the scores dict.
_SCORE_COLUMNS = {"PSNR (dB)": "psnr", "SSIM": "ssim", "MSE": "mse", "SNR (dB)": "snr",
                  "GMSD (lower = better)": "gmsd", "DeltaE2000": "delta_e"}
_INDICATOR_COLUMNS = {"noise sigma (est.)": "noise_sigma", "sharpness (var. of Laplacian)": "sharpness",
                      "RMS contrast": "rms_contrast"}
_DISPLAY_DIGITS = {"psnr": 2, "snr": 2, "ssim": 4, "delta_e": 3}  # decimals; others: 4 significant digits


# --- a run -------------------------------------------------------------------------------------

@dataclass
class Run:
    """Everything one comparison produced; kept in memory for the slider and zoom views.

    Arrays are float32 in [0, 1]: ``input`` (h, w[, 3]) is what the models saw (the degraded
    image in simulate mode); ``reference`` and every ``outputs`` entry are (h*scale, w*scale[, 3]).
    ``outputs`` maps a row label (the baseline first, then models in the order chosen) to its result;
    ``errors`` the same labels to |result - reference| (h*scale, w*scale) float32.
    """

    run_id: str
    mode: str
    scale: int
    input: np.ndarray
    reference: np.ndarray | None
    baseline: str
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    errors: dict[str, np.ndarray] = field(default_factory=dict)
    error_vmax: float = 0.0
    warnings: list[str] = field(default_factory=list)
    degradation: str | None = None
    seed: int = 0
    input_note: str = ""

    @property
    def crop(self) -> int:
        return border_crop(self.scale)

    @property
    def colour(self) -> bool:
        return self.input.ndim == 3

    @property
    def out_shape(self) -> tuple[int, int]:
        return self.input.shape[0] * self.scale, self.input.shape[1] * self.scale

    def views(self) -> dict[str, np.ndarray]:
        """Every image one can look at, in display order: input, reference, baseline, models."""
        out = {INPUT: self.input}
        if self.reference is not None:
            out[REFERENCE] = self.reference
        out.update(self.outputs)
        return out

    def table(self, display: bool = False) -> pd.DataFrame:
        """The numbers, one row per baseline/model (skipped models included, with a note).

        ``display=True`` rounds for the browser and turns non-finite values into None
        (JSON has no inf); the CSV keeps full precision.
        """
        rows = []
        for label in [self.baseline, *[n for n in self.kinds if n != self.baseline]]:
            row: dict[str, Any] = {"model": label, "kind": self.kinds[label]}
            s = self.scores.get(label, {})
            if self.reference is not None:
                for col, key in _SCORE_COLUMNS.items():
                    if key != "delta_e" or self.colour:
                        row[col] = s.get(key)
                row["data range"], row["border crop (px)"] = 1.0, self.crop
            else:
                for col, key in _INDICATOR_COLUMNS.items():
                    row[col] = s.get(key)
            row["seconds / image"] = self.seconds.get(label)
            row["note"] = self.notes.get(label, "")
            rows.append(row)
        df = pd.DataFrame(rows)
        if display:
            df = df.astype(object)
            for col in df.columns:
                key = _SCORE_COLUMNS.get(col) or _INDICATOR_COLUMNS.get(col) or col
                # An object Series: a plain list would be re-inferred as float64 with NaN (invalid JSON).
                df[col] = pd.Series([_display_number(v, key) for v in df[col]], index=df.index, dtype=object)
        return df


def _display_number(v: Any, key: str) -> Any:
    if v is None or isinstance(v, str) or isinstance(v, (bool, np.bool_)):
        return v
    f = float(v)
    if not math.isfinite(f):
        return None
    if key in _DISPLAY_DIGITS:
        return round(f, _DISPLAY_DIGITS[key])
    if key in ("data range", "border crop (px)"):
        return f if key == "data range" else int(f)
    return float(f"{f:.4g}")


def _baseline(scale: int) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """(row label, function) of the reference method: train.tasks' baselines, so numbers match evaluation."""
    if scale > 1:
        return f"bicubic x{scale} (baseline)", lambda img: TRAIN_TASKS["sr"].baseline(img, scale)
    return "identity: input unchanged (baseline)", lambda img: TRAIN_TASKS["denoise"].baseline(img, 1).copy()


def run_comparison(
    image: np.ndarray,
    models: list[str],
    scale: int,
    *,
    reference: np.ndarray | None = None,
    mode: str = "none",
    degradation: Degradation | None = None,
    seed: int = 0,
    progress: Callable[[float, str], Any] | None = None,
) -> Run:
    """Run the baseline and ``models`` on one image and score them (arrays in, :class:`Run` out).

    Args:
        image: float32 [0, 1], (H, W) or (H, W, 3): the clean original in simulate mode,
            else the model input.
        models: registry names, all of output ``scale`` (see :func:`parse_models`).
        reference: reference mode: the ground truth, (H*scale, W*scale[, 3]).
        mode: ``"simulate"``, ``"reference"`` or ``"none"``.
        degradation: simulate mode: what turns ``image`` into the model input.
        seed: simulate mode: seed of the degradation's noise.
        progress: called as ``progress(fraction, text)`` before each step.
    Returns:
        The :class:`Run`; networks without weights are listed with a note instead of a result.
    Raises:
        gr.Error: bad input, or not one chosen model can run.
    """
    say = progress or (lambda *_: None)
    run = Run(run_id=uuid.uuid4().hex[:12], mode=mode, scale=scale, input=image, reference=None, baseline="")
    if mode == "simulate":
        if degradation is None:
            raise gr.Error("Simulate mode needs a degradation.", title="No degradation", print_exception=False)
        say(0.0, f"degrading the image: {degradation.label}")
        with handlers._as_user_errors("degrading the image"):
            clean = crop_to_multiple(image, scale) if scale > 1 else image
            if min(clean.shape[:2]) < 2 * scale:
                raise ValueError(f"the image is too small for x{scale} simulation")
            run.input = compose(list(degradation.steps))(clean, seed=seed)
            run.reference = clean
        run.degradation, run.seed = degradation.label, seed
    elif mode == "reference":
        if reference is None:
            raise gr.Error("Reference mode needs the ground-truth image.", title="No reference",
                           print_exception=False)
        check_reference(reference, image, scale)
        run.reference = reference

    runnable = []
    for name in models:
        card = model_card(name)
        run.kinds[name] = card["kind"]
        if card["kind"] == "network" and not card.get("weights_present"):
            run.notes[name] = "weights missing: not run"
        else:
            runnable.append(name)
    if not runnable:
        raise gr.Error(f"None of the chosen models can run yet (weights missing: {', '.join(models)}). "
                       "Choose a classical model or a network with trained weights.", title="Weights missing",
                       print_exception=False)

    base_label, base_fn = _baseline(scale)
    run.baseline = base_label
    run.kinds = {base_label: "baseline", **run.kinds}
    steps = len(runnable) + 2
    say(0.05, "baseline")
    t0 = time.perf_counter()
    with handlers._as_user_errors("running the baseline"):
        run.outputs[base_label] = base_fn(run.input)
    run.seconds[base_label] = time.perf_counter() - t0
    for i, name in enumerate(runnable, start=1):
        say(i / steps, f"running {name} ({i}/{len(runnable)})")
        out = None
        with handlers._as_user_errors(f"running {name}"):
            try:
                if run.kinds[name] == "network":
                    # Warm-up on a corner: weights load and kernels initialise outside the timing,
                    # so "seconds / image" is steady-state inference for every row alike.
                    enhance(np.ascontiguousarray(run.input[:16, :16]), name)
                t0 = time.perf_counter()
                out = enhance(run.input, name)
                seconds = time.perf_counter() - t0
            except WeightsError as e:  # present but unreadable: a note on its row, the others still run
                run.notes[name] = f"weights error: {handlers._scrub(str(e), None)}"
        if out is not None:
            run.outputs[name], run.seconds[name] = out, seconds
    if len(run.outputs) == 1:  # only the baseline: every chosen model failed to load
        raise gr.Error("None of the chosen models could run: " + "; ".join(f"{n}: {m}" for n, m in run.notes.items()),
                       title="Model not available", print_exception=False)
    say((steps - 1) / steps, "scoring")
    _score(run)
    return run


def _score(run: Run) -> None:
    """Fill scores, warnings and error maps of ``run`` (train.metrics on [0, 1] values, data range 1)."""
    if run.reference is None:
        for label, out in run.outputs.items():
            run.scores[label] = no_reference_indicators(out)
        return
    names = metric_names(run.colour)
    for label, out in run.outputs.items():
        s = metrics.score(out, run.reference, data_range=1.0, crop=run.crop, names=names)
        run.scores[label] = s
        run.warnings += [f"{label}: {w}" for w in metrics.sanity_warnings(s)]
        run.errors[label] = metrics.abs_error_map(out, run.reference)
    # One colour scale for every map so they can be compared; the 99.5th percentile keeps a few
    # outlier pixels (edges, clipped highlights) from turning everything else black.
    run.error_vmax = max([float(np.percentile(e, 99.5)) for e in run.errors.values()] + [1.0 / 255])


# --- pictures ----------------------------------------------------------------------------------

def _display(image: np.ndarray, size_hw: tuple[int, int], max_side: int) -> Image.Image:
    """8-bit PIL of ``image`` at ``size_hw`` (whole-factor nearest enlargement), then area-reduced to ``max_side``."""
    H, W = size_hw
    pil = render.to_display(image)
    if image.shape[:2] != (H, W):
        pil = pil.resize((W, H), Image.Resampling.NEAREST)  # each input pixel stays a visible block
    f = min(1.0, max_side / max(H, W))
    if f < 1.0:
        pil = pil.resize((max(1, round(W * f)), max(1, round(H * f))), Image.Resampling.BOX)
    return pil


def error_map_image(err: np.ndarray, vmax: float, max_side: int | None = None) -> Image.Image:
    """A heat map of |error| (0 .. ``vmax``, inferno) with its scale bar; area-reduced to ``max_side`` first."""
    if max_side and max(err.shape) > max_side:
        f = max_side / max(err.shape)
        size = (max(1, round(err.shape[1] * f)), max(1, round(err.shape[0] * f)))
        err = np.asarray(Image.fromarray(err.astype(np.float32), "F").resize(size, Image.Resampling.BOX))
    img, _ = heatmap.heatmap_with_scale_bar(err, 0.0, vmax, title="|result - reference|",
                                            clipped_above=bool(err.max() > vmax))
    return img


def _caption(run: Run, label: str) -> str:
    if label == INPUT:
        return "input (degraded)" if run.mode == "simulate" else "input"
    if label == REFERENCE:
        return "reference (clean original)" if run.mode == "simulate" else "reference (ground truth)"
    s = run.scores.get(label, {})
    if "psnr" in s:
        return f"{label}: {s['psnr']:.2f} dB, SSIM {s['ssim']:.4f}"
    return f"{label}: {render.format_duration(run.seconds.get(label, 0.0))}"


def gallery(run: Run, max_side: int = 1024) -> list[tuple[Image.Image, str]]:
    """Grid view: every image at the output size (input enlarged by nearest neighbour), with captions."""
    views = run.views()
    if run.scale == 1 and run.baseline in views:
        views.pop(run.baseline)  # at scale 1 the baseline *is* the input: show it once
    return [(_display(img, run.out_shape, max_side), _caption(run, label)) for label, img in views.items()]


def error_gallery(run: Run, max_side: int = 1024) -> list[tuple[Image.Image, str]]:
    """Heat maps of |result - reference| on one shared colour scale (empty without a reference)."""
    return [(error_map_image(err, run.error_vmax, max_side), f"|error| {label}") for label, err in run.errors.items()]


# --- the run store -------------------------------------------------------------------------------

MAX_RUNS_KEPT = 4
_RUNS: OrderedDict[str, Run] = OrderedDict()
_RUNS_LOCK = threading.Lock()


def remember(run: Run) -> None:
    """Keep ``run`` for the slider/zoom views; the oldest runs beyond :data:`MAX_RUNS_KEPT` are dropped."""
    with _RUNS_LOCK:
        _RUNS[run.run_id] = run
        while len(_RUNS) > MAX_RUNS_KEPT:
            _RUNS.popitem(last=False)


def get_run(run_id: Any) -> Run:
    """The remembered run ``run_id``; ``gr.Error`` when none was made or it has been dropped."""
    with _RUNS_LOCK:
        run = _RUNS.get(str(run_id)) if run_id else None
    if run is None:
        raise gr.Error("No comparison to show: click Compare first (the server keeps the last "
                       f"{MAX_RUNS_KEPT} comparisons).", title="No comparison", print_exception=False)
    return run


# --- slider and zoom -------------------------------------------------------------------------------

def view_choices(run: Run) -> list[str]:
    """Names the left/right dropdowns of the slider offer: input, reference, baseline, models."""
    return list(run.views())


def slider_pair(run_id: Any, left: str, right: str, max_side: int = 2048) -> tuple[Image.Image, Image.Image]:
    """Two views of a run at the same size for ``gr.ImageSlider`` (any of :func:`view_choices` on either side)."""
    run = get_run(run_id)
    views = run.views()
    for side in (left, right):
        if side not in views:
            raise gr.Error(f"Nothing called {side!r} in this comparison; choose one of {', '.join(views)}.",
                           title="Bad choice", print_exception=False)
    return _display(views[left], run.out_shape, max_side), _display(views[right], run.out_shape, max_side)


ZOOM_TILE = 384  # display pixels of one zoomed crop at zoom 1 (each output pixel = ``zoom`` display pixels)
ZOOM_FACTORS = (1, 2, 4, 8, 16)
OVERVIEW_SIDE = 512


def zoom_box(shape_hw: tuple[int, int], scale: int, cx: float, cy: float, zoom: int) -> tuple[int, int, int, int]:
    """Crop ``(x0, y0, width, height)`` in output pixels around centre (cx, cy) (fractions 0..1 of the width/height).

    The crop is ``ZOOM_TILE / zoom`` output pixels a side (whole image if smaller), kept inside
    the image and aligned to ``scale`` so the input crop covers exactly the same area.
    """
    H, W = shape_hw
    side = max(2 * scale, int(round(ZOOM_TILE / max(1, zoom))))
    side -= side % scale
    cw, ch = min(side, W), min(side, H)
    cw, ch = max(scale, cw - cw % scale), max(scale, ch - ch % scale)
    x0 = int(np.clip(round(float(cx) * W - cw / 2), 0, W - cw))
    y0 = int(np.clip(round(float(cy) * H - ch / 2), 0, H - ch))
    return x0 - x0 % scale, y0 - y0 % scale, cw, ch


def _window(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((img.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


def _zoom_numbers(cx: Any, cy: Any, zoom: Any, lo: Any, hi: Any) -> tuple[float, float, int, float, float]:
    try:
        cx, cy, lo, hi = (float(v if v is not None else d) for v, d in ((cx, .5), (cy, .5), (lo, 0.), (hi, 1.)))
        zoom = int(float(zoom if zoom is not None else 4))
    except (TypeError, ValueError):
        raise gr.Error("Zoom centre, factor and contrast must be numbers.", title="Bad zoom", print_exception=False) from None
    if not (0 <= lo < hi <= 1):
        raise gr.Error(f"Contrast: need 0 <= low < high <= 1, got {lo:g} and {hi:g}.", title="Bad contrast",
                       print_exception=False)
    if zoom < 1 or zoom > max(ZOOM_FACTORS):
        raise gr.Error(f"Zoom must be 1 … {max(ZOOM_FACTORS)}, got {zoom}.", title="Bad zoom", print_exception=False)
    return float(np.clip(cx, 0, 1)), float(np.clip(cy, 0, 1)), zoom, lo, hi


def zoom_views(run_id: Any, cx: Any = 0.5, cy: Any = 0.5, zoom: Any = 4, lo: Any = 0.0,
               hi: Any = 1.0) -> tuple[Image.Image, list[tuple[Image.Image, str]]]:
    """The same region of every image, magnified with nearest neighbour, with one shared contrast.

    Args:
        run_id: a remembered run.
        cx, cy: crop centre as fractions (0..1) of the image width and height.
        zoom: display pixels per output pixel (1..16); the input of SR is magnified ``zoom * scale``.
        lo, hi: shared display window on the [0, 1] values: ``lo`` -> black, ``hi`` -> white, for
            every crop alike (error-map crops keep their own colour scale).
    Returns:
        (overview with the crop outlined, [(crop, caption), ...] for input, reference, baseline,
        models, then the error maps of the same region).
    """
    run = get_run(run_id)
    cx, cy, zoom, lo, hi = _zoom_numbers(cx, cy, zoom, lo, hi)
    s = run.scale
    x0, y0, cw, ch = zoom_box(run.out_shape, s, cx, cy, zoom)
    tiles = []
    for label, img in run.views().items():
        if run.scale == 1 and label == run.baseline:
            continue
        if img.shape[:2] == run.out_shape:
            crop, mag = img[y0:y0 + ch, x0:x0 + cw], zoom
        else:  # the SR input: the same area at input resolution, each input pixel a (zoom*s)-block
            crop, mag = img[y0 // s:(y0 + ch) // s, x0 // s:(x0 + cw) // s], zoom * s
        tile = render.to_display(_window(crop, lo, hi))
        tiles.append((tile.resize((tile.width * mag, tile.height * mag), Image.Resampling.NEAREST),
                      f"{_caption(run, label)}"))
    for label, err in run.errors.items():
        rgb = heatmap.colourize(err[y0:y0 + ch, x0:x0 + cw], 0.0, run.error_vmax)
        tile = Image.fromarray(rgb, "RGB")
        tiles.append((tile.resize((tile.width * zoom, tile.height * zoom), Image.Resampling.NEAREST),
                      f"|error| {label} (0 … {heatmap.format_value(run.error_vmax)})"))
    return overview(run, (x0, y0, cw, ch)), tiles


def _overview_source(run: Run) -> np.ndarray:
    return run.reference if run.reference is not None else next(iter(run.outputs.values()))


def overview(run: Run, box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """A small picture of the whole image (reference, else baseline) to click on, with the zoom crop outlined."""
    H, W = run.out_shape
    pil = _display(_overview_source(run), run.out_shape, OVERVIEW_SIDE).convert("RGB")
    if box is not None:
        f = pil.width / W
        x0, y0, cw, ch = box
        draw = ImageDraw.Draw(pil)
        draw.rectangle([x0 * f, y0 * f, (x0 + cw) * f - 1, (y0 + ch) * f - 1], outline=(255, 200, 0),
                       width=max(1, pil.width // 200))
    return pil


def click_to_centre(run_id: Any, x: float, y: float) -> tuple[float, float]:
    """Overview click at pixel (x, y) -> crop centre as fractions of the width and height."""
    run = get_run(run_id)
    H, W = run.out_shape
    f = min(1.0, OVERVIEW_SIDE / max(H, W))
    w, h = max(1, round(W * f)), max(1, round(H * f))
    return float(np.clip((x + 0.5) / w, 0, 1)), float(np.clip((y + 0.5) / h, 0, 1))


# --- files -----------------------------------------------------------------------------------------

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
        zf.writestr("metrics.csv", run.table().to_csv(index=False), compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("README.md", report + "\n", compress_type=zipfile.ZIP_DEFLATED)
    return path


# --- the report ----------------------------------------------------------------------------------

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
                     "(skimage `estimate_sigma`, wavelet MAD, [0, 1] units), sharpness (variance of the Laplacian; "
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


# --- the endpoint ----------------------------------------------------------------------------------

def compare_file(
    file: Any,
    frame: Any = 0,
    window: Any = handlers.DEFAULT_WINDOW,
    models: Any = None,
    mode: Any = DEFAULT_MODE,
    reference: Any = None,
    degradation: Any = None,
    seed: Any = 0,
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
    path = handlers._upload_path(file)
    image, meta = handlers.load_image(path, frame, window)
    ref = handlers.load_image(reference, 0, window)[0] if mode_ == "reference" else None

    t0 = time.perf_counter()
    run = run_comparison(image, names, scale, reference=ref, mode=mode_, degradation=deg, seed=seed_,
                         progress=progress)
    with handlers._as_user_errors("writing the comparison", path):
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
