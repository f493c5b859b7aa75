"""The reader-study tables (SQLAlchemy 2.0 declarative, typed with ``Mapped``).

One study = cases (de-identified source images) x variants (one rendered image
per case and model, the identity ``"original"`` included), read by readers
through their own randomized assignment list; every answer is a
:class:`Rating` (Likert, one variant) or a :class:`Preference` (2AFC, two
variants of one case).

Duplicate answers are impossible by construction: one answer per assignment
item (``UNIQUE(assignment_id)``) and one rating per reader, variant and
replicate. The assignment's ``item_key`` is the idempotency key the client
sends back with its answer.

No patient identifiers live here: cases keep a generated file name, content
hashes and technical image facts (modality, size, window) only.

This module imports only SQLAlchemy and the standard library.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The SQLite file of a data directory (STUDIO_DATA_DIR) when no DATABASE_URL is given.
DB_FILE_NAME = "studies.db"
# Bump on every change of tables or columns; a database with another version is refused at start-up.
SCHEMA_VERSION = 1

# Study designs, assignment kinds and blocks (stored as short strings, readable in SQL and CSV).
DESIGNS = ("likert", "2afc", "both")
KINDS = ("likert", "pair")
BLOCKS = ("likert", "pairs", "repeat")
# The 5-point Likert criteria of a rating, in display and export order.
CRITERIA = ("overall", "noise", "sharpness", "contrast", "artefacts", "confidence")
# The reference variant every study includes: the source image through the same display path.
ORIGINAL = "original"


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no timezone type and returns naive values; we store naive UTC
    and hand back aware UTC, so comparisons never mix naive and aware values.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Optional[dt.datetime], dialect: Any) -> Optional[dt.datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use db.schema.utcnow()")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Optional[dt.datetime], dialect: Any) -> Optional[dt.datetime]:
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of every table here."""


class SchemaMeta(Base):
    """Key/value facts about the database itself (``schema_version``, ``created_at``)."""

    __tablename__ = "schema_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class Study(Base):
    """A reader study: its design, models and status.

    ``options`` holds the design parameters (pair mode, repeats, washout days,
    display window, display size) as JSON so new options need no migration.
    """

    __tablename__ = "studies"
    __table_args__ = (
        CheckConstraint("design IN ('likert', '2afc', 'both')", name="ck_study_design"),
        CheckConstraint("status IN ('open', 'closed')", name="ck_study_status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    design: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")
    seed: Mapped[int] = mapped_column(Integer)
    models: Mapped[list[str]] = mapped_column(JSON)  # enhancement models, without "original"
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime, nullable=True)

    cases: Mapped[list["Case"]] = relationship(back_populates="study", order_by="Case.id")
    readers: Mapped[list["Reader"]] = relationship(back_populates="study", order_by="Reader.id")


class Case(Base):
    """One source image of a study, stored de-identified under a generated name.

    ``stored_name`` is a file under the data directory's ``sources/`` folder:
    the image as the models see it (windowed, [0, 1], written as PNG), so no
    DICOM header (and no patient identifier) is kept. ``upload_sha256`` is the
    hash of the file as received (provenance, duplicate detection);
    ``stored_sha256`` the hash of the stored copy.
    """

    __tablename__ = "cases"
    __table_args__ = (UniqueConstraint("study_id", "upload_sha256", name="uq_case_upload"),
                      UniqueConstraint("study_id", "label", name="uq_case_label"))

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(32))  # "C001": what exports call the case
    stored_name: Mapped[str] = mapped_column(String(128), unique=True)
    upload_sha256: Mapped[str] = mapped_column(String(64))
    stored_sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # modality, bits, window: no identifiers
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    study: Mapped[Study] = relationship(back_populates="cases")
    variants: Mapped[list["Variant"]] = relationship(back_populates="case", order_by="Variant.id")


