"""Events carry the page the widget's block was shown under, so the report says which
publisher pages' blocks get clicked (`GET /v1/stats` `pages`).

The canonical URL of the article page; NULL for events without one: API clients, and every
event stored before (the widget did not send it), which the report leaves out of `pages`.

A plain ADD COLUMN on both engines (as 0009): batch_alter_table would copy the table on SQLite.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("page", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("events", "page")
