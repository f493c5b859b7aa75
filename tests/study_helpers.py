"""Shared set-up of the reader-study tests: the admin password, the models and small generated cases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
from PIL import Image

from db import CRITERIA

ADMIN = "admin-test-password"
MODELS = ("bicubic_x2", "clahe", "median")
ALL_MODELS = ("original", *MODELS)
SCORES = {c: 3 for c in CRITERIA}


def png_cases(folder: Path, n: int, size: int = 32) -> list[Path]:
    """``n`` distinct small grayscale PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = []
    for i in range(n):
        img = 0.5 + 0.35 * np.sin(xx / (1.5 + i * 0.4)) * np.cos(yy / (2.0 + i % 3)) + 0.01 * i
        p = folder / f"case_{i}.png"
        Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8)).save(p)
        out.append(p)
    return out


def _raw(store) -> sqlite3.Connection:
    """The SQLite file opened without our code: an independent view of what is stored."""
    return sqlite3.connect(store.data_dir / "studies.db")
