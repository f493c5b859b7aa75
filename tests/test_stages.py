"""Faster x4 plans: the pixel-shuffle fold, the two-stage split, two-level tiling and the cheaper plan choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import smooth_test_image
from models import enhance, get_spec, list_models
from models import device as devmod
from models import stages
from models.fold import fold_shuffle_convs, folded_conv
from models.resample import to_tensor, upscale_tensor
from models.tiling import staged_tiled_apply, tiled_apply

SR_NETWORKS = [s.name for s in list_models(task="sr") if s.kind == "network" and s.scale > 1]


@pytest.fixture(autouse=True)
def _isolated_caches(monkeypatch):
    """Plans and splits made here do not outlive the test (other tests rely on the fp32 reference plan)."""
    monkeypatch.setattr(devmod, "_plans", dict(devmod._plans))
    yield
    stages.clear()


def _random_weights(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random, non-trivial weights that propagate far (independent of training), as the margin test uses."""
    torch.manual_seed(seed)
    for p in module.parameters():
        p.data.normal_(0, 0.05)
    return module.eval()


@pytest.mark.parametrize(("k", "r", "cout"), [(9, 2, 1), (3, 2, 1), (3, 2, 3), (5, 3, 1), (1, 2, 2)])
def test_folded_conv_equals_conv_after_the_shuffle(k, r, cout):
    torch.manual_seed(k * 10 + r)
    cin = 5
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    z = torch.randn(1, cin * r * r, 11, 13)
    with torch.no_grad():
        ref = conv(nn.PixelShuffle(r)(z))
        got = nn.PixelShuffle(r)(folded_conv(conv, r)(z))
    assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-5)


