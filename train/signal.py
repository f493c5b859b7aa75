"""The detector-signal domain: where realistic degradations happen, and its display mapping.

A radiograph's stored pixel values are (taken here as) linear in the detector
signal, and the studio's reader shows them through a display mapping: modality
LUT (rescale), the VOI window or VOI LUT, then MONOCHROME1 inversion
(:func:`models.read_image`). Detector noise and blur happen *before* that
mapping, so the realistic degradations (:mod:`train.realistic`) work on the
**signal** ``s`` and only then map to display values:

* ``s`` is float32 in [0, 1]: the stored value normalised over the detector's
  full range (``bits_stored``, after rescale), oriented so that 1 means most
  exposure (most photons, darkest on screen). MONOCHROME1 stores exposure as
  is; MONOCHROME2 is stored inverted, so ``s = 1 - u`` there.
* The display mapping is a monotone table ``(xs, ys)`` in signal units,
  ``display = interp(s, xs, ys)`` (clamped at its ends, like the window). A
  linear DICOM window is the two-point table ``([lo, hi], [1, 0])``, i.e.
  ``1 - clip((s - lo) / (hi - lo), 0, 1)``; a VOI LUT is sampled as the reader
  samples it. It is built from the reader's own :class:`models.ImageMeta`
  (window centre/width, VOI LUT table, inversion), so ``to_display(signal)``
  reproduces ``read_image(path)``'s image (pinned by tests/test_realistic.py).
* 8-bit or 16-bit PNGs carry no raw values: their display value is taken as
  linear in attenuation, ``s = 1 - display`` with the table ``([0, 1], [1, 0])``
  (:data:`PNG_TABLE`), so a PNG round-trips exactly.

Why a table and not the reader's functions: image I/O is imported only through
``from models import read_image, ImageMeta`` (the reader's modules are being
reorganised); the table is derived from that metadata, and the tests compare
it with ``read_image`` itself on MONOCHROME1/2, rescaled and windowed files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models import ImageMeta, read_image

Table = tuple[np.ndarray, np.ndarray]  # (xs increasing, ys) in signal units -> display [0, 1]

PNG_TABLE: Table = (np.array([0.0, 1.0]), np.array([1.0, 0.0]))


@dataclass
class SignalImage:
    """One training/evaluation image in the detector-signal domain.

    ``signal``: (H, W) float32 in [0, 1] (see module docstring); ``table``:
    the display mapping; ``raw``: the modality values it came from (float32,
    raw units; None for PNGs); ``meta``: the reader's metadata of the default
    display; ``id``: file stem.
    """

    id: str
    signal: np.ndarray
    table: Table
    raw: np.ndarray | None = None
    meta: ImageMeta | None = None

    @property
    def window(self) -> tuple[float, float]:
        """(lo, hi) of a linear two-point table (display 1 at lo, 0 at hi); ValueError for a VOI LUT."""
        xs, ys = self.table
        if len(xs) != 2 or not (ys[0] == 1.0 and ys[1] == 0.0):
            raise ValueError(f"{self.id}: display mapping is a {len(xs)}-point VOI LUT, not a linear window")
        return float(xs[0]), float(xs[1])

    def display(self) -> np.ndarray:
        """The clean display image, (H, W) float32 in [0, 1]."""
        return to_display(self.signal, self.table)


def to_display(signal: np.ndarray, table: Table) -> np.ndarray:
    """Display values of ``signal`` (any shape, signal units) through ``table``; float32 in [0, 1]."""
    xs, ys = table
    out = np.interp(np.asarray(signal, dtype=np.float64), xs, ys)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def to_display_tensor(signal: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Batched linear window: (N, C, H, W) signal, (N, 2) [lo, hi] -> display ``1 - clip((s - lo)/(hi - lo))``."""
    lo = window[:, 0].view(-1, 1, 1, 1).to(signal)
    hi = window[:, 1].view(-1, 1, 1, 1).to(signal)
    return 1.0 - ((signal - lo) / (hi - lo)).clamp(0.0, 1.0)


def signal_of_display(image: np.ndarray) -> SignalImage:
    """A display image without raw values (PNG; colour -> luma mean) as a signal image, ``s = 1 - x``."""
    img = image.mean(axis=-1, dtype=np.float32) if image.ndim == 3 else image
    return SignalImage("", (1.0 - img).astype(np.float32), PNG_TABLE)


