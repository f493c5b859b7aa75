"""MedEnhance Studio: the Gradio web UI over :mod:`models`.

Layers: ``app.py`` -> ``studio`` -> ``models``. The studio never imports
``train`` or ``db``; handlers are plain functions testable without a browser.

    from studio import build_app
    demo = build_app()
    demo.queue().launch()
"""

from .app import build_app
from .config import Settings
from .handlers import enhance_file, inspect_upload

__all__ = ["build_app", "enhance_file", "inspect_upload", "Settings"]
