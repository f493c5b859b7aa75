"""Error heat maps: a built-in "inferno" colour map and a labelled scale bar drawn into the image.

matplotlib is not a dependency, so the colour map is a table here: 33 anchors
of matplotlib's ``inferno`` (Smith & van der Walt, CC0; perceptually uniform,
readable in grayscale print and by most colour-blind readers), taken at LUT
indices 0, 8, ..., 248, 255 and linearly interpolated to 256 entries (at most
2/255 from the original). Pure numpy + Pillow; no gradio, no models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# RGB (0..255) of matplotlib's inferno at LUT indices 0, 8, 16, ..., 248 and 255.
_INFERNO_ANCHORS = np.array([
    (0, 0, 4), (4, 3, 18), (11, 7, 36), (21, 11, 55), (33, 12, 74), (47, 10, 91), (61, 9, 101), (74, 12, 107),
    (87, 16, 110), (100, 21, 110), (113, 25, 110), (125, 30, 109), (138, 34, 106), (151, 39, 102), (163, 44, 97),
    (176, 49, 91), (188, 55, 84), (199, 62, 76), (210, 70, 68), (219, 80, 59), (228, 90, 49), (235, 102, 40),
    (241, 115, 29), (246, 128, 19), (249, 142, 9), (251, 157, 7), (252, 172, 17), (251, 188, 33), (249, 203, 53),
    (245, 219, 76), (242, 234, 105), (243, 246, 138), (252, 255, 164),
], dtype=np.float64)
_ANCHOR_AT = np.r_[np.arange(0, 256, 8), 255]

#: (256, 3) uint8 lookup table: index 0 = lowest value (near black), 255 = highest (pale yellow).
INFERNO: np.ndarray = np.stack(
    [np.interp(np.arange(256), _ANCHOR_AT, _INFERNO_ANCHORS[:, c]) for c in range(3)], axis=-1
).round().astype(np.uint8)

# Maps narrower than this are enlarged (nearest neighbour, whole factor) so the bar's labels fit.
MIN_WIDTH = 256


def lut_index(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Values -> colour-table indices 0..255 (linear between ``vmin`` and ``vmax``, clipped outside)."""
    if not vmax > vmin:
        raise ValueError(f"vmax must exceed vmin, got {vmin} .. {vmax}")
    t = np.clip((np.asarray(values, dtype=np.float64) - vmin) / (vmax - vmin), 0.0, 1.0)
    return np.rint(t * 255).astype(np.uint8)


def colourize(values: np.ndarray, vmin: float, vmax: float, lut: np.ndarray = INFERNO) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 RGB through ``lut``; NaN counts as ``vmin``."""
    return lut[lut_index(np.nan_to_num(values, nan=vmin), vmin, vmax)]


@dataclass(frozen=True)
class HeatmapLayout:
    """Where things are in a :func:`heatmap_with_scale_bar` image (pixel boxes ``(x0, y0, x1, y1)``, end-exclusive).

    ``map_box`` holds the colour-mapped values, each value pixel drawn as a
    ``factor`` x ``factor`` block; ``bar_box`` holds the scale bar, whose
    column ``x0 + i`` shows the colour of value ``vmin + (vmax - vmin) * i / (width - 1)``.
    """

    map_box: tuple[int, int, int, int]
    bar_box: tuple[int, int, int, int]
    factor: int
    vmin: float
    vmax: float


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except (TypeError, OSError):  # older Pillow / no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def format_value(v: float) -> str:
    """A scale-bar label: 3 significant digits (``0.0123``, ``0.5``, ``1.2e-05``)."""
    return f"{v:.3g}"


def heatmap_with_scale_bar(values: np.ndarray, vmin: float, vmax: float, title: str = "absolute error",
                           clipped_above: bool = False) -> tuple[Image.Image, HeatmapLayout]:
    """Colour-map ``values`` and draw a scale bar with its min/max values above the map.

    Above rather than below: galleries overlay their captions on an image's bottom edge.

    Args:
        values: (H, W) float array (e.g. ``|result - reference|`` in [0, 1] display units).
        vmin, vmax: values shown as the first / last colour; values outside are clipped.
        title: caption printed between the two bar labels (when it fits).
        clipped_above: some values exceed ``vmax``; the max label then reads ``>= vmax``.
    Returns:
        (RGB PIL image, :class:`HeatmapLayout` saying where the map and the bar are).
    """
    if values.ndim != 2:
        raise ValueError(f"expected an (H, W) array, got shape {values.shape}")
    h, w = values.shape
    factor = max(1, -(-MIN_WIDTH // w))  # ceil: small maps get whole-pixel blocks, never interpolation
    rgb = colourize(values, vmin, vmax)
    if factor > 1:
        rgb = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
    mh, mw = h * factor, w * factor

    # Text ~1/20 of the width stays legible when a gallery shows the map a quarter of the page wide.
    font_px = int(np.clip(mw // 20, 11, 40))
    font = _font(font_px)
    pad = max(4, font_px // 3)
    bar_h = max(8, (2 * font_px) // 3)
    text_y = pad
    bar_y0 = text_y + (5 * font_px) // 4 + pad // 2
    map_y0 = bar_y0 + bar_h + pad
    canvas = Image.new("RGB", (mw, map_y0 + mh), (0, 0, 0))
    canvas.paste(Image.fromarray(rgb, "RGB"), (0, map_y0))

    x0, x1 = pad, mw - pad
    ramp = INFERNO[np.rint(np.linspace(0, 255, x1 - x0)).astype(int)]  # (bar width, 3)
    canvas.paste(Image.fromarray(np.repeat(ramp[None], bar_h, axis=0), "RGB"), (x0, bar_y0))

    draw = ImageDraw.Draw(canvas)
    lo_txt = format_value(vmin)
    hi_txt = (">= " if clipped_above else "") + format_value(vmax)  # ASCII: Pillow's default font has no "≥"
    draw.text((x0, text_y), lo_txt, fill=(255, 255, 255), font=font)
    hi_w = draw.textlength(hi_txt, font=font)
    draw.text((x1 - hi_w, text_y), hi_txt, fill=(255, 255, 255), font=font)
    lo_w = draw.textlength(lo_txt, font=font)
    title_w = draw.textlength(title, font=font)
    if title and x0 + lo_w + title_w + 2 * pad < x1 - hi_w:  # only when it fits between the labels
        draw.text(((mw - title_w) / 2, text_y), title, fill=(200, 200, 200), font=font)
    layout = HeatmapLayout(map_box=(0, map_y0, mw, map_y0 + mh), bar_box=(x0, bar_y0, x1, bar_y0 + bar_h),
                           factor=factor, vmin=float(vmin), vmax=float(vmax))
    return canvas, layout
