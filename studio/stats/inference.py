"""Means and paired tests of reader scores: case-bootstrap CIs, Wilcoxon signed-rank, Holm's adjustment."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps

# --- means and tests ---------------------------------------------------------------------------

def bootstrap_mean_ci(
    values: Sequence[float],
    clusters: Sequence[Any] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean and percentile bootstrap confidence interval (Efron & Tibshirani 1993, ch. 13).

    Args:
        values: the observations (e.g. every reader's score of one model).
        clusters: optional cluster label per value (e.g. the case): whole
            clusters are resampled, so several readers' scores of one case count
            as one unit of evidence, not as independent draws.
        n_boot: bootstrap resamples.
        level: confidence level.
        seed: seeds the resampling (same inputs and seed -> same interval).
    Returns:
        (mean, low, high); NaNs for no data, (mean, mean, mean) for one cluster.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if clusters is None:
        sums, counts = x, np.ones_like(x)
    else:
        _, inv = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
        sums = np.bincount(inv, weights=x)
        counts = np.bincount(inv).astype(float)
    g = sums.size
    if g < 2:
        return (mean, mean, mean)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, g, size=(n_boot, g))
    boot = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return (mean, float(lo), float(hi))


def wilcoxon_paired(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Wilcoxon signed-rank test of paired samples ``x`` vs ``y`` (two-sided).

    Zero differences are dropped (Wilcoxon's original treatment). As R's
    ``wilcox.test``: the exact null distribution when fewer than 50 non-zero
    differences and no ties, else the normal approximation with tie and
    continuity correction (Likert differences nearly always tie).
    Returns:
        {n, n_nonzero, mean_diff, median_diff, statistic, p}; with no non-zero
        difference the test is undefined: statistic NaN and p = 1.
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape:
        raise ValueError("x and y must be paired (same length)")
    d = a - b
    out = {"n": int(d.size), "n_nonzero": int(np.count_nonzero(d)),
           "mean_diff": float(d.mean()) if d.size else math.nan,
           "median_diff": float(np.median(d)) if d.size else math.nan,
           "statistic": math.nan, "p": 1.0 if d.size else math.nan}
    if out["n_nonzero"] == 0:
        return out
    nz = np.abs(d[d != 0])
    exact = nz.size < 50 and np.unique(nz).size == nz.size
    res = sps.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided",
                       method="exact" if exact else "approx", correction=not exact)
    out["statistic"], out["p"] = float(res.statistic), float(res.pvalue)
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values (family-wise error); NaNs stay NaN and are not counted."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out.tolist()
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


