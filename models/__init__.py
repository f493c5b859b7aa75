"""MedEnhance models: registry, architectures, weights and the inference service.

Public API::

    from models import list_models, enhance, read_image
    specs = list_models(task="sr")             # ModelSpec(name, task, scale, ...)
    image, meta = read_image("scan.dcm")       # float32 [0, 1], (H, W) or (H, W, 3)
    out = enhance(image, "vdsr_x2")            # float32 [0, 1], (2H, 2W[, 3])

This package never imports gradio, sqlalchemy, studio, train or db.
"""

from . import zoo as _zoo  # noqa: F401  (fills the registry)
from .card import model_card
from .enhance import enhance, validate_image
from .errors import (ImageReadError, InvalidImageError, InvalidOptionError, MedEnhanceError, UnknownModelError,
                     WeightsError)
from .io import ImageMeta, read_image
from .registry import ModelSpec, get_spec, list_models, register

__all__ = [
    "enhance",
    "get_spec",
    "ImageMeta",
    "ImageReadError",
    "InvalidImageError",
    "InvalidOptionError",
    "list_models",
    "MedEnhanceError",
    "model_card",
    "ModelSpec",
    "read_image",
    "register",
    "UnknownModelError",
    "validate_image",
    "WeightsError",
]
