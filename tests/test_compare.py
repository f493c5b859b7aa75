"""Compare tab tests: numbers equal train.metrics, error maps, zoom/slider, examples, bad input, /compare end to end.

Real images only from registry packages (pydicom test data, skimage.data); classical
models only (plus no network), so the module runs in seconds on a CPU.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

import csv  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from models import enhance, list_models, model_card, read_image  # noqa: E402
from models.resample import upscale  # noqa: E402
from studio import compare  # noqa: E402
from studio.compare import heatmap  # noqa: E402
from studio.ui import examples  # noqa: E402
from bench.servers import free_port  # noqa: E402
from train import metrics  # noqa: E402
from train.degrade import bicubic_down, compose, crop_to_multiple  # noqa: E402
from train.tasks import DENOISE_EVAL  # noqa: E402


from conftest import testdata as _testdata  # noqa: E402


CT = _testdata("CT_small.dcm")  # CT, 128x128, 16 bit
needs_ct = pytest.mark.skipif(CT is None, reason="pydicom test file CT_small.dcm not available")



@pytest.fixture(scope="module")
def ihc_png(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 96x96 crop of skimage's immunohistochemistry image (real colour micrograph) as PNG."""
    import skimage.data

    path = tmp_path_factory.mktemp("ihc") / "ihc.png"
    Image.fromarray(skimage.data.immunohistochemistry()[200:296, 200:296]).save(path)
    return str(path)


def _zip_csv(zip_path: str) -> list[dict[str, str]]:
    with zipfile.ZipFile(zip_path) as zf:
        return list(csv.DictReader(io.StringIO(zf.read("metrics.csv").decode("utf-8"))))


# --- simulate mode: the numbers are train.metrics' numbers ---------------------------------------

@needs_ct
def test_simulate_sr_on_real_ct_matches_train_metrics() -> None:
    results, errors, table, report, zip_path, run_id = compare.compare_file(
        CT, 0, "default", ["lanczos_x2"], "simulate", None, "down_x2", 0)
    # Independently: clean image, SR evaluation degradation, model, train.metrics with crop = scale.
    clean, _ = read_image(CT)
    clean = crop_to_multiple(clean, 2)
    lr = bicubic_down(clean, 2)
    expected = {"lanczos_x2": enhance(lr, "lanczos_x2"), "bicubic x2 (baseline)": upscale(lr, 2)}
    run = compare.get_run(run_id)
    np.testing.assert_array_equal(run.input, lr)
    raw = run.table().set_index("model")
    shown = table.set_index("model")
    for label, out in expected.items():
        psnr = metrics.psnr(out, clean, data_range=1.0, crop=2)
        ssim = metrics.ssim(out, clean, data_range=1.0, crop=2)
        mse = metrics.mse(out, clean, data_range=1.0, crop=2)
        snr = metrics.snr(out, clean, data_range=1.0, crop=2)
        assert raw.loc[label, "PSNR (dB)"] == pytest.approx(psnr, abs=1e-9)
        assert raw.loc[label, "SSIM"] == pytest.approx(ssim, abs=1e-9)
        assert raw.loc[label, "MSE"] == pytest.approx(mse, rel=1e-9)
        assert raw.loc[label, "SNR (dB)"] == pytest.approx(snr, abs=1e-9)
        assert raw.loc[label, "GMSD (lower = better)"] == pytest.approx(
            metrics.gmsd(out, clean, data_range=1.0, crop=2), abs=1e-12)
        assert shown.loc[label, "PSNR (dB)"] == pytest.approx(psnr, abs=0.005)  # the browser's rounded table
        assert shown.loc[label, "SSIM"] == pytest.approx(ssim, abs=5e-5)
        assert shown.loc[label, "data range"] == 1.0 and shown.loc[label, "border crop (px)"] == 2
        np.testing.assert_allclose(run.errors[label], metrics.abs_error_map(out, clean))
    assert list(table["model"]) == ["bicubic x2 (baseline)", "lanczos_x2"]  # baseline row always first
    assert "DeltaE2000" not in table.columns  # grayscale
    assert all(s >= 0 for s in table["seconds / image"])
    assert 20 < raw.loc["lanczos_x2", "PSNR (dB)"] < 60 and not run.warnings  # plausible, no sanity warning
    assert "border crop 2 px" in report and "data range 1.0" in report and "train.metrics" in report
    # Grid: input, reference, baseline, model, all at the output size; one error map per result.
    assert [c.split(":")[0] for _, c in results] == ["input (degraded)", "reference (clean original)",
                                                     "bicubic x2 (baseline)", "lanczos_x2"]
    assert {im.size for im, _ in results} == {(128, 128)}
    assert len(errors) == 2
    # ZIP: results as 16-bit PNGs (16-bit CT), error maps, the table with full precision.
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        with zf.open("results/03_lanczos_x2.png") as f:
            png = np.asarray(Image.open(f))
    assert png.shape == (128, 128) and png.dtype == np.uint16
    assert sum(n.startswith("error_maps/") for n in names) == 2 and "README.md" in names
    rows = {r["model"]: r for r in _zip_csv(zip_path)}
    assert float(rows["lanczos_x2"]["PSNR (dB)"]) == pytest.approx(raw.loc["lanczos_x2", "PSNR (dB)"], abs=1e-9)
    assert Path(zip_path).name.startswith("medenhance_compare_")  # generated, never the upload's name


