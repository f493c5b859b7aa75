"""Model cards: the registry's short text plus what the weights file says about itself."""

from __future__ import annotations

from typing import Any

from .errors import WeightsError
from .loading import read_metadata, weights_path
from .registry import get_spec


def model_card(name: str) -> dict[str, Any]:
    """Everything known about a model, as a JSON-serialisable dict.

    Keys: name, task, scale, kind, in_channels, summary, fails (where it is known to fail); for networks also
    ``weights`` (file name), ``weights_present`` and ``metadata`` (training
    config, data, steps, validation and test scores written by ``train``).
    """
    spec = get_spec(name)
    card: dict[str, Any] = {
        "name": spec.name,
        "task": spec.task,
        "scale": spec.scale,
        "kind": spec.kind,
        "in_channels": spec.in_channels,
        "summary": spec.card,
        "fails": spec.fails,
        "options": dict(spec.options),
    }
    if spec.kind == "network":
        path = weights_path(spec)
        card["weights"] = spec.weights
        card["weights_present"] = path.is_file()
        if path.is_file():
            try:
                card["metadata"] = read_metadata(path)
            except WeightsError as e:
                card["metadata_error"] = str(e)
    return card
