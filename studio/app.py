"""Assembling the studio: one ``gr.Blocks`` with a tab per job."""

from __future__ import annotations

import gradio as gr

from studio import handlers
from studio.config import Settings
from studio.study.store import open_store
from studio.ui.admin_tab import build_admin_tab
from studio.ui.compare_tab import build_compare_tab
from studio.ui.enhance_tab import build_enhance_tab
from studio.ui.reader_tab import build_reader_tab

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
        The ``gr.Blocks`` app with the "Enhance", "Compare" and "About models" tabs and the
        named API endpoints ``/enhance`` and ``/compare``, plus the "Reader study" and "Study admin"
        tabs (``/reader_*``, ``/admin_*``). The caller configures the queue and launches it.
    """
    settings = settings or Settings.from_env()
    # Reader studies: opens STUDIO_DATA_DIR's database; a schema version mismatch stops start-up here.
    studies = open_store()
    # delete_cache: Gradio's copies of uploads and results are removed after an hour.
    with gr.Blocks(title="MedEnhance Studio", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Enhance"):
            build_enhance_tab(demo, settings)
        with gr.Tab("Compare"):
            build_compare_tab(demo, settings)
        with gr.Tab("Reader study"):
            build_reader_tab(demo, studies)
        with gr.Tab("Study admin"):
            build_admin_tab(demo, studies)
        with gr.Tab("About models"):
            about = gr.Markdown(handlers.about_models())
        # Re-read on every page load so newly trained weights and scores show up (UI only, not an API endpoint).
        demo.load(handlers.about_models, None, about, api_visibility="private")
    return demo
