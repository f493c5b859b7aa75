"""User model files (models.plugins): spandrel weights and ONNX graphs run through the same path as ours.

Every model file is made here (tests/plugin_models.py): small randomly initialised spandrel architectures,
ONNX graphs exported in the test, and hostile files. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import smooth_test_image
from conftest import testdata as _testdata
from models import enhance, get_spec, list_models, model_card, read_image
from models import device as devmod
from models import onnx_backend, plugins
from models.errors import PluginError, UnknownModelError, WeightsError
from models.loading import load_network
from models.resample import upscale
from models.user_nets import OnnxNet, SpandrelNet
from tests import plugin_models as pm


@pytest.fixture(autouse=True)
def _no_user_models_after(tmp_path_factory):
    """Every test leaves the registry as it found it: no user models."""
    yield
    plugins.load_user_models(tmp_path_factory.mktemp("empty-models"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "user-models"
    d.mkdir()
    return d


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# name -> (make the file in a folder, task, scale, in_channels, class)
KINDS = {
    "esrgan_x2": (lambda d: pm.save_safetensors(pm.esrgan(1, 2), d / "esrgan_x2.safetensors"), "sr", 2, 1, SpandrelNet),
    "esrgan_rgb_x4": (lambda d: pm.save_pth(pm.esrgan(3, 4), d / "esrgan_rgb_x4.pth", wrap="params_ema"),
                      "sr", 4, 3, SpandrelNet),
    "swinir_x2": (lambda d: pm.save_safetensors(pm.swinir(2), d / "swinir_x2.safetensors"), "sr", 2, 3, SpandrelNet),
    "dncnn_1x": (lambda d: pm.save_pth(pm.dncnn(), d / "dncnn_1x.ckpt"), "denoise", 1, 1, SpandrelNet),
    "nafnet_1x": (lambda d: pm.save_safetensors(pm.nafnet(), d / "nafnet_1x.safetensors"), "denoise", 1, 3, SpandrelNet),
    "onnx_x2": (lambda d: pm.export_onnx(pm.TinyOnnxSR(2), d / "onnx_x2.onnx"), "sr", 2, 1, OnnxNet),
}


@pytest.mark.parametrize("name", list(KINDS))
def test_a_model_file_registers_and_runs_like_ours(folder: Path, name: str) -> None:
    make, task, scale, channels, cls = KINDS[name]
    path = make(folder)
    report = plugins.load_user_models(folder)
    assert report.loaded == [name] and not report.problems
    spec = get_spec(name)
    assert (spec.task, spec.scale, spec.in_channels, spec.source) == (task, scale, channels, "user")
    assert spec.sha256 == _sha(path) and spec.path == str(path.resolve())
    assert isinstance(load_network(spec, "cpu"), cls)
    assert spec in list_models(task=task, scale=scale)
    for image in (smooth_test_image(30, 34), smooth_test_image(30, 34, colour=True)):
        out = enhance(image, name)
        assert out.shape[:2] == (30 * scale, 34 * scale) and out.shape[2:] == image.shape[2:]
        assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    # Strength 0 is the input (enlarged by bicubic for SR), whatever the network.
    start = upscale(image, scale) if scale > 1 else image
    np.testing.assert_allclose(enhance(image, name, strength=0.0), start, atol=1e-6)
    assert enhance(image, name, ensemble=True).shape == out.shape


def test_the_wrapper_gives_what_spandrel_gives(folder: Path) -> None:
    """Same numbers as spandrel's own call API on the same weights (RGB ESRGAN, one tile)."""
    from spandrel import MAIN_REGISTRY, canonicalize_state_dict

    net = pm.esrgan(3, 2, seed=3)
    pm.save_safetensors(net, folder / "e.safetensors")
    plugins.load_user_models(folder)
    image = smooth_test_image(24, 28, colour=True)
    desc = MAIN_REGISTRY.load(canonicalize_state_dict(pm._state(net))).eval()
    want = desc(torch.from_numpy(image).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(enhance(image, "e"), want, atol=2e-5)


def test_grayscale_into_a_colour_model_is_replicated_then_averaged(folder: Path) -> None:
    pm.save_safetensors(pm.esrgan(3, 2, seed=1), folder / "rgb.safetensors")
    plugins.load_user_models(folder)
    grey = smooth_test_image(20, 22)
    via_colour = enhance(np.repeat(grey[..., None], 3, axis=2), "rgb").mean(axis=2)
    np.testing.assert_allclose(enhance(grey, "rgb"), via_colour, atol=2e-5)


def test_sixteen_bit_inputs_keep_float_precision(folder: Path) -> None:
    """A 16-bit-like image (steps of 1/65535) is not quantised to 8 bits on the way through."""
    pm.export_onnx(pm.TinyOnnxSR(2), folder / "up.onnx")
    plugins.load_user_models(folder)
    image = (np.round(smooth_test_image(16, 16) * 65535) / 65535).astype(np.float32)
    out = enhance(image, "up")
    assert len(np.unique(out)) > 256  # more grey levels than 8 bits have


def test_tiled_equals_whole_image(folder: Path) -> None:
    pm.save_safetensors(pm.esrgan(1, 2, seed=2), folder / "tiles.safetensors")
    plugins.load_user_models(folder)
    module = load_network(get_spec("tiles"), "cpu")
    assert module.receptive_margin >= 16
    image = smooth_test_image(60, 70)
    np.testing.assert_allclose(enhance(image, "tiles", tile=24), enhance(image, "tiles"), atol=1e-5)


def test_size_requirements_are_met_by_padding_inside_the_wrapper(folder: Path) -> None:
    """SwinIR needs at least 16 px: a 5 x 7 image (and tiles) still run, cropped back to 10 x 14."""
    pm.save_safetensors(pm.swinir(2), folder / "sw.safetensors")
    plugins.load_user_models(folder)
    module = load_network(get_spec("sw"), "cpu")
    assert module.size_minimum == 16
    out = enhance(smooth_test_image(5, 7, colour=True), "sw")
    assert out.shape == (10, 14, 3)
    assert enhance(smooth_test_image(40, 44, colour=True), "sw", tile=12).shape == (80, 88, 3)


def test_sidecar_names_describes_and_escapes(folder: Path) -> None:
    pm.save_pth(pm.dncnn(), folder / "weird file (v2).pth")
    (folder / "weird file (v2).json").write_text(json.dumps({
        "name": "lab_denoiser", "task": "enhance", "title": "<script>alert(1)</script>",
        "licence": "CC-BY-4.0", "source": "[click](javascript:alert(1))", "trained_on": "| a | b |\n# heading",
    }))
    plugins.load_user_models(folder)
    card = model_card("lab_denoiser")
    assert card["task"] == "enhance" and card["source"] == "user" and card["sha256"] in card["summary"]
    summary = card["summary"]
    assert "<script>" not in summary and "\\<script\\>" in summary
    assert "](javascript:" not in summary and "\\[click\\]\\(javascript:" in summary
    assert "\n#" not in summary.split("\n\n")[0] and "CC\\-BY\\-4.0" in summary
    assert "not measured here" in summary and card["info"]["architecture"] == "DnCNN"
    assert card["info"]["params"] == sum(p.numel() for p in pm.dncnn().parameters())


@pytest.mark.parametrize("sidecar, message", [
    ({"scale": 4}, "says x4"),
    ({"task": "sr"}, "task 'sr' with scale x1"),
    ({"task": "colourise"}, "task must be one of"),
    ({"name": "../evil"}, "must be 1 to 48 letters"),
    ({"name": "original"}, "reserved"),
    ({"name": "edsr_x2"}, "already taken"),
    ({"nme": "typo"}, "unknown key"),
    ({"scale": "2"}, "whole number"),
])
def test_bad_sidecars_are_refused(folder: Path, sidecar: dict, message: str) -> None:
    pm.save_pth(pm.dncnn(), folder / "m.pth")
    (folder / "m.json").write_text(json.dumps(sidecar))
    report = plugins.load_user_models(folder)
    assert not report.loaded and message in report.problems[0].message
    with pytest.raises(UnknownModelError):
        get_spec("m")


def test_a_code_running_pickle_is_refused_and_never_runs(folder: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = pm.malicious_pth(folder / "evil.pth", marker)
    legacy = pm.malicious_pth(folder / "evil_legacy.pt", marker, legacy=True)
    report = plugins.load_user_models(folder)
    assert not report.loaded
    messages = {p.file: p.message for p in report.problems}
    for f in (evil, legacy):
        assert "refused" in messages[f.name] and "could run code" in messages[f.name] and "weights_only" in messages[f.name]
    assert not marker.exists()
    # The files really are hostile, shown without running them: their pickles fetch Path.touch with getattr (a call
    # an unguarded torch.load or pickle.load would make), globals no plain state dict needs.
    for f in (evil, legacy):
        found = pm.pickle_globals(f)
        assert "pathlib.Path" in found and any(g.endswith(".getattr") for g in found)


def _truncated(d: Path) -> Path:
    good = pm.save_safetensors(pm.esrgan(1, 2), d / "truncated.safetensors")
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    return good


def _unknown_arch(d: Path) -> Path:
    return pm.save_safetensors(torch.nn.Sequential(torch.nn.Linear(4, 4)), d / "mystery.safetensors")


def _rgb_to_grey(d: Path) -> Path:
    from spandrel.architectures.ESRGAN import ESRGAN

    return pm.save_safetensors(ESRGAN(in_nc=3, out_nc=1, num_filters=8, num_blocks=1, scale=2), d / "rgb2grey.safetensors")


def _fixed_size_onnx(d: Path) -> Path:
    return pm.export_onnx(pm.TinyOnnxSR(2), d / "fixed.onnx", dynamic=False)


HOSTILE = {
    "truncated safetensors": (_truncated, "not a readable safetensors file"),
    "garbage .pth": (lambda d: (d / "garbage.pth").write_bytes(b"\x80\x02garbage" * 10) and d / "garbage.pth",
                     "not a readable PyTorch weights file"),
    "empty file": (lambda d: (d / "empty.safetensors").write_bytes(b"") or d / "empty.safetensors", "empty"),
    "unknown architecture": (_unknown_arch, "spandrel does not recognise this architecture"),
    "wrong output channels": (_rgb_to_grey, "takes 3 channel(s) but returns 1"),
    "wrong output shape (onnx)": (lambda d: pm.export_onnx(pm.Cropping(), d / "crop.onnx"), "not the input size times"),
    "fixed-size onnx": (_fixed_size_onnx, "dynamic height and width"),
    "onnx with external data": (lambda d: pm.onnx_with_external_data(d / "external.onnx"), "external files"),
    "torchscript archive": (lambda d: pm.torchscript_pt(d / "scripted.pt"), "not a readable PyTorch weights file"),
    "not onnx": (lambda d: (d / "fake.onnx").write_bytes(b"not a protobuf at all" * 5) and d / "fake.onnx",
                 "ONNX"),
    "name of a zoo model": (lambda d: pm.save_pth(pm.dncnn(), d / "dncnn.pth"), "already taken"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_files_are_refused_and_the_good_ones_still_load(folder: Path, case: str) -> None:
    make, message = HOSTILE[case]
    bad = make(folder)
    pm.save_pth(pm.dncnn(), folder / "zz_good.pth")
    report = plugins.load_user_models(folder)
    assert report.loaded == ["zz_good"]
    [problem] = report.problems
    assert problem.file == bad.name and message in problem.message, problem
    enhance(smooth_test_image(16, 16), "zz_good")  # the good file serves


def test_a_file_over_the_size_limit_is_refused(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pm.save_safetensors(pm.esrgan(1, 2), folder / "big.safetensors")
    monkeypatch.setenv(plugins.ENV_MAX_SIZE, "64kb")
    report = plugins.load_user_models(folder)
    assert not report.loaded and "over the limit of" in report.problems[0].message


def test_a_file_changed_after_registration_is_not_run(folder: Path) -> None:
    path = pm.save_safetensors(pm.esrgan(1, 2, seed=0), folder / "swap.safetensors")
    plugins.load_user_models(folder)
    pm.save_safetensors(pm.esrgan(1, 2, seed=5), path)  # same name, other weights
    with pytest.raises(WeightsError, match="changed since it was registered"):
        enhance(smooth_test_image(16, 16), "swap")
    report = plugins.load_user_models(folder)  # a reload registers the new file under its own hash
    assert report.loaded == ["swap"] and get_spec("swap").sha256 == _sha(path)
    enhance(smooth_test_image(16, 16), "swap")


def test_reload_forgets_removed_models_and_their_plans(folder: Path) -> None:
    path = pm.save_pth(pm.dncnn(), folder / "gone.pth")
    plugins.load_user_models(folder)
    enhance(smooth_test_image(16, 16), "gone")
    assert any(k[0] == "gone" for k in devmod._plans)
    path.unlink()
    assert plugins.load_user_models(folder).loaded == []
    assert not any(k[0] == "gone" for k in devmod._plans)
    with pytest.raises(UnknownModelError):
        enhance(smooth_test_image(16, 16), "gone")
    assert "edsr_x2" in {s.name for s in list_models()}  # the zoo is untouched


def test_a_missing_folder_registers_nothing(tmp_path: Path) -> None:
    report = plugins.load_user_models(tmp_path / "nope")
    assert report.loaded == [] and report.problems == []


def test_default_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(plugins.ENV_DIR, raising=False)
    assert plugins.default_models_dir(tmp_path / "no-mount") == Path("user-models")
    assert plugins.default_models_dir(tmp_path) == tmp_path / "medenhance" / "user-models"
    monkeypatch.setenv(plugins.ENV_DIR, str(tmp_path / "mine"))
    assert plugins.default_models_dir(tmp_path) == tmp_path / "mine"


def test_onnx_runtime_plans(folder: Path) -> None:
    """Spandrel networks that never pad get the ONNX Runtime candidate (checked on an odd size);
    an imported ONNX graph is never exported again and gets the reference plan only."""
    pm.save_safetensors(pm.esrgan(1, 2), folder / "conv.safetensors")
    pm.save_safetensors(pm.swinir(2), folder / "windows.safetensors")
    pm.export_onnx(pm.TinyOnnxSR(2), folder / "graph.onnx")
    plugins.load_user_models(folder)
    conv, windows, graph = (load_network(get_spec(n), "cpu") for n in ("conv", "windows", "graph"))
    assert onnx_backend.supports(conv) and onnx_backend.usable(conv)
    assert not onnx_backend.supports(windows)  # window attention pads by its input size: never traced
    assert not onnx_backend.supports(graph)
    plan = devmod.pick_plan("graph", graph, "cpu")
    assert plan.label == "fp32" and plan.backend == "torch"


@pytest.mark.parametrize("kind", ["spandrel", "onnx"])
def test_eval_writes_the_scores_beside_the_file(folder: Path, tmp_path: Path, kind: str) -> None:
    from PIL import Image

    from train.evaluate import evaluate

    data = tmp_path / "images"
    data.mkdir()
    for i in range(3):
        Image.fromarray((smooth_test_image(48, 40, seed=i) * 255).astype(np.uint8)).save(data / f"img{i}.png")
    if kind == "spandrel":
        model = pm.save_safetensors(pm.esrgan(1, 2), folder / "measured.safetensors")
        params = sum(p.numel() for p in pm.esrgan(1, 2).parameters())
    else:
        model = pm.export_onnx(pm.TinyOnnxSR(2), folder / "measured.onnx")
        params = sum(p.numel() for p in pm.TinyOnnxSR(2).parameters())
    plugins.load_user_models(folder)
    before = model.read_bytes()
    rows = evaluate(["measured"], task="sr", scale=2, data=str(data), subset="external", out_dir=str(tmp_path / "r"),
                    write_cards=True, maps=0)
    row = next(r for r in rows if r["model"] == "measured")
    assert row["params"] == params and row["images"] == 3
    assert model.read_bytes() == before  # the user's file is never rewritten
    scores = json.loads((folder / "measured.scores.json").read_text())
    assert scores["sha256"] == _sha(model) and scores["scores"]["external_sr_x2"]["psnr"] == row["psnr"]
    card = model_card("measured")
    assert card["measured"] and card["metadata"]["external_sr_x2"]["psnr"] == row["psnr"]
    assert "not measured here" not in card["summary"]


def test_batch_cli_and_derived_dicom_carry_the_hash(folder: Path, tmp_path: Path) -> None:
    from pydicom import dcmread

    from models.batch import main

    ct = _testdata("CT_small.dcm")
    if ct is None:
        pytest.skip("pydicom test files not available")
    model = pm.save_safetensors(pm.esrgan(1, 2), folder / "batch_sr.safetensors")
    src = tmp_path / "in"
    src.mkdir()
    (src / "ct.dcm").write_bytes(Path(ct).read_bytes())
    out = tmp_path / "out"
    assert main([str(src), str(out), "--model", "batch_sr", "--format", "dcm", "--models-dir", str(folder),
                 "--quiet"]) == 0
    ds = dcmread(out / "ct.dcm")
    assert _sha(model) in ds.DerivationDescription and "batch_sr" in ds.DerivationDescription
    image, _ = read_image(ct)
    assert (ds.Rows, ds.Columns) == (image.shape[0] * 2, image.shape[1] * 2)


def test_admin_upload_keeps_only_files_that_register(folder: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from studio import user_models

    monkeypatch.setenv(plugins.ENV_DIR, str(folder))
    marker = tmp_path / "pwned"
    with pytest.raises(PluginError, match="Upload refused"):
        user_models.upload_model(pm.malicious_pth(tmp_path / "evil.pth", marker))
    assert not marker.exists() and not (folder / "evil.pth").exists()
    good = pm.save_pth(pm.dncnn(), tmp_path / "My Denoiser!.pth")
    side = tmp_path / "side.json"
    side.write_text(json.dumps({"licence": "MIT"}))
    md, report = user_models.upload_model(good, side)
    assert report["loaded"] == ["My_Denoiser"] and (folder / "My_Denoiser.json").is_file()
    assert get_spec("My_Denoiser").info["licence"] == "MIT" and "| `My_Denoiser` |" in md
    with pytest.raises(PluginError, match="already in the models folder"):
        user_models.upload_model(good)
    with pytest.raises(PluginError, match="not a model file"):
        user_models.upload_model(side)
    monkeypatch.setenv(plugins.ENV_MAX_SIZE, "1kb")
    with pytest.raises(PluginError, match="over the limit of"):
        user_models.upload_model(pm.save_pth(pm.dncnn(), tmp_path / "huge.pth"))
    assert not (folder / "huge.pth").exists()


def test_app_start_up_survives_a_bad_file(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import app

    (folder / "broken.safetensors").write_bytes(b"\x00" * 100)
    pm.save_pth(pm.dncnn(), folder / "fine.pth")
    monkeypatch.setenv(plugins.ENV_DIR, str(folder))
    app.load_user_models()  # logs, never raises
    report = plugins.last_report()
    assert report.loaded == ["fine"] and report.problems[0].file == "broken.safetensors"


FOLDER_KINDS = {
    "spandrel": lambda d: pm.save_safetensors(pm.esrgan(1, 2, seed=7), d / "everywhere.safetensors"),
    "onnx": lambda d: pm.export_onnx(pm.TinyOnnxSR(2), d / "everywhere.onnx", seed=7),
}


@pytest.mark.parametrize("kind", list(FOLDER_KINDS))
def test_a_folder_model_runs_everywhere_with_its_hash(kind: str, folder: Path, tmp_path: Path, results_dir) -> None:
    """Enhance (card and derived DICOM), Compare, the batch CLI and a reader study's export, for one file."""
    from pydicom import dcmread

    from models.batch import main as batch_main
    from studio import handlers, study
    from studio.compare import compare_file
    from studio.stats import analysis
    from studio.study.store import StudySettings, open_store

    ct = _testdata("CT_small.dcm")
    if ct is None:
        pytest.skip("pydicom test files not available")
    sha = _sha(FOLDER_KINDS[kind](folder))
    plugins.load_user_models(folder)
    # Enhance: the card carries the hash, the derived DICOM's provenance too.
    r = handlers.enhance_upload(ct, "Super-resolution x2", "everywhere")
    assert sha in r.markdown and "your model" in r.markdown and "not measured here" in r.markdown
    assert sha in dcmread(r.dicom_path).DerivationDescription
    assert ("everywhere (your model)", "everywhere") in handlers.model_choices("Super-resolution x2")
    # Compare: a row like any network's.
    _, _, table, _, _, _ = compare_file(ct, 0, "default", ["everywhere", "bicubic_x2"], "simulate")
    rows = {row["model"]: row for row in table.to_dict("records")}
    assert rows["everywhere"]["kind"] == "network" and rows["everywhere"]["PSNR (dB)"] > 0  # random weights: low
    # Batch CLI.
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "a.dcm").write_bytes(Path(ct).read_bytes())
    assert batch_main([str(src), str(out), "--model", "everywhere", "--format", "dcm", "--models-dir", str(folder),
                       "--quiet"]) == 0
    assert sha in dcmread(out / "a.dcm").DerivationDescription
    # A reader study: the variant and the analysis export carry the hash.
    store = open_store(StudySettings(data_dir=tmp_path / "data", admin_password="x"))
    try:
        created = study.create_study(store, study.StudyDesign(name="hash", design="likert", models=("everywhere",),
                                                              readers=1), [ct])
        analysis.write_outputs(store.db, created.study_id, tmp_path / "analysis")
    finally:
        store.close()
    variants = (tmp_path / "analysis" / "variants.csv").read_text()
    assert f"everywhere,{sha}" in variants.replace('"', "")


def test_extra_architectures_only_when_the_operator_opts_in(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Core spandrel by default; MEDENHANCE_SPANDREL_EXTRA=1 asks for spandrel_extra_arches (not in requirements)."""
    import importlib.util

    pm.save_pth(pm.dncnn(), folder / "core.pth")
    assert plugins.load_user_models(folder).loaded == ["core"]
    if importlib.util.find_spec("spandrel_extra_arches") is not None:
        pytest.skip("spandrel_extra_arches is installed here")
    monkeypatch.setenv(plugins.ENV_EXTRA, "1")
    report = plugins.load_user_models(folder)
    assert not report.loaded and "spandrel_extra_arches package is not installed" in report.problems[0].message
