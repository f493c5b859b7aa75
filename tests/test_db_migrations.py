"""Schema versioning (db.migrate, db/migrations, python -m db) on SQLite and PostgreSQL.

Every test gets fresh, empty databases from tests/pg.py; a second revision for the upgrade
path is written into a copy of db/migrations, never into the real one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

import db
from db import Assignment, Base, Case, Reader, SchemaMeta, Study, Variant, migrate, open_database
from db.__main__ import main as db_main
from tests import pg
from tests.pg import ENGINES

REPO = Path(__file__).resolve().parents[1]


def _engine(url: str):
    return create_engine(url, poolclass=NullPool)


def _sql(url: str, *statements: str) -> Any:
    """Run statements as another client would (outside the app's engines); returns the last first value."""
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            value = None
            for statement in statements:
                result = conn.execute(text(statement))
                value = result.scalar() if result.returns_rows else None
            return value
    finally:
        engine.dispose()


def _schema(url: str) -> dict[str, Any]:
    """Everything reflection says about the study tables (alembic_version left out)."""
    engine = _engine(url)
    try:
        insp = inspect(engine)
        out: dict[str, Any] = {}
        for table in sorted(set(insp.get_table_names()) - {migrate.VERSION_TABLE}):
            out[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
                "pk": insp.get_pk_constraint(table)["constrained_columns"],
                "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]),
                               (f.get("options") or {}).get("ondelete")) for f in insp.get_foreign_keys(table)),
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                  for i in insp.get_indexes(table)),
                "uniques": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
                "checks": sorted(c["name"] for c in insp.get_check_constraints(table)),
            }
        return out
    finally:
        engine.dispose()


def _legacy_v1(url: str, version: str = "1") -> None:
    """A database as the code before Alembic left it: create_all, schema_meta, one study, no alembic_version."""
    engine = _engine(url)
    try:
        Base.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(SchemaMeta.__table__.insert(), [{"key": "schema_version", "value": version},
                                                         {"key": "created_at", "value": "2024-01-01T00:00:00+00:00"}])
            conn.execute(Study.__table__.insert(), [{"name": "old", "design": "likert", "status": "open", "seed": 1,
                                                     "models": ["clahe"], "options": {},
                                                     "created_at": db.utcnow()}])
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = _engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


# --- an empty database ---------------------------------------------------------------------------

