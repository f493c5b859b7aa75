"""Losses: looked up by name, zero at the optimum, consistent with the metrics they stand in for."""

import numpy as np
import pytest
import torch

from conftest import smooth_test_image
from train import metrics
from train.losses import ADVERSARIAL, LOSSES, FeatureNet, parse_loss, rgb_to_lab_torch, ssim_torch


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("channels", [1, 3])
def test_losses_are_zero_at_optimum_and_differentiable(name, channels):
    torch.manual_seed(0)
    t = torch.rand(2, channels, 32, 32)
    p = (t + 0.1 * torch.randn_like(t)).clamp(0, 1).requires_grad_(True)
    loss = LOSSES[name](p, t)
    at_optimum = float(LOSSES[name](t, t))
    if name == "delta_e" and channels == 1:
        assert float(loss) == 0.0  # a colour term: grayscale contributes nothing
        return
    loss.backward()
    assert torch.isfinite(loss) and p.grad is not None and torch.isfinite(p.grad).all()
    assert float(loss) > at_optimum
    assert at_optimum < 2e-3  # charbonnier/delta_e have a tiny epsilon floor


def test_torch_ssim_equals_metric_ssim():
    ref = smooth_test_image(48, 52, seed=1)
    pred = np.clip(ref + 0.05 * np.random.default_rng(0).standard_normal(ref.shape), 0, 1).astype(np.float32)
    t = ssim_torch(torch.from_numpy(pred)[None, None].double(), torch.from_numpy(ref)[None, None].double())
    assert float(t) == pytest.approx(metrics.ssim(pred, ref), abs=1e-6)


def test_torch_lab_matches_metrics_lab():
    rgb = smooth_test_image(16, 16, colour=True)
    lab_t = rgb_to_lab_torch(torch.from_numpy(rgb.transpose(2, 0, 1))[None].double())[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(lab_t, metrics.rgb_to_lab(rgb), atol=1e-4)


def test_parse_loss_weights_terms():
    p, t = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    combo = parse_loss("l1 + 0.5*ssim + 2*gradient")
    expected = LOSSES["l1"](p, t) + 0.5 * LOSSES["ssim"](p, t) + 2 * LOSSES["gradient"](p, t)
    assert float(combo(p, t)) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError):
        parse_loss("l1+vgg")


def test_feature_net_is_fixed_and_deterministic():
    a, b = FeatureNet(1), FeatureNet(1)
    x = torch.rand(1, 1, 32, 32)
    for fa, fb in zip(a(x), b(x)):
        assert torch.equal(fa, fb)
    assert not any(p.requires_grad for p in a.parameters())


@pytest.mark.parametrize("kind", sorted(ADVERSARIAL))
def test_adversarial_losses_reward_the_right_side(kind):
    g_loss, d_loss = ADVERSARIAL[kind]
    real, fake = torch.full((4, 1, 2, 2), 3.0), torch.full((4, 1, 2, 2), -3.0)
    # Discriminator separates well -> low D loss, high G loss; swapped -> the opposite.
    assert float(d_loss(real, fake)) < float(d_loss(fake, real))
    assert float(g_loss(real, fake)) > float(g_loss(fake, real))