class Variant(Base):
    """One rendered image of a case: ``model``'s output (or ``"original"``), cached as a PNG.

    Provenance: model name, weights SHA-256 (None for classical methods and
    the original), the options used, and render time. ``file_name`` is
    random, so a file name shown to a browser says nothing about the model.
    """

    __tablename__ = "variants"
    __table_args__ = (UniqueConstraint("case_id", "model", name="uq_variant_case_model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(64))
    weights_sha256: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    model_options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    file_name: Mapped[str] = mapped_column(String(128), unique=True)
    file_sha256: Mapped[str] = mapped_column(String(64))
    output_width: Mapped[int] = mapped_column(Integer)  # the model's own output size
    output_height: Mapped[int] = mapped_column(Integer)
    render_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    case: Mapped[Case] = relationship(back_populates="variants")


class Reader(Base):
    """A reader of one study, known by a pseudonymous label and a hashed access code.

    Access codes are random (~60 bits), so an unsalted SHA-256 is safe to
    store and lets each request look the reader up by an index.
    """

    __tablename__ = "readers"
    __table_args__ = (UniqueConstraint("study_id", "label", name="uq_reader_label"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(32))  # "R01"
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    seed: Mapped[int] = mapped_column(Integer)  # this reader's order and left/right draws
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime, nullable=True)

    study: Mapped[Study] = relationship(back_populates="readers")


class Assignment(Base):
    """One item of a reader's randomized reading list.

    ``kind == "likert"``: rate ``variant_id``. ``kind == "pair"``: choose
    between ``left_variant_id`` and ``right_variant_id`` (sides drawn per item
    and recorded here). ``replicate`` is 0 for the first reading, 1 for the
    repeat block read for intra-reader agreement (available only after the
    study's washout). ``item_key`` is random: the client's idempotency key.
    """

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("reader_id", "position", name="uq_assignment_position"),
        CheckConstraint("kind IN ('likert', 'pair')", name="ck_assignment_kind"),
        CheckConstraint("(kind = 'likert' AND variant_id IS NOT NULL) OR "
                        "(kind = 'pair' AND left_variant_id IS NOT NULL AND right_variant_id IS NOT NULL "
                        "AND left_variant_id <> right_variant_id)", name="ck_assignment_variants"),
        Index("ix_assignment_open", "reader_id", "answered_at", "position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    block: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    replicate: Mapped[int] = mapped_column(Integer, default=0)
    variant_id: Mapped[Optional[int]] = mapped_column(ForeignKey("variants.id"), nullable=True)
    left_variant_id: Mapped[Optional[int]] = mapped_column(ForeignKey("variants.id"), nullable=True)
    right_variant_id: Mapped[Optional[int]] = mapped_column(ForeignKey("variants.id"), nullable=True)
    item_key: Mapped[str] = mapped_column(String(64), unique=True)
    last_shown_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime, nullable=True)
    answered_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime, nullable=True)


def _likert(column: str) -> CheckConstraint:
    return CheckConstraint(f"{column} BETWEEN 1 AND 5", name=f"ck_rating_{column}")


class Rating(Base):
    """A reader's 5-point Likert scores of one variant (1 = worst, 5 = best on every criterion).

    ``artefacts`` is scored like the others: 5 = no disturbing artefacts.
    ``seconds`` is measured by the server: from the item last being shown to the answer.
    """

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("assignment_id", name="uq_rating_assignment"),
        UniqueConstraint("reader_id", "variant_id", "replicate", name="uq_rating_reader_variant"),
        *(_likert(c) for c in CRITERIA),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"), index=True)
    variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id", ondelete="CASCADE"), index=True)
    replicate: Mapped[int] = mapped_column(Integer, default=0)
    overall: Mapped[int] = mapped_column(Integer)
    noise: Mapped[int] = mapped_column(Integer)
    sharpness: Mapped[int] = mapped_column(Integer)
    contrast: Mapped[int] = mapped_column(Integer)
    artefacts: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[int] = mapped_column(Integer)  # diagnostic confidence
    comment: Mapped[str] = mapped_column(Text, default="")
    seconds: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Preference(Base):
    """A reader's two-alternative forced choice between two variants of one case.

    ``left_variant_id``/``right_variant_id`` repeat the sides the reader saw;
    ``choice`` is ``"left"`` or ``"right"``; ``confidence`` 1 (guess) ... 5 (certain).
    """

    __tablename__ = "preferences"
    __table_args__ = (
        UniqueConstraint("assignment_id", name="uq_preference_assignment"),
        CheckConstraint("choice IN ('left', 'right')", name="ck_preference_choice"),
        CheckConstraint("confidence BETWEEN 1 AND 5", name="ck_preference_confidence"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    replicate: Mapped[int] = mapped_column(Integer, default=0)
    left_variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"))
    right_variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"))
    chosen_variant_id: Mapped[int] = mapped_column(ForeignKey("variants.id"))
    choice: Mapped[str] = mapped_column(String(8))
    confidence: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    seconds: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
