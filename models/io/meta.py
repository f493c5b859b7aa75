""":class:`ImageMeta`: where an image's pixels came from and how they were mapped to [0, 1].

The reader fills it; :func:`models.io.window.display_to_raw` and the DICOM export use it to map an
(enhanced, possibly upscaled) display image back to stored pixel values.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ImageMeta:
    """Provenance of an image returned by :func:`read_image`.

    Raw values are *modality* values: stored pixel values after the DICOM
    modality LUT (e.g. Hounsfield units for CT); for non-DICOM files and DICOM
    without a modality LUT they equal the stored values. For colour sources
    (RGB, YBR_*, PALETTE COLOR, colour PNG/JPEG) "raw" means the RGB samples
    after colour conversion / palette lookup.

    ``window_source`` is one of ``"dicom"`` (WindowCenter/Width of the file),
    ``"voi_lut"`` (VOI LUT Sequence of the file; center/width then describe the
    LUT's input range), ``"preset"``, ``"auto"`` (0.5/99.5 percentiles),
    ``"full"`` (raw min..max), ``"explicit"`` (caller's ``(center, width)``) or
    ``"dtype"`` (full range of the stored data type: /255 for 8-bit, /65535 for
    16-bit; the default for plain images and colour DICOM).
    """

    source_format: str
    shape: tuple[int, ...]
    modality: str = ""
    photometric: str = ""
    bits_stored: int = 8
    bits_allocated: int = 8
    raw_dtype: str = "uint8"
    raw_signed: bool = False
    raw_min: float = 0.0
    raw_max: float = 0.0
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    modality_lut: str = "none"  # "none" | "rescale" | "lut"
    window_center: float = 127.5
    window_width: float = 255.0
    window_source: str = "dtype"
    inverted: bool = False
    frame_count: int = 1
    frame: int = 0
    pixel_spacing: tuple[float, float] | None = None
    is_colour: bool = False
    transfer_syntax: str = ""
    sop_class: str = ""
    notes: list[str] = field(default_factory=list)
    # Sampled LUTs as (domain, output) pairs, kept only to invert them in
    # display_to_raw; not part of to_dict() (arrays, and not user-facing).
    modality_lut_table: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )
    voi_lut_table: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )

    _PRIVATE = ("modality_lut_table", "voi_lut_table")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of the public fields (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in self._PRIVATE:
                continue
            out[f.name] = _jsonable(getattr(self, f.name))
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value
