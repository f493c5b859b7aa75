"""Shared set-up of the reader-study tests: the admin password, the models and small generated cases."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from db import CRITERIA

ADMIN = "admin-test-password"
MODELS = ("bicubic_x2", "clahe", "median")
ALL_MODELS = ("original", *MODELS)
SCORES = {c: 3 for c in CRITERIA}


def png_cases(folder: Path, n: int, size: int = 32) -> list[Path]:
    """``n`` distinct small grayscale PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = []
    for i in range(n):
        img = 0.5 + 0.35 * np.sin(xx / (1.5 + i * 0.4)) * np.cos(yy / (2.0 + i % 3)) + 0.01 * i
        p = folder / f"case_{i}.png"
        Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8)).save(p)
        out.append(p)
    return out


class RawRows:
    """Rows of one :meth:`RawDB.execute`, already fetched (``fetchone`` / ``fetchall`` / iteration)."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def __iter__(self):
        return iter(self._rows)


class RawDB:
    """The study database opened without our code (plain SQLAlchemy Core, text SQL, no pool, none of
    db.engine's hooks): an independent view of what is stored, on SQLite and PostgreSQL alike.

    Speaks the ``sqlite3`` subset the tests use: ``execute(sql, params)`` with ``?`` placeholders,
    ``fetchone``/``fetchall``/iteration, ``close``. Every call is its own short connection, so it
    always sees what is committed now. JSON columns come back as JSON text on both engines
    (psycopg parses them into dicts; SQLite hands back the stored text), so one assertion fits both.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url, poolclass=NullPool)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> RawRows:
        names = iter(range(len(params)))
        named = re.sub(r"\?", lambda _m: f":p{next(names)}", sql)
        with self.engine.connect() as conn:
            result = conn.execute(text(named), {f"p{i}": v for i, v in enumerate(params)})
            rows = [tuple(json.dumps(v) if isinstance(v, (dict, list)) else v for v in row) for row in result]
        return RawRows(rows)

    def dump(self) -> bytes:
        """Every row of every table as text: what a file-level grep sees, for a server without a file."""
        from sqlalchemy import inspect

        with self.engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            return "\n".join(repr(tuple(row)) for t in tables for row in conn.execute(text(f'SELECT * FROM "{t}"'))).encode()

    def close(self) -> None:
        self.engine.dispose()


def _raw(store) -> RawDB:
    """The store's database opened without our code: an independent view of what is stored (either engine)."""
    return RawDB(store.db.url)
