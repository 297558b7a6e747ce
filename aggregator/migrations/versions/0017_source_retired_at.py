"""Sources remember when they were removed from sources.toml (`retired_at`).

A source removed from the file was hidden from `sources list` and `/v1/sources` while its
stories stayed and were served: nobody could see whose they were, nor remove them. A
retired source is now listed, with when it was removed, while it holds stories.

Existing retired rows take their `updated_at`: retirement was the last write of such a row
(nothing fetches or edits a retired source).

A plain ADD COLUMN on both engines (as 0014): batch_alter_table would copy the table on SQLite.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-11
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from aggregator.schema import UTCDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("retired_at", UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE sources SET retired_at = updated_at WHERE NOT in_config")


def downgrade() -> None:
    op.drop_column("sources", "retired_at")
