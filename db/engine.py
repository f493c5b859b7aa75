"""Opening the study database: SQLite in a data directory, or any SQLAlchemy URL (PostgreSQL).

SQLite is opened in WAL mode (readers never block the writer), with foreign
keys on and a busy timeout. Write transactions start with ``BEGIN IMMEDIATE``
so two concurrent submissions queue for the write lock up front instead of
failing when a read transaction tries to upgrade to a write; reads use a
plain deferred ``BEGIN`` and run in parallel.

Start-up checks the recorded schema version and refuses a database written
by another version of the code (:class:`SchemaVersionError`).

This module imports only SQLAlchemy and the standard library.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from .schema import SCHEMA_VERSION, Base, SchemaMeta, utcnow

DB_FILE_NAME = "studies.db"
# Seconds a SQLite writer waits for the lock before failing: far above any single answer's commit time.
BUSY_TIMEOUT_S = 30.0


class SchemaVersionError(RuntimeError):
    """The database was written by another schema version (or is not a study database)."""


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


def _sqlite_engine(url: str, begin: str) -> Engine:
    """A SQLite engine whose transactions start with ``begin`` (``"BEGIN"`` or ``"BEGIN IMMEDIATE"``)."""
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling would defer BEGIN and break IMMEDIATE: take it over.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
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
            raise SchemaVersionError(f"{self.describe()} has tables but no schema version: it is not a "
                                     "MedEnhance study database; point STUDIO_DATA_DIR or DATABASE_URL elsewhere.")
        with self.read() as s:
            raw = s.scalar(select(SchemaMeta.value).where(SchemaMeta.key == "schema_version"))
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            raise SchemaVersionError(f"{self.describe()} records an unreadable schema version {raw!r}.") from None

    def init_schema(self) -> int:
        """Create the tables of an empty database, or check an existing one's version.

        Returns:
            The schema version (always :data:`SCHEMA_VERSION`).
        Raises:
            SchemaVersionError: the database records another version; nothing is changed.
        """
        version = self.schema_version()
        if version is None:
            Base.metadata.create_all(self._write_engine)
            with self.write() as s:
                # merge: two processes starting at once both "create"; the second write is a no-op.
                s.merge(SchemaMeta(key="schema_version", value=str(SCHEMA_VERSION)))
                if s.get(SchemaMeta, "created_at") is None:
                    s.add(SchemaMeta(key="created_at", value=utcnow().isoformat()))
            version = SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.describe()} has schema version {version}, but this code needs version {SCHEMA_VERSION}. "
                "Refusing to start: migrate the database (or export it with the code that wrote it), "
                "or point STUDIO_DATA_DIR / DATABASE_URL at another location.")
        return version

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
