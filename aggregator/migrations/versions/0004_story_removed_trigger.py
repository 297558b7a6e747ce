"""A story deleted by any means logs its removal for the indexes.

Retention logged its removals itself; a story deleted by SQL (an operator's clean-up, a
takedown) stayed in every running API's index and was served until a restart reconciled it.
The database now logs each deleted story in `index_changes`, whoever deletes it.

PostgreSQL takes the change log's advisory lock first, as the store's writers do, so the
log's commit order stays its sequence order (see `Store._change_log_turn`).

A later migration that rebuilds `stories` on SQLite (batch_alter_table copies the table) must
create the trigger again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CHANGE_LOG_LOCK = 7_105_002  # aggregator.store.CHANGE_LOG_LOCK when this migration was written


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
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
        # SQLAlchemy's SQLite text form of a UTC time, to the microsecond.
        op.execute("""
            CREATE TRIGGER stories_removed AFTER DELETE ON stories FOR EACH ROW
            BEGIN
                INSERT INTO index_changes (story_id, op, at)
                VALUES (OLD.id, 'remove', strftime('%Y-%m-%d %H:%M:%f000', 'now'));
            END""")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS stories_removed" +
               (" ON stories" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tidings_story_removed()")
