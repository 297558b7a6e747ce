"""Takedowns: URLs (and bodies) the operator removed stay out of the store.

A story deleted by hand (the README's `DELETE FROM stories`, for a legal request or a
retraction) was collected again at the next round its feed still listed it, and imported
again by the next `tidings import` of a file that held it. `takedowns` holds each spelling of
a taken-down URL with the body hash it had; the store skips drafts that match either
(`Store.upsert_stories`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from aggregator.schema import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "takedowns",
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False, server_default=""),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("variant_of", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("url"),
    )
    op.create_index("ix_takedowns_content_hash", "takedowns", ["content_hash"])


def downgrade() -> None:
    op.drop_index("ix_takedowns_content_hash", table_name="takedowns")
    op.drop_table("takedowns")
