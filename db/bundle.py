"""Study bundles: one reader study as plain JSON, to move it between databases.

A bundle holds the study's design row and every row that belongs to it: cases,
variants, readers (with their access-code *hashes*; plaintext codes are never
stored anywhere), assignments, ratings and preferences. It is how a study moves
from a laptop's SQLite file to a hospital's PostgreSQL server and back::

    with source.read() as s:
        bundle = export_study(s, study_id)
    with target.write() as s:
        new_id = import_study(s, bundle)

Rows carry *bundle-local* ids (1, 2, ... per table, in the source's id order)
and their foreign keys point at those; :func:`import_study` inserts new rows
and remaps every foreign key to the new ids. Exporting an imported study gives
the same bundle again (apart from ``exported_at`` and ``source``). Datetimes are
ISO 8601 strings with their UTC offset. The image files (``sources/`` and
``variants/`` of the data directory) are not in the bundle: the rows name them,
and they are copied as files.

Every column of every table is written, so a schema change changes the format:
bump :data:`FORMAT_VERSION` with :data:`db.schema.SCHEMA_VERSION` (the tests
compare the format's columns with the tables').

This module imports only SQLAlchemy and the standard library.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any, Iterable

from sqlalchemy import JSON, Float, Integer, String, Table, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from .schema import (SCHEMA_VERSION, Assignment, Base, Case, Preference, Rating, Reader, Study, UTCDateTime, Variant,
                     utcnow)

FORMAT = "medenhance-study-bundle"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)

# The study's rows, parents before children, and for each table its foreign-key columns and the
# bundle table they point at ("study": the bundle's one study; those columns are not written).
TABLES: tuple[tuple[str, type[Base], dict[str, str]], ...] = (
    ("cases", Case, {"study_id": "study"}),
    ("variants", Variant, {"case_id": "cases"}),
    ("readers", Reader, {"study_id": "study"}),
    ("assignments", Assignment, {"reader_id": "readers", "case_id": "cases", "variant_id": "variants",
                                 "left_variant_id": "variants", "right_variant_id": "variants"}),
    ("ratings", Rating, {"assignment_id": "assignments", "reader_id": "readers", "variant_id": "variants"}),
    ("preferences", Preference, {"assignment_id": "assignments", "reader_id": "readers", "case_id": "cases",
                                 "left_variant_id": "variants", "right_variant_id": "variants",
                                 "chosen_variant_id": "variants"}),
)
# Columns unique across the whole database, not just within a study: a bundle whose values are
# already present was imported here before (or is a copy of a study that lives here).
GLOBALLY_UNIQUE = (("cases", Case, "stored_name", "stored image names"),
                   ("variants", Variant, "file_name", "rendered image names"),
                   ("readers", Reader, "code_hash", "reader access codes"),
                   ("assignments", Assignment, "item_key", "assignment item keys"))
_CHUNK = 500  # values per IN (...) query: far below every engine's parameter limit
# Limits of what an import accepts, so a hostile bundle cannot make it hold or store unbounded data:
MAX_JSON_BYTES = 256 * 2**20  # a bundle's JSON text (python -m db import, study.json in a study zip)
MAX_TEXT_CHARS = 100_000  # a Text column (comments: the app keeps them under 2,000 characters)
MAX_JSON_VALUE_BYTES = 2**20  # a JSON column's value, serialised (options, case info, model lists)


class BundleError(ValueError):
    """The bundle cannot be imported here (malformed, or it clashes with what the database holds)."""


class BundleVersionError(BundleError):
    """The bundle's format or format version is not one this code reads."""


class DuplicateStudyError(BundleError):
    """The study (or its name, or its globally unique keys) is already in the database."""


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def bundle_columns(model: type[Base]) -> list[str]:
    """The columns a bundle row of ``model`` holds.

    The study row: every column but ``id``. Other rows: every column (``id`` and foreign keys
    bundle-local) but the foreign key to the study, which is implied.
    """
    if model is Study:
        return [c.name for c in _table(Study).columns if c.name != "id"]
    fks = next(fks for _, m, fks in TABLES if m is model)
    return [c.name for c in _table(model).columns if fks.get(c.name) != "study"]


def _encode(model: type[Base], row: Base, columns: Iterable[str]) -> dict[str, Any]:
    table = _table(model)
    out: dict[str, Any] = {}
    for name in columns:
        value = getattr(row, name)
        if isinstance(table.columns[name].type, UTCDateTime) and value is not None:
            value = value.isoformat()  # UTCDateTime hands back aware UTC: "...+00:00"
        out[name] = value
    return out


