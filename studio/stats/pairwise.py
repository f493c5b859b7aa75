"""Two-alternative forced choice: Wilson intervals, exact binomial tests, and the Bradley-Terry fit
(Hunter's 2004 MM algorithm) that turns pairwise wins into model strengths.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps


def wilson_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (Wilson 1927; no continuity correction)."""
    if n <= 0:
        return (math.nan, math.nan)
    z = float(sps.norm.ppf(1 - (1 - level) / 2))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def binomial_p(k: int, n: int) -> float:
    """Two-sided exact binomial test of k successes in n against 1/2 (scipy)."""
    return float(sps.binomtest(k, n, 0.5).pvalue) if n > 0 else math.nan


def bradley_terry(wins: np.ndarray, prior: float = 0.0, tol: float = 1e-10, max_iter: int = 10_000) -> np.ndarray:
    """Bradley-Terry strengths from a win matrix, by Hunter's (2004) MM algorithm.

    Model: P(i beats j) = p_i / (p_i + p_j).

    Args:
        wins: (m, m) array, ``wins[i, j]`` = times i was preferred over j.
        prior: pseudo-wins added in both directions to every compared pair;
            > 0 keeps the estimate finite when a model wins (or loses) every
            comparison, where the maximum-likelihood strength is infinite.
    Returns:
        Log-strengths (m,), centred to mean 0 (only differences are identified).
    """
    w = np.asarray(wins, dtype=float).copy()
    m = w.shape[0]
    n = w + w.T
    if prior > 0:
        w = w + prior * (n > 0)
        n = w + w.T
    total_wins = w.sum(axis=1)
    p = np.ones(m)
    for _ in range(max_iter):
        denom = (n / (p[:, None] + p[None, :])).sum(axis=1)
        new = np.where(denom > 0, total_wins / np.where(denom > 0, denom, 1), 0.0)
        new = np.maximum(new, 1e-300)
        new /= np.exp(np.mean(np.log(new)))
        if np.max(np.abs(np.log(new) - np.log(p))) < tol:
            p = new
            break
        p = new
    logp = np.log(p)
    return logp - logp.mean()
