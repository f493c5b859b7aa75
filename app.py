"""Entry point: ``python app.py`` serves MedEnhance Studio.

Environment:
    GRADIO_SERVER_NAME / GRADIO_SERVER_PORT   read by Gradio itself (default 127.0.0.1:7860)
    MEDENHANCE_MAX_UPLOAD                      upload size limit (default "512mb")
    MEDENHANCE_CONCURRENCY                     enhance requests run at once (default 1)
    MEDENHANCE_QUEUE_SIZE                      waiting requests before "queue full" (default 16)
    MEDENHANCE_PREVIEW_MAX_SIDE                long side of the browser preview (default 2048)
    MEDENHANCE_RESULT_TTL                      seconds result PNGs are kept (default 3600)
"""

from __future__ import annotations

import os

# Before gradio is imported: no telemetry from a medical-imaging server (and no internet here).
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import logging  # noqa: E402

import gradio as gr  # noqa: E402

from studio import Settings, build_app  # noqa: E402


def main() -> None:
    """Build, configure the queue and launch; blocks until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup probes are noise
    settings = Settings.from_env()
    demo: gr.Blocks = build_app(settings)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    # server_name / server_port left to GRADIO_SERVER_NAME / GRADIO_SERVER_PORT.
    demo.launch(max_file_size=settings.max_upload, show_error=False, footer_links=["api"])


if __name__ == "__main__":
    main()
