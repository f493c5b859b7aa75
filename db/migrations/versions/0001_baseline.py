"""Baseline: the reader-study schema of SCHEMA_VERSION 1 (the tables before Alembic).

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Databases created before Alembic (schema_meta says version 1, no alembic_version
table) already have exactly these tables: db.migrate stamps them at this revision
instead of running it. Spelled out column by column, never imported from
db.schema, so this revision keeps creating version 1 when the models move on.
"""
from __future__ import annotations

import datetime as dt
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SCHEMA_VERSION = 1


def _likert(column: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(f"{column} BETWEEN 1 AND 5", name=f"ck_rating_{column}")


def upgrade() -> None:
    schema_meta = op.create_table(
        "schema_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
    )
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("design", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint("design IN ('likert', '2afc', 'both')", name="ck_study_design"),
        sa.CheckConstraint("status IN ('open', 'closed')", name="ck_study_status"),
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("stored_name", sa.String(128), nullable=False),
        sa.Column("upload_sha256", sa.String(64), nullable=False),
        sa.Column("stored_sha256", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("study_id", "upload_sha256", name="uq_case_upload"),
        sa.UniqueConstraint("study_id", "label", name="uq_case_label"),
        sa.UniqueConstraint("stored_name"),
    )
    op.create_index("ix_cases_study_id", "cases", ["study_id"])
    op.create_table(
        "readers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("study_id", "label", name="uq_reader_label"),
        sa.UniqueConstraint("code_hash"),
    )
    op.create_index("ix_readers_study_id", "readers", ["study_id"])
    op.create_table(
        "variants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=True),
        sa.Column("model_options", sa.JSON(), nullable=False),
        sa.Column("file_name", sa.String(128), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("output_width", sa.Integer(), nullable=False),
        sa.Column("output_height", sa.Integer(), nullable=False),
        sa.Column("render_seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("case_id", "model", name="uq_variant_case_model"),
        sa.UniqueConstraint("file_name"),
    )
    op.create_index("ix_variants_case_id", "variants", ["case_id"])
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("reader_id", sa.Integer(), sa.ForeignKey("readers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("block", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("replicate", sa.Integer(), nullable=False),
        sa.Column("variant_id", sa.Integer(), sa.ForeignKey("variants.id"), nullable=True),
        sa.Column("left_variant_id", sa.Integer(), sa.ForeignKey("variants.id"), nullable=True),
        sa.Column("right_variant_id", sa.Integer(), sa.ForeignKey("variants.id"), nullable=True),
        sa.Column("item_key", sa.String(64), nullable=False),
        sa.Column("last_shown_at", sa.DateTime(), nullable=True),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("reader_id", "position", name="uq_assignment_position"),
        sa.CheckConstraint("kind IN ('likert', 'pair')", name="ck_assignment_kind"),
        sa.CheckConstraint("(kind = 'likert' AND variant_id IS NOT NULL) OR "
                           "(kind = 'pair' AND left_variant_id IS NOT NULL AND right_variant_id IS NOT NULL "
                           "AND left_variant_id <> right_variant_id)", name="ck_assignment_variants"),
        sa.UniqueConstraint("item_key"),
    )
    op.create_index("ix_assignment_open", "assignments", ["reader_id", "answered_at", "position"])
    op.create_index("ix_assignments_reader_id", "assignments", ["reader_id"])
    op.create_table(
        "preferences",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("assignment_id", sa.Integer(), sa.ForeignKey("assignments.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("reader_id", sa.Integer(), sa.ForeignKey("readers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
        sa.Column("replicate", sa.Integer(), nullable=False),
        sa.Column("left_variant_id", sa.Integer(), sa.ForeignKey("variants.id"), nullable=False),
        sa.Column("right_variant_id", sa.Integer(), sa.ForeignKey("variants.id"), nullable=False),
        sa.Column("chosen_variant_id", sa.Integer(), sa.ForeignKey("variants.id"), nullable=False),
        sa.Column("choice", sa.String(8), nullable=False),
        sa.Column("confidence", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("assignment_id", name="uq_preference_assignment"),
        sa.CheckConstraint("choice IN ('left', 'right')", name="ck_preference_choice"),
        sa.CheckConstraint("confidence BETWEEN 1 AND 5", name="ck_preference_confidence"),
    )
    op.create_index("ix_preferences_reader_id", "preferences", ["reader_id"])
    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("assignment_id", sa.Integer(), sa.ForeignKey("assignments.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("reader_id", sa.Integer(), sa.ForeignKey("readers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("variant_id", sa.Integer(), sa.ForeignKey("variants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("replicate", sa.Integer(), nullable=False),
        sa.Column("overall", sa.Integer(), nullable=False),
        sa.Column("noise", sa.Integer(), nullable=False),
        sa.Column("sharpness", sa.Integer(), nullable=False),
        sa.Column("contrast", sa.Integer(), nullable=False),
        sa.Column("artefacts", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("assignment_id", name="uq_rating_assignment"),
        sa.UniqueConstraint("reader_id", "variant_id", "replicate", name="uq_rating_reader_variant"),
        *(_likert(c) for c in ("overall", "noise", "sharpness", "contrast", "artefacts", "confidence")),
    )
    op.create_index("ix_ratings_variant_id", "ratings", ["variant_id"])
    op.create_index("ix_ratings_reader_id", "ratings", ["reader_id"])
    # The version facts the app checked before Alembic, kept so code of either era reads them.
    created = dt.datetime.now(dt.timezone.utc).isoformat()
    op.bulk_insert(schema_meta, [{"key": "schema_version", "value": str(SCHEMA_VERSION)},
                                 {"key": "created_at", "value": created}])


def downgrade() -> None:
    for index, table in (("ix_ratings_reader_id", "ratings"), ("ix_ratings_variant_id", "ratings"),
                         ("ix_preferences_reader_id", "preferences"), ("ix_assignments_reader_id", "assignments"),
                         ("ix_assignment_open", "assignments"), ("ix_variants_case_id", "variants"),
                         ("ix_readers_study_id", "readers"), ("ix_cases_study_id", "cases")):
        op.drop_index(index, table_name=table)
    for table in ("ratings", "preferences", "assignments", "variants", "readers", "cases", "studies", "schema_meta"):
        op.drop_table(table)
