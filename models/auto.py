"""The automatic entries ``auto_x2``, ``auto_x4`` and ``auto_denoise``: measure the input, then choose the model.

Super-resolution has two families that each fail on the other's inputs (bicubic-trained networks sharpen noise;
noise-aware ones soften clean CLAHE texture). An :class:`AutoRoute` names one of each and a
:class:`~models.arch.probe.DegradationProbe` trained to predict, from the low-resolution input itself, the
weight ``w`` of the noise-aware model that minimises the error (:mod:`train.probe`). With ``w`` near 0 or 1
only one model runs; in between both run and their outputs are blended by ``w`` (twice the time, only where
the probe is unsure). Denoising needs no probe: its noise-aware model takes the estimated level as an input.

Every decision is a :class:`Decision` (what was measured, the weight, the models run), so the studio and the
API can say what the automatic entry did (:func:`decide`). Registered in :mod:`models.zoo` like the classical
baselines: ``fn(image, route=..., scale=...)``, so the UI, evaluation and tests share one path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .arch.probe import DegradationProbe
from .loading import load_network, weights_path
from .noise import InputMeasurement, estimate_sigma_tensor, luma, measure_input
from .registry import ModelSpec, get_spec, list_models
from .tiling import Progress

# Below / above these weights only one specialist runs; in between both, blended.
BLEND_LOW, BLEND_HIGH = 0.25, 0.75
PROBE_CROP = 96  # the probe looks at up to PROBE_CROPS crops of this side (LR px), spread over the image
PROBE_CROPS = 9


def gate_features(probe_w: float, sigma: float, jpeg: float, smooth: float) -> tuple[float, float, float, float]:
    """What a :class:`Gate` reads: the probe's logit, log10 of the noise sigma, JPEG blockiness, smoothness."""
    w = min(max(probe_w, 1e-3), 1 - 1e-3)  # the probe saturates: beyond 0.999 its logit carries nothing
    return (math.log(w / (1 - w)), math.log10(max(sigma, 1e-4)), jpeg, smooth)


@dataclass(frozen=True)
class Gate:
    """A logistic regression over :func:`gate_features`: the weight of the noise-aware specialist.

    The probe sees image crops only; what :func:`models.noise.measure_input` reports over the whole image (JPEG
    blocking above all) it does not use, and off the Hannover PNGs it routed realistic inputs to the
    bicubic-trained network. The coefficients are fitted by ``scripts/auto_gate.py fit`` on Hannover training
    images (cost-weighted by the dB a wrong choice loses)."""

    coef: tuple[float, float, float, float]
    bias: float

    def weight(self, *features: float) -> float:
        z = self.bias + sum(c * f for c, f in zip(self.coef, features))
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


@dataclass(frozen=True)
class AutoRoute:
    """One automatic entry: ``clean`` for clean inputs, ``noisy`` (noise-aware) otherwise; ``probe``: weights file
    of the probe deciding between them (None: always ``noisy``, e.g. denoising); ``gate``: the probe's logit and
    the input's measurement combined (None: the probe's weight alone)."""

    name: str
    task: str
    scale: int
    noisy: str
    clean: str | None = None
    probe: str | None = None
    gate: Gate | None = None


@dataclass(frozen=True)
class Decision:
    """What an automatic entry measured and did on one image."""

    route: str
    measurement: InputMeasurement
    weight: float  # weight of the noise-aware model in the output, in [0, 1]
    models: tuple[str, ...]  # the models run, in the order of their weights (clean first)

    def summary(self) -> str:
        """One line for cards, the UI and the API."""
        if len(self.models) == 2:
            did = f"blended {self.models[0]} and {self.models[1]} ({self.weight:.0%} {self.models[1]})"
        else:
            did = f"ran {self.models[0]}"
        probe = f"; weight of the noise-aware model {self.weight:.2f}" if self.weight not in (0.0, 1.0) else ""
        return f"{self.route}: {self.measurement.summary()}{probe} -> {did}"

    def as_dict(self) -> dict:
        return {"route": self.route, "measurement": self.measurement.as_dict(), "weight": self.weight,
                "models": list(self.models), "summary": self.summary()}


ROUTES: dict[str, AutoRoute] = {}


def add_route(route: AutoRoute) -> AutoRoute:
    ROUTES[route.name] = route
    return route


