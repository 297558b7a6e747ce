"""Sources remember the URL the operator configured apart from the URL they are fetched from.

A permanent redirect (301/308) moves `sources.url`; the next sync of sources.toml compared
that moved URL with the file's, took it for an operator's edit and put the old URL back,
dropping the validators and making the source due (every `tidings sources list` did it).
`config_url` is the file's URL as last synced: only a change of it is an edit.

Existing rows start with their current URL: a row already moved by a redirect is taken
back to the file's URL once, at the next sync, and learns the redirect again at its next
fetch (one extra request), rather than missing a real edit made during the upgrade.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("config_url", sa.Text(), nullable=True))
    op.execute("UPDATE sources SET config_url = url")


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("config_url")
