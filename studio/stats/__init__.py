"""Statistics of reader studies: plain functions on numpy arrays (numpy + scipy only).

Every function follows a textbook definition, named in its docstring, and is
tested against scipy or against the published worked example:

* :func:`bootstrap_mean_ci`: percentile bootstrap of a mean, optionally resampling clusters (cases);
* :func:`wilcoxon_paired`: Wilcoxon signed-rank test (scipy), :func:`holm`: Holm's step-down adjustment;
* :func:`wilson_ci`: Wilson score interval of a proportion;
* :func:`bradley_terry_fit`: Bradley-Terry strengths by Hunter's (2004) MM algorithm, pseudo-wins when the
  win graph is not strongly connected, convergence reported (:func:`bradley_terry`: the strengths only);
* :func:`krippendorff_alpha`: Krippendorff's alpha (nominal, ordinal, interval, ratio), missing data allowed;
* :func:`fleiss_kappa`: Fleiss' kappa (1971); :func:`icc`: the six Shrout & Fleiss (1979) ICCs;
* :func:`weighted_kappa`: Cohen's weighted kappa (linear or quadratic weights).

Where things are: :mod:`.inference` (means, CIs, paired tests), :mod:`.pairwise` (2AFC and the
Bradley-Terry fit), :mod:`.agreement` (inter-reader agreement), :mod:`.plots` (bar charts drawn with
Pillow) and :mod:`.analysis` (a study's full analysis, ``python -m studio.stats.analysis``).
"""

from .agreement import fleiss_kappa, icc, krippendorff_alpha, weighted_kappa
from .inference import bootstrap_mean_ci, holm, wilcoxon_paired
from .pairwise import BTFit, binomial_p, bradley_terry, bradley_terry_fit, strongly_connected, wilson_ci

__all__ = [
    "BTFit",
    "binomial_p",
    "bootstrap_mean_ci",
    "bradley_terry",
    "bradley_terry_fit",
    "fleiss_kappa",
    "holm",
    "icc",
    "krippendorff_alpha",
    "strongly_connected",
    "weighted_kappa",
    "wilcoxon_paired",
    "wilson_ci",
]