def _probe_spec(route: AutoRoute) -> ModelSpec:
    # Not registered (it enhances nothing); loaded through the same loader seam and cache as the networks.
    return ModelSpec(f"_probe_{route.name}", route.task, 1, 1, "degradation probe", weights=route.probe,
                     build=DegradationProbe)


def _crops(x: torch.Tensor, side: int, count: int) -> torch.Tensor:
    """Up to ``count`` crops of ``side`` px on a regular grid over (1, 1, H, W) ``x`` -> (K, 1, s, s)."""
    h, w = x.shape[-2:]
    s = min(side, h, w)
    k = max(1, int(round(count**0.5)))
    ys = np.linspace(0, h - s, k).round().astype(int)
    xs = np.linspace(0, w - s, k).round().astype(int)
    return torch.cat([x[..., y : y + s, x0 : x0 + s] for y in sorted(set(ys)) for x0 in sorted(set(xs))])


@torch.no_grad()
def probe_weight(image: np.ndarray, route: AutoRoute, device: str = "cpu") -> float:
    """The probe's weight of ``route.noisy`` for ``image`` (float32 [0, 1], (H, W) or (H, W, 3)); 1 without probe."""
    if route.probe is None or route.clean is None:
        return 1.0
    y = luma(image) if image.ndim == 3 else image
    x = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None, None]
    sigma = estimate_sigma_tensor(x)  # of the whole image, as the noise-aware models are conditioned
    crops = _crops(x, PROBE_CROP, PROBE_CROPS)
    probe = load_network(_probe_spec(route), device)
    logits = probe(crops.to(device), sigma.expand(crops.shape[0], 1, 1, 1).to(device))
    return float(torch.sigmoid(logits.float().mean()))


def decide(image: np.ndarray, name: str) -> Decision:
    """What automatic entry ``name`` measures on ``image`` and which model(s) it runs."""
    route = ROUTES[name]
    m = measure_input(image)
    w = probe_weight(image, route)
    if route.gate is not None and route.clean is not None:
        w = route.gate.weight(*gate_features(w, m.sigma, m.jpeg, m.smooth))
    if route.clean is None or w >= BLEND_HIGH:
        return Decision(name, m, 1.0 if route.clean is None else w, (route.noisy,))
    if w <= BLEND_LOW:
        return Decision(name, m, w, (route.clean,))
    return Decision(name, m, w, (route.clean, route.noisy))


def run_route(image: np.ndarray, route: str, scale: int = 1, noise_level: float | None = None,
              progress: Progress | None = None) -> np.ndarray:
    """The registry ``fn`` of an automatic entry: the decided model(s) through :func:`models.enhance`.

    ``noise_level`` (sigma in [0, 1] units, None = estimated) goes to the noise-aware model only; ``progress``
    gets the tiles of every model run, as one count."""
    from .enhance import _nth_pass, enhance  # enhance -> registry; the zoo registers this function

    d = decide(image, route)
    r = ROUTES[route]
    n = len(d.models)
    outs = [enhance(image, name, noise_level=noise_level if name == r.noisy else None,
                    progress=_nth_pass(progress, k, n)) for k, name in enumerate(d.models)]
    if n == 1:
        return outs[0]
    clean, noisy = outs
    return (clean + np.float32(d.weight) * (noisy - clean)).astype(np.float32)


def route_fn(name: str) -> partial:
    """``fn`` for the registry entry of route ``name``."""
    return partial(run_route, route=name)


def members(name: str) -> tuple[str, ...]:
    """The registered networks automatic entry ``name`` may run (clean first)."""
    r = ROUTES[name]
    return tuple(m for m in (r.clean, r.noisy) if m is not None)


def probe_path(name: str) -> Path | None:
    """The probe weights file of automatic entry ``name``; None if it has no probe."""
    r = ROUTES[name]
    return weights_path(_probe_spec(r)) if r.probe else None


def missing_weights(name: str) -> list[str]:
    """File names of the weights automatic entry ``name`` needs that are not there (empty: it can run)."""
    paths = [weights_path(get_spec(m)) for m in members(name)] + [p for p in [probe_path(name)] if p is not None]
    return [p.name for p in paths if not p.is_file()]


def automatic_entry(task: str, scale: int | None = None) -> str | None:
    """The automatic entry registered for ``task`` (and ``scale`` for SR) whose weights are all present, else None:
    the default model of the studio, the batch CLI and study creation."""
    for spec in list_models(task=task, scale=scale):
        if spec.kind == "auto" and spec.name in ROUTES and not missing_weights(spec.name):
            return spec.name
    return None
