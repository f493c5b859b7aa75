"""``python -m db``: schema upgrades and study bundles of the reader-study database.

    python -m db upgrade  [--url URL | --data-dir DIR] [--revision REV]   migrate (idempotent)
    python -m db current  [--url URL | --data-dir DIR] [--check]          show the schema revision
    python -m db stamp REV [--url URL | --data-dir DIR]                   record REV, run nothing
    python -m db studies  [--url URL | --data-dir DIR]                    list the studies (ids for export)
    python -m db export STUDY_ID [-o FILE] [--url URL | --data-dir DIR]   a study as a JSON bundle
    python -m db import FILE [--name NAME] [--url URL | --data-dir DIR]   a bundle as a new study

The database is ``--url``, else ``--data-dir``'s ``studies.db``, else the app's own:
``DATABASE_URL``, else ``studies.db`` in ``STUDIO_DATA_DIR`` (default as the app chooses it).
Exit status: 0 done, 1 ``current --check`` found the database not at head, 2 refused.

This module imports only SQLAlchemy, Alembic and the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from . import migrate
from .bundle import BundleError, export_study, import_study, read_bundle_file
from .engine import Database, SchemaVersionError, database_url, default_data_dir, open_database
from .schema import SCHEMA_VERSION, Assignment, Reader, Study

# The app's data directory when STUDIO_DATA_DIR is unset: the same rule as
def resolve_url(url: str | None, data_dir: str | None) -> str:
    """The database the command works on (see the module docstring)."""
    if url:
        return database_url(".", url)
    if data_dir:
        return database_url(data_dir)
    return database_url(default_data_dir(), os.environ.get("DATABASE_URL", "").strip() or None)


def _sqlite_file_missing(url: str) -> Path | None:
    """The path of a SQLite database file that does not exist yet (None: exists, or not SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


def cmd_upgrade(args: argparse.Namespace) -> int:
    database = Database(resolve_url(args.url, args.data_dir))
    try:
        before, after = database.upgrade(args.revision)
        print(f"{database.describe()}: revision {before or '(empty)'} -> {after}"
              + (" (already current)" if before == after else ""))
        return 0
    finally:
        database.dispose()


def cmd_current(args: argparse.Namespace) -> int:
    url = resolve_url(args.url, args.data_dir)
    missing = _sqlite_file_missing(url)
    head = migrate.head_revision()
    if missing is not None:  # looking must not create the file
        print(f"no study database at {missing} (the app or `python -m db upgrade` creates it)")
        return 1 if args.check else 0
    database = Database(url)
    try:
        state = database.state()
        print(database.describe())
        if state.kind == "empty":
            print(f"  empty: no tables yet (`{migrate.upgrade_command(url)}` creates revision {head})")
        elif state.kind == "legacy":
            print(f"  created before schema revisions (schema version {state.legacy_version}); "
                  f"`{migrate.upgrade_command(url)}` adopts it")
        elif state.kind == "foreign":
            print("  not a MedEnhance study database (tables, but no schema version)")
        elif state.revision == head:
            print(f"  revision {head} (head; schema version {SCHEMA_VERSION})")
        elif migrate.is_known(state.revision or ""):
            print(f"  revision {state.revision}, behind head {head}: run `{migrate.upgrade_command(url)}`")
        else:
            print(f"  revision {state.revision}: unknown to this code (newer code wrote it; head here is {head})")
        at_head = state.kind == "revision" and state.revision == head
        return 0 if at_head or not args.check else 1
    finally:
        database.dispose()


def cmd_stamp(args: argparse.Namespace) -> int:
    database = Database(resolve_url(args.url, args.data_dir))
    try:
        database.stamp(args.revision)
        print(f"{database.describe()}: stamped at revision {args.revision} (no migration run)")
        return 0
    finally:
        database.dispose()


def cmd_studies(args: argparse.Namespace) -> int:
    database = open_database(".", resolve_url(args.url, args.data_dir))
    try:
        with database.read() as s:
            readers = dict(s.execute(select(Reader.study_id, func.count()).group_by(Reader.study_id)).all())
            answered = (select(Reader.study_id, func.count()).join(Assignment, Assignment.reader_id == Reader.id)
                        .where(Assignment.answered_at.is_not(None)).group_by(Reader.study_id))
            answers = dict(s.execute(answered).all())
            rows = s.execute(select(Study.id, Study.name, Study.design, Study.status).order_by(Study.id)).all()
        print(f"{database.describe()}: {len(rows)} stud{'y' if len(rows) == 1 else 'ies'}")
        for sid, name, design, status in rows:
            print(f"  {sid:>4}  {name!r}  {design}, {status}, {readers.get(sid, 0)} readers, "
                  f"{answers.get(sid, 0)} answered items")
        return 0
    finally:
        database.dispose()


def cmd_export(args: argparse.Namespace) -> int:
    database = open_database(".", resolve_url(args.url, args.data_dir))
    try:
        with database.read() as s:
            bundle = export_study(s, args.study_id)
    finally:
        database.dispose()
    text = json.dumps(bundle, indent=1, ensure_ascii=False) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        counts = ", ".join(f"{len(bundle[t])} {t}" for t in ("cases", "readers", "assignments", "ratings",
                                                                 "preferences"))
        print(f"study {args.study_id} ({bundle['study']['name']!r}) -> {args.output}: {counts}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    bundle = read_bundle_file(args.file)  # refused above bundle.MAX_JSON_BYTES before it is read
    database = open_database(".", resolve_url(args.url, args.data_dir))  # an empty database gets its tables
    try:
        with database.write() as s:
            study_id = import_study(s, bundle, name=args.name)
        print(f"{args.file} -> {database.describe()}: study id {study_id}")
        return 0
    finally:
        database.dispose()


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m db", description="Reader-study database: schema and bundles.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        where = p.add_mutually_exclusive_group()
        where.add_argument("--url", help="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db "
                                         "(default: DATABASE_URL)")
        where.add_argument("--data-dir", help="data directory of a SQLite studies.db (default: STUDIO_DATA_DIR, "
                                              "else ./studio-data)")
        return p

    p = add("upgrade", "Create or migrate the schema up to a revision (default: head). Idempotent.")
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    p.set_defaults(func=cmd_upgrade)
    p = add("current", "Show the database's schema revision.")
    p.add_argument("--check", action="store_true", help="exit 1 unless the database is at head")
    p.set_defaults(func=cmd_current)
    p = add("stamp", "Record a revision without running migrations (the tables must already be at it).")
    p.add_argument("revision", help="revision to record, e.g. head or " + migrate.BASELINE_REVISION)
    p.set_defaults(func=cmd_stamp)
    p = add("studies", "List the studies (id, name, design, status, readers, answered items).")
    p.set_defaults(func=cmd_studies)
    p = add("export", "Write one study (design, cases, readers, answers) as a JSON bundle.")
    p.add_argument("study_id", type=int)
    p.add_argument("-o", "--output", help="bundle file (default: stdout)")
    p.set_defaults(func=cmd_export)
    p = add("import", "Insert a JSON bundle as a new study (new ids); prints its id.")
    p.add_argument("file", help="bundle file written by `python -m db export`")
    p.add_argument("--name", help="name of the imported study (needed when the bundle's name is taken)")
    p.set_defaults(func=cmd_import)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; refusals print their reason and return 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (SchemaVersionError, BundleError, LookupError) as e:
        print(f"python -m db {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
