"""Inter-reader agreement: Krippendorff's alpha, Fleiss' kappa, the Shrout & Fleiss ICCs, weighted kappa.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as sps


def _delta2(values: np.ndarray, n_v: np.ndarray, level: str) -> np.ndarray:
    """Krippendorff's squared difference function delta^2(c, k) over the sorted values."""
    c, k = values[:, None], values[None, :]
    if level == "nominal":
        return (c != k).astype(float)
    if level == "interval":
        return (c - k) ** 2
    if level == "ratio":
        s = c + k
        return np.where(s == 0, 0.0, ((c - k) / np.where(s == 0, 1, s)) ** 2)
    if level == "ordinal":
        cum = np.cumsum(n_v)
        i, j = np.meshgrid(np.arange(len(values)), np.arange(len(values)), indexing="ij")
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        # sum of n_g for g from c to k, minus half of n_c and n_k
        between = cum[hi] - np.where(lo > 0, cum[lo - 1], 0)
        return (between - (n_v[i] + n_v[j]) / 2) ** 2
    raise ValueError(f"level must be nominal, ordinal, interval or ratio, got {level!r}")


def krippendorff_alpha(data: np.ndarray, level: str = "ordinal") -> float:
    """Krippendorff's alpha (Krippendorff 2011, "Computing Krippendorff's alpha-reliability").

    Args:
        data: (raters, units) reliability data; NaN = missing. Units with fewer
            than two values are not pairable and are ignored.
        level: metric: ``"nominal"``, ``"ordinal"``, ``"interval"`` or ``"ratio"``.
    Returns:
        alpha = 1 - D_o / D_e; NaN when undefined (no pairable unit, or a single value used throughout).
    """
    x = np.asarray(data, dtype=float)
    if x.ndim != 2:
        raise ValueError("data must be (raters, units)")
    present = ~np.isnan(x)
    values = np.unique(x[present])
    if values.size < 2:
        return math.nan
    # counts[u, v]: how many raters gave value v to unit u
    counts = np.stack([(x == v).sum(axis=0) for v in values], axis=1).astype(float)
    m_u = counts.sum(axis=1)
    pairable = m_u >= 2
    counts, m_u = counts[pairable], m_u[pairable]
    if counts.shape[0] == 0:
        return math.nan
    # coincidence matrix o_ck = sum_u (n_uc n_uk - [c == k] n_uc) / (m_u - 1)
    o = np.einsum("uc,uk->ck", counts / (m_u - 1)[:, None], counts) - np.diag((counts / (m_u - 1)[:, None]).sum(axis=0))
    n_c = o.sum(axis=1)
    n = n_c.sum()
    d2 = _delta2(values, n_c, level)
    d_o = (o * d2).sum()
    d_e = (np.outer(n_c, n_c) * d2).sum() / (n - 1)
    if d_e == 0:
        return math.nan
    return float(1 - d_o / d_e)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa (Fleiss 1971) from a (subjects, categories) table of rating counts.

    Every subject must have the same number of ratings n >= 2.
    """
    t = np.asarray(counts, dtype=float)
    n_sub = t.shape[0]
    n = t.sum(axis=1)
    if n_sub == 0 or not np.allclose(n, n[0]) or n[0] < 2:
        raise ValueError("every subject needs the same number (>= 2) of ratings")
    n = n[0]
    p_j = t.sum(axis=0) / (n_sub * n)
    p_i = ((t * t).sum(axis=1) - n) / (n * (n - 1))
    p_bar, p_e = p_i.mean(), (p_j ** 2).sum()
    if p_e == 1:
        return math.nan
    return float((p_bar - p_e) / (1 - p_e))


def icc(data: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Intraclass correlations of Shrout & Fleiss (1979) from (targets, raters) data without gaps.

    Returns:
        {"ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k", "ICC2_low", "ICC2_high", "n", "k"}:
        ICC(1,1), ICC(2,1) (two-way random, absolute agreement, single rater),
        ICC(3,1) (two-way mixed, consistency) and their k-rater averages; the
        confidence interval of ICC(2,1) follows McGraw & Wong (1996), case 2A.
    """
    y = np.asarray(data, dtype=float)
    if y.ndim != 2 or np.isnan(y).any():
        raise ValueError("ICC needs a complete (targets, raters) array")
    n, k = y.shape
    if n < 2 or k < 2:
        raise ValueError("ICC needs at least 2 targets and 2 raters")
    gm = y.mean()
    ss_r = k * ((y.mean(axis=1) - gm) ** 2).sum()
    ss_c = n * ((y.mean(axis=0) - gm) ** 2).sum()
    ss_t = ((y - gm) ** 2).sum()
    ss_e = ss_t - ss_r - ss_c
    msr, msc = ss_r / (n - 1), ss_c / (k - 1)
    mse = ss_e / ((n - 1) * (k - 1))
    msw = (ss_c + ss_e) / (n * (k - 1))

    def ratio(num: float, den: float) -> float:
        return float(num / den) if den != 0 else math.nan

    out = {
        "ICC1": ratio(msr - msw, msr + (k - 1) * msw),
        "ICC2": ratio(msr - mse, msr + (k - 1) * mse + k * (msc - mse) / n),
        "ICC3": ratio(msr - mse, msr + (k - 1) * mse),
        "ICC1k": ratio(msr - msw, msr),
        "ICC2k": ratio(msr - mse, msr + (msc - mse) / n),
        "ICC3k": ratio(msr - mse, msr),
        "n": n, "k": k,
    }
    r = out["ICC2"]
    lo = hi = math.nan
    if math.isfinite(r) and r < 1 and mse > 0:
        a = k * r / (n * (1 - r))
        b = 1 + k * r * (n - 1) / (n * (1 - r))
        v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
        q = 1 - (1 - level) / 2
        f_lo, f_hi = sps.f.ppf(q, n - 1, v), sps.f.ppf(q, v, n - 1)
        lo = n * (msr - f_lo * mse) / (f_lo * (k * msc + (k * n - k - n) * mse) + n * msr)
        hi = n * (f_hi * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_hi * msr)
    out["ICC2_low"], out["ICC2_high"] = float(lo), float(hi)
    return out


