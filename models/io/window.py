"""The VOI window: raw values (HU, stored values) to display values in [0, 1], and back.

Windowing uses the DICOM ``LINEAR_EXACT`` VOI function (PS3.3 C.11.2.1.3.2)::

    y = clip((x - center) / width + 0.5, 0, 1)

rather than the default ``LINEAR`` function (C.11.2.1.2.1). The two differ by
at most half a stored value at the window edges, which is invisible, but
``LINEAR_EXACT`` is defined for any positive width (float images use width 1)
and is exactly invertible, which :func:`display_to_raw` relies on.

Presets (:data:`WINDOW_PRESETS`) are (center, width) in raw units; ``"auto"`` uses percentiles of the
raw values and ``"full"`` their min..max.
"""

from __future__ import annotations

import math
from typing import Any, Union

import numpy as np

from models.io.meta import ImageMeta

#: Named CT windows as ``(center, width)`` in Hounsfield units.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "soft tissue": (40, 400),
    "lung": (-600, 1500),
    "bone": (480, 2500),
    "brain": (40, 80),
}


#: ``None`` (file default), ``"auto"``, ``"full"``, a preset name, or ``(center, width)``.
WindowSpec = Union[str, tuple[float, float], None]


# Percentiles of the "auto" window, and the sample size above which they are
# estimated on a strided subsample (exact percentiles of 80 Mpx cost seconds).
_AUTO_PERCENTILES = (0.5, 99.5)


_AUTO_SAMPLE = 2_000_000


def apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map raw values to display values with a linear window.

    Uses the DICOM ``LINEAR_EXACT`` VOI function (PS3.3 C.11.2.1.3.2):
    ``y = clip((x - center) / width + 0.5, 0, 1)``, i.e. ``center - width/2``
    maps to 0 and ``center + width/2`` to 1. (The default DICOM ``LINEAR``
    function shifts this by at most half a stored value.)

    Args:
        values: array of any shape and real dtype, in raw/modality units; finite.
        center: window center, same units as ``values``.
        width: window width (> 0), same units.

    Returns:
        float32 array of the same shape, values in [0, 1].
    """
    center, width = _check_window(center, width)
    lower = center - width / 2.0
    if max(abs(lower), width) > _FLOAT32_SAFE:
        # Only float images near the float32 limit (+-3.4e38) get such windows;
        # x - lower or the width itself would overflow float32 to inf (then NaN).
        out64 = (np.asarray(values, dtype=np.float64) - lower) / width
        return np.clip(out64, 0.0, 1.0).astype(np.float32)
    # (x - lower) / width is the same line as (x - c) / w + 0.5 but keeps
    # identity windows exact: (0.5, 1) on [0, 1] floats, x / 255 for uint8.
    out = np.asarray(values, dtype=np.float32) - np.float32(lower)
    out /= np.float32(width)
    return np.clip(out, 0.0, 1.0, out=out)


def _check_window(center: Any, width: Any) -> tuple[float, float]:
    try:
        c, w = float(center), float(width)
    except (TypeError, ValueError):
        raise ValueError(f"window center/width must be numbers, got {center!r}, {width!r}") from None
    if not (math.isfinite(c) and math.isfinite(w)) or w <= 0:
        raise ValueError(f"window needs a finite center and a width > 0, got ({c}, {w})")
    return c, w


def _normalise_window_name(name: str) -> str:
    return " ".join(name.strip().lower().replace("_", " ").replace("-", " ").split())


def _min_max_window(lo: float, hi: float) -> tuple[float, float]:
    """(center, width) mapping lo..hi to 0..1; width 1 for a constant image."""
    if not hi > lo:
        return float(lo), 1.0
    return (lo + hi) / 2.0, hi - lo


def _auto_window(values: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """0.5/99.5 percentile window of ``values`` (where ``mask`` is True)."""
    data = values[mask] if mask is not None else values.ravel()
    if data.size == 0:
        data = values.ravel()
    if data.size > _AUTO_SAMPLE:
        data = data[:: data.size // _AUTO_SAMPLE + 1]
    lo, hi = np.percentile(data, _AUTO_PERCENTILES)
    if not hi > lo:  # mostly flat image: fall back to min..max
        lo, hi = float(data.min()), float(data.max())
    return _min_max_window(float(lo), float(hi))


def _resolve_window(
    window: WindowSpec,
    values: np.ndarray,
    *,
    default: tuple[float, float, str] | None,
    mask: np.ndarray | None = None,
) -> tuple[float, float, str]:
    """Turn a window request into ``(center, width, source)``.

    Args:
        window: caller's request (see :func:`read_image`).
        values: raw/modality values the window applies to.
        default: what ``None`` means (the file's own window or the dtype
            range); ``None`` here means "auto".
        mask: optional True-where-valid mask (e.g. excluding DICOM padding)
            for the "auto" and "full" statistics.
    """
    if window is None:
        if default is not None:
            return default
        window = "auto"
    if isinstance(window, str):
        name = _normalise_window_name(window)
        if name == "auto":
            return (*_auto_window(values, mask), "auto")
        if name == "full":
            data = values[mask] if mask is not None and mask.any() else values
            return (*_min_max_window(float(data.min()), float(data.max())), "full")
        if name in WINDOW_PRESETS:
            c, w = WINDOW_PRESETS[name]
            return float(c), float(w), "preset"
        choices = ", ".join(["auto", "full", *WINDOW_PRESETS])
        raise ValueError(f"unknown window {window!r}; choose one of {choices} or a (center, width) pair")
    if isinstance(window, (tuple, list)) and len(window) == 2:
        c, w = _check_window(*window)
        return c, w, "explicit"
    raise ValueError(f"window must be None, a name or a (center, width) pair, got {window!r}")


def raw_value_range(meta: ImageMeta) -> tuple[float, float] | None:
    """Representable raw range of ``meta``'s stored data, or None for floats."""
    dtype = np.dtype(meta.raw_dtype)
    if dtype.kind == "f":
        return None
    info = np.iinfo(dtype)
    bits = min(int(meta.bits_stored), info.bits) if meta.bits_stored > 0 else info.bits
    if meta.raw_signed:
        return float(max(info.min, -(2 ** (bits - 1)))), float(min(info.max, 2 ** (bits - 1) - 1))
    return 0.0, float(min(info.max, 2**bits - 1))


