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
pylibjpeg plugins, see :mod:`models.dicom`) and everything Pillow opens (PNG,
JPEG, TIFF, BMP, GIF, WebP). Anything that cannot be read raises
:class:`~models.errors.ImageReadError` with a message meant for a human.

Windowing uses the DICOM ``LINEAR_EXACT`` VOI function (PS3.3 C.11.2.1.3.2)::

    y = clip((x - center) / width + 0.5, 0, 1)

rather than the default ``LINEAR`` function (C.11.2.1.2.1). The two differ by
at most half a stored value at the window edges, which is invisible, but
``LINEAR_EXACT`` is defined for any positive width (float images use width 1)
and is exactly invertible, which :func:`display_to_raw` relies on.

Size guards (checked before any pixel is decoded): empty files, files larger
than :data:`MAX_FILE_BYTES` (env ``MEDENHANCE_MAX_FILE_BYTES``) and images with
more than :data:`MAX_PIXELS` pixels per frame (env ``MEDENHANCE_MAX_PIXELS``)
are refused, as are images smaller than 2x2.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from models.errors import ImageReadError, printable

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
    "read_image",
]

_DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024
_DEFAULT_MAX_PIXELS = 80_000_000  # ~8944 x 8944; a float32 frame is then 320 MB
_ENV_MAX_FILE_BYTES = "MEDENHANCE_MAX_FILE_BYTES"
_ENV_MAX_PIXELS = "MEDENHANCE_MAX_PIXELS"


def _env_int(name: str, default: int) -> int:
    """Positive integer from environment variable ``name``, else ``default``."""
    text = os.environ.get(name, "").strip().replace("_", "")
    try:
        value = int(text)
    except ValueError:
        return default
    return value if value > 0 else default


#: Largest accepted file size in bytes (import-time value; see :func:`max_file_bytes`).
MAX_FILE_BYTES: int = _env_int(_ENV_MAX_FILE_BYTES, _DEFAULT_MAX_FILE_BYTES)
#: Largest accepted number of pixels per frame (import-time value; see :func:`max_pixels`).
MAX_PIXELS: int = _env_int(_ENV_MAX_PIXELS, _DEFAULT_MAX_PIXELS)
#: Smallest accepted image side in pixels.
MIN_SIDE = 2

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


def max_file_bytes() -> int:
    """Current file size limit: env ``MEDENHANCE_MAX_FILE_BYTES`` if set, else :data:`MAX_FILE_BYTES`.

    Read on every call so the limit can be changed without re-importing.
    """
    return _env_int(_ENV_MAX_FILE_BYTES, MAX_FILE_BYTES)


def max_pixels() -> int:
    """Current per-frame pixel limit: env ``MEDENHANCE_MAX_PIXELS`` if set, else :data:`MAX_PIXELS`."""
    return _env_int(_ENV_MAX_PIXELS, MAX_PIXELS)


# --------------------------------------------------------------------------- meta


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


# -------------------------------------------------------------------- messages

_MAX_NAME_CHARS = 80


def display_name(path: str | os.PathLike[str]) -> str:
    """A file's name as messages show it: control characters escaped, at most 80 characters."""
    name = printable(Path(os.fspath(path)).name)
    if len(name) <= _MAX_NAME_CHARS:
        return name
    return name[: _MAX_NAME_CHARS - 21] + "…" + name[-20:]  # keep the extension visible


# ------------------------------------------------------------------ bounded reads


