"""Reader studies through the running app: a scripted study, hostile calls, SIGKILL, concurrent readers.

* with ``gradio_client``: a scripted study (3 readers x 10 cases x 3 models, Likert + 2AFC) whose
  export and analysis are checked against values computed here from the raw SQLite file and scipy;
  every endpoint called with wrong, missing or foreign codes;
* ``python app.py`` killed with SIGKILL mid-session and restarted: nothing acknowledged is lost
  and the reader resumes at the next unanswered case;
* 20 readers answering at once (bounded): nothing lost, nothing duplicated; p95 latency reported.

The SIGKILL and the 20-reader tests run on SQLite and PostgreSQL (``database_url`` of tests/pg.py).
The scripted study and the hostile calls test the HTTP layer, which does not depend on the engine,
and stay on SQLite (they read the file directly; the service-level tests cover both engines).

Images: small generated PNGs; classical models only.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Iterator  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from scipy import stats as sps  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from study_helpers import ADMIN, ALL_MODELS, MODELS, SCORES, RawDB, _raw, png_cases  # noqa: E402

import studio  # noqa: E402
from bench import loadtest  # noqa: E402
from bench import reader_client  # noqa: E402
from bench import servers  # noqa: E402
from db import CRITERIA  # noqa: E402
from studio import stats, study  # noqa: E402
from studio.config import Settings  # noqa: E402
from studio.study.store import StudySettings, open_store  # noqa: E402


@contextmanager
def _served(data: Path) -> Iterator[SimpleNamespace]:
    """The studio served in this process like app.py does (queue settings and all), on the environment's
    data directory and database; with the tests' own store on the same data."""
    demo = own = None
    try:
        demo = studio.build_app()
        settings = Settings()
        demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)  # as app.py
        demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=servers.free_port(), quiet=True)
        own = open_store(StudySettings.from_env())  # the tests' own view of the same data directory
        yield SimpleNamespace(url=demo.local_url, store=own, data=data)
    finally:
        if demo is not None:
            demo.close()
        if own is not None:
            own.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The studio served on localhost like app.py does, with its own data directory."""
    data = tmp_path_factory.mktemp("studio-data")
    keys = ("STUDIO_DATA_DIR", "STUDIO_ADMIN_PASSWORD", "STUDIO_IMPORT_ROOT", "DATABASE_URL")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({"STUDIO_DATA_DIR": str(data), "STUDIO_ADMIN_PASSWORD": ADMIN})
    os.environ.pop("STUDIO_IMPORT_ROOT", None)
    os.environ.pop("DATABASE_URL", None)
    try:
        with _served(data) as served:
            yield served
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def engine_server(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch):
    """The studio served in this process on a fresh database of each engine (``database_url``)."""
    data = tmp_path / "studio-data"
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    monkeypatch.setenv("STUDIO_ADMIN_PASSWORD", ADMIN)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("STUDIO_IMPORT_ROOT", raising=False)
    with _served(data) as served:
        yield served


def _client(server, **kw):
    from gradio_client import Client

    return Client(server.url, verbose=False, analytics_enabled=False, **{"download_files": False, **kw})


def _wilcoxon_r_rule(x: list[int], y: list[int]) -> float:
    """R's wilcox.test(paired=TRUE) p-value, via scipy: exact without ties/zeros (n < 50), else corrected normal."""
    d = np.subtract(x, y)
    nz = np.abs(d[d != 0])
    if nz.size == 0:
        return 1.0
    if nz.size < 50 and np.unique(nz).size == nz.size:
        return float(sps.wilcoxon(x, y, method="exact").pvalue)
    return float(sps.wilcoxon(x, y, zero_method="wilcox", method="approx", correction=True).pvalue)


