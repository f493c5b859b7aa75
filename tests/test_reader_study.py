"""Reader studies end to end: creation, blinding, idempotent answers, security, crash safety, concurrency.

* service level (fast): de-identified storage, reader lists, idempotency, washout, import confinement, secrets;
* through the running app with ``gradio_client``: a scripted study (3 readers x 10 cases x 3 models,
  Likert + 2AFC) whose export and analysis are checked against values computed here from the
  raw SQLite file and scipy; every endpoint called with wrong, missing or foreign codes;
* ``python app.py`` killed with SIGKILL mid-session and restarted: nothing acknowledged is lost
  and the reader resumes at the next unanswered case;
* 20 readers answering at once (bounded): nothing lost, nothing duplicated; p95 latency reported.

Images: small generated PNGs and pydicom's test DICOMs; classical models only.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

import csv  # noqa: E402
import datetime as dt  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import stat  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import stats as sps  # noqa: E402

import studio  # noqa: E402
from db import CRITERIA  # noqa: E402
from bench import loadtest  # noqa: E402
from studio import stats, study  # noqa: E402
from studio.study import auth, reading  # noqa: E402
from studio.config import Settings  # noqa: E402
from studio.study.store import StudySettings, open_store  # noqa: E402

ADMIN = "admin-test-password"
MODELS = ("bicubic_x2", "clahe", "median")
ALL_MODELS = ("original", *MODELS)
SCORES = {c: 3 for c in CRITERIA}


from conftest import testdata as _testdata  # noqa: E402


CT = _testdata("CT_small.dcm")
MR = _testdata("MR_small.dcm")


def png_cases(folder: Path, n: int, size: int = 32) -> list[Path]:
    """``n`` distinct small grayscale PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = []
    for i in range(n):
        img = 0.5 + 0.35 * np.sin(xx / (1.5 + i * 0.4)) * np.cos(yy / (2.0 + i % 3)) + 0.01 * i
        p = folder / f"case_{i}.png"
        Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8)).save(p)
        out.append(p)
    return out


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(StudySettings(data_dir=tmp_path / "data", admin_password=ADMIN))
    yield s
    s.close()


def _make(store, tmp_path: Path, n_cases: int = 3, **design) -> study.CreatedStudy:
    d = {"name": "t", "design": "both", "models": ("clahe", "median"), "readers": 2, "seed": 1, **design}
    return study.create_study(store, study.StudyDesign(**d), png_cases(tmp_path / "img", n_cases))


def _answer_all(store, code: str, now: dt.datetime | None = None, rng: random.Random | None = None) -> int:
    rng = rng or random.Random(0)
    n = 0
    while (v := reading.next_item(store, code, now=now)).status == "item":
        if v.kind == "likert":
            reading.submit_rating(store, code, v.item_key, {c: rng.randint(1, 5) for c in CRITERIA}, now=now)
        else:
            reading.submit_preference(store, code, v.item_key, rng.choice(["left", "right"]), 4, now=now)
        n += 1
    return n


def _raw(store) -> sqlite3.Connection:
    """The SQLite file opened without our code: an independent view of what is stored."""
    return sqlite3.connect(store.data_dir / "studies.db")


# --- creating studies -----------------------------------------------------------------------------------

