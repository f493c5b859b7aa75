"""DICOM pixel values to display values: modality LUT, VOI window or LUT, MONOCHROME1, colour and palettes.

Called by :func:`models.io.dicom.read_dicom` on one decoded frame; returns the studio convention
(float32 in [0, 1], (H, W) or (H, W, 3)) and the :class:`~models.io.meta.ImageMeta` that records the
mapping, so :func:`models.io.window.display_to_raw` can invert it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models.errors import ImageReadError
from models.io.limits import _first_line, finalise_image
from models.io.meta import ImageMeta
from models.io.window import WindowSpec, _auto_window, _resolve_window, apply_window


def _frame_item(ds: Any, frame: int, sequence: str) -> Any:
    """Item of functional-group macro ``sequence`` for ``frame`` (enhanced multi-frame).

    Per-frame groups win over shared ones (PS3.3 C.7.6.16); returns None for
    classic images that carry the attributes at the top level.
    """
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame),
                          ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items and index < len(items):
            inner = items[index].get(sequence)
            if inner:
                return inner[0]
    return None


def _first_float(value: Any) -> float | None:
    """First value of a (possibly multi-valued) DS element as float, or None."""
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, (str, bytes)) and hasattr(value, "__len__"):
            if len(value) == 0:
                return None
            value = value[0]
        out = float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return out if np.isfinite(out) else None


def _rescale(ds: Any, frame: int) -> tuple[float, float] | None:
    """(slope, intercept) of the frame, or None if the file has no rescale."""
    for source in (ds, _frame_item(ds, frame, "PixelValueTransformationSequence")):
        if source is None:
            continue
        slope = _first_float(source.get("RescaleSlope"))
        intercept = _first_float(source.get("RescaleIntercept"))
        if slope is not None or intercept is not None:
            slope = 1.0 if slope in (None, 0.0) else slope
            return slope, intercept or 0.0
    return None


def _file_window(ds: Any, frame: int) -> tuple[float, float] | None:
    """First WindowCenter/WindowWidth pair of the frame, or None (absent or width <= 0)."""
    for source in (ds, _frame_item(ds, frame, "FrameVOILUTSequence")):
        if source is None:
            continue
        center = _first_float(source.get("WindowCenter"))
        width = _first_float(source.get("WindowWidth"))
        if center is not None and width is not None and width > 0:
            return center, width
    return None


def _pixel_spacing(ds: Any, frame: int) -> tuple[float, float] | None:
    """(row, column) spacing in mm; PixelSpacing, then per-frame, then ImagerPixelSpacing."""
    measures = _frame_item(ds, frame, "PixelMeasuresSequence")
    candidates = ((ds, "PixelSpacing"), (measures, "PixelSpacing"), (ds, "ImagerPixelSpacing"))
    for source, keyword in candidates:
        if source is None:
            continue
        value = source.get(keyword)
        try:
            spacing = (float(value[0]), float(value[1]))
        except (TypeError, ValueError, IndexError):
            continue
        # Some writers put 0 or garbage here (e.g. pydicom's RG1 test file has 0.000).
        if all(np.isfinite(s) and s > 0 for s in spacing):
            return spacing
    return None


def _stored_range(ds: Any, arr: np.ndarray) -> tuple[int, bool]:
    """(bits stored, signed) of the stored pixel values."""
    bits = int(ds.get("BitsStored", 0) or 0) or arr.dtype.itemsize * 8
    signed = arr.dtype.kind == "i" or int(ds.get("PixelRepresentation", 0) or 0) == 1
    return bits, signed


def _sample_lut(apply: Any, ds: Any, descriptor: Any, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Sample a LUT on its whole input domain via pydicom's own ``apply`` function.

    Letting pydicom evaluate the LUT handles its encodings (US/SS/OW data,
    the 0 == 65536 entries convention, signed first-mapped values); the sampled
    (domain, output) pair is then used to apply it to float values and to
    invert it in :func:`models.io.display_to_raw`.
    """
    entries = int(descriptor[0]) or 65536
    first = int(descriptor[1])
    domain = np.arange(first, first + entries, dtype=np.int64)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        domain = domain[(domain >= info.min) & (domain <= info.max)]
    out = np.asarray(apply(domain.astype(dtype), ds), dtype=np.float64)
    return domain.astype(np.float64), out


