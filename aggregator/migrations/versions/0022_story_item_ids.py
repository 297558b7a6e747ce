"""Stories keep their feed's item id (`stories.item_id`), indexed by source.

A publisher that rewrites a story often gives it a new slug, headline and lead: the feed
then carries it under a new URL with another body, and it was stored as a second story
beside the first (copies are matched by URL or by body). Feeds give each item a stable id
for this (RSS <guid>, Atom <id>, JSON Feed `id`); the store now keeps it, and finds the
story a source moved by (source, item id). NULL for stories stored before, until their
source's next fetch brings them again.

A plain ADD COLUMN on both engines (as 0009: batch_alter_table would copy the table on
SQLite and lose the triggers of 0004 and 0006), and a plain index.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-15
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("stories", sa.Column("item_id", sa.Text(), nullable=True))
    op.create_index("ix_stories_source_item_id", "stories", ["source", "item_id"])


def downgrade() -> None:
    op.drop_index("ix_stories_source_item_id", table_name="stories")
    op.drop_column("stories", "item_id")
