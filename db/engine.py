"""Opening the study database: SQLite in a data directory, or any SQLAlchemy URL (PostgreSQL).

SQLite is opened in WAL mode (readers never block the writer), with foreign
keys on and a busy timeout. Write transactions start with ``BEGIN IMMEDIATE``
so two concurrent submissions queue for the write lock up front instead of
failing when a read transaction tries to upgrade to a write; reads use a
plain deferred ``BEGIN`` and run in parallel.

Start-up creates the tables of an empty database with the Alembic migrations
(:mod:`db.migrate`), adopts a database created before Alembic, and refuses a
database at another schema revision (:class:`SchemaVersionError`, whose
message names the ``python -m db upgrade`` command to run).

This module imports only SQLAlchemy, Alembic (via :mod:`db.migrate`) and the standard library.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from . import migrate
from .schema import DB_FILE_NAME, SCHEMA_VERSION, SchemaMeta

# Seconds a SQLite writer waits for the lock before failing: far above any single answer's commit time.
BUSY_TIMEOUT_S = 30.0


class SchemaVersionError(RuntimeError):
    """The database was written by another schema version (or is not a study database)."""


DEFAULT_DATA_DIR = Path("studio-data")
SPACE_DATA_DIR = Path("/data")  # Hugging Face Spaces' persistent storage, when enabled


def default_data_dir() -> Path:
    """``STUDIO_DATA_DIR``, else ``/data/medenhance`` when ``/data`` (a Space's persistent storage) is a
    writable folder, else ``./studio-data``. The app, the study store and ``python -m db`` all use this rule."""
    env = os.environ.get("STUDIO_DATA_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    if SPACE_DATA_DIR.is_dir() and os.access(SPACE_DATA_DIR, os.W_OK):
        return SPACE_DATA_DIR / "medenhance"
    return DEFAULT_DATA_DIR


def database_url(data_dir: str | os.PathLike[str], url: str | None = None) -> str:
    """The URL to open: ``url`` (e.g. ``DATABASE_URL``) if given, else SQLite in ``data_dir``.

    ``postgres://`` (the form many hosts hand out) is rewritten to ``postgresql://``.
    """
    if url:
        url = url.strip()
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        return url
    path = Path(data_dir).resolve() / DB_FILE_NAME
    return f"sqlite:///{path}"


def _set_wal(cur: Any) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another connection holds the lock.

    Switching a new database file to WAL needs an exclusive lock, and SQLite answers "database is
    locked" at once instead of calling the busy handler when another connection holds it (seen with
    four app processes or threads opening an empty file together). Once the file is in WAL mode the
    pragma is a no-op read, so only the first start ever waits here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, 0.2)


def _sqlite_engine(url: str, begin: str) -> Engine:
    """A SQLite engine whose transactions start with ``begin`` (``"BEGIN"`` or ``"BEGIN IMMEDIATE"``)."""
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling would defer BEGIN and break IMMEDIATE: take it over.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        _set_wal(cur)
        cur.execute("PRAGMA foreign_keys=ON")
        # FULL: a commit is on disk before the reader sees the next case, even across a power loss
        # (NORMAL would survive a killed process but not an OS crash); one fsync per answer is cheap.
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


class Database:
    """The study database: engines, sessions, and the schema check.

    Use ``with db.read() as s:`` for queries and ``with db.write() as s:`` for
    changes; both commit on success and roll back on any exception.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = make_url(url).get_backend_name() == "sqlite"
        if self.is_sqlite:
            database = make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = _sqlite_engine(url, "BEGIN")
            self._write_engine = _sqlite_engine(url, "BEGIN IMMEDIATE")
        else:  # PostgreSQL & co: row locks and unique constraints do the work
            self.engine = create_engine(url, pool_pre_ping=True)
            self._write_engine = self.engine
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self._write_engine, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session in a read transaction (rolled back at the end: reads change nothing)."""
        with self._read() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in a write transaction, committed when the block ends without an exception."""
        with self._write.begin() as session:
            yield session

    def dispose(self) -> None:
        """Close every pooled connection (end of tests, before deleting the file)."""
        self.engine.dispose()
        if self._write_engine is not self.engine:
            self._write_engine.dispose()

    # --- schema -------------------------------------------------------------------

    def schema_version(self) -> int | None:
        """The recorded schema version; None for an empty database.

        Raises:
            SchemaVersionError: tables exist but no version is recorded (not a study database).
        """
        tables = set(inspect(self.engine).get_table_names())
        if not tables:
            return None
        if SchemaMeta.__tablename__ not in tables:
            raise self._foreign()
        with self.read() as s:
            raw = s.scalar(select(SchemaMeta.value).where(SchemaMeta.key == "schema_version"))
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            raise SchemaVersionError(f"{self.describe()} records an unreadable schema version {raw!r}.") from None

    def init_schema(self) -> int:
        """Make an empty database current, or check that an existing one is what this code needs.

        An empty database gets every migration up to head; a database created before Alembic
        (schema_meta says version 1, no revision recorded) is stamped at the baseline revision,
        whose tables it has. Anything else is left as it is: the app never migrates a database
        with data on its own, the operator runs ``python -m db upgrade`` (after a backup).

        Returns:
            The schema version (always :data:`SCHEMA_VERSION`).
        Raises:
            SchemaVersionError: an older or unknown revision, another schema version, or not a
                study database; nothing is changed.
        """
        head = migrate.head_revision()
        state = self.state()  # without the lock: a database at head (every start but the first) needs no write
        if state.kind in ("empty", "legacy"):
            with migrate.locked(self._write_engine) as conn:  # two processes starting at once queue here
                state = migrate.read_state(conn)  # again: the other process may have done it meanwhile
                if state.kind == "empty":
                    migrate.upgrade(conn, "head")
                elif state.kind == "legacy":
                    self._check_legacy(state)
                    if head != migrate.BASELINE_REVISION:
                        raise self._behind(f"the pre-Alembic schema version {state.legacy_version}")
                    migrate.stamp(conn, migrate.BASELINE_REVISION)
                state = migrate.read_state(conn)  # what is checked below, as it is now
        if state.kind == "revision":
            self._check_revision(state.revision or "", head)
        elif state.kind == "foreign":
            raise self._foreign()
        version = self.schema_version()
        if version != SCHEMA_VERSION:
            raise self._version_mismatch(version)
        return version

    def upgrade(self, revision: str = "head") -> tuple[str | None, str | None]:
        """Migrate the database to ``revision`` (``python -m db upgrade``); idempotent.

        A pre-Alembic database is stamped at the baseline first, then upgraded.

        Returns:
            The revision before and after (None: the database was empty before).
        Raises:
            SchemaVersionError: not a study database, or a revision this code does not know.
        """
        with migrate.locked(self._write_engine) as conn:
            state = migrate.read_state(conn)
            before = state.revision
            if state.kind == "foreign":
                raise self._foreign()
            if state.kind == "legacy":
                self._check_legacy(state)
                migrate.stamp(conn, migrate.BASELINE_REVISION)
                before = migrate.BASELINE_REVISION
            elif state.kind == "revision" and not migrate.is_known(before or ""):
                raise self._unknown(before or "")
            migrate.upgrade(conn, revision)
            after = migrate.read_state(conn).revision
        return before, after

    def stamp(self, revision: str) -> None:
        """Record ``revision`` without running migrations (``python -m db stamp``), e.g. after a
        restore into a database whose tables are known to be at that revision.

        Raises:
            SchemaVersionError: the database is empty (a stamp would hide the missing tables) or
                ``revision`` is not one of this code's revisions.
        """
        if revision != "head" and not migrate.is_known(revision):
            raise SchemaVersionError(f"unknown revision {revision!r}; this code knows "
                                     f"{', '.join(self.known_revisions())}.")
        with migrate.locked(self._write_engine) as conn:
            if migrate.read_state(conn).kind == "empty":
                raise SchemaVersionError(f"{self.describe()} is empty: create its tables with "
                                         f"`{migrate.upgrade_command(self.url)}` instead of stamping it.")
            migrate.stamp(conn, revision)

    def state(self) -> migrate.DatabaseState:
        """What the database holds (empty, pre-Alembic, foreign or at a revision); changes nothing."""
        with self.engine.connect() as conn:
            return migrate.read_state(conn)

    @staticmethod
    def known_revisions() -> list[str]:
        """This code's revisions, oldest first."""
        return [r.revision for r in reversed(list(migrate.script_directory().walk_revisions()))]

    # --- refusals: each says what to do ---------------------------------------------

    def _check_legacy(self, state: migrate.DatabaseState) -> None:
        if state.legacy_version != migrate.LEGACY_SCHEMA_VERSION:
            try:
                version: int | str | None = int(state.legacy_version or "")
            except ValueError:
                version = state.legacy_version
            raise self._version_mismatch(version)

    def _check_revision(self, revision: str, head: str) -> None:
        if revision == head:
            return
        if migrate.is_known(revision):
            raise self._behind(f"schema revision {revision}")
        raise self._unknown(revision)

    def _behind(self, what: str) -> SchemaVersionError:
        return SchemaVersionError(
            f"{self.describe()} is at {what}, but this code needs revision {migrate.head_revision()} "
            f"(schema version {SCHEMA_VERSION}). Refusing to start: back the database up, then run "
            f"`{migrate.upgrade_command(self.url)}` and start again.")

    def _unknown(self, revision: str) -> SchemaVersionError:
        return SchemaVersionError(
            f"{self.describe()} is at schema revision {revision!r}, which this code does not know "
            f"(it knows up to {migrate.head_revision()}): a newer version of MedEnhance wrote it, and "
            "schemas are never downgraded. Refusing to start: run the version that wrote it (its "
            "`python -m db upgrade` brings older databases up to that revision), or point "
            "STUDIO_DATA_DIR / DATABASE_URL at another database.")

    def _foreign(self) -> SchemaVersionError:
        return SchemaVersionError(f"{self.describe()} has tables but no schema version: it is not a "
                                  "MedEnhance study database; point STUDIO_DATA_DIR or DATABASE_URL elsewhere.")

    def _version_mismatch(self, version: int | str | None) -> SchemaVersionError:
        return SchemaVersionError(
            f"{self.describe()} has schema version {version}, but this code needs version {SCHEMA_VERSION}. "
            "Refusing to start: migrate the database (or export it with the code that wrote it), "
            "or point STUDIO_DATA_DIR / DATABASE_URL at another location.")

    def describe(self) -> str:
        """The database for messages: the SQLite file path, or the URL without its password."""
        url = make_url(self.url)
        if self.is_sqlite:
            return f"study database {url.database}"
        return f"study database {url.render_as_string(hide_password=True)}"


def open_database(data_dir: str | os.PathLike[str], url: str | None = None) -> Database:
    """Open (creating if empty) and version-check the study database.

    Args:
        data_dir: directory of the SQLite file (created if missing); unused when ``url`` is given.
        url: a SQLAlchemy URL (``DATABASE_URL``), e.g. ``postgresql+psycopg://user:pw@host/db``.
    Raises:
        SchemaVersionError: see :meth:`Database.init_schema`.
    """
    db = Database(database_url(data_dir, url))
    try:
        db.init_schema()
    except Exception:
        db.dispose()
        raise
    return db
