"""A PostgreSQL server for the tests, and fixtures giving each test a fresh database.

Where the server comes from, in order:

1. ``MEDENHANCE_TEST_PG_URL`` (``.ci/run`` sets it to the cluster it started), a URL of any
   database on a server where that role may ``CREATE DATABASE``;
2. else a throw-away cluster started here once per test session (``initdb`` + ``pg_ctl``, as the
   ``postgres`` user when run as root, trust auth on 127.0.0.1 and a socket in its temp dir,
   ``fsync`` off: nothing in it outlives the session), stopped at exit;
3. else none: PostgreSQL tests are skipped with the reason, or fail where a server is
   required (``CI=true`` or ``MEDENHANCE_REQUIRE_POSTGRES=1``), so CI never passes by skipping.

Fixtures (register with ``pytest_plugins = ["tests.pg"]`` or import them by name):

* ``database_url``: parametrised ``["sqlite", "postgresql"]``; the URL of a fresh, empty database.
* ``make_database_url``: a factory ``make("sqlite" | "postgresql") -> URL`` for tests that need
  several databases (e.g. copying a study from one engine to the other).
* ``pg_server_url``: the server's URL (session scope), skipping or failing as above.

This module imports only SQLAlchemy, pytest and the standard library.
"""

from __future__ import annotations

import atexit
import glob
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

ENGINES = ("sqlite", "postgresql")
ENV_URL = "MEDENHANCE_TEST_PG_URL"
START_TIMEOUT_S = 60
CLUSTER_PREFIX = "medenhance-pg-"
OWNER_FILE = "owner.pid"  # the test process that started the cluster

_server: tuple[str | None, str] | None = None  # (url, reason), once per process
_admin: Engine | None = None


def postgres_required() -> bool:
    """Whether a missing server is a failure (CI) rather than a skip."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("MEDENHANCE_REQUIRE_POSTGRES") == "1"


def find_pg_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, else Debian's ``/usr/lib/postgresql/<version>/bin`` (newest)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates.sort(key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return candidates[-1] if candidates else None


def _free_port() -> int:
    # Bind-and-release: another process could take the port before the server does; start retries.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    """``argv`` run as the ``postgres`` user when we are root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--", *argv]
    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(argv)]


def start_cluster() -> tuple[str | None, str]:
    """Start a throw-away cluster; returns (URL of its ``postgres`` database, "") or (None, why not).

    Stopped (``pg_ctl stop -m immediate``) and deleted at interpreter exit.
    """
    initdb, pg_ctl = find_pg_bin("initdb"), find_pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        return None, ("no PostgreSQL server: MEDENHANCE_TEST_PG_URL is unset and initdb/pg_ctl are not installed "
                      "(apt-get install postgresql)")
    if os.geteuid() == 0:
        try:
            import pwd

            server_user = pwd.getpwnam("postgres")
        except KeyError:
            return None, "no PostgreSQL server: running as root and there is no postgres user for initdb"
    _reap_orphans(pg_ctl)
    root = Path(tempfile.mkdtemp(prefix=CLUSTER_PREFIX))
    atexit.register(shutil.rmtree, root, True)
    (root / OWNER_FILE).write_text(str(os.getpid()))
    if os.geteuid() == 0:
        os.chown(root, server_user.pw_uid, server_user.pw_gid)
    data = root / "data"
    try:
        subprocess.run(_as_server_user([initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                                        "--locale=C", "--no-sync"]),
                       check=True, capture_output=True, text=True, timeout=START_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        return None, f"no PostgreSQL server: initdb failed: {detail.strip()[-500:]}"
    last_error = ""
    for _attempt in range(3):  # a port taken between _free_port() and the server's bind: try another
        port = _free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        try:
            subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-o", options,
                                            "-w", "-t", str(START_TIMEOUT_S), "start"]),
                           check=True, capture_output=True, text=True, timeout=START_TIMEOUT_S + 10)
        except (OSError, subprocess.SubprocessError) as e:
            log = root / "server.log"
            last_error = (log.read_text(errors="replace") if log.exists() else "") or str(e)
            continue
        atexit.register(_stop_cluster, pg_ctl, data)
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", ""
    return None, f"no PostgreSQL server: pg_ctl start failed: {last_error.strip()[-500:]}"


