"""Exception types of the public API.

Every error a caller (UI, CLI, script) is expected to handle is a ``ValueError``
subclass, so ``except ValueError`` catches all bad input while programming
errors (``TypeError``, ``RuntimeError`` from torch, ...) still surface.
"""

from __future__ import annotations


class MedEnhanceError(ValueError):
    """Base class of every documented error raised by :mod:`models`."""


class ImageReadError(MedEnhanceError):
    """A file could not be turned into an image: wrong type, corrupt, empty,
    no pixel data, too large, non-finite values, ..."""


class InvalidImageError(MedEnhanceError):
    """An in-memory array passed to :func:`models.enhance` breaks the image
    convention (float32 in [0, 1], shape (H, W) or (H, W, 3)) or is too large."""


class UnknownModelError(MedEnhanceError):
    """No model of that name is registered, or it does not fit the request."""


class WeightsError(MedEnhanceError):
    """A weights file is missing, unreadable or does not match its checksum."""


class DeidentificationError(MedEnhanceError):
    """A DICOM header could not be de-identified (so it must not be stored or exported)."""


class ExportError(MedEnhanceError):
    """An enhanced image cannot be written in the requested form (e.g. a derived
    DICOM whose size is not a whole multiple of its source, or float pixel data)."""
