"""The "Compare" tab: layout and event wiring only; the work is in :mod:`studio.compare`."""

from __future__ import annotations

from typing import Any

import gradio as gr

from studio import compare, handlers
from studio.config import Settings
from studio.handlers import progress as runs
from studio.ui import examples

COMPARE_HELP = (
    "Run several models on one image and compare them: side by side, in a before/after slider, "
    "zoomed into the same region, and with numbers. Models of one output scale are compared together. "
    "*Simulate* degrades a clean image with the training package's degradations and scores every result "
    "against the original; *Reference* scores against a ground truth you upload; without a reference "
    "only descriptive indicators are shown."
)

# Long side of the grid previews: a comparison shows many images at once, so lighter than Enhance's preview.
GRID_MAX_SIDE = 1024


def _models_for_group(group: str) -> tuple[gr.CheckboxGroup, gr.Dropdown]:
    """Model checkboxes and degradation choices after a group change (or a page load)."""
    scale = compare.GROUPS.get(group, 2)
    return (gr.CheckboxGroup(choices=compare.model_choices(group), value=compare.default_models(group)),
            gr.Dropdown(choices=compare.degradation_choices(scale), value=compare.default_degradation(scale)))


def _mode_visibility(mode: str) -> tuple[gr.Dropdown, gr.Number, gr.File]:
    """Degradation and seed only in simulate mode, the reference upload only in reference mode."""
    return (gr.Dropdown(visible=mode == "simulate"), gr.Number(visible=mode == "simulate"),
            gr.File(visible=mode == "reference"))


def _frame_box(frame_count: int) -> gr.Number:
    n = max(1, int(frame_count))
    return gr.Number(value=0, maximum=n - 1, visible=n > 1, info=f"0 … {n - 1} ({n} frames)" if n > 1 else None)


def _examples_gallery() -> tuple[list, list[str], str]:
    """Thumbnails, their keys (to map a click back) and the attribution list; run on page load."""
    items = examples.thumbnails()
    return ([(thumb, ex.title) for ex, thumb in items], [ex.key for ex, _ in items],
            examples.attribution_markdown([ex for ex, _ in items]))


