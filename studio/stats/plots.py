"""Small bar charts drawn with Pillow (no plotting dependency): what the analysis needs, no more.

* :func:`bar_chart`: grouped bars with optional error bars (MOS with CIs, win rates, agreement);
* :func:`stacked_chart`: 100 % stacked bars (distribution of scores per model).

Both return a PIL RGB image; save it with ``image.save(path)``.
"""

from __future__ import annotations

import math
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

# Colour-blind-safe palette (Okabe & Ito 2008).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
# Sequential blues for ordered categories (score 1 ... 5).
SEQUENTIAL = ["#d7301f", "#fc8d59", "#fdcc8a", "#9ecae1", "#3182bd"]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _text_w(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return right - left


def _frame(width: int, height: int, title: str) -> tuple[Image.Image, ImageDraw.ImageDraw, dict]:
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    fonts = {"title": _font(18), "label": _font(13), "small": _font(11)}
    draw.text((width // 2 - _text_w(draw, title, fonts["title"]) // 2, 10), title, fill="black", font=fonts["title"])
    return img, draw, fonts


def _axes(draw: ImageDraw.ImageDraw, fonts: dict, box: tuple[int, int, int, int], y_range: tuple[float, float],
          y_label: str, ticks: Sequence[float]) -> callable:
    """Draw the y axis with grid lines; returns value -> pixel row."""
    x0, y0, x1, y1 = box
    lo, hi = y_range

    def ypix(v: float) -> float:
        v = min(max(v, lo), hi)
        return y1 - (v - lo) / (hi - lo) * (y1 - y0)

    for t in ticks:
        y = ypix(t)
        draw.line([(x0, y), (x1, y)], fill="#e0e0e0")
        label = f"{t:g}"
        draw.text((x0 - 6 - _text_w(draw, label, fonts["small"]), y - 7), label, fill="black", font=fonts["small"])
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill="black")
    draw.text((8, y0 - 22), y_label, fill="black", font=fonts["label"])
    return ypix


def _ticks(lo: float, hi: float) -> list[float]:
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / 4)) if span > 0 else 1
    for mult in (1, 2, 2.5, 5, 10):
        if span / (step * mult) <= 6:
            step *= mult
            break
    start = math.ceil(lo / step) * step
    return [round(start + i * step, 10) for i in range(int((hi - start) / step + 1e-9) + 1)]


def bar_chart(
    categories: Sequence[str],
    series: dict[str, Sequence[float]],
    errors: dict[str, Sequence[tuple[float, float]]] | None = None,
    title: str = "",
    y_label: str = "",
    y_range: tuple[float, float] = (0.0, 1.0),
    reference: float | None = None,
    width: int = 900,
    height: int = 420,
) -> Image.Image:
    """Grouped bars: one group per category, one bar per series, optional (low, high) error bars.

    NaN values draw no bar. ``reference`` draws a dashed horizontal line (e.g. 0.5 for win rates).
    """
    img, draw, fonts = _frame(width, height, title)
    names = list(series)
    legend_h = 24 if len(names) > 1 else 0
    box = (60, 60, width - 20, height - 60 - legend_h)
    ypix = _axes(draw, fonts, box, y_range, y_label, _ticks(*y_range))
    x0, y0, x1, y1 = box
    n_cat = max(1, len(categories))
    group_w = (x1 - x0) / n_cat
    bar_w = max(2.0, group_w * 0.8 / max(1, len(names)))
    for ci, cat in enumerate(categories):
        gx = x0 + ci * group_w + group_w * 0.1
        for si, name in enumerate(names):
            v = series[name][ci]
            if v is None or not math.isfinite(v):
                continue
            bx = gx + si * bar_w
            colour = PALETTE[si % len(PALETTE)]
            draw.rectangle([bx, ypix(v), bx + bar_w - 2, ypix(y_range[0])], fill=colour)
            if errors and name in errors:
                lo, hi = errors[name][ci]
                if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
                    cx = bx + (bar_w - 2) / 2
                    draw.line([(cx, ypix(lo)), (cx, ypix(hi))], fill="black", width=2)
                    for yv in (lo, hi):
                        draw.line([(cx - 4, ypix(yv)), (cx + 4, ypix(yv))], fill="black", width=2)
        label = str(cat)
        draw.text((x0 + ci * group_w + group_w / 2 - _text_w(draw, label, fonts["label"]) / 2, y1 + 8), label,
                  fill="black", font=fonts["label"])
    if reference is not None:
        yr = ypix(reference)
        for xs in range(int(x0), int(x1), 12):
            draw.line([(xs, yr), (min(xs + 6, x1), yr)], fill="#555555", width=1)
    if legend_h:
        lx = x0
        for si, name in enumerate(names):
            draw.rectangle([lx, height - 28, lx + 12, height - 16], fill=PALETTE[si % len(PALETTE)])
            draw.text((lx + 16, height - 30), name, fill="black", font=fonts["label"])
            lx += 28 + _text_w(draw, name, fonts["label"])
    return img


def stacked_chart(
    categories: Sequence[str],
    fractions: Sequence[Sequence[float]],
    levels: Sequence[str] = ("1", "2", "3", "4", "5"),
    title: str = "",
    width: int = 900,
    height: int = 420,
) -> Image.Image:
    """100 % stacked bars: ``fractions[i][j]`` = share of level j in category i (rows sum to 1)."""
    img, draw, fonts = _frame(width, height, title)
    box = (60, 60, width - 20, height - 84)
    ypix = _axes(draw, fonts, box, (0.0, 1.0), "share", [0, 0.25, 0.5, 0.75, 1.0])
    x0, y0, x1, y1 = box
    n_cat = max(1, len(categories))
    group_w = (x1 - x0) / n_cat
    for ci, cat in enumerate(categories):
        bx = x0 + ci * group_w + group_w * 0.2
        acc = 0.0
        for li, frac in enumerate(fractions[ci]):
            if frac <= 0:
                continue
            colour = SEQUENTIAL[li % len(SEQUENTIAL)] if len(levels) <= len(SEQUENTIAL) else PALETTE[li % len(PALETTE)]
            draw.rectangle([bx, ypix(acc + frac), bx + group_w * 0.6, ypix(acc)], fill=colour, outline="white")
            acc += frac
        label = str(cat)
        draw.text((x0 + ci * group_w + group_w / 2 - _text_w(draw, label, fonts["label"]) / 2, y1 + 8), label,
                  fill="black", font=fonts["label"])
    lx = x0
    for li, name in enumerate(levels):
        colour = SEQUENTIAL[li % len(SEQUENTIAL)] if len(levels) <= len(SEQUENTIAL) else PALETTE[li % len(PALETTE)]
        draw.rectangle([lx, height - 32, lx + 12, height - 20], fill=colour)
        draw.text((lx + 16, height - 34), name, fill="black", font=fonts["label"])
        lx += 28 + _text_w(draw, name, fonts["label"])
    return img
