"""Schema versioning with Alembic, on SQLite and PostgreSQL alike.

The revisions live in ``db/migrations/versions`` (``0001`` = the schema of
``SCHEMA_VERSION`` 1, as created before Alembic). Alembic is configured here,
in code, so no ``alembic.ini`` is needed; ``python -m db upgrade`` (see
:mod:`db.__main__`) and :meth:`db.Database.init_schema` are the two callers.

Every check and change runs in one transaction that first takes the migration
lock: ``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` (SQLite's
write lock, waited for up to the busy timeout) on SQLite. Two processes
opening an empty database at once therefore queue: the first creates the
tables, the second then finds them at head. DDL is transactional on both
engines, so a failed migration leaves the database as it was.

This module imports only Alembic, SQLAlchemy and the standard library.
"""

from __future__ import annotations

import logging
import shlex
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import make_url

from .schema import DB_FILE_NAME

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The revision whose tables are those of databases created before Alembic (schema_meta version 1).
BASELINE_REVISION = "0001"
LEGACY_SCHEMA_VERSION = "1"
VERSION_TABLE = "alembic_version"
META_TABLE = "schema_meta"
# Key of the PostgreSQL advisory lock around migrations: any fixed 64-bit number, chosen once
# so that every process of every version of the app takes the same lock.
PG_LOCK_KEY = int.from_bytes(b"MEDENHNC", "big")


@dataclass(frozen=True)
class DatabaseState:
    """What a database holds, as far as schema versioning is concerned.

    Attributes:
        kind: ``"empty"`` (no tables), ``"legacy"`` (schema_meta but no Alembic revision: created
            before Alembic), ``"foreign"`` (tables, but neither schema_meta nor a revision) or
            ``"revision"`` (an Alembic revision is recorded).
        revision: the recorded Alembic revision (``kind == "revision"``), else None.
        legacy_version: schema_meta's ``schema_version`` of a legacy database, else None.
    """

    kind: str
    revision: str | None = None
    legacy_version: str | None = None


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for ``db/migrations``; ``connection`` is what ``env.py`` migrates."""
    cfg = Config()
    # configparser interpolation: a '%' in the install path must be doubled.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def script_directory() -> ScriptDirectory:
    """The revisions shipped with this code (parsed once per process)."""
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this code knows: the schema it works with."""
    head = script_directory().get_current_head()
    assert head is not None, "db/migrations/versions has no revision"
    return head


def is_known(revision: str) -> bool:
    """Whether ``revision`` is one of this code's revisions (False: newer code wrote it)."""
    try:
        return script_directory().get_revision(revision) is not None
    except CommandError:
        return False


@contextmanager
def locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock; committed at the end of the block.

    ``engine`` must be the database's *write* engine: on SQLite its transactions start with
    ``BEGIN IMMEDIATE`` (see :mod:`db.engine`), which is the lock.

    On SQLite, foreign keys are off while the lock is held, as SQLite's own procedure for schema
    changes requires: a batch migration rebuilds a table by copy, drop and rename, and with
    foreign keys on, dropping the old ``readers`` table would cascade-delete every assignment.
    ``PRAGMA foreign_key_check`` then verifies the result before the commit.
    """
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        # The DBAPI connection itself: a statement through ``conn`` would begin the transaction,
        # and the pragma is a no-op inside one.
        raw = conn.connection.driver_connection if sqlite else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    # Transaction-scoped: released by the commit or rollback that ends this block, and by
                    # the server if the process dies, so a crashed start never blocks the next one.
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
                yield conn
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"schema change would break foreign keys (rolled back): {broken[:5]}")
        finally:
            if raw is not None:
                try:
                    raw.execute("PRAGMA foreign_keys=ON")
                except Exception:  # noqa: BLE001 - never hand a connection without foreign keys back
                    conn.invalidate()
                    raise


def read_state(conn: Connection) -> DatabaseState:
    """Classify the database behind ``conn`` (see :class:`DatabaseState`). Changes nothing."""
    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE in tables:
        _quiet_alembic()  # MigrationContext.configure logs "Context impl ..." at INFO, at every app start
        heads = MigrationContext.configure(conn).get_current_heads()
        if len(heads) > 1:  # never written by this project's linear history
            return DatabaseState("revision", revision=",".join(heads))
        if heads:
            return DatabaseState("revision", revision=heads[0])
        tables.discard(VERSION_TABLE)  # an empty version table (e.g. after a downgrade to base)
    if not tables:
        return DatabaseState("empty")
    if META_TABLE in tables:
        raw = conn.execute(text(f"SELECT value FROM {META_TABLE} WHERE key = 'schema_version'")).scalar()
        return DatabaseState("legacy", legacy_version=raw)
    return DatabaseState("foreign")


def _quiet_alembic() -> None:
    """Alembic logs "Context impl SQLiteImpl." and "Will assume transactional DDL." at INFO on every run,
    which the app's INFO logging would print at each start. WARNING keeps its warnings and errors (and
    failures raise anyway); a level someone set on the ``alembic`` logger on purpose is left alone."""
    log = logging.getLogger("alembic")
    if log.level == logging.NOTSET:
        log.setLevel(logging.WARNING)


def upgrade(conn: Connection, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` on ``conn`` (inside :func:`locked`)."""
    _quiet_alembic()
    command.upgrade(alembic_config(conn), revision)


def stamp(conn: Connection, revision: str) -> None:
    """Record ``revision`` as the database's schema without running anything (inside :func:`locked`).

    ``purge``: whatever was recorded before is replaced, so a stamp also repairs a database
    whose recorded revision is unknown here (the caller decides that this is right).
    """
    _quiet_alembic()
    command.stamp(alembic_config(conn), revision, purge=True)


def upgrade_command(url: str) -> str:
    """The exact shell command that upgrades the database at ``url`` (for messages).

    A SQLite file named ``studies.db`` is named by its data directory, as the app knows it;
    a server URL is shown with its password hidden (the ``DATABASE_URL`` the app was given
    holds it, and ``python -m db upgrade`` reads that variable too).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        if path.name == DB_FILE_NAME:
            return f"python -m db upgrade --data-dir {shlex.quote(str(path.parent))}"
        return f"python -m db upgrade --url {shlex.quote(url)}"
    shown = parsed.render_as_string(hide_password=True)
    return (f"python -m db upgrade --url {shlex.quote(shown)} (put the password back in place of ***, "
            "or run plain `python -m db upgrade` with the same DATABASE_URL as the app)")
