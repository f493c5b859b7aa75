"""The analysis of a reader study, in the app and on the command line.

    python -m studio.stats.analysis --study 1 [--out DIR] [--data-dir DIR] [--seed 0] [--boot 2000]

Writes to ``DIR`` (default ``./study-<id>-analysis``):

* ``answers.csv``: every answer, one row each, long format with all design fields;
* ``variants.csv``: provenance of every rendered image (model, weights SHA-256, options);
* ``mos.csv``: mean opinion score per model and criterion, 95 % case-bootstrap CI;
* ``wilcoxon.csv``: each model vs the original, per criterion: Wilcoxon signed-rank, Holm-adjusted;
* ``afc_models.csv``, ``afc_pairs.csv``: 2AFC win rates (Wilson CI), exact binomial tests, Bradley-Terry;
* ``agreement.csv``: inter-reader (Krippendorff's alpha ordinal, Fleiss' kappa, ICC(2,1)) and
  intra-reader (repeat readings: quadratic-weighted kappa, exact agreement);
* ``analysis.md``, ``analysis.json`` and ``plots/*.png``.

Conventions: only first readings (replicate 0) enter MOS, tests and inter-reader
agreement; repeats are used for intra-reader agreement only. Likert scores are
1 (worst) ... 5 (best) on every criterion.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import aliased

from db import (
    CRITERIA,
    ORIGINAL,
    Assignment,
    Case,
    Database,
    Preference,
    Rating,
    Reader,
    SchemaVersionError,
    Study,
    Variant,
    open_database,
)
from studio import stats
from models.csvsafe import safe_cell
from studio.stats import plots

# Column order of answers.csv (one row per answer; empty where a field does not apply).
ANSWER_COLUMNS = [
    "study_id", "study_name", "design", "answer_type", "answer_id", "reader", "case", "block", "position",
    "replicate", "item_key", "model", "variant_id", *CRITERIA, "left_model", "right_model", "left_variant_id",
    "right_variant_id", "choice", "chosen_model", "choice_confidence", "comment", "seconds", "answered_at",
]
VARIANT_COLUMNS = ["case", "variant_id", "model", "weights_sha256", "options", "file_sha256",
                   "output_width", "output_height", "render_seconds"]


@dataclass
class StudyData:
    """Everything the analysis reads, as plain rows (dicts keyed like :data:`ANSWER_COLUMNS`)."""

    study: dict[str, Any]
    models: list[str]  # "original" first, then the study's models
    ratings: list[dict[str, Any]]
    preferences: list[dict[str, Any]]
    variants: list[dict[str, Any]]
    readers: list[str]


def load_study(database: Database, study_id: int) -> StudyData:
    """Read a study's answers and variants; ValueError if the study does not exist."""
    with database.read() as s:
        study = s.get(Study, int(study_id))
        if study is None:
            raise ValueError(f"No study with id {study_id}.")
        info = {"study_id": study.id, "study_name": study.name, "design": study.design}
        readers = list(s.scalars(select(Reader.label).where(Reader.study_id == study.id).order_by(Reader.id)))
        ratings = []
        rows = s.execute(
            select(Rating, Assignment, Reader.label, Case.label, Variant)
            .join(Assignment, Assignment.id == Rating.assignment_id).join(Reader, Reader.id == Rating.reader_id)
            .join(Variant, Variant.id == Rating.variant_id).join(Case, Case.id == Variant.case_id)
            .where(Reader.study_id == study.id).order_by(Reader.id, Assignment.position)).all()
        for r, a, reader, case, v in rows:
            ratings.append({**info, "answer_type": "rating", "answer_id": r.id, "reader": reader, "case": case,
                            "block": a.block, "position": a.position + 1, "replicate": r.replicate,
                            "item_key": a.item_key, "model": v.model, "variant_id": v.id,
                            **{c: getattr(r, c) for c in CRITERIA}, "comment": r.comment, "seconds": r.seconds,
                            "answered_at": r.created_at.isoformat()})
        left, right, chosen = aliased(Variant), aliased(Variant), aliased(Variant)
        prefs = []
        rows = s.execute(
            select(Preference, Assignment, Reader.label, Case.label, left.model, right.model, chosen.model)
            .join(Assignment, Assignment.id == Preference.assignment_id)
            .join(Reader, Reader.id == Preference.reader_id).join(Case, Case.id == Preference.case_id)
            .join(left, left.id == Preference.left_variant_id).join(right, right.id == Preference.right_variant_id)
            .join(chosen, chosen.id == Preference.chosen_variant_id)
            .where(Reader.study_id == study.id).order_by(Reader.id, Assignment.position)).all()
        for p, a, reader, case, lm, rm, cm in rows:
            prefs.append({**info, "answer_type": "preference", "answer_id": p.id, "reader": reader, "case": case,
                          "block": a.block, "position": a.position + 1, "replicate": p.replicate,
                          "item_key": a.item_key, "left_model": lm, "right_model": rm,
                          "left_variant_id": p.left_variant_id, "right_variant_id": p.right_variant_id,
                          "choice": p.choice, "chosen_model": cm, "choice_confidence": p.confidence,
                          "comment": p.comment, "seconds": p.seconds, "answered_at": p.created_at.isoformat()})
        variants = []
        for v, case in s.execute(select(Variant, Case.label).join(Case).where(Case.study_id == study.id)
                                 .order_by(Case.id, Variant.id)).all():
            variants.append({"case": case, "variant_id": v.id, "model": v.model, "weights_sha256": v.weights_sha256 or "",
                             "options": json.dumps(v.model_options or {}, sort_keys=True), "file_sha256": v.file_sha256,
                             "output_width": v.output_width, "output_height": v.output_height,
                             "render_seconds": round(v.render_seconds, 4)})
        return StudyData(info, [ORIGINAL, *study.models], ratings, prefs, variants, readers)


