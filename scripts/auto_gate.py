"""Fit and check the gate of an automatic SR entry (``models.auto.Gate``): which specialist an input needs.

The degradation probe alone routes well on the Hannover PNGs it was trained on and badly elsewhere: on the
external CRs with the realistic chain it chose the bicubic-trained network (x2: -5.6 dB, below bicubic). The gate
is a cost-weighted logistic regression on four numbers per input: the probe's logit and what
:func:`models.noise.measure_input` reports (log10 noise sigma, JPEG blockiness, smoothness). Each sample is a
degraded training image; its label says which specialist scored the higher PSNR, its weight by how many dB, so
the fit minimises the dB lost by wrong choices, not the count of them.

``collect`` runs the degradations of ``sr``, ``sr_real`` and ``sr_pg`` on a subset and writes one JSON line per
image (features and the PSNR of bicubic and both specialists); ``fit`` fits on one file and reports, on every
file given with ``--check``, the mean PSNR of the gated choice, the probe's choice, both specialists, bicubic
and the oracle, per task. The coefficients go into the route's ``gate=`` in ``models/zoo.py``.

Usage::

    python scripts/auto_gate.py collect --scale 2 --subset train --limit 60 --out runs/x2_train.jsonl
    python scripts/auto_gate.py collect --scale 2 --subset external --data /path/to/external --crop 512 \
        --out runs/x2_extcrop.jsonl
    python scripts/auto_gate.py fit runs/x2_train.jsonl runs/x2_cat.jsonl --check runs/x2_val.jsonl runs/x2_extcrop.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from models import enhance  # noqa: E402
from models.auto import BLEND_HIGH, BLEND_LOW, ROUTES, Gate, gate_features, probe_weight  # noqa: E402
from models.noise import measure_input  # noqa: E402

TASKS_SR = ("sr", "sr_real", "sr_pg")


def collect(scale: int, subset: str, data: str, limit: int, max_side: int, crop: int, out: str) -> None:
    """One JSON line per (task, image): features, probe weight, PSNR of bicubic and both specialists."""
    from train import metrics
    from train.config import DEFAULT_SPLIT
    from train.data import load_images, load_or_make_split
    from train.evaluate import _pair, external_split, fit_side, load_signal_images, native_crops
    from train.tasks import TASKS

    route = ROUTES[f"auto_x{scale}"]
    split = external_split(data) if subset == "external" else load_or_make_split(data, DEFAULT_SPLIT)
    ids = split[subset][:limit] if limit else split[subset]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        for task in TASKS_SR:
            if TASKS[task].signal_eval is not None:
                ims = load_signal_images(data, ids, max_side)
            else:
                ims = [fit_side(im, max_side) for im in load_images(data, ids, grayscale=True)]
            if crop:
                ims = [c for im in ims for c in native_crops(im, crop)]
            for i, im in enumerate(ims):
                inp, target = _pair(im, i, task, scale, "gaussian")
                m = measure_input(inp)
                row = {"task": task, "id": im.id, "sigma": m.sigma, "jpeg": m.jpeg, "smooth": m.smooth,
                       "w": probe_weight(inp, route)}
                for n, key in ((f"bicubic_x{scale}", "bicubic"), (route.clean, "clean"), (route.noisy, "noisy")):
                    row[key] = metrics.score(enhance(inp, n), target, 1.0, scale, names=("psnr",))["psnr"]
                f.write(json.dumps(row) + "\n")
                f.flush()
                print(task, im.id, {k: round(v, 3) for k, v in row.items() if isinstance(v, float)}, flush=True)


def _load(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _features(rows: list[dict]) -> np.ndarray:
    return np.array([gate_features(r["w"], r["sigma"], r["jpeg"], r["smooth"]) for r in rows])


def fit(rows: list[dict], l2: float = 1e-2, steps: int = 5000) -> Gate:
    """Cost-weighted logistic regression (gradient descent on standardised features) -> :class:`Gate`."""
    x = _features(rows)
    y = np.array([float(r["noisy"] > r["clean"]) for r in rows])
    cost = np.array([abs(r["noisy"] - r["clean"]) for r in rows]) + 1e-3
    cost = cost / cost.mean()
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        g = cost * (p - y)
        w -= 0.5 * (z.T @ g / len(y) + l2 * w)
        b -= 0.5 * g.mean()
    coef = w / sd
    return Gate(tuple(float(c) for c in coef), float(b - (coef * mu).sum()))


def report(rows: list[dict], gate: Gate, label: str) -> None:
    """Per task: mean PSNR of bicubic, each specialist, the better of the two, and the probe's and the gate's
    choice taken hard at 0.5 (a blend between 0.25 and 0.75 is not scored here: run the evaluation for it), the
    number of inputs each sends below bicubic, and how many the gate would blend."""
    print(f"\n{label}: mean PSNR (dB); choices taken hard at 0.5; '<bic' = images sent below bicubic")
    print(f"{'task':8} {'n':>3} {'bicubic':>8} {'clean':>8} {'noisy':>8} {'better':>8} {'probe':>8} {'gate':>8} "
          f"{'oracle':>8} {'<bic p':>6} {'<bic g':>6} {'blends':>6}")
    for task in TASKS_SR:
        rs = [r for r in rows if r["task"] == task]
        if not rs:
            continue
        g = [gate.weight(*gate_features(r["w"], r["sigma"], r["jpeg"], r["smooth"])) for r in rs]
        col = {k: float(np.mean([r[k] for r in rs])) for k in ("bicubic", "clean", "noisy")}
        probe = [r["noisy"] if r["w"] >= 0.5 else r["clean"] for r in rs]
        gated = [r["noisy"] if w >= 0.5 else r["clean"] for w, r in zip(g, rs)]
        oracle = np.mean([max(r["noisy"], r["clean"]) for r in rs])
        below = lambda picks: sum(p < r["bicubic"] for p, r in zip(picks, rs))  # noqa: E731
        blends = sum(BLEND_LOW < w < BLEND_HIGH for w in g)
        print(f"{task:8} {len(rs):3d} {col['bicubic']:8.3f} {col['clean']:8.3f} {col['noisy']:8.3f} "
              f"{max(col['clean'], col['noisy']):8.3f} {np.mean(probe):8.3f} {np.mean(gated):8.3f} {oracle:8.3f} "
              f"{below(probe):6d} {below(gated):6d} {blends:6d}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--scale", type=int, default=2)
    c.add_argument("--subset", default="train")
    c.add_argument("--data", default="../shared/data/hannover-cxr/png")
    c.add_argument("--limit", type=int, default=0)
    c.add_argument("--max-side", type=int, default=640)
    c.add_argument("--crop", type=int, default=0)
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--out", required=True)
    f = sub.add_parser("fit")
    f.add_argument("train", nargs="+", help="fitted on all of these")
    f.add_argument("--check", nargs="*", default=[])
    a = p.parse_args()
    if a.cmd == "collect":
        torch.set_num_threads(a.threads)
        collect(a.scale, a.subset, a.data, a.limit, 0 if a.crop else a.max_side, a.crop, a.out)
        return
    rows = [r for path in a.train for r in _load(path)]
    gate = fit(rows)
    print(f"gate=Gate(coef={tuple(round(c, 4) for c in gate.coef)}, bias={gate.bias:.4f})"
          "  # features: probe logit, log10 sigma, jpeg blockiness, smoothness")
    for path in [*a.train, *a.check]:
        report(_load(path), gate, path)


if __name__ == "__main__":
    main()
