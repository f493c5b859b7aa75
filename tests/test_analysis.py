"""Statistics of reader studies, checked against published worked examples and scipy.

Textbook cases: Krippendorff (2011) and Wikipedia's alpha example; Fleiss (1971)
as on Wikipedia; Shrout & Fleiss (1979) Table 2/4 for the ICCs; Cohen's kappa
2x2 example. Tests, intervals and resampling against scipy.stats.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as sps

from db import CRITERIA
from studio import stats
from studio.stats import analysis, plots

nan = math.nan


# --- agreement: published examples ------------------------------------------------------------

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: 4 observers, 12 units, missing data.
K2011 = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
    [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
])
# Wikipedia, "Krippendorff's alpha": 3 coders, 15 units.
WIKI = np.array([
    [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
    [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
    [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
])


@pytest.mark.parametrize("level,expected", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849),
                                            ("ratio", 0.797)])
def test_krippendorff_alpha_krippendorff_2011(level: str, expected: float) -> None:
    assert stats.krippendorff_alpha(K2011, level) == pytest.approx(expected, abs=5e-4)


def test_krippendorff_alpha_wikipedia_example_and_edge_cases() -> None:
    assert stats.krippendorff_alpha(WIKI, "nominal") == pytest.approx(0.691, abs=5e-4)
    assert stats.krippendorff_alpha(WIKI, "interval") == pytest.approx(0.811, abs=5e-4)
    assert stats.krippendorff_alpha(np.array([[1, 2, 3], [1, 2, 3]]), "ordinal") == pytest.approx(1.0)
    assert math.isnan(stats.krippendorff_alpha(np.array([[3, 3], [3, 3]])))  # one value throughout: undefined
    assert math.isnan(stats.krippendorff_alpha(np.array([[1, nan], [nan, 2]])))  # nothing pairable


def test_fleiss_kappa_wikipedia_example() -> None:
    # Fleiss' kappa article: 10 subjects, 14 raters, 5 categories -> kappa = 0.210.
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert stats.fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    with pytest.raises(ValueError):
        stats.fleiss_kappa(np.array([[1, 1], [2, 1]]))  # unequal numbers of raters


def test_icc_shrout_fleiss_1979() -> None:
    # Table 2 (6 targets x 4 judges) and the values of Table 4.
    data = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    r = stats.icc(data)
    expected = {"ICC1": 0.17, "ICC2": 0.29, "ICC3": 0.71, "ICC1k": 0.44, "ICC2k": 0.62, "ICC3k": 0.91}
    for key, value in expected.items():
        assert r[key] == pytest.approx(value, abs=0.005), key
    assert -1 < r["ICC2_low"] < r["ICC2"] < r["ICC2_high"] < 1
    assert r["ICC2_low"] == pytest.approx(0.019, abs=2e-3) and r["ICC2_high"] == pytest.approx(0.761, abs=2e-3)
    perfect = stats.icc(np.array([[1, 1], [3, 3], [5, 5.0]]))
    assert perfect["ICC2"] == pytest.approx(1.0)


def test_weighted_kappa() -> None:
    # Cohen's kappa, Wikipedia 2x2 example (20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no): 0.4.
    x = [1] * 25 + [2] * 25
    y = [1] * 20 + [2] * 5 + [1] * 10 + [2] * 15
    assert stats.weighted_kappa(x, y, categories=(1, 2), weights="none") == pytest.approx(0.4)
    # Quadratic weights equal 2 cov / (var x + var y + (mean x - mean y)^2) (population moments).
    rng = np.random.default_rng(1)
    a = rng.integers(1, 6, 60)
    b = np.clip(a + rng.integers(-1, 2, 60), 1, 5)
    expected = 2 * np.cov(a, b, bias=True)[0, 1] / (a.var() + b.var() + (a.mean() - b.mean()) ** 2)
    assert stats.weighted_kappa(a, b) == pytest.approx(expected)
    # Linear weights by hand: 3 items, one off by 1 of 4 steps.
    o = np.zeros((5, 5))
    o[0, 0] = o[1, 2] = o[2, 2] = 1 / 3
    e = np.outer(o.sum(1), o.sum(0))
    w = np.abs(np.subtract.outer(range(5), range(5))) / 4
    assert stats.weighted_kappa([1, 2, 3], [1, 3, 3], weights="linear") == pytest.approx(1 - (w * o).sum() / (w * e).sum())
    assert stats.weighted_kappa([4, 4], [4, 4]) != stats.weighted_kappa([4, 4], [4, 4])  # NaN: no variation
    # A score outside the scale is a ValueError naming it, not a bare KeyError.
    with pytest.raises(ValueError, match=r"score\(s\) 6 outside the scale \[1, 2, 3, 4, 5\]"):
        stats.weighted_kappa([1, 2, 6], [1, 2, 3])
    with pytest.raises(ValueError, match="outside the scale"):
        stats.weighted_kappa([1, 2], [0, 2], categories=(1, 2))


# --- tests and intervals against scipy ------------------------------------------------------------

def test_wilcoxon_matches_scipy_and_normal_formula() -> None:
    x = np.array([1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30])  # no ties: exact
    y = np.array([0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29])
    r = stats.wilcoxon_paired(x, y)
    ref = sps.wilcoxon(x, y, method="exact")
    assert r["statistic"] == ref.statistic and r["p"] == pytest.approx(ref.pvalue)
    assert r["p"] == pytest.approx(0.0391, abs=1e-4)  # Hollander & Wolfe's depression data
    # Likert data: ties and zeros -> normal approximation with tie and continuity correction (R's wilcox.test).
    a = np.array([3, 4, 2, 5, 4, 3, 3, 2, 4, 5, 1, 3])
    b = np.array([3, 2, 2, 4, 4, 1, 2, 3, 5, 3, 2, 2])
    r = stats.wilcoxon_paired(a, b)
    d = (a - b)[a != b]
    n = d.size
    ranks = sps.rankdata(np.abs(d))
    t_plus = ranks[d > 0].sum()
    _, ties = np.unique(np.abs(d), return_counts=True)
    sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24 - (ties ** 3 - ties).sum() / 48)
    z = (t_plus - n * (n + 1) / 4 - 0.5 * np.sign(t_plus - n * (n + 1) / 4)) / sd
    assert r["n_nonzero"] == n == 9 and r["statistic"] == min(t_plus, n * (n + 1) / 2 - t_plus)
    assert r["p"] == pytest.approx(2 * sps.norm.sf(abs(z)))
    same = stats.wilcoxon_paired([3, 4], [3, 4])
    assert same["p"] == 1.0 and math.isnan(same["statistic"])


def test_holm_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.005, nan, 0.5]
    # m = 5 valid: sorted 0.005*5, 0.01*4, 0.03*3, 0.04*2, 0.5*1, made monotone.
    assert stats.holm(p)[:4] == pytest.approx([0.04, 0.09, 0.09, 0.025])
    assert math.isnan(stats.holm(p)[4]) and stats.holm(p)[5] == pytest.approx(0.5)
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 2 x 0.8 capped at 1, then monotone
    assert stats.holm([0.02, 0.3]) == pytest.approx([0.04, 0.3])


@pytest.mark.parametrize("k,n", [(0, 10), (7, 20), (15, 15), (33, 61)])
def test_wilson_and_binomial_match_scipy(k: int, n: int) -> None:
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert stats.wilson_ci(k, n) == pytest.approx((ci.low, ci.high))
    assert stats.binomial_p(k, n) == pytest.approx(sps.binomtest(k, n, 0.5).pvalue)


def test_bootstrap_ci_matches_scipy_and_resamples_clusters() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(1, 6, 80).astype(float)
    mean, lo, hi = stats.bootstrap_mean_ci(x, n_boot=4000, seed=1)
    ref = sps.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", random_state=2).confidence_interval
    assert mean == pytest.approx(x.mean())
    assert lo == pytest.approx(ref.low, abs=0.06) and hi == pytest.approx(ref.high, abs=0.06)
    assert stats.bootstrap_mean_ci(x, n_boot=500, seed=3) == stats.bootstrap_mean_ci(x, n_boot=500, seed=3)
    # Three identical readers per case: resampling cases = resampling case means, so the
    # interval is as wide as with one reader (not narrowed by treating copies as independent).
    case_means = rng.integers(1, 6, 20).astype(float)
    values = np.repeat(case_means, 3)
    clusters = np.repeat([f"C{i:03d}" for i in range(20)], 3)  # labels sort like the case order
    clustered = stats.bootstrap_mean_ci(values, clusters, n_boot=3000, seed=5)
    single = stats.bootstrap_mean_ci(case_means, n_boot=3000, seed=5)
    assert clustered == pytest.approx(single)
    naive = stats.bootstrap_mean_ci(values, n_boot=3000, seed=5)
    assert naive[2] - naive[1] < clustered[2] - clustered[1]
    assert all(math.isnan(v) for v in stats.bootstrap_mean_ci([]))


def test_bradley_terry_is_the_likelihood_maximum() -> None:
    wins = np.array([[0, 7, 9, 6], [3, 0, 6, 5], [1, 4, 0, 4], [4, 5, 6, 0]], dtype=float)
    est = stats.bradley_terry(wins)

    def nll(theta: np.ndarray) -> float:
        t = np.concatenate([[0.0], theta])
        diff = t[:, None] - t[None, :]
        return float(-(wins * (diff - np.logaddexp(0, diff))).sum())

    ref = optimize.minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    ref = np.concatenate([[0.0], ref])
    assert est - est[0] == pytest.approx(ref - ref[0], abs=1e-5)
    assert list(np.argsort(-est)) == [0, 3, 1, 2]
    # A model winning everything: the MLE is infinite, the prior keeps it finite and first.
    sweep = np.array([[0, 5, 5], [0, 0, 3], [0, 2, 0]], dtype=float)
    shrunk = stats.bradley_terry(sweep, prior=0.5)
    assert np.all(np.isfinite(shrunk)) and np.argmax(shrunk) == 0


# Two SR models always preferred over the original and bicubic (issue 36): every model has wins and
# losses, but the win graph is not strongly connected, so the MLE gap between the groups is infinite.
# Models: original, bicubic, sr_a, sr_b.
GROUP_SWEEP = np.array([[0, 6, 0, 0], [4, 0, 0, 0], [10, 10, 0, 7], [10, 10, 5, 0]], dtype=float)
# choix 0.4.1 with 0.5 pseudo-wins per compared pair and direction (``pip install --no-deps choix`` once;
# not a dependency), centred to mean 0:
#   aug = GROUP_SWEEP + 0.5 * ((GROUP_SWEEP + GROUP_SWEEP.T) > 0)
#   p = choix.ilsr_pairwise_dense(aug, alpha=0.0, tol=1e-14, max_iter=100000); p - p.mean()
CHOIX_GROUP_SWEEP = [-1.37572952, -1.6880912, 1.66687447, 1.39694625]


def test_bradley_terry_pseudo_wins_when_the_win_graph_is_not_strongly_connected() -> None:
    assert not stats.strongly_connected(GROUP_SWEEP)
    fit = stats.bradley_terry_fit(GROUP_SWEEP)
    assert fit.prior == 0.5 and fit.converged and fit.estimable
    assert fit.log_strengths == pytest.approx(CHOIX_GROUP_SWEEP, abs=1e-7)
    # Without pseudo-wins the MM iterations never converge: the gap just grows with the cap (the bug).
    capped = stats.bradley_terry_fit(GROUP_SWEEP, prior=0.0, max_iter=1000)
    assert not capped.converged and capped.iterations == 1000
    assert capped.log_strengths[2] - capped.log_strengths[0] > 8
    # Strongly connected data keeps the plain MLE (no pseudo-wins), as before.
    mixed = np.array([[0, 7, 9], [3, 0, 6], [1, 4, 0]], dtype=float)
    mixed[2, 0] = 1
    assert stats.strongly_connected(mixed) and stats.bradley_terry_fit(mixed).prior == 0.0
    # Two groups never compared with each other: no common scale, reported rather than guessed.
    apart = np.array([[0, 3, 0, 0], [2, 0, 0, 0], [0, 0, 0, 4], [0, 0, 1, 0]], dtype=float)
    lost = stats.bradley_terry_fit(apart)
    assert not lost.estimable and np.all(np.isnan(lost.log_strengths))


def test_analysis_reports_pseudo_wins_and_an_unconverged_fit() -> None:
    models = ["original", "bicubic", "sr_a", "sr_b"]
    prefs = []
    for i, j in [(0, 1), (2, 3), (2, 0), (2, 1), (3, 0), (3, 1)]:
        for winner, loser, times in ((i, j, int(GROUP_SWEEP[i, j])), (j, i, int(GROUP_SWEEP[j, i]))):
            for _ in range(times):
                prefs.append({"reader": "R01", "case": f"C{len(prefs):03d}", "left_model": models[winner],
                              "right_model": models[loser], "chosen_model": models[winner], "replicate": 0,
                              "position": len(prefs) + 1})
    data = analysis.StudyData({"study_id": 1, "study_name": "sweep", "design": "2afc"}, models, [], prefs, [],
                              ["R01"])
    per_model, _, notes = analysis.afc_tables(data)
    bt = {r["model"]: r["bt_log_strength"] for r in per_model}
    expected = np.array(CHOIX_GROUP_SWEEP) - CHOIX_GROUP_SWEEP[0]  # relative to the original
    assert [bt[m] for m in models] == pytest.approx(list(expected), abs=1e-7)
    assert notes["bt_prior"] == 0.5 and notes["bt_converged"] and not notes["bt_strongly_connected"]
    result = analysis.analyze(data, n_boot=100)
    md = analysis.markdown(result)
    assert "0.5 pseudo-wins" in md and "not strongly connected" in md and "did not converge" not in md
    result["afc_notes"] = {**result["afc_notes"], "bt_converged": False, "bt_iterations": 10000}
    assert "The Bradley-Terry fit did not converge** in 10000 iterations" in analysis.markdown(result)
    result["afc_notes"]["bt_estimable"] = False
    assert "not estimable" in analysis.markdown(result)


# --- the analysis tables on synthetic answers ---------------------------------------------------

def _synthetic(readers: int = 3, cases: int = 8, seed: int = 0) -> analysis.StudyData:
    """Answers where 'good' scores higher than the original, 'bad' lower; repeats for R01."""
    rng = random.Random(seed)
    models = ["original", "good", "bad"]
    offset = {"original": 0, "good": 1, "bad": -1}
    ratings, prefs = [], []
    labels = [f"R{i + 1:02d}" for i in range(readers)]
    for r in labels:
        for c in range(cases):
            base = 2 + c % 2
            for m in models:
                score = min(5, max(1, base + offset[m] + rng.choice([0, 0, 0, 1, -1])))
                row = {"reader": r, "case": f"C{c:03d}", "model": m, "replicate": 0, "position": len(ratings) + 1,
                       **{k: score for k in CRITERIA}}
                ratings.append(row)
                if r == "R01" and c < 3:
                    ratings.append({**row, "replicate": 1, "overall": min(5, score + (c == 0))})
            for a, b in [("original", "good"), ("original", "bad"), ("good", "bad")]:
                winner = a if offset[a] > offset[b] else b
                if rng.random() < 0.2:
                    winner = b if winner == a else a
                prefs.append({"reader": r, "case": f"C{c:03d}", "left_model": a, "right_model": b,
                              "chosen_model": winner, "replicate": 0, "position": len(prefs) + 1})
    return analysis.StudyData({"study_id": 1, "study_name": "synthetic", "design": "both"}, models, ratings, prefs,
                              [], labels)


def test_mos_and_wilcoxon_tables() -> None:
    data = _synthetic()
    mos = {(r["model"], r["criterion"]): r for r in analysis.mos_table(data, seed=0, n_boot=500)}
    first = [r for r in data.ratings if r["replicate"] == 0]
    for m in data.models:
        vals = [r["overall"] for r in first if r["model"] == m]
        assert mos[(m, "overall")]["mean"] == pytest.approx(np.mean(vals)) and mos[(m, "overall")]["n"] == 24
        assert mos[(m, "overall")]["ci_low"] <= np.mean(vals) <= mos[(m, "overall")]["ci_high"]
    assert mos[("good", "overall")]["mean"] > mos[("original", "overall")]["mean"] > mos[("bad", "overall")]["mean"]
    rows = analysis.wilcoxon_table(data)
    assert len(rows) == 2 * len(CRITERIA)
    good = next(r for r in rows if r["model"] == "good" and r["criterion"] == "overall")
    key = {(r["reader"], r["case"], r["model"]): r["overall"] for r in first}
    pairs = sorted({(r["reader"], r["case"]) for r in first})
    ref = stats.wilcoxon_paired([key[(*p, "good")] for p in pairs], [key[(*p, "original")] for p in pairs])
    assert good["p"] == pytest.approx(ref["p"]) and good["n"] == 24 and good["mean_diff"] > 0
    assert [r["p_holm"] for r in rows] == pytest.approx(stats.holm([r["p"] for r in rows]))
    assert good["significant"]


def test_afc_and_agreement_tables() -> None:
    data = _synthetic()
    per_model, pairs, notes = analysis.afc_tables(data)
    wins = {m: sum(p["chosen_model"] == m for p in data.preferences) for m in data.models}
    for row in per_model:
        assert row["wins"] == wins[row["model"]] and row["comparisons"] == 48
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(stats.wilson_ci(row["wins"], 48))
    by = {r["model"]: r for r in per_model}
    assert by["original"]["bt_log_strength"] == 0.0
    assert by["good"]["bt_rank"] == 1 and by["bad"]["bt_rank"] == 3
    assert notes["comparisons"] == len(data.preferences) and len(pairs) == 3
    og = next(p for p in pairs if (p["model_a"], p["model_b"]) == ("original", "good"))
    k = sum(p["chosen_model"] == "original" for p in data.preferences if {p["left_model"], p["right_model"]} == {"original", "good"})
    assert og["a_wins"] == k and og["p_binomial"] == pytest.approx(sps.binomtest(k, 24).pvalue)

    agreement = analysis.agreement_table(data)
    first = [r for r in data.ratings if r["replicate"] == 0]
    units = sorted({(r["case"], r["model"]) for r in first})
    m = np.array([[next(r["overall"] for r in first if r["reader"] == rd and (r["case"], r["model"]) == u)
                   for u in units] for rd in data.readers], dtype=float)
    get = {(r["scope"], r["measure"], r["criterion"], r.get("reader")): r for r in agreement}
    assert get[("inter-reader", "krippendorff_alpha_ordinal", "overall", None)]["value"] == pytest.approx(
        stats.krippendorff_alpha(m, "ordinal"))
    counts = np.stack([(m == v).sum(axis=0) for v in range(1, 6)], axis=1)
    assert get[("inter-reader", "fleiss_kappa", "overall", None)]["value"] == pytest.approx(stats.fleiss_kappa(counts))
    assert get[("inter-reader", "icc_2_1", "overall", None)]["value"] == pytest.approx(stats.icc(m.T)["ICC2"])
    # Intra-reader: R01 repeated 3 cases x 3 models; case 0 got +1 on the repeat (3 of 9 disagree by 1).
    intra = get[("intra-reader", "exact_agreement", "overall", "R01")]
    assert intra["n_units"] == 9
    firsts = {(r["case"], r["model"]): r["overall"] for r in first if r["reader"] == "R01"}
    reps = [r for r in data.ratings if r["replicate"] == 1]
    x = [firsts[(r["case"], r["model"])] for r in reps]
    y = [r["overall"] for r in reps]
    assert intra["value"] == pytest.approx(np.mean(np.equal(x, y)))
    assert get[("intra-reader", "weighted_kappa_quadratic", "overall", "R01")]["value"] == pytest.approx(
        stats.weighted_kappa(x, y))


def test_empty_study_analyses_to_a_clear_message() -> None:
    data = analysis.StudyData({"study_id": 2, "study_name": "new", "design": "both"}, ["original", "clahe"], [], [],
                              [], ["R01", "R02"])
    result = analysis.analyze(data, n_boot=100)
    assert "No answers yet." in analysis.markdown(result) and "Wilcoxon" not in analysis.markdown(result)
    result["_overall_distribution"] = analysis.overall_distribution(data)
    assert analysis.make_plots(result) == {}
    assert result["afc_models"] == [] and result["agreement"] == []


def test_markdown_plots_and_csv(tmp_path: Path) -> None:
    data = _synthetic()
    result = analysis.analyze(data, seed=0, n_boot=300)
    md = analysis.markdown(result)
    for heading in ("Mean opinion score", "Wilcoxon", "2AFC", "Agreement", "Holm"):
        assert heading in md
    result["_overall_distribution"] = analysis.overall_distribution(data)
    images = analysis.make_plots(result)
    assert set(images) == {"mos", "distribution", "afc", "agreement"}
    assert all(im.size[0] >= 600 and im.mode == "RGB" for im in images.values())
    assert np.asarray(images["mos"]).std() > 10  # something was drawn
    rows = [{"a": 1, "b": nan, "c": None, "d": "x,y"}]
    text = analysis.write_csv(rows, ["a", "b", "c", "d"], tmp_path / "t.csv")
    assert list(csv.reader(text.splitlines())) == [["a", "b", "c", "d"], ["1", "", "", "x,y"]]
    # Formula injection: text that a spreadsheet would run gets a quote; numbers stay numbers.
    rows = [{"comment": "=1+1", "n": -2.5, "s": "-0.75", "t": "@SUM(A1)", "u": "\t=cmd", "v": "-1+2", "w": "x"}]
    text = analysis.write_csv(rows, list(rows[0]), tmp_path / "f.csv")
    assert list(csv.reader(text.splitlines()))[1] == ["'=1+1", "-2.5", "-0.75", "'@SUM(A1)", "'\t=cmd", "'-1+2", "x"]
    chart = plots.bar_chart(["a", "b"], {"s": [0.5, nan]}, {"s": [(0.4, 0.6), (nan, nan)]}, reference=0.5)
    assert chart.size == (900, 420)


# --- the command line on a real (small) study ----------------------------------------------------

def _png_files(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    out = []
    for i in range(n):
        yy, xx = np.mgrid[0:24, 0:24]
        img = (127 + 100 * np.sin(xx / (2 + i)) * np.cos(yy / 3)).astype(np.uint8)
        p = folder / f"img{i}.png"
        Image.fromarray(img).save(p)
        out.append(p)
    return out


def test_cli_writes_every_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from studio import study
    from studio.study import reading
    from studio.study.store import StudySettings, open_store

    store = open_store(StudySettings(data_dir=tmp_path / "data", admin_password="pw"))
    try:
        created = study.create_study(store, study.StudyDesign(name="cli", design="both", models=("clahe", "median"),
                                                              readers=2, repeat_cases=1, seed=4),
                                     _png_files(tmp_path, 3))
        rng = random.Random(1)
        for code in created.codes.values():
            while (view := reading.next_item(store, code)).status == "item":
                if view.kind == "likert":
                    reading.submit_rating(store, code, view.item_key, {c: rng.randint(1, 5) for c in CRITERIA})
                else:
                    reading.submit_preference(store, code, view.item_key, rng.choice(["left", "right"]), 3)
    finally:
        store.close()
    out = tmp_path / "out"
    rc = analysis.main(["--study", str(created.study_id), "--out", str(out), "--data-dir", str(tmp_path / "data"),
                        "--boot", "200"])
    assert rc == 0
    assert "Mean opinion score" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()} | {p.name for p in (out / "plots").iterdir()}
    assert {"answers.csv", "variants.csv", "mos.csv", "wilcoxon.csv", "afc_models.csv", "afc_pairs.csv",
            "agreement.csv", "analysis.md", "analysis.json", "mos.png", "afc.png"} <= names
    with open(out / "answers.csv") as f:
        rows = list(csv.DictReader(f))
    per_reader = created.items_per_reader
    assert len(rows) == 2 * per_reader == 2 * (3 * 3 + 3 * 3 + 6)  # Likert 9 + pairs 9 + repeat case (3 + 3)
    assert list(rows[0]) == analysis.ANSWER_COLUMNS
    with open(out / "variants.csv") as f:
        variants = list(csv.DictReader(f))
    assert {v["model"] for v in variants} == {"original", "clahe", "median"}
    assert all(v["weights_sha256"] == "" for v in variants)  # classical methods: no weights
    assert analysis.main(["--study", "999", "--out", str(out), "--data-dir", str(tmp_path / "data")]) == 2
    assert analysis.main(["--study", "1", "--data-dir", str(tmp_path / "nowhere")]) == 2