def detector_range(meta: ImageMeta) -> tuple[float, float]:
    """(r0, r1): modality values of the smallest and largest storable value (bits stored, rescale)."""
    bits = int(meta.bits_stored) or np.dtype(meta.raw_dtype).itemsize * 8
    lo, hi = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if meta.raw_signed else (0.0, 2.0**bits - 1)
    slope, intercept = float(meta.rescale_slope) or 1.0, float(meta.rescale_intercept)
    a, b = sorted((lo * slope + intercept, hi * slope + intercept))
    return a, max(b, a + 1.0)


def _raw_values(image_full: np.ndarray, meta_full: ImageMeta) -> np.ndarray:
    """Modality values behind a ``window="full"`` read: undo the min..max window and the inversion.

    float32 keeps 24 bits, so 16-bit stored values come back to within ~0.002
    and are rounded to the stored grid (rescaled files: to slope steps).
    """
    d = image_full.astype(np.float64)
    d = 1.0 - d if meta_full.inverted else d
    lower = meta_full.window_center - meta_full.window_width / 2.0
    values = d * meta_full.window_width + lower
    if np.dtype(meta_full.raw_dtype).kind in "iu" and meta_full.modality_lut != "lut":
        slope, intercept = float(meta_full.rescale_slope) or 1.0, float(meta_full.rescale_intercept)
        values = np.rint((values - intercept) / slope) * slope + intercept
    return values.astype(np.float32)


def table_for(meta: ImageMeta) -> Table:
    """The display mapping of ``meta`` (the reader's default display) in signal units."""
    r0, r1 = detector_range(meta)
    span = r1 - r0
    if meta.voi_lut_table is not None:
        domain, out = (np.asarray(a, dtype=np.float64) for a in meta.voi_lut_table)
        u = (domain - r0) / span
        ys = 1.0 - out if meta.inverted else out
    else:
        lower = meta.window_center - meta.window_width / 2.0
        u = np.array([lower, lower + meta.window_width]) - r0
        u = u / span
        ys = np.array([1.0, 0.0]) if meta.inverted else np.array([0.0, 1.0])
    xs = u if meta.inverted else 1.0 - u  # MONOCHROME2: s = 1 - u reverses the axis
    order = np.argsort(xs, kind="stable")
    return xs[order], ys[order]


def load_signal(path: str | Path) -> SignalImage:
    """Read one image file as a :class:`SignalImage` through the studio reader.

    DICOM (grayscale): raw modality values kept at full precision (16-bit
    stored values exact), signal normalised over the detector range, display
    table from the file's own window / VOI LUT / MONOCHROME1 as ``read_image``
    shows it. Other files: :func:`signal_of_display`.
    """
    path = Path(path)
    image, meta = read_image(path)
    if meta.source_format.lower() != "dicom" or meta.is_colour:
        s = signal_of_display(image)
        return SignalImage(path.stem, s.signal, s.table, meta=meta)
    full, meta_full = read_image(path, window="full")
    raw = _raw_values(full, meta_full)
    r0, r1 = detector_range(meta)
    u = (raw.astype(np.float64) - r0) / (r1 - r0)
    signal = (u if meta.inverted else 1.0 - u).astype(np.float32)
    return SignalImage(path.stem, signal, table_for(meta), raw=raw, meta=meta)


def resize_signal(im: SignalImage, max_side: int) -> SignalImage:
    """``im`` with its signal downscaled (antialiased bicubic, aspect kept) to a longer side <= ``max_side``.

    Resampling happens in the signal domain (as a detector with larger pixels
    would record it), the display table is unchanged; raw values are dropped.
    """
    from models.resample import bicubic_resize_tensor, to_numpy, to_tensor

    h, w = im.signal.shape
    if not max_side or max(h, w) <= max_side:
        return im
    f = max_side / max(h, w)
    with torch.no_grad():
        small = bicubic_resize_tensor(to_tensor(im.signal), (max(1, round(h * f)), max(1, round(w * f))))
    return SignalImage(im.id, to_numpy(small.clamp(0, 1), False), im.table, meta=im.meta)