@pytest.mark.slow
def test_scripted_study_through_the_api(server, tmp_path: Path) -> None:
    """3 readers x 10 cases x 3 models (+ original), Likert + all 2AFC pairs + 1 repeated case, via gradio_client."""
    from gradio_client import handle_file

    t_start = time.perf_counter()
    admin = _client(server, download_files=str(tmp_path / "downloads"))
    files = [handle_file(str(p)) for p in png_cases(tmp_path / "cases", 10)]
    summary, codes = admin.predict(ADMIN, "scripted", "both", list(MODELS), files, "", 3, 1, 0, "all", 7, "default",
                                   api_name="/admin_create_study")
    study_id = int(re.search(r"Study (\d+) created", summary).group(1))
    assert sorted(codes) == ["R01", "R02", "R03"] and all(c in summary for c in codes.values())
    per_reader = 10 * 4 + 10 * 6 + (4 + 6)

    sent: dict[str, tuple[str, str, dict]] = {}  # item_key -> (reader, kind, answer)
    shown: list[str] = []  # everything a reader's client received, for the blinding check
    errors: list[BaseException] = []
    lock = threading.Lock()

    def read(label: str, code: str) -> None:
        try:
            client = _client(server)
            rng = random.Random(label)
            mine = 0
            left, right, item = client.predict(code, api_name="/reader_next")
            while item["status"] == "item":
                assert item["number"] == mine + 1 and item["total"] == per_reader and item["answered"] == mine
                assert left and (right is None) == (item["kind"] == "likert")
                key = item["item_key"]
                if item["kind"] == "likert":
                    answer = {c: rng.randint(1, 5) for c in CRITERIA}
                    args = (code, key, *(answer[c] for c in CRITERIA), f"note {mine}")
                    api = "/reader_rate"
                else:
                    answer = {"choice": rng.choice(["left", "right"]), "confidence": rng.randint(1, 5)}
                    args = (code, key, answer["choice"], answer["confidence"], "")
                    api = "/reader_choose"
                left, right, nxt = client.predict(*args, api_name=api)
                saved = nxt["saved"]
                assert saved["duplicate"] is False and saved["item_key"] == key
                assert all(saved[k] == v for k, v in answer.items())
                if mine % 25 == 0:  # a retry (double click, network error): same stored answer, no new row
                    _, _, retry = client.predict(*args, api_name=api)
                    assert retry["saved"]["duplicate"] is True and retry["item_key"] == nxt["item_key"]
                    assert {k: retry["saved"][k] for k in answer} == answer
                with lock:
                    sent[key] = (label, item["kind"], answer)
                    shown.append(json.dumps([left, right, nxt]))
                item = nxt
                mine += 1
            assert item["status"] == "done" and mine == per_reader
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=read, args=kv) for kv in codes.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    t_read = time.perf_counter() - t_start

    # Blinding: no client ever saw a model name, the data directory or the stored file names.
    blob = "\n".join(shown)
    for secret in (*ALL_MODELS, "bicubic", str(server.data), "variants/", "C001", "R02"):
        assert secret not in blob

    # Everything landed in SQLite, once.
    con = sqlite3.connect(server.data / "studies.db")
    q = "FROM {t} x JOIN readers r ON r.id = x.reader_id WHERE r.study_id = ?"
    n_ratings = con.execute(f"SELECT COUNT(*) {q.format(t='ratings')}", (study_id,)).fetchone()[0]
    n_prefs = con.execute(f"SELECT COUNT(*) {q.format(t='preferences')}", (study_id,)).fetchone()[0]
    assert n_ratings == 3 * (40 + 4) and n_prefs == 3 * (60 + 6) and len(sent) == n_ratings + n_prefs
    for t in ("ratings", "preferences"):
        assert con.execute(f"SELECT assignment_id FROM {t} GROUP BY assignment_id HAVING COUNT(*) > 1").fetchall() == []
    # The truth behind each item key, read straight from the file (independent of the code under test).
    truth = {}
    for key, reader, case, rep, model, lm, rm in con.execute(
            "SELECT a.item_key, r.label, c.label, a.replicate, v.model, lv.model, rv.model FROM assignments a "
            "JOIN readers r ON r.id = a.reader_id JOIN cases c ON c.id = a.case_id "
            "LEFT JOIN variants v ON v.id = a.variant_id LEFT JOIN variants lv ON lv.id = a.left_variant_id "
            "LEFT JOIN variants rv ON rv.id = a.right_variant_id WHERE r.study_id = ?", (study_id,)):
        truth[key] = {"reader": reader, "case": case, "replicate": rep, "model": model, "left": lm, "right": rm}
    con.close()

    progress_md, progress = admin.predict(ADMIN, study_id, api_name="/admin_progress")
    assert [r["status"] for r in progress["readers"]] == ["finished"] * 3 and "finished" in progress_md
    assert not any(c in json.dumps(progress) for c in codes.values())

    answers_csv, zip_path, report_md, plot_files = admin.predict(ADMIN, study_id, 0, api_name="/admin_export")
    with open(answers_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(sent)
    for row in rows:
        label, kind, answer = sent[row["item_key"]]
        t = truth[row["item_key"]]
        assert row["reader"] == label == t["reader"] and row["case"] == t["case"]
        assert int(row["replicate"]) == t["replicate"] and row["study_id"] == str(study_id)
        if kind == "likert":
            assert row["answer_type"] == "rating" and row["model"] == t["model"]
            assert {c: int(row[c]) for c in CRITERIA} == answer
        else:
            assert row["answer_type"] == "preference"
            assert (row["left_model"], row["right_model"]) == (t["left"], t["right"])
            assert row["choice"] == answer["choice"] and int(row["choice_confidence"]) == answer["confidence"]
            assert row["chosen_model"] == (t["left"] if answer["choice"] == "left" else t["right"])
    assert len(plot_files) == 4 and "Wilcoxon" in report_md

    # The analysis against values computed here from the answers sent and the raw database.
    with zipfile.ZipFile(zip_path) as z:
        def table(name: str) -> list[dict[str, str]]:
            return list(csv.DictReader(io.StringIO(z.read(f"study-{study_id}/{name}").decode())))
        mos, wil, afc, agree = table("mos.csv"), table("wilcoxon.csv"), table("afc_models.csv"), table("agreement.csv")
    first = {}
    for key, (label, kind, answer) in sent.items():
        t = truth[key]
        if kind == "likert" and t["replicate"] == 0:
            first[(label, t["case"], t["model"])] = answer
    for row in mos:
        vals = [a[row["criterion"]] for (r, c, m), a in first.items() if m == row["model"]]
        assert int(row["n"]) == 30 and float(row["mean"]) == pytest.approx(np.mean(vals))
        assert float(row["ci_low"]) <= np.mean(vals) <= float(row["ci_high"])
    pvals = []
    for row in wil:
        keys = sorted((r, c) for (r, c, m) in first if m == row["model"])
        x = [first[(r, c, row["model"])][row["criterion"]] for r, c in keys]
        y = [first[(r, c, "original")][row["criterion"]] for r, c in keys]
        p = _wilcoxon_r_rule(x, y)
        pvals.append(p)
        assert int(row["n"]) == 30 and float(row["p"]) == pytest.approx(p, rel=1e-9)
    order = np.argsort(pvals, kind="stable")  # Holm by hand
    holm, running = [0.0] * len(pvals), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvals) - rank) * pvals[i]))
        holm[i] = running
    assert [float(r["p_holm"]) for r in wil] == pytest.approx(holm)
    wins = {m: 0 for m in ALL_MODELS}
    comps = {m: 0 for m in ALL_MODELS}
    for key, (label, kind, answer) in sent.items():
        t = truth[key]
        if kind == "pair" and t["replicate"] == 0:
            wins[t["left"] if answer["choice"] == "left" else t["right"]] += 1
            comps[t["left"]] += 1
            comps[t["right"]] += 1
    for row in afc:
        m = row["model"]
        assert int(row["wins"]) == wins[m] and int(row["comparisons"]) == comps[m] == 3 * 10 * 3
        ci = sps.binomtest(wins[m], comps[m]).proportion_ci(method="wilson")
        assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx((ci.low, ci.high))
    units = sorted({(c, m) for (_, c, m) in first})
    readers = sorted(codes)
    overall = np.array([[first[(r, c, m)]["overall"] for (c, m) in units] for r in readers], dtype=float)
    counts = np.stack([(overall == v).sum(axis=0) for v in range(1, 6)], axis=1)  # Fleiss by hand
    p_j = counts.sum(axis=0) / counts.sum()
    p_i = ((counts ** 2).sum(axis=1) - 3) / (3 * 2)
    fleiss = (p_i.mean() - (p_j ** 2).sum()) / (1 - (p_j ** 2).sum())
    got = {(r["measure"], r["criterion"], r["reader"]): float(r["value"]) for r in agree if r["value"] != ""}
    assert got[("fleiss_kappa", "overall", "")] == pytest.approx(fleiss)
    assert got[("krippendorff_alpha_ordinal", "overall", "")] == pytest.approx(stats.krippendorff_alpha(overall))
    assert got[("icc_2_1", "overall", "")] == pytest.approx(stats.icc(overall.T)["ICC2"])
    for label in readers:
        reps = [(first[(label, truth[k]["case"], truth[k]["model"])]["overall"], a["overall"])
                for k, (lb, kind, a) in sent.items() if lb == label and kind == "likert" and truth[k]["replicate"] == 1]
        assert len(reps) == 4
        assert got[("exact_agreement", "overall", label)] == pytest.approx(np.mean([x == y for x, y in reps]))
    print(f"\nscripted study: {len(sent)} answers by 3 readers through gradio_client in {t_read:.1f} s; "
          f"total {time.perf_counter() - t_start:.1f} s")


