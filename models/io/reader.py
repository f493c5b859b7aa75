"""Read medical and plain image files into the studio's display convention.

Every reader returns ``(image, meta)``:

* ``image``: ``np.float32``, C-contiguous, finite, values in ``[0, 1]``, shape
  ``(H, W)`` for grayscale or ``(H, W, 3)`` for RGB. It is *display-ready*: the
  modality LUT (DICOM rescale, e.g. to Hounsfield units), the VOI window and the
  MONOCHROME1 inversion are already applied, so 0 is black and 1 is white.
* ``meta``: an :class:`ImageMeta` saying where the pixels came from and which
  window was used, so :func:`display_to_raw` can map an (enhanced, possibly
  upscaled) display image back to stored pixel values for DICOM export.

Supported inputs: DICOM (via pydicom; compressed transfer syntaxes via the
pylibjpeg plugins, see :mod:`models.io.dicom`) and everything Pillow opens (PNG,
JPEG, TIFF, BMP, GIF, WebP). Anything that cannot be read raises
:class:`~models.errors.ImageReadError` with a message meant for a human.

Size guards: :mod:`models.io.limits`; windowing: :mod:`models.io.window`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from models.errors import ImageReadError
from models.io.limits import _check_file, display_name
from models.io.meta import ImageMeta
from models.io.raster import _NotAnImage, _read_pillow
from models.io.window import WindowSpec

__all__ = ["read_image"]


def read_image(
    path: str | os.PathLike[str], frame: int = 0, window: WindowSpec = None
) -> tuple[np.ndarray, ImageMeta]:
    """Read an image file into a display-ready array.

    Args:
        path: a DICOM file (with or without the 128-byte preamble, any
            extension) or an image Pillow can open (PNG, JPEG, TIFF, BMP, ...).
        frame: 0-based frame (DICOM multi-frame) or page (multi-page TIFF,
            animated GIF) to return.
        window: how raw values map to [0, 1]:

            * ``None``: the file's own window (DICOM WindowCenter/Width, first
              value, else the VOI LUT Sequence), else ``"auto"`` for grayscale
              DICOM; the full range of the data type for plain images and
              colour DICOM (uint8 / 255, uint16 / 65535; float images already
              within [0, 1] are kept, other floats are min-max scaled).
            * ``"auto"``: the 0.5 and 99.5 percentiles of the raw values
              (DICOM pixel padding excluded).
            * ``"full"``: raw min..max (DICOM pixel padding excluded).
            * a :data:`WINDOW_PRESETS` name (``"soft tissue"``, ``"lung"``,
              ``"bone"``, ``"brain"``), as (center, width) in raw units (HU).
            * ``(center, width)``: explicit window in raw units.

    Returns:
        ``(image, meta)``: image float32 in [0, 1], shape (H, W) or (H, W, 3),
        C-contiguous; meta an :class:`ImageMeta`. Plain RGB images whose three
        channels are identical are returned as (H, W) grayscale (noted in
        ``meta.notes``); DICOM colour images are always (H, W, 3). Alpha is
        dropped; palette images are expanded; 16-bit grayscale PNG/TIFF keep
        16 bits, but Pillow reduces 16-bit-per-channel RGB to 8 bits.

    Raises:
        ImageReadError: the file is missing, empty, too large, not an image,
            corrupt or truncated, has no pixel data, an out-of-range frame,
            fewer than 2x2 pixels or non-finite values.
        ValueError: ``window`` is not one of the accepted forms.
    """
    path = Path(os.fspath(path))
    _check_file(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise ImageReadError(f"cannot read {display_name(path)}: {exc.strerror or exc}") from None

    if head[128:132] == b"DICM":
        from models.io.dicom import read_dicom

        return read_dicom(path, frame, window)

    try:
        return _read_pillow(path, frame, window)
    except _NotAnImage:
        pass
    if _looks_like_headerless_dicom(head):
        from models.io.dicom import read_dicom

        return read_dicom(path, frame, window, force=True)
    raise ImageReadError(
        f"{display_name(path)} is not a recognised image: expected DICOM, PNG, JPEG, TIFF or BMP "
        f"(file starts with {head[:8]!r})"
    )


def _looks_like_headerless_dicom(head: bytes) -> bool:
    """True if ``head`` could start a DICOM dataset without preamble/'DICM'.

    Such files (old ACR-NEMA style exports) start directly with a group 0x0002
    or 0x0008 tag, little or big endian; anything else (text, ZIP, ...) is
    rejected without handing it to pydicom's forgiving ``force=True`` parser.
    """
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


