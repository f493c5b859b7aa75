"""Input measurement (models.noise), noise-aware networks, the mixed training tasks and the automatic entries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from skimage import data as skdata

from conftest import smooth_test_image
from models import auto, noise
from models.arch.noise_aware import NoiseAwareAutoencoder, NoiseAwareEDSR, NoiseAwareSRResNet, expand_input_channels
from models.arch.edsr import EDSR
from models.arch.probe import DegradationProbe
from train import realistic_torch as RT
from train.probe import blend_log_error, choose
from train.tasks import TASKS, registry_task, task_name

CAMERA = skdata.camera().astype(np.float32) / 255.0


@pytest.mark.parametrize("sigma", [0.005, 0.02, 0.05, 0.1])
def test_noise_estimate_recovers_white_gaussian_noise_on_a_photograph(sigma):
    rng = np.random.default_rng(0)
    noisy = np.clip(CAMERA * 0.8 + 0.1 + rng.normal(0, sigma, CAMERA.shape), 0, 1).astype(np.float32)
    est = noise.estimate_sigma(noisy)
    # The photograph's own texture adds ~0.006 in quadrature; the estimate must be within 15 % of the truth.
    assert abs(est - np.hypot(sigma, 0.005)) < 0.15 * sigma + 0.002, est


def test_batch_estimate_matches_the_image_estimate_and_is_continuous_on_8_bit_images():
    rng = np.random.default_rng(1)
    imgs = [np.clip(0.5 + rng.normal(0, s, (96, 96)), 0, 1).astype(np.float32) for s in (0.01, 0.03)]
    batch = torch.from_numpy(np.stack(imgs))[:, None]
    est = noise.estimate_sigma_tensor(batch).flatten().tolist()
    assert est == pytest.approx([noise.estimate_sigma(i) for i in imgs], rel=1e-5)
    # 8-bit quantised inputs: levels 1/255 apart still give distinct, ordered estimates (no 0.003 steps).
    q = [np.round(np.clip(0.5 + rng.normal(0, s, (128, 128)), 0, 1) * 255) / 255 for s in (0.010, 0.011, 0.012)]
    e = [noise.estimate_sigma(x.astype(np.float32)) for x in q]
    assert e[0] < e[1] < e[2]


def test_jpeg_and_smoothness_measurements():
    import io

    buf = io.BytesIO()
    PILImage.fromarray((CAMERA * 255).astype(np.uint8)).save(buf, "JPEG", quality=30)
    jpeg = np.asarray(PILImage.open(buf), np.float32) / 255
    assert noise.measure_input(jpeg).looks_jpeg and not noise.measure_input(CAMERA).looks_jpeg
    from scipy import ndimage

    blurred = ndimage.gaussian_filter(CAMERA, 2.0).astype(np.float32)
    assert noise.smoothness(blurred) < noise.SMOOTHED < noise.smoothness(CAMERA)
    m = noise.measure_input(CAMERA, stored_per_unit=4095)
    assert m.sigma_stored == pytest.approx(m.sigma * 4095) and "σ ≈" in m.summary()
    colour = np.stack([CAMERA] * 3, -1)
    assert noise.measure_input(colour).sigma == pytest.approx(m.sigma, rel=1e-4)


def test_range_warning_only_far_above_the_training_range():
    assert noise.range_warning("edsr_x2", (0.004, 0.013), 0.02) is None
    w = noise.range_warning("edsr_x2", (0.004, 0.013), 0.05)
    assert w and "edsr_x2" in w and "0.050" in w
    assert noise.range_warning("bicubic_x2", None, 0.5) is None


@pytest.mark.parametrize("cls,kw", [(NoiseAwareEDSR, {"scale": 2}), (NoiseAwareSRResNet, {"scale": 4}),
                                    (NoiseAwareAutoencoder, {"width": 8, "levels": 2})])
def test_noise_aware_network_uses_the_given_level_and_defaults_to_the_estimate(cls, kw):
    torch.manual_seed(0)
    m = cls(**kw).eval()
    for p in m.parameters():  # non-trivial weights, so the level plane reaches the output
        p.data.normal_(0, 0.1)
    x = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        own = m(x)
        same = m(x, stats=m.image_stats(x))
        other = m(x, stats=torch.full((1, 1, 1, 1), 0.2))
    assert torch.equal(own, same) and not torch.allclose(own, other)
    assert own.shape == (1, 1, 24 * m.scale, 24 * m.scale)


def test_plain_weights_start_the_noise_aware_twin_as_the_same_function():
    torch.manual_seed(0)
    base, twin = EDSR(scale=2).eval(), NoiseAwareEDSR(scale=2).eval()
    for p in base.parameters():
        p.data.normal_(0, 0.05)
    twin.load_state_dict(expand_input_channels(base.state_dict(), twin.state_dict()))
    x = torch.rand(2, 1, 20, 18)
    with torch.no_grad():
        assert torch.allclose(base(x), twin(x), atol=1e-6)


def test_mixed_sr_batch_has_each_kind_in_its_share_and_is_seeded():
    torch.manual_seed(0)
    s = torch.rand(1, 1, 32, 32).expand(400, 1, 32, 32).contiguous() * 0.5 + 0.25
    win = torch.tensor([[0.0, 1.0]]).expand(400, 2)
    a = RT.sr_mix_batch(s, win, 2, torch.Generator().manual_seed(0))
    b = RT.sr_mix_batch(s, win, 2, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (400, 1, 16, 16)
    from models.resample import downscale_tensor

    clean = downscale_tensor(1.0 - s, 2)  # PNG window [0, 1]: display = 1 - s
    is_clean = (a - clean).abs().flatten(1).amax(1) < 1e-6
    assert 0.22 < is_clean.float().mean() < 0.38  # SR_MIX["clean"] = 0.3


def test_mixed_tasks_map_to_their_registry_tasks_and_validate_every_kind():
    assert task_name("edsr_x2_na", "sr") == "sr_mix" and task_name("edsr_x2_real", "sr") == "sr_real"
    assert task_name("dae_na", "denoise") == "denoise_mix" and task_name("edsr_x2", "sr") == "sr"
    assert {registry_task(t) for t in ("sr_mix", "sr_pg", "sr_real")} == {"sr"}
    img = smooth_test_image(64, 64)
    lrs = [TASKS["sr_mix"].eval_degrade(img, 2, seed) for seed in range(3)]
    assert all(x.shape == (32, 32) for x in lrs) and len({x.tobytes() for x in lrs}) == 3
    assert np.array_equal(TASKS["sr_pg"].eval_degrade(img, 2, 5), TASKS["sr_pg"].eval_degrade(img, 2, 5))
    outs = [TASKS["denoise_mix"].eval_degrade(img, 1, seed) for seed in range(3)]
    assert all(o.shape == img.shape for o in outs)


def test_blend_objective_is_the_log_error_of_the_blended_output():
    rng = np.random.default_rng(0)
    t, a, b = (torch.from_numpy(rng.random((4, 1, 8, 8))) for _ in range(3))
    abc = torch.stack([(a - t).pow(2).mean((1, 2, 3)), ((a - t) * (a - b)).mean((1, 2, 3)),
                       (a - b).pow(2).mean((1, 2, 3))], 1)
    w = torch.tensor([0.0, 0.3, 0.7, 1.0])
    direct = torch.log10((a + w.view(4, 1, 1, 1) * (b - a) - t).pow(2).mean((1, 2, 3))).mean()
    assert float(blend_log_error(w, abc)) == pytest.approx(float(direct), rel=1e-9)
    assert [choose(x) for x in (0.1, 0.5, 0.9)] == ["clean", "blend", "noisy"]


def test_automatic_entry_runs_one_model_when_sure_and_blends_when_unsure(monkeypatch):
    from models import enhance

    route = auto.add_route(auto.AutoRoute("_auto_test_x2", "sr", 2, noisy="edsr_x2_real", clean="edsr_x2",
                                          probe="unused.safetensors"))
    img = smooth_test_image(32, 36)
    a, b = enhance(img, "edsr_x2"), enhance(img, "edsr_x2_real")
    for w, expect in ((0.1, a), (0.9, b), (0.5, a + np.float32(0.5) * (b - a))):
        monkeypatch.setattr(auto, "probe_weight", lambda image, r, device="cpu", w=w: w)
        d = auto.decide(img, route.name)
        assert d.models == ((route.clean,) if w < 0.25 else (route.noisy,) if w > 0.75 else (route.clean, route.noisy))
        out = auto.run_route(img, route.name, scale=2)
        assert np.allclose(out, expect, atol=1e-6)
        assert route.name in d.summary() and "σ" in d.summary()
    auto.ROUTES.pop(route.name)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    import io

    buf = io.BytesIO()
    PILImage.fromarray((image * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return np.asarray(PILImage.open(buf), np.float32) / 255


def test_the_gate_combines_the_probe_with_what_the_whole_input_measures(monkeypatch):
    """A route with a gate reads the input's measurement: here only JPEG blocking counts, so a JPEG-compressed
    image goes to the noise-aware model although the probe (stubbed) says clean, and the original does not."""
    gate = auto.Gate(coef=(0.0, 0.0, 40.0, 0.0), bias=-46.0)  # noise-aware iff blockiness > 1.15
    route = auto.add_route(auto.AutoRoute("_auto_gate_x2", "sr", 2, noisy="edsr_x2_na", clean="edsr_x2",
                                          probe="unused.safetensors", gate=gate))
    monkeypatch.setattr(auto, "probe_weight", lambda image, r, device="cpu": 0.01)
    try:
        assert auto.decide(CAMERA, route.name).models == ("edsr_x2",)
        d = auto.decide(_jpeg(CAMERA, 30), route.name)
        assert d.models == ("edsr_x2_na",) and d.weight > 0.75 and d.measurement.looks_jpeg
    finally:
        auto.ROUTES.pop(route.name)
    f = auto.gate_features(0.5, 0.01, 1.2, 0.4)
    assert f == pytest.approx((0.0, -2.0, 1.2, 0.4))
    assert auto.gate_features(0.0, 0.0, 1.0, 0.0)[:2] == pytest.approx((np.log(1e-3 / (1 - 1e-3)), -4.0))  # finite


def test_gate_fit_learns_the_cost_weighted_choice():
    """scripts/auto_gate.py's fit: on samples where JPEG blocking decides and the wrong choice costs dB, the fitted
    gate picks the better specialist on every sample."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("auto_gate", Path(__file__).parent.parent / "scripts" / "auto_gate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    rows = []
    for k in range(200):
        blocky = k % 2 == 1
        rows.append({"w": float(rng.uniform(0.05, 0.95)), "sigma": float(rng.uniform(0.002, 0.02)),
                     "jpeg": float(rng.uniform(1.08, 1.3) if blocky else rng.uniform(0.9, 1.04)),
                     "smooth": float(rng.uniform(0.2, 0.6)), "clean": 40.0, "noisy": 42.0 if blocky else 39.0})
    gate = mod.fit(rows)
    picks = [gate.weight(*auto.gate_features(r["w"], r["sigma"], r["jpeg"], r["smooth"])) > 0.5 for r in rows]
    assert picks == [r["noisy"] > r["clean"] for r in rows]


