"""Stories keep their category and source as filters compare them: without case.

`category=Politics` found nothing where stories were stored as "politics" (and an operator
may write `category = "Politics"` in sources.toml, an import line "politics"): every lookup
compared the stored names exactly. Comparing lower(category) would have left the index of
migration 0008 unused (a scan and a sort of the whole table), and SQLite's lower() folds
ASCII only while PostgreSQL's follows its locale. So the store writes each story's keys
(`aggregator.names.name_key`) beside its names, and the newest-first indexes are on the keys
instead of the names (as many indexes to keep up as before). Existing rows get their keys
here: one UPDATE per distinct name, each on the old index before it goes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from aggregator.names import name_key

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COLUMNS = ("category", "source")


def upgrade() -> None:
    conn = op.get_bind()
    for column in COLUMNS:
        key = f"{column}_key"
        op.add_column("stories", sa.Column(key, sa.String(length=255), nullable=False,
                                           server_default=""))
        names = conn.execute(sa.text(f"SELECT DISTINCT {column} FROM stories")).scalars().all()
        update = sa.text(f"UPDATE stories SET {key} = :key WHERE {column} = :name")
        for name in names:
            if name_key(name):  # "" is the column's default
                # Cut to the column, as the store writes keys (store.key_column).
                conn.execute(update, {"key": name_key(name)[:255], "name": name})
        op.create_index(f"ix_stories_{key}_sort", "stories", [key, "sort_at", "id"], unique=False)
        op.drop_index(f"ix_stories_{column}_sort", table_name="stories")


def downgrade() -> None:
    for column in COLUMNS:
        op.create_index(f"ix_stories_{column}_sort", "stories", [column, "sort_at", "id"], unique=False)
        op.drop_index(f"ix_stories_{column}_key_sort", table_name="stories")
        # Not a batch: on SQLite that copies the table and loses its delete triggers (0006);
        # SQLite has had DROP COLUMN since 3.35.
        op.drop_column("stories", f"{column}_key")
