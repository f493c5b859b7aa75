"""Peak resident memory of a code block, from the kernel's high-water mark (Linux)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


@contextmanager
def peak_rss() -> Iterator[dict[str, float]]:
    """Yields a dict filled on exit with ``peak_mb`` (process peak RSS during the block) and ``delta_mb``.

    Resets the kernel's peak counter first (``echo 5 > /proc/self/clear_refs``)
    so each block is measured on its own; where that is not allowed, the
    figure is the process's lifetime peak (an upper bound).
    """
    out: dict[str, float] = {}
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    before = _status_kb("VmRSS")
    yield out
    peak = _status_kb("VmHWM")
    out["peak_mb"] = peak / 1024
    out["delta_mb"] = (peak - before) / 1024
