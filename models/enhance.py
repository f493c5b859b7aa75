"""The one service function the UI, training, evaluation and scripts call: :func:`enhance`."""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import torch

from .colour import apply_on_luma
from .device import default_device, forward_tiled, pick_plan
from .ensemble import TRANSFORMS, self_ensemble
from .errors import InvalidImageError, InvalidOptionError, UnknownModelError
from .loading import load_network
from .registry import ModelSpec, get_spec
from .resample import to_numpy, to_tensor, upscale
from .tiling import Progress

# Largest input and output accepted (pixels per channel). A 2048x2048 image at
# x4 gives 67 Mpx; beyond ~270 Mpx one float32 RGB output alone is > 3 GB.
MAX_INPUT_PIXELS = int(os.environ.get("MEDENHANCE_MAX_PIXELS", 80_000_000))
MAX_OUTPUT_PIXELS = int(os.environ.get("MEDENHANCE_MAX_OUTPUT_PIXELS", 270_000_000))

# Output pixels per tile side; keeps one tile's activations at tens of MB.
DEFAULT_TILE_OUTPUT = 512


def validate_image(image: Any) -> np.ndarray:
    """Check the image convention and return a C-contiguous float32 copy-free view.

    Accepts float arrays of shape (H, W) or (H, W, 3) with finite values in
    [0, 1] (tiny rounding overshoot is clipped) and H, W >= 2.

    Raises:
        InvalidImageError: anything else, with a message saying what is wrong.
    """
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"expected a numpy array, got {type(image).__name__}")
    if not np.issubdtype(image.dtype, np.floating):
        raise InvalidImageError(
            f"expected float32 values in [0, 1], got dtype {image.dtype}; divide integer images by their maximum"
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise InvalidImageError(f"expected shape (H, W) or (H, W, 3), got {image.shape}")
    h, w = image.shape[:2]
    if h < 2 or w < 2:
        raise InvalidImageError(f"image is {w}x{h}; at least 2x2 pixels are needed")
    if h * w > MAX_INPUT_PIXELS:
        raise InvalidImageError(f"image has {h * w:,} pixels; the limit is {MAX_INPUT_PIXELS:,}")
    image = np.ascontiguousarray(image, dtype=np.float32)
    if not np.isfinite(image).all():
        raise InvalidImageError("image contains NaN or infinite values")
    lo, hi = float(image.min()), float(image.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InvalidImageError(f"values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    if lo < 0 or hi > 1:
        image = np.clip(image, 0.0, 1.0)
    return image


def enhance(
    image: np.ndarray,
    model_name: str,
    *,
    device: str | None = None,
    tile: int | None = None,
    strength: float = 1.0,
    ensemble: bool = False,
    noise_level: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> np.ndarray:
    """Run a registered model (network or classical baseline) on one image.

    Args:
        image: float32 in [0, 1], shape (H, W) or (H, W, 3).
        model_name: a name from :func:`models.list_models`.
        device: ``"cpu"``, ``"cuda"``, ...; default: CUDA when present.
        tile: networks only: input tile size in pixels (default: tiles whose
            output is 512 px a side); smaller tiles bound memory further.
        strength: in [0, 1]; blends the result with what the model started
            from: 1 = the model's output, 0 = the input (for super-resolution
            the input enlarged by bicubic interpolation). A reader may want a
            denoiser's output at 0.7 to keep some of the original grain.
        ensemble: average the model's outputs over the 8 rotations and flips
            of the input (geometric self-ensemble, :mod:`models.ensemble`):
            8x the time for a slightly lower error; an average of the model's own
            answers, so it adds no structure that a single pass does not.
        noise_level: noise-aware networks (``noise_aware``) only: the noise sigma in [0, 1] units
            they are conditioned on, instead of the one :mod:`models.noise` estimates on the whole image.
        progress: called as ``progress(done, total)``: networks once before the first tile and after
            every tile (the self-ensemble counts 8x the tiles), classical methods at start and end.
            An exception raised by it stops the run and propagates (how the studio cancels).
        **options: classical baselines' documented options (e.g. ``sigma`` for
            non-local means), overriding the registered defaults.
    Returns:
        float32 in [0, 1] of shape (H*scale, W*scale) or (H*scale, W*scale, 3).
    Raises:
        InvalidImageError: the image breaks the convention or is too large.
        UnknownModelError: no such model, or an option it does not take.
        InvalidOptionError: ``strength`` outside [0, 1].
    """
    if not 0.0 <= strength <= 1.0:  # also refuses NaN
        raise InvalidOptionError(f"strength must lie in [0, 1], got {strength!r}")
    spec = get_spec(model_name)
    image = validate_image(image)
    h, w = image.shape[:2]
    if h * w * spec.scale**2 > MAX_OUTPUT_PIXELS:
        raise InvalidImageError(
            f"{spec.name} would produce {h * w * spec.scale**2:,} pixels; the limit is {MAX_OUTPUT_PIXELS:,}"
        )
    if spec.fn is not None:  # classical baselines and automatic entries
        if noise_level is not None:  # automatic entries pass it on to their noise-aware model
            if "noise_level" not in spec.options:
                raise InvalidOptionError(f"{spec.name} takes no noise_level")
            options = {**options, "noise_level": noise_level}
        run_one = lambda im, say: _run_classical(spec, im, options, say)  # noqa: E731
    else:
        if options:
            raise UnknownModelError(f"{spec.name} takes no options, got {sorted(options)}")
        dev = device or default_device()
        run_one = lambda im, say: _run_network(spec, im, dev, tile, noise_level, say)  # noqa: E731
    if ensemble:
        passes = iter(range(len(TRANSFORMS)))
        out = self_ensemble(lambda im: run_one(im, _nth_pass(progress, next(passes), len(TRANSFORMS))), image)
    else:
        out = run_one(image, progress)
    # In place: a whole CR at x4 is 230 MB, and a clipped copy of it cost 0.8 s of a 9 s run.
    out = np.asarray(out, dtype=np.float32)
    if not out.flags.writeable or np.may_share_memory(out, image):  # never write into the caller's image
        out = out.copy()
    np.clip(out, 0.0, 1.0, out=out)
    if strength < 1.0:
        start = upscale(image, spec.scale) if spec.scale > 1 else image
        out = np.clip(start + np.float32(strength) * (out - start), 0.0, 1.0).astype(np.float32, copy=False)
    return out


def _nth_pass(progress: Progress | None, k: int, n: int) -> Progress | None:
    """Progress of pass ``k`` of ``n`` equal passes (the self-ensemble) as a share of all of them."""
    if progress is None:
        return None
    return lambda done, total: progress(k * total + done, n * total)


def _run_classical(spec: ModelSpec, image: np.ndarray, options: dict[str, Any],
                   progress: Progress | None = None) -> np.ndarray:
    unknown = set(options) - set(spec.options)
    if unknown:
        raise UnknownModelError(f"{spec.name} does not take {sorted(unknown)}; options: {sorted(spec.options)}")
    kwargs = {**spec.options, **options}
    if spec.task == "sr":
        kwargs["scale"] = spec.scale
    if spec.auto:  # it runs networks through enhance: they report the progress
        return spec.fn(image, **kwargs, progress=progress)
    if progress:
        progress(0, 1)
    out = spec.fn(image, **kwargs)
    if progress:
        progress(1, 1)
    return out


def _run_network(spec: ModelSpec, image: np.ndarray, device: str, tile: int | None,
                 noise_level: float | None = None, progress: Progress | None = None) -> np.ndarray:
    module = load_network(spec, device)
    if noise_level is not None and not getattr(module, "noise_aware", False):
        raise InvalidOptionError(f"{spec.name} is not noise-aware; noise_level applies to noise-aware models only")
    if noise_level is not None and not 0.0 <= noise_level <= 1.0:  # also refuses NaN
        raise InvalidOptionError(f"noise_level must lie in [0, 1], got {noise_level!r}")
    colour = image.ndim == 3
    if colour and spec.in_channels == 1:
        # Grayscale network on a colour image: model on luma, chroma bicubic (SR) or kept.
        chroma = (lambda c: upscale(c, spec.scale)) if spec.scale > 1 else None
        return apply_on_luma(image, lambda y: _run_planes(spec, module, y, device, tile, noise_level, progress),
                             chroma)
    return _run_planes(spec, module, image, device, tile, noise_level, progress)


def _run_planes(spec: ModelSpec, module: torch.nn.Module, image: np.ndarray, device: str, tile: int | None,
                noise_level: float | None = None, progress: Progress | None = None) -> np.ndarray:
    """Tiled forward pass of an image whose channels match the module, or a grayscale image on a colour module.

    A grayscale image goes into a colour module as three equal channels, and
    the mean of the three output channels comes back. That is done on tensors:
    the NumPy way (repeat, HWC transposes, a mean over a last axis of 3) cost
    ~230 ms at 2048 x 2048 on a 2-core CPU, about four times the whole
    grayscale network's time on an H100.

    If a tile runs out of memory, the tile size is halved (down to 32 px) and
    the image is redone; on CUDA the last resort is the CPU.
    """
    tile = tile or max(DEFAULT_TILE_OUTPUT // spec.scale, 16)
    x = to_tensor(image)
    grey_in_colour = image.ndim == 2 and spec.in_channels == 3
    if grey_in_colour:
        x = x.expand(-1, 3, -1, -1)  # a view: each tile is materialised on its way to the device
    while True:
        try:
            out = _tiled(spec, module, x, device, tile, noise_level, progress)
            return to_numpy(out.mean(1, keepdim=True) if grey_in_colour else out, image.ndim == 3)
        except torch.OutOfMemoryError:
            if tile > 32:
                tile //= 2
            elif device != "cpu":
                device, module = "cpu", load_network(spec, "cpu")
            else:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def _tiled(spec: ModelSpec, module: torch.nn.Module, x: torch.Tensor, device: str, tile: int,
           noise_level: float | None = None, progress: Progress | None = None) -> torch.Tensor:
    plan = pick_plan(spec.name, module, device)
    kwargs = {}
    if getattr(module, "global_stats", False):
        # Image-level statistics come from the whole image, not each tile, so tiles agree.
        with torch.no_grad():
            kwargs["stats"] = module.image_stats(x.to(device))
            if noise_level is not None:  # a level given by the user replaces the estimate
                kwargs["stats"] = torch.full_like(kwargs["stats"], float(noise_level))
    return forward_tiled(module, x, plan, device, spec.scale, tile, kwargs=kwargs, progress=progress)