class BoundedFile(io.BufferedIOBase):
    """A read-only binary file whose ``read(n)`` never asks for more than what is left.

    CPython's buffered ``read(n)`` allocates ``n`` bytes before reading. A
    corrupt length field (a DICOM element or a PNG chunk claiming hundreds of
    MB) made pydicom and Pillow allocate that much to read the last few bytes
    of a small file. It also has no ``name``, so pydicom's warnings and log
    lines never carry the path (an upload's name may be a patient's name).
    ``BoundedFile(path, "rb")`` is also how pydicom reopens it for deferred values.
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "rb") -> None:
        super().__init__()
        if mode != "rb":
            raise ValueError("BoundedFile is read-only")
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.size = os.fstat(self._fh.fileno()).st_size

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self._fh.read()
        return self._fh.read(min(size, max(self.size - self._fh.tell(), 0)))

    def read1(self, size: int | None = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._fh.close()
        super().close()


# ---------------------------------------------------------------------- windowing

# Window bounds beyond which float32 arithmetic in apply_window could overflow.
_FLOAT32_SAFE = 1e37


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


# ---------------------------------------------------------------- size checks


def check_pixel_count(width: int, height: int) -> None:
    """Raise :class:`ImageReadError` if a ``width`` x ``height`` frame is too small or too large.

    Called with header values, before any pixel is decoded.
    """
    width, height = int(width), int(height)
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageReadError(
            f"image is {width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} pixels needed"
        )
    limit = max_pixels()
    if width * height > limit:
        raise ImageReadError(
            f"image is {width}x{height} = {width * height:,} pixels per frame, more than the "
            f"limit of {limit:,} (set {_ENV_MAX_PIXELS} to change it)"
        )


def check_frame_index(frame: int, frame_count: int) -> int:
    """Validate a 0-based frame index against ``frame_count``; returns it as int."""
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
        raise ImageReadError(f"frame must be an integer, got {frame!r}")
    frame = int(frame)
    if not 0 <= frame < frame_count:
        raise ImageReadError(
            f"frame {frame} requested but the file has {frame_count} frame(s) "
            f"(valid: 0..{frame_count - 1})"
        )
    return frame


def _check_file(path: Path) -> int:
    """Existence and size checks; returns the file size in bytes."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ImageReadError(f"file not found: {printable(str(path))}") from None
    except OSError as exc:
        raise ImageReadError(f"cannot access {printable(str(path))}: {exc.strerror or exc}") from None
    if not path.is_file():
        raise ImageReadError(f"not a regular file: {printable(str(path))}")
    size = stat.st_size
    if size == 0:
        raise ImageReadError(f"file is empty (0 bytes): {display_name(path)}")
    limit = max_file_bytes()
    if size > limit:
        raise ImageReadError(
            f"file is {size / 2**20:.1f} MiB, larger than the {limit / 2**20:.1f} MiB limit "
            f"(set {_ENV_MAX_FILE_BYTES} to change it)"
        )
    return size


def finalise_image(image: np.ndarray) -> np.ndarray:
    """Final guard of the output convention: float32, C-contiguous, finite, [0, 1]."""
    image = np.ascontiguousarray(image, dtype=np.float32)
    if not np.isfinite(image).all():
        raise ImageReadError("image contains NaN or infinite values after conversion")
    return np.clip(image, 0.0, 1.0, out=image)


# ------------------------------------------------------------------ read_image


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
        from models.dicom import read_dicom

        return read_dicom(path, frame, window)

    try:
        return _read_pillow(path, frame, window)
    except _NotAnImage:
        pass
    if _looks_like_headerless_dicom(head):
        from models.dicom import read_dicom

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


# ------------------------------------------------------------- Pillow images


class _NotAnImage(Exception):
    """Pillow does not recognise the file (internal; the caller tries DICOM)."""


# Pillow format names mapped to ImageMeta.source_format.
_PIL_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "TIFF": "tiff", "BMP": "bmp"}


def _read_pillow(path: Path, frame: int, window: WindowSpec) -> tuple[np.ndarray, ImageMeta]:
    """Read a plain image with Pillow; see :func:`read_image` for the contract."""
    from PIL import Image

    limit = max_pixels()
    # Pillow refuses images above 2 * MAX_IMAGE_PIXELS on its own; if our
    # configured limit is higher, raise Pillow's so ours is the one enforced.
    # (By default ours, 80 Mpx, is below Pillow's 89 Mpx and nothing changes.)
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit
    with BoundedFile(path) as fh:
        return _read_pillow_file(fh, path, frame, window)


def _read_pillow_file(fh: BoundedFile, path: Path, frame: int, window: WindowSpec) -> tuple[np.ndarray, ImageMeta]:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(fh)
    except UnidentifiedImageError:
        raise _NotAnImage() from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"image is too large to decode safely: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # OSError, ValueError, SyntaxError; TypeError etc. from plugin bugs on malformed files
        raise ImageReadError(f"cannot open {display_name(path)} as an image: {exc}") from None
    with img:
        fmt = _PIL_FORMATS.get(img.format or "", (img.format or "image").lower())
        try:
            # n_frames walks every page of a TIFF: corrupt later pages fail here.
            frame_count = int(getattr(img, "n_frames", 1) or 1)
            frame = check_frame_index(frame, frame_count)
            if frame:
                img.seek(frame)
            check_pixel_count(*img.size)  # header size, before decoding
            img.load()
            arr, bits, photometric, notes = _pillow_to_array(img)
        except ImageReadError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageReadError(f"image is too large to decode safely: {exc}") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            # Pillow reports truncated/corrupt data as OSError ("image file is truncated").
            raise ImageReadError(f"cannot decode {display_name(path)} ({fmt}): {exc}") from None
        except MemoryError:
            raise
        except Exception as exc:  # plugin bugs on malformed files: still "unreadable"
            raise ImageReadError(f"cannot decode {display_name(path)} ({fmt}): {exc}") from None
    return _plain_image(arr, window, fmt, bits, photometric, notes, frame, frame_count)