def export_study(session: Session, study_id: int) -> dict[str, Any]:
    """The study ``study_id`` and all its rows as a JSON-serialisable bundle (see the module docstring).

    Raises:
        LookupError: no such study.
        BundleError: a row of the study refers to another study's row (never written by the app).
    """
    study = session.get(Study, study_id)
    if study is None:
        raise LookupError(f"no study with id {study_id}")
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "exported_at": utcnow().isoformat(),
        "source": {"backend": session.get_bind().dialect.name, "study_id": study.id},
        "study": _encode(Study, study, bundle_columns(Study)),
    }
    local: dict[str, dict[int, int]] = {}  # table -> source id -> bundle-local id
    for name, model, fks in TABLES:
        rows = session.scalars(_rows_of(model, study_id).order_by(_table(model).c.id)).all()
        local[name] = {row.id: i for i, row in enumerate(rows, start=1)}  # type: ignore[attr-defined]
        encoded = []
        for row in rows:
            item = _encode(model, row, bundle_columns(model))
            item["id"] = local[name][item["id"]]
            for column, target in fks.items():
                if target != "study" and item[column] is not None:
                    if item[column] not in local[target]:  # the app never writes this; a hand edit could
                        raise BundleError(f"{name} row {local[name][row.id]} of study {study_id}: "  # type: ignore[attr-defined]
                                          f"{column} {item[column]} is a row of another study")
                    item[column] = local[target][item[column]]
            encoded.append(item)
        bundle[name] = encoded
    return bundle


def _rows_of(model: type[Base], study_id: int) -> Any:
    """SELECT of ``model``'s rows that belong to study ``study_id``."""
    if model in (Case, Reader):
        return select(model).where(model.study_id == study_id)  # type: ignore[attr-defined]
    if model is Variant:
        return select(Variant).join(Case, Variant.case_id == Case.id).where(Case.study_id == study_id)
    # Assignments and answers hang off readers (each reader belongs to exactly one study).
    return select(model).join(Reader, model.reader_id == Reader.id).where(Reader.study_id == study_id)  # type: ignore[attr-defined]


def _decode(model: type[Base], where: str, item: Any, columns: list[str]) -> dict[str, Any]:
    """A bundle row's column values, checked for shape and type, with datetimes parsed.

    Types are checked here because SQLite would store a string in an integer column as it is:
    what one engine accepts must be what the other accepts.
    """
    if not isinstance(item, dict):
        raise BundleError(f"{where}: expected an object, got {type(item).__name__}")
    missing = sorted(set(columns) - item.keys())
    unknown = sorted(item.keys() - set(columns))
    if missing or unknown:
        raise BundleError(f"{where}: missing columns {missing}, unknown columns {unknown}")
    table = _table(model)
    values = dict(item)
    for name in columns:
        column, value = table.columns[name], values[name]
        if value is None:
            if not column.nullable:
                raise BundleError(f"{where}: {name} must not be null")
            continue
        if isinstance(column.type, UTCDateTime):
            try:
                when = dt.datetime.fromisoformat(value)
            except (TypeError, ValueError):
                raise BundleError(f"{where}: {name} {value!r} is not an ISO 8601 datetime") from None
            if when.tzinfo is None:
                raise BundleError(f"{where}: {name} {value!r} has no UTC offset")
            values[name] = when
        elif isinstance(column.type, JSON):  # any JSON value (the app reads these with defaults), bounded
            try:
                encoded = len(json.dumps(value))
            except (TypeError, ValueError, RecursionError):
                raise BundleError(f"{where}: {name} is not a JSON value") from None
            if encoded > MAX_JSON_VALUE_BYTES:
                raise BundleError(f"{where}: {name} is {encoded:,} bytes of JSON, more than {MAX_JSON_VALUE_BYTES:,}")
        elif isinstance(column.type, Integer) and (not isinstance(value, int) or isinstance(value, bool)):
            raise BundleError(f"{where}: {name} {value!r} is not an integer")
        elif isinstance(column.type, Float) and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise BundleError(f"{where}: {name} {value!r} is not a number")
        elif isinstance(column.type, String):
            if not isinstance(value, str):
                raise BundleError(f"{where}: {name} {value!r} is not a string")
            # SQLite stores any length in a String(n) column, PostgreSQL refuses: the same on both.
            limit = column.type.length or MAX_TEXT_CHARS
            if len(value) > limit:
                raise BundleError(f"{where}: {name} is {len(value):,} characters, more than {limit:,}")
    return values


