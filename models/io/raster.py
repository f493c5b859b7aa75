"""Plain images through Pillow: PNG, JPEG, TIFF, BMP, GIF, WebP (8 or 16 bit) into the display convention.

Contract as :func:`models.io.read_image`; :class:`_NotAnImage` tells the reader to try DICOM next.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ImageReadError
from models.io.limits import BoundedFile, check_frame_index, check_pixel_count, display_name, finalise_image, max_pixels
from models.io.meta import ImageMeta
from models.io.window import WindowSpec, _min_max_window, _resolve_window, apply_window


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
