"""A story deleted by any means logs its removal for the indexes, and its copies keep a root.

Retention logged its removals itself; a story deleted by SQL (an operator's clean-up, a
takedown) stayed in every running API's index and was served until a restart reconciled it.
The database now logs each deleted story in `index_changes`, whoever deletes it.

The syndicated copies of a deleted story (`duplicate_of` pointing at it) were all set free
(retention, PostgreSQL's ON DELETE SET NULL), so one article became several stories, each
embedded and shown beside the others; a delete from the sqlite3 shell (foreign keys off)
left them pointing at nothing, hidden for ever. Before the row goes, its lowest-id copy
becomes the story and the other copies point at it (the same rule as `Store._reroot`).
The index on `duplicate_of` (copies only) makes that lookup, and the foreign key's, a seek.

PostgreSQL takes the change log's advisory lock first, as the store's writers do, so the
log's commit order stays its sequence order (see `Store._change_log_turn`).

A later migration that rebuilds `stories` on SQLite (batch_alter_table copies the table) must
create the triggers again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CHANGE_LOG_LOCK = 7_105_002  # aggregator.store.CHANGE_LOG_LOCK when this migration was written


def upgrade() -> None:
    # Copies only: with the NULLs indexed too, SQLite took this index for "duplicate_of IS
    # NULL" (every list of stories) and sorted the whole table (feeds 15 -> 70 ms at 100k).
    op.create_index("ix_stories_duplicate_of", "stories", ["duplicate_of"], unique=False,
                    sqlite_where=sa.text("duplicate_of IS NOT NULL"),
                    postgresql_where=sa.text("duplicate_of IS NOT NULL"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION tidings_story_reroot() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE root bigint;
            BEGIN
                SELECT min(id) INTO root FROM stories WHERE duplicate_of = OLD.id;
                IF root IS NOT NULL THEN
                    UPDATE stories SET duplicate_of = root WHERE duplicate_of = OLD.id AND id <> root;
                    UPDATE stories SET duplicate_of = NULL WHERE id = root;
                END IF;
                RETURN OLD;
            END $$""")
        op.execute("""
            CREATE TRIGGER stories_reroot BEFORE DELETE ON stories
            FOR EACH ROW EXECUTE FUNCTION tidings_story_reroot()""")
        op.execute(f"""
            CREATE FUNCTION tidings_story_removed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_advisory_xact_lock({CHANGE_LOG_LOCK});
                INSERT INTO index_changes (story_id, op, at) VALUES (OLD.id, 'remove', now());
                RETURN NULL;
            END $$""")
        op.execute("""
            CREATE TRIGGER stories_removed AFTER DELETE ON stories
            FOR EACH ROW EXECUTE FUNCTION tidings_story_removed()""")
    else:
        # The root's id is read before any copy moves, and the first UPDATE leaves the root
        # itself pointing at the deleted row, so the subquery answers the same on every row.
        op.execute("""
            CREATE TRIGGER stories_reroot BEFORE DELETE ON stories FOR EACH ROW
            WHEN EXISTS (SELECT 1 FROM stories WHERE duplicate_of = OLD.id)
            BEGIN
                UPDATE stories SET duplicate_of = (SELECT min(id) FROM stories WHERE duplicate_of = OLD.id)
                WHERE duplicate_of = OLD.id
                  AND id > (SELECT min(id) FROM stories WHERE duplicate_of = OLD.id);
                UPDATE stories SET duplicate_of = NULL WHERE duplicate_of = OLD.id;
            END""")
        # SQLAlchemy's SQLite text form of a UTC time, to the microsecond.
        op.execute("""
            CREATE TRIGGER stories_removed AFTER DELETE ON stories FOR EACH ROW
            BEGIN
                INSERT INTO index_changes (story_id, op, at)
                VALUES (OLD.id, 'remove', strftime('%Y-%m-%d %H:%M:%f000', 'now'));
            END""")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for trigger in ("stories_removed", "stories_reroot"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (" ON stories" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS tidings_story_removed()")
        op.execute("DROP FUNCTION IF EXISTS tidings_story_reroot()")
    op.drop_index("ix_stories_duplicate_of", table_name="stories")
