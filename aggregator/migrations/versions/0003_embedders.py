"""Embedders: the indexing processes and their recipes, so one recipe embeds a database.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import aggregator.schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "embedders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("owner", sa.String(length=120), nullable=False),
        sa.Column("recipe", sa.String(length=200), nullable=False),
        sa.Column("started_at", aggregator.schema.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_until", aggregator.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_embedders_lease_until"), "embedders", ["lease_until"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_embedders_lease_until"), table_name="embedders")
    op.drop_table("embedders")
