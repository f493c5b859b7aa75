"""Realistic degradations (train.realistic, train.realistic_torch): seeded, physically measured, composable."""

import math

import numpy as np
import pytest
import torch

from conftest import smooth_test_image
from train import realistic as R
from train import realistic_torch as RT
from train.degrade import DEGRADATIONS, compose
from train.signal import PNG_TABLE, to_display, to_display_tensor

SEEDED = [("poisson_gaussian", {"dose": 500.0}), ("real_world_down", {"scale": 2}), ("sr_real_eval", {"scale": 4})]


@pytest.mark.parametrize("name,params", SEEDED)
def test_same_seed_same_output_different_seed_different(name, params):
    img = smooth_test_image(96, 96, seed=3)
    a = DEGRADATIONS[name](img, **params, seed=7)
    assert np.array_equal(a, DEGRADATIONS[name](img, **params, seed=7))
    assert not np.array_equal(a, DEGRADATIONS[name](img, **params, seed=8))
    assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() <= 1.0
    scale = params.get("scale", 1)
    assert a.shape == (96 // scale, 96 // scale)


@pytest.mark.parametrize("dose,read", [(100.0, 0.0), (1000.0, 0.002), (5000.0, 0.004)])
@pytest.mark.parametrize("level", [0.2, 0.5, 0.8])
def test_poisson_gaussian_variance_matches_the_dose(dose, read, level):
    """On a flat signal the measured variance is s / dose + read^2 (NumPy and torch), within 5 %."""
    flat = np.full((256, 256), level, np.float32)
    want = level / dose + read**2
    v_np = R.poisson_gaussian_signal(flat, dose, read, np.random.default_rng(0)).astype(np.float64).var()
    t = torch.from_numpy(flat).expand(4, 1, 256, 256)
    v_t = RT.poisson_gaussian_tensor(t, torch.full((4,), dose), torch.full((4,), read),
                                     torch.Generator().manual_seed(0)).double().var(dim=(1, 2, 3))
    assert abs(v_np / want - 1) < 0.05
    assert torch.all((v_t / want - 1).abs() < 0.05)
    # unbiased: the mean signal stays where it was
    assert abs(R.poisson_gaussian_signal(flat, dose, read, np.random.default_rng(1)).mean() - level) < 0.01


def test_noise_is_added_before_the_window():
    """A 5x narrower display window shows 5x the detector noise: the noise lives in the signal domain."""
    s = np.full((256, 256), 0.5, np.float32)
    noisy = R.poisson_gaussian_signal(s, 2000.0, 0.0, np.random.default_rng(0))
    wide = to_display(noisy, PNG_TABLE)
    narrow = to_display(noisy, (np.array([0.4, 0.6]), np.array([1.0, 0.0])))
    assert narrow.std() / wide.std() == pytest.approx(5.0, rel=0.02)
    assert wide.std() == pytest.approx(math.sqrt(0.5 / 2000), rel=0.05)


@pytest.mark.parametrize("sx,sy,angle", [(1.0, 1.0, 0.0), (1.5, 0.5, 30.0), (0.8, 0.4, 120.0)])
def test_psf_second_moments_are_the_requested_sigmas(sx, sy, angle):
    k = R.psf_kernel(sx, sy, angle).astype(np.float64)
    assert k.sum() == pytest.approx(1.0, abs=1e-6)
    r = k.shape[0] // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    cov = np.array([[np.sum(k * xx * xx), np.sum(k * xx * yy)], [np.sum(k * xx * yy), np.sum(k * yy * yy)]])
    evals, evecs = np.linalg.eigh(cov)
    assert np.sqrt(evals) == pytest.approx(sorted([sy, sx]), rel=0.03)
    if sx != sy:  # the major axis points along `angle`
        major = evecs[:, 1]
        assert abs(major @ [math.cos(math.radians(angle)), math.sin(math.radians(angle))]) > 0.999
    # the batched kernels are the same function
    kt = RT.psf_kernels(torch.tensor([sx]), torch.tensor([sy]), torch.tensor([angle]), r)[0].numpy()
    assert np.allclose(kt, k, atol=1e-6)


@pytest.mark.parametrize("sigma", [0.7, 1.2])
@pytest.mark.parametrize("freq", [0.05, 0.15])
def test_detector_blur_mtf_is_gaussian(sigma, freq):
    """A sinusoid of f cycles/px keeps exp(-2 pi^2 sigma^2 f^2) of its amplitude (NumPy and batched torch)."""
    x = np.arange(400)
    wave = (0.5 + 0.3 * np.sin(2 * np.pi * freq * x))[None, :].repeat(64, 0).astype(np.float32)
    want = math.exp(-2 * math.pi**2 * sigma**2 * freq**2)
    out = DEGRADATIONS["detector_blur"](wave, sigma_x=sigma, sigma_y=sigma)
    mid = out[32, 100:300]
    assert (mid.max() - mid.min()) / 0.6 == pytest.approx(want, rel=0.03)
    k = RT.psf_kernels(torch.tensor([sigma]), torch.tensor([sigma]), torch.zeros(1), math.ceil(3 * sigma))
    ot = RT.blur_tensor(torch.from_numpy(wave)[None, None], k)[0, 0, 32, 100:300]
    assert float(ot.max() - ot.min()) / 0.6 == pytest.approx(want, rel=0.03)


def test_jpeg_of_the_low_resolution_input_changes_it_and_keeps_its_shape():
    img = smooth_test_image(128, 128, seed=1)
    lr = R.sr_real_eval(img, scale=2, seed=0)
    assert lr.shape == (64, 64)
    # the same chain without the JPEG step: same seed, same noise, so the difference is the JPEG
    p = R.SR_REAL_EVAL
    s = 1.0 - img
    x = R.blur_signal(s, R.psf_kernel(p["sigma_x"], p["sigma_y"], p["angle"]))
    x = np.clip(R.resize(x, (64, 64), "bicubic"), 0, 1)
    x = to_display(R.poisson_gaussian_signal(x, p["dose"], p["read_sigma"], np.random.default_rng(0)), PNG_TABLE)
    diff = np.abs(lr - x)
    assert diff.max() > 2 / 255 and diff.mean() < 0.02  # changed, but a quality-90 JPEG of it
    batch = torch.from_numpy(np.stack([x, x]))[:, None]
    out = RT.jpeg_tensor(batch, torch.tensor([50, 50]), torch.tensor([True, False]))
    assert out.shape == batch.shape
    assert not torch.equal(out[0], batch[0]) and torch.equal(out[1], batch[1])


def test_compose_chains_realistic_steps_reproducibly():
    chain = compose([("detector_blur", {"sigma_x": 1.0, "sigma_y": 0.5, "angle": 45.0}), ("bicubic_down", {"scale": 2}),
                     ("poisson_gaussian", {"dose": 800.0}), ("jpeg", {"quality": 80})])
    img = smooth_test_image(64, 80, seed=2)
    a = chain(img, seed=5)
    assert a.shape == (32, 40) and np.array_equal(a, chain(img, seed=5)) and not np.array_equal(a, chain(img, seed=6))


@pytest.mark.parametrize("scale", [2, 4])
def test_batched_real_world_chain_is_seeded_and_sized(scale):
    s = 1.0 - torch.from_numpy(np.stack([smooth_test_image(64, 64, seed=i) for i in range(6)]))[:, None]
    win = torch.tensor([[0.0, 1.0]] * 3 + [[0.2, 0.9]] * 3)
    a = RT.real_sr_batch(s, win, scale, torch.Generator().manual_seed(0))
    b = RT.real_sr_batch(s, win, scale, torch.Generator().manual_seed(0))
    c = RT.real_sr_batch(s, win, scale, torch.Generator().manual_seed(1))
    assert a.shape == (6, 1, 64 // scale, 64 // scale) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    # levels differ per sample: the residual against the clean LR varies across the batch
    clean = torch.nn.functional.interpolate(to_display_tensor(s, win), scale_factor=1 / scale, mode="area")
    err = (a - clean).abs().mean(dim=(1, 2, 3))
    assert float(err.max() / err.min()) > 1.2


def test_numpy_random_chain_covers_the_same_levels_as_the_batched_one():
    """Both draw from REAL_SR_RANGES: mean absolute degradation of many draws agrees within 30 %."""
    img = smooth_test_image(64, 64, seed=4)
    clean = R.resize(img, (32, 32), "area")
    e_np = np.mean([np.abs(R.real_world_down(img, 2, seed=i) - clean).mean() for i in range(40)])
    s = torch.from_numpy(1.0 - img)[None, None].expand(40, 1, 64, 64).contiguous()
    out = RT.real_sr_batch(s, torch.tensor([[0.0, 1.0]]).expand(40, 2), 2, torch.Generator().manual_seed(0))
    e_t = float((out - torch.from_numpy(clean)).abs().mean())
    assert e_t / e_np == pytest.approx(1.0, abs=0.3)


def test_denoise_real_batch_noise_grows_as_dose_falls():
    s = torch.full((64, 1, 32, 32), 0.5)
    out = RT.denoise_real_batch(s, torch.tensor([[0.0, 1.0]]).expand(64, 2), torch.Generator().manual_seed(0))
    std = (out - 0.5).std(dim=(1, 2, 3))
    lo, hi = RT.DENOISE_REAL_DOSE
    assert float(std.min()) >= math.sqrt(0.5 / hi) * 0.8 and float(std.max()) <= math.sqrt(0.5 / lo + 0.004**2) * 1.2
    for p in R.DENOISE_REAL_EVAL.values():  # the evaluation doses lie inside the training range
        assert lo <= p["dose"] <= hi
