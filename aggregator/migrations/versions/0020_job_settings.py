"""Singleton jobs record the settings of their last run (`job_locks.settings`).

Retention runs once an hour in a cluster, with the `[retention]` settings of whichever process
takes the job: one machine set to 30 days deleted for a cluster whose other machines keep
stories for ever, and nothing said so. Each run now records its settings (JSON), and a process
whose settings would delete more than the last run's does not run the job (api.runner).

A plain ADD COLUMN on both engines (as 0017).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job_locks", sa.Column("settings", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("job_locks", "settings")