@pytest.mark.parametrize("key", sorted(compare.options.DEGRADATIONS))
def test_every_simulate_degradation_is_the_training_packages_seeded_chain(key: str, tmp_path: Path) -> None:
    """Simulate mode's input is exactly train.degrade.compose(steps) of the clean upload, same seed, right size."""
    deg = compare.options.DEGRADATIONS[key]
    clean = np.clip(np.add.outer(np.linspace(0.1, 0.9, 48), np.linspace(0.0, 0.3, 40)), 0, 1).astype(np.float32)
    png = tmp_path / "clean.png"
    Image.fromarray(np.rint(clean * 65535).astype(np.uint16)).save(png)
    model = "bicubic_x2" if deg.scale == 2 else "bicubic_x4" if deg.scale == 4 else "median"
    *_, run_id = compare.compare_file(str(png), 0, "default", [model], "simulate", None, key, 3)
    run = compare.get_run(run_id)
    read, _ = read_image(png)
    ref = crop_to_multiple(read, deg.scale) if deg.scale > 1 else read
    np.testing.assert_array_equal(run.input, compose(list(deg.steps))(ref, seed=3))
    assert run.input.shape == (ref.shape[0] // deg.scale, ref.shape[1] // deg.scale)
    assert run.input.dtype == np.float32 and 0.0 <= run.input.min() and run.input.max() <= 1.0
    assert not np.array_equal(run.input, ref[:: deg.scale, :: deg.scale])  # it did degrade


def test_simulate_denoise_colour_has_delta_e_and_identity_baseline(ihc_png: str) -> None:
    _, errors, table, _, _, run_id = compare.compare_file(ihc_png, 0, "default", "median, gaussian", "simulate",
                                                          None, "gaussian_noise", 3)
    clean, _ = read_image(ihc_png)
    name, params = DENOISE_EVAL["gaussian"]
    noisy = compose([(name, params)])(clean, seed=3)
    raw = compare.get_run(run_id).table().set_index("model")
    base = "identity: input unchanged (baseline)"
    for label, out in {base: noisy, "median": enhance(noisy, "median")}.items():
        assert raw.loc[label, "PSNR (dB)"] == pytest.approx(metrics.psnr(out, clean), abs=1e-9)
        assert raw.loc[label, "DeltaE2000"] == pytest.approx(metrics.delta_e(out, clean), rel=1e-9)
    assert raw.loc[base, "border crop (px)"] == 0
    assert raw.loc["median", "PSNR (dB)"] > raw.loc[base, "PSNR (dB)"]  # the filter removes some noise
    assert len(errors) == 3


def test_no_reference_mode_shows_indicators_not_scores(ihc_png: str) -> None:
    results, errors, table, report, _, _ = compare.compare_file(ihc_png, 0, "default", ["clahe"], "none")
    assert "noise sigma (est.)" in table.columns and "PSNR (dB)" not in table.columns
    assert "not quality scores" in report and errors == []
    img, _ = read_image(ihc_png)
    ind = compare.no_reference_indicators(img)
    assert table.set_index("model").loc["identity: input unchanged (baseline)", "RMS contrast"] == pytest.approx(
        ind["rms_contrast"], rel=1e-3)
    assert [c.split(":")[0] for _, c in results] == ["input", "clahe"]  # identity baseline not shown twice


def test_reference_mode_scores_against_uploaded_ground_truth(tmp_path: Path) -> None:
    import skimage.data

    gt = skimage.data.camera()[100:228, 150:278]  # 128 x 128, 8 bit
    Image.fromarray(gt).save(tmp_path / "gt.png")
    lr = np.rint(bicubic_down(gt.astype(np.float32) / 255, 2) * 255).astype(np.uint8)
    Image.fromarray(lr).save(tmp_path / "lr.png")
    _, errors, table, _, _, run_id = compare.compare_file(str(tmp_path / "lr.png"), 0, "default", ["lanczos_x2"],
                                                          "reference", str(tmp_path / "gt.png"))
    inp, _ = read_image(tmp_path / "lr.png")
    ref, _ = read_image(tmp_path / "gt.png")
    raw = compare.get_run(run_id).table().set_index("model")
    assert raw.loc["lanczos_x2", "PSNR (dB)"] == pytest.approx(
        metrics.psnr(enhance(inp, "lanczos_x2"), ref, crop=2), abs=1e-9)
    assert len(errors) == 2
    # A reference of the wrong size is refused with both sizes in the message.
    with pytest.raises(gr.Error, match="wrong size") as info:
        compare.compare_file(str(tmp_path / "lr.png"), 0, "default", ["lanczos_x2"], "reference",
                             str(tmp_path / "lr.png"))
    assert "64 × 64" in info.value.message and "128 × 128" in info.value.message


def test_sanity_warning_when_reference_is_the_input(tmp_path: Path) -> None:
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)).save(tmp_path / "a.png")
    _, _, table, report, _, _ = compare.compare_file(str(tmp_path / "a.png"), 0, "default", ["median"],
                                                     "reference", str(tmp_path / "a.png"))
    assert "Metric sanity warnings" in report and "identity" in report
    assert table.set_index("model").loc["identity: input unchanged (baseline)", "PSNR (dB)"] is None  # inf


