"""The widget's events counted per UTC day, story and page (`event_days`), for the report.

`GET /v1/stats` counted the raw events of its period: ~1 s for 300k events, and a widget
under 100k page views a day sends ~12M in 30 days (40-50 s a report). The store now adds
each batch's fresh events to these counts in the transaction that stores them, and the
report reads the counts. Existing events are counted here, in one INSERT ... SELECT.

The day is cut as the report cut it (`Store._utc_day`): SQLite keeps the times as naive
UTC text, PostgreSQL as timestamptz, read in UTC whatever the session's time zone. The page
is "" for events without one (a key column; NULLs never conflict) and cut to 2,000
characters (`schema.EVENT_DAY_PAGE_CHARS`, written out: a migration does not move with the
code).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

UTC_DAY = {
    "sqlite": "strftime('%Y-%m-%d', at)",
    "postgresql": "(at AT TIME ZONE 'UTC')::date",
}


def upgrade() -> None:
    op.create_table(
        "event_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("story_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("page", sa.Text(), nullable=False),
        sa.Column("impressions", sa.Integer(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("reads", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["story_id"], ["stories.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("day", "story_id", "page"),
        sqlite_with_rowid=False,
    )
    dialect = op.get_bind().dialect.name
    op.execute(
        "INSERT INTO event_days (day, story_id, page, impressions, clicks, reads) "
        f"SELECT {UTC_DAY[dialect]}, story_id, substr(coalesce(page, ''), 1, 2000), "
        "sum(CASE WHEN type = 'impression' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN type = 'click' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN type = 'read' THEN 1 ELSE 0 END) "
        "FROM events WHERE type IN ('impression', 'click', 'read') GROUP BY 1, 2, 3")
    # The indexes after the rows: one build each, not an insert per row.
    op.create_index(op.f("ix_event_days_story_id"), "event_days", ["story_id"], unique=False)
    if dialect == "sqlite":  # the top pages from the index alone; see schema.EventDayRow
        op.create_index("ix_event_days_page", "event_days", ["page", "day", "impressions", "clicks"],
                        unique=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_event_days_page", table_name="event_days")
    op.drop_index(op.f("ix_event_days_story_id"), table_name="event_days")
    op.drop_table("event_days")
