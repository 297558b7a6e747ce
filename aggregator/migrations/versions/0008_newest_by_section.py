"""Stories of one category or one source, newest first, read from an index in that order.

A reader's follows draw their candidates as the newest stories of each followed category and
source, and `/v1/stories?category=` and trending per category ask the same. With an index on
the category alone, SQLite found every story of the category and sorted them all before
taking 50 (a temporary B-tree over ~200k rows per section at a million stories). The index
now holds the sort order too; it still serves a plain lookup by category, so the
single-column one goes (no more indexes to keep up on every stored story than before).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for column in ("category", "source"):
        op.create_index(f"ix_stories_{column}_sort", "stories", [column, "sort_at", "id"], unique=False)
        op.drop_index(f"ix_stories_{column}", table_name="stories")


def downgrade() -> None:
    for column in ("category", "source"):
        op.create_index(f"ix_stories_{column}", "stories", [column], unique=False)
        op.drop_index(f"ix_stories_{column}_sort", table_name="stories")
