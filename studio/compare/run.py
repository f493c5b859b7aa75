"""One comparison run: N models on one image, timed and scored against the reference (:class:`Run`)."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import gradio as gr
import numpy as np
import pandas as pd
from scipy import ndimage

from models import enhance, get_spec, model_card
from models.auto import ROUTES as AUTO_ROUTES
from models.auto import decide as auto_decide
from models.noise import estimate_sigma, measure_input, range_warning
from models.errors import WeightsError
from studio import handlers
from studio.compare.options import Degradation, check_reference
from studio.handlers.progress import TileProgress
from train import metrics
from train.degrade import compose, crop_to_multiple
from train.tasks import TASKS as TRAIN_TASKS

logger = logging.getLogger("medenhance.studio")

# --- choices -------------------------------------------------------------------------------


INPUT, REFERENCE = "input", "reference"


# --- numbers ---------------------------------------------------------------------------------

def no_reference_indicators(image: np.ndarray) -> dict[str, float]:
    """Indicators that need no reference. They describe an image; they do not say it is better.

    Args:
        image: float [0, 1], (H, W) or (H, W, 3).
    Returns:
        ``noise_sigma``: estimated noise sigma ([0, 1] units; :func:`models.noise.estimate_sigma`, the estimator
        the noise-aware models and the automatic entries use);
        ``sharpness``: variance of the Laplacian of the luma (noise raises it as well);
        ``rms_contrast``: standard deviation of the luma.
    """
    colour = image.ndim == 3
    luma = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) if colour else image.astype(np.float64)
    sigma = estimate_sigma(image)
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
    ``outputs`` maps a row label (the baseline first, then models in the order chosen, then results
    added from another tool, kind ``"imported"``) to its result; ``errors`` the same labels to
    |result - reference| (h*scale, w*scale) float32.
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
    input_note: str = ""  # what models.noise measured on the model input (one line)
    noise_warnings: list[str] = field(default_factory=list)  # models used far outside their training noise range

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
    imported: dict[str, np.ndarray] | None = None,
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
        imported: results made by another tool, method label -> float32 [0, 1] image of the output
            size (H*scale, W*scale[, 3]) (see :func:`studio.compare.imported.read_imported`); scored
            against the same reference and shown in the same views, kind ``"imported"``.
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
        with handlers.errors._as_user_errors("degrading the image"):
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

    measured = measure_input(run.input)
    run.input_note = measured.summary()
    runnable = []
    imported = dict(imported or {})
    for label, out in imported.items():
        if out.shape[:2] != run.out_shape:
            h, w = run.out_shape
            raise gr.Error(f"The result '{label}' is {out.shape[1]} × {out.shape[0]} px, but this comparison's "
                           f"results are {w} × {h} px (the model input × {scale}). Upload results of this input "
                           "at the output size.", title="Result of the wrong size", print_exception=False)
    for name in models:
        card = model_card(name)
        run.kinds[name] = card["kind"]
        warning = range_warning(name, get_spec(name).noise_range, measured.sigma)
        if warning:
            run.noise_warnings.append(warning)
        if card["kind"] == "network" and not card.get("weights_present"):
            run.notes[name] = "weights missing: not run"
        else:
            runnable.append(name)
    if not runnable and not imported:
        raise gr.Error(f"None of the chosen models can run yet (weights missing: {', '.join(models)}). "
                       "Choose a classical model or a network with trained weights.", title="Weights missing",
                       print_exception=False)

    base_label, base_fn = _baseline(scale)
    run.baseline = base_label
    run.kinds = {base_label: "baseline", **run.kinds}
    steps = len(runnable) + 2
    say(0.05, "baseline")
    t0 = time.perf_counter()
    with handlers.errors._as_user_errors("running the baseline"):
        run.outputs[base_label] = base_fn(run.input)
    run.seconds[base_label] = time.perf_counter() - t0
    for i, name in enumerate(runnable, start=1):
        say(i / steps, f"running {name} ({i}/{len(runnable)})")
        out = None
        with handlers.errors._as_user_errors(f"running {name}"):
            try:
                if run.kinds[name] == "network":
                    # Warm-up on a corner: weights load and kernels initialise outside the timing,
                    # so "seconds / image" is steady-state inference for every row alike.
                    enhance(np.ascontiguousarray(run.input[:16, :16]), name)
                # Tiles done / total and an estimate within this model's share of the bar; an exception
                # from say (the tab's Stop) leaves the tile loop at once.
                share = _model_share(say, i, steps, f"({i}/{len(runnable)}) ")
                t0 = time.perf_counter()
                out = enhance(run.input, name, progress=TileProgress(share, name))
                seconds = time.perf_counter() - t0
            except WeightsError as e:  # present but unreadable: a note on its row, the others still run
                run.notes[name] = f"weights error: {handlers.errors._scrub(str(e), None)}"
        if out is not None:
            run.outputs[name], run.seconds[name] = out, seconds
            if name in AUTO_ROUTES:  # the row says what the automatic entry measured and ran
                run.notes[name] = auto_decide(run.input, name).summary()
    for label, out in imported.items():  # another tool's results: no time, scored like every row
        run.kinds[label] = "imported"
        run.outputs[label] = out
        run.notes[label] = "result uploaded from another tool"
    if len(run.outputs) == 1:  # only the baseline: every chosen model failed to load
        raise gr.Error("None of the chosen models could run: " + "; ".join(f"{n}: {m}" for n, m in run.notes.items()),
                       title="Model not available", print_exception=False)
    say((steps - 1) / steps, "scoring")
    _score(run)
    return run


def _model_share(say: Callable[[float, str], Any], i: int, steps: int,
                 prefix: str) -> Callable[[int, int, str], None]:
    """``report(done, total, text)`` for model ``i``: its tiles fill the bar from ``i / steps`` to ``(i+1) / steps``."""
    return lambda done, total, text: say((i + done / max(total, 1)) / steps, prefix + text)


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


