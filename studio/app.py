"""Assembling the studio: one ``gr.Blocks`` with a tab per job."""

from __future__ import annotations

from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from studio import handlers
from studio.config import Settings
from studio.guard import Gate, SignInGuard
from studio.study import reading
from studio.study.store import open_store
from studio.ui.admin_tab import build_admin_tab
from studio.ui.compare_tab import build_compare_tab
from studio.ui.enhance_tab import build_enhance_tab
from studio.ui.reader_tab import build_reader_tab
from studio.ui.served_images import ImageTokens, image_route

INTRO = (
    "# MedEnhance Studio\n"
    "Upload a DICOM, PNG, JPEG or TIFF image, pick a task and a model, compare before and after, "
    "download the result. *Research tool: results are not for diagnosis.*"
)


SESSION_CAPACITY = 1000  # Gradio sessions kept in memory (see StudioBlocks.launch)


class StudioBlocks(gr.Blocks):
    """The studio's ``gr.Blocks``: whoever launches it (app.py, tests, load tools) gets the same server.

    :meth:`launch` adds, in front of Gradio's own routes, the sign-in guard (:mod:`studio.guard`:
    floods of wrong passwords or codes refused with HTTP 429 before the queue) and the route that
    serves readers' images (:mod:`studio.ui.served_images`).
    """

    gate: Gate
    image_tokens: ImageTokens

    def launch(self, *args: Any, app_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        app_kwargs = dict(app_kwargs or {})
        # FastAPI(middleware=..., routes=...): ours come before Gradio's routes (added by create_app).
        app_kwargs["middleware"] = [*app_kwargs.get("middleware", []),
                                    Middleware(SignInGuard, gate=self.gate, blocks=self)]
        app_kwargs["routes"] = [*app_kwargs.get("routes", []), image_route(self.image_tokens)]
        # Gradio keeps a session (~350 KB for this app) per browser page and per sessionless API call,
        # 10,000 by default: up to 3.4 GB that any API client could fill. The least recently used go first.
        kwargs.setdefault("state_session_capacity", SESSION_CAPACITY)
        return super().launch(*args, app_kwargs=app_kwargs, **kwargs)


def build_app(settings: Settings | None = None) -> gr.Blocks:
    """Build (not launch) the studio.

    Args:
        settings: runtime settings; default :meth:`Settings.from_env`.
    Returns:
        The ``gr.Blocks`` app with the "Enhance", "Compare" and "About models" tabs and the
        named API endpoints ``/enhance`` and ``/compare``, plus the "Reader study" and "Study admin"
        tabs (``/reader_*``, ``/admin_*``). The caller configures the queue and launches it; the
        launch adds the sign-in guard and the readers' image route (:class:`StudioBlocks`).
    """
    settings = settings or Settings.from_env()
    # Reader studies: opens STUDIO_DATA_DIR's database; a schema version mismatch stops start-up here.
    studies = open_store()
    # delete_cache: Gradio's copies of uploads and results are removed after an hour.
    with StudioBlocks(title="MedEnhance Studio", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        demo.gate = Gate(studies.admin, code_exists=lambda h: reading.code_exists(studies, h))
        demo.image_tokens = ImageTokens()
        gr.Markdown(INTRO)
        with gr.Tab("Enhance"):
            build_enhance_tab(demo, settings)
        with gr.Tab("Compare"):
            build_compare_tab(demo, settings)
        with gr.Tab("Reader study"):
            build_reader_tab(demo, studies, demo.gate, demo.image_tokens)
        with gr.Tab("Study admin"):
            build_admin_tab(demo, studies)
        with gr.Tab("About models"):
            about = gr.Markdown(handlers.about_models())
        # Re-read on every page load so newly trained weights and scores show up (UI only, not an API endpoint).
        demo.load(handlers.about_models, None, about, api_visibility="private")
    return demo