def test_probe_gives_one_logit_per_image_of_any_size():
    p = DegradationProbe().eval()
    with torch.no_grad():
        assert p(torch.rand(3, 1, 40, 52)).shape == (3, 1)
        assert p(torch.rand(1, 1, 9, 9)).shape == (1, 1)


def test_compare_reports_the_input_noise_and_warns_for_a_model_far_outside_its_training_range():
    from studio.compare.report import report_markdown
    from studio.compare.run import run_comparison

    rng = np.random.default_rng(0)
    noisy = np.clip(smooth_test_image(48, 48) + rng.normal(0, 0.08, (48, 48)), 0, 1).astype(np.float32)
    run = run_comparison(noisy, ["edsr_x2", "edsr_x2_real"], 2)
    md = report_markdown(run)
    assert "estimated noise σ ≈ 0.0" in md and run.input_note in md
    assert len(run.noise_warnings) == 2 and "edsr_x2 was trained on" in run.noise_warnings[0]
    clean = run_comparison(smooth_test_image(48, 48), ["edsr_x2"], 2)
    assert clean.noise_warnings == []


def test_measure_endpoint_reports_noise_in_stored_units_and_warns_for_a_clean_model(tmp_path):
    from studio.handlers import enhance_file, measure_file

    rng = np.random.default_rng(7)  # not smooth_test_image's seed: its own noise would add, not in quadrature
    img = np.clip(smooth_test_image(64, 64) + rng.normal(0, 0.08, (64, 64)), 0, 1)
    path = tmp_path / "noisy.png"
    PILImage.fromarray((img * 255).round().astype(np.uint8)).save(path)
    r = measure_file(str(path), model="edsr_x2")
    m = r["measurement"]
    assert 0.06 < m["sigma"] < 0.1 and m["sigma_stored"] == pytest.approx(m["sigma"] * 255, rel=1e-6)
    assert r["warning"] and "edsr_x2" in r["warning"] and r["auto"] is None
    assert measure_file(str(path))["warning"] is None
    _, md, _ = enhance_file(str(path), "Super-resolution x2", "edsr_x2")
    assert "**Input**: estimated noise σ ≈ 0.0" in md and "⚠️" in md


