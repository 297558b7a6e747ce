"""Reader deletions: when each reader was forgotten, for a minute.

With several API processes, a reader's event accepted by one process and written just after
another process deleted the reader brought the reader back (a privacy request undone).
Events of a reader deleted within the last minute are now dropped (`Store.add_events`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import aggregator.schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reader_deletions",
        sa.Column("reader_id", sa.String(length=128), nullable=False),
        sa.Column("deleted_at", aggregator.schema.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("reader_id"),
    )
    op.create_index(op.f("ix_reader_deletions_deleted_at"), "reader_deletions", ["deleted_at"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_reader_deletions_deleted_at"), table_name="reader_deletions")
    op.drop_table("reader_deletions")
