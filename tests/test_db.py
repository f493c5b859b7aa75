"""Storage tests: schema, SQLite settings, version check, constraints, concurrent writers.

Pure SQLAlchemy: no models, no gradio. Database tests run on SQLite (a file in pytest's tmp_path)
and PostgreSQL (a fresh database per test, see tests/pg.py): ids ``[sqlite]`` / ``[postgresql]``.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

import db
from db import Assignment, Case, Preference, Rating, Reader, SchemaMeta, Study, Variant, open_database


@pytest.fixture
def database(tmp_path: Path, database_url: str):  # database_url: the fixture of tests.pg (registered in conftest.py)
    d = open_database(tmp_path, database_url)
    yield d
    d.dispose()


@pytest.fixture
def sqlite_database(tmp_path: Path):
    """SQLite in the data directory, the app's default."""
    d = open_database(tmp_path)
    yield d
    d.dispose()


def _sql(url: str, statement: str):
    """Run one SQL statement outside the app's engines (as another client would); returns the first value."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement))
            return result.scalar() if result.returns_rows else None
    finally:
        engine.dispose()


def _study(s, **kw) -> Study:
    st = Study(name="pilot", design="both", seed=1, models=["clahe"], options={"pair_mode": "all"}, **kw)
    s.add(st)
    s.flush()
    return st


def _case_with_variants(s, study: Study, n_variants: int = 2) -> tuple[Case, list[Variant]]:
    case = Case(study_id=study.id, label=f"C{study.id:03d}", stored_name=f"{study.id:032x}.png",
                upload_sha256="a" * 64, stored_sha256="b" * 64, width=8, height=8, info={"modality": "CT"})
    s.add(case)
    s.flush()
    variants = [Variant(case_id=case.id, model=m, file_name=f"{case.id:016x}{i:016x}.png", file_sha256="c" * 64,
                        output_width=8, output_height=8) for i, m in enumerate(["original", "clahe", "median"][:n_variants])]
    s.add_all(variants)
    s.flush()
    return case, variants


def _reader_with_item(s, study: Study, variant: Variant, key: str = "k1") -> tuple[Reader, Assignment]:
    reader = Reader(study_id=study.id, label="R01", code_hash=key * (64 // len(key)), seed=3)
    s.add(reader)
    s.flush()
    item = Assignment(reader_id=reader.id, case_id=variant.case_id, position=0, block="likert", kind="likert",
                      variant_id=variant.id, item_key=key)
    s.add(item)
    s.flush()
    return reader, item


SCORES = dict(overall=4, noise=3, sharpness=5, contrast=4, artefacts=5, confidence=4)


# --- opening -------------------------------------------------------------------------------------

def test_sqlite_file_in_data_dir_with_wal_and_foreign_keys(tmp_path: Path, sqlite_database: db.Database) -> None:
    database = sqlite_database
    assert database.is_sqlite
    assert (tmp_path / db.DB_FILE_NAME).exists()
    with database.read() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert s.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert s.scalar(select(SchemaMeta.value).where(SchemaMeta.key == "schema_version")) == str(db.SCHEMA_VERSION)
    assert database.schema_version() == db.SCHEMA_VERSION


def test_database_url_choice(tmp_path: Path) -> None:
    assert db.database_url(tmp_path) == f"sqlite:///{(tmp_path / 'studies.db').resolve()}"
    assert db.database_url(tmp_path, "postgres://u:p@h/x") == "postgresql://u:p@h/x"  # the form hosts hand out
    assert db.database_url(tmp_path, "postgresql+psycopg://u:p@h/x") == "postgresql+psycopg://u:p@h/x"


def test_reopening_keeps_data_and_version(tmp_path: Path, database_url: str) -> None:
    d1 = open_database(tmp_path, database_url)
    with d1.write() as s:
        _study(s)
    d1.dispose()
    d2 = open_database(tmp_path, database_url)
    with d2.read() as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 1
    d2.dispose()


def test_schema_version_mismatch_refuses_to_start(tmp_path: Path, database_url: str) -> None:
    d1 = open_database(tmp_path, database_url)
    with d1.write() as s:
        s.get(SchemaMeta, "schema_version").value = str(db.SCHEMA_VERSION + 1)
    d1.dispose()
    with pytest.raises(db.SchemaVersionError, match=r"schema version 2.*needs version 1.*Refusing to start"):
        open_database(tmp_path, database_url)
    # Nothing was changed by the refused start.
    assert _sql(database_url, "SELECT value FROM schema_meta WHERE key='schema_version'") == "2"


def test_foreign_database_is_refused(tmp_path: Path, database_url: str) -> None:
    _sql(database_url, "CREATE TABLE something_else (x INTEGER)")
    with pytest.raises(db.SchemaVersionError, match="not a MedEnhance study database"):
        open_database(tmp_path, database_url)
    assert _sql(database_url, "SELECT count(*) FROM something_else") == 0  # and left alone


def test_foreign_sqlite_file_in_data_dir_is_refused(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / db.DB_FILE_NAME)
    con.execute("CREATE TABLE something_else (x INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(db.SchemaVersionError, match="not a MedEnhance study database"):
        open_database(tmp_path)


# --- constraints ---------------------------------------------------------------------------------

def test_one_answer_per_item_and_per_reader_variant_replicate(database: db.Database) -> None:
    with database.write() as s:
        st = _study(s)
        _, variants = _case_with_variants(s, st)
        reader, item = _reader_with_item(s, st, variants[0])
        s.add(Rating(assignment_id=item.id, reader_id=reader.id, variant_id=variants[0].id, **SCORES))
        ids = (item.id, reader.id, variants[0].id)
    with pytest.raises(IntegrityError):
        with database.write() as s:  # the same item answered twice
            s.add(Rating(assignment_id=ids[0], reader_id=ids[1], variant_id=ids[2], **SCORES))
    with database.read() as s:
        assert s.scalar(select(func.count()).select_from(Rating)) == 1  # the failed write left nothing behind


@pytest.mark.parametrize("field,value", [("overall", 0), ("noise", 6), ("confidence", -1)])
def test_likert_scores_must_be_1_to_5(database: db.Database, field: str, value: int) -> None:
    with database.write() as s:
        st = _study(s)
        _, variants = _case_with_variants(s, st)
        reader, item = _reader_with_item(s, st, variants[0])
        ids = (item.id, reader.id, variants[0].id)
    with pytest.raises(IntegrityError):
        with database.write() as s:
            s.add(Rating(assignment_id=ids[0], reader_id=ids[1], variant_id=ids[2], **{**SCORES, field: value}))


def test_preference_choice_and_pair_checks(database: db.Database) -> None:
    with database.write() as s:
        st = _study(s)
        case, (a, b) = _case_with_variants(s, st)
        reader = Reader(study_id=st.id, label="R01", code_hash="f" * 64, seed=1)
        s.add(reader)
        s.flush()
        ok = Assignment(reader_id=reader.id, case_id=case.id, position=0, block="pairs", kind="pair",
                        left_variant_id=b.id, right_variant_id=a.id, item_key="p1")
        s.add(ok)
        s.flush()
        ids = (reader.id, case.id, a.id, b.id, ok.id)
    with pytest.raises(IntegrityError):  # a pair of one variant with itself
        with database.write() as s:
            s.add(Assignment(reader_id=ids[0], case_id=ids[1], position=1, block="pairs", kind="pair",
                             left_variant_id=ids[2], right_variant_id=ids[2], item_key="p2"))
    with pytest.raises(IntegrityError):  # choice must be left/right
        with database.write() as s:
            s.add(Preference(assignment_id=ids[4], reader_id=ids[0], case_id=ids[1], left_variant_id=ids[3],
                             right_variant_id=ids[2], chosen_variant_id=ids[3], choice="middle", confidence=3))
    with pytest.raises(IntegrityError):  # foreign keys are enforced
        with database.write() as s:
            s.add(Preference(assignment_id=9999, reader_id=ids[0], case_id=ids[1], left_variant_id=ids[3],
                             right_variant_id=ids[2], chosen_variant_id=ids[3], choice="left", confidence=3))


def test_timestamps_are_utc_aware(database: db.Database) -> None:
    when = dt.datetime(2024, 5, 1, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with database.write() as s:
        sid = _study(s, created_at=when).id
    with database.read() as s:
        got = s.get(Study, sid).created_at
    assert got.tzinfo is not None and got == when and got.utcoffset() == dt.timedelta(0)
    with pytest.raises(Exception, match="naive"):
        with database.write() as s:
            _study(s, created_at=dt.datetime(2024, 1, 1))


def test_concurrent_writers_all_commit(tmp_path: Path, database: db.Database) -> None:
    """Writers from many threads all commit: on SQLite they queue for the lock (BEGIN IMMEDIATE + busy
    timeout), on PostgreSQL they run side by side (inserts of distinct rows never conflict)."""
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                with database.write() as s:
                    n = s.scalar(select(func.count()).select_from(Study))  # read, then write in one transaction
                    s.add(Study(name=f"t{t}-{i}-{n}", design="likert", seed=t, models=["clahe"]))
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    with database.read() as s:
        assert s.scalar(select(func.count()).select_from(Study)) == 200