@pytest.mark.skipif(CT is None or MR is None, reason="pydicom test files not available")
def test_sources_are_deidentified_and_variants_blinded(store, tmp_path: Path) -> None:
    png = png_cases(tmp_path, 1)[0]
    created = study.create_study(store, study.StudyDesign(name="deid", design="likert", models=MODELS, readers=1),
                                 [CT, MR, png, CT])  # CT twice: kept once
    assert created.cases == 3 and created.variants == 3 * 4
    assert any("same file" in s for s in created.skipped)
    con = _raw(store)
    for stored_name, up_sha, st_sha, info in con.execute("SELECT stored_name, upload_sha256, stored_sha256, info FROM cases"):
        assert re.fullmatch(r"[0-9a-f]{32}\.png", stored_name)
        data = (store.sources_dir / stored_name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and b"DICM" not in data
        assert b"CompressedSamples" not in data and b"Patient" not in data  # CT_small's patient name
        assert not re.search(r"(?i)patient|name|birth|\bid\b", info)
        assert len(up_sha) == len(st_sha) == 64
    assert len(list(store.sources_dir.iterdir())) == 3  # the duplicate's copy was removed
    rows = con.execute("SELECT case_id, model, file_name, weights_sha256, model_options, output_width FROM variants").fetchall()
    by_case: dict[int, list] = {}
    for r in rows:
        by_case.setdefault(r[0], []).append(r)
    for case_rows in by_case.values():
        assert sorted(r[1] for r in case_rows) == sorted(ALL_MODELS)  # the original is always there
        sizes = {Image.open(store.variants_dir / r[2]).size for r in case_rows}
        assert len(sizes) == 1  # one display size per case: size never tells variants apart
        widths = {r[1]: r[5] for r in case_rows}
        assert widths["bicubic_x2"] == 2 * widths["original"]  # provenance keeps the model's own output size
        for _, model, name, weights, options, _ in case_rows:
            assert re.fullmatch(r"[0-9a-f]{32}\.png", name) and model not in name
            assert weights is None  # classical models and the original carry no weights
        assert json.loads(next(r[4] for r in case_rows if r[1] == "median")) == {"size": 3}
    con.close()


def test_design_is_checked(store, tmp_path: Path) -> None:
    files = png_cases(tmp_path, 1)
    for bad, match in [({"models": ()}, "at least one model"), ({"models": ("nope",)}, "unknown model"),
                       ({"design": "survey"}, "Design"), ({"readers": 0}, "readers"), ({"name": " "}, "name"),
                       ({"pair_mode": "x"}, "Pair mode"), ({"washout_days": -1}, "Washout"),
                       ({"readers": 2.5}, "whole number")]:
        d = {"name": "x", "models": ("clahe",), **bad}
        with pytest.raises(study.StudyError, match=match):
            study.create_study(store, study.StudyDesign(**d), files)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(study.StudyError, match="None of the images"):
        study.create_study(store, study.StudyDesign(name="x", models=("clahe",)), [junk])
    assert not any(store.sources_dir.iterdir()) and not any(store.variants_dir.iterdir())  # nothing half-made


def test_plan_assignments_is_seeded_complete_and_balanced() -> None:
    cases = [(c, [(c * 10 + v, m) for v, m in enumerate(ALL_MODELS)]) for c in range(1, 7)]
    plan = study.plan_assignments(5, cases, "both", "all", repeat_cases=2)
    assert plan == study.plan_assignments(5, cases, "both", "all", repeat_cases=2)  # seeded
    assert plan != study.plan_assignments(6, cases, "both", "all", repeat_cases=2)
    likert = [p for p in plan if p.block == "likert"]
    pairs = [p for p in plan if p.block == "pairs"]
    repeat = [p for p in plan if p.block == "repeat"]
    assert sorted(p.variant_id for p in likert) == sorted(v for _, vs in cases for v, _ in vs)
    assert len(pairs) == 6 * 6 and len({frozenset((p.left_variant_id, p.right_variant_id)) for p in pairs}) == 36
    assert 0 < sum(p.left_variant_id < p.right_variant_id for p in pairs) < 36  # sides drawn per item
    assert plan.index(likert[-1]) < plan.index(pairs[0]) < plan.index(repeat[0])  # blocks in order
    assert len({p.case_id for p in repeat}) == 2 and len(repeat) == 2 * (4 + 6)
    assert all(p.replicate == 1 for p in repeat) and all(p.replicate == 0 for p in likert + pairs)
    assert all(a.case_id != b.case_id for a, b in zip(likert, likert[1:]))  # no two variants of a case in a row
    ref = study.plan_assignments(5, cases, "2afc", "reference")
    assert len(ref) == 6 * 3 and all(10 * p.case_id in (p.left_variant_id, p.right_variant_id) for p in ref)
    assert study.reader_seed(1, 1) != study.reader_seed(1, 2) and study.reader_seed(1, 1) == study.reader_seed(1, 1)


# --- reading ---------------------------------------------------------------------------------------------

def test_answers_are_idempotent_and_reading_resumes(store, tmp_path: Path) -> None:
    created = _make(store, tmp_path)
    code = created.codes["R01"]
    first = reading.next_item(store, code)
    assert first.status == "item" and first.number == 1 and first.total == created.items_per_reader
    assert reading.next_item(store, code).item_key == first.item_key  # shown again until answered
    saved = reading.submit_rating(store, code, first.item_key, {**SCORES, "overall": 5}, "fine")
    assert not saved["duplicate"] and saved["overall"] == 5 and saved["seconds"] >= 0
    again = reading.submit_rating(store, code, first.item_key, {**SCORES, "overall": 1}, "changed my mind")
    assert again["duplicate"] and again["overall"] == 5 and again["comment"] == "fine"  # the first answer wins
    assert _raw(store).execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 1
    second = reading.next_item(store, code)
    assert second.number == 2 and second.item_key != first.item_key
    # "Leave and come back": a new session (same code) resumes at the next unanswered item.
    store2 = open_store(store.settings)
    try:
        assert reading.next_item(store2, auth.normalize_code(code).lower()).item_key == second.item_key
    finally:
        store2.close()
    assert _answer_all(store, code) == created.items_per_reader - 1
    done = reading.next_item(store, code)
    assert done.status == "done" and done.answered == done.total == created.items_per_reader
    progress = study.study_progress(store, created.study_id)
    assert [r["status"] for r in progress["readers"]] == ["finished", "not started"]
    assert progress["ratings"] + progress["preferences"] == created.items_per_reader


def test_readers_are_isolated_and_blinded(store, tmp_path: Path) -> None:
    created = _make(store, tmp_path)
    a, b = created.codes["R01"], created.codes["R02"]
    item_a = reading.next_item(store, a)
    with pytest.raises(study.StudyError, match="Unknown item"):  # B cannot answer (or probe) A's item
        reading.submit_rating(store, b, item_a.item_key, SCORES)
    for bad in ("", None, "XXXX-XXXX-XXXX", "x" * 10_000, 42, a + "A"):
        with pytest.raises(reading.AccessError):
            reading.next_item(store, bad)
        with pytest.raises(reading.AccessError):
            reading.submit_rating(store, bad, item_a.item_key, SCORES)
    reading.submit_rating(store, a, item_a.item_key, SCORES)
    text = json.dumps(reading.next_item(store, a).public())
    for secret in (*ALL_MODELS, "variant", "case", "C00", "R02", "study"):
        assert secret not in text
    view = reading.next_item(store, b)
    assert view.answered == 0  # A's answer is nowhere in B's view


def test_bad_answers_store_nothing(store, tmp_path: Path) -> None:
    created = _make(store, tmp_path, design="likert")
    code = created.codes["R01"]
    key = reading.next_item(store, code).item_key
    bad_scores = [{**SCORES, "overall": 0}, {**SCORES, "noise": 6}, {**SCORES, "contrast": 2.5},
                  {**SCORES, "sharpness": "x"}, {**SCORES, "artefacts": None}, {**SCORES, "confidence": True},
                  {k: v for k, v in SCORES.items() if k != "overall"}, "3,3,3"]
    for scores in bad_scores:
        with pytest.raises(study.StudyError):
            reading.submit_rating(store, code, key, scores)
    with pytest.raises(study.StudyError, match="limited"):
        reading.submit_rating(store, code, key, SCORES, "x" * 5000)
    with pytest.raises(study.StudyError, match="reader_rate"):
        reading.submit_preference(store, code, key, "left", 3)
    for junk_key in ("", None, "0" * 32, "'; DROP TABLE ratings; --", ["list"]):
        with pytest.raises(study.StudyError):
            reading.submit_rating(store, code, junk_key, SCORES)
    assert _raw(store).execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 0
    saved = reading.submit_rating(store, code, key, {**SCORES, "overall": "4", "noise": 2.0}, "ok\x00\x07")
    assert saved["overall"] == 4 and saved["noise"] == 2 and saved["comment"] == "ok"


def test_washout_gates_the_repeat_block_and_closing_stops_answers(store, tmp_path: Path) -> None:
    created = _make(store, tmp_path, n_cases=2, readers=1, repeat_cases=1, washout_days=7)
    code = created.codes["R01"]
    t0 = dt.datetime(2030, 1, 1, 9, 0, tzinfo=dt.timezone.utc)
    first_pass = 2 * 3 + 2 * 3
    n = 0
    while (v := reading.next_item(store, code, now=t0)).status == "item":
        assert v.number <= first_pass
        reading.submit_rating(store, code, v.item_key, SCORES, now=t0) if v.kind == "likert" else \
            reading.submit_preference(store, code, v.item_key, "right", 2, now=t0)
        n += 1
    assert n == first_pass and v.status == "waiting" and v.available_at.startswith("2030-01-08T09:00")
    later = t0 + dt.timedelta(days=8)
    repeat = reading.next_item(store, code, now=later)
    assert repeat.status == "item" and repeat.number == first_pass + 1
    with pytest.raises(study.StudyError, match="washout"):  # not before its time, even by API
        reading.submit_rating(store, code, repeat.item_key, SCORES, now=t0 + dt.timedelta(days=1)) \
            if repeat.kind == "likert" else reading.submit_preference(store, code, repeat.item_key, "left", 3,
                                                                      now=t0 + dt.timedelta(days=1))
    study.close_study(store, created.study_id)
    assert reading.next_item(store, code, now=later).status == "closed"
    with pytest.raises(study.StudyError, match="closed"):
        reading.submit_rating(store, code, repeat.item_key, SCORES, now=later) if repeat.kind == "likert" else \
            reading.submit_preference(store, code, repeat.item_key, "left", 3, now=later)
    assert study.close_study(store, created.study_id)["status"] == "closed"  # idempotent
    assert _raw(store).execute("SELECT COUNT(*) FROM ratings").fetchone()[0] + \
        _raw(store).execute("SELECT COUNT(*) FROM preferences").fetchone()[0] == first_pass  # all kept
    with pytest.raises(study.StudyError, match="closed"):
        study.add_readers(store, created.study_id, 1)


def test_folder_import_is_confined_to_the_import_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    png_cases(root / "series1", 2)
    (root / "series1" / ".hidden.png").write_bytes((root / "series1" / "case_0.png").read_bytes())
    outside = png_cases(tmp_path / "outside", 1)[0]
    (root / "series1" / "link_out.png").symlink_to(outside)
    (root / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    got = study.folder_files(root, "series1")
    assert [p.name for p in got] == ["case_0.png", "case_1.png"]  # hidden and outside-pointing links skipped
    assert study.folder_files(root, str(root / "series1")) == got  # absolute inside the root is fine
    for bad in ("../outside", str(tmp_path / "outside"), "series1/../../outside", "escape", "/etc", "a\x00b"):
        with pytest.raises(study.StudyError, match="outside|cannot be used"):
            study.folder_files(root, bad)
    with pytest.raises(study.StudyError, match="No such folder"):
        study.folder_files(root, "missing")
    with pytest.raises(study.StudyError, match="disabled"):
        study.folder_files(None, "series1")


def test_admin_password_generated_once_and_stored_hashed(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    first = auth.AdminAuth(tmp_path)
    printed = capfd.readouterr().err
    password = re.search(r"shown once, not stored\): (\S+)", printed).group(1)
    assert first.check(password) and not first.check(password + "x") and not first.check(None)
    record = (tmp_path / auth.ADMIN_FILE).read_text()
    assert password not in record and "scrypt" in record
    assert stat.S_IMODE((tmp_path / auth.ADMIN_FILE).stat().st_mode) == 0o600
    again = auth.AdminAuth(tmp_path)  # a restart: same password, never printed again
    assert again.check(password) and capfd.readouterr().err == ""
    env = auth.AdminAuth(tmp_path, env_password="from-env")
    assert env.check("from-env") and not env.check(password)


def test_access_codes() -> None:
    codes = {auth.new_access_code() for _ in range(200)}
    assert len(codes) == 200 and all(re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", c) for c in codes)
    c = next(iter(codes))
    assert auth.hash_code(c) == auth.hash_code(c.lower().replace("-", " ")) != auth.hash_code(c[:-1])
    assert auth.normalize_code(None) == auth.normalize_code(12) == ""


def test_hugging_face_readers_sign_in_without_a_code_and_no_username_is_stored(store, tmp_path: Path) -> None:
    a = _make(store, tmp_path / "a", n_cases=2, readers=1)
    b = _make(store, tmp_path / "b", n_cases=2, readers=0 + 1, name="second")
    added = study.add_hf_readers(store, a.study_id, "Dr-Alice, bob.smith\n@carol_x  dr-alice")
    assert added == {"R02": "Dr-Alice", "R03": "bob.smith", "R04": "carol_x"}  # de-duplicated, '@' dropped
    assert study.add_hf_readers(store, a.study_id, ["dr-alice"]) == {}  # case-insensitive, already a reader
    # The derived code is an ordinary code: same form, checked by every endpoint like a typed one.
    code = reading.hf_code(store, "DR-ALICE")
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", code)
    view = reading.next_item(store, code)
    assert view.status == "item" and view.total > 0
    reading.submit_rating(store, code, view.item_key, SCORES)
    assert reading.next_item(store, code).answered == 1
    # Per study: alice's code for study b is another one, and she is not a reader there.
    key = auth.hf_signin_key(store.data_dir)
    assert auth.hf_access_code(key, a.study_id, "x") != auth.hf_access_code(key, b.study_id, "x")
    with pytest.raises(study.StudyError, match="not a reader of an open study"):
        reading.hf_code(store, "mallory")
    with pytest.raises(study.StudyError, match="Sign in with Hugging Face first"):
        reading.hf_code(store, None)
    for bad in ("", "   ", "-starts-with-dash", "a/b", "x" * 200):
        with pytest.raises(study.StudyError):
            study.add_hf_readers(store, a.study_id, bad)
    # The secret: created once, private; another secret derives other codes.
    assert stat.S_IMODE((store.data_dir / auth.HF_KEY_FILE).stat().st_mode) == 0o600
    assert auth.hf_access_code(b"another-secret-key", a.study_id, "dr-alice") != code
    # Nothing in the database names the Hugging Face accounts.
    store.db.dispose()
    raw = (store.data_dir / "studies.db").read_bytes() + b"".join(
        p.read_bytes() for p in store.data_dir.glob("studies.db-*"))
    assert not any(name.encode() in raw.lower() for name in ("dr-alice", "bob.smith", "carol_x"))
    # A closed study no longer signs anyone in.
    study.close_study(store, a.study_id)
    with pytest.raises(study.StudyError, match="not a reader of an open study"):
        reading.hf_code(store, "bob.smith")


def test_reader_tab_offers_hugging_face_sign_in_on_a_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STUDIO_ADMIN_PASSWORD", ADMIN)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    import gradio as gr

    def login_buttons(demo) -> int:
        return sum(isinstance(b, gr.LoginButton) for b in demo.blocks.values())

    assert login_buttons(studio.build_app()) == 0  # local run: codes only
    # What a Space with `hf_oauth: true` provides (Gradio reads the OAuth settings when it is imported).
    import gradio.oauth

    oauth = {"OAUTH_CLIENT_ID": "client-id", "OAUTH_CLIENT_SECRET": "secret", "OAUTH_SCOPES": "openid profile",
             "OPENID_PROVIDER_URL": "https://huggingface.co"}
    for k, v in {"SYSTEM": "spaces", "SPACE_ID": "medenhance/studio", **oauth}.items():
        monkeypatch.setenv(k, v)
    for k, v in oauth.items():
        monkeypatch.setattr(gradio.oauth, k, v)
    demo = studio.build_app()
    assert login_buttons(demo) == 1
    store = open_store(StudySettings(data_dir=tmp_path, admin_password=ADMIN))
    try:
        created = _make(store, tmp_path / "img", n_cases=2, readers=1)
        study.add_hf_readers(store, created.study_id, "dr-alice")
    finally:
        store.close()
    # The sign-in handler as Gradio calls it, with the profile a Space's OAuth session provides.
    fn = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "reader_hf")
    code, left, right, item = fn(SimpleNamespace(username="dr-alice"))
    assert item["status"] == "item" and left and right is None
    store = open_store(StudySettings(data_dir=tmp_path, admin_password=ADMIN))
    try:
        assert code == reading.hf_code(store, "dr-alice")
    finally:
        store.close()
    with pytest.raises(gr.Error, match="Sign in with Hugging Face first"):
        fn(None)


def test_uploads_are_removed_after_import_but_server_files_never(tmp_path: Path) -> None:
    from gradio.utils import get_upload_folder

    from studio.ui.admin_tab import remove_uploads

    cache = Path(get_upload_folder())
    cache.mkdir(parents=True, exist_ok=True)
    upload_dir = Path(tempfile.mkdtemp(dir=cache))
    upload = upload_dir / "patient.dcm"
    upload.write_bytes(b"DICM")
    server_file = tmp_path / "import-root" / "keep.dcm"
    server_file.parent.mkdir()
    server_file.write_bytes(b"DICM")
    assert remove_uploads([str(upload), str(server_file), str(upload_dir / "gone.dcm")]) == 1
    assert not upload.exists() and server_file.exists()
    upload_dir.rmdir()


def test_app_refuses_to_start_on_a_schema_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import db

    store = open_store(StudySettings(data_dir=tmp_path, admin_password=ADMIN))
    with store.db.write() as s:
        s.get(db.SchemaMeta, "schema_version").value = "999"
    store.close()
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STUDIO_ADMIN_PASSWORD", ADMIN)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(db.SchemaVersionError, match="schema version 999.*Refusing to start"):
        studio.build_app()


# --- through the running app ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The studio served on localhost like app.py does, with its own data directory."""
    data = tmp_path_factory.mktemp("studio-data")
    keys = ("STUDIO_DATA_DIR", "STUDIO_ADMIN_PASSWORD", "STUDIO_IMPORT_ROOT", "DATABASE_URL")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({"STUDIO_DATA_DIR": str(data), "STUDIO_ADMIN_PASSWORD": ADMIN})
    os.environ.pop("STUDIO_IMPORT_ROOT", None)
    os.environ.pop("DATABASE_URL", None)
    demo = own = None
    try:
        demo = studio.build_app()
        settings = Settings()
        demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)  # as app.py
        demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=loadtest.free_port(), quiet=True)
        own = open_store(StudySettings.from_env())  # the tests' own view of the same data directory
        yield SimpleNamespace(url=demo.local_url, store=own, data=data)
    finally:
        if demo is not None:
            demo.close()
        if own is not None:
            own.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
def test_twenty_concurrent_readers_lose_nothing(server, tmp_path: Path, record_property) -> None:
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
def test_sigkill_mid_session_loses_nothing_and_resumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = open_store(StudySettings(data_dir=data, admin_password=ADMIN))
    try:
        created = study.create_study(store, study.StudyDesign(name="crash", design="both", models=("clahe",),
                                                              readers=1), png_cases(tmp_path, 4))
    finally:
        store.close()
    code = created.codes["R01"]
    port = loadtest.free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {"STUDIO_ADMIN_PASSWORD": ADMIN, "STUDIO_IMPORT_ROOT": ""}
    acked: dict[str, dict] = {}

    def answer_for(item: dict) -> tuple[tuple, str, dict]:
        if item["kind"] == "likert":
            ans = {c: 1 + (len(acked) + i) % 5 for i, c in enumerate(CRITERIA)}
            return (code, item["item_key"], *ans.values(), "before the crash"), "/reader_rate", ans
        ans = {"choice": "left" if len(acked) % 2 else "right", "confidence": 4}
        return (code, item["item_key"], ans["choice"], ans["confidence"], ""), "/reader_choose", ans

    with open(tmp_path / "server1.log", "wb") as log:
        proc = loadtest.start_server(data, port, env, log)
        try:
            loadtest.wait_ready(url, proc)
            client = loadtest.HttpClient(url)
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
        con = sqlite3.connect(data / "studies.db")
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
        proc = loadtest.start_server(data, port, env, log)
        try:
            loadtest.wait_ready(url, proc)
            client = loadtest.HttpClient(url)
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
    con = sqlite3.connect(data / "studies.db")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()