def display_to_raw(image: np.ndarray, meta: ImageMeta) -> np.ndarray:
    """Map a display image back to stored pixel values of the source file.

    Inverts, in order: the MONOCHROME1 inversion, the window (linear, or the
    file's VOI LUT by interpolation) and the modality LUT (rescale slope /
    intercept, or the file's Modality LUT by interpolation), then rounds and
    clips to the stored range (``bits_stored``, signedness) and casts to
    ``meta.raw_dtype``. Used to write enhanced images back to DICOM.

    Values the window clipped when reading (raw values below
    ``center - width/2`` or above ``center + width/2``) came out as exactly 0
    or 1 and cannot be recovered: they map to the window edges. Inside the
    window the round trip is exact to within one stored value for
    ``width`` up to ~2**20. For colour sources the result is RGB samples, so an
    exporter must write PhotometricInterpretation ``RGB``.

    Args:
        image: float display image in [0, 1] (values outside are clipped),
            shape (H, W) for grayscale or (H, W, 3) for colour ``meta``; any
            H, W (it may have been upscaled).
        meta: the :class:`ImageMeta` returned with the original image.

    Returns:
        array of dtype ``meta.raw_dtype``, same shape as ``image``.

    Raises:
        ValueError: wrong shape for ``meta`` or non-finite values.
    """
    arr = np.asarray(image, dtype=np.float64)
    expected_ndim = 3 if meta.is_colour else 2
    if arr.ndim != expected_ndim or (meta.is_colour and arr.shape[-1] != 3):
        want = "(H, W, 3)" if meta.is_colour else "(H, W)"
        raise ValueError(f"image of shape {arr.shape} does not match the source; expected {want}")
    if not np.isfinite(arr).all():
        raise ValueError("image contains NaN or infinite values")
    display = np.clip(arr, 0.0, 1.0)
    if meta.inverted:
        display = 1.0 - display

    if meta.voi_lut_table is not None:
        domain, out = meta.voi_lut_table
        values = _invert_table(display, domain, out)
    else:
        values = (display - 0.5) * float(meta.window_width) + float(meta.window_center)

    if meta.modality_lut_table is not None:
        domain, out = meta.modality_lut_table
        stored = _invert_table(values, domain, out)
    else:
        slope = float(meta.rescale_slope) or 1.0
        stored = (values - float(meta.rescale_intercept)) / slope

    dtype = np.dtype(meta.raw_dtype)
    value_range = raw_value_range(meta)
    if value_range is None:
        return stored.astype(dtype)
    stored = np.clip(np.rint(stored), *value_range)
    return stored.astype(dtype)


def _invert_table(y: np.ndarray, domain: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Inverse of a sampled monotonic LUT ``out = f(domain)`` by interpolation."""
    out = np.asarray(out, dtype=np.float64)
    domain = np.asarray(domain, dtype=np.float64)
    if out.size > 1 and out[-1] < out[0]:  # decreasing LUT: flip to increasing
        out, domain = out[::-1], domain[::-1]
    if np.any(np.diff(out) < 0):
        raise ValueError("the file's LUT is not monotonic, so it cannot be inverted")
    return np.interp(y, out, domain)


# Window bounds beyond which float32 arithmetic in apply_window could overflow.
_FLOAT32_SAFE = 1e37
