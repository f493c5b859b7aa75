"""Training losses, looked up by name in explicit dicts.

* :data:`LOSSES`: pixel/structure losses ``(pred, target) -> scalar`` on
  (N, C, H, W) tensors in [0, 1]: l1, mse, charbonnier, ssim (1 - SSIM),
  gradient (L1 between Sobel gradients: edges), perceptual (L1 between the
  features of :class:`FeatureNet`).
* :data:`ADVERSARIAL`: (generator loss, discriminator loss) pairs for
  "standard" (SRGAN, BCE) and "relativistic" (ESRGAN, relativistic average) GANs.
* :func:`parse_loss` turns ``"l1+0.2*ssim+0.1*gradient"`` into one callable,
  so multi-term objectives are a command-line string, not code.
"""

from __future__ import annotations

import re
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Differentiable L1: mean sqrt((pred - target)^2 + eps^2)."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def _gauss_window(channels: int, device, dtype, sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, -1, -1).contiguous()


def ssim_torch(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM (Gaussian window sigma 1.5, valid region only) of (N, C, H, W) tensors."""
    c = pred.shape[1]
    w = _gauss_window(c, pred.device, pred.dtype)
    blur = lambda t: F.conv2d(t, w, groups=c)  # noqa: E731
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mp, mt = blur(pred), blur(target)
    vp, vt, cov = blur(pred * pred) - mp**2, blur(target * target) - mt**2, blur(pred * target) - mp * mt
    s = ((2 * mp * mt + c1) * (2 * cov + c2)) / ((mp**2 + mt**2 + c1) * (vp + vt + c2))
    return s.mean()


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - SSIM."""
    return 1.0 - ssim_torch(pred, target)


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Horizontal and vertical Sobel gradients of (N, C, H, W) -> (N, 2C, H-2, W-2)."""
    k = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], device=x.device, dtype=x.dtype) / 4
    c = x.shape[1]
    kx = k.expand(c, 1, 3, 3)
    ky = k.t().expand(c, 1, 3, 3)
    return torch.cat([F.conv2d(x, kx, groups=c), F.conv2d(x, ky, groups=c)], 1)


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between Sobel gradients: penalises blurred or invented edges."""
    return F.l1_loss(sobel(pred), sobel(target))


class FeatureNet(nn.Module):
    """A fixed feature extractor for the perceptual loss, defined here (nothing downloaded).

    Layer 1 is a bank of hand-set filters (identity, Sobel x/y, Laplacian,
    two Gaussian blurs: intensity, edges and scale); layers 2-4 are 3x3 convs
    with a fixed seeded orthogonal initialisation and ReLU, each followed by
    a stride-2 average pool. Random-weight convolutional features are known
    to capture local structure well enough for a perceptual/texture loss
    (He et al. 2016, Ulyanov et al. 2018), and being deterministic they need
    no weights file. Returns the features of every stage.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 64), seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        bank = torch.zeros(6, 1, 5, 5)
        bank[0, 0, 2, 2] = 1
        sob = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]]) / 4
        bank[1, 0, 1:4, 1:4], bank[2, 0, 1:4, 1:4] = sob, sob.t()
        bank[3, 0, 1:4, 1:4] = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]])
        xs = torch.arange(-2, 3.0)
        for i, s in ((4, 0.8), (5, 1.6)):
            k = torch.exp(-(xs**2) / (2 * s * s))
            bank[i, 0] = (k[:, None] * k[None]) / (k.sum() ** 2)
        self.register_buffer("bank", bank.repeat(in_channels, 1, 1, 1))  # the bank per channel
        self.convs = nn.ModuleList()
        cin = 6 * in_channels
        for w in widths:
            conv = nn.Conv2d(cin, w, 3, padding=1)
            flat = torch.empty(w, cin * 9)
            nn.init.orthogonal_(flat, generator=g)
            conv.weight.data.copy_(flat.view(w, cin, 3, 3))
            conv.bias.data.zero_()
            self.convs.append(conv)
            cin = w
        self.in_channels = in_channels
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = F.conv2d(x, self.bank, padding=2, groups=self.in_channels)
        feats = [f]
        for conv in self.convs:
            f = F.avg_pool2d(F.relu(conv(f)), 2)
            feats.append(f)
        return feats


_FEATURES: dict[tuple[str, int], FeatureNet] = {}


def perceptual_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between :class:`FeatureNet` features of pred and target, summed over stages."""
    key = (str(pred.device), pred.shape[1])
    if key not in _FEATURES:
        _FEATURES[key] = FeatureNet(pred.shape[1]).to(pred.device)
    net = _FEATURES[key]
    return sum(F.l1_loss(a, b) for a, b in zip(net(pred), net(target)))


def rgb_to_lab_torch(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) sRGB in [0, 1] -> CIE L*a*b* (D65), differentiable (same formulas as train.metrics)."""
    c = rgb.clamp(0, 1)
    lin = torch.where(c > 0.04045, ((c + 0.055) / 1.055).clamp_min(1e-8) ** 2.4, c / 12.92)
    m = torch.tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
                     device=rgb.device, dtype=rgb.dtype)
    xyz = torch.einsum("ij,njhw->nihw", m, lin) / torch.tensor([0.95047, 1.0, 1.08883], device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-8) ** (1 / 3), 7.787 * xyz + 16.0 / 116.0)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


def delta_e_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Colour fidelity for 3-channel images: mean CIE76 DeltaE (Euclidean Lab distance) / 100.

    CIE76 rather than CIEDE2000 because it is smooth everywhere (CIEDE2000's hue
    terms have discontinuities that make poor gradients); evaluation reports
    CIEDE2000. Grayscale inputs contribute 0.
    """
    if pred.shape[1] != 3:
        return pred.new_zeros(())
    d = rgb_to_lab_torch(pred) - rgb_to_lab_torch(target)
    return torch.sqrt((d**2).sum(1) + 1e-6).mean() / 100.0


LOSSES: dict[str, Loss] = {
    "l1": F.l1_loss,
    "mse": F.mse_loss,
    "charbonnier": charbonnier,
    "ssim": ssim_loss,
    "gradient": gradient_loss,
    "perceptual": perceptual_loss,
    "delta_e": delta_e_loss,
}


# --- adversarial ------------------------------------------------------------------

def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def standard_g(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """SRGAN generator loss: -log D(G(z))."""
    return _bce(fake_logits, 1.0)


def standard_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """SRGAN discriminator loss: -log D(x) - log(1 - D(G(z)))."""
    return _bce(real_logits, 1.0) + _bce(fake_logits, 0.0)


def relativistic_g(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """ESRGAN (relativistic average) generator loss: fakes should look more real than the average real."""
    return _bce(real_logits - fake_logits.mean(), 0.0) + _bce(fake_logits - real_logits.mean(), 1.0)


def relativistic_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """ESRGAN discriminator loss: reals more real than the average fake, and vice versa."""
    return _bce(real_logits - fake_logits.mean(), 1.0) + _bce(fake_logits - real_logits.mean(), 0.0)


ADVERSARIAL: dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = {
    "standard": (standard_g, standard_d),
    "relativistic": (relativistic_g, relativistic_d),
}


_TERM = re.compile(r"^\s*(?:([0-9.eE+-]+)\s*\*\s*)?([a-z0-9_]+)\s*$")


def parse_loss(spec: str) -> Loss:
    """``"l1+0.2*ssim"`` -> a callable summing the weighted terms from :data:`LOSSES`."""
    terms = []
    for part in spec.split("+"):
        m = _TERM.match(part)
        if not m or m.group(2) not in LOSSES:
            raise ValueError(f"bad loss term {part!r} in {spec!r}; terms are [weight*]name with name in {sorted(LOSSES)}")
        terms.append((float(m.group(1) or 1.0), LOSSES[m.group(2)]))

    def total(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * fn(pred, target) for w, fn in terms)

    return total
