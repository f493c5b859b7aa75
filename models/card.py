"""Model cards: the registry's short text plus what the weights file says about itself.

A user model's card (:mod:`models.plugins`) says what its file and sidecar say: architecture,
parameters, scale, licence and source as given, the file's SHA-256, and the scores measured here
(``NAME.scores.json`` beside the file, written by ``python -m train eval --write-cards``), or
"not measured here" until then.
"""

from __future__ import annotations

from typing import Any

from .auto import members, missing_weights, probe_path
from .errors import WeightsError
from .loading import read_metadata, weights_path
from .plugins import read_scores
from .registry import ModelSpec, get_spec

NOT_MEASURED = ("**Scores: not measured here.** Run `python -m train eval --task {task} --models {name}` "
                "(add `--write-cards` to keep the scores beside the file) to measure it on held-out patients.")


def model_card(name: str) -> dict[str, Any]:
    """Everything known about a model, as a JSON-serialisable dict.

    Keys: name, task, scale, kind, in_channels, summary, fails (where it is known to fail), source
    (``"zoo"`` or ``"user"``); for networks also ``weights`` (file name), ``weights_present`` and
    ``metadata`` (training config, data, steps, validation and test scores written by ``train``).
    User models also have ``sha256``, ``info`` (architecture, parameters, licence, source, ...) and
    ``measured`` (whether ``metadata`` holds scores measured here).
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
        "source": spec.source,
    }
    if spec.source == "user":
        return _user_card(spec, card)
    if spec.kind == "auto":
        return _auto_card(spec, card)
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


def _auto_card(spec: ModelSpec, card: dict[str, Any]) -> dict[str, Any]:
    """An automatic entry: the networks it chooses between, its probe, and whether all their weights are here."""
    names = members(spec.name)
    probe = probe_path(spec.name)
    card["members"] = list(names)
    card["probe"] = probe.name if probe else None
    card["weights_present"] = not missing_weights(spec.name)
    if probe is not None and probe.is_file():
        try:
            card["metadata"] = read_metadata(probe)  # the probe's training and validation of the choice
        except WeightsError as e:
            card["metadata_error"] = str(e)
    return card


def _user_card(spec: ModelSpec, card: dict[str, Any]) -> dict[str, Any]:
    path = weights_path(spec)
    card.update({"weights": spec.weights, "weights_present": path.is_file(), "sha256": spec.sha256,
                 "info": dict(spec.info)})
    scores = read_scores(spec) if path.is_file() else {}
    card["measured"] = bool(scores)
    if scores:
        card["metadata"] = scores  # {"test_sr_x2": {psnr, ssim, baseline, ...}}: the card's scores table
    else:
        task = spec.task if spec.task != "sr" else f"sr --scale {spec.scale}"
        card["summary"] = f"{spec.card}\n\n{NOT_MEASURED.format(task=task, name=spec.name)}"
    return card
