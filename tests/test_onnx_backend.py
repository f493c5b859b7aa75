"""ONNX Runtime backend (optional): faithful to PyTorch fp32, offered only when usable, clean fallback."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from models import get_spec  # noqa: E402
from models import device as devmod  # noqa: E402
from models import onnx_backend  # noqa: E402
from models.device import FIDELITY_MIN_PSNR_DB, ExecPlan, candidates, pick_plan, psnr_torch, run  # noqa: E402
from models.loading import load_network  # noqa: E402

NETS = ["srcnn_x2", "dncnn", "gated_enhance"]  # SR with bicubic skip, plain conv stack, global-stats input


@pytest.fixture(autouse=True)
def _keep_plan_cache(monkeypatch):
    """Plans chosen in these tests do not outlive them (other tests rely on the fp32 reference plan)."""
    monkeypatch.setattr(devmod, "_plans", dict(devmod._plans))


def camera(h: int, w: int, channels: int) -> torch.Tensor:
    """A real (1, C, h, w) crop of scikit-image's 'camera' photograph, values in [0, 1]."""
    from skimage import data

    img = torch.from_numpy(data.camera()[150 : 150 + h, 180 : 180 + w].astype(np.float32) / 255)
    return img[None, None].expand(1, channels, h, w).contiguous()


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("size", [(96, 96), (37, 53)])  # 37x53: odd tile, proves the dynamic axes
def test_ort_output_agrees_with_torch_fp32(name, size):
    module = load_network(get_spec(name), "cpu")
    x = camera(*size, module.in_channels)
    with torch.no_grad():
        kw = {"stats": module.image_stats(x)} if getattr(module, "global_stats", False) else {}
        ref = module(x, **kw).clamp(0, 1)
        out = onnx_backend.run(module, x, **kw).clamp(0, 1)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert psnr_torch(ref, out) >= FIDELITY_MIN_PSNR_DB
    if kw:  # without precomputed statistics the graph gets them from the module, like forward does
        assert psnr_torch(module(x).clamp(0, 1), onnx_backend.run(module, x).clamp(0, 1)) >= FIDELITY_MIN_PSNR_DB


def test_ort_takes_strided_tiles_and_batches():
    """tiled_apply passes non-contiguous views; the batch axis is dynamic too."""
    module = load_network(get_spec("srcnn_x2"), "cpu")
    view = camera(64, 80, 1)[:, :, 5:42, 7:60]  # 37x53, not contiguous
    batch = torch.cat([view, view.flip(-1)])
    with torch.no_grad():
        for x in (view, batch):
            assert psnr_torch(module(x).clamp(0, 1), onnx_backend.run(module, x).clamp(0, 1)) >= FIDELITY_MIN_PSNR_DB


def test_ort_is_a_cpu_candidate_and_the_chosen_plan_passed_fidelity(monkeypatch):
    monkeypatch.delenv("MEDENHANCE_PLAN", raising=False)
    monkeypatch.delenv("MEDENHANCE_ORT", raising=False)
    assert ExecPlan(backend="onnxruntime") in candidates("cpu")
    assert all(p.backend == "torch" for p in candidates("cuda"))
    module = load_network(get_spec("srcnn_x2"), "cpu")
    plan = pick_plan("srcnn_x2__ort_test", module, "cpu")
    assert plan.fidelity_db >= FIDELITY_MIN_PSNR_DB

    monkeypatch.setenv("MEDENHANCE_PLAN", "ort")  # forced (benchmarks): still checked against fp32
    forced = pick_plan("srcnn_x2_forced__ort_test", module, "cpu")
    assert forced.backend == "onnxruntime" and forced.label == "ort-fp32"
    assert forced.fidelity_db >= FIDELITY_MIN_PSNR_DB
    x = camera(37, 53, 1)
    with torch.no_grad():
        assert psnr_torch(module(x).clamp(0, 1), run(module, x, forced).clamp(0, 1)) >= FIDELITY_MIN_PSNR_DB


def test_tiled_enhance_through_ort_matches_fp32(monkeypatch):
    """models.enhance with the ONNX Runtime plan: odd-sized edge tiles, same result as PyTorch fp32."""
    from skimage import data

    from models import enhance

    img = data.camera()[100:190, 200:301].astype(np.float32) / 255  # 90x101: edge tiles of 16 and 27 px
    ref = enhance(img, "srcnn_x2", tile=37)  # conftest: fp32 reference plan
    monkeypatch.setenv("MEDENHANCE_PLAN", "ort")
    monkeypatch.delenv("MEDENHANCE_ORT", raising=False)
    devmod._plans.pop(("srcnn_x2", "cpu"), None)
    out = enhance(img, "srcnn_x2", tile=37)
    assert devmod._plans[("srcnn_x2", "cpu")].backend == "onnxruntime"
    assert psnr_torch(torch.from_numpy(ref), torch.from_numpy(out)) >= FIDELITY_MIN_PSNR_DB


def test_reference_plan_and_switch_remove_the_ort_candidate(monkeypatch):
    monkeypatch.setenv("MEDENHANCE_PLAN", "fp32")
    assert candidates("cpu") == [ExecPlan()]
    monkeypatch.setenv("MEDENHANCE_ORT", "0")
    for mode in ("", "ort"):
        monkeypatch.setenv("MEDENHANCE_PLAN", mode)
        assert all(p.backend == "torch" for p in candidates("cpu"))
    plan = pick_plan("dncnn__ort_test", load_network(get_spec("dncnn"), "cpu"), "cpu")
    assert plan == ExecPlan(fidelity_db=plan.fidelity_db, seconds=plan.seconds)  # fp32 PyTorch


def test_failed_export_falls_back_to_torch(monkeypatch, caplog):
    def broken(module):
        raise RuntimeError("Unsupported: ONNX export of operator foo")

    monkeypatch.setattr(onnx_backend, "export", broken)
    monkeypatch.setenv("MEDENHANCE_PLAN", "ort")
    monkeypatch.delenv("MEDENHANCE_ORT", raising=False)
    torch.manual_seed(0)
    module = get_spec("srcnn_x2").build().eval()  # a fresh instance: no cached session
    with caplog.at_level(logging.WARNING, logger="models.onnx_backend"):
        plan = pick_plan("srcnn_x2_broken__ort_test", module, "cpu")
    assert plan.backend == "torch" and plan.label == "fp32"
    assert "ONNX export of SRCNN failed" in caplog.text
    assert not onnx_backend.usable(module)
    x = camera(37, 53, 1)
    with torch.no_grad():  # an ORT plan for a module without a session runs plain PyTorch
        assert torch.equal(run(module, x, ExecPlan(backend="onnxruntime")), module(x))


def test_forward_keywords_a_graph_cannot_serve_get_no_candidate(monkeypatch):
    class Gain(torch.nn.Module):
        in_channels = 1

        def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
            return x * gain

    monkeypatch.setenv("MEDENHANCE_PLAN", "ort")
    assert not onnx_backend.supports(Gain())
    assert pick_plan("gain__ort_test", Gain(), "cpu").backend == "torch"
