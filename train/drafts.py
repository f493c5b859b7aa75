"""Networks being trained before their registry entry exists (``python -m train fit --model NAME``).

A model is registered in :mod:`models.zoo` only once its weights are trained, measured and committed (the
registry-parametrised tests require weights and a card). Until then its architecture is described here, so
``fit`` can train it; move the entry to the zoo when its weights ship.
"""

from __future__ import annotations

from functools import partial

from models import ModelSpec
from models.arch.compact import CompactSR

DRAFTS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("compact_x2_real", "sr", 2, 1, "draft", fails="draft", weights="compact_x2_real.safetensors",
                  build=partial(CompactSR, scale=2, feats=48, convs=12)),
    )
}