# --- the shipped automatic entries -------------------------------------------------------------------------------
AUTO = [s.name for s in __import__("models").list_models() if s.kind == "auto"]


def test_every_task_has_a_shipped_automatic_entry_whose_weights_are_all_here():
    from models import model_card

    assert set(AUTO) == {"auto_x2", "auto_x4", "auto_denoise"}
    assert (auto.automatic_entry("sr", 2), auto.automatic_entry("sr", 4), auto.automatic_entry("denoise")) == (
        "auto_x2", "auto_x4", "auto_denoise")
    for name in AUTO:
        card = model_card(name)
        assert card["kind"] == "auto" and card["weights_present"] and auto.missing_weights(name) == []
        assert card["members"] == list(auto.members(name)) and card["members"][-1].endswith("_na")
        if name != "auto_denoise":  # its noise-aware model takes the level as input: no probe
            assert card["probe"] and card["metadata"]["val"]["images"] > 0


def test_the_automatic_entry_is_the_default_of_the_studio_the_batch_cli_and_study_creation():
    from models.batch import build_parser
    from studio.compare.options import default_models as compare_defaults
    from studio.handlers.options import default_model, model_choices
    from studio.study import default_models as study_defaults

    assert default_model("Super-resolution x2") == "auto_x2" and default_model("Denoise") == "auto_denoise"
    assert model_choices("Super-resolution x4")[0] == ("auto_x4 (automatic)", "auto_x4")
    assert compare_defaults("Super-resolution x2")[0] == "auto_x2"
    assert build_parser().parse_args(["in", "out"]).model == "auto_x2"
    assert study_defaults() == ["auto_x2"]


