"""Exception types of the public API.

Every error a caller (UI, CLI, script) is expected to handle is a ``ValueError``
subclass, so ``except ValueError`` catches all bad input while programming
errors (``TypeError``, ``RuntimeError`` from torch, ...) still surface.
"""

from __future__ import annotations

_MAX_MESSAGE_CHARS = 500


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``, ...); other characters unchanged.

    File names and header values come from uploads: a newline in one must not
    start a forged line in a message or a log.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class MedEnhanceError(ValueError):
    """Base class of every documented error raised by :mod:`models`.

    The message is always one line of at most 500 characters, control
    characters escaped: messages quote file names and header values of
    uploads, and end up in the browser and in logs.
    """

    def __init__(self, message: object = "") -> None:
        text = printable(str(message))
        if len(text) > _MAX_MESSAGE_CHARS:
            text = text[: _MAX_MESSAGE_CHARS - 4] + " ..."
        super().__init__(text)


class ImageReadError(MedEnhanceError):
    """A file could not be turned into an image: wrong type, corrupt, empty,
    no pixel data, too large, non-finite values, ..."""


class InvalidImageError(MedEnhanceError):
    """An in-memory array passed to :func:`models.enhance` breaks the image
    convention (float32 in [0, 1], shape (H, W) or (H, W, 3)) or is too large."""


class UnknownModelError(MedEnhanceError):
    """No model of that name is registered, or it does not fit the request."""


class InvalidOptionError(MedEnhanceError):
    """An option of :func:`models.enhance` lies outside its documented range
    (e.g. ``strength`` outside [0, 1])."""


class WeightsError(MedEnhanceError):
    """A weights file is missing, unreadable or does not match its checksum."""


class PluginError(MedEnhanceError):
    """A user's model file (the models folder, :mod:`models.plugins`) or a results folder from another
    tool cannot be used: unknown architecture, code-running pickle, truncated or too large file,
    output of the wrong shape, a bad sidecar, a name already taken, ..."""


class DeidentificationError(MedEnhanceError):
    """A DICOM header could not be de-identified (so it must not be stored or exported)."""


class ExportError(MedEnhanceError):
    """An enhanced image cannot be written in the requested form (e.g. a derived
    DICOM whose size is not a whole multiple of its source, or float pixel data)."""
