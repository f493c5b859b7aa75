"""Turning model cards, image metadata and images into things a browser shows.

Pure functions: dicts -> markdown strings, [0, 1] float arrays -> 8-bit PIL
images. No gradio and no model calls here, so every function is unit-testable.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from PIL import Image

from models.io.export import to_uint

TASK_TITLES = {"sr": "super-resolution", "denoise": "denoising", "enhance": "contrast enhancement"}


# --- small formatters ---------------------------------------------------------------

def format_duration(seconds: float) -> str:
    """``0.0123`` -> ``"12.3 ms"``, ``2.5`` -> ``"2.50 s"``, ``75`` -> ``"1 min 15 s"``."""
    if seconds < 1.0:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60.0:
        return f"{seconds:.2f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def _num(x: Any, digits: int = 4) -> str:
    """A number for a table: ints as ints, floats with ``digits`` significant digits; ``-`` if absent."""
    if x is None or isinstance(x, bool):
        return "-" if x is None else str(x)
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(f):
        return str(f)
    if f == int(f) and abs(f) < 1e6:
        return str(int(f))
    return f"{f:.{digits}g}"


def _title(task: str, scale: int) -> str:
    name = TASK_TITLES.get(task, task)
    return f"{name} ×{scale}" if task == "sr" else name


# --- model cards --------------------------------------------------------------------

def _score_row(split: str, s: Mapping[str, Any]) -> str | None:
    """One table row from a card's ``val`` / ``test_*`` dict; None when it has no PSNR.

    Both ``train.fit`` and ``train.evaluate`` store the reference they were
    compared with under ``"baseline"`` ({psnr, ssim[, model]}), and its name
    under ``"baseline_name"`` (fit) or ``baseline["model"]`` (evaluate).
    """
    if not isinstance(s, Mapping) or "psnr" not in s:
        return None
    base = s.get("baseline") if isinstance(s.get("baseline"), Mapping) else {}
    b_name = s.get("baseline_name") or base.get("model") or "-"
    b_psnr, b_ssim = base.get("psnr"), base.get("ssim")
    try:
        gain_txt = f"{float(s['psnr']) - float(b_psnr):+.2f}"
    except (TypeError, ValueError):
        gain_txt = "-"
    n = s.get("images")
    label = f"{split} ({n} images)" if n else split
    return (f"| {label} | {_num(s.get('psnr'))} | {_num(s.get('ssim'))} | {b_name} | {_num(b_psnr)} | "
            f"{_num(b_ssim)} | {gain_txt} |")


def scores_markdown(metadata: Mapping[str, Any]) -> str:
    """Validation, held-out test and other-site scores next to their baseline, as a markdown table ('' if none).

    Rows: ``val`` (model selection), ``test_*`` (held-out patients), ``external_*`` (other sites' images,
    never used for training or selection).
    """
    splits = ([k for k in metadata if k == "val"] + sorted(k for k in metadata if k.startswith("test"))
              + sorted(k for k in metadata if k.startswith("external")))
    rows = [r for split in splits if (r := _score_row(split, metadata.get(split, {})))]
    if not rows:
        return ""
    head = ("| split | PSNR (dB) | SSIM | baseline | baseline PSNR | baseline SSIM | Δ PSNR (dB) |\n"
            "|---|---|---|---|---|---|---|")
    return head + "\n" + "\n".join(rows)


def data_markdown(metadata: Mapping[str, Any]) -> str:
    """One line saying what a network learned from: data set, image and patient counts, degradation."""
    t = metadata.get("training", {}) if isinstance(metadata.get("training"), Mapping) else {}
    parts = []
    if t.get("data_name"):
        data = str(t["data_name"])
        if t.get("train_images"):
            data += f", {t['train_images']} training images"
            if t.get("train_patients"):
                data += f" from {t['train_patients']} patients"
        if t.get("val_images"):
            data += f"; {t['val_images']} validation images"
        parts.append(data)
    if t.get("degradation"):
        parts.append(f"degradation: {t['degradation']}")
    return "; ".join(parts)


def training_markdown(metadata: Mapping[str, Any]) -> str:
    """How a network was trained (architecture, schedule, machine, history), as a bullet list."""
    t = metadata.get("training", {}) if isinstance(metadata.get("training"), Mapping) else {}
    items = []
    if metadata.get("arch"):
        p = metadata.get("params")
        items.append(f"architecture {metadata['arch']}" + (f", {int(p):,} parameters" if isinstance(p, (int, float)) else ""))
    if t.get("steps"):
        opt = f"{t['steps']} steps"
        for key, label in (("batch", "batch"), ("patch", "patch"), ("lr", "lr"), ("loss", "loss")):
            if t.get(key) is not None:
                opt += f", {label} {t[key]}"
        items.append(opt)
    if t.get("device") or t.get("wall_seconds"):
        items.append(f"trained on {t.get('device', '?')} in {format_duration(float(t.get('wall_seconds') or 0))}")
    if metadata.get("created"):
        items.append(f"created {metadata['created']}")
    if t.get("notes"):
        items.append(f"history: {t['notes']}")
    return "\n".join(f"- {i}" for i in items)


def card_markdown(card: Mapping[str, Any], heading: str = "###") -> str:
    """A model card (from :func:`models.model_card`) as markdown for a radiologist.

    In order: a short summary, the data it learned from, its measured scores, where it fails;
    the training history (schedules, stages, machines) last, folded behind "Training details".
    """
    kind = card.get("kind", "?")
    parts = [f"{heading} {card.get('name', '?')} — {kind}, {_title(card.get('task', '?'), int(card.get('scale', 1)))}",
             str(card.get("summary", ""))]
    details = ""
    if kind == "network":
        if not card.get("weights_present"):
            parts.append(f"**Weights not available yet** (`{card.get('weights', '?')}` missing): this model cannot run until it is trained.")
        meta = card.get("metadata") or {}
        if card.get("metadata_error"):
            parts.append(f"Weights metadata unreadable: {card['metadata_error']}")
        if meta:
            data = data_markdown(meta)
            if data:
                parts.append("**Data**: " + data)
            sc = scores_markdown(meta)
            if sc:
                parts.append("**Measured scores** (val: model selection; test: held-out patients; external: other "
                             "sites, never trained on)\n\n" + sc)
            else:
                parts.append("No validation/test scores recorded in the weights file.")
            tr = training_markdown(meta)
            if tr:
                # HTML <details> folds in Gradio's Markdown and on GitHub alike.
                details = "<details><summary>Training details</summary>\n\n" + tr + "\n\n</details>"
    elif kind == "auto":
        if not card.get("weights_present"):
            parts.append("**Weights not available yet**: this automatic entry cannot run until its networks and probe "
                         "are trained.")
        probe = f" and the degradation probe `{card['probe']}`" if card.get("probe") else ""
        parts.append("Automatic entry: chooses among " + ", ".join(f"`{m}`" for m in card.get("members", []))
                     + probe + " per image; the report says what it measured and ran.")
        val = (card.get("metadata") or {}).get("val") or {}
        rows = [(t, v) for t, v in val.items() if isinstance(v, dict) and "auto" in v]
        if rows:
            table = "\n".join(f"| {t} | {v.get('bicubic', 0):.2f} | {v.get('clean', 0):.2f} | {v.get('noisy', 0):.2f} "
                              f"| {v.get('auto', 0):.2f} |" for t, v in rows)
            parts.append("**Probe validation** (validation patients; PSNR dB)\n\n| input | baseline | first model | "
                         "noise-aware | automatic |\n|---|---|---|---|---|\n" + table)
    else:
        opts = card.get("options") or {}
        if opts:
            parts.append("Options: " + ", ".join(f"`{k}={v}`" for k, v in opts.items()))
        parts.append("Classical method: no training, no learned weights.")
    if card.get("fails"):
        parts.append("**Where it fails**: " + str(card["fails"]))
    parts.append(details)
    return "\n\n".join(p for p in parts if p)


def models_overview_markdown(cards: list[Mapping[str, Any]]) -> str:
    """The "About models" tab: a summary table, then every card."""
    head = ("| model | kind | task | ready | val PSNR (dB) | baseline (dB) |\n"
            "|---|---|---|---|---|---|")
    rows = []
    for c in cards:
        val = (c.get("metadata") or {}).get("val", {}) if c.get("kind") == "network" else {}
        bic = val.get("baseline", {}) if isinstance(val.get("baseline"), Mapping) else {}
        ready = "yes" if c.get("kind") == "classical" or c.get("weights_present") else "weights missing"
        rows.append(f"| `{c.get('name')}` | {c.get('kind')} | {_title(c.get('task', '?'), int(c.get('scale', 1)))} | "
                    f"{ready} | {_num(val.get('psnr'))} | {_num(bic.get('psnr'))} |")
    body = "\n\n---\n\n".join(card_markdown(c) for c in cards)
    return "## Registered models\n\n" + head + "\n" + "\n".join(rows) + "\n\n---\n\n" + body


# --- image metadata -----------------------------------------------------------------

WINDOW_SOURCES = {
    "dicom": "the file's window",
    "voi_lut": "the file's VOI LUT",
    "preset": "preset",
    "auto": "auto, 0.5–99.5 percentiles",
    "full": "full range, min…max",
    "explicit": "custom",
    "dtype": "full range of the data type",
}


def meta_markdown(meta: Mapping[str, Any]) -> str:
    """Image metadata (``ImageMeta.to_dict()``) as markdown bullets a radiologist can check.

    Shows modality, size, bits, raw value range (HU for CT), the display window
    and where it came from, MONOCHROME1 inversion, frames, pixel spacing and
    the reader's notes (conversions it made).
    """
    shape = meta.get("shape") or ()
    size = f"{shape[1]} × {shape[0]} px" if len(shape) >= 2 else "?"
    colour = "colour" if meta.get("is_colour") else "grayscale"
    fmt = str(meta.get("source_format") or "?")
    is_dicom = fmt.lower() == "dicom"
    modality = str(meta.get("modality") or "")
    head = f"**{modality}**, DICOM" if is_dicom and modality else f"**{fmt.upper()}**"
    lines = [f"- {head}, {size}, {colour}"]
    bits = meta.get("bits_stored")
    if bits:
        lines.append(f"- {bits} bits stored" + (f" ({meta['raw_dtype']})" if meta.get("raw_dtype") else ""))
    if meta.get("raw_min") is not None and meta.get("raw_max") is not None:
        slope, icpt = meta.get("rescale_slope"), meta.get("rescale_intercept")
        lut = meta.get("modality_lut", "none")
        # Raw values are modality values: Hounsfield units for CT once the rescale is applied.
        unit = " HU" if modality.upper() == "CT" and lut != "none" else ""
        line = f"- Value range: {_num(meta['raw_min'], 6)} … {_num(meta['raw_max'], 6)}{unit}"
        if lut == "rescale":
            sign, off = ("−", -float(icpt)) if float(icpt or 0) < 0 else ("+", float(icpt or 0))
            line += f" (stored × {_num(slope)} {sign} {_num(off)})"
        elif lut == "lut":
            line += " (through the file's modality LUT)"
        lines.append(line)
    wc, ww = meta.get("window_center"), meta.get("window_width")
    if wc is not None and ww is not None:
        src = meta.get("window_source")
        src_txt = WINDOW_SOURCES.get(src, src) if src else ""
        lines.append(f"- Window used: centre {_num(wc, 6)}, width {_num(ww, 6)}" + (f" ({src_txt})" if src_txt else ""))
    photometric = meta.get("photometric")
    if meta.get("inverted"):
        lines.append(f"- {photometric or 'MONOCHROME1'}: inverted for display (low values shown bright, as the modality intends)")
    elif photometric and is_dicom:
        lines.append(f"- Photometric interpretation: {photometric}")
    frames = meta.get("frame_count") or 1
    if frames > 1:
        lines.append(f"- Frame {int(meta.get('frame') or 0)} of {frames} (numbered 0…{frames - 1})")
    spacing = meta.get("pixel_spacing")
    if spacing:
        try:
            r, c = (float(v) for v in spacing)
            if r > 0 and c > 0:  # some writers put 0 for "unknown"
                lines.append(f"- Pixel spacing: {r:.4g} × {c:.4g} mm (row × column)")
        except (TypeError, ValueError):
            lines.append(f"- Pixel spacing: {spacing}")
    for note in meta.get("notes") or []:
        lines.append(f"- Note: {note}")
    return "\n".join(lines)


# --- DICOM header and de-identification ------------------------------------------------

DEID_NOTE = ("Header de-identified on upload (DICOM PS3.15 basic profile subset): names, IDs, institution and "
             "free text removed or replaced, dates shifted, UIDs remapped, private tags removed. "
             "The studio only ever uses this de-identified copy.")


def _warning_lines(warnings: list[str]) -> list[str]:
    return [f"> ⚠️ **{w}**" for w in warnings]


def deid_markdown(warnings: list[str]) -> str:
    """What de-identification did, plus its warnings (burned-in text) as block quotes."""
    return "\n\n".join([f"- {DEID_NOTE}", *_warning_lines(warnings)])


def _cell(text: str) -> str:
    """A value shown literally inside a markdown table cell (no emphasis, links, HTML or broken rows)."""
    text = " ".join(str(text).split())
    for ch in "\\`*_[]<>|#":  # backslash first, so the escapes added after stay single
        text = text.replace(ch, "\\" + ch)
    return text or "—"


def header_markdown(rows: list[tuple[str, str]], warnings: list[str] | None = None) -> str:
    """The de-identified DICOM header as a two-column markdown table, warnings first."""
    parts = _warning_lines(list(warnings or []))
    if rows:
        table = "| Attribute | Value |\n|---|---|\n" + "\n".join(f"| {_cell(k)} | {_cell(v)} |" for k, v in rows)
        parts.append(table)
    else:
        parts.append("No public attributes to show.")
    return "\n\n".join(parts)


# --- images -------------------------------------------------------------------------

def to_display(image: np.ndarray) -> Image.Image:
    """[0, 1] float (H, W) or (H, W, 3) -> 8-bit PIL image ("L" or "RGB") for the browser."""
    data = to_uint(image, 8)
    return Image.fromarray(data)  # mode inferred: 2-D uint8 -> "L", (H, W, 3) uint8 -> "RGB"


def preview_pair(
    before: np.ndarray, after: np.ndarray, max_side: int = 2048
) -> tuple[Image.Image, Image.Image, str]:
    """Same-size 8-bit previews of an input and its result for a before/after slider.

    Args:
        before: the model input, float [0, 1], (h, w[, 3]).
        after: the model output, float [0, 1], (H, W[, 3]) with H, W >= h, w.
        max_side: longest preview side; larger results are area-downsampled
            (only the preview: the download keeps full resolution).
    Returns:
        (before PIL, after PIL, a sentence saying how they were resized).
    """
    oh, ow = after.shape[:2]
    ih, iw = before.shape[:2]
    f = min(1.0, max_side / max(oh, ow))
    pw, ph = max(1, round(ow * f)), max(1, round(oh * f))
    b, a = to_display(before), to_display(after)
    notes = []
    if (pw, ph) != (ow, oh):
        # BOX = area average: the honest way to shrink (no ringing, no aliasing).
        a = a.resize((pw, ph), Image.Resampling.BOX)
        notes.append(f"Preview downsampled from {ow} × {oh} to {pw} × {ph} px (area average); "
                     "the download has full resolution.")
    if (pw, ph) != (iw, ih):
        if pw % iw == 0 and ph % ih == 0:
            # Integer factor: nearest neighbour shows each input pixel as a block, i.e. what the input really holds.
            b = b.resize((pw, ph), Image.Resampling.NEAREST)
            notes.append(f"Before: input enlarged ×{pw // iw} with nearest neighbour (each input pixel is a block).")
        elif pw > iw:
            b = b.resize((pw, ph), Image.Resampling.BICUBIC)
            notes.append(f"Before: input ({iw} × {ih}) enlarged to {pw} × {ph} with bicubic interpolation.")
        else:
            b = b.resize((pw, ph), Image.Resampling.BOX)
            notes.append(f"Before: input ({iw} × {ih}) reduced to {pw} × {ph} (area average).")
    return b, a, " ".join(notes)