@pytest.mark.parametrize("name", AUTO)
def test_automatic_entry_reports_what_it_ran_and_its_progress_reaches_the_end(name):
    from models import enhance, get_spec

    spec = get_spec(name)
    rng = np.random.default_rng(1)
    img = np.clip(smooth_test_image(40, 44) + rng.normal(0, 0.03, (40, 44)), 0, 1).astype(np.float32)
    d = auto.decide(img, name)
    seen: list[tuple[int, int]] = []
    out = enhance(img, name, progress=lambda done, total: seen.append((done, total)))
    assert out.shape == (40 * spec.scale, 44 * spec.scale) and out.dtype == np.float32
    assert seen and seen[-1][0] == seen[-1][1]
    assert set(d.models) <= set(auto.members(name)) and d.as_dict()["summary"].startswith(name)
    # the same output as running the chosen network itself (one model) or the blend (two)
    if len(d.models) == 1:
        assert np.array_equal(out, enhance(img, d.models[0]))


def test_study_variants_of_an_automatic_entry_record_its_identity_and_choice(tmp_path):
    from models.io.dicom_export import derivation_description, weights_sha256
    from models.io.meta import ImageMeta
    from models import get_spec
    from studio.study.cases import render_variants
    from studio.study.store import StudySettings, open_store

    spec = get_spec("auto_x2")
    sha = weights_sha256(spec)
    assert sha and len(sha) == 64 and sha == weights_sha256(spec)
    assert "edsr_x2_na" in derivation_description(spec, ImageMeta("png", (8, 8)))
    store = open_store(StudySettings(data_dir=tmp_path / "data", admin_password="x"))
    rendered = render_variants(store, smooth_test_image(32, 32), ["auto_x2"], 256)
    v = rendered[-1]
    assert v.model == "auto_x2" and v.weights_sha256 == sha
    assert v.options["automatic"]["models"] and v.options["automatic"]["route"] == "auto_x2"
