"""Storage of reader studies: SQLAlchemy tables and the database they live in.

    from db import open_database, Study, Rating
    database = open_database("studio-data")          # SQLite, WAL, schema created or checked (Alembic)
    with database.write() as s:                        # one transaction, committed at the end
        s.add(Study(name="pilot", design="both", seed=1, models=["clahe"]))

Schema upgrades: ``python -m db upgrade`` (:mod:`db.migrate`, revisions in
``db/migrations``); moving a study between databases: :mod:`db.bundle`.

This package imports only SQLAlchemy, Alembic and the standard library (never
models, studio, gradio or train).
"""

from .bundle import BundleError, BundleVersionError, DuplicateStudyError, export_study, import_study
from .engine import DB_FILE_NAME, Database, SchemaVersionError, database_url, default_data_dir, open_database
from .schema import (
    BLOCKS,
    CRITERIA,
    DESIGNS,
    KINDS,
    ORIGINAL,
    SCHEMA_VERSION,
    Assignment,
    Base,
    Case,
    Preference,
    Rating,
    Reader,
    SchemaMeta,
    Study,
    Variant,
    utcnow,
)

__all__ = [
    "Assignment",
    "Base",
    "BLOCKS",
    "BundleError",
    "BundleVersionError",
    "Case",
    "CRITERIA",
    "Database",
    "database_url",
    "default_data_dir",
    "DB_FILE_NAME",
    "DESIGNS",
    "DuplicateStudyError",
    "export_study",
    "import_study",
    "KINDS",
    "open_database",
    "ORIGINAL",
    "Preference",
    "Rating",
    "Reader",
    "SCHEMA_VERSION",
    "SchemaMeta",
    "SchemaVersionError",
    "Study",
    "utcnow",
    "Variant",
]
