"""MedEnhance Studio: the Gradio web UI over :mod:`models`.

Layers: ``app.py`` -> ``studio`` -> ``models``, ``db``. The Compare tab also uses the
training package's metrics and degradations (``train.metrics``, ``train.degrade``) so its
numbers are the ones evaluation reports. Handlers are plain functions testable without a browser.

    from studio import build_app
    demo = build_app()
    demo.queue().launch()
"""

from .app import build_app
from .config import Settings
from .handlers import enhance_file, inspect_upload

__all__ = ["build_app", "enhance_file", "inspect_upload", "Settings"]