def _pillow_to_array(img: Any) -> tuple[np.ndarray, int, str, list[str]]:
    """Pixels of a loaded Pillow image as ``(array, bits_stored, photometric, notes)``.

    The array is (H, W) or (H, W, 3) of uint8, uint16, int32 or float32; EXIF
    orientation is applied so phone photos come out upright.
    """
    from PIL import ImageOps

    notes: list[str] = []
    if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation tag
        img = ImageOps.exif_transpose(img)
        notes.append("EXIF orientation applied")
    mode = img.mode
    if mode.startswith("I;16"):
        # I;16, I;16L, I;16B, I;16N: 16-bit grayscale; keep full precision.
        return np.asarray(img).astype(np.uint16), 16, "MONOCHROME2", notes
    if mode == "I":
        arr = np.asarray(img, dtype=np.int32)
        if arr.min() >= 0 and arr.max() <= 65535:  # 16-bit data in a 32-bit container
            return arr.astype(np.uint16), 16, "MONOCHROME2", notes
        return arr, 32, "MONOCHROME2", notes
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.isfinite(arr).all():
            bad = int(arr.size - np.isfinite(arr).sum())
            raise ImageReadError(f"float image contains {bad:,} NaN or infinite pixel value(s)")
        return arr, 32, "MONOCHROME2", notes
    if mode in ("1", "L", "LA", "La"):
        if mode != "L":
            notes.append(f"converted from mode {mode} to 8-bit grayscale")
        return np.asarray(img.convert("L")), 8, "MONOCHROME2", notes
    if mode != "RGB":
        # P, PA, RGBA, RGBX, CMYK, YCbCr, LAB, HSV, ...: alpha is dropped.
        notes.append(f"converted from mode {mode} to RGB")
        img = img.convert("RGB")
    return np.asarray(img), 8, "RGB", notes


def _plain_image(
    arr: np.ndarray,
    window: WindowSpec,
    fmt: str,
    bits: int,
    photometric: str,
    notes: list[str],
    frame: int,
    frame_count: int,
) -> tuple[np.ndarray, ImageMeta]:
    """Window a plain (non-DICOM) pixel array and build its meta."""
    if arr.ndim == 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(
        arr[..., 0], arr[..., 2]
    ):
        # Gray images saved as RGB are common (screenshots, JPEG exports);
        # one channel lets grayscale models and DICOM export treat them as such.
        arr = arr[..., 0]
        notes.append("identical RGB channels; returned as grayscale")
    arr = np.ascontiguousarray(arr)
    values = arr.astype(np.float32, copy=False)
    raw_min, raw_max = float(values.min()), float(values.max())
    image_window = _resolve_window(window, values, default=_dtype_window(arr, raw_min, raw_max))
    center, width, source = image_window
    image = finalise_image(apply_window(values, center, width))
    meta = ImageMeta(
        source_format=fmt,
        shape=tuple(image.shape),
        modality="OT",
        photometric=photometric if arr.ndim == 3 else "MONOCHROME2",
        bits_stored=bits,
        bits_allocated=arr.dtype.itemsize * 8,
        raw_dtype=str(arr.dtype),
        raw_signed=arr.dtype.kind in "if",
        raw_min=raw_min,
        raw_max=raw_max,
        window_center=center,
        window_width=width,
        window_source=source,
        frame_count=frame_count,
        frame=frame,
        is_colour=image.ndim == 3,
        notes=notes,
    )
    return image, meta


def _dtype_window(arr: np.ndarray, raw_min: float, raw_max: float) -> tuple[float, float, str]:
    """Default window of a plain image: its dtype's full range (see :func:`read_image`)."""
    if arr.dtype == np.uint8:
        return 127.5, 255.0, "dtype"
    if arr.dtype == np.uint16:
        return 32767.5, 65535.0, "dtype"
    if arr.dtype.kind == "f" and raw_min >= 0.0 and raw_max <= 1.0:
        return 0.5, 1.0, "dtype"
    return (*_min_max_window(raw_min, raw_max), "full")


# --------------------------------------------------------------- display_to_raw


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