def read_bundle_file(path: str | os.PathLike[str]) -> Any:
    """A bundle's JSON text from a file, refused above :data:`MAX_JSON_BYTES` before it is read.

    Raises:
        BundleError: unreadable, too big or not JSON.
    """
    try:
        size = os.stat(path).st_size
        if size > MAX_JSON_BYTES:
            raise BundleError(f"{path} is {size:,} bytes, more than the {MAX_JSON_BYTES:,} a bundle may have")
        with open(path, "rb") as f:
            return json.loads(f.read(MAX_JSON_BYTES + 1))
    except OSError as e:
        raise BundleError(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BundleError(f"cannot read {path}: not JSON ({e})") from None


def _check_format(bundle: Any) -> None:
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        found = bundle.get("format") if isinstance(bundle, dict) else type(bundle).__name__
        raise BundleVersionError(f"not a {FORMAT} (format {found!r})")
    version = bundle.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise BundleVersionError(f"{FORMAT} format version {version!r} is not supported here (this code reads "
                                 f"{', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}): import it with the "
                                 "MedEnhance version that exported it, or a newer one")


def _decode_tables(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows decoded, with unique integer bundle-local ids."""
    decoded: dict[str, list[dict[str, Any]]] = {}
    for table, model, _ in TABLES:
        items = bundle.get(table)
        if not isinstance(items, list):
            raise BundleError(f"{table}: expected a list of rows")
        columns = bundle_columns(model)
        decoded[table] = [_decode(model, f"{table}[{i}]", item, columns) for i, item in enumerate(items)]
        ids = [row["id"] for row in decoded[table]]
        if len(set(ids)) != len(ids):
            raise BundleError(f"{table}: row ids are not unique")
    return decoded


def _check_not_present(session: Session, tables: dict[str, list[dict[str, Any]]], name: str) -> None:
    existing = session.scalar(select(Study.id).where(Study.name == name))
    if existing is not None:
        raise DuplicateStudyError(f"a study named {name!r} exists already (id {existing}): "
                                  "import it under a new name (import_study(..., name=...), `--name`)")
    for table, model, column, what in GLOBALLY_UNIQUE:
        values = [row[column] for row in tables[table]]
        attr = getattr(model, column)
        for start in range(0, len(values), _CHUNK):
            hit = session.scalar(select(attr).where(attr.in_(values[start:start + _CHUNK])).limit(1))
            if hit is not None:
                raise DuplicateStudyError(
                    f"the bundle's {what} are already in this database (e.g. {hit!r}): this study, or a copy "
                    "of it, was imported here before; it is not imported twice")


def import_study(session: Session, bundle: dict[str, Any], *, name: str | None = None) -> int:
    """Insert the study of ``bundle`` with new ids; returns the new study's id.

    Runs in the caller's transaction (``with database.write() as s``): on any error the caller's
    rollback leaves the database as it was.

    Args:
        session: a session of the target database, in a write transaction.
        bundle: what :func:`export_study` returned (parsed back from JSON, if it was written).
        name: the imported study's name (default: the bundle's); needed when that name is taken.
    Raises:
        BundleVersionError: not a bundle, or a format version this code does not read.
        DuplicateStudyError: the name is taken, or the rows were imported here before.
        BundleError: malformed rows, dangling references, or values the schema refuses.
    """
    _check_format(bundle)
    study_values = _decode(Study, "study", bundle.get("study"), bundle_columns(Study))
    if name is not None:
        study_values["name"] = name
    tables = _decode_tables(bundle)
    _check_not_present(session, tables, study_values["name"])
    try:
        study = Study(**study_values)
        session.add(study)
        session.flush()
        new_ids: dict[str, dict[int, int]] = {}
        for table, model, fks in TABLES:
            rows, local_ids = [], []
            for i, values in enumerate(tables[table]):
                values = dict(values)
                local_ids.append(values.pop("id"))
                for column, target in fks.items():
                    if target == "study":
                        values[column] = study.id
                    elif values[column] is not None:
                        if values[column] not in new_ids[target]:
                            raise BundleError(f"{table}[{i}]: {column} {values[column]!r} is not a row of "
                                              f"the bundle's {target}")
                        values[column] = new_ids[target][values[column]]
                rows.append(model(**values))
            session.add_all(rows)
            session.flush()  # the new ids: the next tables' foreign keys point at them
            new_ids[table] = dict(zip(local_ids, (r.id for r in rows), strict=True))  # type: ignore[attr-defined]
    except DBAPIError as e:
        # A check or unique constraint refused a row: the bundle was edited or is inconsistent.
        raise BundleError(f"the database refused the bundle's rows: {e.orig}") from e
    return study.id
