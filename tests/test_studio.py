"""Studio tests: the app builds, the /enhance handler works on real DICOMs, bad input is a clean gr.Error.

Fast and CPU-only; real images come from pydicom's test data (pydicom-data), no network.
One end-to-end test serves the app on a free localhost port and calls it with gradio_client.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import studio  # noqa: E402
from models import list_models, model_card  # noqa: E402
from studio import handlers
from studio.ui import render  # noqa: E402
from bench.servers import free_port  # noqa: E402


from conftest import testdata as _testdata  # noqa: E402


CT = _testdata("CT_small.dcm")  # CT, 128x128, 16 bit, MONOCHROME2
CR_MONO1 = _testdata("RG1_UNCR.dcm")  # CR, 1955x1841, 15 bit, MONOCHROME1
MULTIFRAME = _testdata("emri_small.dcm")  # MR, 64x64, 10 frames
MR = _testdata("MR_small.dcm")  # MR, 64x64, 16 bit: the cheapest real DICOM for every network

needs_ct = pytest.mark.skipif(CT is None, reason="pydicom test file CT_small.dcm not available")



def _png_array(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _ready_networks() -> list[str]:
    return [s.name for s in list_models() if s.kind == "network" and model_card(s.name).get("weights_present")]


# --- building the app -------------------------------------------------------------------

def test_build_app_has_enhance_endpoint() -> None:
    demo = studio.build_app()
    assert isinstance(demo, gr.Blocks)
    endpoints = demo.get_api_info()["named_endpoints"]
    assert {"/enhance", "/compare"} <= set(endpoints)
    # UI helper events (window re-read, model list refresh...) stay private.
    assert not any(e.startswith(("/lambda", "/on_", "/update")) for e in endpoints), list(endpoints)
    params = [p["parameter_name"] for p in endpoints["/enhance"]["parameters"]]
    assert params == ["file", "task", "model", "frame", "window", "strength", "ensemble", "noise_level"]
    assert len(endpoints["/enhance"]["returns"]) == 3


def test_model_choices_automatic_then_networks_first_and_fit_task() -> None:
    for label, (task, scale) in handlers.TASKS.items():
        choices = handlers.model_choices(label)
        assert choices, label
        kinds = [model_card(name)["kind"] for _, name in choices]
        assert kinds == sorted(kinds, key=["auto", "network", "classical"].index)  # automatic, networks, classical
        for _, name in choices:
            card = model_card(name)
            assert card["task"] == task and (scale is None or card["scale"] == scale)
        assert handlers.default_model(label) in [n for _, n in choices]


def test_parse_window() -> None:
    assert handlers.parse_window("default") is None and handlers.parse_window(None) is None
    assert handlers.parse_window("lung") == "lung"
    assert handlers.parse_window("Full") == "full"
    assert handlers.parse_window("40,400") == (40.0, 400.0)
    assert handlers.parse_window("-600/1500") == (-600.0, 1500.0)
    for bad in ("bogus", "40,0", "40,-5"):
        with pytest.raises(gr.Error):
            handlers.parse_window(bad)


def test_render_card_with_scores() -> None:
    card = {"name": "vdsr_x2", "kind": "network", "task": "sr", "scale": 2, "summary": "VDSR.",
            "weights": "vdsr_x2.safetensors", "weights_present": True,
            "metadata": {"arch": "VDSR", "params": 1000, "training": {"steps": 10, "data_name": "cxr"},
                         "val": {"psnr": 40.1, "ssim": 0.95, "baseline": {"psnr": 39.0, "ssim": 0.94},
                                 "baseline_name": "bicubic"},
                         "test_sr_x2": {"psnr": 39.5, "ssim": 0.93, "images": 5,
                                        "baseline": {"model": "bicubic_x2", "psnr": 38.9, "ssim": 0.92}}}}
    md = render.card_markdown(card)
    assert "40.1" in md and "+1.10" in md and "test_sr_x2 (5 images)" in md and "+0.60" in md
    assert "bicubic_x2" in md
    missing = render.card_markdown({**card, "weights_present": False, "metadata": None})
    assert "not available" in missing
    assert render.format_duration(0.0123) == "12.3 ms" and render.format_duration(2.5) == "2.50 s"


def test_about_models_lists_every_model() -> None:
    md = handlers.about_models()
    assert all(f"`{s.name}`" in md for s in list_models())


# --- the enhance handler on real DICOMs --------------------------------------------------

@needs_ct
def test_enhance_ct_sr_gives_16bit_png_and_report() -> None:
    (before, after), md, path = studio.enhance_file(CT, "Super-resolution x2", "bicubic_x2", 0, "default")
    out = _png_array(path)
    assert out.shape == (256, 256) and out.dtype == np.uint16  # 16-bit input -> 16-bit download
    assert before.size == after.size == (256, 256)  # both slider halves the same size
    assert Path(path).name.startswith("medenhance_bicubic_x2_")  # generated, never the upload's name
    assert "CT" in md and "HU" in md and "bicubic_x2" in md and ("ms" in md or " s" in md)


def test_strength_is_checked_and_reported(results_dir, tmp_path) -> None:
    src = tmp_path / "in.png"
    pixels = (np.indices((40, 50)).sum(0) * 3 % 256).astype(np.uint8)
    Image.fromarray(pixels).save(src)
    half = handlers.enhance_upload(str(src), "Denoise", "gaussian", 0, "default", "0.5")
    full = _png_array(handlers.enhance_upload(str(src), "Denoise", "gaussian").png_path).astype(float)
    expected = np.round((pixels + 0.5 * (full - pixels)))  # halfway between the input and the full output
    assert np.abs(_png_array(half.png_path) - expected).max() <= 1
    assert "at strength **0.5** (blended with the input)" in half.markdown
    assert handlers.parse_strength(None) == handlers.parse_strength("") == 1.0
    for bad in ("abc", 1.5, -1, "nan"):
        with pytest.raises(gr.Error, match="Strength must be"):
            handlers.enhance_upload(str(src), "Denoise", "gaussian", 0, "default", bad)


def test_self_ensemble_is_the_models_and_is_reported(results_dir, tmp_path) -> None:
    from models import enhance
    from models.io.export import to_uint

    src = tmp_path / "in.png"
    pixels = (np.indices((24, 28)).sum(0) * 7 % 256).astype(np.uint8)
    pixels[3:9, 4:6] = 255  # an asymmetric feature, so the 8 orientations really differ
    Image.fromarray(pixels).save(src)
    name = "vdsr_x2" if "vdsr_x2" in _ready_networks() else "bicubic_x2"
    ens = handlers.enhance_upload(str(src), "Super-resolution x2", name, 0, "default", 1.0, True)
    expected = enhance(pixels.astype(np.float32) / 255, name, ensemble=True)
    np.testing.assert_array_equal(_png_array(ens.png_path), to_uint(expected, 8))
    assert "with the ×8 self-ensemble" in ens.markdown
    single = handlers.enhance_upload(str(src), "Super-resolution x2", name, 0, "default", 1.0, "false")
    assert "self-ensemble" not in single.markdown.split("### Image")[0]
    assert handlers.parse_ensemble(None) is handlers.parse_ensemble("") is False
    for bad in ("maybe", 2, 0.5):
        with pytest.raises(gr.Error, match="Self-ensemble must be"):
            handlers.enhance_upload(str(src), "Super-resolution x2", name, 0, "default", 1.0, bad)


def test_a_given_noise_level_reaches_the_noise_aware_model_and_is_reported(results_dir, tmp_path) -> None:
    from models import enhance
    from models.io.export import to_uint

    src = tmp_path / "in.png"
    rng = np.random.default_rng(3)
    pixels = np.clip(np.indices((32, 36)).sum(0) * 3 + rng.normal(0, 12, (32, 36)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(src)
    told = handlers.enhance_upload(str(src), "Denoise", "dae_na", 0, "default", 1.0, False, "0.08")
    expected = enhance(pixels.astype(np.float32) / 255, "dae_na", noise_level=0.08)
    np.testing.assert_array_equal(_png_array(told.png_path), to_uint(expected, 8))
    assert "told noise σ = 0.08 instead of the estimate" in told.markdown
    assert handlers.parse_noise_level("") is handlers.parse_noise_level(None) is handlers.parse_noise_level(0) is None
    for bad in ("abc", 1.5, -0.1, "nan"):
        with pytest.raises(gr.Error, match="Noise level must be"):
            handlers.enhance_upload(str(src), "Denoise", "dae_na", 0, "default", 1.0, False, bad)
    with pytest.raises(gr.Error, match="not noise-aware"):  # a level for a model that cannot take one
        handlers.enhance_upload(str(src), "Denoise", "dae", 0, "default", 1.0, False, 0.05)


@needs_ct
def test_slider_previews_are_served_as_lossless_files(results_dir, tmp_path) -> None:
    # The tabs hand Gradio PNG files written at the fast zlib level instead of PIL images
    # (which Gradio would re-encode at the slow default); the pixels must be unchanged.
    src8 = tmp_path / "in8.png"
    Image.fromarray((np.indices((40, 50)).sum(0) % 256).astype(np.uint8)).save(src8)
    for src, reuses_png in ((CT, False), (str(src8), True)):  # 16-bit result PNG: a separate 8-bit preview
        r = handlers.enhance_upload(src, "Super-resolution x2", "bicubic_x2")
        paths = r.slider_files()
        assert r.after_is_png is reuses_png and (paths[1] == r.png_path) is reuses_png
        assert all(Path(p).parent == results_dir for p in paths)
        for im, p in zip(r.pair, paths):
            assert np.array_equal(_png_array(p), np.asarray(im))
    assert handlers.preview_file(None) is None


@needs_ct
@pytest.mark.parametrize("task,model,scale", [("Super-resolution x4", "bicubic_x4", 4), ("Denoise", "median", 1),
                                              ("Enhance", "clahe", 1)])
def test_enhance_ct_other_tasks(task: str, model: str, scale: int) -> None:
    (before, after), _, path = studio.enhance_file(CT, task, model, 0, "soft tissue")
    assert _png_array(path).shape == (128 * scale, 128 * scale)
    assert before.size == after.size


@needs_ct
@pytest.mark.parametrize("name", _ready_networks() or [pytest.param("none", marks=pytest.mark.skip("no trained weights yet"))])
def test_enhance_ct_with_each_trained_network(name: str) -> None:
    card = model_card(name)
    task = {"sr": f"Super-resolution x{card['scale']}", "denoise": "Denoise", "enhance": "Enhance"}[card["task"]]
    src, side = (MR, 64) if MR else (CT, 128)
    (before, after), md, path = studio.enhance_file(src, task, name, 0, "default")
    out = _png_array(path)
    assert out.shape == (side * card["scale"],) * 2 and out.dtype == np.uint16
    assert before.size == after.size
    assert name in md


@pytest.mark.skipif(CR_MONO1 is None, reason="pydicom-data RG1_UNCR.dcm not available")
def test_enhance_large_monochrome1_cr_previews_downsampled() -> None:
    (before, after), md, path = studio.enhance_file(CR_MONO1, "Super-resolution x2", "bicubic_x2", 0, None,
                                                    preview_max_side=1024)
    out = _png_array(path)
    assert out.shape == (1955 * 2, 1841 * 2) and out.dtype == np.uint16  # full resolution download
    assert max(after.size) == 1024 and before.size == after.size  # light preview
    assert "MONOCHROME1" in md and "downsampled" in md


@pytest.mark.skipif(MULTIFRAME is None, reason="pydicom-data emri_small.dcm not available")
def test_multiframe_frame_selection() -> None:
    preview, md, frames = studio.inspect_upload(MULTIFRAME, 0, "default")
    assert frames == 10 and preview is not None and "of 10" in md
    _, _, path = studio.enhance_file(MULTIFRAME, "Enhance", "contrast_stretch", 3, "auto")
    assert _png_array(path).shape == (64, 64)
    with pytest.raises(gr.Error):
        studio.enhance_file(MULTIFRAME, "Enhance", "contrast_stretch", 99, "auto")


def test_enhance_8bit_rgb_png_gives_8bit_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(src)
    (before, after), _, path = studio.enhance_file(str(src), "Super-resolution x2", "lanczos_x2")
    out = _png_array(path)
    assert out.shape == (80, 60, 3) and out.dtype == np.uint8
    assert before.size == after.size == (60, 80)


# --- bad input is a clean gr.Error, and the server keeps working -----------------------------

def _bad_files(tmp: Path) -> dict[str, str | None]:
    empty = tmp / "empty.dcm"
    empty.write_bytes(b"")
    text = tmp / "notes.dcm"
    text.write_text("this is not a DICOM file\n" * 20)
    tiny = tmp / "tiny.png"
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tiny)
    return {"none": None, "empty": str(empty), "text": str(text), "1x1": str(tiny)}


@pytest.mark.parametrize("case", ["none", "empty", "text", "1x1"])
def test_bad_files_raise_gr_error(tmp_path: Path, case: str) -> None:
    with pytest.raises(gr.Error) as info:
        studio.enhance_file(_bad_files(tmp_path)[case], "Super-resolution x2", "bicubic_x2", 0, "default")
    assert str(info.value.message)  # a message for the user
    assert str(tmp_path) not in str(info.value.message)  # no server paths (or patient names) echoed


@needs_ct
@pytest.mark.parametrize("task,model,window", [("Super-resolution x2", "no_such_model", "default"),
                                               ("Denoise", "bicubic_x2", "default"),  # model does not fit the task
                                               ("Not a task", "bicubic_x2", "default"),
                                               ("Super-resolution x2", "bicubic_x2", "nonsense")])
def test_bad_requests_raise_gr_error(task: str, model: str, window: str) -> None:
    with pytest.raises(gr.Error):
        studio.enhance_file(CT, task, model, 0, window)


@needs_ct
def test_missing_weights_is_a_clear_error() -> None:
    missing = [s.name for s in list_models() if s.kind == "network" and not model_card(s.name)["weights_present"]]
    if not missing:
        pytest.skip("every network has weights")
    spec = next(s for s in list_models() if s.name == missing[0])
    task = f"Super-resolution x{spec.scale}" if spec.task == "sr" else spec.task.capitalize()
    with pytest.raises(gr.Error) as info:
        studio.enhance_file(CT, task, spec.name, 0, "default")
    assert "weights" in info.value.message.lower()


@needs_ct
def test_good_request_after_bad_ones(tmp_path: Path) -> None:
    for f in _bad_files(tmp_path).values():
        with pytest.raises(gr.Error):
            studio.enhance_file(f, "Super-resolution x2", "bicubic_x2", 0, "default")
    _, _, path = studio.enhance_file(CT, "Super-resolution x2", "bicubic_x2", 0, "default")
    assert _png_array(path).shape == (256, 256)


def test_unexpected_errors_are_logged_without_file_names(monkeypatch, caplog, tmp_path: Path) -> None:
    src = tmp_path / "Doe_John_1970.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(src)

    def boom(*_a, **_k):
        raise RuntimeError(f"kaputt while reading {src}")

    monkeypatch.setattr(handlers.enhance, "enhance", boom)
    with pytest.raises(gr.Error) as info:
        studio.enhance_file(str(src), "Enhance", "clahe")
    assert "internal error" in info.value.message.lower()
    assert "kaputt" in caplog.text and "Doe_John" not in caplog.text


# --- end to end: a served app called through gradio_client -----------------------------------

@needs_ct
def test_end_to_end_gradio_client(tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    demo = studio.build_app()
    demo.queue(default_concurrency_limit=1, max_size=8)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                max_file_size="64mb", quiet=True)
    try:
        client = Client(demo.local_url, verbose=False, download_files=str(tmp_path), analytics_enabled=False)
        preview, md, result = client.predict(handle_file(CT), "Super-resolution x2", "bicubic_x2", 0, "lung",
                                             api_name="/enhance")
        out = _png_array(result)
        assert out.shape == (256, 256) and out.dtype == np.uint16
        assert "bicubic_x2" in md and "CT" in md
        # A bad upload is an error for the client, and the server keeps serving.
        bad = tmp_path / "bad.dcm"
        bad.write_text("not an image")
        with pytest.raises(Exception, match="(?i)read|image|dicom"):
            client.predict(handle_file(str(bad)), "Super-resolution x2", "bicubic_x2", 0, "default",
                           api_name="/enhance")
        _, _, again = client.predict(handle_file(CT), "Enhance", "clahe", 0, "default", api_name="/enhance")
        assert _png_array(again).shape == (128, 128)
        # strength, the sixth parameter (optional: the five-argument calls above still work): 0 = the input.
        _, md0, none = client.predict(handle_file(CT), "Enhance", "clahe", 0, "default", 0.0, api_name="/enhance")
        _, _, plain = client.predict(handle_file(CT), "Enhance", "gamma", 0, "default", 0.0, api_name="/enhance")
        np.testing.assert_array_equal(_png_array(none), _png_array(plain))  # both are the input
        assert "strength **0**" in md0
        # ensemble, the seventh (optional too).
        _, md8, _ = client.predict(handle_file(CT), "Super-resolution x2", "bicubic_x2", 0, "default", 1.0, True,
                                   api_name="/enhance")
        assert "with the ×8 self-ensemble" in md8
    finally:
        demo.close()
