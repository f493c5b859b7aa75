"""Runtime settings of the studio, read once from environment variables.

Server name and port are *not* here: Gradio reads ``GRADIO_SERVER_NAME`` and
``GRADIO_SERVER_PORT`` itself (default 127.0.0.1:7860), so we never override them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """What an operator can tune without touching code.

    Attributes:
        max_upload: Gradio ``max_file_size`` (e.g. ``"512mb"``); a big CR/DX
            DICOM is 10-60 MB, multi-frame CT/US can reach hundreds.
        concurrency: enhance requests run at once. Inference already uses all
            CPU cores (torch threads), so 1 avoids thrashing on CPU; raise it on a GPU box.
        queue_size: waiting requests beyond which new ones are refused with "queue full";
            reader-study submissions share the queue, so keep it ~3x the number of readers.
        preview_max_side: long side (px) of the before/after preview sent to the browser;
            the downloadable PNG always keeps full resolution.
        result_ttl_s: result PNGs in our temp dir older than this are deleted.
    """

    max_upload: str = "512mb"
    concurrency: int = 1
    queue_size: int = 64
    preview_max_side: int = 2048
    result_ttl_s: int = 3600

    @classmethod
    def from_env(cls) -> "Settings":
        """Settings from ``MEDENHANCE_*`` environment variables, defaults otherwise."""
        return cls(
            max_upload=os.environ.get("MEDENHANCE_MAX_UPLOAD", "").strip() or cls.max_upload,
            concurrency=max(1, _int_env("MEDENHANCE_CONCURRENCY", cls.concurrency)),
            queue_size=max(1, _int_env("MEDENHANCE_QUEUE_SIZE", cls.queue_size)),
            preview_max_side=max(256, _int_env("MEDENHANCE_PREVIEW_MAX_SIDE", cls.preview_max_side)),
            result_ttl_s=max(60, _int_env("MEDENHANCE_RESULT_TTL", cls.result_ttl_s)),
        )
