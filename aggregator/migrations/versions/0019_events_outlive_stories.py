"""A reader's events outlive the story they name (no foreign key from `events.story_id`).

The key was ON DELETE CASCADE: a story deleted by retention, a takedown or a source purge
took every reader's events of it along, so a reader's export (`GET /v1/readers/{id}`), which
promises every event they sent, silently lost their reads of it. The events now stay,
naming the story's id; the export marks such a story removed, and the feed and trending
leave it out (`FeedService`), as the widget report does (`event_days` and the story counters
keep their cascade). New events for a story no longer stored are still skipped when written
(`Store.store_events`).

SQLite cannot drop a foreign key: the table is rebuilt (copied, dropped, renamed) with its
indexes. Nothing references `events`, so the DROP deletes nothing else. Downgrading deletes
the events of stories no longer stored first, as the cascade would have.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-13
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

STORY_FK = "events_story_id_fkey"  # PostgreSQL's name for 0001's unnamed key


def events_table(*, story_key: bool) -> sa.Table:
    """`events` as 0018 left it (columns, keys, indexes), with or without its key to stories:
    SQLite's rebuild copies into this definition."""
    from aggregator.schema import UTCDateTime

    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    story = [sa.ForeignKeyConstraint(["story_id"], ["stories.id"], ondelete="CASCADE")] if story_key else []
    return sa.Table(
        "events", sa.MetaData(),
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("event_key", sa.String(length=160), nullable=False),
        sa.Column("reader_id", sa.String(length=128), nullable=False),
        sa.Column("story_id", big_id, nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("dwell_s", sa.Float(), nullable=True),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("page", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["reader_id"], ["readers.id"], ondelete="CASCADE"),
        *story,
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_key"),
        sa.Index("ix_events_at", "at"),
        sa.Index("ix_events_story_id", "story_id"),
        sa.Index("ix_events_reader_type_at", "reader_id", "type", "at", "story_id"),
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(STORY_FK, "events", type_="foreignkey")
        return
    with op.batch_alter_table("events", recreate="always", copy_from=events_table(story_key=False)):
        pass


def downgrade() -> None:
    op.execute("DELETE FROM events WHERE NOT EXISTS (SELECT 1 FROM stories WHERE stories.id = events.story_id)")
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key(STORY_FK, "events", "stories", ["story_id"], ["id"], ondelete="CASCADE")
        return
    with op.batch_alter_table("events", recreate="always", copy_from=events_table(story_key=True)):
        pass
