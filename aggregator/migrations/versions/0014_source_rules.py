"""Sources carry their `keep` and `block` rules (sources.toml), which items become stories.

Collectors take each source's settings from its row, not from the file: the rules are
columns like the rest of them. Empty for none, which every existing source has.

A plain ADD COLUMN on both engines (as 0009): batch_alter_table would copy the table on SQLite.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("keep_rule", sa.Text(), nullable=False, server_default=""))
    op.add_column("sources", sa.Column("block_rule", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("sources", "block_rule")
    op.drop_column("sources", "keep_rule")
