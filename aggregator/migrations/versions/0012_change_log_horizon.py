"""The change log is pruned; the highest `seq` pruned is kept, so a replica knows what it missed.

`index_changes` grew for ever (about two rows a story, plus every removal). Retention now
deletes its old entries (`[retention] change_log_days`). A replica whose watermark is below
the pruned horizon cannot replay what it missed (a re-embed or an edit keeps the story's id,
so the id reconcile at start does not see it): it reloads everything from the database
instead (`recommender.corpus`). One row, `id` 1, seeded with 0 (nothing pruned yet).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "index_changes_pruned",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(table, [{"id": 1, "seq": 0}])


def downgrade() -> None:
    op.drop_table("index_changes_pruned")
