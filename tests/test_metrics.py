"""Metrics against scikit-image and hand-computed cases; the sanity guard."""

import math

import numpy as np
import pytest
from skimage import metrics as skm

from conftest import smooth_test_image
from train import metrics


@pytest.fixture
def pair():
    ref = smooth_test_image(64, 64, seed=1)
    rng = np.random.default_rng(2)
    pred = np.clip(ref + 0.03 * rng.standard_normal(ref.shape), 0, 1).astype(np.float32)
    return pred, ref


def test_psnr_and_mse_match_skimage(pair):
    pred, ref = pair
    assert metrics.psnr(pred, ref, 1.0) == pytest.approx(skm.peak_signal_noise_ratio(ref, pred, data_range=1.0), abs=1e-6)
    assert metrics.mse(pred, ref) == pytest.approx(skm.mean_squared_error(ref, pred), rel=1e-9)


@pytest.mark.parametrize("colour", [False, True])
def test_ssim_matches_skimage_gaussian(pair, colour):
    pred, ref = pair
    if colour:
        pred, ref = np.stack([pred, pred[::-1], pred.T], -1), np.stack([ref, ref[::-1], ref.T], -1)
    ours = metrics.ssim(pred, ref, 1.0)
    theirs = skm.structural_similarity(
        ref, pred, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        channel_axis=-1 if colour else None,
    )
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_known_cases():
    ref = np.zeros((10, 10), np.float32)
    pred = np.full((10, 10), 0.1, np.float32)
    assert metrics.mse(pred, ref) == pytest.approx(0.01)
    assert metrics.psnr(pred, ref, 1.0) == pytest.approx(20.0)
    assert metrics.psnr(pred, ref, 255.0) == pytest.approx(20 + 20 * math.log10(255))  # data range matters
    assert metrics.psnr(ref, ref) == math.inf
    big = np.full((20, 20), 0.5, np.float32)
    assert metrics.ssim(big, big) == pytest.approx(1.0)
    assert metrics.snr(pred * 2, pred) == pytest.approx(0.0)  # error energy == signal energy


def test_border_crop_ignores_border():
    ref = np.zeros((20, 20), np.float32)
    pred = ref.copy()
    pred[:2] = 1.0
    assert metrics.psnr(pred, ref, crop=2) == math.inf
    assert metrics.psnr(pred, ref, crop=0) < 20


def test_sanity_guard_flags_impossible_scores():
    assert metrics.sanity_warnings({"psnr": 98.0, "ssim": 0.99})
    assert metrics.sanity_warnings({"psnr": 35.0, "ssim": 1.0})
    assert not metrics.sanity_warnings({"psnr": 35.0, "ssim": 0.95})


def test_abs_error_map():
    a = np.zeros((4, 5, 3), np.float32)
    b = np.ones((4, 5, 3), np.float32) * 0.5
    m = metrics.abs_error_map(a, b)
    assert m.shape == (4, 5) and np.allclose(m, 0.5)


def test_delta_e_matches_skimage_ciede2000():
    from skimage import color

    rng = np.random.default_rng(0)
    a = rng.random((16, 16, 3)).astype(np.float32)
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    ours = metrics.ciede2000(metrics.rgb_to_lab(a), metrics.rgb_to_lab(b))
    theirs = color.deltaE_ciede2000(color.rgb2lab(a), color.rgb2lab(b))
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    np.testing.assert_allclose(metrics.rgb_to_lab(a), color.rgb2lab(a), atol=1e-3)
    assert metrics.delta_e(a, a) == 0.0
    assert metrics.delta_e(b, a) == pytest.approx(float(theirs.mean()), abs=1e-3)


def test_ciede2000_sharma_reference_pairs():
    # Test data from Sharma, Wu & Dalal (2005), Table 1, pairs 1, 7 and 17.
    lab1 = np.array([[50.0, 2.6772, -79.7751], [50.0, 0.0, 0.0], [50.0, 2.5, 0.0]])
    lab2 = np.array([[50.0, 0.0, -82.7485], [50.0, -1.0, 2.0], [56.0, -27.0, -3.0]])
    np.testing.assert_allclose(metrics.ciede2000(lab1, lab2), [2.0425, 2.3669, 31.9030], atol=1e-4)


def test_ms_ssim_properties(pair):
    pred, ref = pair
    big_ref = np.kron(ref, np.ones((4, 4), np.float32))
    big_pred = np.kron(pred, np.ones((4, 4), np.float32))
    assert metrics.ms_ssim(big_ref, big_ref) == pytest.approx(1.0)
    v = metrics.ms_ssim(big_pred, big_ref)
    assert 0.5 < v < 1.0
    assert metrics.ms_ssim(pred, ref) < 1.0  # small images use fewer scales


