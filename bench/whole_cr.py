"""The benchmark's realistic size: a whole computed radiograph, and a compact x4 network until its weights exist.

``whole_cr()`` is pydicom-data's RG1_UNCR (1841 x 1955 px, 16-bit CR), read with
:func:`models.read_image` as the studio reads an upload. ``compact_random()``
registers ``compact_x4_random``: :class:`models.arch.compact.CompactSR` as
``compact_x4_real`` is being trained (32 features, 14 convs), with seeded random
weights. A network's time does not depend on its weights, so its row stands for
the trained one until ``compact_x4_real`` is registered.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

CR_FILE = "RG1_UNCR.dcm"
COMPACT_RANDOM = "compact_x4_random"


def whole_cr() -> np.ndarray | None:
    """The whole CR as float32 [0, 1] (1955, 1841), or None without pydicom-data."""
    from models import read_image

    try:
        from pydicom.data import get_testdata_file

        path = get_testdata_file(CR_FILE, download=False)
    except Exception:  # noqa: BLE001 - no test data here: the benchmark skips the whole-CR column
        return None
    return None if path is None else read_image(path)[0]


def compact_random() -> str:
    """Register ``compact_x4_random`` (once) and return its name."""
    import torch

    from models.arch.compact import CompactSR
    from models.registry import ModelSpec, _REGISTRY, register

    if COMPACT_RANDOM in _REGISTRY:
        return COMPACT_RANDOM

    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        net = CompactSR(scale=4, feats=32, convs=14)
        for p in net.parameters():
            p.data.normal_(0, 0.05)  # random, not near zero: no denormal shortcuts, same work as trained weights
        return net

    # A "user" spec builds its module itself; its file only has to exist.
    marker = Path(tempfile.gettempdir()) / f"{COMPACT_RANDOM}.marker"
    marker.touch()
    register(ModelSpec(COMPACT_RANDOM, "sr", 4, 1, "CompactSR x4 (32 features, 14 convs), random weights: timing only",
                       fails="random weights: timing only", source="user", path=str(marker), build=build))
    return COMPACT_RANDOM
