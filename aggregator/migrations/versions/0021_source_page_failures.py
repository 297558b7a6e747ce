"""Sources count their article pages' failed rounds (`sources.page_failures`).

A full_text page that keeps failing stops holding its feed's validators back after three
failed rounds in a row (aggregator.collect.PAGE_TRIES). The rounds were counted in the
collector's memory, so a cron of `tidings collect --once` began each run at none: its failing
pages never reached three, and the whole feed was downloaded every run. They are counted on
the source's row now ({url: rounds}, JSON; NULL for none). Existing rows start at none, as
after a restart before.

A plain ADD COLUMN on both engines (as 0017).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("page_failures", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("sources", "page_failures")