def build_compare_tab(demo: gr.Blocks, settings: Settings) -> None:
    """Lay out the Compare tab inside the current ``gr.Tab`` and wire its events.

    Registers the named API endpoint ``/compare``:
    (file, frame, window, models, mode, reference, degradation, seed, results)
    -> (results gallery, error-map gallery, metrics table, markdown report, ZIP path).
    """
    run_id = gr.State(None)  # server-side only: the id of the last comparison of this browser session
    example_keys = gr.State([])
    grid_side = min(GRID_MAX_SIDE, settings.preview_max_side)

    gr.Markdown(COMPARE_HELP)
    with gr.Row():
        with gr.Column(scale=2, min_width=340):
            # No file_types filter: extensionless DICOMs (see Enhance).
            file = gr.File(label="Image (the clean original in Simulate mode)", file_count="single",
                           type="filepath", file_types=None, elem_id="compare-file")
            gallery_examples = gr.Gallery(label="…or pick an example (click to load)", columns=4, rows=2,
                                          height=250, allow_preview=False, object_fit="cover",
                                          interactive=False, format="png")
            example_md = gr.Markdown()
            with gr.Accordion("Example sources and licences", open=False):
                sources_md = gr.Markdown()
            frame = gr.Number(label="Frame", value=0, precision=0, minimum=0, visible=False)
            window = gr.Dropdown(choices=handlers.window_choices(), value=handlers.DEFAULT_WINDOW,
                                 label="Display window", allow_custom_value=True,
                                 info="Applied once when reading; every model and metric sees the same [0, 1] values.")
            preview = gr.Image(label="Input as read", type="pil", format="png", image_mode=None,
                               interactive=False, height=200)
            meta_md = gr.Markdown(elem_id="compare-meta")
        with gr.Column(scale=3, min_width=420):
            group = gr.Radio(choices=list(compare.GROUPS), value=compare.DEFAULT_GROUP, label="Compare")
            # Built with every model and degradation: the server checks API values against these choices.
            # A page load narrows them to the chosen group (see _models_for_group); the handler checks scales.
            models = gr.CheckboxGroup(choices=compare.model_choices(None),
                                      value=compare.default_models(compare.DEFAULT_GROUP),
                                      label="Models (the baseline row is always added)")
            mode = gr.Radio(choices=compare.mode_choices(), value=compare.DEFAULT_MODE, label="Numbers")
            with gr.Row():
                # No initial value: API clients that leave it out get the default for their models' scale
                # (compare.default_degradation); a page load selects the group's default for the UI.
                degradation = gr.Dropdown(choices=compare.degradation_choices(), value=None,
                                          label="Degradation (from the training package)", scale=3,
                                          allow_custom_value=True)  # API clients may send any key; checked server-side
                seed = gr.Number(value=0, precision=0, minimum=0, label="Noise seed", scale=1)
            reference = gr.File(label="Reference: ground truth at the output size", file_count="single",
                                type="filepath", file_types=None, visible=False)
            # Another tool's results of this input, scored and shown beside the models (studio.compare.imported).
            imported = gr.File(label="Add results from another tool (optional): one file per method, named after it, "
                                     "at the output size", file_count="multiple", type="filepath", file_types=None,
                               elem_id="compare-imported")
            with gr.Row():
                run = gr.Button("Compare", variant="primary", elem_id="compare-run", scale=3)
                stop = gr.Button("Stop", variant="stop", elem_id="compare-stop", scale=1, min_width=80)
            report = gr.Markdown(label="Report", elem_id="compare-report")
    # Full width: up to 11 columns (scores, data range, border crop, time, note).
    table = gr.Dataframe(label="Metrics", interactive=False, wrap=True,
                         headers=["model", "kind", "PSNR (dB)", "SSIM", "MSE", "SNR (dB)", "seconds / image"],
                         elem_id="compare-table")
    download = gr.File(label="Download: results, error maps and table (ZIP)", interactive=False, height=90)

    gr.Markdown("### Before / after\nPick any two images; SR inputs are enlarged with nearest neighbour.")
    with gr.Row():
        left = gr.Dropdown(label="Left", choices=[], allow_custom_value=True)
        right = gr.Dropdown(label="Right", choices=[], allow_custom_value=True)
    slider = gr.ImageSlider(label="Left | Right (drag the handle)", type="pil", format="png", image_mode=None,
                            interactive=False, max_height=640, elem_id="compare-slider")

    gr.Markdown("### Grid")
    results = gr.Gallery(label="Results (same size; captions: PSNR, SSIM or time)", columns=4, format="png",
                         object_fit="contain", height="auto", interactive=False)
    errors = gr.Gallery(label="Absolute-error maps (one shared colour scale, drawn above each map)", columns=4,
                        format="png", object_fit="contain", height="auto", interactive=False)

    gr.Markdown("### Synchronized zoom\nClick the overview (or move the sliders): the same region of every "
                "image, magnified with nearest neighbour, with one contrast setting for all.")
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            overview = gr.Image(label="Overview: click to choose the region", type="pil", format="png",
                                interactive=False, height=300, elem_id="compare-overview")
            cx = gr.Slider(0, 1, 0.5, step=0.005, label="Centre x (fraction of the width)")
            cy = gr.Slider(0, 1, 0.5, step=0.005, label="Centre y (fraction of the height)")
            zoom = gr.Radio(choices=list(compare.ZOOM_FACTORS), value=4, label="Zoom (screen px per output px)")
            lo = gr.Slider(0, 1, 0, step=0.01, label="Contrast: black at")
            hi = gr.Slider(0, 1, 1, step=0.01, label="Contrast: white at")
        with gr.Column(scale=3):
            zoomed = gr.Gallery(label="Same region, every image", columns=4, format="png", object_fit="contain",
                                height="auto", interactive=False)

    # --- handlers (thin: argument plumbing between components and studio.compare) ---------------
    def compare_models(file: Any, frame: Any, window: Any, models: Any, mode: Any, reference: Any = None,
                       degradation: Any = None, seed: Any = 0, results: Any = None,
                       progress: gr.Progress = gr.Progress(), request: gr.Request = None):
        """Compare models on one image: (file, frame, window, models, mode, reference, degradation, seed, results)
        -> (results gallery, error-map gallery, metrics table, markdown report, ZIP path)."""
        # Parameter names are the API's keyword names (client.predict(file=..., models=[...], ...));
        # the None default makes `reference` (and `results`, another tool's outputs) optional for API clients.
        progress(0, desc="starting: reading the image")  # visible at once
        session = getattr(request, "session_hash", None)
        flag = runs.begin_run(session, "compare")

        def say(fraction: float, text: str) -> None:
            if flag.is_set():  # Stop: raised inside the tile loop of the model running now
                raise runs.Cancelled()
            progress(fraction, desc=text)

        try:
            return compare.compare_file(file, frame, window, models, mode, reference, degradation, seed, results,
                                        progress=say, preview_max_side=grid_side,
                                        result_ttl_s=settings.result_ttl_s)
        finally:
            runs.end_run(session, "compare", flag)

    def stop_run(request: gr.Request) -> None:
        runs.request_stop(getattr(request, "session_hash", None), "compare")

    def after_run(rid: str):
        r = compare.get_run(rid)
        names = compare.view_choices(r)
        first_model = next((n for n in r.outputs if n != r.baseline), r.baseline)
        pair = handlers.preview_files(compare.slider_pair(rid, compare.INPUT, first_model, settings.preview_max_side),
                                      settings.result_ttl_s)
        ov, tiles = compare.zoom_views(rid, 0.5, 0.5, 4, 0.0, 1.0)
        return (gr.Dropdown(choices=names, value=compare.INPUT), gr.Dropdown(choices=names, value=first_model),
                pair, ov, tiles, 0.5, 0.5, 4, 0.0, 1.0)

    def on_slider(rid: str, left_: str, right_: str):
        return handlers.preview_files(compare.slider_pair(rid, left_, right_, settings.preview_max_side),
                                      settings.result_ttl_s)

    def on_zoom(rid: str, cx_: float, cy_: float, zoom_: int, lo_: float, hi_: float):
        return compare.zoom_views(rid, cx_, cy_, zoom_, lo_, hi_)

    def on_click(rid: str, zoom_: int, lo_: float, hi_: float, evt: gr.SelectData):
        x, y = evt.index[:2]
        fx, fy = compare.click_to_centre(rid, x, y)
        ov, tiles = compare.zoom_views(rid, fx, fy, zoom_, lo_, hi_)
        return fx, fy, ov, tiles

    def on_example(keys: list[str], evt: gr.SelectData):
        key = keys[evt.index]
        ex = examples.get_example(key)
        return examples.example_path(key), f"**{ex.title}** — {ex.attribution}"

    def on_file(file_: Any, window_: Any):
        image, md, n = handlers.inspect_upload(file_, 0, window_)
        return handlers.preview_file(image, settings.result_ttl_s), md, _frame_box(n)

    def on_view(file_: Any, frame_: Any, window_: Any):
        image, md, _ = handlers.inspect_upload(file_, frame_, window_)
        return handlers.preview_file(image, settings.result_ttl_s), md

    private = {"api_visibility": "private"}  # the public API is /compare alone
    demo.load(_examples_gallery, None, [gallery_examples, example_keys, sources_md], **private)
    demo.load(_models_for_group, group, [models, degradation], **private)  # weights trained since start
    gallery_examples.select(on_example, example_keys, [file, example_md], **private)
    file.change(on_file, [file, window], [preview, meta_md, frame], **private)
    frame.input(on_view, [file, frame, window], [preview, meta_md], trigger_mode="always_last", **private)
    window.change(on_view, [file, frame, window], [preview, meta_md], trigger_mode="always_last", **private)
    group.change(_models_for_group, group, [models, degradation], **private)
    mode.change(_mode_visibility, mode, [degradation, seed, reference], **private)

    running = run.click(compare_models, [file, frame, window, models, mode, reference, degradation, seed, imported],
                        [results, errors, table, report, download, run_id], api_name="compare",
                        api_description="Compare models on one image: (file, frame, window, models [names of "
                        "one output scale], mode ['simulate' | 'reference' | 'none'], reference [ground-truth file, "
                        "reference mode], degradation [key, simulate mode], seed, results [files of another tool, "
                        "output size]) -> (results gallery, error-map gallery, metrics table, "
                        "markdown report, ZIP of results + error maps + metrics.csv).",
                        concurrency_id="inference")
    running.success(after_run, run_id, [left, right, slider, overview, zoomed, cx, cy, zoom, lo, hi], **private)
    stop.click(stop_run, None, None, cancels=[running], **private)  # own concurrency group: never queued behind it
    left.input(on_slider, [run_id, left, right], slider, **private)
    right.input(on_slider, [run_id, left, right], slider, **private)
    overview.select(on_click, [run_id, zoom, lo, hi], [cx, cy, overview, zoomed], **private)
    for s in (cx, cy, lo, hi):
        s.release(on_zoom, [run_id, cx, cy, zoom, lo, hi], [overview, zoomed], trigger_mode="always_last", **private)
    zoom.input(on_zoom, [run_id, cx, cy, zoom, lo, hi], [overview, zoomed], **private)