def _reap_orphans(pg_ctl: str) -> None:
    """Stop and delete clusters left by test sessions that were killed (atexit never ran there)."""
    for root in Path(tempfile.gettempdir()).glob(f"{CLUSTER_PREFIX}*"):
        try:
            owner = int((root / OWNER_FILE).read_text())
            os.kill(owner, 0)  # raises if that process is gone
            continue  # a live session's cluster
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue  # not ours to judge (unreadable, being created, another user's)
        if (root / "data" / "postmaster.pid").exists():
            _stop_cluster(pg_ctl, root / "data")
        shutil.rmtree(root, ignore_errors=True)


def _stop_cluster(pg_ctl: str, data: Path) -> None:
    # Runs before the rmtree registered earlier (atexit is last-in, first-out).
    try:
        subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=START_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        pass  # already gone, or beyond help: the temp dir is removed either way


def server_url() -> tuple[str | None, str]:
    """The test server's URL and "", or None and the reason there is none (computed once per process)."""
    global _server
    if _server is None:
        try:
            import psycopg  # noqa: F401 - the driver every PostgreSQL URL here uses
        except ImportError as e:
            _server = (None, f"no PostgreSQL driver: {e} (pip install 'psycopg[binary]')")
            return _server
        env = os.environ.get(ENV_URL, "").strip()
        _server = (env, "") if env else start_cluster()
    return _server


def _admin_engine(url: str) -> Engine:
    """An AUTOCOMMIT engine on the server's URL: CREATE/DROP DATABASE cannot run in a transaction."""
    global _admin
    if _admin is None:
        _admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    return _admin


def create_pg_database(server: str) -> str:
    """Create an empty database ``t_<random>`` on ``server``; returns its URL."""
    name = f"t_{secrets.token_hex(6)}"
    with _admin_engine(server).connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(server: str, url: str) -> None:
    """Drop the database of ``url``, ending its remaining connections (``WITH (FORCE)``, PostgreSQL 13+)."""
    name = make_url(url).database
    with _admin_engine(server).connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _server_or_skip() -> str:
    url, reason = server_url()
    if url is None:
        if postgres_required():
            pytest.fail(f"{reason} (required here: CI=true or MEDENHANCE_REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(reason)
    return url


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The test PostgreSQL server's URL (its ``postgres`` database); skips or fails when there is none."""
    return _server_or_skip()


@pytest.fixture
def make_database_url(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """A factory of fresh, empty databases: ``make("sqlite")`` or ``make("postgresql")`` -> URL.

    SQLite: a new file under ``tmp_path``. PostgreSQL: ``CREATE DATABASE t_<random>``, dropped
    (with FORCE, so a leaked connection cannot keep it) when the test ends.
    """
    created: list[tuple[str, str]] = []

    def make(engine: str) -> str:
        if engine == "sqlite":
            folder = Path(tempfile.mkdtemp(prefix="sqlite-", dir=tmp_path))
            return f"sqlite:///{folder / 'studies.db'}"
        if engine == "postgresql":
            server = _server_or_skip()
            url = create_pg_database(server)
            created.append((server, url))
            return url
        raise ValueError(f"unknown engine {engine!r}; one of {ENGINES}")

    yield make
    for server, url in created:
        drop_pg_database(server, url)


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, make_database_url: Callable[[str], str]) -> str:
    """The URL of a fresh, empty database, once per engine (test ids ``[sqlite]``, ``[postgresql]``)."""
    return make_database_url(request.param)
