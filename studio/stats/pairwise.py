"""Two-alternative forced choice: Wilson intervals, exact binomial tests, and the Bradley-Terry fit
(Hunter's 2004 MM algorithm) that turns pairwise wins into model strengths, with pseudo-wins when the
win graph is not strongly connected and a convergence flag for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class BTFit:
    """A Bradley-Terry fit and what a report must say about it.

    Attributes:
        log_strengths: (m,) log-strengths centred to mean 0; NaN everywhere when not estimable.
        prior: pseudo-wins added in each direction to every compared pair (0: the plain MLE).
        converged: the MM iterations met ``tol`` before ``max_iter``.
        iterations: MM iterations run.
        estimable: False when the compared models fall into separate groups never compared with
            each other (directly or through others): their relative strengths are not identified.
        strongly_connected: the win graph (i -> j when i beat j at least once) is strongly
            connected, Hunter's (2004) condition for a finite maximum-likelihood estimate.
    """

    log_strengths: np.ndarray
    prior: float
    converged: bool
    iterations: int
    estimable: bool
    strongly_connected: bool


def _reachable(adjacency: np.ndarray, start: int) -> set[int]:
    seen, todo = {start}, [start]
    while todo:
        i = todo.pop()
        for j in np.flatnonzero(adjacency[i]):
            if int(j) not in seen:
                seen.add(int(j))
                todo.append(int(j))
    return seen


def strongly_connected(wins: np.ndarray) -> bool:
    """True when every model beat, directly or through a chain of wins, every other model.

    That is Hunter's (2004) condition for the Bradley-Terry likelihood to have a finite
    maximum: otherwise some group of models beat the rest every time they met (two SR
    models always preferred over the original and bicubic, say), and the MLE pushes that
    group's strengths to infinity.
    """
    w = np.asarray(wins, dtype=float) > 0
    m = w.shape[0]
    if m <= 1:
        return True
    return len(_reachable(w, 0)) == m and len(_reachable(w.T, 0)) == m


def bradley_terry_fit(wins: np.ndarray, prior: float | None = None, tol: float = 1e-10,
                      max_iter: int = 10_000) -> BTFit:
    """Bradley-Terry strengths from a win matrix, by Hunter's (2004) MM algorithm, with diagnostics.

    Model: P(i beats j) = p_i / (p_i + p_j).

    Args:
        wins: (m, m) array, ``wins[i, j]`` = times i was preferred over j (every model compared at least once).
        prior: pseudo-wins added in both directions to every compared pair. ``None`` (the default):
            0.5 when the win graph is not strongly connected (:func:`strongly_connected`), where the
            maximum-likelihood strengths are infinite, else 0 (the plain MLE). With pseudo-wins the fit
            is the MLE of the augmented counts, the same as ``choix.ilsr_pairwise_dense`` on
            ``wins + prior * (wins + wins.T > 0)``.
        tol: convergence when no log-strength moves by more than ``tol`` in one iteration.
    Returns:
        A :class:`BTFit`; all strengths NaN (``estimable`` False) when the comparison graph is
        disconnected, since nothing links the groups' scales.
    """
    w = np.asarray(wins, dtype=float).copy()
    m = w.shape[0]
    n = w + w.T
    connected = strongly_connected(w)
    if prior is None:
        prior = 0.0 if connected else 0.5
    if m and len(_reachable(n > 0, 0)) < m:  # separate groups: no common scale, whatever the prior
        return BTFit(np.full(m, math.nan), float(prior), False, 0, False, connected)
    if prior > 0:
        w = w + prior * (n > 0)
        n = w + w.T
    total_wins = w.sum(axis=1)
    p = np.ones(m)
    converged, iterations = m <= 1, 0
    for iterations in range(1, max_iter + 1):
        denom = (n / (p[:, None] + p[None, :])).sum(axis=1)
        new = np.where(denom > 0, total_wins / np.where(denom > 0, denom, 1), 0.0)
        new = np.maximum(new, 1e-300)
        new /= np.exp(np.mean(np.log(new)))
        step = np.max(np.abs(np.log(new) - np.log(p)))
        p = new
        if step < tol:
            converged = True
            break
    logp = np.log(p)
    return BTFit(logp - logp.mean(), float(prior), converged, iterations, True, connected)


def bradley_terry(wins: np.ndarray, prior: float = 0.0, tol: float = 1e-10, max_iter: int = 10_000) -> np.ndarray:
    """Bradley-Terry log-strengths (m,), centred to mean 0: :func:`bradley_terry_fit` with a fixed ``prior``.

    Args:
        prior: pseudo-wins added in both directions to every compared pair;
            > 0 keeps the estimate finite when a group of models wins (or loses) every
            comparison with the rest, where the maximum-likelihood strength is infinite.
            The analysis uses :func:`bradley_terry_fit`, which chooses the prior and reports
            convergence.
    """
    return bradley_terry_fit(wins, prior=prior, tol=tol, max_iter=max_iter).log_strengths
