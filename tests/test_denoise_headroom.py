"""scripts/denoise_headroom.py: the oracle bound it reports is the error of the optimal estimator."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import denoise_headroom  # noqa: E402


def test_oracle_equal_levels_by_hand() -> None:
    # sigma_r = sigma = 0.05: error variance 0.05^2 / 2 = 1.25e-3 -> 29.03 dB.
    assert denoise_headroom.oracle_psnr(0.05, 0.05) == pytest.approx(-10 * np.log10(1.25e-3))


@pytest.mark.parametrize("ref_sigma", [0.005, 0.018, 0.05])
def test_oracle_matches_wiener_estimate_of_reference_noise(ref_sigma: float) -> None:
    # Signal known; the reference carries noise r, the input r + n. The Wiener estimate of r from
    # r + n is the optimal one, and its measured error must equal the bound the script reports.
    rng = np.random.default_rng(0)
    r = rng.normal(0, ref_sigma, 400_000)
    n = rng.normal(0, 0.05, 400_000)
    est = ref_sigma**2 / (ref_sigma**2 + 0.05**2) * (r + n)
    measured = -10 * np.log10(np.mean((est - r) ** 2))
    assert measured == pytest.approx(denoise_headroom.oracle_psnr(ref_sigma), abs=0.02)


def test_oracle_falls_as_reference_noise_rises() -> None:
    psnrs = [denoise_headroom.oracle_psnr(s) for s in (0.002, 0.01, 0.02, 0.04)]
    assert psnrs == sorted(psnrs, reverse=True)
