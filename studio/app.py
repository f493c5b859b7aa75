"""Assembling the studio: one ``gr.Blocks`` with a tab per job."""

from __future__ import annotations

import gradio as gr

from . import handlers
from .config import Settings
from .enhance_tab import build_enhance_tab

INTRO = (
    "# MedEnhance Studio\n"
    "Upload a DICOM, PNG, JPEG or TIFF image, pick a task and a model, compare before and after, "
    "download the result. *Research tool: results are not for diagnosis.*"
)


def build_app(settings: Settings | None = None) -> gr.Blocks:
    """Build (not launch) the studio.

    Args:
        settings: runtime settings; default :meth:`Settings.from_env`.
    Returns:
        The ``gr.Blocks`` app with the "Enhance" and "About models" tabs and the
        named API endpoint ``/enhance``. The caller configures the queue and launches it.
    """
    settings = settings or Settings.from_env()
    # delete_cache: Gradio's copies of uploads and results are removed after an hour.
    with gr.Blocks(title="MedEnhance Studio", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Enhance"):
            build_enhance_tab(demo, settings)
        with gr.Tab("About models"):
            about = gr.Markdown(handlers.about_models())
        # Re-read on every page load so newly trained weights and scores show up (UI only, not an API endpoint).
        demo.load(handlers.about_models, None, about, api_visibility="private")
    return demo