def test_cnr_known_case():
    img = np.zeros((10, 10), np.float32)
    img[:, 5:] = 1.0
    rng = np.random.default_rng(0)
    img[:, :5] += rng.normal(0, 0.1, (10, 5)).astype(np.float32)
    roi = np.zeros_like(img, bool)
    roi[:, 5:] = True
    bg = ~roi
    expected = abs(1.0 - img[bg].mean()) / img[bg].std()
    assert metrics.cnr(img, roi, bg) == pytest.approx(expected)


def test_score_records_range_and_crop(pair):
    pred, ref = pair
    s = metrics.score(pred, ref, 1.0, crop=2)
    assert s["data_range"] == 1.0 and s["border_crop"] == 2 and "delta_e" not in s
    assert s["psnr"] == pytest.approx(metrics.psnr(pred, ref, crop=2))


def test_gmsd_known_step_edge():
    # Computed by hand, following Xue et al. (2014) and their MATLAB code: a vertical step edge
    # (0 -> 1 at column 8 of 16) against the same edge at half contrast. The 2x2 mean + downsampling
    # gives a 4 x 8 image, 1 in columns 4-7. Prewitt/3 gradients with zero padding ('same'):
    # interior rows have |g| = 1 at columns 3, 4 and 7 (the step and the right border), 0 elsewhere;
    # the top and bottom rows also see the zero border above/below: |(gx, gy)| = |(2/3, 1/3)| at
    # column 3, |(2/3, 2/3)| at columns 4 and 7, |(0, 1)| at columns 5 and 6. The prediction's map is
    # half of it, so each pixel's similarity is s(m) = (m^2 + c) / (1.25 m^2 + c) (s(0) = 1) and
    # GMSD is the standard deviation of s over the 32 pixels.
    ref = np.zeros((8, 16))
    ref[:, 8:] = 1.0
    c = 170.0 / 255.0**2
    r5, r8 = math.sqrt(5) / 3, math.sqrt(8) / 3
    edge_row, inner_row = [0, 0, 0, r5, r8, 1, 1, r8], [0, 0, 0, 1, 1, 0, 0, 1]
    m = np.array([edge_row, inner_row, inner_row, edge_row])
    s = (m**2 + c) / (1.25 * m**2 + c)
    expected = math.sqrt(np.mean((s - s.mean()) ** 2))
    assert metrics.gmsd(0.5 * ref, ref) == pytest.approx(expected, rel=1e-12)
    assert metrics.gmsd(0.5 * ref, ref) == pytest.approx(0.09976401500000294, rel=1e-12)  # piq 0.8.0: same
    assert metrics.gmsd(ref, ref) == 0.0


def test_gmsd_matches_piq():
    # Reference values: piq 0.8.0 (``pip install --no-deps piq`` once, not a dependency), float64:
    #   piq.gmsd(torch.tensor(pred)[None, None], torch.tensor(ref)[None, None], data_range=1.0)
    # (colour: tensors (1, 3, H, W)). The odd-sized crop checks the zero-padded 2x2 mean of the last
    # row and column. (The earlier variant padded the gradients by replication and dropped an odd last row:
    # 0.1-0.6 % higher than this on 512 x 512 radiograph crops, more on small images.)
    yy, xx = np.mgrid[0:48, 0:40].astype(np.float64)
    ref = np.clip(0.5 + 0.4 * np.sin(xx / 3.0) * np.cos(yy / 5.0), 0, 1)
    ref[10:30, 12:25] += 0.08
    pred = np.clip(ref + 0.15 * np.sin(1.7 * xx + 0.9 * yy), 0, 1)
    assert metrics.gmsd(pred, ref) == pytest.approx(0.01635861232206586, rel=1e-10)
    assert metrics.gmsd(pred[:47, :39], ref[:47, :39]) == pytest.approx(0.016287716333250563, rel=1e-10)
    colour_pred = np.stack([pred, pred**1.2, 1 - pred], axis=-1)
    colour_ref = np.stack([ref, ref**1.2, 1 - ref], axis=-1)
    assert metrics.gmsd(colour_pred, colour_ref) == pytest.approx(0.015818306635533956, rel=1e-10)


def test_gmsd_orders_damage_and_respects_data_range():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    ref = ndimage.gaussian_filter(rng.random((96, 96)), 2)
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    blurs = [metrics.gmsd(ndimage.gaussian_filter(ref, s), ref) for s in (0.5, 1.0, 2.0)]
    noises = [metrics.gmsd(ref + rng.normal(0, s, ref.shape), ref) for s in (0.01, 0.03, 0.1)]
    assert 0 < blurs[0] < blurs[1] < blurs[2]
    assert 0 < noises[0] < noises[1] < noises[2]
    pred = ndimage.gaussian_filter(ref, 1.0)
    assert metrics.gmsd(pred * 255, ref * 255, data_range=255.0) == pytest.approx(metrics.gmsd(pred, ref), rel=1e-9)
    grey3 = np.repeat(ref[..., None], 3, -1)
    assert metrics.gmsd(np.repeat(pred[..., None], 3, -1), grey3) == pytest.approx(metrics.gmsd(pred, ref), rel=1e-9)