# --- error maps ----------------------------------------------------------------------------------

def test_inferno_table_matches_matplotlib_endpoints_and_brightens() -> None:
    assert heatmap.INFERNO.shape == (256, 3) and heatmap.INFERNO.dtype == np.uint8
    assert tuple(heatmap.INFERNO[0]) == (0, 0, 4) and tuple(heatmap.INFERNO[255]) == (252, 255, 164)
    assert tuple(heatmap.INFERNO[128]) == (188, 55, 84)  # matplotlib inferno(128/255) = (0.7357, 0.2159, 0.3302)
    luma = heatmap.INFERNO.astype(float) @ [0.299, 0.587, 0.114]
    assert np.all(np.diff(luma) > -1.0)  # perceptually ordered: dark to bright


def test_error_map_colours_scale_bar_and_labels() -> None:
    values = np.tile(np.linspace(0, 0.2, 300, dtype=np.float32), (40, 1))  # a horizontal ramp 0 .. 0.2
    img, lay = heatmap.heatmap_with_scale_bar(values, 0.0, 0.1, clipped_above=True)
    rgb = np.asarray(img)
    x0, y0, x1, y1 = lay.map_box
    assert (x0, x1, y1 - y0) == (0, 300, 40) and lay.factor == 1 and img.size == (300, y1)
    bx0, by0, bx1, by1 = lay.bar_box
    assert by1 <= y0  # the scale bar is drawn above the map (gallery captions cover the bottom edge)
    m = rgb[y0:y1]
    np.testing.assert_array_equal(m, heatmap.INFERNO[heatmap.lut_index(values, 0.0, 0.1)])
    assert tuple(m[0, 0]) == tuple(heatmap.INFERNO[0])
    assert tuple(m[0, 299]) == tuple(heatmap.INFERNO[255])  # 0.2 > vmax: clipped to the top colour
    mid = np.argmin(np.abs(values[0] - 0.05))  # value 0.05 -> the middle of the colour table
    assert abs(int(heatmap.lut_index(values[0, mid], 0.0, 0.1)) - 128) <= 1
    # The scale bar: a left-to-right ramp through the whole table.
    bar = rgb[(by0 + by1) // 2, bx0:bx1]
    assert tuple(bar[0]) == tuple(heatmap.INFERNO[0]) and tuple(bar[-1]) == tuple(heatmap.INFERNO[255])
    assert np.all(np.diff(bar.astype(float) @ [0.299, 0.587, 0.114]) > -1.5)
    # Min/max labels: white text above the bar, at its left and right ends.
    labels = rgb[:by0, :]
    white = np.all(labels > 200, axis=-1)
    assert white[:, : img.width // 3].any() and white[:, 2 * img.width // 3:].any()


def test_small_error_maps_are_enlarged_by_whole_factors() -> None:
    values = np.zeros((10, 20), np.float32)
    values[5, 7] = 1.0
    img, lay = heatmap.heatmap_with_scale_bar(values, 0.0, 1.0)
    x0, y0, x1, y1 = lay.map_box
    assert lay.factor == 13 and (x1 - x0, y1 - y0) == (260, 130)
    rgb = np.asarray(img)[y0:y1]
    assert tuple(rgb[5 * 13 + 6, 7 * 13 + 6]) == tuple(heatmap.INFERNO[255])
    assert tuple(rgb[0, 0]) == tuple(heatmap.INFERNO[0]) and tuple(rgb[5 * 13 - 1, 7 * 13]) == tuple(heatmap.INFERNO[0])
    with pytest.raises(ValueError):
        heatmap.heatmap_with_scale_bar(values, 1.0, 1.0)


# --- slider and zoom -----------------------------------------------------------------------------

@needs_ct
def test_slider_and_zoom_show_the_same_region_of_every_image() -> None:
    *_, run_id = compare.compare_file(CT, 0, "default", ["lanczos_x2"], "simulate", None, "down_x2", 0)
    run = compare.get_run(run_id)
    left, right = compare.slider_pair(run_id, "input", "lanczos_x2")
    assert left.size == right.size == (128, 128)
    overview, tiles = compare.zoom_views(run_id, 0.25, 0.75, 8, 0.2, 0.8)
    x0, y0, cw, ch = compare.zoom_box((128, 128), 2, 0.25, 0.75, 8)
    assert (cw, ch) == (48, 48) and x0 % 2 == 0 and y0 % 2 == 0
    by_caption = {c.split(":")[0]: t for t, c in tiles}
    ref_tile = np.asarray(by_caption["reference (clean original)"])
    assert ref_tile.shape == (48 * 8, 48 * 8)
    expected = np.clip((run.reference[y0:y0 + ch, x0:x0 + cw] - 0.2) / 0.6, 0, 1)  # the shared contrast
    np.testing.assert_array_equal(ref_tile[::8, ::8], np.rint(expected * 255).astype(np.uint8))
    inp_tile = np.asarray(by_caption["input (degraded)"])  # same area at input resolution, 16 px blocks
    assert inp_tile.shape == ref_tile.shape
    np.testing.assert_array_equal(inp_tile[::16, ::16], np.rint(
        np.clip((run.input[y0 // 2:(y0 + ch) // 2, x0 // 2:(x0 + cw) // 2] - 0.2) / 0.6, 0, 1) * 255))
    assert sum(c.startswith("|error|") for c in by_caption) == 2
    fx, fy = compare.click_to_centre(run_id, 31.5, 95.5)
    assert (fx, fy) == pytest.approx((0.25, 0.75))
    for bad in ({"lo": 0.8, "hi": 0.2}, {"zoom": 0}):
        with pytest.raises(gr.Error):
            compare.zoom_views(run_id, **bad)
    with pytest.raises(gr.Error):
        compare.slider_pair(run_id, "input", "no_such_view")
    with pytest.raises(gr.Error, match="Compare"):
        compare.zoom_views("not-a-run")


# --- examples ------------------------------------------------------------------------------------

def test_examples_are_real_readable_images_with_attribution() -> None:
    items = examples.thumbnails(side=64)
    assert len(items) >= 4  # the skimage ones ship with scikit-image, CT_small with pydicom
    for ex, thumb in items:
        assert max(thumb.size) <= 64 and ex.attribution and ex.title
        path = examples.example_path(ex.key)
        assert Path(path).name.startswith("example_")
    md = examples.attribution_markdown()
    assert "CC0" in md and "pydicom" in md
    with pytest.raises(KeyError):
        examples.example_path("nope")


# --- bad input -----------------------------------------------------------------------------------

def _bad(tmp: Path) -> dict[str, str]:
    corrupt = tmp / "corrupt.dcm"
    corrupt.write_bytes(b"DICM" + bytes(range(256)) * 4)
    good = tmp / "good.png"
    Image.fromarray((np.arange(32 * 32).reshape(32, 32) % 256).astype(np.uint8)).save(good)
    return {"corrupt": str(corrupt), "good": str(good)}


@pytest.mark.parametrize("case,kwargs,match", [
    ("no file", {"file": None, "models": ["median"]}, "No file"),
    ("corrupt file", {"file": "corrupt", "models": ["median"]}, ""),
    ("no models", {"file": "good", "models": []}, "at least one model"),
    ("unknown model", {"file": "good", "models": ["no_such_model"]}, "unknown model"),
    ("incompatible scales", {"file": "good", "models": ["bicubic_x2", "clahe"]}, "Incompatible scales"),
    ("x2 vs x4", {"file": "good", "models": ["lanczos_x2", "lanczos_x4"]}, "Incompatible scales"),
    ("degradation scale", {"file": "good", "models": ["median"], "degradation": "down_x2"}, "x2"),
    ("unknown degradation", {"file": "good", "models": ["median"], "degradation": "nope"}, "Unknown degradation"),
    ("reference missing", {"file": "good", "models": ["median"], "mode": "reference"}, "ground-truth"),
    ("bad mode", {"file": "good", "models": ["median"], "mode": "telepathy"}, "Unknown mode"),
    ("bad seed", {"file": "good", "models": ["median"], "seed": -1}, "Seed"),
])
def test_bad_input_is_a_clear_gr_error(tmp_path: Path, case: str, kwargs: dict, match: str) -> None:
    files = _bad(tmp_path)
    kw = {"mode": "simulate", **kwargs}
    kw["file"] = files.get(kw["file"], kw["file"])
    with pytest.raises(gr.Error, match=f"(?i){match}") as info:
        compare.compare_file(**kw)
    assert info.value.message and str(tmp_path) not in info.value.message  # no server paths echoed


def test_models_without_weights_are_marked_not_run(tmp_path: Path) -> None:
    missing = [s.name for s in list_models(scale=2) if s.kind == "network" and not model_card(s.name)["weights_present"]]
    if not missing:
        pytest.skip("every x2 network has weights")
    good = _bad(tmp_path)["good"]
    _, _, table, report, _, _ = compare.compare_file(good, 0, "default", ["lanczos_x2", missing[0]], "simulate")
    assert table.set_index("model").loc[missing[0], "note"].startswith("weights missing")
    assert "Not run" in report and "weights missing" in compare.model_choices("Super-resolution x2")[
        [n for _, n in compare.model_choices("Super-resolution x2")].index(missing[0])][0]
    with pytest.raises(gr.Error, match="(?i)weights"):
        compare.compare_file(good, 0, "default", [missing[0]], "simulate")


# --- end to end: the served app through gradio_client, and the folder script ---------------------------

@needs_ct
def test_compare_endpoint_end_to_end_and_folder_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradio_client import Client, handle_file

    import studio

    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "studio-data"))  # the app's reader-study database

    demo = studio.build_app()
    demo.queue(default_concurrency_limit=1, max_size=8)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                max_file_size="64mb", quiet=True)
    try:
        client = Client(demo.local_url, verbose=False, download_files=str(tmp_path / "dl"), analytics_enabled=False)
        results, errors, table, report, zip_path = client.predict(
            file=handle_file(CT), frame=0, window="default", models=["lanczos_x2"], mode="simulate",
            reference=None, degradation="down_x2", seed=0, api_name="/compare")
        assert table["headers"][:3] == ["model", "kind", "PSNR (dB)"]
        rows = {r[0]: r for r in table["data"]}
        clean = crop_to_multiple(read_image(CT)[0], 2)
        psnr = metrics.psnr(enhance(bicubic_down(clean, 2), "lanczos_x2"), clean, crop=2)
        assert rows["lanczos_x2"][2] == pytest.approx(psnr, abs=0.005)
        assert len(results) == 4 and len(errors) == 2 and "train.metrics" in report
        assert {r["model"] for r in _zip_csv(zip_path)} == {"bicubic x2 (baseline)", "lanczos_x2"}
        # Bad requests are errors for the client; the server keeps serving.
        with pytest.raises(Exception, match="(?i)model"):
            client.predict(file=handle_file(CT), models=[], mode="simulate", api_name="/compare")
        with pytest.raises(Exception, match="(?i)incompatible"):
            client.predict(file=handle_file(CT), models=["lanczos_x2", "median"], mode="none", api_name="/compare")
        # Optional arguments left out: simulate mode with the default degradation for x1 models (noise).
        *_, table1, report1, _ = client.predict(file=handle_file(CT), models=["median"], api_name="/compare")
        assert "Gaussian noise" in report1 and table1["data"][1][0] == "median"

        # The folder script: every file of a folder through /compare, one CSV.
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
        import compare_folder

        folder = tmp_path / "folder"
        folder.mkdir()
        (folder / "ct.dcm").write_bytes(Path(CT).read_bytes())
        (folder / "broken.png").write_text("not an image")
        out = tmp_path / "table.csv"
        n = compare_folder.compare_folder(demo.local_url, folder, ["median", "gaussian"], out,
                                          mode="simulate", degradation="gaussian_noise")
        assert n == 1
        with out.open() as f:
            got = list(csv.DictReader(f))
        assert [r["model"] for r in got if r["file"] == "ct.dcm"] == [
            "identity: input unchanged (baseline)", "median", "gaussian"]
        assert any(r["file"] == "broken.png" and r["note"].startswith("error") for r in got)
    finally:
        demo.close()
