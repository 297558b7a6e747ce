"""Stories keep their publisher's tags, so a reader's muted topics match them.

Feeds carry tags (RSS/Atom <category>, JSON Feed `tags`, news-sitemap keywords) and a
reader's `mute_topics` were meant to match them as well as the title, but the tags were
dropped before the store: muting "Love Island" hid only the stories whose title said it.
`tags` holds them one a line (cleaned tags never hold a line break); NULL when a story has
none. Stories stored before stay NULL until a collection round or an import brings them
again (the store then updates the story and its cards, as for a new author or image).

A plain ADD COLUMN on both engines: on SQLite, batch_alter_table would copy the table and
lose the triggers of migrations 0004 and 0006.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("stories", sa.Column("tags", sa.Text(), nullable=True))


def downgrade() -> None:
    # SQLite (3.35+) drops a column in place too; no copy of the table, so the triggers stay.
    op.drop_column("stories", "tags")
