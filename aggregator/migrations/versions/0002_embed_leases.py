"""Embedding leases: indexers claim backlog stories so each is embedded once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import aggregator.schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("embed_lease_until", aggregator.schema.UTCDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    # Not a batch: on SQLite that copies `stories` and drops the old table, which deleted,
    # through the foreign keys, every event, vector and counter (and set the copies free).
    # SQLite has had DROP COLUMN since 3.35, as 0009 and 0010 use.
    op.drop_column("stories", "embed_lease_until")
