"""Size guards and bounded reads: what the reader refuses before any pixel is decoded.

Size guards (checked before any pixel is decoded): empty files, files larger
than :data:`MAX_FILE_BYTES` (env ``MEDENHANCE_MAX_FILE_BYTES``) and images with
more than :data:`MAX_PIXELS` pixels per frame (env ``MEDENHANCE_MAX_PIXELS``)
are refused, as are images smaller than 2x2.

:class:`BoundedFile` caps what a parser may read from a file; :func:`display_name` makes a
file name safe to show in a message.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ImageReadError, printable

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


def max_file_bytes() -> int:
    """Current file size limit: env ``MEDENHANCE_MAX_FILE_BYTES`` if set, else :data:`MAX_FILE_BYTES`.

    Read on every call so the limit can be changed without re-importing.
    """
    return _env_int(_ENV_MAX_FILE_BYTES, MAX_FILE_BYTES)


def max_pixels() -> int:
    """Current per-frame pixel limit: env ``MEDENHANCE_MAX_PIXELS`` if set, else :data:`MAX_PIXELS`."""
    return _env_int(_ENV_MAX_PIXELS, MAX_PIXELS)


_MAX_NAME_CHARS = 80


def display_name(path: str | os.PathLike[str]) -> str:
    """A file's name as messages show it: control characters escaped, at most 80 characters."""
    name = printable(Path(os.fspath(path)).name)
    if len(name) <= _MAX_NAME_CHARS:
        return name
    return name[: _MAX_NAME_CHARS - 21] + "…" + name[-20:]  # keep the extension visible


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.split()) if len(text) < 400 else " ".join(text[:400].split()) + " ..."