def test_upgrade_of_empty_database_creates_the_models_schema(
        database_url: str, make_database_url: Callable[[str], str]) -> None:
    """The baseline migration creates exactly what Base.metadata describes, on both engines."""
    d = db.Database(database_url)
    assert d.state().kind == "empty"
    assert d.upgrade() == (None, migrate.head_revision())
    d.dispose()
    assert _tables(database_url) == set(Base.metadata.tables) | {migrate.VERSION_TABLE}

    # Same tables, columns (types, nullability), keys, indexes and constraints as create_all makes.
    reference = make_database_url(make_url(database_url).get_backend_name())
    engine = _engine(reference)
    Base.metadata.create_all(engine)
    engine.dispose()
    assert _schema(database_url) == _schema(reference)

    # And Alembic's own comparison with the models finds nothing to do.
    engine = _engine(database_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
    engine.dispose()


def test_open_database_creates_and_records_both_versions(tmp_path: Path, database_url: str) -> None:
    d = open_database(tmp_path, database_url)
    assert d.schema_version() == db.SCHEMA_VERSION
    assert d.state() == migrate.DatabaseState("revision", revision=migrate.head_revision())
    d.dispose()
    assert _sql(database_url, "SELECT version_num FROM alembic_version") == migrate.head_revision()
    assert _sql(database_url, "SELECT value FROM schema_meta WHERE key = 'schema_version'") == str(db.SCHEMA_VERSION)
    assert _sql(database_url, "SELECT value FROM schema_meta WHERE key = 'created_at'").endswith("+00:00")


# --- databases from before Alembic ---------------------------------------------------------------

def test_legacy_v1_database_is_stamped_and_keeps_its_data(tmp_path: Path, database_url: str) -> None:
    _legacy_v1(database_url)
    assert db.Database(database_url).state() == migrate.DatabaseState("legacy", legacy_version="1")
    d = open_database(tmp_path, database_url)
    with d.read() as s:
        assert [st.name for st in s.query(Study)] == ["old"]
    d.dispose()
    assert _sql(database_url, "SELECT version_num FROM alembic_version") == migrate.BASELINE_REVISION
    d = open_database(tmp_path, database_url)  # and opens again as an ordinary database at head
    d.dispose()


def test_legacy_database_of_another_version_is_refused_untouched(tmp_path: Path, database_url: str) -> None:
    _legacy_v1(database_url, version="7")
    with pytest.raises(db.SchemaVersionError, match="schema version 7, but this code needs version 1"):
        open_database(tmp_path, database_url)
    with pytest.raises(db.SchemaVersionError, match="schema version 7"):
        db.Database(database_url).upgrade()
    assert migrate.VERSION_TABLE not in _tables(database_url)


def test_stamp_records_a_revision_but_never_on_an_empty_database(database_url: str) -> None:
    d = db.Database(database_url)
    with pytest.raises(db.SchemaVersionError, match="is empty.*python -m db upgrade"):
        d.stamp("head")
    with pytest.raises(db.SchemaVersionError, match="unknown revision 'nope'"):
        d.stamp("nope")
    d.dispose()
    _legacy_v1(database_url)
    d = db.Database(database_url)
    d.stamp(migrate.BASELINE_REVISION)
    assert d.state().revision == migrate.BASELINE_REVISION
    d.dispose()


# --- revisions this code does not know, or knows as older ------------------------------------------

def test_unknown_revision_is_refused_with_what_to_run(tmp_path: Path, database_url: str) -> None:
    open_database(tmp_path, database_url).dispose()
    _sql(database_url, "UPDATE alembic_version SET version_num = 'f00dcafe0099'")
    with pytest.raises(db.SchemaVersionError, match=r"revision 'f00dcafe0099'.*does not know.*python -m db upgrade"):
        open_database(tmp_path, database_url)
    with pytest.raises(db.SchemaVersionError, match="does not know"):
        db.Database(database_url).upgrade()  # never "upgrades" what newer code wrote
    assert _sql(database_url, "SELECT version_num FROM alembic_version") == "f00dcafe0099"


SECOND_REVISION = '''"""Test-only revision: widen readers.label and add a column (a batch rebuild on SQLite)."""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("readers") as batch:
        batch.alter_column("label", existing_type=sa.String(32), type_=sa.String(64), existing_nullable=False)
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("readers") as batch:
        batch.drop_column("note")
'''


@pytest.fixture
def second_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This code as if it shipped a revision 0002 (a copy of db/migrations with one more file)."""
    copy = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "versions" / "0002_test.py").write_text(SECOND_REVISION)
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", copy)
    migrate.script_directory.cache_clear()
    yield "0002"
    migrate.script_directory.cache_clear()


def _study_with_an_assignment(d: db.Database) -> None:
    with d.write() as s:
        st = Study(name="pilot", design="likert", seed=1, models=["clahe"])
        s.add(st)
        s.flush()
        case = Case(study_id=st.id, label="C001", stored_name="a" * 32 + ".png", upload_sha256="a" * 64,
                    stored_sha256="b" * 64, width=8, height=8)
        reader = Reader(study_id=st.id, label="R01", code_hash="c" * 64, seed=2)
        s.add_all([case, reader])
        s.flush()
        variant = Variant(case_id=case.id, model="original", file_name="d" * 32 + ".png", file_sha256="e" * 64,
                          output_width=8, output_height=8)
        s.add(variant)
        s.flush()
        s.add(Assignment(reader_id=reader.id, case_id=case.id, position=0, block="likert", kind="likert",
                         variant_id=variant.id, item_key="k" * 16))


def test_older_revision_is_refused_then_upgraded_without_losing_rows(
        tmp_path: Path, make_database_url: Callable[[str], str], second_revision: str) -> None:
    for engine in ENGINES:
        url = make_database_url(engine)
        d = db.Database(url)
        with migrate.locked(d._write_engine) as conn:  # the database as code at revision 0001 made it
            migrate.upgrade(conn, migrate.BASELINE_REVISION)
        _study_with_an_assignment(d)
        d.dispose()
        expected = "--data-dir" if engine == "sqlite" else r"--url '?postgresql\+psycopg://"
        with pytest.raises(db.SchemaVersionError, match=rf"at schema revision 0001.*needs revision 0002.*"
                                                        rf"python -m db upgrade {expected}"):
            open_database(tmp_path, url)
        assert db.Database(url).upgrade() == ("0001", "0002")
        d = open_database(tmp_path, url)
        with d.read() as s:  # SQLite rebuilt readers by copy: the assignment (FK to readers) survived
            assert s.query(Assignment).count() == 1 and s.query(Reader).one().label == "R01"
        d.dispose()
        assert "note" in {c["name"] for c in inspect(_engine(url)).get_columns("readers")}
        if engine == "sqlite":
            assert _sql(url, "PRAGMA foreign_key_check") is None
            d = open_database(tmp_path, url)  # and the app's connections still enforce foreign keys
            with d.read() as s:
                assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1
            d.dispose()


def test_legacy_database_behind_head_is_refused_then_upgraded(
        tmp_path: Path, database_url: str, second_revision: str) -> None:
    _legacy_v1(database_url)
    with pytest.raises(db.SchemaVersionError, match="pre-Alembic schema version 1.*python -m db upgrade"):
        open_database(tmp_path, database_url)
    assert migrate.VERSION_TABLE not in _tables(database_url)  # the refused start changed nothing
    assert db.Database(database_url).upgrade() == ("0001", "0002")
    open_database(tmp_path, database_url).dispose()


# --- python -m db ----------------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "STUDIO_DATA_DIR")}
    return subprocess.run([sys.executable, "-m", "db", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_upgrade_is_idempotent(database_url: str) -> None:
    first = _cli("upgrade", "--url", database_url)
    assert first.returncode == 0, first.stderr
    assert f"revision (empty) -> {migrate.head_revision()}" in first.stdout
    second = _cli("upgrade", "--url", database_url)
    assert second.returncode == 0, second.stderr
    assert "(already current)" in second.stdout
    assert _sql(database_url, "SELECT count(*) FROM alembic_version") == 1


def test_cli_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "data"))
    assert db_main(["current", "--check"]) == 1  # looking does not create the file
    assert "no study database" in capsys.readouterr().out and not (tmp_path / "data").exists()
    assert db_main(["upgrade"]) == 0  # the default: STUDIO_DATA_DIR's studies.db
    assert (tmp_path / "data" / db.DB_FILE_NAME).exists()
    assert db_main(["current", "--check", "--data-dir", str(tmp_path / "data")]) == 0
    _sql(f"sqlite:///{tmp_path / 'data' / db.DB_FILE_NAME}", "UPDATE alembic_version SET version_num = 'abc'")
    capsys.readouterr()
    assert db_main(["current", "--check"]) == 1
    assert "unknown to this code" in capsys.readouterr().out
    assert db_main(["upgrade"]) == 2
    assert "python -m db upgrade" in capsys.readouterr().err


# --- starting at the same time ---------------------------------------------------------------------

def test_threads_opening_an_empty_database_at_once_all_succeed(tmp_path: Path, database_url: str) -> None:
    barrier = threading.Barrier(4)
    results: list[Any] = []

    def start() -> None:
        try:
            barrier.wait()
            d = open_database(tmp_path, database_url)
            results.append(d.schema_version())
            d.dispose()
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            results.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results == [db.SCHEMA_VERSION] * 4
    assert _sql(database_url, "SELECT count(*) FROM alembic_version") == 1
    assert _sql(database_url, "SELECT count(*) FROM schema_meta") == 2


OPEN_SCRIPT = """
import sys, time
from pathlib import Path
from db import open_database
go = Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
d = open_database(".", sys.argv[1])
print("version", d.schema_version(), flush=True)
d.dispose()
"""


def test_two_processes_opening_an_empty_postgresql_database_at_once_both_succeed(
        tmp_path: Path, make_database_url: Callable[[str], str]) -> None:
    url = make_database_url("postgresql")
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_SCRIPT, url, str(go)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for p in procs:  # every process imported everything and waits: then all start at once
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == f"version {db.SCHEMA_VERSION}"
    assert _sql(url, "SELECT count(*) FROM alembic_version") == 1
    assert _sql(url, "SELECT version_num FROM alembic_version") == migrate.head_revision()


# --- tests/pg.py itself ----------------------------------------------------------------------------

def test_no_server_skips_outside_ci_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "_server", (None, "no PostgreSQL server: (test)"))
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("MEDENHANCE_REQUIRE_POSTGRES", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no PostgreSQL server: \(test\)"):
        pg._server_or_skip()
    monkeypatch.setenv("MEDENHANCE_REQUIRE_POSTGRES", "1")
    with pytest.raises(pytest.fail.Exception, match="required here"):
        pg._server_or_skip()
    monkeypatch.delenv("MEDENHANCE_REQUIRE_POSTGRES")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required here"):
        pg._server_or_skip()