class _ShuffleThenConv(nn.Module):
    """PixelShuffle -> PReLU(C) -> 9x9 conv to one channel, SRResNet's tail; the shuffle's input is used twice."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.up = nn.Conv2d(1, c * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(c)
        self.last = nn.Conv2d(c, 1, 9, padding=4)

    def forward(self, x):
        z = self.up(x)
        skip = z.mean(1, keepdim=True).repeat_interleave(2, -1).repeat_interleave(2, -2)
        return self.last(self.act(self.shuffle(z))) + skip


def test_fold_rewrites_the_graph_and_keeps_the_function():
    import torch.fx as fx
    from torch.fx.passes.shape_prop import ShapeProp

    m = _random_weights(_ShuffleThenConv())
    nn.init.uniform_(m.act.weight, -0.5, 0.5)  # distinct slopes per channel: their order must survive the fold
    gm = fx.symbolic_trace(m)
    x = torch.rand(1, 1, 9, 10)
    ShapeProp(gm).propagate(x)
    assert fold_shuffle_convs(gm) == 1
    kinds = [type(gm.get_submodule(n.target)).__name__ for n in gm.graph.nodes if n.op == "call_module"]
    assert kinds == ["Conv2d", "PReLU", "Conv2d", "PixelShuffle"]  # the full-resolution 9x9 conv is gone
    with torch.no_grad():
        assert torch.allclose(gm(x), m(x), atol=1e-5)


@pytest.mark.parametrize("name", SR_NETWORKS)
def test_staged_tiles_reproduce_the_network(name):
    """Every SR network either has no split (pre-upsampling) or, split and tiled at two levels with small
    tiles (seams everywhere), gives the whole-image output. Random weights: independent of training."""
    spec = get_spec(name)
    module = _random_weights(spec.build())
    st = stages.split(module)
    x = to_tensor(smooth_test_image(40, 46, seed=5, colour=module.in_channels == 3))
    if st is None:
        # bicubic first (everything runs at the output size), or a noise level taken from the whole image
        # (global_stats: the stats argument is not part of a one-input traced graph, so no split by design)
        assert name.startswith(("srcnn", "vdsr")) or getattr(module, "global_stats", False), name
        return
    assert st.hr_margin < module.receptive_margin  # the point: the HR part reaches a few pixels only
    with torch.no_grad():
        whole = module(x)
        # 2 x 2 LR tiles, each cut into 2 x 2 HR sub-tiles: seams of both levels cross the image.
        tiled = staged_tiled_apply(st.lr, st.hr, x, spec.scale, 24, module.receptive_margin + st.hr_margin, 12,
                                   st.hr_margin)
    assert torch.allclose(whole, tiled, atol=1e-4), float((whole - tiled).abs().max())


def test_hr_margin_is_needed():
    """With sub-tiles narrower than hr_margin needs, seams show: the derived margin is not slack."""
    module = _random_weights(get_spec("srresnet_x4").build())
    st = stages.split(module)
    assert st.folded == 1 and st.hr_margin == 4  # 9x9 at x4 + two 3x3 below: 2.5 px; bicubic skip: 3 px
    x = to_tensor(smooth_test_image(40, 40, seed=6))
    with torch.no_grad():
        feats = st.lr(x)
        whole = st.hr(feats)
        short = tiled_apply(st.hr, feats, 4, 7, margin=1)
        enough = tiled_apply(st.hr, feats, 4, 7, margin=st.hr_margin)
    assert float((whole - short).abs().max()) > 1e-3
    assert float((whole - enough).abs().max()) < 1e-5


class _Pooled(nn.Module):
    """Upsamples, then pools in the HR part: a reach the analysis does not know, so no split."""

    scale, in_channels, receptive_margin = 2, 1, 4

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 1, 1)

    def forward(self, x):
        return self.pool(nn.functional.pixel_shuffle(self.conv(x), 2))


class _InPlaceOnFeatures(nn.Module):
    """The HR part overwrites a value the LR part hands over (a view shared by neighbouring sub-tiles)."""

    scale, in_channels, receptive_margin = 2, 1, 4

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        f = self.conv(x)
        return nn.functional.pixel_shuffle(f.clamp_(0, 1), 2) + upscale_tensor(x, 2)


@pytest.mark.parametrize("module", [_Pooled(), _InPlaceOnFeatures()], ids=["pooling", "in-place"])
def test_networks_that_cannot_be_split_run_in_one_piece(module):
    assert stages.split(module.eval()) is None


def test_no_bf16_candidates_without_native_kernels(monkeypatch):
    monkeypatch.delenv("MEDENHANCE_PLAN", raising=False)
    monkeypatch.setattr(devmod, "_native_cpu_bf16", lambda: False)
    assert all(p.dtype is None for p in devmod.candidates("cpu"))
    monkeypatch.setattr(devmod, "_native_cpu_bf16", lambda: True)
    assert any(p.dtype == torch.bfloat16 for p in devmod.candidates("cpu"))


def test_screening_drops_hopeless_candidates(monkeypatch):
    """A candidate far slower on the tiny crop is never timed on the probe (a bf16 conv on an AVX2 CPU)."""
    slow, fast = devmod.ExecPlan(torch.float16, False), devmod.ExecPlan()
    seen: list = []
    real_run = devmod.run

    def run(module, x, plan, contiguous=True, **kw):
        seen.append(plan)
        return real_run(module, x, fast, contiguous, **kw)

    def timed(fn, x, repeats=3):  # deterministic "timings": the slow plan takes 10x as long
        y = fn(x)
        return y, 1.0 if seen[-1] == slow else 0.1

    monkeypatch.setattr(devmod, "run", run)
    monkeypatch.setattr(devmod, "_time", timed)
    module = get_spec("srcnn_x2").build().eval()
    x = devmod._probe_image(1, 96)
    assert devmod._screened("t", module, None, [fast, slow], x, {}) == [fast]
    assert devmod._screened("t", module, None, [slow, fast], x, {}) == [fast]
    assert devmod._screened("t", module, None, [slow], x, {}) == [slow]  # alone: nothing to compare


def test_the_automatic_plan_stages_x4_networks_and_stays_faithful(monkeypatch):
    """srresnet_x4 on the automatic plan: staged, >= 50 dB from fp32 on the probe and on a tiled image."""
    img = smooth_test_image(90, 70, seed=7)
    monkeypatch.setenv("MEDENHANCE_PLAN", "fp32")
    devmod._plans.pop(("srresnet_x4", "cpu"), None)
    ref = enhance(img, "srresnet_x4", tile=4096)  # the reference: plain fp32, one tile
    monkeypatch.delenv("MEDENHANCE_PLAN")
    monkeypatch.setenv("MEDENHANCE_ORT", "0")  # keep the test fast: PyTorch candidates only
    devmod._plans.pop(("srresnet_x4", "cpu"), None)
    out = enhance(img, "srresnet_x4", tile=16)  # HR sub-tiles of 16 px, LR tiles of 64: seams in both
    plan = devmod._plans[("srresnet_x4", "cpu")]
    assert plan.staged and "+staged" in plan.label and plan.fidelity_db >= devmod.FIDELITY_MIN_PSNR_DB
    assert devmod.psnr_torch(torch.from_numpy(ref), torch.from_numpy(out)) >= devmod.FIDELITY_MIN_PSNR_DB


def test_lr_tiles_grow_with_the_sub_tile_up_to_the_limit():
    assert devmod.lr_tile_for(128) == devmod.LR_TILE == 512
    assert devmod.lr_tile_for(16) == 64  # a small tile bounds memory: the LR tiles shrink with it
    assert devmod.lr_tile_for(1024) == 1024


def test_low_resolution_networks_get_tiles_that_fit_the_cache(monkeypatch):
    """CompactSR's tiles keep a conv's input and output, margin included, in 3/4 of the last-level cache."""
    from models.arch.compact import CompactSR

    net = CompactSR(scale=4, feats=32, convs=14)
    monkeypatch.setattr(devmod, "last_level_cache_bytes", lambda: 32 << 20)
    side = devmod.lr_tile_for(128, net, margin=20)
    assert side == 256 and 2 * 4 * 32 * (side + 40) ** 2 <= 0.75 * (32 << 20)
    monkeypatch.setattr(devmod, "last_level_cache_bytes", lambda: 256 << 20)  # a big cache: the usual limit
    assert devmod.lr_tile_for(128, net, margin=20) == devmod.LR_TILE
    assert devmod.lr_tile_for(128, nn.Conv2d(1, 1, 3), margin=20) == devmod.LR_TILE  # no lr_feats: unchanged


@pytest.mark.slow
def test_compiled_candidate_is_opt_in_and_faithful(monkeypatch):
    """MEDENHANCE_COMPILE=1 adds torch.compile (Inductor); its output matches eager fp32 on odd tile sizes."""
    from models import compiled

    monkeypatch.delenv("MEDENHANCE_PLAN", raising=False)
    monkeypatch.delenv("MEDENHANCE_COMPILE", raising=False)
    assert all(p.backend != "inductor" for p in devmod.candidates("cpu"))
    monkeypatch.setenv("MEDENHANCE_COMPILE", "1")
    assert devmod.ExecPlan(backend="inductor") in devmod.candidates("cpu")
    module = _random_weights(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.PReLU(8), nn.Conv2d(8, 1, 3, padding=1)))
    plan = devmod.ExecPlan(backend="inductor")
    try:
        with torch.no_grad():
            for h, w in ((20, 24), (17, 31)):  # a second shape: dynamic, not a wrong cached kernel
                x = torch.rand(1, 1, h, w)
                assert devmod.psnr_torch(module(x), devmod.run(module, x, plan)) >= devmod.FIDELITY_MIN_PSNR_DB
    finally:
        compiled.clear()
