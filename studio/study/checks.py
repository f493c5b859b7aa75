"""What a study request may ask for (limits) and the error every bad request raises."""

from __future__ import annotations

from typing import Any

MAX_FILES = 1000


MAX_READERS = 500


MAX_NAME = 200


class StudyError(ValueError):
    """A request about a study that cannot be done; the message says why (shown to the user)."""


def whole_number(value: Any, what: str, lo: int, hi: int) -> int:
    """A whole number in [lo, hi] from an API value (int, float 3.0, "3")."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise StudyError(f"{what} must be a whole number, got {value!r}.") from None
    if isinstance(value, bool) or not f.is_integer() or not lo <= f <= hi:
        raise StudyError(f"{what} must be a whole number from {lo} to {hi}, got {value!r}.")
    return int(f)
