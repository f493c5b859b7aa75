"""Where reader studies live: the data directory, the database and the admin password.

Environment (read by :meth:`StudySettings.from_env`):

    STUDIO_DATA_DIR        data directory (default ``./studio-data``; ``/data/medenhance``
                           when ``/data``, a Hugging Face Space's persistent storage, exists)
    DATABASE_URL           SQLAlchemy URL of a shared database (PostgreSQL for multi-site
                           studies); default SQLite ``<data dir>/studies.db``
    STUDIO_IMPORT_ROOT     the only server folder studies may be imported from (unset: no import)
    STUDIO_ADMIN_PASSWORD  the study admin password (unset: generated at first start,
                           printed once, stored hashed in ``<data dir>/admin.json``)

Images are stored under generated names only: ``sources/`` (de-identified case
images) and ``variants/`` (rendered images shown to readers).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from db import Database, default_data_dir, open_database
from studio.study.auth import AdminAuth

# Generated file names: 32 hex characters and an extension; anything else is refused.
_STORED_NAME = re.compile(r"[0-9a-f]{32}\.png")


@dataclass(frozen=True)
class StudySettings:
    """Reader-study settings (see the module docstring for the environment variables).

    Attributes:
        data_dir: data directory (database file, images, admin password hash).
        database_url: SQLAlchemy URL overriding the SQLite file, or None.
        import_root: the only folder studies may be imported from, or None (import disabled).
        admin_password: a fixed admin password, or None (generated once, stored hashed).
        max_display_side: long side (px) of the images shown to readers.
    """

    data_dir: Path
    database_url: str | None = None
    import_root: Path | None = None
    admin_password: str | None = None
    max_display_side: int = 2048

    @classmethod
    def from_env(cls) -> "StudySettings":
        root = os.environ.get("STUDIO_IMPORT_ROOT", "").strip()
        return cls(
            data_dir=default_data_dir(),
            database_url=os.environ.get("DATABASE_URL", "").strip() or None,
            import_root=Path(root).expanduser() if root else None,
            admin_password=os.environ.get("STUDIO_ADMIN_PASSWORD") or None,
        )


class StudyStore:
    """An opened data directory: the database, the image folders and the admin check."""

    def __init__(self, settings: StudySettings, database: Database, admin: AdminAuth) -> None:
        self.settings = settings
        self.db = database
        self.admin = admin
        self.data_dir = settings.data_dir.resolve()
        self.sources_dir = self.data_dir / "sources"
        self.variants_dir = self.data_dir / "variants"
        for d in (self.sources_dir, self.variants_dir):
            d.mkdir(parents=True, exist_ok=True)
        # Serializes study creation in this process (rendering is CPU-bound; one at a time is enough).
        self.create_lock = threading.Lock()

    def source_path(self, name: str) -> Path:
        """The stored case image called ``name`` (a generated name; anything else raises ValueError)."""
        return self._confined(self.sources_dir, name)

    def variant_path(self, name: str) -> Path:
        """The rendered variant image called ``name`` (a generated name; anything else raises ValueError)."""
        return self._confined(self.variants_dir, name)

    @staticmethod
    def _confined(folder: Path, name: str) -> Path:
        # Names come from our own database, but a tampered row must still not reach outside the folder.
        if not isinstance(name, str) or not _STORED_NAME.fullmatch(name):
            raise ValueError(f"not a generated file name: {name!r}")
        return folder / name

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()


def open_store(settings: StudySettings | None = None) -> StudyStore:
    """Open the data directory: create it, open and version-check the database, set up the admin password.

    Raises:
        db.SchemaVersionError: the database was written by another schema version.
    """
    settings = settings or StudySettings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = open_database(settings.data_dir, settings.database_url)
    try:
        admin = AdminAuth(settings.data_dir, settings.admin_password)
    except Exception:
        database.dispose()
        raise
    return StudyStore(settings, database, admin)