def test_endpoints_enforce_identity_and_survive_bad_input(server, tmp_path: Path) -> None:
    from gradio_client.exceptions import AppError

    created = study.create_study(server.store, study.StudyDesign(name="sec", design="both", models=("clahe",),
                                                                 readers=2), png_cases(tmp_path, 2))
    a, b = created.codes["R01"], created.codes["R02"]
    client = _client(server)
    _, _, item_a = client.predict(a, api_name="/reader_next")
    # Another reader's code with A's item, no code, junk codes: refused, and A's item stays unanswered.
    for code in (b, "", "AAAA-BBBB-CCCC", "x" * 5000):
        with pytest.raises(AppError, match="Unknown"):
            client.predict(code, item_a["item_key"], *SCORES.values(), "", api_name="/reader_rate")
        with pytest.raises(AppError, match="Unknown"):
            client.predict(code, item_a["item_key"], "left", 3, "", api_name="/reader_choose")
    with pytest.raises(AppError, match="Unknown access code"):
        client.predict("", api_name="/reader_next")
    with pytest.raises(AppError, match="Unknown access code"):
        client.predict(None, api_name="/reader_next")
    # Bad answers from the right reader: clear errors, nothing stored, the server keeps serving.
    for scores in ([0, 3, 3, 3, 3, 3], [3, 3, 3, 3, 3, 9], ["abc", 3, 3, 3, 3, 3], [None] * 6):
        with pytest.raises(AppError, match="(?i)score|not in the list of choices"):
            client.predict(a, item_a["item_key"], *scores, "", api_name="/reader_rate")
    with pytest.raises(AppError, match="limited"):
        client.predict(a, item_a["item_key"], *SCORES.values(), "y" * 3000, api_name="/reader_rate")
    with pytest.raises(AppError, match="reader_rate"):
        client.predict(a, item_a["item_key"], "left", 3, "", api_name="/reader_choose")
    with pytest.raises(AppError, match="Unknown item"):
        client.predict(a, "not-a-key", *SCORES.values(), "", api_name="/reader_rate")
    con = _raw(server.store)
    assert con.execute("SELECT answered_at FROM assignments WHERE item_key = ?", (item_a["item_key"],)).fetchone()[0] is None
    _, _, nxt = client.predict(a, item_a["item_key"], *SCORES.values(), "", api_name="/reader_rate")
    assert nxt["saved"]["duplicate"] is False and nxt["number"] == 2
    _, _, item_b = client.predict(b, api_name="/reader_next")
    assert item_b["answered"] == 0 and "saved" not in item_b  # B sees nothing of A
    # Admin endpoints need the admin password; reader codes do not open them.
    for pw in ("", "wrong", a, None):
        with pytest.raises(AppError, match="Wrong admin password"):
            client.predict(pw, created.study_id, api_name="/admin_progress")
        with pytest.raises(AppError, match="Wrong admin password"):
            client.predict(pw, created.study_id, 0, api_name="/admin_export")
    with pytest.raises(AppError, match="No study"):
        client.predict(ADMIN, 99999, api_name="/admin_progress")
    with pytest.raises(AppError):  # Gradio's number input refuses it before our handler runs
        client.predict(ADMIN, "1; DROP TABLE studies", api_name="/admin_close_study")
    with pytest.raises(AppError, match="disabled"):  # no STUDIO_IMPORT_ROOT on this server
        client.predict(ADMIN, "x", "both", ["clahe"], [], "/etc", 1, 0, 0, "all", 0, "default",
                       api_name="/admin_create_study")
    # Gradio's file route does not serve the data directory (database, password hash, stored images).
    import httpx

    variant = next(server.store.variants_dir.iterdir())
    for path in (server.data / "studies.db", server.data / "admin.json", variant):
        r = httpx.get(f"{server.url}gradio_api/file={path}")
        assert r.status_code in (403, 404), path
    assert con.execute("SELECT COUNT(*) FROM ratings r JOIN readers d ON d.id = r.reader_id WHERE d.study_id = ?",
                       (created.study_id,)).fetchone()[0] == 1
    con.close()