# --- export -----------------------------------------------------------------------------------------

def answer_rows(data: StudyData) -> list[dict[str, Any]]:
    """One row per answer (ratings and preferences), by reader and position, every column present."""
    rows = sorted(data.ratings + data.preferences, key=lambda r: (data.readers.index(r["reader"]), r["position"]))
    return [{c: r.get(c, "") for c in ANSWER_COLUMNS} for r in rows]


def write_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str], path: str | Path | None = None) -> str:
    """Rows as CSV text (also written to ``path`` if given); None and NaN become empty cells.

    Text that a spreadsheet would run as a formula (a reader's comment ``=HYPERLINK(...)``) is
    neutralised by :func:`models.csvsafe.safe_cell`; numbers are written as numbers.
    """
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writerow({c: safe_cell(c) for c in columns})  # the header too: column names may come from data
    for r in rows:
        w.writerow({c: _cell(r.get(c)) for c in columns})
    text = buf.getvalue()
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return safe_cell(v)


# --- the statistics ---------------------------------------------------------------------------------

def _first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["replicate"] == 0]


def mos_table(data: StudyData, seed: int = 0, n_boot: int = 2000) -> list[dict[str, Any]]:
    """Mean opinion score per model and criterion with a 95 % bootstrap CI resampling cases."""
    out = []
    first = _first(data.ratings)
    for model in data.models:
        rows = [r for r in first if r["model"] == model]
        for c in CRITERIA:
            vals = [r[c] for r in rows]
            mean, lo, hi = stats.bootstrap_mean_ci(vals, [r["case"] for r in rows], n_boot=n_boot, seed=seed)
            out.append({"model": model, "criterion": c, "n": len(vals), "mean": mean, "ci_low": lo, "ci_high": hi,
                        "median": float(np.median(vals)) if vals else math.nan,
                        "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan})
    return out


def wilcoxon_table(data: StudyData) -> list[dict[str, Any]]:
    """Each model vs the original per criterion: Wilcoxon signed-rank on (reader, case) pairs, Holm over all."""
    by_key = {(r["reader"], r["case"], r["model"]): r for r in _first(data.ratings)}
    out = []
    for model in data.models[1:]:
        keys = sorted(k[:2] for k in by_key if k[2] == model and (k[0], k[1], ORIGINAL) in by_key)
        for c in CRITERIA:
            x = [by_key[(rd, cs, model)][c] for rd, cs in keys]
            y = [by_key[(rd, cs, ORIGINAL)][c] for rd, cs in keys]
            res = stats.wilcoxon_paired(x, y) if keys else {"n": 0, "n_nonzero": 0, "mean_diff": math.nan,
                                                             "median_diff": math.nan, "statistic": math.nan, "p": math.nan}
            out.append({"model": model, "reference": ORIGINAL, "criterion": c, **res})
    for row, adj in zip(out, stats.holm([r["p"] for r in out])):
        row["p_holm"] = adj
        row["significant"] = bool(adj < 0.05) if not math.isnan(adj) else False
    return out


def afc_tables(data: StudyData) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """2AFC: (per-model rows with win rate and Bradley-Terry score, per-pair rows, notes)."""
    models = data.models
    idx = {m: i for i, m in enumerate(models)}
    wins = np.zeros((len(models), len(models)))
    for p in _first(data.preferences):
        winner = p["chosen_model"]
        loser = p["right_model"] if winner == p["left_model"] else p["left_model"]
        wins[idx[winner], idx[loser]] += 1
    n = wins + wins.T
    per_model, pairs = [], []
    if n.sum() == 0:
        return per_model, pairs, {"comparisons": 0}
    compared = n.sum(axis=1) > 0
    w_tot, n_tot = wins.sum(axis=1), n.sum(axis=1)
    sub = np.flatnonzero(compared)
    # The MLE is infinite when some group of models won every comparison with the rest (the win
    # graph is not strongly connected): the fit then adds 0.5 pseudo-wins per compared pair.
    fit = stats.bradley_terry_fit(wins[np.ix_(sub, sub)])
    bt = np.full(len(models), math.nan)
    bt[sub] = fit.log_strengths
    ref = bt[idx[ORIGINAL]] if compared[idx[ORIGINAL]] else 0.0
    scores = bt - ref
    order = sorted(sub, key=lambda i: -scores[i]) if fit.estimable else []
    rank = {i: r + 1 for r, i in enumerate(order)}
    for m in models:
        i = idx[m]
        k, tot = int(w_tot[i]), int(n_tot[i])
        lo, hi = stats.wilson_ci(k, tot)
        per_model.append({"model": m, "wins": k, "comparisons": tot, "win_rate": k / tot if tot else math.nan,
                          "ci_low": lo, "ci_high": hi, "bt_log_strength": float(scores[i]),
                          "bt_rank": rank.get(i, "")})
    for a in range(len(models)):
        for b in range(a + 1, len(models)):
            tot = int(n[a, b])
            if tot == 0:
                continue
            k = int(wins[a, b])
            lo, hi = stats.wilson_ci(k, tot)
            pairs.append({"model_a": models[a], "model_b": models[b], "a_wins": k, "n": tot, "a_win_rate": k / tot,
                          "ci_low": lo, "ci_high": hi, "p_binomial": stats.binomial_p(k, tot)})
    for row, adj in zip(pairs, stats.holm([r["p_binomial"] for r in pairs])):
        row["p_holm"] = adj
    return per_model, pairs, {"comparisons": int(n.sum() / 2), "bt_prior": fit.prior, "bt_reference": ORIGINAL,
                              "bt_converged": fit.converged, "bt_iterations": fit.iterations,
                              "bt_estimable": fit.estimable, "bt_strongly_connected": fit.strongly_connected}


def agreement_table(data: StudyData) -> list[dict[str, Any]]:
    """Inter-reader agreement on first readings and intra-reader agreement on repeats."""
    out: list[dict[str, Any]] = []
    first = _first(data.ratings)
    readers = [r for r in data.readers if any(x["reader"] == r for x in first)]
    units = sorted({(r["case"], r["model"]) for r in first})
    if len(readers) >= 2 and units:
        ri, ui = {r: i for i, r in enumerate(readers)}, {u: i for i, u in enumerate(units)}
        for c in CRITERIA:
            m = np.full((len(readers), len(units)), np.nan)
            for r in first:
                m[ri[r["reader"]], ui[(r["case"], r["model"])]] = r[c]
            out.append({"scope": "inter-reader", "measure": "krippendorff_alpha_ordinal", "criterion": c,
                        "value": stats.krippendorff_alpha(m, "ordinal"), "n_units": len(units),
                        "n_readers": len(readers), "ci_low": math.nan, "ci_high": math.nan})
            if c == "overall":
                complete = m[:, ~np.isnan(m).any(axis=0)]
                if complete.shape[1] >= 2:
                    counts = np.stack([(complete == v).sum(axis=0) for v in range(1, 6)], axis=1)
                    out.append({"scope": "inter-reader", "measure": "fleiss_kappa", "criterion": c,
                                "value": stats.fleiss_kappa(counts), "n_units": complete.shape[1],
                                "n_readers": len(readers), "ci_low": math.nan, "ci_high": math.nan})
                    ic = stats.icc(complete.T)
                    out.append({"scope": "inter-reader", "measure": "icc_2_1", "criterion": c, "value": ic["ICC2"],
                                "n_units": complete.shape[1], "n_readers": len(readers),
                                "ci_low": ic["ICC2_low"], "ci_high": ic["ICC2_high"]})
    # Intra-reader: each reader's repeat scores against their own first scores of the same variants.
    firsts = {(r["reader"], r["case"], r["model"]): r for r in first}
    pairs_by_reader: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in data.ratings:
        if r["replicate"] > 0 and (r["reader"], r["case"], r["model"]) in firsts:
            pairs_by_reader[r["reader"]].append((firsts[(r["reader"], r["case"], r["model"])]["overall"], r["overall"]))
    for reader in [*sorted(pairs_by_reader), "all"]:
        pairs = (pairs_by_reader[reader] if reader != "all"
                 else [p for rd in sorted(pairs_by_reader) for p in pairs_by_reader[rd]])
        if not pairs:
            continue
        x, y = zip(*pairs)
        out.append({"scope": "intra-reader", "measure": "weighted_kappa_quadratic", "criterion": "overall",
                    "reader": reader, "value": stats.weighted_kappa(x, y), "n_units": len(pairs), "n_readers": 1,
                    "ci_low": math.nan, "ci_high": math.nan})
        out.append({"scope": "intra-reader", "measure": "exact_agreement", "criterion": "overall", "reader": reader,
                    "value": float(np.mean(np.equal(x, y))), "n_units": len(pairs), "n_readers": 1,
                    "ci_low": math.nan, "ci_high": math.nan})
    # 2AFC repeats: same variant chosen again?
    first_pref = {(p["reader"], p["case"], frozenset((p["left_model"], p["right_model"]))): p["chosen_model"]
                  for p in _first(data.preferences)}
    same: dict[str, list[bool]] = defaultdict(list)
    for p in data.preferences:
        key = (p["reader"], p["case"], frozenset((p["left_model"], p["right_model"])))
        if p["replicate"] > 0 and key in first_pref:
            same[p["reader"]].append(first_pref[key] == p["chosen_model"])
    if same:
        allv = [v for rd in sorted(same) for v in same[rd]]
        lo, hi = stats.wilson_ci(sum(allv), len(allv))
        out.append({"scope": "intra-reader", "measure": "2afc_same_choice", "criterion": "preference", "reader": "all",
                    "value": float(np.mean(allv)), "n_units": len(allv), "n_readers": len(same),
                    "ci_low": lo, "ci_high": hi})
    return out


def analyze(data: StudyData, seed: int = 0, n_boot: int = 2000) -> dict[str, Any]:
    """Every table of the analysis (lists of row dicts), deterministic for a given seed."""
    afc_models, afc_pairs, afc_notes = afc_tables(data)
    return {
        "study": data.study, "models": data.models, "readers": data.readers,
        "counts": {"ratings": len(data.ratings), "preferences": len(data.preferences),
                   "first_ratings": len(_first(data.ratings)), "repeat_ratings": len(data.ratings) - len(_first(data.ratings))},
        "seed": seed, "n_boot": n_boot,
        "mos": mos_table(data, seed, n_boot), "wilcoxon": wilcoxon_table(data),
        "afc_models": afc_models, "afc_pairs": afc_pairs, "afc_notes": afc_notes,
        "agreement": agreement_table(data),
    }


# --- presenting ---------------------------------------------------------------------------------------

def _f(x: Any, digits: int = 3) -> str:
    if x is None or x == "":
        return "-"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "-"
    if v != 0 and abs(v) < 10 ** -digits:
        return f"{v:.1e}"
    return f"{v:.{digits}f}"


def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(h for _, h in cols) + " |\n|" + "---|" * len(cols)
    return head + "\n" + "\n".join("| " + " | ".join(_f(r.get(k)) for k, _ in cols) + " |" for r in rows)


def bt_warnings(notes: dict[str, Any]) -> list[str]:
    """Warnings the report must show about the Bradley-Terry fit (empty when it is sound)."""
    out = []
    if notes.get("bt_estimable") is False:
        out.append("⚠️ **Bradley-Terry strengths not estimable**: some models were never compared, directly or "
                   "through others, with the rest, so nothing puts them on one scale. Win rates are still valid.")
    elif notes.get("bt_converged") is False:
        out.append(f"⚠️ **The Bradley-Terry fit did not converge** in {notes.get('bt_iterations')} iterations: "
                   "treat the log-strengths and ranks as unreliable.")
    return out


def markdown(result: dict[str, Any]) -> str:
    """The analysis as markdown: what a methods/results section needs, with the conventions stated."""
    st, counts = result["study"], result["counts"]
    parts = [f"## Study {st['study_id']}: {st['study_name']} ({st['design']})",
             f"{len(result['readers'])} readers; {counts['ratings']} ratings ({counts['repeat_ratings']} repeats), "
             f"{counts['preferences']} preferences. Models: {', '.join(result['models'])}. "
             f"Scores 1 (worst) to 5 (best); first readings only unless stated."]
    if counts["ratings"] + counts["preferences"] == 0:
        parts.append("No answers yet.")
    overall = [r for r in result["mos"] if r["criterion"] == "overall"]
    if any(r["n"] for r in result["mos"]):
        parts.append("### Mean opinion score (overall quality)\n\n95 % CI: percentile bootstrap over cases "
                     f"({result['n_boot']} resamples, seed {result['seed']}).\n\n"
                     + _table(overall, [("model", "model"), ("n", "n"), ("mean", "MOS"), ("ci_low", "CI low"),
                                        ("ci_high", "CI high"), ("median", "median"), ("sd", "SD")]))
        parts.append("### Mean opinion score, every criterion\n\n"
                     + _table(result["mos"], [("model", "model"), ("criterion", "criterion"), ("n", "n"),
                                               ("mean", "MOS"), ("ci_low", "CI low"), ("ci_high", "CI high")]))
    if any(r["n"] for r in result["wilcoxon"]):
        parts.append("### Each model vs the original (Wilcoxon signed-rank)\n\nPaired by reader and case, zero "
                     "differences dropped, two-sided; p adjusted with Holm over all models and criteria.\n\n"
                     + _table(result["wilcoxon"], [("model", "model"), ("criterion", "criterion"), ("n", "pairs"),
                                                   ("n_nonzero", "non-zero"), ("mean_diff", "mean Δ"),
                                                   ("statistic", "W"), ("p", "p"), ("p_holm", "p (Holm)"),
                                                   ("significant", "< 0.05")]))
    if result["afc_models"]:
        notes = result["afc_notes"]
        prior = (f"; strengths shrunk with {notes['bt_prior']} pseudo-wins per compared pair and direction (the "
                 "win graph is not strongly connected: some models won every comparison with the others, so "
                 "the maximum-likelihood strengths are infinite)") if notes.get("bt_prior") else ""
        parts.append("### Pairwise preference (2AFC)\n\nWin rate with 95 % Wilson interval; Bradley-Terry "
                     f"log-strength relative to the original (0){prior}.\n\n"
                     + "".join(f"{w}\n\n" for w in bt_warnings(notes))
                     + _table(result["afc_models"], [("model", "model"), ("wins", "wins"), ("comparisons", "comparisons"),
                                                     ("win_rate", "win rate"), ("ci_low", "CI low"), ("ci_high", "CI high"),
                                                     ("bt_log_strength", "BT log-strength"), ("bt_rank", "rank")]))
        parts.append("Per pair (exact binomial test against 50 %, Holm-adjusted):\n\n"
                     + _table(result["afc_pairs"], [("model_a", "A"), ("model_b", "B"), ("a_wins", "A wins"), ("n", "n"),
                                                    ("a_win_rate", "A rate"), ("ci_low", "CI low"), ("ci_high", "CI high"),
                                                    ("p_binomial", "p"), ("p_holm", "p (Holm)")]))
    if result["agreement"]:
        parts.append("### Agreement\n\nInter-reader: Krippendorff's alpha (ordinal) per criterion; Fleiss' kappa and "
                     "ICC(2,1) (two-way random, absolute agreement, single reader; 95 % CI McGraw & Wong) on the overall "
                     "score of images every reader rated. Intra-reader: repeat vs first reading.\n\n"
                     + _table(result["agreement"], [("scope", "scope"), ("measure", "measure"), ("criterion", "criterion"),
                                                    ("reader", "reader"), ("value", "value"), ("ci_low", "CI low"),
                                                    ("ci_high", "CI high"), ("n_units", "units"), ("n_readers", "readers")]))
    return "\n\n".join(parts)


def make_plots(result: dict[str, Any]) -> dict[str, Any]:
    """{file stem: PIL image} of the analysis plots (only those with data)."""
    out = {}
    models = result["models"]
    mos = {(r["model"], r["criterion"]): r for r in result["mos"]}
    if any(r["n"] for r in result["mos"]):
        out["mos"] = plots.bar_chart(
            list(CRITERIA), {m: [mos[(m, c)]["mean"] for c in CRITERIA] for m in models},
            {m: [(mos[(m, c)]["ci_low"], mos[(m, c)]["ci_high"]) for c in CRITERIA] for m in models},
            title="Mean opinion score (95% bootstrap CI)", y_label="score", y_range=(1.0, 5.0))
    if result.get("_overall_distribution") and any(r["n"] for r in result["mos"]):
        dist = result["_overall_distribution"]
        out["distribution"] = plots.stacked_chart(models, [dist[m] for m in models],
                                                  title="Overall quality scores per model")
    if result["afc_models"]:
        rows = [r for r in result["afc_models"] if r["comparisons"]]
        out["afc"] = plots.bar_chart([r["model"] for r in rows], {"win rate": [r["win_rate"] for r in rows]},
                                     {"win rate": [(r["ci_low"], r["ci_high"]) for r in rows]},
                                     title="2AFC win rate (95% Wilson CI)", y_label="win rate", reference=0.5)
    alpha = [r for r in result["agreement"] if r["measure"] == "krippendorff_alpha_ordinal"]
    if alpha:
        vals = [r["value"] for r in alpha]
        lo = min([0.0] + [v for v in vals if math.isfinite(v)])
        out["agreement"] = plots.bar_chart([r["criterion"] for r in alpha], {"alpha": vals},
                                           title="Inter-reader agreement (Krippendorff's alpha, ordinal)",
                                           y_label="alpha", y_range=(math.floor(lo * 4) / 4, 1.0))
    return out


def overall_distribution(data: StudyData) -> dict[str, list[float]]:
    """Share of each overall score 1..5 per model (first readings)."""
    out = {}
    for m in data.models:
        vals = [r["overall"] for r in _first(data.ratings) if r["model"] == m]
        out[m] = [vals.count(v) / len(vals) if vals else 0.0 for v in range(1, 6)]
    return out


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items() if not str(k).startswith("_")}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_outputs(database: Database, study_id: int, out_dir: str | Path, seed: int = 0,
                  n_boot: int = 2000) -> dict[str, Any]:
    """Load, analyse and write every output file (see the module docstring) into ``out_dir``.

    Returns:
        {"result": the analysis dict, "markdown": text, "files": [paths written], "plots": [png paths]}.
    """
    data = load_study(database, study_id)
    result = analyze(data, seed, n_boot)
    result["_overall_distribution"] = overall_distribution(data)
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    files = []

    def csv_out(name: str, rows: list[dict[str, Any]], cols: Sequence[str] | None = None) -> None:
        cols = list(cols or (list(rows[0]) if rows else []))
        if rows or cols:
            write_csv(rows, cols, out / name)
            files.append(out / name)

    csv_out("answers.csv", answer_rows(data), ANSWER_COLUMNS)
    csv_out("variants.csv", data.variants, VARIANT_COLUMNS)
    csv_out("mos.csv", result["mos"])
    csv_out("wilcoxon.csv", result["wilcoxon"])
    csv_out("afc_models.csv", result["afc_models"])
    csv_out("afc_pairs.csv", result["afc_pairs"])
    agreement_cols = ["scope", "measure", "criterion", "reader", "value", "ci_low", "ci_high", "n_units", "n_readers"]
    csv_out("agreement.csv", result["agreement"], agreement_cols)
    md = markdown(result)
    (out / "analysis.md").write_text(md + "\n", encoding="utf-8")
    (out / "analysis.json").write_text(json.dumps(_json_safe(result), indent=1), encoding="utf-8")
    files += [out / "analysis.md", out / "analysis.json"]
    pngs = []
    for stem, image in make_plots(result).items():
        p = out / "plots" / f"{stem}.png"
        image.save(p)
        pngs.append(p)
    return {"result": result, "markdown": md, "files": files + pngs, "plots": pngs}


# --- command line -------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m studio.stats.analysis --study ID [--out DIR]``: write the analysis files; 0 on success."""
    from studio.study.store import StudySettings

    ap = argparse.ArgumentParser(prog="python -m studio.stats.analysis", description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", type=int, required=True, help="study id (see the admin tab)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default ./study-<id>-analysis)")
    ap.add_argument("--data-dir", type=Path, default=None, help="data directory (default: STUDIO_DATA_DIR, ./studio-data)")
    ap.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: DATABASE_URL, else SQLite in the data dir)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    args = ap.parse_args(argv)
    settings = StudySettings.from_env()
    data_dir = args.data_dir or settings.data_dir
    url = args.database_url or settings.database_url
    if url is None and not (Path(data_dir) / "studies.db").exists():
        print(f"error: no study database in {data_dir} (set --data-dir or STUDIO_DATA_DIR)", file=sys.stderr)
        return 2
    try:
        database = open_database(data_dir, url)
    except SchemaVersionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        out = args.out or Path(f"study-{args.study}-analysis")
        try:
            res = write_outputs(database, args.study, out, seed=args.seed, n_boot=max(100, args.boot))
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    finally:
        database.dispose()
    print(res["markdown"])
    print(f"\nWrote {len(res['files'])} files to {out}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
