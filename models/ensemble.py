"""Geometric self-ensemble: average a model's outputs over the 8 rotations and flips of its input.

The "x8" test-time ensemble of EDSR+ (Lim et al., CVPR workshops 2017). A
convolutional network is not exactly equivariant to rotations and flips, so its
eight answers differ slightly; their mean has lower variance and usually a
slightly higher PSNR, at eight times the inference cost. It never adds
structure that is not in some single answer. Measured gains on the held-out
Hannover patients are in the README (``python -m train eval --ensemble``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

# The dihedral group of the square: k = 0..3 rotations by k*90 degrees, k = 4..7 the same after a mirror.
TRANSFORMS = tuple(range(8))


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """``image`` (H, W) or (H, W, C) mirrored left-right if ``k >= 4``, then rotated by ``(k % 4) * 90`` degrees."""
    if k not in TRANSFORMS:
        raise ValueError(f"k must be 0..7, got {k!r}")
    a = image[:, ::-1] if k >= 4 else image
    return np.ascontiguousarray(np.rot90(a, k % 4, axes=(0, 1)))


def undo_dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """The inverse of :func:`dihedral`: ``undo_dihedral(dihedral(a, k), k) == a``."""
    if k not in TRANSFORMS:
        raise ValueError(f"k must be 0..7, got {k!r}")
    a = np.rot90(image, -(k % 4), axes=(0, 1))
    return np.ascontiguousarray(a[:, ::-1] if k >= 4 else a)


def self_ensemble(fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray) -> np.ndarray:
    """Mean of ``undo_dihedral(fn(dihedral(image, k)), k)`` over the eight transforms.

    Args:
        fn: maps an (h, w[, C]) float32 array to an (h*s, w*s[, C]) one; called
            eight times, on each rotated/mirrored copy of ``image``.
        image: (H, W) or (H, W, C) float32.
    Returns:
        float32 (H*s, W*s[, C]); one running sum is kept, so memory is about
        two outputs whatever the number of transforms.
    """
    total: np.ndarray | None = None
    for k in TRANSFORMS:
        out = undo_dihedral(fn(dihedral(image, k)), k)
        total = out.astype(np.float32, copy=True) if total is None else np.add(total, out, out=total)
    assert total is not None
    return total / np.float32(len(TRANSFORMS))
