"""Storage of reader studies: SQLAlchemy tables and the database they live in.

    from db import open_database, Study, Rating
    database = open_database("studio-data")          # SQLite, WAL, schema version checked
    with database.write() as s:                        # one transaction, committed at the end
        s.add(Study(name="pilot", design="both", seed=1, models=["clahe"]))

This package imports only SQLAlchemy and the standard library (never models,
studio, gradio or train).
"""

from .engine import DB_FILE_NAME, Database, SchemaVersionError, database_url, open_database
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
    "Case",
    "CRITERIA",
    "Database",
    "database_url",
    "DB_FILE_NAME",
    "DESIGNS",
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