def weighted_kappa(x: Sequence[int], y: Sequence[int], categories: Sequence[int] = (1, 2, 3, 4, 5),
                   weights: str = "quadratic") -> float:
    """Cohen's weighted kappa (Cohen 1968) of two ratings of the same items.

    Args:
        x, y: paired ratings (e.g. a reader's first and repeat score).
        categories: the ordered scale.
        weights: ``"quadratic"``, ``"linear"`` or ``"none"`` (Cohen's unweighted kappa).
    Returns:
        kappa_w = 1 - sum(w * observed) / sum(w * expected) with disagreement
        weights w_ij = |i - j|^p / (K - 1)^p; NaN when undefined.
    Raises:
        ValueError: a score is not one of ``categories`` (the message names it), or unknown weights.
    """
    a, b = np.asarray(x), np.asarray(y)
    if a.shape != b.shape or a.size == 0:
        return math.nan
    cats = list(categories)
    idx = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    outside = sorted({v for v in a.tolist() + b.tolist() if v not in idx}, key=repr)
    if outside:
        raise ValueError(f"weighted_kappa: score(s) {', '.join(map(repr, outside[:5]))} outside the scale "
                         f"{cats}; pass the scale the ratings use as categories=")
    obs = np.zeros((k, k))
    for u, v in zip(a.tolist(), b.tolist()):
        obs[idx[u], idx[v]] += 1
    obs /= obs.sum()
    exp = np.outer(obs.sum(axis=1), obs.sum(axis=0))
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    power = {"quadratic": 2, "linear": 1}.get(weights)
    if weights == "none":
        w = (i != j).astype(float)
    elif power is not None:
        w = (np.abs(i - j) / max(1, k - 1)) ** power
    else:
        raise ValueError(f"weights must be quadratic, linear or none, got {weights!r}")
    den = (w * exp).sum()
    return float(1 - (w * obs).sum() / den) if den > 0 else math.nan
