"""The "Enhance" tab: layout and event wiring only; the work is in :mod:`studio.handlers`."""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio import handlers
from studio.config import Settings
from studio.handlers import progress as runs

UPLOAD_HELP = (
    "DICOM (.dcm or no extension), PNG, JPEG or TIFF, 8 or 16 bit. "
    "Uploaded as a file (not a browser image) so 16-bit data keeps its precision."
)


def _model_dropdown(task: str) -> gr.Dropdown:
    """The model dropdown's new choices and value after a task change (or a page load)."""
    return gr.Dropdown(choices=handlers.model_choices(task), value=handlers.default_model(task))


def _frame_box(frame_count: int, frame: int = 0) -> gr.Number:
    """Frame selector: visible only for multi-frame files, bounded to their frames."""
    n = max(1, int(frame_count))
    return gr.Number(value=min(frame, n - 1), maximum=n - 1, visible=n > 1,
                     info=f"0 … {n - 1} ({n} frames)" if n > 1 else None)


def build_enhance_tab(demo: gr.Blocks, settings: Settings) -> None:
    """Lay out the Enhance tab inside the current ``gr.Tab`` and wire its events.

    Registers the named API endpoint ``/enhance``:
    (file, task, model, frame, window, strength, ensemble, noise_level) -> (before/after images, markdown, result PNG path).
    The derived DICOM of a DICOM upload reaches the page through a ``gr.State``
    (not part of the API's returns) and a private follow-up event, so the
    endpoint's signature is unchanged for existing clients.
    """
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            file = gr.File(label="Medical image", file_count="single", type="filepath", elem_id="enhance-file",
                           # No file_types filter: browsers would hide extensionless DICOM files
                           # and Gradio would reject them server-side; read_image decides what is an image.
                           file_types=None)
            gr.Markdown(UPLOAD_HELP)
            frame = gr.Number(label="Frame", value=0, precision=0, minimum=0, visible=False,
                              # No maximum in the config: API clients may ask for any frame of their file;
                              # read_image rejects frames out of range with a clear message.
                              )
            window = gr.Dropdown(choices=handlers.window_choices(), value=handlers.DEFAULT_WINDOW,
                                 label="Display window", allow_custom_value=True,
                                 info="Maps stored values (HU for CT) to grey levels before the model; "
                                      "or type center,width (e.g. 40,400).")
            task = gr.Radio(choices=list(handlers.TASKS), value=handlers.DEFAULT_TASK, label="Task",
                            elem_id="enhance-task")
            model = gr.Dropdown(choices=handlers.model_choices(handlers.DEFAULT_TASK),
                                value=handlers.default_model(handlers.DEFAULT_TASK), label="Model",
                                elem_id="enhance-model",
                                # Choices change per task and per page load; the handler validates the
                                # name itself, so API clients are not bound to the initial choice list.
                                allow_custom_value=True)
            strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Strength",
                                 info="1 = the model's output, 0 = the input; in between they are blended "
                                      "(e.g. keep some of the original grain after denoising)",
                                 elem_id="enhance-strength")
            ensemble = gr.Checkbox(False, label="×8 self-ensemble (8× slower)", elem_id="enhance-ensemble",
                                   info="Averages the model's answers for the 8 rotations and flips of the "
                                        "input: a slightly lower error (SRResNet ×4 on held-out patients: +1.19 → "
                                        "+1.23 dB over bicubic), no structure a single pass would not give.")
            noise_level = gr.Number(None, label="Noise level σ (empty = estimated)", minimum=0, maximum=1,
                                    elem_id="enhance-noise-level",
                                    info="Noise-aware models (*_na) and the automatic entries take the input's "
                                         "noise σ in [0, 1] units (0.05 = 5 % of the display range); the Report "
                                         "shows the estimate. Set it to override.")
            with gr.Row():
                run = gr.Button("Run", variant="primary", elem_id="enhance-run", scale=3)
                stop = gr.Button("Stop", variant="stop", elem_id="enhance-stop", scale=1, min_width=80)
            preview = gr.Image(label="Input as read (8-bit display)", type="pil", format="png",
                               image_mode=None, interactive=False, height=320)
            meta_md = gr.Markdown(elem_id="enhance-meta")
            with gr.Accordion("DICOM header (de-identified)", open=False):
                header_md = gr.Markdown()
        with gr.Column(scale=3, min_width=400):
            slider = gr.ImageSlider(label="Before | After (drag the handle)", type="pil", format="png",
                                    image_mode=None, interactive=False, max_height=720,
                                    elem_id="enhance-slider")
            gr.Markdown(
                "For super-resolution the *before* half is the input enlarged to the output size "
                "(nearest neighbour for whole factors, so each input pixel stays visible). "
                f"Previews are limited to {settings.preview_max_side} px on the long side; "
                "the PNG download always has full resolution (16-bit for >8-bit grayscale inputs)."
            )
            with gr.Row():
                download = gr.File(label="Result PNG", interactive=False, elem_id="enhance-download")
                dicom_download = gr.File(label="Result DICOM (derived, de-identified; DICOM uploads only)",
                                         interactive=False, elem_id="enhance-dicom")
            result_md = gr.Markdown(label="Report", elem_id="enhance-report")
            dicom_path = gr.State(None)  # server-side only: never part of the /enhance API returns
            # The /measure endpoint's output: API only (noise, JPEG, smoothness, the automatic choice).
            measured = gr.JSON(visible=False)
            measure = gr.Button("Measure", visible=False)

    def on_file(file_: Any, window_: Any) -> tuple[Any, str, gr.Number, str]:
        # inspect_upload de-identifies a DICOM upload first; header_panel reuses that copy.
        image, md, n = handlers.inspect_upload(file_, 0, window_)
        return handlers.preview_file(image, settings.result_ttl_s), md, _frame_box(n), handlers.header_panel(file_)

    def on_view(file_: Any, frame_: Any, window_: Any) -> tuple[Any, str]:
        image, md, _ = handlers.inspect_upload(file_, frame_, window_)
        return handlers.preview_file(image, settings.result_ttl_s), md

    def enhance(file: Any, task: str, model: str, frame: Any, window: Any, strength: Any = 1.0, ensemble: Any = False,
                noise_level: Any = None, progress: gr.Progress = gr.Progress(), request: gr.Request = None):
        """Enhance one image: (file, task, model, frame, window, strength, ensemble, noise_level) ->
        ((before, after), markdown, PNG path)."""
        # Parameter names are the API's keyword names (client.predict(file=..., task=..., ...)); strength,
        # ensemble and noise_level came last, with defaults, so clients written for the first five keep working.
        # progress and request are filled in by Gradio and are not API inputs.
        progress(0, desc="starting: reading the image, loading the model")  # visible at once, before any tile
        session = getattr(request, "session_hash", None)
        flag = runs.begin_run(session, "enhance")
        tiles = runs.TileProgress(lambda d, t, text: progress((d, t), desc=text, unit="tiles"), str(model), flag)
        try:
            r = handlers.enhance_upload(file, task, model, frame, window, strength, ensemble, noise_level,
                                        preview_max_side=settings.preview_max_side,
                                        result_ttl_s=settings.result_ttl_s, progress=tiles)
        finally:
            runs.end_run(session, "enhance", flag)
        return r.slider_files(settings.result_ttl_s), r.markdown, r.png_path, r.dicom_path

    def stop_run(request: gr.Request) -> None:
        # The click also cancels the Gradio event (cancels=); the flag stops the worker at its next tile.
        runs.request_stop(getattr(request, "session_hash", None), "enhance")

    def show_dicom(path: str | None) -> str | None:
        # Runs in the browser session after /enhance succeeds: the State holds this session's DICOM path.
        return path

    # UI-only helpers are private: the public API is /enhance and /measure.
    private = {"api_visibility": "private"}
    file.change(on_file, [file, window], [preview, meta_md, frame, header_md], **private)
    frame.input(on_view, [file, frame, window], [preview, meta_md], trigger_mode="always_last", **private)
    window.change(on_view, [file, frame, window], [preview, meta_md], trigger_mode="always_last", **private)
    task.change(_model_dropdown, task, model, **private)
    # Weights may be trained after the server started: refresh the model list on every page load.
    demo.load(_model_dropdown, task, model, **private)
    running = run.click(enhance, [file, task, model, frame, window, strength, ensemble, noise_level],
                        [slider, result_md, download, dicom_path],
                        api_name="enhance", api_description="Enhance a medical image: (file, task, model, frame, "
                        "window, strength, ensemble, noise_level) -> (before/after preview, markdown report, result PNG).",
                        concurrency_id="inference")
    running.success(show_dicom, dicom_path, dicom_download, **private)
    measure.click(handlers.measure_file, [file, frame, window, model], measured, api_name="measure",
                  api_description="Measure an image before enhancing it: (file, frame, window, model) -> JSON with "
                  "the estimated noise sigma ([0, 1] and stored units), JPEG blocking, smoothness, what an auto_* "
                  "model would run and a warning if the model is far outside its training noise range.")
    # Its own (default) concurrency group: a Stop is never queued behind the run it stops.
    stop.click(stop_run, None, None, cancels=[running], **private)
