"""Image I/O: reading uploads (DICOM and plain images), writing results, DICOM export and de-identification.

One job per module, no module importing one that imports it back:

* :mod:`.limits`: size guards and bounded reads (file bytes, pixel counts, frames, printable names);
* :mod:`.meta`: :class:`ImageMeta`, where the pixels came from and how they were mapped to [0, 1];
* :mod:`.window`: the VOI window (``LINEAR_EXACT``), its presets, and the way back (:func:`display_to_raw`);
* :mod:`.raster`: PNG, JPEG, TIFF, BMP through Pillow; :mod:`.dicom`: DICOM through pydicom;
* :mod:`.reader`: :func:`read_image`, which picks one of the two;
* :mod:`.export`: PNG output (8 or 16 bit); :mod:`.dicom_export`: derived DICOMs with provenance;
* :mod:`.deid`: DICOM de-identification (PS3.15 basic profile subset) and the header panel's rows.

Import order is one-way: ``limits, meta -> window -> raster, dicom -> reader``; ``dicom_export`` and
``deid`` sit on top. :mod:`models` re-exports :func:`read_image` and :class:`ImageMeta`.
"""

from models.errors import printable

from .limits import MAX_FILE_BYTES, MAX_PIXELS, MIN_SIDE, BoundedFile, display_name, max_file_bytes, max_pixels
from .meta import ImageMeta
from .reader import read_image
from .window import WINDOW_PRESETS, WindowSpec, apply_window, display_to_raw, raw_value_range

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "WINDOW_PRESETS",
    "BoundedFile",
    "ImageMeta",
    "WindowSpec",
    "apply_window",
    "display_name",
    "display_to_raw",
    "max_file_bytes",
    "max_pixels",
    "printable",
    "raw_value_range",
    "read_image",
]
