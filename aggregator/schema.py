"""SQLAlchemy table definitions (`*Row` classes). They never leave aggregator/store.py.

The schema is created and changed only by the Alembic migrations in aggregator/migrations;
this module is their source of truth for autogenerate and for the store's queries.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy import (
    text as sql_text,  # a column of StoryRow is named `text`
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from aggregator.model import MAX_CATEGORY_CHARS, MAX_SITE_CHARS, MAX_SOURCE_NAME_CHARS

# SQLite autoincrements only INTEGER PRIMARY KEY; BigInteger elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# The width of the name keys (`stories.source_key`, `category_key`); the store cuts a key to
# it (`store.key_column`): case folding can make a key longer than its name.
NAME_KEY_CHARS = 255


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in and out, on SQLite (which stores naive text) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        from datetime import UTC

        return value.astimezone(UTC) if dialect.name != "sqlite" else value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        from datetime import UTC

        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class SourceRow(Base):
    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(MAX_SOURCE_NAME_CHARS), unique=True)
    url: Mapped[str] = mapped_column(Text)  # fetched from: moves with permanent redirects
    # The URL sources.toml gave at the last sync: only a change of it is an operator's edit
    # (comparing the file with `url` undid every redirect). Nullable for the migration only.
    config_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    category: Mapped[str] = mapped_column(String(MAX_CATEGORY_CHARS), default="")
    kind: Mapped[str] = mapped_column(String(20), default="auto")
    detected_kind: Mapped[str] = mapped_column(String(20), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    in_config: Mapped[bool] = mapped_column(Boolean, default=True)  # False once removed from sources.toml
    # When it was removed from sources.toml (None while the file names it): a retired source
    # stays listed while its stories do (migration 0017).
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    interval_s: Mapped[int] = mapped_column(Integer, default=900)
    full_text: Mapped[bool] = mapped_column(Boolean, default=False)
    selectors: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # The `keep` and `block` rules of sources.toml ("" for none): which items become stories
    # (aggregator.itemrules). Here because collectors take their sources from this table.
    keep_rule: Mapped[str] = mapped_column(Text, default="", server_default="")
    block_rule: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Conditional GET validators and the schedule: the database is the schedule (miniflux).
    etag: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_modified: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    last_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_new_story_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_count: Mapped[int] = mapped_column(Integer, default=0)  # consecutive failures
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    adaptive_interval_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    stats: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # recent fetches, bounded list
    # Its full_text article pages' failed rounds in a row, by URL ({url: n}; NULL for none):
    # counted here, a cron of one-off collectors counts them too (collect.PAGE_TRIES, 0021);
    # a page older than retention keeps as minus its publication time (collect.OLD_PAGES_KEPT).
    page_failures: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(80), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StoryRow(Base):
    __tablename__ = "stories"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(Text, unique=True)  # canonical
    original_url: Mapped[str] = mapped_column(Text, default="")
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(Text, default="")
    image_url: Mapped[str] = mapped_column(Text, default="")
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # published_at when known and not in the future, else collected_at: the one key to sort and
    # page by, and the age that freshness and retention use.
    sort_at: Mapped[datetime] = mapped_column(UTCDateTime)
    site: Mapped[str] = mapped_column(String(MAX_SITE_CHARS), default="", index=True)
    source: Mapped[str] = mapped_column(String(MAX_SOURCE_NAME_CHARS), default="")
    category: Mapped[str] = mapped_column(String(MAX_CATEGORY_CHARS), default="")
    # The names as filters compare them (aggregator.names.name_key: "Politics" is "politics"),
    # written by the store with the names; lookups by either use these (migration 0010).
    source_key: Mapped[str] = mapped_column(String(NAME_KEY_CHARS), default="", server_default="")
    category_key: Mapped[str] = mapped_column(String(NAME_KEY_CHARS), default="", server_default="")
    content_hash: Mapped[str] = mapped_column(String(64), default="", index=True)
    # The publisher's tags, one a line (`store.tags_column`); NULL when it gave none, and for
    # stories stored before migration 0009.
    tags: Mapped[str | None] = mapped_column(Text, nullable=True)
    # An exact copy of an earlier story's body on another URL (syndication): linked, not re-indexed.
    # Copies are indexed (migration 0004): deleting a story looks up its copies, to give them
    # a new root. A partial index, of copies only: indexing the NULLs too made the planners
    # take it for "duplicate_of IS NULL" (every list of stories) and sort the whole table.
    duplicate_of: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("stories.id", ondelete="SET NULL"), nullable=True
    )
    # The feed's stable id of the item (`StoryDraft.item_id`) among its source's (`source`):
    # a story the source moves to a new URL is found by it (migration 0022). NULL when the
    # feed gave none, for copies left at a moved story's old URL, and for stories stored before.
    item_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Bumped when the embedded text changes, so the indexer re-embeds.
    embed_version: Mapped[int] = mapped_column(Integer, default=1)
    # An indexer's claim on embedding this story; others skip it until the lease runs out.
    embed_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    # AUTOINCREMENT: SQLite would otherwise reuse the ids of deleted stories, and a saved
    # index or a replica could then take a new story for an old one.
    __table_args__ = (
        Index("ix_stories_sort", "sort_at", "id"),
        # The newest of one category or source without sorting them all (migrations 0008, 0010).
        Index("ix_stories_category_key_sort", "category_key", "sort_at", "id"),
        Index("ix_stories_source_key_sort", "source_key", "sort_at", "id"),
        Index("ix_stories_source_item_id", "source", "item_id"),
        Index("ix_stories_duplicate_of", "duplicate_of",
              sqlite_where=sql_text("duplicate_of IS NOT NULL"),
              postgresql_where=sql_text("duplicate_of IS NOT NULL")),
        {"sqlite_autoincrement": True},
    )


class VectorRow(Base):
    __tablename__ = "story_vectors"

    story_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("stories.id", ondelete="CASCADE"), primary_key=True
    )
    recipe: Mapped[str] = mapped_column(String(200))
    embed_version: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian
    embedded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IndexChangeRow(Base):
    """Append-only log of index changes; API replicas follow it by `seq` to stay in step."""

    __tablename__ = "index_changes"
    __table_args__ = {"sqlite_autoincrement": True}  # replicas' watermarks must never go back

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    story_id: Mapped[int] = mapped_column(BigInteger, index=True)
    op: Mapped[str] = mapped_column(String(8))  # "add" | "remove"
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChangeLogHorizonRow(Base):
    """The highest `seq` retention pruned from `index_changes` (one row, id 1; 0: none). A
    replica whose watermark is below it missed changes it can no longer replay (0012)."""

    __tablename__ = "index_changes_pruned"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)


class TakedownRow(Base):
    """A story the operator took down (`tidings takedown`, DELETE /v1/stories/{id}): each
    spelling of its URL, with the body it had, stays out of the store. A story deleted by
    hand came back with the collector's next round, as its feed still listed it (0013)."""

    __tablename__ = "takedowns"

    url: Mapped[str] = mapped_column(Text, primary_key=True)  # canonical, or a variant of it
    # The body's hash (`StoryRow.content_hash`) when a stored story was taken down: the same
    # body at another URL (a syndicated copy published later) stays out too. "" when unknown.
    content_hash: Mapped[str] = mapped_column(String(64), default="", index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The taken-down URL this one is another spelling of (http/https, trailing slash); "" for
    # a URL taken down itself.
    variant_of: Mapped[str] = mapped_column(Text, default="")


class ReaderRow(Base):
    __tablename__ = "readers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    preferences: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReaderDeletionRow(Base):
    """A reader forgotten lately: their events still on their way to the database (accepted
    by another API process just before) are dropped, not written back (migration 0005)."""

    __tablename__ = "reader_deletions"

    reader_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (
        # A reader's events of some types within a window, newest first, and the stories they
        # read, without reading and sorting every event of theirs (migration 0018).
        Index("ix_events_reader_type_at", "reader_id", "type", "at", "story_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_key: Mapped[str] = mapped_column(String(160), unique=True)  # idempotency
    reader_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("readers.id", ondelete="CASCADE")
    )
    # No foreign key: a story deleted (retention, a takedown, a purge) took the readers'
    # events of it along, and their export lost them (migration 0019). Events written later
    # for a story no longer stored are skipped (`Store.store_events`).
    story_id: Mapped[int] = mapped_column(BigId, index=True)
    type: Mapped[str] = mapped_column(String(16))
    dwell_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # The article page the widget's block was shown under (canonical URL); NULL for events
    # sent without one (API clients, and every event before migration 0015).
    page: Mapped[str | None] = mapped_column(Text, nullable=True)


class StoryStatRow(Base):
    """Impressions and clicks per story, kept as counters so popularity is one read."""

    __tablename__ = "story_stats"

    story_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("stories.id", ondelete="CASCADE"), primary_key=True
    )
    impressions: Mapped[int] = mapped_column(Integer, default=0)
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    reads: Mapped[int] = mapped_column(Integer, default=0)
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# The longest page an `event_days` row keeps; longer ones are counted under their first this
# many characters. The page is in the key, and PostgreSQL indexes no entry past ~2,700 bytes:
# a page that percent-encoding made longer (the API takes 2,048 characters of any script)
# failed its whole batch, every reader's events with it. The pages the API stores are
# canonical, hence ASCII: 2,000 characters are 2,000 bytes.
EVENT_DAY_PAGE_CHARS = 2000


class EventDayRow(Base):
    """The widget's events counted per UTC day, story and page as they are stored
    (`Store.add_events`, the fresh ones only): the report (`Store.widget_stats`) reads these,
    not the events, so its cost follows the days x stories x pages shown, not the millions of
    events of a busy widget (migration 0016). No reader in it: a forgotten reader's events
    go, their share of these counts stays."""

    __tablename__ = "event_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)  # the event's UTC day
    # Indexed for the cascade: a deleted story's rows are found without reading the table.
    story_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("stories.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # The page the block was on, cut to EVENT_DAY_PAGE_CHARS; "" for events without one, not
    # NULL: in a key, NULLs never equal each other, so ON CONFLICT matched no row of theirs.
    page: Mapped[str] = mapped_column(Text, primary_key=True)
    impressions: Mapped[int] = mapped_column(Integer, default=0)
    clicks: Mapped[int] = mapped_column(Integer, default=0)
    reads: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        # SQLite: the top pages of a period without sorting all its rows by page (90 days of
        # a widget under 100k page views a day, 3.75M rows: 0.9-1.1 s, not 4.1-4.8 s), read
        # from the index alone (`Store._top_pages`). Not on PostgreSQL, which hashes the
        # groups: there an index on the counts would make every update of them write every
        # index (no HOT update).
        Index("ix_event_days_page", "page", "day", "impressions", "clicks").ddl_if(dialect="sqlite"),
        # SQLite: the rows stored in key order, so a period's days are one range read, not
        # an index range plus a lookup per row.
        {"sqlite_with_rowid": False},
    )


class EmbedderRow(Base):
    """The processes that embed stored stories, each with the recipe it embeds with, held by a
    lease. The oldest live one's recipe is the database's: indexers of another recipe wait, so
    two machines whose models differ do not re-embed each other's vectors for ever."""

    __tablename__ = "embedders"
    __table_args__ = {"sqlite_autoincrement": True}  # the oldest must stay the oldest

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(120))
    recipe: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class JobLockRow(Base):
    """Cluster-wide singleton jobs (retention): one row per job, claimed with a lease."""

    __tablename__ = "job_locks"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(80), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The settings its last run used (JSON): processes of a cluster whose settings differ
    # find out (api.runner.retention). `owner` is the last claim's, not always the process
    # that ran: a claim that failed after that run wrote its own; a run names its process
    # in these settings.
    settings: Mapped[str | None] = mapped_column(Text, nullable=True)


