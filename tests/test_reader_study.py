"""Reader studies at the service level: creation, blinding, idempotent answers, washout, secrets.

De-identified storage, each reader's list, idempotency, washout, import confinement, access codes,
the admin password and Hugging Face sign-in, called as plain functions. The same through the running
app (scripted study, SIGKILL, concurrency) is in ``test_reader_study_app.py``.

Images: small generated PNGs and pydicom's test DICOMs; classical models only.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

import datetime as dt  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import stat  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

import studio  # noqa: E402
from db import CRITERIA  # noqa: E402
from studio import study  # noqa: E402
from studio.study import auth, reading  # noqa: E402
from studio.study.store import StudySettings, open_store  # noqa: E402


from conftest import testdata as _testdata  # noqa: E402
from study_helpers import ADMIN, ALL_MODELS, MODELS, SCORES, _raw, png_cases  # noqa: E402


CT = _testdata("CT_small.dcm")
MR = _testdata("MR_small.dcm")


@pytest.fixture
def store(tmp_path: Path, database_url: str):
    """A fresh data directory whose database is SQLite or PostgreSQL (``database_url`` of tests/pg.py)."""
    s = open_store(StudySettings(data_dir=tmp_path / "data", database_url=database_url, admin_password=ADMIN))
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
    if store.db.is_sqlite:  # the file itself, WAL included: free pages and old row versions count too
        db_file = Path(make_url(store.db.url).database)
        raw = db_file.read_bytes() + b"".join(p.read_bytes() for p in db_file.parent.glob("studies.db-*"))
    else:  # a server has no file to read: every row of every table
        con = _raw(store)
        raw = con.dump()
        con.close()
        assert b"R01" in raw  # the dump does hold the readers' rows
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