def _grayscale_image(
    arr: np.ndarray, ds: Any, frame: int, window: WindowSpec, common: dict[str, Any], *, inverted: bool
) -> tuple[np.ndarray, ImageMeta]:
    from pydicom.pixels import apply_modality_lut, apply_voi

    notes: list[str] = []
    bits, signed = _stored_range(ds, arr)
    # Pixel padding (e.g. -2000 outside a CT's circular field of view) would
    # drag the "auto" window far below the anatomy, so it is left out.
    mask = None
    padding = ds.get("PixelPaddingValue")
    if isinstance(padding, int) and arr.dtype.kind in "iu":
        mask = arr != padding
        if mask.all() or not mask.any():
            mask = None

    slope, intercept, mlut_kind, mlut_table = 1.0, 0.0, "none", None
    if "ModalityLUTSequence" in ds and arr.dtype.kind in "iu":
        item = ds.ModalityLUTSequence[0]
        try:
            mlut_table = _sample_lut(apply_modality_lut, ds, item.LUTDescriptor, arr.dtype)
            values = np.interp(arr, *mlut_table).astype(np.float32)
            mlut_kind = "lut"
        except Exception as exc:  # malformed LUT: show stored values rather than fail
            mlut_table = None
            values = arr.astype(np.float32)
            notes.append(f"Modality LUT ignored: {_first_line(exc)}")
    else:
        rescale = _rescale(ds, frame) if arr.dtype.kind in "iu" else None
        values = arr.astype(np.float32)
        if rescale is not None:
            slope, intercept = rescale
            mlut_kind = "rescale"
            # float32 in place: float64 (pydicom's default) doubles peak memory
            # on big radiographs for no visible gain.
            if slope != 1.0:
                values *= np.float32(slope)
            if intercept != 0.0:
                values += np.float32(intercept)

    raw_min, raw_max = float(values.min()), float(values.max())
    if not (math.isfinite(raw_min) and math.isfinite(raw_max)):
        raise ImageReadError(
            f"the DICOM rescale (slope {slope:g}, intercept {intercept:g}) makes the pixel values overflow; "
            "the header is corrupt"
        )

    voi_table = None
    default = None
    file_window = _file_window(ds, frame)
    if file_window is not None:
        default = (*file_window, "dicom")
        function = str(ds.get("VOILUTFunction", "") or "").upper()
        if function == "SIGMOID":
            notes.append("VOI LUT function SIGMOID shown with a linear window")
    if window is None and file_window is None and "VOILUTSequence" in ds:
        voi_table = _voi_lut_table(ds, apply_voi, notes)

    if voi_table is not None:
        domain, out = voi_table
        display = np.interp(values, domain, out).astype(np.float32)
        center, width = float(domain[0] + domain[-1]) / 2.0, float(domain[-1] - domain[0]) or 1.0
        source = "voi_lut"
    else:
        center, width, source = _resolve_window(window, values, default=default, mask=mask)
        display = apply_window(values, center, width)
    if inverted:
        display = np.subtract(np.float32(1.0), display, out=display)

    image = finalise_image(display)
    meta = ImageMeta(
        shape=tuple(image.shape),
        bits_stored=bits,
        raw_dtype=str(arr.dtype),
        raw_signed=signed,
        raw_min=raw_min,
        raw_max=raw_max,
        rescale_slope=slope,
        rescale_intercept=intercept,
        modality_lut=mlut_kind,
        window_center=center,
        window_width=width,
        window_source=source,
        inverted=inverted,
        is_colour=False,
        notes=notes,
        modality_lut_table=mlut_table,
        voi_lut_table=voi_table,
        **common,
    )
    return image, meta


def _voi_lut_table(
    ds: Any, apply_voi: Any, notes: list[str]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The file's first VOI LUT sampled as (input domain, output in [0, 1]), or None."""
    try:
        descriptor = ds.VOILUTSequence[0].LUTDescriptor
        domain, out = _sample_lut(apply_voi, ds, descriptor, np.dtype(np.int32))
        out_bits = int(descriptor[2]) or 16
        # Some writers declare 16 output bits but fill 12: never exceed 1.0.
        scale = max(float(2**out_bits - 1), float(out.max()) if out.size else 1.0)
        return domain, out / scale
    except Exception as exc:
        notes.append(f"VOI LUT ignored: {_first_line(exc)}")
        return None


def _colour_image(
    arr: np.ndarray,
    ds: Any,
    window: WindowSpec,
    common: dict[str, Any],
    *,
    bits: int | None = None,
    notes: list[str] | None = None,
) -> tuple[np.ndarray, ImageMeta]:
    """RGB samples (already converted from YBR by pydicom) to a display image.

    ``bits`` overrides BitsStored (palette output depth differs from the indices').
    """
    notes = list(notes or [])
    if arr.shape[-1] == 4:  # RGBA from a palette with alpha
        arr = arr[..., :3]
        notes.append("alpha channel dropped")
    if bits is None:
        bits, signed = _stored_range(ds, arr)
    else:
        signed = False
    values = arr.astype(np.float32)
    raw_min, raw_max = float(values.min()), float(values.max())
    if arr.dtype.kind == "f":
        in_unit_range = raw_min >= 0 and raw_max <= 1
        default = (0.5, 1.0, "dtype") if in_unit_range else (*_auto_window(values), "auto")
    else:
        top = float(2 ** min(bits, arr.dtype.itemsize * 8) - 1)
        default = (top / 2.0, top, "dtype")
    center, width, source = _resolve_window(window, values, default=default)
    image = finalise_image(apply_window(values, center, width))
    meta = ImageMeta(
        shape=tuple(image.shape),
        bits_stored=bits,
        raw_dtype=str(arr.dtype),
        raw_signed=signed,
        raw_min=raw_min,
        raw_max=raw_max,
        window_center=center,
        window_width=width,
        window_source=source,
        is_colour=True,
        notes=notes,
        **common,
    )
    return image, meta


def _palette_image(
    arr: np.ndarray, ds: Any, window: WindowSpec, common: dict[str, Any]
) -> tuple[np.ndarray, ImageMeta]:
    """PALETTE COLOR: look the indices up in the file's palette, then treat as RGB."""
    from pydicom.pixels import apply_color_lut

    try:
        rgb = apply_color_lut(arr, ds)
    except Exception as exc:
        raise ImageReadError(f"could not apply the DICOM colour palette: {_first_line(exc)}") from None
    bits = 8 if rgb.dtype == np.uint8 else 16
    return _colour_image(rgb, ds, window, common, bits=bits, notes=["palette colour expanded to RGB"])
