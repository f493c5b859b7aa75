"""Entry point: ``python app.py`` serves MedEnhance Studio (also the ``app_file`` of a Hugging Face Space).

Environment:
    GRADIO_SERVER_NAME / GRADIO_SERVER_PORT   read by Gradio itself (default 127.0.0.1:7860; Spaces set 0.0.0.0)
    MEDENHANCE_MAX_UPLOAD                      upload size limit (default "512mb")
    MEDENHANCE_CONCURRENCY                     enhance requests run at once (default 1)
    MEDENHANCE_QUEUE_SIZE                      waiting requests before "queue full" (default 64)
    MEDENHANCE_PREVIEW_MAX_SIDE                long side of the browser preview (default 2048)
    MEDENHANCE_RESULT_TTL                      seconds result files are kept (default 3600)
    MEDENHANCE_DEID_KEY                        secret key of DICOM de-identification (default: random per
                                               process); set it to keep remapped UIDs stable across restarts
    MEDENHANCE_GPU_DURATION                    ZeroGPU seconds reserved per model call (default 120)
    STUDIO_DATA_DIR                            persistent data folder; default /data/medenhance when /data
                                               (Spaces persistent storage) exists and is writable
    MEDENHANCE_MODELS_DIR                      folder of your own model files (spandrel weights, ONNX), read at
                                               start-up and on the admin tab's "Reload models"; default
                                               /data/medenhance/user-models on a Space, else ./user-models
    MEDENHANCE_MAX_MODEL_SIZE                  largest model file accepted (default "512mb")
    MEDENHANCE_SPANDREL_EXTRA                  1: also spandrel_extra_arches' architectures (non-commercial)

Hugging Face Spaces: with ZeroGPU hardware the ``spaces`` package is present;
it is imported here before torch (the ZeroGPU docs advise importing it first)
and :func:`studio.handlers.run_model` is wrapped with ``spaces.GPU``. Without
it (CPU Space, local run) nothing changes. The app needs no network access:
models load from ``models/weights`` (checked against its ``SHA256SUMS`` manifest at start-up, see
:func:`check_weights`), analytics are off.
"""

from __future__ import annotations

import os

# Before gradio is imported: no telemetry from a medical-imaging server (and no internet here).
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

try:  # Hugging Face ZeroGPU: import before torch initialises CUDA (no-op elsewhere).
    import spaces  # type: ignore[import-not-found]  # noqa: F401
except ImportError:
    pass

import logging  # noqa: E402
from pathlib import Path  # noqa: E402


def default_data_dir(mount: str | os.PathLike[str] = "/data") -> str | None:
    """``STUDIO_DATA_DIR`` if set, else ``<mount>/medenhance`` when ``mount`` is a writable folder, else None.

    Spaces with persistent storage mount it at ``/data``; everything else in a
    Space (including ``/tmp``) is lost on restart.
    """
    explicit = os.environ.get("STUDIO_DATA_DIR", "").strip()
    if explicit:
        return explicit
    mount = Path(mount)
    if mount.is_dir() and os.access(mount, os.W_OK):
        return str(mount / "medenhance")
    return None


_data_dir = default_data_dir()
if _data_dir:  # set before the studio (and its storage) is imported
    os.environ["STUDIO_DATA_DIR"] = _data_dir

import gradio as gr  # noqa: E402

from studio import Settings, build_app  # noqa: E402


def check_weights() -> None:
    """Start-up check of the weights against ``models/weights/SHA256SUMS`` (see :mod:`models.checksums`).

    Logs one line per problem and one line listing the models whose weights are missing (they stay
    listed, and requesting one is a clear error). Raises SystemExit (status 1, message on stderr) if a
    weights file does not match its checksum: a swapped or corrupted model must never serve results.
    """
    from models.checksums import unavailable_models, verify_weights

    log = logging.getLogger("medenhance.startup")
    problems = verify_weights()
    for p in problems:
        (log.error if p.fatal else log.warning)("weights: %s", p)
    missing = unavailable_models()
    if missing:
        log.warning("%d model(s) unavailable (weights missing): %s", len(missing), ", ".join(missing))
    fatal = [p.file for p in problems if p.fatal]
    if fatal:
        raise SystemExit(f"MedEnhance Studio refuses to start: {', '.join(fatal)} failed the weights checksum "
                         "check (models/weights/SHA256SUMS). Restore the file(s), or after retraining run "
                         "'python -m models.checksums --write'.")


def load_user_models() -> None:
    """Register the model files of the user models folder (:mod:`models.plugins`); never stops start-up.

    Logs one line per model registered and one per file refused (the Study admin tab lists them too).
    """
    from models.plugins import load_user_models as load

    log = logging.getLogger("medenhance.startup")
    report = load()
    log.info("user models folder %s: %d model(s) registered%s", report.folder, len(report.loaded),
             f" ({', '.join(report.loaded)})" if report.loaded else "")
    for p in report.problems:
        log.warning("user model %s refused: %s", p.file, p.message)


def main() -> None:
    """Check the weights, build, configure the queue and launch; blocks until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup probes are noise
    check_weights()
    load_user_models()
    if _data_dir:
        Path(_data_dir).mkdir(parents=True, exist_ok=True)
    settings = Settings.from_env()
    demo: gr.Blocks = build_app(settings)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    # server_name / server_port left to GRADIO_SERVER_NAME / GRADIO_SERVER_PORT.
    demo.launch(max_file_size=settings.max_upload, show_error=False, footer_links=["api"])


if __name__ == "__main__":
    main()
