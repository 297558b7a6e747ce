"""PostgreSQL: copies of a deleted story are re-rooted AFTER the row's delete, not before.

0004's trigger ran BEFORE each row's delete and updated the row's copies. When the same
statement deletes a copy too (retention's batches hold an original and its later copies;
an operator's `DELETE ... WHERE category = ...`), PostgreSQL refuses to delete a row that a
trigger of the current command already updated, and the whole statement fails: retention
removed nothing, every hour. An AFTER ROW trigger runs once the statement's rows are gone,
so it sees, and re-roots, only the copies that survive.

It must run before the foreign key's own ON DELETE SET NULL action, which also fires AFTER
each row and would first set every surviving copy free (one article, several stories).
PostgreSQL fires a row's triggers in name order, its foreign-key triggers being named
"RI_ConstraintTrigger_...": hence a name that sorts before them ("A_..." < "RI_...").

SQLite is unchanged: its BEFORE trigger may update rows the statement deletes later.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_REROOT = """
    CREATE OR REPLACE FUNCTION tidings_story_reroot() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE root bigint;
    BEGIN
        SELECT min(id) INTO root FROM stories WHERE duplicate_of = OLD.id;
        IF root IS NOT NULL THEN
            UPDATE stories SET duplicate_of = root WHERE duplicate_of = OLD.id AND id <> root;
            UPDATE stories SET duplicate_of = NULL WHERE id = root;
        END IF;
        RETURN {returns};
    END $$"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS stories_reroot ON stories")
    op.execute(_REROOT.format(returns="NULL"))
    op.execute("""
        CREATE TRIGGER "A_stories_reroot" AFTER DELETE ON stories
        FOR EACH ROW EXECUTE FUNCTION tidings_story_reroot()""")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute('DROP TRIGGER IF EXISTS "A_stories_reroot" ON stories')
    op.execute(_REROOT.format(returns="OLD"))
    op.execute("""
        CREATE TRIGGER stories_reroot BEFORE DELETE ON stories
        FOR EACH ROW EXECUTE FUNCTION tidings_story_reroot()""")
