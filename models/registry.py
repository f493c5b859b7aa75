"""The model registry: one dict of :class:`ModelSpec`, filled by explicit ``register`` calls.

Modelled on torchvision's registry: no folder scanning, no import magic. Every
model the studio, the training package, evaluation and tests know about is
registered in :mod:`models.zoo`, networks and classical baselines alike, so
they all go through the same :func:`models.enhance` path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import UnknownModelError

TASKS = ("sr", "denoise", "enhance")


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model.

    Attributes:
        name: unique id, e.g. ``"vdsr_x2"``.
        task: ``"sr"`` (super-resolution), ``"denoise"`` or ``"enhance"``.
        scale: output size / input size (1 for denoise/enhance).
        in_channels: channels the model consumes: 1 for grayscale networks
            (colour images go through their luma channel), 3 for colour
            networks; classical baselines take both and say 0 ("any").
        card: a short human description: what it is and how it was made.
        fails: where it is known to fail (inputs, conditions), shown on its card; networks must say.
        weights: file name under ``models/weights`` for networks, else None.
        build: zero-argument constructor of the ``torch.nn.Module`` (networks).
        fn: ``fn(image, **options) -> image`` for classical baselines; image is
            float32 in [0, 1] of shape (H, W) or (H, W, 3).
        options: documented defaults of the options ``fn`` accepts.
        source: ``"zoo"`` for the models registered in :mod:`models.zoo`, ``"user"`` for a file of
            the user models folder (:mod:`models.plugins`); ``build`` then loads that file.
        sha256: user models: hex SHA-256 of the file, the model's identity (cards, studies, DICOM).
        path: user models: absolute path of the file.
        noise_range: (low, high) of the noise sigma that :mod:`models.noise` estimates on the inputs the model was
            trained on (display units); an input far above it gets a warning (:func:`models.noise.range_warning`).
            None: not known (classical baselines, user models).
        info: user models: what the file and its sidecar say (architecture, parameters,
            licence, source, trained on, format); shown on the card, escaped.
        auto: an automatic entry (:mod:`models.auto`): ``fn`` measures the input and runs registered
            networks; its kind is ``"auto"``, preselected by the studio, the batch CLI and study creation.
    """

    name: str
    task: str
    scale: int
    in_channels: int
    card: str
    weights: str | None = None
    build: Callable[[], Any] | None = None
    fn: Callable[..., np.ndarray] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    fails: str = ""
    source: str = "zoo"
    sha256: str | None = None
    path: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    noise_range: tuple[float, float] | None = None
    auto: bool = False

    @property
    def kind(self) -> str:
        """``"network"`` for trained torch models, ``"auto"`` for automatic entries, ``"classical"`` otherwise."""
        return "network" if self.build is not None else "auto" if self.auto else "classical"


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry; a duplicate name is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    if spec.task not in TASKS:
        raise ValueError(f"model {spec.name!r}: task must be one of {TASKS}, got {spec.task!r}")
    if (spec.build is None) == (spec.fn is None):
        raise ValueError(f"model {spec.name!r}: give exactly one of build= (network) or fn= (classical)")
    if spec.scale < 1:
        raise ValueError(f"model {spec.name!r}: scale must be >= 1")
    if spec.auto and spec.fn is None:
        raise ValueError(f"model {spec.name!r}: an automatic entry runs through fn=")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> ModelSpec | None:
    """Remove ``name`` from the registry (user models on a reload); returns its spec, None if absent."""
    return _REGISTRY.pop(name, None)


def list_models(task: str | None = None, scale: int | None = None) -> list[ModelSpec]:
    """Registered specs in registration order, optionally filtered by task and scale."""
    return [
        s
        for s in list(_REGISTRY.values())  # a copy: a reload of user models may change the dict meanwhile
        if (task is None or s.task == task) and (scale is None or s.scale == scale)
    ]


def get_spec(name: str) -> ModelSpec:
    """The spec registered under ``name``; :class:`UnknownModelError` otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownModelError(f"unknown model {name!r}; registered: {known}") from None