@pytest.mark.slow
def test_twenty_concurrent_readers_lose_nothing(engine_server, tmp_path: Path, record_property) -> None:
    server = engine_server
    created = loadtest.make_study(server.store, readers=20, cases=4)
    report = loadtest.run_load(server.url, server.store, list(created.codes.values()), seconds=60, max_answers=6,
                               double=0.25, seed=3)
    print("\n" + report.summary())
    record_property("p95_submit_ms", round(report.percentile(95) * 1000))
    assert not report.errors, report.errors[:3]
    assert report.answers_acknowledged == 20 * 6 == report.db_answers
    assert report.lost == report.mismatched == report.db_duplicate_items == 0
    assert report.doubles_sent > 0 and report.doubles_flagged == report.doubles_sent
    assert report.ok


@pytest.mark.slow
def test_sigkill_mid_session_loses_nothing_and_resumes(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    store = open_store(StudySettings(data_dir=data, database_url=database_url, admin_password=ADMIN))
    try:
        created = study.create_study(store, study.StudyDesign(name="crash", design="both", models=("clahe",),
                                                              readers=1), png_cases(tmp_path, 4))
    finally:
        store.close()
    code = created.codes["R01"]
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {"STUDIO_ADMIN_PASSWORD": ADMIN, "STUDIO_IMPORT_ROOT": "", "DATABASE_URL": database_url}
    acked: dict[str, dict] = {}

    def answer_for(item: dict) -> tuple[tuple, str, dict]:
        if item["kind"] == "likert":
            ans = {c: 1 + (len(acked) + i) % 5 for i, c in enumerate(CRITERIA)}
            return (code, item["item_key"], *ans.values(), "before the crash"), "/reader_rate", ans
        ans = {"choice": "left" if len(acked) % 2 else "right", "confidence": 4}
        return (code, item["item_key"], ans["choice"], ans["confidence"], ""), "/reader_choose", ans

    with open(tmp_path / "server1.log", "wb") as log:
        proc = servers.start_server(data, port, env, log)
        try:
            servers.wait_ready(url, proc)
            client = reader_client.HttpClient(url)
            _, _, item = client.predict(code, api_name="/reader_next")
            for _ in range(5):
                args, api, ans = answer_for(item)
                _, _, nxt = client.predict(*args, api_name=api)
                assert nxt["saved"]["duplicate"] is False
                acked[item["item_key"]] = ans
                item = nxt
            in_flight = item
            args, api, in_flight_answer = answer_for(item)
            pending = client.submit(*args, api_name=api)  # the reader clicks ... and the server dies
            time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            try:
                pending.result(timeout=30)
            except Exception:  # noqa: BLE001 - the connection died with the server: expected
                pass
            client.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == -signal.SIGKILL

    def stored() -> dict[str, dict]:
        con = RawDB(database_url)  # plain SQL, not the code under test, on either engine
        out = {}
        for key, *scores in con.execute(f"SELECT a.item_key, {', '.join('r.' + c for c in CRITERIA)} FROM ratings r "
                                        "JOIN assignments a ON a.id = r.assignment_id"):
            out[key] = dict(zip(CRITERIA, scores))
        for key, choice, conf in con.execute("SELECT a.item_key, p.choice, p.confidence FROM preferences p "
                                             "JOIN assignments a ON a.id = p.assignment_id"):
            out[key] = {"choice": choice, "confidence": conf}
        con.close()
        return out

    after_crash = stored()
    for key, acked_answer in acked.items():  # every acknowledged answer survived, with its values
        assert after_crash[key] == acked_answer
    assert set(after_crash) - set(acked) <= {in_flight["item_key"]}  # the in-flight one: stored whole or not at all

    with open(tmp_path / "server2.log", "wb") as log:
        proc = servers.start_server(data, port, env, log)
        try:
            servers.wait_ready(url, proc)
            client = reader_client.HttpClient(url)
            _, _, resumed = client.predict(code, api_name="/reader_next")
            assert resumed["answered"] == len(after_crash) and resumed["number"] == len(after_crash) + 1
            if in_flight["item_key"] not in after_crash:
                assert resumed["item_key"] == in_flight["item_key"]  # exactly where the reader stopped
            # The reader's retry of the in-flight answer: stored once, whether or not it had landed.
            _, _, nxt = client.predict(*args, api_name=api)
            assert nxt["saved"]["duplicate"] is (in_flight["item_key"] in after_crash)
            assert nxt["number"] == len(acked) + 2
            client.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except Exception:  # noqa: BLE001
                proc.kill()
    final = stored()
    assert len(final) == len(acked) + 1 and final[in_flight["item_key"]] == in_flight_answer
    if database_url.startswith("sqlite"):  # the file survived the kill intact (PostgreSQL has its own WAL recovery)
        con = sqlite3.connect(make_url(database_url).database)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.close()
