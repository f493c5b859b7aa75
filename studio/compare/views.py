"""Pictures of a run: galleries, the before/after slider pair, the synchronized zoom and its overview."""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from studio.compare import heatmap
from studio.compare.run import INPUT, REFERENCE, Run, get_run
from studio.ui import render


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
    if run.kinds.get(label) == "imported":  # another tool's result: no time measured here
        return f"{label} (imported)"
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
