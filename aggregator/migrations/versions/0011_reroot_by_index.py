"""The re-rooting trigger finds a deleted story's copies through their index (PostgreSQL).

`SELECT min(id) ... WHERE duplicate_of = OLD.id` lets PostgreSQL read the primary key in
order, testing each row, until a copy turns up. Without column statistics on duplicate_of
(a table vacuumed but not yet analyzed) it chose that plan, and for the usual story, which
has no copy, it read the whole table once per deleted row: 15 stories deleted from 20,000
read 299,790 rows; retention of 8,919 of 17,800 stories took 104 s (~12 ms a row, growing
with the table). `min(id + 0)` cannot be read off the primary key, so the copies are looked
up on ix_stories_duplicate_of (0.05 ms). SQLite's trigger (0004) tests EXISTS on that index.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_REROOT = """
    CREATE OR REPLACE FUNCTION tidings_story_reroot() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE root bigint;
    BEGIN
        SELECT min({id}) INTO root FROM stories WHERE duplicate_of = OLD.id;
        IF root IS NOT NULL THEN
            UPDATE stories SET duplicate_of = root WHERE duplicate_of = OLD.id AND id <> root;
            UPDATE stories SET duplicate_of = NULL WHERE id = root;
        END IF;
        RETURN NULL;
    END $$"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_REROOT.format(id="id + 0"))  # + 0: never read off the primary key in order


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_REROOT.format(id="id"))
