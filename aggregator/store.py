"""All SQL lives here: sources and their schedule, stories, vectors, readers and events.

Works on SQLite (default; WAL mode) and PostgreSQL (asyncpg) through SQLAlchemy 2's async API.
ORM rows never leave this module: callers get the frozen types of aggregator.model or the
small records defined below. Schema changes go through the Alembic migrations only.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import hashlib
import inspect
import logging
import os
import re
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Container,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple, TypeVar
from urllib.request import pathname2url

from sqlalchemy import (
    Date,
    Float,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    event,
    false,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import aliased
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from aggregator.canonical import canonical_url, site_key, url_variants
from aggregator.errors import BadDatabaseURL, ChangesPruned, DatabaseTimeout, StoreError
from aggregator.feedorder import in_feed_order, latest_near, spans
from aggregator.model import SourceSpec, Story, StoryDraft, selectors_json, selectors_of
from aggregator.names import name_key
from aggregator.normalize import content_hash
from aggregator.schema import (
    EVENT_DAY_PAGE_CHARS,
    NAME_KEY_CHARS,
    ChangeLogHorizonRow,
    EmbedderRow,
    EventDayRow,
    EventRow,
    IndexChangeRow,
    JobLockRow,
    ReaderDeletionRow,
    ReaderRow,
    SourceRow,
    StoryRow,
    StoryStatRow,
    TakedownRow,
    UTCDateTime,
    VectorRow,
)
from aggregator.sources import FILE_CLOCK_SLACK_S
from aggregator.storymatch import same_story, story_words
from aggregator.writelock import WriteLock

MIGRATIONS = Path(__file__).with_name("migrations")
log = logging.getLogger("tidings.store")
STATS_KEEP = 20  # recent fetches kept on each source row
EVENT_PARTITION = 2_000  # event rows converted per turn of the event loop (recent_events)
# Most story ids `reader_story_ids` returns: a history window (30 days by default) of a reader
# who opens a story every minute of every waking hour is ~30,000; a client posting far more
# (a bot, a load test) gets its newest 50,000, so one request never drags out millions.
READER_STORY_IDS_CAP = 50_000
# PostgreSQL advisory lock keys (arbitrary constants, one per critical section).
MIGRATE_LOCK = 7_105_001
CHANGE_LOG_LOCK = 7_105_002
# Events written this long after their reader was deleted are dropped: longer than an event
# waits in any process's queue (the sink writes within seconds, retries for ~15 s).
READER_DELETION_GRACE = timedelta(minutes=1)
SOURCES_LOCK = 7_105_003
TAKEDOWN_LOCK = 7_105_004
READERS_LOCK = 7_105_005
T = TypeVar("T")
K = TypeVar("K")


# SQLSTATE classes that mean "the server is away or refusing us", not "this query is wrong":
# 08 connection exception, 53 insufficient resources (too many connections), 57 operator
# intervention (admin shutdown, crash, starting up), and 55000, which PostgreSQL sends when a
# database does not accept connections (ALLOW_CONNECTIONS false).
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")
UNAVAILABLE_SQLSTATES = ("55000",)


def database_unavailable(exc: BaseException) -> bool:
    """Is this error the database being away (retry later) rather than a bug? Walks the cause chain."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (OSError, TimeoutError, SATimeoutError, OperationalError)):
            return True  # refused/reset sockets, pool wait timeouts, SQLite "database is locked"
        if isinstance(e, DBAPIError) and e.connection_invalidated:
            return True  # SQLAlchemy saw the connection drop mid-query
        state = getattr(e, "sqlstate", None) or ""
        if state[:2] in UNAVAILABLE_SQLSTATE_CLASSES or state in UNAVAILABLE_SQLSTATES:
            return True
        if type(e).__name__ in ("ConnectionDoesNotExistError", "InterfaceError") and \
                "connection" in str(e).lower():
            return True  # asyncpg: the connection was closed under a running query
        e = e.__cause__ or e.__context__
    return False


# The longest one Store call may take in this context (seconds), None for no limit. The API
# sets it for each request (`api.db_timeout_s`, api/app.py DatabaseCallLimit): a database that
# took the connection and never answered (a partition, a stopped host, a table locked by a
# migration) held every request that read it for ever, and the pool's connections with them.
# The jobs never set it: a retention run, an index rebuild or an import may rightly take long.
# A ContextVar, so it follows the request's task and only it (tasks it starts inherit it).
CALL_LIMIT_S: ContextVar[float | None] = ContextVar("tidings_store_call_limit_s", default=None)


@contextmanager
def calls_limited(limit_s: float | None):
    """Store calls made inside (in this task, and tasks it starts) wait at most `limit_s`
    each; past it they raise DatabaseTimeout. None lifts the limit (background work that a
    request happens to start, such as the event sink's writes)."""
    token = CALL_LIMIT_S.set(limit_s)
    try:
        yield
    finally:
        CALL_LIMIT_S.reset(token)


def _limited(method):
    """`method` (a Store coroutine) under the context's CALL_LIMIT_S. Cancelled by the limit,
    SQLAlchemy drops the connection (asyncpg cancels the statement on the server first), so
    the pool does not keep it; the wait for a pooled or a new connection counts too."""
    @functools.wraps(method)
    async def call(self, *args, **kwargs):
        limit_s = CALL_LIMIT_S.get()
        if limit_s is None:
            result = await method(self, *args, **kwargs)
        else:
            timer = asyncio.timeout(limit_s)
            try:
                async with timer:
                    result = await method(self, *args, **kwargs)
            except TimeoutError as e:
                if not timer.expired():  # the driver's own (a connect timeout): not ours to name
                    raise
                raise DatabaseTimeout(f"the database did not answer within {limit_s:g} s "
                                      f"({method.__name__})") from e
        return result
    return call


async def within_call_limit(task: asyncio.Future[T]) -> T:
    """The result of `task`, shared work that goes on aside (a recount several requests wait
    for), waited for as a Store call waits: at most the context's CALL_LIMIT_S, then
    DatabaseTimeout. The task is not cancelled: the next caller finds it done, or nearer."""
    limit_s = CALL_LIMIT_S.get()
    try:
        return await asyncio.wait_for(asyncio.shield(task), limit_s)
    except TimeoutError as e:
        if task.done():  # the task's own failure
            raise
        raise DatabaseTimeout(f"the database did not answer within {limit_s:g} s") from e


def limit_calls(cls):
    """Class decorator: every public coroutine method of `cls` honours CALL_LIMIT_S. Async
    generators (the bulk reads of exports and
    rebuilds) are left alone: they are the long jobs."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, _limited(member))
    return cls


# Seconds a stopping process keeps trying to hand its claims back while SQLite is locked
# (each try also waits out the driver's busy timeout). Bounded: the process is exiting.
RELEASE_RETRY_S = 5.0


def sqlite_busy(e: BaseException) -> bool:
    """A failure a retry may get past: SQLite's "database is locked" / "busy"."""
    text = str(e).lower()
    return "database is locked" in text or "database is busy" in text


# Stories removed per transaction by retention (~0.1 s of write lock each on SQLite).
RETENTION_BATCH = 1000
# Change log entries pruned per transaction by retention (tiny rows, deleted by primary key).
PRUNE_BATCH = 10_000


async def retry_while_busy(op: Callable[[], Awaitable[T]], within_s: float = RELEASE_RETRY_S) -> T:
    """`op()`, tried again while SQLite is busy for at most `within_s`; other errors, and
    the last one, raised. For the hand-back of claims by a process that is stopping: another
    writer (another process, or one of this process's writes interrupted mid-statement) can
    hold the file's write lock past the driver's busy timeout."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await op()
        except Exception as e:
            if not sqlite_busy(e) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.2)


async def retried_on_conflict(op: Callable[[], Awaitable[T]], attempts: int) -> T:
    """`op()`, tried again (at most `attempts` times in all) when another writer filled a
    unique key it was inserting (IntegrityError): tried again, it reads that row and finds
    it stored. The last failure raised."""
    for attempt in range(attempts):
        try:
            return await op()
        except IntegrityError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def utcnow() -> datetime:
    return datetime.now(UTC)


def on_database_clock(at: datetime, database_now: datetime, process_now: datetime) -> datetime:
    """`at`, a time on this process's clock, on the database's. Leases are written by one
    machine and read by the others: on each machine's own clock, one running 10 minutes
    ahead took every other's live lease for run out, and one behind had its own taken.
    Whole seconds: the milliseconds of the round trip are not skew. Pure."""
    return at + timedelta(seconds=round((database_now - process_now).total_seconds()))


@dataclass(frozen=True)
class SourceState:
    """A source as the collector needs it for one fetch."""

    id: int
    spec: SourceSpec
    etag: str | None
    last_modified: str | None
    error_count: int
    next_check_at: datetime | None
    # The interval its last fetch chose, when that fetch succeeded (else None: a back-off
    # is no pace, nor is what a reset or a URL edit left).
    interval_s: int | None = None
    # Its article pages' failed rounds in a row, by URL (`collect.failed_rounds_after`), and
    # below 0 the pages older than retention keeps (`collect.page_marks`).
    page_failures: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceHealth:
    name: str
    url: str
    category: str
    kind: str
    enabled: bool
    weight: float
    status: str  # ok | error | pending | disabled | retired
    stories: int
    last_check_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    error_count: int
    next_check_at: datetime | None
    interval_s: int
    # Its keep and block rules (None: none): an operator reading why a source brings in few
    # stories sees what leaves its items out.
    keep: str | None = None
    block: str | None = None
    # When it was removed from sources.toml (its status then "retired"); None while named there.
    retired_at: datetime | None = None
    # When a fetch last stored a new story: a feed that goes on answering 200 with the same
    # items (frozen, moved elsewhere) is "ok" by every other field.
    last_new_story_at: datetime | None = None
    # Its article pages that failed at their last try (a full_text source's; `failing_pages`):
    # they left no trace but the log, the source "ok" whatever they answered.
    failing_pages: int = 0


def failing_pages(page_failures: Mapping[str, int] | None) -> int:
    """How many of a source's article pages failed at their last try (pure): its positive
    page marks (`collect.page_marks`); a negative one marks a page older than retention
    keeps, no failure. A page read again drops its mark, so none is counted for ever."""
    return sum(1 for n in (page_failures or {}).values() if n > 0)


@dataclass(frozen=True)
class FileDifference:
    """How a sources file differs from the sources the database holds, by name: what a sync
    of it would do. `new`: named by the file alone (or back in it); `edited`: named by both,
    the file saying otherwise; `unnamed`: configured in the database, not in the file (a sync
    would retire them). A rename is one new name and one unnamed."""

    new: tuple[str, ...] = ()
    edited: tuple[str, ...] = ()
    unnamed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.new or self.edited or self.unnamed)


@dataclass(frozen=True)
class FetchRecord:
    """What to write on a source row after a fetch (decided by the collector)."""

    ok: bool
    next_check_at: datetime
    interval_s: int
    status: int | None = None
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    new_url: str | None = None  # permanent redirect
    detected_kind: str = ""
    new_stories: int = 0
    items: int = 0
    elapsed_s: float = 0.0
    # The source as it was claimed, for `fetched_as_configured` (None: not checked).
    spec: SourceSpec | None = None
    # Its next check as it was claimed (checked with `spec`): a `sources reset` meanwhile set
    # it to the reset's time, and the record, of a fetch begun before it, would undo the reset.
    claimed_due: datetime | None = None
    # Its article pages' failed rounds in a row, by URL, after this fetch (None: as they
    # were; a 304 or a failure read no page).
    page_failures: dict[str, int] | None = None


@dataclass(frozen=True)
class UpsertResult:
    new_ids: tuple[int, ...]
    updated_ids: tuple[int, ...]
    unchanged: int
    # Stories now linked copies of a stored story's body: new URLs, and updated stories
    # (`relinked`) whose new body another story has.
    duplicates: int
    taken_down: int = 0  # drafts skipped: their URL or their body was taken down
    # Of `duplicates`, updated stories that became copies (their ids are in `updated_ids`),
    # so that a summary can count each stored line once.
    relinked: int = 0


@dataclass(frozen=True)
class Takedown:
    url: str
    content_hash: str  # "" when no stored story had this URL
    reason: str
    at: datetime
    variant_of: str = ""  # another spelling of this taken-down URL ("" for the URL itself)


@dataclass(frozen=True)
class EmbedJob:
    id: int
    title: str
    summary: str
    text: str
    embed_version: int


@dataclass(frozen=True)
class EmbedderSeat:
    """A registered embedding process (`Store.register_embedder`)."""

    id: int
    owner: str
    recipe: str
    started_at: datetime


def other_recipe_leads(lead: EmbedderSeat | None, recipe: str) -> bool:
    """Whether the database's stories are embedded with another recipe than `recipe` (`lead`:
    `Store.leading_embedder`); False while no indexer is registered. Pure."""
    return lead is not None and lead.recipe != recipe


@dataclass(frozen=True)
class EventLog:
    """Events as columns, one list per field. Not a tuple per event: at 200k events the rows'
    tuples made the garbage collector walk them ~10 times per read (30-60 ms each, the event
    loop waiting); lists of strings and numbers are one object each to it."""

    readers: list[str]
    story_ids: list[int]
    at_s: list[float]  # seconds since the epoch
    types: list[str]

    def __len__(self) -> int:
        return len(self.story_ids)


@dataclass(frozen=True)
class StoryCounts:
    """One story's widget events over a period (`Store.widget_stats`)."""

    id: int
    title: str
    url: str
    site: str
    impressions: int
    clicks: int


@dataclass(frozen=True)
class WidgetCounts:
    """Widget events of a period, counted by the database (`Store.widget_stats`); api.stats
    fills in the quiet days and works out the rates."""

    days: list[tuple[str, int, int, int]]  # ("YYYY-MM-DD" in UTC, impressions, clicks, reads); days with events only
    sites: list[tuple[str, int, int]]  # (site, impressions, clicks), most clicks first; see fold_sites
    stories: list[StoryCounts]  # most clicks first
    # (page URL, impressions, clicks), most impressions first; only events that name a page
    pages: list[tuple[str, int, int]] = field(default_factory=list)


STATS_TOP_SITES = 20
STATS_TOP_PAGES = 20


def day_span(since: datetime, until: datetime) -> tuple[date, date, list[tuple[datetime, datetime]]]:
    """The first and last UTC day that [since, until) touches, and the parts of those days
    outside it ([start, end) each; none when both ends are midnights): what `event_days`,
    which counts whole days, counts beyond the period. Pure."""
    first = since.astimezone(UTC).date()
    last = (until.astimezone(UTC) - timedelta(microseconds=1)).date()
    start = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return first, last, [(a, b) for a, b in ((start, since), (until, end)) if a < b]


def add_up(groups: dict[tuple, list[int]], rows, sign: int) -> dict[tuple, list[int]]:
    """Add rows of (*key, impressions, clicks, reads) into `groups` (`sign` -1 takes them
    off); returns `groups`. Pure but for `groups`."""
    for *key, i, c, r in rows:
        counts = groups.setdefault(tuple(key), [0, 0, 0])
        counts[0] += sign * int(i or 0)
        counts[1] += sign * int(c or 0)
        counts[2] += sign * int(r or 0)
    return groups


EVENT_TYPES = ("impression", "click", "read")
COUNTS = ("impressions", "clicks", "reads")  # of each type, as `event_days` names them


def adding_counts(table: str, key: tuple[str, ...], also: tuple[str, ...] = ()) -> str:
    """An upsert of one row of `table` by `key` whose counts (COUNTS) add to the stored row's
    and whose `also` columns replace its: two writers' counts of one row add up, whichever
    inserts it first, instead of one failing or overwriting the other's. Pure."""
    cols = (*key, *COUNTS, *also)
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET "
            + ", ".join([*(f"{k} = {table}.{k} + excluded.{k}" for k in COUNTS),
                         *(f"{c} = excluded.{c}" for c in also)]))


# Texts for both engines (SQLite 3.24+ and PostgreSQL take the same upsert). Not the
# dialects' insert().on_conflict_do_update(): building, caching and batching that took ~2 ms
# of a batch of 4 events (the widget's), the SQL itself 0.2-0.5 ms.
COUNT_DAYS = text(adding_counts("event_days", ("day", "story_id", "page"))).bindparams(
    bindparam("day", type_=Date))
# last_event_at: the clock of the writer that commits last (nothing reads it yet).
COUNT_STORIES = text(adding_counts("story_stats", ("story_id",), ("last_event_at",))).bindparams(
    bindparam("last_event_at", type_=UTCDateTime))
# A reader is added by their first event and seen again by each later one.
SEE_READERS = text(
    "INSERT INTO readers (id, created_at, last_seen_at) VALUES (:id, :now, :now) "
    "ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at"
).bindparams(bindparam("now", type_=UTCDateTime))


def dialect_insert(dialect: str):
    """The engine's own `insert`, the one with ON CONFLICT clauses."""
    return pg_insert if dialect == "postgresql" else sqlite_insert


@functools.cache
def insert_new_events(dialect: str):
    """INSERT of events that skips the keys stored already and returns the keys it stored.
    A key another writer is storing at the same moment waits for that writer's commit
    (PostgreSQL), then is skipped, or stored had the other rolled back. Core, built once per
    engine, for its many-row INSERT ... RETURNING: one statement a batch, not one a row."""
    table = EventRow.__table__
    upsert = dialect_insert(dialect)(table)
    return upsert.on_conflict_do_nothing(index_elements=[table.c.event_key]).returning(table.c.event_key)


def tally(events: Iterable[EventRecord], key: Callable[[EventRecord], K]) -> dict[K, list[int]]:
    """[impressions, clicks, reads] of `events` per `key`. Pure."""
    counts: dict[K, list[int]] = {}
    for e in events:
        counts.setdefault(key(e), [0, 0, 0])[EVENT_TYPES.index(e.type)] += 1
    return counts


def event_day(e: EventRecord) -> tuple[date, int, str]:
    """An event's row of `event_days`: its UTC day, story and page (cut; "" for none). Pure."""
    return e.at.astimezone(UTC).date(), e.story_id, (e.page or "")[:EVENT_DAY_PAGE_CHARS]


def _event_days_of(day, first: date, last: date, sites: list[str] | None):
    """The `event_days` rows of the days first..last (compared on `day`: the column, or an
    expression of it), of stories of `sites` when given; select the columns wanted with
    `with_only_columns`."""
    q = select(EventDayRow.day).where(day >= first, day <= last)
    if sites is not None:
        q = q.where(EventDayRow.story_id.in_(select(StoryRow.id).where(StoryRow.site.in_(sites))))
    return q


def _summed() -> tuple:
    """sum() of each count column of `event_days`, labelled by its name."""
    return tuple(func.sum(getattr(EventDayRow, k)).label(k) for k in COUNTS)


def _event_counts(types: Sequence[str]) -> tuple:
    """sum() of the grouped events of each of `types`, in that order."""
    return tuple(func.sum(case((EventRow.type == t, 1), else_=0)) for t in types)


def _by_clicks(counts: dict) -> list:
    """The keys of counts that begin (impressions, clicks), most clicks first, then most
    impressions, then by key (a site's name, a story's (id, site))."""
    return sorted(counts, key=lambda n: (-counts[n][1], -counts[n][0], n))


def fold_sites(by_name: dict[str, list[int]]) -> list[tuple[str, int, int]]:
    """(impressions, clicks) per stored site name as rows of one site each, most clicks
    first: the spellings of one site (canonical.site_key, as the `site` filter compares them:
    an import's "www.BBC.co.uk" is the collector's "bbc.co.uk") are added up under the one
    with most clicks, then impressions. Were two rows of one site. Pure."""
    folded: dict[str, list[int]] = {}
    shown: dict[str, str] = {}
    for name in _by_clicks(by_name):  # the first spelling of a key is the one shown
        key = site_key(name)
        counts = folded.setdefault(key, [0, 0])
        counts[0] += by_name[name][0]
        counts[1] += by_name[name][1]
        shown.setdefault(key, name)
    by_shown = {shown[k]: counts for k, counts in folded.items()}
    return [(n, *by_shown[n]) for n in _by_clicks(by_shown)]


@dataclass(frozen=True)
class EventRecord:
    event_key: str
    reader: str
    story_id: int
    type: str
    at: datetime
    dwell_s: float | None = None
    page: str | None = None  # canonical URL of the page the widget's block was on


@dataclass(frozen=True)
class ExportedEvent(EventRecord):
    """An event as the reader's export gives it: with its story's URL and title while the
    story is stored, None for both once it was deleted (retention, a takedown, a purge: a
    takedown's URL and title are gone from the export too)."""

    url: str | None = None
    title: str | None = None


def _set_sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL lets the API read while the collector writes; busy_timeout waits instead of failing
    # when two writers meet; foreign keys are off by default in SQLite.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _fetch_values(row: dict, rec: FetchRecord, now: datetime) -> dict:
    """The source columns that depend on the stored row, after fetch `rec` (pure)."""
    out = dict(row)
    if rec.ok:
        out["last_success_at"] = now
        out["error_count"] = 0
        out["last_error"] = None
        if rec.etag is not None or rec.last_modified is not None or rec.status == 200:
            out["etag"], out["last_modified"] = rec.etag, rec.last_modified
        if rec.detected_kind:
            out["detected_kind"] = rec.detected_kind
        if rec.new_stories:
            out["last_new_story_at"] = now
        if rec.page_failures is not None:
            out["page_failures"] = rec.page_failures or None
    else:
        out["error_count"] = (row["error_count"] or 0) + 1
        out["last_error"] = rec.error
    if rec.new_url and rec.new_url != row["url"]:
        out["url"] = rec.new_url  # permanent redirect; config_url keeps the file's (source_edits)
    stats = list((row["stats"] or {}).get("recent", []))
    stats.append({"at": now.isoformat(), "ok": rec.ok, "status": rec.status,
                  "items": rec.items, "new": rec.new_stories,
                  "elapsed_ms": round(rec.elapsed_s * 1000)})
    out["stats"] = {"recent": stats[-STATS_KEEP:]}
    return out


# The source columns a fetch depends on: edited while it ran, its record is of the old source.
_FETCHED_COLUMNS = ("url", "kind", "selectors", "keep_rule", "block_rule", "interval_s",
                    "full_text")


def fetched_as_configured(row: dict, spec: SourceSpec) -> bool:
    """Whether source row `row` (its `_FETCHED_COLUMNS`) still says what `spec`, the source
    as a fetch claimed it, said (pure). A reload that edits the URL, the rules, the kind or the
    interval while the fetch runs makes its record stale: written, it put back the validators
    the edit dropped and the next check an old interval away, so the new URL (or the items a
    loosened rule admits) waited for that interval, was asked with the old feed's validators,
    and read `ok` or the old feed's error without having been read. A rename or a weight is
    no matter to a fetch."""
    return (row["url"], row["kind"], selectors_of(row["selectors"]), row["keep_rule"],
            row["block_rule"], row["interval_s"], row["full_text"]) == (
        spec.url, spec.kind, spec.selectors, spec.keep, spec.block, spec.interval_s,
        spec.full_text)


def source_status(error_count: int, last_check_at: datetime | None,
                  last_success_at: datetime | None) -> str:
    """A source's health (pure): `error` while its last fetch failed, `ok` when its last
    fetch succeeded, else `pending`: never fetched, or never since a reset or a URL edit
    cleared its errors. Not from the error count alone: a reset source that never succeeded
    read `ok` with no success at all."""
    if error_count:
        return "error"
    if last_check_at is None or last_success_at is None or last_success_at < last_check_at:
        return "pending"
    return "ok"


class SourcesGlance(NamedTuple):
    """The enabled sources of the file, and how many of them failed their last fetch."""

    enabled: int
    failing: int


def all_failing_warning(glance: SourcesGlance) -> str | None:
    """The line that says every enabled source is failing (pure), else None. A machine with
    no network (or no DNS) failed every fetch while `/healthz` said "ok" and `sources list`
    gave one error per row: nothing said that the trouble was the machine, not the feeds.
    No error text here: `/healthz` is public, and errors name hosts and paths."""
    if glance.enabled and glance.failing >= glance.enabled:
        return (f"all {glance.enabled} enabled sources are failing: is this machine's "
                "network (or DNS) down?")
    return None


def retired_weight(weight: float) -> float:
    """The weight a source's stories rank with once it is removed from sources.toml (pure):
    its damping stays, its boost goes. A boost was the operator's trust in a source they
    have since dropped; a damping, or 0 (kept out of blocks, feeds and trending), was their
    judgement of its stories, which still stand until retention ages them out: a source
    kept out for its adverts came back into blocks the moment it was removed."""
    return min(weight, 1.0)


def _url_key(url: str | None) -> str | None:
    """A source's URL as adoption compares them (canonical), None when there is none."""
    try:
        return canonical_url(url) if url else None
    except ValueError:
        return None


def _adoptions(rows: Sequence[SourceRow], specs: Sequence[SourceSpec]) -> dict[str, SourceRow]:
    """New source name -> the row it takes over (pure): a source the file no longer names
    (removed in this edit, or retired before) whose URL, as the file gave it, is the new
    source's. Renaming a source in the file is removing it and adding one on its URL: the
    new name takes the row (its schedule, validators and errors, as an edit would keep them)
    and, in `Store._sync`, its stories, instead of a fresh row that fetched the feed again and
    left every story it had under a name nobody saw, and its own updates of them ignored
    (`taken_from`). A URL that two new sources read (a feed split by rules) adopts nothing:
    whose stories they were is not for the store to guess. Of several rows on the URL, the
    one removed last is taken (the one removed now before any)."""
    named = {s.name for s in specs}
    stored = {r.name for r in rows}
    new_by_url: dict[str, list[SourceSpec]] = {}
    for spec in specs:
        if spec.name not in stored and (key := _url_key(spec.url)) is not None:
            new_by_url.setdefault(key, []).append(spec)
    leaving: dict[str, SourceRow] = {}
    oldest = datetime.min.replace(tzinfo=UTC)
    for row in sorted((r for r in rows if r.name not in named),
                      key=lambda r: (r.in_config, r.retired_at or oldest, r.id), reverse=True):
        key = _url_key(row.config_url or row.url)
        if key is not None:
            leaving.setdefault(key, row)
    return {news[0].name: leaving[key] for key, news in new_by_url.items()
            if len(news) == 1 and key in leaving}


def _paced_interval_s(row: SourceRow) -> int | None:
    """The interval a source's last fetch chose, if that fetch succeeded (pure)."""
    ok = source_status(row.error_count, row.last_check_at, row.last_success_at) == "ok"
    return row.adaptive_interval_s if ok else None


_SPEC_COLUMNS = ("category", "kind", "enabled", "weight", "interval_s", "full_text",
                 "selectors", "keep_rule", "block_rule", "in_config")
# What `source_edits` reads of a row.
_EDITED_COLUMNS = (*_SPEC_COLUMNS, "url", "config_url", "next_check_at", "last_check_at")
# How a source's body is read: an edit of any of them reads it again whole (`source_edits`).
# `selectors` holds the time zone too.
_READING_COLUMNS = ("keep_rule", "block_rule", "selectors", "kind", "full_text")


def source_edits(row: dict, spec: SourceSpec, now: datetime, min_interval_s: int = 0) -> dict:
    """The columns to write on source row `row` (its columns by name) so that it matches
    `spec`, the file's entry of the same name; empty when it already does (pure).

    The file's URL is compared with the one it gave before (`config_url`), not with `url`,
    which a permanent redirect moves: the operator edits the file, the redirect the row.
    Only an edit of the URL drops the validators and makes the source due now; an edit of
    its interval brings a later next check within the new interval, and an earlier one to
    the new interval after the last check. An edit of how its
    body is read (its keep or block rules, selectors, time zone, kind or full_text) drops
    the validators alone: its next check reads the whole feed again, so the items a
    loosened rule now admits come in then, not once the publisher changes the feed (its
    304s said "nothing new"), and so do a mended selector's summaries or images, a time
    zone's corrected times and full_text's article pages (they waited, the edit doing
    nothing, while the page answered 304). Stories already stored are not removed,
    whatever the new rules say of them; those the document still lists, and the new
    reading keeps, take what it gives them.

    `min_interval_s` ([collect]): the floor the schedule raises an interval to, so that the
    edited interval's next check is no sooner than the schedule would set it.
    """
    want = {"category": spec.category, "kind": spec.kind, "enabled": spec.enabled,
            "weight": spec.weight, "interval_s": spec.interval_s, "full_text": spec.full_text,
            "selectors": selectors_json(spec.selectors),
            "keep_rule": spec.keep, "block_rule": spec.block, "in_config": True}
    # Stored selectors as this version writes them: a row of a version that wrote every field
    # (or of a newer one, with fields this one does not know) is no edit.
    row = {**row, "selectors": selectors_json(selectors_of(row["selectors"]))}
    out = {k: v for k, v in want.items() if row[k] != v}
    if any(k in out for k in _READING_COLUMNS):
        out.update(etag=None, last_modified=None)
    if "interval_s" in out:
        out["adaptive_interval_s"] = None  # chosen from the old one, which a 304 would keep
        # The next check was set from the old interval: shortened from "6h" to "15m", the
        # source waited out the 6 h before the new interval applied. It comes within the new
        # one now. Lengthened from "15m" to "2h" (a publisher asking to be read less often),
        # it was read once more at the old pace ("NEXT in 9m"): the new interval now counts
        # from the last check, as "at most this often" says (a source never checked stays
        # due; a check is never brought earlier by a longer interval).
        # Raised as the schedule raises it: "30s" under a 5 min floor brought the next check
        # 30 s after the edit, while `sources.interval_raised` said "no more often than 5m".
        interval = timedelta(seconds=max(spec.interval_s, min_interval_s))
        planned, last = row["next_check_at"], row["last_check_at"]
        if planned is not None and planned > now + interval:
            out["next_check_at"] = now + interval
        elif planned is not None and last is not None and last + interval > planned:
            out["next_check_at"] = last + interval
    configured = row["config_url"] if row["config_url"] is not None else row["url"]
    if configured != spec.url:
        # What the row knew came from the old URL: its validators, its errors, and its last
        # check (cleared, so the source is pending until the new URL is fetched).
        out.update(url=spec.url, config_url=spec.url, etag=None, last_modified=None,
                   next_check_at=now, error_count=0, last_error=None, last_check_at=None,
                   last_status=None, detected_kind="")
    elif row["config_url"] is None:
        out["config_url"] = spec.url
    if "in_config" in out:
        out["retired_at"] = None  # back in the file
    if out:
        if spec.enabled and out.get("next_check_at", row["next_check_at"]) is None:
            out["next_check_at"] = now
        out["updated_at"] = now
    return out


def _sync_plan(rows: Sequence[SourceRow], specs: Sequence[SourceSpec], now: datetime,
               min_interval_s: int = 0) -> dict[str, dict]:
    """Source name (a row's, or a new source's) -> the columns `sync_sources` writes: all of
    them for a new source, the edits for a changed one, retirement for one gone from the
    file, and for a row a new source adopts (`_adoptions`) its new name with the edits that
    make it that source; nothing else (pure)."""
    by_name = {r.name: r for r in rows}
    plan: dict[str, dict] = {}
    adopted = _adoptions(rows, specs)
    for spec in specs:
        row = by_name.pop(spec.name, None)
        if row is None and spec.name in adopted:
            row = by_name.pop(adopted[spec.name].name)
            cols = {c: getattr(row, c) for c in _EDITED_COLUMNS}
            plan[row.name] = {**source_edits(cols, spec, now, min_interval_s), "name": spec.name,
                              "updated_at": now}
            continue
        if row is None:
            plan[spec.name] = dict(
                name=spec.name, url=spec.url, config_url=spec.url, category=spec.category,
                kind=spec.kind, enabled=spec.enabled, in_config=True, weight=spec.weight,
                interval_s=spec.interval_s, full_text=spec.full_text,
                selectors=selectors_json(spec.selectors),
                keep_rule=spec.keep, block_rule=spec.block,
                error_count=0, next_check_at=now, created_at=now, updated_at=now)
            continue
        cols = {c: getattr(row, c) for c in _EDITED_COLUMNS}
        edits = source_edits(cols, spec, now, min_interval_s)
        if edits:
            plan[spec.name] = edits
    for row in by_name.values():
        if row.in_config:
            plan[row.name] = {"in_config": False, "enabled": False, "retired_at": now,
                              "updated_at": now}
    return plan


def file_difference(rows: Sequence[SourceRow], specs: Sequence[SourceSpec],
                    now: datetime) -> FileDifference:
    """What a sync of `specs` would change in `rows`, by source name (pure): read from the
    plan the sync itself makes, so the two never disagree."""
    by_name = {r.name: r for r in rows}
    new, edited, unnamed = [], [], []
    for name, values in _sync_plan(rows, specs, now).items():
        if name not in by_name:
            new.append(name)
        elif values.get("name", name) != name:  # adopted: a rename, or a move to a new name
            # First: a retired row adopted is keyed by its old name, `in_config` true again.
            new.append(values["name"])
            if by_name[name].in_config:  # a retired one is no longer configured
                unnamed.append(name)
        elif values.get("in_config") is True:
            new.append(name)
        elif values.get("in_config") is False:
            unnamed.append(name)
        else:
            edited.append(name)
    return FileDifference(tuple(sorted(new)), tuple(sorted(edited)), tuple(sorted(unnamed)))


def unapplied_health(spec: SourceSpec, now: datetime, min_interval_s: int = 0) -> SourceHealth:
    """A source the file names and the database does not hold yet, as `list_sources` will
    show it once a collector adds it (pure): pending, due at once unless disabled."""
    return SourceHealth(
        spec.name, spec.url, spec.category, spec.kind, spec.enabled, spec.weight,
        "pending" if spec.enabled else "disabled", 0, None, None, None, 0,
        now if spec.enabled else None, max(spec.interval_s, min_interval_s),
        spec.keep or None, spec.block or None)


def _newer_rows_kept(plan: dict[str, dict], rows: Sequence[SourceRow], written_at: datetime | None,
                     now: datetime) -> tuple[dict[str, dict], list[str]]:
    """`plan` without the edits of rows that a sync edited after the file was written, and
    those rows' names (pure). Every collecting machine syncs its own sources.toml into the
    one database: a machine whose file was not edited (restarted, or its file touched)
    undid another's newer edit, a source removed there came back, a rename moved every
    story back and forth, and the two files took turns at each restart. Such a row keeps
    the newer edit; an edit of this file (written later) applies as before. None: no file
    time, every edit applies. An edit stamped after `now` (the sync's time) says nothing: its
    process's clock ran ahead (a hardware clock in local time before NTP set it), and it
    refused the operator's later edits of the file until the clock caught up."""
    if written_at is None:
        return plan, []
    edited = {r.name: r.updated_at for r in rows}
    slack = timedelta(seconds=FILE_CLOCK_SLACK_S)  # two clocks: the file's machine's, ours
    kept = sorted(n for n in plan if n in edited and written_at + slack < edited[n] <= now + slack)
    return {n: v for n, v in plan.items() if n not in kept}, kept


def _fetch_common(rec: FetchRecord, now: datetime) -> dict:
    """The source columns a fetch sets whatever the row held."""
    return {"last_check_at": now, "last_status": rec.status, "next_check_at": rec.next_check_at,
            "adaptive_interval_s": rec.interval_s, "lease_owner": None, "lease_until": None}


_STORY_COLUMNS = (StoryRow.id, StoryRow.url, StoryRow.title, StoryRow.summary, StoryRow.text,
                  StoryRow.author, StoryRow.image_url, StoryRow.published_at,
                  StoryRow.collected_at, StoryRow.site, StoryRow.source, StoryRow.category,
                  StoryRow.duplicate_of, StoryRow.tags, StoryRow.sort_at)


def tags_column(tags: Sequence[str]) -> str | None:
    """A story's tags as stored: one a line, NULL for none. A line break inside a tag (not
    from `normalize.clean_tags`, which folds whitespace) becomes a space, so a tag never
    reads back as two."""
    return "\n".join(t.replace("\n", " ") for t in tags) or None


def tags_of(column: str | None) -> tuple[str, ...]:
    """The tags `tags_column` stored."""
    return tuple(column.split("\n")) if column else ()


@dataclass(frozen=True)
class StorySelection:
    """Stories of one source, of one category (each named in any case), whose time
    (published, else collected) is at or after `since` and before `until`; None selects on
    nothing."""

    source: str | None = None
    category: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def key_column(name: str) -> str:
    """`name`'s key as `stories.source_key` and `category_key` hold it: `name_key`, cut to
    the columns' width. Case folding can lengthen a name (U+FB03 "ﬃ" is "ffi"): a source
    named in 120 characters, as an import line may, had a key up to 360, which PostgreSQL
    refused, failing the line's whole batch (SQLite stored it). Lookups cut theirs the same
    way."""
    return name_key(name)[:NAME_KEY_CHARS]


def reset_values(page_failures: Mapping[str, int] | None, now: datetime) -> dict:
    """The columns `sources reset` sets on a source whose page marks are `page_failures`
    (pure). Its errors cleared and due now, as before; and its article pages' failed rounds
    (the positive marks, `collect.page_marks`) dropped: kept, a page that had failed
    PAGE_TRIES times (or answered 404 once) still no longer waited after the reset, and the
    feed's 304 left it unread until the publisher changed the feed, though the operator had
    reset the source because its pages were mended. With such counts the validators go too,
    so the next check reads the document whole and tries those pages again. The marks of
    pages older than retention keeps (negative) stay: they are no failure, and cleared they
    had an archive's old pages read again, to be dropped again."""
    values: dict = {"error_count": 0, "last_error": None, "next_check_at": now}
    marks = page_failures or {}
    if any(n > 0 for n in marks.values()):
        old = {url: n for url, n in marks.items() if n < 0}
        values.update(page_failures=old or None, etag=None, last_modified=None)
    return values


def _named(column, name: str):
    """`column == name` for a name a caller gives (a filter, a reader's follow, a URL's path).
    No stored name holds a NUL (PostgreSQL refuses one in text; sources.toml and the importer
    never give one), and PostgreSQL refuses one as a parameter too: `/v1/stories?category=%00`,
    or a reader's follow of such a name (every feed of theirs after), was a 500 there where
    SQLite selected nothing. It selects nothing on both."""
    return column == name if "\x00" not in name else false()


def _of_section(q, source: str | None, category: str | None):
    """`q` narrowed to one source and one category (None: any), compared by their keys: a
    caller's "Politics" is the stored "politics", and the keys' indexes serve the lookup."""
    if source is not None:
        q = q.where(_named(StoryRow.source_key, key_column(source)))
    if category is not None:
        q = q.where(_named(StoryRow.category_key, key_column(category)))
    return q


def _selected(q, selection: StorySelection | None):
    if selection is None:
        return q
    q = _of_section(q, selection.source, selection.category)
    if selection.since is not None:
        q = q.where(StoryRow.sort_at >= selection.since)
    if selection.until is not None:
        q = q.where(StoryRow.sort_at < selection.until)
    return q


def _sites_by_root(rows) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for root, site in rows:
        out.setdefault(root, set()).add(site)
    return out


def _story(row) -> Story:
    """A Story from a StoryRow or from a row of `_STORY_COLUMNS`."""
    return Story(
        id=row.id,
        url=row.url,
        title=row.title,
        summary=row.summary,
        text=row.text,
        author=row.author,
        image_url=row.image_url,
        published_at=row.published_at,
        collected_at=row.collected_at,
        site=row.site,
        source=row.source,
        category=row.category,
        duplicate_of=row.duplicate_of,
        tags=tags_of(row.tags),
        sort_at=row.sort_at,
    )


def _spec(row: SourceRow) -> SourceSpec:
    sel = selectors_of(row.selectors)
    return SourceSpec(
        name=row.name,
        url=row.url,
        category=row.category,
        kind=row.kind,
        interval_s=row.interval_s,
        enabled=row.enabled,
        weight=row.weight,
        full_text=row.full_text,
        selectors=sel,
        keep=row.keep_rule,
        block=row.block_rule,
    )


def needs_vector(recipe: str):
    """The embedding backlog: stories (not linked copies) whose vector is missing, from
    another recipe, or older than their text. Use with an outer join of VectorRow."""
    return and_(StoryRow.duplicate_of.is_(None),
                or_(VectorRow.story_id.is_(None), VectorRow.recipe != recipe,
                    VectorRow.embed_version != StoryRow.embed_version))


_EMBED_JOB_COLUMNS = (StoryRow.id, StoryRow.title, StoryRow.summary, StoryRow.text,
                      StoryRow.embed_version)  # the fields of an EmbedJob, in order


def newest_backlog(cols, where, limit: int):
    """SELECT `cols` of the `limit` most recently stored stories matching `where` (a
    `needs_vector` condition): the embedding backlog is taken newest first (see
    `Store.claim_embed_backlog`)."""
    return (select(*cols).outerjoin(VectorRow, VectorRow.story_id == StoryRow.id)
            .where(where).order_by(StoryRow.id.desc()).limit(limit))


def taken_from(d: StoryDraft, row) -> StoryDraft:
    """What of draft `d` the stored story `row` takes (pure): all of it from the source that
    stored the story (the first to carry its URL) or from an authoritative draft (an import
    line); from another source only what the story lacks (a body, a summary, an author, an
    image, a time), never its title. The same link in two feeds otherwise took each feed's
    title in turn, every round, and each change embedded the story again."""
    if d.authoritative or d.source == row.source:
        return d
    return replace(d, title=row.title, summary=row.summary or d.summary, text=row.text or d.text,
                   author=row.author or d.author, image_url=row.image_url or d.image_url,
                   published_at=row.published_at or d.published_at,
                   tags=() if row.tags else d.tags)  # no tags: the stored ones stay


def with_unique_item_ids(by_url: dict[str, StoryDraft]) -> dict[str, StoryDraft]:
    """The drafts of one fetch, an item id that more than one of them carries dropped (pure):
    a feed that gives every item one id, or the same id to two stories, tells no story by it."""
    seen: dict[str, int] = {}
    for d in by_url.values():
        if d.item_id:
            seen[d.item_id] = seen.get(d.item_id, 0) + 1
    return {u: replace(d, item_id="") if d.item_id and seen[d.item_id] > 1 else d
            for u, d in by_url.items()}


def moved_stories(by_url: Mapping[str, StoryDraft], existing: Mapping[str, StoryRow],
                  by_item_id: Mapping[str, Sequence[int]], originals: Mapping[str, int],
                  roots: Mapping[int, StoryRow], carried: Container[str]) -> dict[str, StoryRow]:
    """URL -> the stored story that the draft there is, moved by its source (pure).

    A publisher that rewrites a story often gives it a new slug: the feed then carries it
    under a new URL, stored as a second story (a new body) or as a hidden copy that kept the
    old headline (the same body). The draft is the story when it comes from the story's own
    source, that source no longer carries the story's URL (it moved), and it has the story's
    item id (`by_item_id`: id -> the ids of the stories of that source holding it; one only,
    else it tells none) and is recognisably the same story (`storymatch.same_story`: a feed
    that keeps one item id for each day's briefing moved yesterday's onto today's), or,
    else, the story's body (`originals`: body hash -> story). A URL stored as a story of its
    own stays one; one stored as a copy moves only its own story. Another source's copy
    (syndication) never moves a story, nor does a copy beside the story in the same feed
    (two sections of one site). One draft a story, the first (feeds list newest first).
    `roots`: the stories named, by id. `carried`: every URL the source's document lists, not
    only the drafts' (`collect.carried_urls`): a link stored with its text and not read
    again is not in the batch, yet still carried."""
    moves: dict[str, StoryRow] = {}
    taken: set[int] = set()
    for url, d in by_url.items():
        here = existing.get(url)
        if here is not None and here.duplicate_of is None:
            continue
        holders = by_item_id.get(d.item_id, ()) if d.item_id else ()
        if len(holders) == 1 and (held := roots.get(holders[0])) is not None and (
                (d.content_hash and d.content_hash == held.content_hash) or same_story(
                    story_words(d.title, d.summary, d.text),
                    story_words(held.title, held.summary, held.text))):
            root_id: int | None = held.id
        elif here is not None:
            root_id = here.duplicate_of
        else:
            root_id = originals.get(d.content_hash) if d.content_hash else None
        root = roots.get(root_id) if root_id is not None else None
        if (root is None or root.id in taken or root.url in carried or not d.source
                or d.source != root.source or (here is not None and here.duplicate_of != root.id)
                or (d.item_id and root.item_id and d.item_id != root.item_id)):
            continue  # ids that differ: two items of the publisher's, whatever their bodies
        moves[url] = root
        taken.add(root.id)
    return moves


def past_retention(before: datetime):
    """The stories retention drops: older than `before`, but no copy while its story stays. A
    moved story's old URL is a copy dated as the story was at the move (`_keep_old_urls`);
    dated anew since, the story stayed and its old URL went, and the widget on the old page,
    events naming it and blocks asked by it no longer found the story. A hidden copy is kept
    for what its URL names: as long as its story is."""
    root = aliased(StoryRow)
    kept_root = (select(root.id).where(root.id == StoryRow.duplicate_of, root.sort_at >= before)
                 .exists())
    return and_(StoryRow.sort_at < before, ~kept_root)


def sort_time(published_at: datetime | None, now: datetime) -> datetime:
    """Sort key: publication time unless absent or claimed to be in the future."""
    if published_at is None or published_at > now:
        return now
    return published_at


class FileIdentity(NamedTuple):
    device: int
    inode: int


def file_identity(path: str) -> FileIdentity | None:
    """The file at `path` as the system tells files apart, None when there is none (or it
    cannot be read: for the health checks, a database file that is not there)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return FileIdentity(st.st_dev, st.st_ino)


class _PointReader:
    """A plain sqlite3 connection for one-row reads by primary key, made on the caller's thread.

    Such a read takes ~20 us in SQLite and ~1 ms through SQLAlchemy and aiosqlite, which hop to
    the driver's thread and back through the event loop (measured on 10k stories; up to 2 ms
    at p99 on a busy machine): a tenth of a related block, for one row. In WAL mode a reader
    never waits for a writer, so the read cannot hold up the loop; if it meets a lock anyway
    (a database not in WAL mode yet), it fails at once and the caller takes the async path.
    """

    def __init__(self, path: str):
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.reads = 0  # reads that SQLite answered (`Store.answers`)

    def one(self, sql: str, params: tuple) -> tuple | None:
        """The first row, or None; sqlite3.Error when SQLite cannot answer at once."""
        with self._lock:  # one connection, so one statement at a time whatever the thread
            row = self._connection().execute(sql, params).fetchone()
            self.reads += 1
            return row

    def all(self, sql: str, params: tuple) -> list[tuple]:
        """Every row of a small indexed read; sqlite3.Error as for `one`."""
        with self._lock:
            rows = self._connection().execute(sql, params).fetchall()
            self.reads += 1
            return rows

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # mode=rw: never create the file (the migrations do, through the engine).
            conn = sqlite3.connect(f"file:{pathname2url(self.path)}?mode=rw", uri=True,
                                   timeout=0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def shown_url(url: str) -> str:
    """`url` as errors and logs may show it: the password masked (they reach log files)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: mask anything between : and @ anyway
        return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)


def unknown_url_parameter(e: TypeError) -> str | None:
    """The query parameter of the database URL that the driver's connect() refused
    (SQLAlchemy hands them to it as keywords), else None; the refusal was a TypeError
    traceback. Those asyncpg takes under other names are translated first (`asyncpg_url`)."""
    m = re.search(r"connect\(\) got an unexpected keyword argument '([^']+)'", str(e))
    return None if m is None else m.group(1)


# libpq's sslmode values; asyncpg's `ssl` takes the same words (asyncpg.connect_utils.SSLMode).
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# libpq's TLS file options, which asyncpg reads from a DSN or the environment, never as keywords.
SSL_FILE_OPTIONS = {"sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
                    "sslcrl": "PGSSLCRL", "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
                    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION"}


def asyncpg_url(url: URL) -> tuple[URL, dict]:
    """`url` without the libpq options asyncpg takes under other names, and the connect_args
    that give them to it (pure). Hosts hand out URLs written for libpq (`sslmode=require`,
    `connect_timeout=10`, `application_name=…`, `options=-c …`), which asyncpg's connect()
    refused as unknown keywords. ValueError names an option that cannot be honoured."""
    query = dict(url.query)
    args: dict = {}
    if "connect_timeout" in query:
        args["timeout"] = connect_timeout_s(query.pop("connect_timeout"))
    # Startup parameters: libpq sends these two to the server as they are, and so does asyncpg.
    settings = {name: query.pop(name) for name in ("application_name", "options") if name in query}
    if settings:
        args["server_settings"] = settings
    if "sslmode" in query:
        mode = query.pop("sslmode")
        if mode not in SSL_MODES:
            raise ValueError(f"sslmode={mode} is not one of {', '.join(SSL_MODES)}")
        if "ssl" not in query:  # asyncpg's own name, if also given, is taken as written
            args["ssl"] = mode
    # asyncpg never binds the channel (SCRAM-SHA-256-PLUS): "prefer" goes on without it, as
    # libpq does when it cannot; "require" must not connect less safely than asked.
    if query.get("channel_binding", "prefer") not in ("prefer", "disable"):
        raise ValueError(f"channel_binding={query['channel_binding']}: asyncpg cannot bind the "
                         "channel (drop it; sslmode=verify-full checks the server's certificate instead)")
    query.pop("channel_binding", None)
    for name, env in SSL_FILE_OPTIONS.items():
        if name in query:
            raise ValueError(f"{name}: asyncpg does not take it in a URL; set {env} in the "
                             "environment instead")
    return url.set(query=query), args


# TCP keepalives on each PostgreSQL connection, unless the URL says otherwise in libpq's words
# (`keepalives=0`, `keepalives_idle`, `keepalives_interval`, `keepalives_count`,
# `tcp_user_timeout`). libpq turns keepalives on; asyncpg never does, and has no option for
# them (MagicStack/asyncpg#606): a connection whose peer went away without a word (a network
# change, a NAT or firewall that dropped it, a host that died) waited for ever, and so did the
# job or command whose query was on it (tidings_job_stuck says so, api.jobhealth). With these,
# the kernel probes a connection silent for KEEPALIVE_IDLE_S and drops it after
# KEEPALIVE_COUNT unanswered probes KEEPALIVE_INTERVAL_S apart, and drops one whose sent bytes
# go unacknowledged for TCP_USER_TIMEOUT_MS (a query sent into the void, where keepalives do
# not probe): ~2 min either way, and the query fails as the database being away. A query that
# rightly runs long is not cut: the server's kernel answers the probes meanwhile. The system's
# defaults (libpq's when not set) would take over 2 h (tcp_keepalive_time 7200 s) and ~15 min.
KEEPALIVE_IDLE_S = 60
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_COUNT = 6
TCP_USER_TIMEOUT_MS = 120_000


@dataclass(frozen=True)
class Keepalive:
    """TCP keepalive settings of a connection; 0 leaves one to the system, as libpq does."""
    idle_s: int = KEEPALIVE_IDLE_S
    interval_s: int = KEEPALIVE_INTERVAL_S
    count: int = KEEPALIVE_COUNT
    user_timeout_ms: int = TCP_USER_TIMEOUT_MS


KEEPALIVE_OPTIONS = {"keepalives_idle": "idle_s", "keepalives_interval": "interval_s",
                     "keepalives_count": "count", "tcp_user_timeout": "user_timeout_ms"}


def url_keepalive(url: URL) -> tuple[URL, Keepalive | None]:
    """`url` without libpq's keepalive options, which asyncpg's connect() refused as unknown
    keywords, and the keepalives they ask for (None: `keepalives=0`, off) (pure). Options not
    given keep Tidings' defaults. ValueError names a value that is not a whole number >= 0."""
    query = dict(url.query)
    values: dict[str, int] = {}
    for name in ("keepalives", *KEEPALIVE_OPTIONS):
        if name in query:
            raw = query.pop(name)
            try:
                values[name] = int(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{name}={raw} is not a whole number") from None
            if values[name] < 0:
                raise ValueError(f"{name}={raw} is below 0")
    url = url.set(query=query)
    if values.pop("keepalives", 1) == 0:
        return url, None
    return url, Keepalive(**{KEEPALIVE_OPTIONS[name]: v for name, v in values.items()})


def keep_alive(sock, keepalive: Keepalive | None) -> None:
    """Set `keepalive` on a TCP socket (None: keepalives off). The options Linux names
    (TCP_KEEPIDLE, TCP_USER_TIMEOUT) are set where the platform has them."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # a Unix socket: a local server, no network between
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0 if keepalive is None else 1)
    if keepalive is None:
        return
    for option, value in (("TCP_KEEPIDLE", keepalive.idle_s), ("TCP_KEEPINTVL", keepalive.interval_s),
                          ("TCP_KEEPCNT", keepalive.count),
                          ("TCP_USER_TIMEOUT", keepalive.user_timeout_ms)):
        if value and hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _keepalive_on_connect(keepalive: Keepalive | None):
    """A pool "connect" listener that sets `keepalive` on each new asyncpg connection's
    socket. asyncpg shows its socket nowhere public: its transport is the documented way in
    (MagicStack/asyncpg#606). Should a version hide it, the connection goes on without."""
    def on_connect(dbapi_conn, _record) -> None:
        transport = getattr(getattr(dbapi_conn, "driver_connection", None), "_transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            logging.getLogger("tidings.store").warning(
                "store.no_keepalive: the driver's socket is out of reach; a connection "
                "whose peer goes silent is not noticed")
            return
        keep_alive(sock, keepalive)
    return on_connect


def connect_timeout_s(value) -> float | None:
    """libpq's connect_timeout (seconds; zero or less waits for ever) as asyncpg's timeout."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"connect_timeout={value} is not a number of seconds") from None
    return seconds if seconds > 0 else None


def driver_reason(e: BaseException) -> str:
    """The first line of a driver's error, for a StoreError's one-line message. SQLAlchemy's
    own text goes on with the statement, its parameters (a whole import batch, the stories'
    texts among them) and a link, kilobytes an operator read as `tidings: error:` (DESIGN 4.1)
    and a log kept."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


@limit_calls
class Store:
    def __init__(self, url: str, *, echo: bool = False, clock: Callable[[], datetime] = utcnow):
        self.url = url
        self.clock = clock  # this process's; a lease is on the database's (`_lease_time`)
        # Statements the database answered (`answers`), counted by the driver's own event.
        self._statements = 0
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        kwargs: dict = {"echo": echo}
        self._reader: _PointReader | None = None
        self._sqlite_path: str | None = None
        self._sqlite_file: FileIdentity | None = None  # the file `migrate` found (`file_gone`)
        if self.dialect == "sqlite":
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                self._sqlite_path = path
                try:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:  # a file where a folder should be, no permission
                    raise StoreError(f"cannot create the folder of {path}: {e.strerror}") from None
                self._reader = _PointReader(path)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=10)
        try:
            engine_url = make_url(url)
            on_asyncpg = engine_url.drivername == "postgresql+asyncpg"
            if on_asyncpg:
                engine_url, keepalive = url_keepalive(engine_url)
                engine_url, kwargs["connect_args"] = asyncpg_url(engine_url)
            self.engine: AsyncEngine = create_async_engine(engine_url, **kwargs)
        except Exception as e:  # bad URL, missing driver
            raise BadDatabaseURL(f"cannot use database URL {shown_url(url)!r}: {driver_reason(e)}") from e
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _set_sqlite_pragmas)
        elif on_asyncpg:
            event.listen(self.engine.sync_engine, "connect", _keepalive_on_connect(keepalive))
        event.listen(self.engine.sync_engine, "after_cursor_execute", self._answered)
        self.session = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = WriteLock() if self.dialect == "sqlite" else None

    def _answered(self, *_event) -> None:
        self._statements += 1

    @property
    def answers(self) -> int:
        """Statements the database answered, through the driver or SQLite's plain reader: a
        count that moved since a request met the database away says it answers again
        (api.app RequestOutage). Not the Store calls that returned: some return without
        asking the database (`store_events([])`, `release_embed_claims([])`), and the event
        sink and the jobs call it too, so "db_available again" was logged mid-outage."""
        return self._statements + (self._reader.reads if self._reader is not None else 0)

    @asynccontextmanager
    async def writing(self, *, urgent: bool = False) -> AsyncIterator:
        """A write transaction. SQLite takes one writer at a time; waiting here, in order,
        beats a thousand collectors busy-waiting in driver threads until "database is
        locked" (and emptying the connection pool while they wait). An `urgent` one goes
        ahead of the writers waiting (`WriteLock`); PostgreSQL has no such queue."""
        if self._write_lock is None:
            async with self.session.begin() as s:
                yield s
            return
        async with self._write_lock.held(urgent):
            async with self.session.begin() as s:
                yield s

    async def _lease_time(self, s, at: datetime | None) -> datetime:
        """`at` (this process's clock; None: now) on the database's clock, read in the
        lease's own transaction. A SQLite file has one machine, and its clock."""
        at = at or self.clock()
        if self.dialect != "postgresql":
            return at
        return on_database_clock(at, await s.scalar(select(func.now())), self.clock())

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        await self.engine.dispose()

    async def migrate(self, *, create: bool = True) -> str | None:
        """Bring the schema to the newest Alembic revision (idempotent). Returns the revision
        the database was at, None for a database without Tidings' tables, which only
        `create` fills (the commands that only read refuse it: api.services.build)."""
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory
        from alembic.util.exc import CommandError

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        found: list[str | None] = []  # the database's revision, for the error below
        script = ScriptDirectory.from_config(cfg)
        head = script.get_current_head()
        # Revisions this version can upgrade from: one it does not know is a newer version's
        # (the error below), no upgrade to announce.
        older = {r.revision for r in script.walk_revisions()} - {head}
        started = time.monotonic()

        def upgrade(sync_conn) -> None:
            if self.dialect == "postgresql":
                # Processes of a cluster start together: without this lock (held until the
                # commit) two of them run the same DDL at once and one dies on a duplicate key.
                sync_conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK})")
            else:
                # One transaction for every revision, as PostgreSQL's: Python's sqlite3 opens
                # one before DML only and runs DDL outside it, so a process killed halfway
                # (0016 counts the events for seconds) left a revision's tables without its
                # version stamp, and each restart died on "table event_days already exists".
                sync_conn.exec_driver_sql("BEGIN")
            found.append(MigrationContext.configure(sync_conn).get_current_revision())
            if found[-1] is None and not create:
                return
            if found[-1] in older:
                # An upgrade said before it runs: a big events table takes its migrations
                # minutes, with no API and, without this line, no word (alembic is quiet).
                log.info("store.migrating %s from schema revision %s to %s (older versions of "
                         "Tidings will not start on it after)", shown_url(self.url), found[-1], head)
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, "head")

        try:
            async with self._sqlite_migrate_lock(), self.engine.begin() as conn:
                await conn.run_sync(upgrade)
        except TimeoutError as e:  # asyncpg's connect timeout; its text is empty
            raise StoreError(f"database unavailable ({shown_url(self.url)}): no answer within "
                             "the connect timeout (connect_timeout in the URL, else 60 s)") from e
        except (OperationalError, DBAPIError, OSError) as e:
            raise StoreError(f"database unavailable ({shown_url(self.url)}): {driver_reason(e)}") from e
        except TypeError as e:
            refused = unknown_url_parameter(e)
            if refused is None:
                raise
            raise BadDatabaseURL(f"the database URL ({shown_url(self.url)}) has a parameter its "
                                 f"driver does not take: {refused}") from None
        except CommandError as e:
            # A rolling upgrade: a newer process migrated the database past what this one
            # knows. Said in one line (it was alembic's traceback, a crash loop at restart),
            # with both revisions: which version the operator must run is the question.
            at = f"at schema revision {found[-1]}" if found and found[-1] else f"at a schema ({e})"
            raise StoreError(f"the database ({shown_url(self.url)}) is {at}, which "
                             f"this version of Tidings does not know (it knows up to {head}): a "
                             "newer version migrated it; run that version here too") from e
        if found and found[-1] in older:
            log.info("store.migrated %s from schema revision %s to %s in %.1f s",
                     shown_url(self.url), found[-1], head, time.monotonic() - started)
        if self._sqlite_path is not None:
            self._sqlite_file = file_identity(self._sqlite_path)
        return found[-1]

    def file_gone(self) -> bool:
        """Is the SQLite file `migrate` found no longer at its path: deleted, or another moved
        into its place? The connections opened before keep reading the old file, and each new
        one opens the path (and makes an empty database there): /healthz answered from
        whichever connection the pool handed it, ok then failing then ok. The health checks
        ask this first. Always False on PostgreSQL, and before `migrate`."""
        return self._sqlite_file is not None and file_identity(self._sqlite_path) != self._sqlite_file

    @asynccontextmanager
    async def _sqlite_migrate_lock(self) -> AsyncIterator[None]:
        """On SQLite, one process migrates at a time: two commands started together on a new
        data dir ran the same DDL at once and one died ("table index_changes already
        exists"). PostgreSQL has its advisory lock instead. A lock file beside the database:
        SQLite's own locks would not queue them: a transaction that read the version before
        another process wrote it fails ("database is locked") instead of waiting."""
        if self._sqlite_path is None:
            yield
            return
        with open(f"{self._sqlite_path}.migrate.lock", "a") as f:
            await asyncio.to_thread(fcntl.flock, f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    # ---------------------------------------------------------------- sources

    async def sync_sources(self, specs: Sequence[SourceSpec], now: datetime | None = None, *,
                           written_at: datetime | None = None, min_interval_s: int = 0) -> dict:
        """Make the source rows match the config: add new, update changed, retire removed.

        Schedule state (validators, errors, next check) survives edits, except that an edit
        of the configured URL drops the validators and makes the source due now, an edit
        of how it is read (rules, selectors, time zone, kind, full_text) drops the
        validators, and an edit of its interval drops
        the interval the schedule adapted (and brings a later next check within the new one); a URL moved by a permanent redirect is kept
        (`source_edits`). A new source on the URL of one removed (now, or before) adopts its
        row and stories (`_adoptions`). When the rows already match, this only reads. Only
        collecting processes (`run`, `collect`) sync; the commands that show sources compare
        (`file_difference`).

        `written_at`, when the file was last written: a row edited (by another machine's
        file) after it keeps that edit, counted in `kept` (`_newer_rows_kept`).
        `min_interval_s`: [collect]'s floor, for an edited interval's next check.
        """
        now = now or utcnow()
        async with self.session() as s:
            rows = (await s.scalars(select(SourceRow))).all()
            plan, kept = _newer_rows_kept(_sync_plan(rows, specs, now, min_interval_s), rows,
                                          written_at, now)
            if not plan:
                return {"added": 0, "changed": 0, "retired": 0, "adopted": 0, "kept": len(kept)}
        # SQLite, which has no advisory lock: another process (`tidings run` and `tidings
        # collect` started together) can add the same new sources between this one's read
        # and its insert. Read again: they are there then.
        return await retried_on_conflict(lambda: self._sync(specs, now, written_at, min_interval_s),
                                         attempts=3)

    async def file_difference(self, specs: Sequence[SourceSpec],
                              now: datetime | None = None) -> FileDifference:
        """How the sources file `specs` came from differs from the rows (`file_difference`);
        reads only. For the commands that show sources: only a collecting process applies
        its file (`sync_sources`), as `tidings sources list` run with another file, on this
        machine or another, retired every source that file did not name."""
        async with self.session() as s:
            rows = (await s.scalars(select(SourceRow))).all()
        return file_difference(rows, specs, now or utcnow())

    async def _sync(self, specs: Sequence[SourceSpec], now: datetime,
                    written_at: datetime | None, min_interval_s: int = 0) -> dict:
        added = changed = retired = adopted = 0
        async with self.writing() as s:
            if self.dialect == "postgresql":
                # Every process of a cluster syncs at start: one at a time, so the later ones
                # see the rows the first one added instead of inserting them again.
                await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SOURCES_LOCK})
            rows = (await s.scalars(select(SourceRow))).all()  # again: others may have synced
            by_name = {r.name: r for r in rows}
            plan, kept = _newer_rows_kept(_sync_plan(rows, specs, now, min_interval_s), rows,
                                          written_at, now)
            for name, values in plan.items():
                row = by_name.get(name)
                if row is None:
                    s.add(SourceRow(**values))
                    added += 1
                    continue
                was_filed_as = row.category
                for k, v in values.items():
                    setattr(row, k, v)
                if values.get("in_config") is False:
                    retired += 1
                    continue
                if values.get("name", name) != name:
                    await s.flush()  # the row's new name first: the moved stories' source
                    await self._move_stories(s, name, values["name"], now)
                    adopted += 1
                else:
                    changed += 1
                if "category" in values:
                    await self._refile_stories(s, row.name, was_filed_as, row.category, now)
        return {"added": added, "changed": changed, "retired": retired, "adopted": adopted,
                "kept": len(kept)}

    async def _move_stories(self, s, old: str, new: str, now: datetime) -> None:
        """The stories stored under source `old` are `new`'s now (it adopted `old`'s row):
        counted, weighted and updated as its own (`taken_from`: a source corrects only the
        stories it stored). The indexes' cards name the source (its weight, a reader's muted
        sources): each moved story is logged for them as an "add", which replaces the card.
        One statement each way, in the sync's transaction: 50,000 stories take ~2 s on
        SQLite, once per rename."""
        moved = (await s.execute(
            update(StoryRow).where(StoryRow.source_key == key_column(old))
            .values(source=new, source_key=key_column(new))
            .returning(StoryRow.id, StoryRow.duplicate_of)
            .execution_options(synchronize_session=False))).all()
        await self._log_new_cards(s, moved, now)

    async def _log_new_cards(self, s, stories: Sequence[tuple[int, int | None]],
                             now: datetime) -> None:
        """Log stories (id, duplicate_of) whose cards changed for the indexes, each as an
        "add", which replaces its card and keeps its vector."""
        indexed = [sid for sid, dup in stories if dup is None]  # copies are not in the indexes
        if indexed:
            await self._change_log_turn(s)  # after the stories' row locks, as every writer
            await s.execute(insert(IndexChangeRow.__table__),
                            [{"story_id": sid, "op": "add", "at": now} for sid in indexed])

    async def _refile_stories(self, s, source: str, old: str, new: str, now: datetime) -> None:
        """Source `source`'s category was edited from `old` to `new`: the stories it stored
        under `old` are `new`'s now. They kept `old` for good, so the source listed as `new`
        with its stories had none of them under `?category=new` (nor `export --category`,
        nor the related filters), and `old` lived on as a section of no source. A story an
        import line filed under another category keeps it. Logged for the indexes, whose
        cards carry the category (the filters, a reader's follows)."""
        refiled = (await s.execute(
            update(StoryRow).where(StoryRow.source_key == key_column(source),
                                   StoryRow.category_key == key_column(old))
            .values(category=new, category_key=key_column(new))
            .returning(StoryRow.id, StoryRow.duplicate_of)
            .execution_options(synchronize_session=False))).all()
        await self._log_new_cards(s, refiled, now)

    async def claim_due_sources(
        self,
        now: datetime,
        *,
        owner: str,
        lease_s: int,
        limit: int = 1000,
        name: str | None = None,
        due_only: bool = True,
    ) -> list[SourceState]:
        """Claim due sources with a lease, so parallel collectors never fetch one twice.

        On PostgreSQL `FOR UPDATE SKIP LOCKED` lets each collector take different rows without
        waiting; on SQLite the write transaction itself serialises claimers.
        """
        # Never a disabled or removed source, even by name: sources.toml promises a disabled
        # source is never fetched (`tidings sources check` tries one without storing).
        cond = [SourceRow.enabled.is_(True), SourceRow.in_config.is_(True)]
        if name is not None:
            cond.append(SourceRow.name == name)
        if due_only:  # the schedule: this process's clock, as the times it wrote
            cond.append(or_(SourceRow.next_check_at.is_(None), SourceRow.next_check_at <= now))
        async with self.writing() as s:
            held = await self._lease_time(s, now)
            cond.append(or_(SourceRow.lease_until.is_(None), SourceRow.lease_until < held))
            q = select(SourceRow).where(and_(*cond)).order_by(SourceRow.next_check_at).limit(limit)
            until = held + timedelta(seconds=lease_s)
            if self.dialect == "postgresql":
                rows = (await s.scalars(q.with_for_update(skip_locked=True))).all()
                for row in rows:
                    row.lease_owner, row.lease_until = owner, until
            else:
                # SQLite has no SKIP LOCKED; one UPDATE ... RETURNING is atomic, so two
                # claimers can never both take a row they read before the other wrote.
                ids = select(SourceRow.id).where(and_(*cond)).order_by(SourceRow.next_check_at).limit(limit)
                stmt = (update(SourceRow).where(SourceRow.id.in_(ids.scalar_subquery()))
                        .values(lease_owner=owner, lease_until=until).returning(SourceRow)
                        .execution_options(synchronize_session=False))
                rows = sorted((await s.scalars(stmt)).all(),
                              key=lambda r: (r.next_check_at is not None, r.next_check_at))
            return [SourceState(r.id, _spec(r), r.etag, r.last_modified, r.error_count,
                                r.next_check_at, _paced_interval_s(r), r.page_failures or {})
                    for r in rows]

    async def release_source_claims(self, owner: str) -> int:
        """Drop the leases `owner` holds on sources: claimed, but this process will not fetch
        them (it is stopping), so the next round, or another collector, takes them now
        instead of after the lease. Their schedule is left as it was: due they were, due they
        stay. Returns how many were held."""
        async with self.writing() as s:
            res = await s.execute(update(SourceRow).where(SourceRow.lease_owner == owner)
                                  .values(lease_owner=None, lease_until=None)
                                  .execution_options(synchronize_session=False))
            return res.rowcount or 0

    async def record_fetch(self, source_id: int, rec: FetchRecord, now: datetime) -> bool:
        """Write a fetch's outcome on its source row; returns once it is committed: False
        when it was not written, as the source was edited during the fetch (`rec.spec` no
        longer what the row says, see `fetched_as_configured`; its lease is let go).

        Calls that arrive together are written together: one read and one executemany
        UPDATE in one transaction for the lot. A round ends a thousand fetches within a
        second or two (a round of 304s is little else), and a transaction each was most of
        its time. A failed write fails every call in its batch, as it would have one by one.
        """
        loop = asyncio.get_running_loop()
        if self.__dict__.get("_fetch_loop") is not loop:
            # A store outlives event loops (tests, the CLI): batches belong to one loop.
            self._fetch_loop, self._fetch_pending, self._fetch_task = loop, [], None
        done: asyncio.Future = loop.create_future()
        self._fetch_pending.append((source_id, rec, now, done))
        if self._fetch_task is None or self._fetch_task.done():
            self._fetch_task = loop.create_task(self._write_fetches(self._fetch_pending))
        return await done

    async def _write_fetches(self, pending: list) -> None:
        while pending:
            await asyncio.sleep(0)  # let the calls made in this turn of the loop join
            batch = pending[:]
            del pending[:]
            try:
                stale = await self._write_fetch_batch(batch)
            except BaseException as e:
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(e)
                if not isinstance(e, Exception):
                    raise
                continue
            for source_id, *_, done in batch:
                if not done.done():
                    done.set_result(source_id not in stale)

    async def _write_fetch_batch(self, batch: list) -> set[int]:
        table = SourceRow.__table__
        cols = ("url", "error_count", "stats", "etag", "last_modified", "detected_kind",
                "last_new_story_at", "last_success_at", "last_error", "page_failures")
        read = (*cols, *(c for c in _FETCHED_COLUMNS if c not in cols), "next_check_at")
        ids = list({source_id for source_id, *_ in batch})
        async with self.writing() as s:
            # Locked (PostgreSQL), in id order as a sync updates them: a reload's edit
            # commits before this reads the row or waits for this to commit, never between.
            q = (select(table.c.id, *(table.c[c] for c in read)).where(table.c.id.in_(ids))
                 .order_by(table.c.id).with_for_update())
            rows = {r[0]: dict(zip(read, r[1:], strict=True)) for r in (await s.execute(q)).all()}
            params, stale = [], []
            for source_id, rec, now, _ in batch:
                row = rows.get(source_id)
                if row is None:
                    continue
                if rec.spec is not None and (not fetched_as_configured(row, rec.spec)
                                             or row["next_check_at"] != rec.claimed_due):
                    # Edited meanwhile: the row keeps what the edit set (due now after a URL
                    # edit, validators dropped after a rule's), the lease alone is let go. So
                    # after a `sources reset` (its next check moved): written, the record put
                    # back the page marks and validators the reset cleared, and the next
                    # check an interval away, of a fetch that had skipped the pages given up.
                    stale.append(source_id)
                    continue
                row.update(_fetch_values(row, rec, now))  # a source twice in a batch: in order
                params.append({"_id": source_id, **{c: row[c] for c in cols},
                               **_fetch_common(rec, now)})
            if params:
                await s.execute(update(table).where(table.c.id == bindparam("_id")), params)
            if stale:
                await s.execute(update(table).where(table.c.id.in_(stale))
                                .values(lease_owner=None, lease_until=None))
        return set(stale)

    async def source_error_count(self, source_id: int) -> int:
        async with self.session() as s:
            row = await s.get(SourceRow, source_id)
            return row.error_count if row else 0

    async def reset_source(self, name: str, now: datetime) -> str | None:
        """Clear a source's errors, its article pages' failed rounds too (`reset_values`), and
        make it due now: "due", or "disabled" when the file disables it (reset, but not
        fetched until enabled); None when no source of the file has that name (one removed
        from the file is never fetched again: resetting it would only pretend).

        A collector's claim is left as it is: clearing it let a second collector fetch the
        source beside the one fetching it at that moment, two fetches of one round. A
        killed collector's claim runs out within `collect.lease_s`, and the source is
        fetched then."""
        async with self.writing() as s:
            # Locked (PostgreSQL) as a fetch's record locks it: the marks it rewrites are read
            # and written in one step.
            row = (await s.execute(
                select(SourceRow.id, SourceRow.enabled, SourceRow.page_failures)
                .where(_named(SourceRow.name, name), SourceRow.in_config.is_(True))
                .with_for_update())).one_or_none()
            if row is None:
                return None
            await s.execute(update(SourceRow).where(SourceRow.id == row.id)
                            .values(**reset_values(row.page_failures, now)))
            return "due" if row.enabled else "disabled"

    async def source_claim(self, name: str) -> tuple[str, datetime] | None:
        """Who holds a live claim on source `name` and until when (the database's clock), or
        None: what `collect --source` names when the source it was asked for is another
        collector's at that moment."""
        async with self.session() as s:
            held = await self._lease_time(s, None)
            row = (await s.execute(
                select(SourceRow.lease_owner, SourceRow.lease_until)
                .where(_named(SourceRow.name, name), SourceRow.lease_until >= held))).first()
            return (row[0] or "", row[1]) if row else None

    async def source_urls(self) -> list[str]:
        """The URLs the operator's file gives the configured sources (one light read;
        `list_sources` counts stories): their hosts are the ones the collector trusts with any
        address. Not the rows' `url`, which a publisher's permanent redirect moves: the host it
        moved to was trusted from then on, and could then name an internal address."""
        configured = func.coalesce(SourceRow.config_url, SourceRow.url)
        async with self.session() as s:
            return list(await s.scalars(select(configured).where(SourceRow.in_config.is_(True))))

    async def list_sources(self, *, retired: bool = False,
                           min_interval_s: int = 0) -> list[SourceHealth]:
        """The sources the file names, by name; with `retired`, then those removed from it
        that still hold stories (status "retired", the weight their stories rank with): the
        stories stay until retention ages them out or `purge_source` removes them, and were
        served under a source nobody could see. One with none left is not listed.

        `interval_s`: the one the schedule chose last, else (never fetched, or its interval
        just edited) the file's raised to `min_interval_s` ([collect]), as the schedule will:
        a "1m" source read 1m, checked every 5 min."""
        # By key: its index covers the count (a source's slug is its own key).
        counts_q = select(StoryRow.source_key, func.count()).group_by(StoryRow.source_key)
        q = select(SourceRow).order_by(SourceRow.in_config.desc(), SourceRow.name)
        async with self.session() as s:
            counts = dict((await s.execute(counts_q)).all())
            rows = (await s.scalars(q if retired else q.where(SourceRow.in_config.is_(True)))).all()
        out = []
        for r in rows:
            stories = counts.get(key_column(r.name), 0)
            if not r.in_config and not stories:
                continue
            # A disabled source is `disabled` whatever its last fetch said: the table alone
            # said so, while `--json` and /v1/sources called it `pending` (or `ok`, `error`).
            status = ("retired" if not r.in_config else "disabled" if not r.enabled else
                      source_status(r.error_count, r.last_check_at, r.last_success_at))
            out.append(SourceHealth(
                r.name, r.url, r.category, r.detected_kind or r.kind, r.enabled,
                r.weight if r.in_config else retired_weight(r.weight), status,
                stories, r.last_check_at, r.last_success_at, r.last_error,
                r.error_count, r.next_check_at if r.enabled else None,  # never, while disabled
                r.adaptive_interval_s or max(r.interval_s, min_interval_s), r.keep_rule or None, r.block_rule or None,
                None if r.in_config else r.retired_at, r.last_new_story_at,
                failing_pages(r.page_failures),
            ))
        return out

    async def sources_glance(self) -> SourcesGlance:
        """The enabled sources of the file and how many failed their last fetch (one light
        read, no story count: `/healthz` asks it)."""
        failing = func.coalesce(func.sum(case((SourceRow.error_count > 0, 1), else_=0)), 0)
        q = (select(func.count(), failing)
             .where(SourceRow.in_config.is_(True), SourceRow.enabled.is_(True)))
        async with self.session() as s:
            enabled, failed = (await s.execute(q)).one()
        return SourcesGlance(enabled, int(failed))

    async def source_sections(self) -> list[tuple[str, str]]:
        """Each source in the file (enabled or not): its name and category."""
        async with self.session() as s:
            q = select(SourceRow.name, SourceRow.category).where(SourceRow.in_config.is_(True))
            return [(name, category) for name, category in (await s.execute(q)).all()]

    async def source_weights(self) -> dict[str, float]:
        """Source name -> the weight its stories rank with (`retired_weight` once removed)."""
        async with self.session() as s:
            rows = (await s.execute(select(SourceRow.name, SourceRow.weight, SourceRow.in_config))).all()
        return {name: weight if in_config else retired_weight(weight)
                for name, weight, in_config in rows}

    # ---------------------------------------------------------------- stories

    async def upsert_stories(self, drafts: Iterable[StoryDraft], now: datetime | None = None,
                             *, source_id: int | None = None,
                             carried: Collection[str] | None = None) -> UpsertResult:
        """Insert new stories and update changed ones, keyed by canonical URL.

        `source_id`: the row of the source whose fetch gave the drafts; they are stored under
        its name as it is then, not as it was when the fetch began (see `_upsert`).
        `carried`: with `source_id`, every URL that fetch's document lists (the drafts are
        fewer: those stored with a text, past retention or left out by rules are not in
        them). Only then does a URL the source no longer carries tell a story it moved to
        a new one (`moved_stories`); None (an import, a batch of unknown extent): none moved.

        A new URL whose body hash equals a stored story's is linked to it (`duplicate_of`)
        instead of becoming a second story: syndicated copies stay one story. Two collectors
        storing the same URL at once make one of them hit the unique key: it retries and
        then finds the row (the same link in two feeds is common).
        """
        now = now or utcnow()
        by_url: dict[str, StoryDraft] = {}
        for d in drafts:
            by_url[d.url] = d  # the last copy of a URL in one batch wins
        if not by_url:
            return UpsertResult((), (), 0, 0)
        by_url = with_unique_item_ids(by_url)
        if carried is not None:
            carried = frozenset(carried) | by_url.keys()  # a draft's own URL is carried
        return await retried_on_conflict(lambda: self._upsert(by_url, now, source_id, carried),
                                         attempts=5)

    async def _upsert(self, by_url: dict[str, StoryDraft], now: datetime,
                      source_id: int | None = None,
                      carried: frozenset[str] | None = None) -> UpsertResult:
        new_ids: list[int] = []
        updated: list[int] = []
        unchanged = dups = relinked = 0
        try:
            async with self.writing() as s:
                if source_id is not None:
                    by_url = await self._under_current_name(s, source_id, by_url)
                existing = {
                    r.url: r
                    for r in (await s.scalars(select(StoryRow).where(StoryRow.url.in_(list(by_url))))).all()
                }
                # Taken down: only a URL not stored can be (a takedown deletes the story), so
                # a round of known items asks nothing more (a query per batch cost +16% of
                # the store's time). In the writing transaction: a takedown committed before
                # it is seen here.
                arriving = {u: d for u, d in by_url.items() if u not in existing}
                if arriving and self.dialect == "postgresql":
                    # Shared, until this commits: a takedown (exclusive) waits for the
                    # stores under way and then deletes what they stored; a store starting
                    # later waits for it and sees it. Under READ COMMITTED a store that
                    # checked just before a takedown committed stored the story after the
                    # takedown had found nothing to delete. SQLite has one writer.
                    await s.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"),
                                    {"k": TAKEDOWN_LOCK})
                refused = await self._taken_down(s, arriving) if arriving else set()
                if refused:
                    by_url = {u: d for u, d in by_url.items() if u not in refused}
                hashes = [d.content_hash for d in by_url.values() if d.content_hash]
                originals: dict[str, int] = {}
                if hashes:
                    # The story of each body: its root, never a copy (a link to a copy would
                    # start a chain that hides the body when the copy changes).
                    q = (select(StoryRow.content_hash, func.min(StoryRow.id))
                         .where(StoryRow.content_hash.in_(hashes), StoryRow.duplicate_of.is_(None))
                         .group_by(StoryRow.content_hash))
                    originals = dict((await s.execute(q)).all())
                # Stories their source moved to a new URL (a new slug) take it, and the
                # draft there updates them below; a fetch whose document's URLs are given
                # only: what the source no longer carries is known.
                moves = (await self._moved(s, by_url, existing, originals, carried)
                         if source_id is not None and carried is not None else {})
                old_urls = []
                for url, root in moves.items():
                    if url in existing:  # a copy of it, linked before: the story takes its URL
                        await self._hand_over(s, existing[url].id, root.id)
                        await s.delete(existing[url])
                        await s.flush()
                    old_urls.append((root, root.url, root.original_url))
                    root.url = url
                    root.original_url = by_url[url].original_url or url
                    existing[url] = root
                await s.flush()
                # New rows go in as one multi-row INSERT ... RETURNING (Core) rather than
                # as ORM objects: a round inserts tens of thousands and
                # the unit of work's bookkeeping was most of the cost of storing them.
                fresh: list[dict] = []
                rehashed: list[tuple[StoryRow, str]] = []  # (row, its body hash before)
                recarded: list[int] = []  # indexed stories whose card alone changed
                first_in_batch: dict[str, int] = {}
                link_later: list[tuple[int, int]] = []  # (copy, original) positions in `fresh`
                for url, d in by_url.items():
                    row = existing.get(url)
                    if row is None:
                        dup_of = originals.get(d.content_hash) if d.content_hash else None
                        if dup_of is None and d.content_hash in first_in_batch:
                            link_later.append((len(fresh), first_in_batch[d.content_hash]))
                        elif dup_of is None and d.content_hash:
                            first_in_batch[d.content_hash] = len(fresh)
                        fresh.append(dict(
                            url=url, original_url=d.original_url or url, title=d.title,
                            summary=d.summary, text=d.text, author=d.author, image_url=d.image_url,
                            published_at=d.published_at, collected_at=now, updated_at=now,
                            sort_at=sort_time(d.published_at, now), site=d.site, source=d.source,
                            category=d.category, source_key=key_column(d.source),
                            category_key=key_column(d.category),
                            content_hash=d.content_hash, duplicate_of=dup_of,
                            embed_version=1, embed_lease_until=None, tags=tags_column(d.tags),
                            item_id=d.item_id or None,
                        ))
                        dups += dup_of is not None
                        continue
                    if d.item_id and d.source == row.source and row.item_id != d.item_id:
                        row.item_id = d.item_id  # stored before 0022, or an id the feed changed
                    d = taken_from(d, row)
                    # What the story would hold: a draft without a summary or a body keeps
                    # the stored one (a feed's item must not wipe a body read from its page).
                    # Not "no body, no change": its own source could then never correct the
                    # title of a story whose body came from its page or another source.
                    changed_text = (d.title, d.summary or row.summary, d.text or row.text) != (
                        row.title, row.summary, row.text)
                    # Like the author and image, tags a draft leaves out keep the stored ones
                    # (the same link in a feed without <category>, or a sitemap).
                    tags = tags_column(d.tags) or row.tags
                    changed_meta = (d.author or row.author, d.image_url or row.image_url,
                                    d.published_at or row.published_at, tags) != (
                        row.author, row.image_url, row.published_at, row.tags)
                    # An import line that names a site, source or category corrects the story's.
                    restated = {k: v for k in d.restates if (v := getattr(d, k)) != getattr(row, k)}
                    if not changed_text and not changed_meta and not restated and url not in moves:
                        unchanged += 1
                        continue
                    for key, value in restated.items():
                        setattr(row, key, value)
                        if key in ("source", "category"):
                            setattr(row, f"{key}_key", key_column(value))
                    if changed_text:
                        row.title, row.summary = d.title, d.summary or row.summary
                        row.text = d.text or row.text
                        before = row.content_hash
                        row.content_hash = content_hash(row.text or row.summary)
                        if row.content_hash != before:
                            rehashed.append((row, before))
                        row.embed_version += 1
                    if not changed_text and row.duplicate_of is None:
                        recarded.append(row.id)  # re-embedding would re-add it anyway
                    row.author = d.author or row.author
                    row.image_url = d.image_url or row.image_url
                    row.tags = tags
                    # A corrected time is what the card shows; the story keeps the place in
                    # the listings (`sort_at`) it took when stored: moved, it came twice, or
                    # never, to a reader paging the list past it (a keyset cursor holds a
                    # place, not the stories seen), and a feed that stamps its items with the
                    # time it was built listed them reversed from its second round on (all
                    # at their collection time: `feedorder`'s steps undone).
                    row.published_at = d.published_at or row.published_at
                    row.updated_at = now
                    updated.append(row.id)
                await s.flush()
                if fresh and rehashed:
                    # A new URL with the body a stored story takes in this batch (a rewrite,
                    # moved to a new URL or in place, and the same text in another section) is
                    # its copy, as it is a round later. Inserted as a story, it took the body
                    # (`_relink`), and the story readers' events and counts name became its
                    # hidden copy. The lowest id: two stories taking one body are one story.
                    taking: dict[str, int] = {}
                    for row, _ in rehashed:
                        if row.duplicate_of is None and row.content_hash:
                            taking[row.content_hash] = min(row.id, taking.get(row.content_hash, row.id))
                    for item in fresh:
                        if item["duplicate_of"] is None and item["content_hash"] in taking:
                            item["duplicate_of"] = taking[item["content_hash"]]
                            dups += 1
                    link_later = [(c, o) for c, o in link_later if fresh[c]["duplicate_of"] is None]
                if fresh and source_id is not None:  # a fetch: its items in the feed's order
                    times = [item["sort_at"] for item in fresh]
                    # Looked up: times two new items share, and whole minutes (a feed dated by
                    # the day or the minute, whose earlier rounds' items of that time may sit
                    # above it). A new item alone at another time sorts above a stored story of
                    # that time by its id, and a fetch of items dated to the second (nearly
                    # all) costs no query.
                    tied = {t for t, n in Counter(times).items()
                            if n > 1 or (t.second == 0 and t.microsecond == 0)}
                    placed = await self._placed_near(s, fresh[0]["source"], tied) if tied else {}
                    for item, at in zip(fresh, in_feed_order(times, placed, now), strict=True):
                        item["sort_at"] = at
                if fresh:
                    table = StoryRow.__table__
                    # RETURNING the URL too: in parameter order SQLite would get one INSERT a row.
                    stmt = insert(table).returning(table.c.url, table.c.id)
                    ids = dict((await s.execute(stmt, fresh)).tuples().all())
                    new_ids = [ids[p["url"]] for p in fresh]
                if link_later:  # same body twice within this batch
                    table = StoryRow.__table__
                    await s.execute(
                        update(table).where(table.c.id == bindparam("copy_id"))
                        .values(duplicate_of=bindparam("original_id")),
                        [{"copy_id": new_ids[c], "original_id": new_ids[o]} for c, o in link_later])
                    dups += len(link_later)
                for row, before in rehashed:
                    # What its own source no longer carries is known from a fetch of that
                    # source only, with its document's URLs (an import, another source's
                    # feed: nothing is).
                    own = source_id is not None and by_url[row.url].source == row.source
                    relinked += await self._relink(s, row, before, now, carried if own else None)
                dups += relinked
                if old_urls:
                    await self._keep_old_urls(s, old_urls)
                if recarded:
                    # An author, image, time, tags, site, source or category changed: the indexes'
                    # cards (and freshness, the filters) follow an "add", which replaces the
                    # card and keeps the vector.
                    await self._change_log_turn(s)
                    await s.execute(insert(IndexChangeRow), [
                        {"story_id": sid, "op": "add", "at": now} for sid in recarded])
        except IntegrityError:
            raise
        except (OperationalError, DBAPIError) as e:
            raise StoreError(f"storing stories failed: {driver_reason(e)}") from e
        return UpsertResult(tuple(new_ids), tuple(updated), unchanged, dups, len(refused),
                            relinked)

    @staticmethod
    async def _placed_near(s, source: str, times: Collection[datetime]) -> dict[datetime, datetime]:
        """For each of these times, the latest sort time a stored story of `source` has
        within `feedorder.NEAR` of it, where one has (`in_feed_order`). Only the source's
        own: its earlier rounds are what a new item must sort above; another source's
        stories of the same minute have no order to keep with these. One read of the
        source's sort index per span of times (`feedorder.spans`), the same statement each
        time: one subquery per time, a statement built and compiled anew for each count of
        times, nearly doubled the CPU of storing a round (the ingest benchmark's 40 feeds:
        0.45-0.5 CPU-s, 0.36-0.40 with this, 0.30 without any lookup)."""
        stored: list[datetime] = []
        for lo, hi in spans(times):
            stored += (await s.scalars(
                select(StoryRow.sort_at)
                .where(StoryRow.source_key == key_column(source),
                       StoryRow.sort_at >= lo, StoryRow.sort_at < hi)
                .order_by(StoryRow.sort_at))).all()
        return latest_near(times, stored)

    @staticmethod
    async def _under_current_name(s, source_id: int,
                                  by_url: dict[str, StoryDraft]) -> dict[str, StoryDraft]:
        """The drafts under the name source row `source_id` has now. A reload that renamed
        the source during its fetch moved its stories to the new name (`_move_stories`);
        the fetch's, stored under the old one, were left under a name no row had: listed
        nowhere, and never updated by the renamed source (`taken_from`). The row is read
        locked (PostgreSQL, first, as a sync locks it before the stories): a rename commits
        before this reads it, or waits and then moves these stories too."""
        name = await s.scalar(select(SourceRow.name).where(SourceRow.id == source_id)
                              .with_for_update(read=True))
        if name is None:
            return by_url
        return {u: d if d.source == name else replace(d, source=name) for u, d in by_url.items()}

    @staticmethod
    async def _taken_down(s, by_url: dict[str, StoryDraft]) -> set[str]:
        """The drafts' URLs that were taken down, by URL or by body."""
        t = TakedownRow
        hashes = sorted({d.content_hash for d in by_url.values() if d.content_hash})
        where = t.url.in_(list(by_url))
        if hashes:
            where = or_(where, t.content_hash.in_(hashes))
        rows = (await s.execute(select(t.url, t.content_hash).where(where))).all()
        if not rows:
            return set()
        urls = {r.url for r in rows}
        bodies = {r.content_hash for r in rows if r.content_hash}
        return {u for u, d in by_url.items() if u in urls or (d.content_hash and d.content_hash in bodies)}

    async def _relink(self, s, row: StoryRow, before: str, now: datetime,
                      carried: Container[str] | None = None) -> int:
        """`row`'s body changed (hash `before` -> `row.content_hash`): keep every body one
        story. Its copies (same old body) get a root of their own; it leaves the story it
        copied; it becomes a copy of the story that has its new body, if one does. 1 when it
        became a copy. Linked copies are neither embedded nor indexed, so a story that
        becomes one is removed from the indexes and loses its vector (embedded afresh should
        it be a story again); one that stops being a copy is embedded by the backlog (its
        text changed, or it never had a vector). `carried`: every URL the document of a fetch
        of `row`'s own source lists, None when this is none."""
        if row.duplicate_of is None and before and carried is not None:
            # Its copies at URLs its own source no longer carries are its old URLs (a moved
            # story's, `_keep_old_urls`): they keep its text. Rerooted, each came back as a
            # second story, at the old URL with the old text, at the story's next edit.
            # Only then: any other copy keeps its body, as a story of its own. The URLs are
            # sifted here, not in SQL: a sitemap index's document lists up to 15,000.
            copies = (await s.execute(
                select(StoryRow.id, StoryRow.url)
                .where(StoryRow.duplicate_of == row.id, StoryRow.source == row.source,
                       StoryRow.content_hash == before))).all()
            old = [cid for cid, url in copies if url not in carried]
            if old:
                await s.execute(
                    update(StoryRow).where(StoryRow.id.in_(old))
                    .values(title=row.title, summary=row.summary, text=row.text,
                            content_hash=row.content_hash, updated_at=now))
        if row.duplicate_of is None and before:
            await self._reroot(s, row.id, keep_hash=row.content_hash)
        was_story = row.duplicate_of is None
        row.duplicate_of = None
        if row.content_hash:
            row.duplicate_of = await s.scalar(
                select(func.min(StoryRow.id)).where(StoryRow.content_hash == row.content_hash,
                                                    StoryRow.duplicate_of.is_(None),
                                                    StoryRow.id != row.id))
        await s.flush()
        if row.duplicate_of is None:
            return 0
        if was_story:
            await self._change_log_turn(s)
            await s.execute(delete(VectorRow).where(VectorRow.story_id == row.id))
            s.add(IndexChangeRow(story_id=row.id, op="remove", at=now))
        return 1

    @staticmethod
    async def _moved(s, by_url: dict[str, StoryDraft], existing: dict[str, StoryRow],
                     originals: dict[str, int], carried: Container[str]) -> dict[str, StoryRow]:
        """The stories of this fetch's source that it moved to a new URL (`moved_stories`):
        the drafts' item ids and bodies looked up among its stories."""
        # Only a draft at a URL not stored as a story can move one (`moved_stories`): in a
        # steady round every URL is, and the ids are not asked for.
        items = {d.item_id for u, d in by_url.items()
                 if d.item_id and (u not in existing or existing[u].duplicate_of is not None)}
        names = {d.source for d in by_url.values() if d.source}
        by_item_id: dict[str, list[int]] = {}
        if items and names:
            for rid, item in (await s.execute(
                    select(StoryRow.id, StoryRow.item_id)
                    .where(StoryRow.source.in_(names), StoryRow.item_id.in_(items),
                           StoryRow.duplicate_of.is_(None)))).all():
                by_item_id.setdefault(item, []).append(rid)
        wanted = {rid for ids in by_item_id.values() for rid in ids}
        wanted |= {r.duplicate_of for r in existing.values() if r.duplicate_of is not None}
        wanted |= {originals[d.content_hash] for u, d in by_url.items()
                   if u not in existing and d.content_hash in originals}
        if not wanted:
            return {}
        roots = {r.id: r for r in (await s.scalars(
            select(StoryRow).where(StoryRow.id.in_(wanted)))).all()}
        return moved_stories(by_url, existing, by_item_id, originals, roots, carried)

    async def _hand_over(self, s, copy_id: int, story_id: int) -> None:
        """A copy about to be deleted (its story takes its URL) gives its story what names
        it: readers' events (the API names a copy when an event names its URL), and its
        counts in `story_stats` and `event_days`, which its delete would cascade away. The
        reader's export, the widget's report and popularity then find them on the story."""
        await s.execute(update(EventRow).where(EventRow.story_id == copy_id).values(story_id=story_id))
        stats = {r.story_id: r for r in (await s.execute(
            select(StoryStatRow).where(StoryStatRow.story_id.in_((copy_id, story_id))))).scalars()}
        if (mine := stats.get(copy_id)) is not None:
            last = [t for t in (mine.last_event_at, getattr(stats.get(story_id), "last_event_at", None)) if t]
            await s.execute(COUNT_STORIES, [{
                "story_id": story_id, **{k: getattr(mine, k) for k in COUNTS},
                "last_event_at": max(last) if last else None}])
        days = (await s.execute(select(EventDayRow).where(EventDayRow.story_id == copy_id))).scalars().all()
        if days:
            await self._count_days(s, {(d.day, story_id, d.page): [getattr(d, k) for k in COUNTS]
                                       for d in days})
        await s.execute(delete(StoryStatRow).where(StoryStatRow.story_id == copy_id))
        await s.execute(delete(EventDayRow).where(EventDayRow.story_id == copy_id))

    @staticmethod
    async def _keep_old_urls(s, old: list[tuple[StoryRow, str, str]]) -> None:
        """A moved story's old URL stays known, as a copy of it: a lookup by that URL (a
        widget on the old page, an event naming it, a block asked by it) finds the story,
        and lists show it once. Its text is the story's, so it goes with the story when a
        takedown removes its body, and follows its later edits (`_relink`)."""
        await s.flush()
        table = StoryRow.__table__
        await s.execute(insert(table), [dict(
            url=url, original_url=original or url, title=r.title, summary=r.summary, text=r.text,
            author=r.author, image_url=r.image_url, published_at=r.published_at,
            collected_at=r.collected_at, updated_at=r.updated_at, sort_at=r.sort_at, site=r.site,
            source=r.source, category=r.category, source_key=r.source_key,
            category_key=r.category_key, content_hash=r.content_hash,
            duplicate_of=r.duplicate_of or r.id, embed_version=1, embed_lease_until=None,
            tags=r.tags, item_id=None) for r, url, original in old])

    @staticmethod
    async def _reroot(s, story_id: int, keep_hash: str | None = None) -> None:
        """The copies of `story_id` get a root of their own: the lowest id becomes the story,
        the rest its copies (the rule of migration 0004's delete trigger). Those with body
        hash `keep_hash` (its own body) stay its copies."""
        mine = StoryRow.duplicate_of == story_id
        if keep_hash is not None:
            mine = and_(mine, StoryRow.content_hash != keep_hash)
        root = await s.scalar(select(func.min(StoryRow.id)).where(mine))
        if root is None:
            return
        # ORM updates ("auto" synchronisation): rows of this batch loaded in the session see
        # their new link, and a later flush cannot write an old one back.
        await s.execute(update(StoryRow).where(mine, StoryRow.id != root)
                        .values(duplicate_of=root))
        await s.execute(update(StoryRow).where(StoryRow.id == root).values(duplicate_of=None))

    async def stored_urls(self, urls: Iterable[str]) -> set[str]:
        """Which of these canonical URLs are stories already."""
        urls = list(urls)
        async with self.session() as s:
            return set((await s.scalars(select(StoryRow.url).where(StoryRow.url.in_(urls)))).all())

    async def urls_with_text(self, urls: Iterable[str]) -> set[str]:
        """Which of these canonical URLs are stored with a body already, or taken down (no
        need to fetch: a taken-down article's page was read again every round, then refused)."""
        urls = list(urls)
        async with self.session() as s:
            q = select(StoryRow.url).where(StoryRow.url.in_(urls), StoryRow.text != "")
            down = select(TakedownRow.url).where(TakedownRow.url.in_(urls))
            return set((await s.scalars(q)).all()) | set((await s.scalars(down)).all())

    async def get_story(self, story_id: int) -> Story | None:
        async with self.session() as s:
            row = await s.get(StoryRow, story_id)
            return _story(row) if row else None

    async def get_story_texts(self, story_id: int) -> tuple[str, str] | None:
        """(summary, text) of one story: what a related block about a story needs beyond the
        index's own metadata. Plain SQL, no ORM object: this is on every block's path."""
        if self._reader is not None:
            try:
                row = self._reader.one(
                    f"SELECT summary, text FROM {StoryRow.__tablename__} WHERE id = ?",
                    (int(story_id),))
                return None if row is None else (row[0] or "", row[1] or "")
            except sqlite3.Error:
                pass  # locked or not created yet: the driver's path waits as it should
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(StoryRow.summary, StoryRow.text)
                                      .where(StoryRow.id == story_id))).first()
        return None if row is None else (row[0] or "", row[1] or "")

    async def get_story_by_url(self, url: str) -> Story | None:
        async with self.session() as s:
            row = (await s.scalars(select(StoryRow).where(StoryRow.url == url))).first()
            return _story(row) if row else None

    async def get_story_by_any_url(self, urls: Sequence[str]) -> Story | None:
        """The story stored under the first of `urls` that has one (one query)."""
        async with self.session() as s:
            rows = (await s.scalars(select(StoryRow).where(StoryRow.url.in_(list(urls))))).all()
        by_url = {row.url: row for row in rows}
        return next((_story(by_url[u]) for u in urls if u in by_url), None)

    async def get_story_by_any_spelling(self, canonical: str) -> Story | None:
        """The story stored under this canonical URL, else under another spelling of it
        (`url_variants`: http or https, with or without the trailing slash), nearest first."""
        return await self.get_story_by_any_url([canonical, *url_variants(canonical)])

    async def taken_down_any_spelling(self, canonical: str) -> bool:
        """Whether this canonical URL, or another spelling of it (`url_variants`), was taken
        down."""
        urls = [canonical, *url_variants(canonical)]
        async with self.session() as s:
            return await s.scalar(select(TakedownRow.url).where(TakedownRow.url.in_(urls))
                                  .limit(1)) is not None

    async def get_stories(self, ids: Iterable[int]) -> dict[int, Story]:
        ids = list(set(ids))
        out: dict[int, Story] = {}
        async with self.session() as s:
            for i in range(0, len(ids), 500):
                # Plain rows of the card's columns: the corpus reads every new story through
                # here, and ORM objects cost ~4x as much to build.
                rows = (await s.execute(select(*_STORY_COLUMNS)
                                        .where(StoryRow.id.in_(ids[i:i + 500])))).all()
                out.update((r.id, _story(r)) for r in rows)
        return out

    async def latest_stories(
        self,
        *,
        limit: int = 20,
        source: str | None = None,
        category: str | None = None,
        since: datetime | None = None,
        before: tuple[datetime, int] | None = None,
    ) -> list[Story]:
        """Newest first (keyset pagination on (sort_at, id)); linked duplicates left out. A
        source or category is named in any case; "" selects on nothing."""
        q = _of_section(select(StoryRow).where(StoryRow.duplicate_of.is_(None)),
                        source or None, category or None)
        if since:
            q = q.where(StoryRow.sort_at >= since)
        if before:
            at, sid = before
            q = q.where(or_(StoryRow.sort_at < at, and_(StoryRow.sort_at == at, StoryRow.id < sid)))
        q = q.order_by(StoryRow.sort_at.desc(), StoryRow.id.desc()).limit(limit)
        async with self.session() as s:
            return [_story(r) for r in (await s.scalars(q)).all()]

    async def existing_ids(self, ids: Iterable[int]) -> set[int]:
        """Which of these story ids are stored (no rows loaded: events only need to know)."""
        ids = list(set(ids))
        out: set[int] = set()
        async with self.session() as s:
            for i in range(0, len(ids), 500):
                q = select(StoryRow.id).where(StoryRow.id.in_(ids[i:i + 500]))
                out.update((await s.scalars(q)).all())
        return out

    async def latest_ids(self, limit: int = 200, category: str | None = None,
                         newest_id: int | None = None, source: str | None = None) -> list[int]:
        """Ids of the newest stories, of one category or source if given (in any case), of
        ids up to `newest_id` if given (no rows loaded: feeds only need the ids)."""
        q = _of_section(select(StoryRow.id).where(StoryRow.duplicate_of.is_(None)), source, category)
        if newest_id is not None:
            q = q.where(StoryRow.id <= newest_id)
        q = q.order_by(StoryRow.sort_at.desc(), StoryRow.id.desc()).limit(limit)
        async with self.session() as s:
            return list((await s.scalars(q)).all())

    def copy_sites_now(self, ids: Sequence[int]) -> dict[int, set[str]] | None:
        """`copy_sites` answered at once by SQLite's plain reader (~30 us, no hop to the
        driver's thread); None where it cannot (PostgreSQL, a lock): then `copy_sites`."""
        if self._reader is None:
            return None
        ids = [int(i) for i in ids]
        try:
            rows = self._reader.all(
                f"SELECT duplicate_of, site FROM {StoryRow.__tablename__} "
                f"WHERE duplicate_of IN ({', '.join('?' * len(ids))})", tuple(ids))
        except sqlite3.Error:
            return None  # locked or not created yet: the driver's path waits as it should
        return _sites_by_root(rows)

    async def copy_sites(self, ids: Sequence[int]) -> dict[int, set[str]]:
        """For each of these stories with syndicated copies linked to it, their sites. On
        every related block's path: through the async driver ~1 ms, which cost a fifth of the
        blocks a second with 8 requests in flight; try `copy_sites_now` first."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(StoryRow.duplicate_of, StoryRow.site)
                                       .where(StoryRow.duplicate_of.in_([int(i) for i in ids])))).all()
        return _sites_by_root(rows)

    async def copies_of(self, ids: Sequence[int]) -> dict[int, list[tuple[int, str]]]:
        """For each of these stories with syndicated copies linked to it, the copies' (id,
        site), oldest first: the copy a site filter shows in place of its story."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(StoryRow.duplicate_of, StoryRow.id, StoryRow.site)
                .where(StoryRow.duplicate_of.in_([int(i) for i in ids]))
                .order_by(StoryRow.id))).all()
        out: dict[int, list[tuple[int, str]]] = {}
        for root, sid, site in rows:
            out.setdefault(root, []).append((sid, site))
        return out

    async def newest_story_id(self) -> int:
        """The highest story id so far (0 without stories): ids only grow (AUTOINCREMENT)."""
        async with self.session() as s:
            return int(await s.scalar(select(func.max(StoryRow.id))) or 0)

    async def count_stories(self, selection: StorySelection | None = None) -> int:
        """How many stories there are, or how many `iter_stories(selection)` gives."""
        q = _selected(select(func.count()).select_from(StoryRow), selection)
        async with self.session() as s:
            return int(await s.scalar(q) or 0)

    async def iter_stories(self, selection: StorySelection | None = None, *,
                           batch: int = 500) -> AsyncIterator[list[Story]]:
        """The selected stories, linked duplicates too, in id order and in batches (exports).
        Keyset pages, each its own short read: a long export holds no transaction open, and
        sees stories stored meanwhile past its position."""
        last = 0
        while True:
            q = _selected(select(*_STORY_COLUMNS), selection)
            q = q.where(StoryRow.id > last).order_by(StoryRow.id).limit(batch)
            async with self.session() as s:
                rows = (await s.execute(q)).all()
            if not rows:
                return
            yield [_story(r) for r in rows]
            last = rows[-1].id

    async def story_ids(self) -> list[int]:
        """Ids that belong in the index: every story that is not a linked duplicate."""
        async with self.session() as s:
            return list((await s.scalars(
                select(StoryRow.id).where(StoryRow.duplicate_of.is_(None))
            )).all())

    # ---------------------------------------------------------------- takedowns

    async def take_down(self, urls: Sequence[str], *, reason: str = "",
                        now: datetime | None = None) -> list[int]:
        """Remove the stories stored under `urls` (canonical; any spelling of them, see
        `url_variants`) with every story holding the same body (its syndicated copies), and
        keep those URLs and bodies out of the store from now on. The ids removed; the
        database logs each removal for the indexes, as for any delete. A URL not stored yet
        is kept out too (a takedown that arrives before the story does)."""
        now = now or utcnow()
        spellings = sorted({v for u in urls for v in (u, *url_variants(u))})
        async with self.writing() as s:
            if self.dialect == "postgresql":  # see _upsert
                await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": TAKEDOWN_LOCK})
            named = (await s.execute(select(StoryRow.url, StoryRow.content_hash)
                                     .where(StoryRow.url.in_(spellings)))).all()
            hashes = sorted({r.content_hash for r in named if r.content_hash})
            where = StoryRow.url.in_(spellings)
            if hashes:
                where = or_(where, StoryRow.content_hash.in_(hashes))
            doomed_q = select(StoryRow.id, StoryRow.url, StoryRow.content_hash,
                              StoryRow.duplicate_of).where(where)
            if self.dialect == "postgresql":
                # Every row it deletes locked now, before the first DELETE's trigger takes the
                # change log's turn: rows first, then the turn, the order of every writer
                # (`_change_log_turn`). Locked by the second DELETE only, the story's row was
                # waited for with the turn held, while an indexer saving its vector held the
                # row and waited for the turn: a deadlock, and one of the two failed.
                doomed_q = doomed_q.with_for_update(of=StoryRow)
            doomed = (await s.execute(doomed_q)).all()
            # The URLs taken down: each story removed, and each URL named that no story had
            # (under any spelling); every other spelling of them points at its URL
            # (`variant_of`), so `takedown list` shows one line a story.
            stored = {r.url: r.content_hash for r in doomed}
            primary = dict(stored)
            for u in urls:
                if not any(v in stored for v in (u, *url_variants(u))):
                    primary.setdefault(u, "")
            rows = {u: {"url": u, "content_hash": h, "variant_of": ""} for u, h in primary.items()}
            for u, h in primary.items():
                for v in url_variants(u):
                    rows.setdefault(v, {"url": v, "content_hash": h, "variant_of": u})
            await s.execute(delete(TakedownRow).where(TakedownRow.url.in_(list(rows))))
            await s.execute(insert(TakedownRow), [{**r, "reason": reason, "at": now}
                                                  for r in rows.values()])
            # Copies first: deleting a story first gives its copies a root of their own (a
            # trigger), only to delete them next.
            copies = [r.id for r in doomed if r.duplicate_of is not None]
            roots = [r.id for r in doomed if r.duplicate_of is None]
            for ids in (copies, roots):
                if ids:
                    await s.execute(delete(StoryRow).where(StoryRow.id.in_(ids)))
        return sorted(r.id for r in doomed)

    async def lift_takedowns(self, urls: Sequence[str]) -> int:
        """Let `urls` (any spelling) and their bodies back in; how many URLs taken down were
        lifted (a copy's URL included). Each URL's other spellings go with it but are not
        counted: one URL read "lifted: 4 entries". The stories come back when their feeds or
        an import bring them again."""
        spellings = sorted({v for u in urls for v in (u, *url_variants(u))})
        t = TakedownRow
        async with self.writing() as s:
            hashes = sorted({h for h in (await s.scalars(
                select(t.content_hash).where(t.url.in_(spellings)))).all() if h})
            where = t.url.in_(spellings)
            if hashes:  # the body's other URLs (its copies) were taken down with it
                where = or_(where, t.content_hash.in_(hashes))
            gone = (await s.scalars(select(t.variant_of).where(where))).all()
            await s.execute(delete(t).where(where))
            return sum(1 for v in gone if not v)

    async def takedowns(self) -> list[Takedown]:
        t = TakedownRow
        async with self.session() as s:
            rows = (await s.execute(select(t.url, t.content_hash, t.reason, t.at, t.variant_of)
                                    .order_by(t.at.desc(), t.url))).all()
        return [Takedown(*r) for r in rows]

    async def delete_stories_before(self, before: datetime) -> list[int]:
        """Retention: drop stories older than `before`. The database logs each removal for
        the indexes itself (a trigger, migration 0004), as it does for any other delete."""
        return await self._delete_in_batches(past_retention(before))

    async def source_keys(self) -> set[str]:
        """Every source name a `--source` filter selects stories by, as keys (`key_column`):
        the sources the file named at its last sync (retired ones too) and the names stories
        are stored under, an import line's own included. Distinct keys: read from the index
        on `source_key`, not from the stories."""
        async with self.session() as s:
            rows = set(await s.scalars(select(SourceRow.name)))
            stored = set(await s.scalars(select(StoryRow.source_key).distinct()))
        return ({key_column(n) for n in rows} | stored) - {""}

    async def category_keys(self) -> set[str]:
        """Every category stored stories have, as keys (`key_column`): what a `--category`
        filter can select. Distinct keys: read from the index on `category_key`."""
        async with self.session() as s:
            return set(await s.scalars(select(StoryRow.category_key).distinct())) - {""}

    async def site_keys(self) -> set[str]:
        """Every site stored stories have, as site filters compare them (canonical.site_key):
        what a `--site` or `--exclude-site` filter can match. There is no key column: the
        few distinct names, read from the index on `site`, are keyed here."""
        async with self.session() as s:
            return {site_key(n) for n in await self._site_names(s)} - {""}

    @staticmethod
    async def _site_names(s) -> Sequence[str]:
        """The distinct sites stories are stored under, as they came."""
        return (await s.scalars(select(StoryRow.site).distinct())).all()

    async def purgeable_stories(self, name: str) -> int | None:
        """How many stories `purge_source(name)` would remove; None when the sources file
        names a source `name` (its next round would bring them back)."""
        key = key_column(name)
        async with self.session() as s:
            if await s.scalar(select(SourceRow.id).where(SourceRow.name == key,
                                                         SourceRow.in_config.is_(True))):
                return None
            return await s.scalar(select(func.count()).select_from(StoryRow)
                                  .where(StoryRow.source_key == key)) or 0

    async def purge_source(self, name: str) -> list[int] | None:
        """Remove every story stored under source `name`, one the sources file no longer
        names (`tidings sources purge`), and its retired row: the ids removed, None (and
        nothing removed) when the file names it. Deleted as retention deletes (the same
        batches; the indexes follow the change log; copies get a root of their own). A
        sync that adds the source back meanwhile stops it: its new stories are its own."""
        key = key_column(name)
        configured = (select(SourceRow.id)
                      .where(SourceRow.name == key, SourceRow.in_config.is_(True)).exists())
        async with self.session() as s:
            if await s.scalar(select(configured)):
                return None
        ids = await self._delete_in_batches(and_(StoryRow.source_key == key, ~configured))
        async with self.writing() as s:
            await s.execute(delete(SourceRow).where(SourceRow.name == key,
                                                    SourceRow.in_config.is_(False)))
        return ids

    async def _delete_in_batches(self, where) -> list[int]:
        """Delete the stories matching `where`, oldest first, in transactions of
        RETENTION_BATCH; their ids."""
        ids: list[int] = []
        while True:
            # One transaction per batch, not one for all: every other writer waits for each
            # (SQLite's one writer; PostgreSQL's change log lock, taken by the trigger). In
            # one, 213,600 stories held the write lock 14-19 s and every write of the
            # collector, indexer and API waited 12 s (a million: past SQLite's 30 s busy
            # timeout). In batches the longest wait was 0.1 s; the whole run took 29-30 s
            # instead of 19 s under the same load (a commit per batch). A crash between
            # batches keeps the rest for the next run. No change log lock here: the trigger
            # takes it after the rows', the one order.
            async with self.writing() as s:
                batch = list((await s.scalars(
                    select(StoryRow.id).where(where)
                    .order_by(StoryRow.sort_at, StoryRow.id).limit(RETENTION_BATCH))).all())
                if batch:
                    # Copies of a deleted story that stay get a root of their own (a trigger).
                    await s.execute(delete(StoryRow).where(StoryRow.id.in_(batch)))
            ids.extend(batch)
            if len(batch) < RETENTION_BATCH:
                return ids

    async def count_stories_before(self, before: datetime) -> int:
        """How many stories `delete_stories_before(before)` would drop (`retention --dry-run`)."""
        async with self.session() as s:
            return int(await s.scalar(select(func.count()).select_from(StoryRow)
                                      .where(past_retention(before))) or 0)

    # ---------------------------------------------------------------- vectors

    async def embed_backlog(self, recipe: str, limit: int) -> list[EmbedJob]:
        """Stories without a current vector (none, another recipe, or older text), the most
        recently collected first (see `claim_embed_backlog`), returned in id order."""
        q = newest_backlog(_EMBED_JOB_COLUMNS, needs_vector(recipe), limit)
        async with self.session() as s:
            return sorted((EmbedJob(*r) for r in (await s.execute(q)).all()), key=lambda j: j.id)

    async def claim_embed_backlog(self, recipe: str, limit: int, *, lease_s: int,
                                  now: datetime | None = None,
                                  urgent: bool = False) -> list[EmbedJob]:
        """Like `embed_backlog`, but leased: parallel indexers take disjoint stories, and a
        crashed indexer's stories come back when its lease runs out.

        The most recently collected stories first: a backlog of hours (every story after a
        change of the embedder's recipe, an archive being imported) must not hold back the
        stories the collector brings meanwhile, which readers are likeliest to be on.
        `urgent`: the claim of an idle model, ahead of the writes waiting (`writing`)."""
        async with self.writing(urgent=urgent) as s:
            now = await self._lease_time(s, now)
            until = now + timedelta(seconds=lease_s)
            free = and_(needs_vector(recipe),
                        or_(StoryRow.embed_lease_until.is_(None), StoryRow.embed_lease_until < now))
            pick = newest_backlog(_EMBED_JOB_COLUMNS, free, limit)
            if self.dialect == "postgresql":
                rows = (await s.execute(pick.with_for_update(of=StoryRow, skip_locked=True))).all()
                ids = [r[0] for r in rows]
                if ids:
                    await s.execute(update(StoryRow).where(StoryRow.id.in_(ids))
                                    .values(embed_lease_until=until)
                                    .execution_options(synchronize_session=False))
            else:
                # One UPDATE ... RETURNING is atomic on SQLite, across processes too.
                ids_q = newest_backlog((StoryRow.id,), free, limit)
                stmt = (update(StoryRow).where(StoryRow.id.in_(ids_q.scalar_subquery()))
                        .values(embed_lease_until=until).returning(*_EMBED_JOB_COLUMNS)
                        .execution_options(synchronize_session=False))
                rows = (await s.execute(stmt)).all()
            return sorted((EmbedJob(*r) for r in rows), key=lambda j: j.id)

    async def release_embed_claims(self, ids: Sequence[int]) -> None:
        """Drop the embedding leases of `ids`: claimed, but this process will not embed them
        (it is shutting down), so another indexer may take them now instead of after the lease."""
        if not ids:
            return
        async with self.writing() as s:
            await s.execute(update(StoryRow).where(StoryRow.id.in_(list(ids)))
                            .values(embed_lease_until=None)
                            .execution_options(synchronize_session=False))

    async def backlog_size(self, recipe: str) -> int:
        q = (
            select(func.count()).select_from(StoryRow)
            .outerjoin(VectorRow, VectorRow.story_id == StoryRow.id)
            .where(needs_vector(recipe))
        )
        async with self.session() as s:
            return int(await s.scalar(q) or 0)

    async def save_vectors(
        self, rows: Sequence[tuple[int, int, bytes]], recipe: str, now: datetime | None = None
    ) -> list[int]:
        """Store (story_id, embed_version, float32 bytes); returns the ids still present."""
        now = now or utcnow()
        ids = [r[0] for r in rows]
        stories = StoryRow.__table__
        async with self.writing() as s:
            # Done: release the claims, so a later edit of the text is embedded at once. First:
            # the stories' row locks come before the change log's lock, as in a DELETE (its
            # trigger takes the log's lock last); the other order deadlocked with takedowns.
            # RETURNING names the stories still there (deleted meanwhile: skipped), which a
            # second SELECT read before; a statement is ~0.3 ms of the event loop's time.
            present = set((await s.scalars(
                update(stories).where(stories.c.id.in_(ids)).values(embed_lease_until=None)
                .returning(stories.c.id))).all())
            await s.execute(delete(VectorRow).where(VectorRow.story_id.in_(ids)))
            kept = [(sid, version, blob) for sid, version, blob in rows if sid in present]
            if kept:
                # Core INSERTs of the tables, not of the ORM classes: `insert(VectorRow)` takes
                # the ORM's bulk path, which works over every row's values in Python first
                # (save_vectors' event-loop time: 46 -> 38 ms per 1,438 vectors, SQLite).
                await s.execute(insert(VectorRow.__table__), [
                    {"story_id": sid, "recipe": recipe, "embed_version": version, "vector": blob,
                     "embedded_at": now} for sid, version, blob in kept])
                await self._change_log_turn(s)
                await s.execute(insert(IndexChangeRow.__table__), [
                    {"story_id": sid, "op": "add", "at": now} for sid, _, _ in kept])
        return [i for i in ids if i in present]

    async def _change_log_turn(self, s) -> None:
        """Writers of `index_changes` take turns (PostgreSQL): a sequence hands out numbers
        in call order but transactions commit in any order, so a replica could read seq 11,
        move its watermark past 10, and never see 10 when it commits a moment later. Holding
        this lock until commit makes commit order equal seq order. SQLite has one writer.
        Taken after the transaction's row locks on `stories`, never before: a DELETE's
        trigger takes it last, and the opposite order deadlocks with it."""
        if self.dialect == "postgresql":
            await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHANGE_LOG_LOCK})

    async def load_vectors(self, ids: Sequence[int], recipe: str) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        ids = list(ids)
        async with self.session() as s:
            for i in range(0, len(ids), 500):
                q = select(VectorRow.story_id, VectorRow.vector).where(
                    VectorRow.story_id.in_(ids[i:i + 500]), VectorRow.recipe == recipe)
                out.update((await s.execute(q)).all())
        return out

    async def iter_vectors(self, recipe: str, batch: int = 5000) -> AsyncIterator[list[tuple[int, bytes]]]:
        """All current vectors, in id order, in batches (for rebuilds)."""
        last = 0
        while True:
            q = (select(VectorRow.story_id, VectorRow.vector)
                 .join(StoryRow, StoryRow.id == VectorRow.story_id)
                 .where(VectorRow.recipe == recipe, VectorRow.story_id > last,
                        StoryRow.duplicate_of.is_(None))
                 .order_by(VectorRow.story_id).limit(batch))
            async with self.session() as s:
                rows = list((await s.execute(q)).all())
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    async def vector_ids(self, recipe: str) -> list[int]:
        q = (select(VectorRow.story_id).join(StoryRow, StoryRow.id == VectorRow.story_id)
             .where(VectorRow.recipe == recipe, StoryRow.duplicate_of.is_(None)))
        async with self.session() as s:
            return list((await s.scalars(q)).all())

    async def change_seq(self) -> int:
        """The log's position now: a watermark that misses nothing. The pruned horizon
        counts too: a log pruned empty (no change for `change_log_days`) is still at it,
        and a replica starting at 0 would find itself behind the horizon at once."""
        async with self.session() as s:
            top = await s.scalar(select(func.max(IndexChangeRow.seq)))
            return max(int(top or 0), await self._change_horizon(s))

    async def change_horizon(self) -> int:
        """The highest `seq` retention pruned (0: none): a watermark below it missed changes."""
        async with self.session() as s:
            return await self._change_horizon(s)

    @staticmethod
    async def _change_horizon(s) -> int:
        return int(await s.scalar(select(ChangeLogHorizonRow.seq)) or 0)

    async def changes_since(self, seq: int, limit: int = 10000) -> list[tuple[int, int, str]]:
        """Changes after `seq`, in order; ChangesPruned when some of them were pruned."""
        q = (select(IndexChangeRow.seq, IndexChangeRow.story_id, IndexChangeRow.op)
             .where(IndexChangeRow.seq > seq).order_by(IndexChangeRow.seq).limit(limit))
        async with self.session() as s:
            rows = [tuple(r) for r in (await s.execute(q)).all()]
            # The horizon read after the rows: a prune that committed before the rows were
            # read shows here (it only grows), so rows read with a gap are never returned.
            horizon = await self._change_horizon(s)
        if seq < horizon:
            raise ChangesPruned(seq, horizon)
        return rows

    async def prune_changes_before(self, before: datetime) -> int:
        """Retention of the change log: drop its oldest entries, logged before `before`, and
        raise the horizon to the highest `seq` dropped, in the same transaction (replicas
        behind it reload instead of replaying; `recommender.corpus`). Returns how many.

        Only a prefix in `seq` order goes, up to the first entry logged since `before`: the
        horizon then means "everything up to here is gone, everything after is kept". (`at`
        comes from each writer's clock; an entry a little out of order ends a run early, and
        the next run takes the rest.) Batches by primary key, as `delete_stories_before`
        does, so other writers wait for one batch at most."""
        pruned = 0
        while True:
            async with self.writing() as s:
                # PostgreSQL: no writer holds a seq it has not committed (they take the
                # lock before inserting), so no entry below the horizon commits later.
                await self._change_log_turn(s)
                rows = (await s.execute(
                    select(IndexChangeRow.seq, IndexChangeRow.at)
                    .order_by(IndexChangeRow.seq).limit(PRUNE_BATCH))).all()
                old = 0
                while old < len(rows) and rows[old].at < before:
                    old += 1
                if old:
                    top = int(rows[old - 1].seq)
                    await s.execute(delete(IndexChangeRow).where(IndexChangeRow.seq <= top))
                    # Seqs only grow, so `top` is above the horizon; the condition keeps it
                    # from ever going back all the same.
                    await s.execute(update(ChangeLogHorizonRow)
                                    .where(ChangeLogHorizonRow.id == 1, ChangeLogHorizonRow.seq < top)
                                    .values(seq=top))
            pruned += old
            if old < PRUNE_BATCH:
                return pruned

    async def count_changes_before(self, before: datetime) -> int:
        """How many entries `prune_changes_before(before)` would drop: the prefix in `seq`
        order up to the first entry logged since `before` (`retention --dry-run`)."""
        async with self.session() as s:
            first_kept = await s.scalar(select(func.min(IndexChangeRow.seq))
                                        .where(IndexChangeRow.at >= before))
            q = select(func.count()).select_from(IndexChangeRow)
            if first_kept is not None:
                q = q.where(IndexChangeRow.seq < first_kept)
            return int(await s.scalar(q) or 0)

    # ---------------------------------------------------------------- readers and events

    async def add_events(self, events: Sequence[EventRecord], now: datetime | None = None) -> int:
        """Insert events, skipping keys already stored (idempotent); returns how many were new."""
        return len(await self.store_events(events, now))

    async def store_events(self, events: Sequence[EventRecord],
                           now: datetime | None = None) -> list[EventRecord]:
        """Insert events, skipping keys already stored (idempotent); returns the new ones, one
        per key (the batch's first), in key order: what a per-type count should add up."""
        now = now or utcnow()
        if not events:
            return []
        async with self.writing() as s:
            # Events of a story not stored (deleted since they were accepted: a takedown,
            # retention) are skipped, as the API skips those it is sent: nothing to show or
            # count them under.
            wanted = list({e.story_id for e in events})
            present: set[int] = set()
            for i in range(0, len(wanted), 500):
                present.update((await s.scalars(
                    select(StoryRow.id).where(StoryRow.id.in_(wanted[i:i + 500])))).all())
            # Readers forgotten a moment ago: an event another process accepted before the
            # delete must not bring them back.
            if self.dialect == "postgresql":
                # Shared, until this commits: a reader's delete (exclusive) waits for the
                # batches under way and then deletes what they wrote; a batch starting later
                # waits for it and sees it. Under READ COMMITTED a batch that looked just
                # before a delete committed wrote the reader back. SQLite has one writer.
                await s.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"),
                                {"k": READERS_LOCK})
            forgotten = await self._forgotten(s, {e.reader for e in events}, now)
            events = [e for e in events if e.story_id in present and e.reader not in forgotten]
            if not events:
                return []
            # Writes only, no read of what is stored first: another process writing the
            # same reader, story or event key at the same moment (PostgreSQL under READ
            # COMMITTED; SQLite too, for what was read before the first write) made both
            # insert it (one batch failed) or both add to the counts they had read (one's
            # lost). Each table in key order: PostgreSQL writers that lock the same rows in
            # one order do not deadlock.
            await s.execute(SEE_READERS, [{"id": r, "now": now} for r in sorted({e.reader for e in events})])
            # One event a key, the batch's first (reversed: a dict keeps the last it is given).
            once = sorted({e.event_key: e for e in reversed(events)}.values(), key=lambda e: e.event_key)
            stored = set((await s.execute(insert_new_events(self.dialect), [
                {"event_key": e.event_key, "reader_id": e.reader, "story_id": e.story_id, "type": e.type,
                 "dwell_s": e.dwell_s, "at": e.at, "page": e.page} for e in once])).scalars())
            fresh = [e for e in once if e.event_key in stored]
            if fresh:
                await s.execute(COUNT_STORIES, [
                    {"story_id": sid, "impressions": i, "clicks": c, "reads": r, "last_event_at": now}
                    for sid, (i, c, r) in sorted(tally(fresh, lambda e: e.story_id).items())])
                await self._count_days(s, tally(fresh, event_day))
        return fresh

    @staticmethod
    async def _forgotten(s, readers: set[str], now: datetime) -> set[str]:
        """Which of `readers` were deleted within READER_DELETION_GRACE of `now`."""
        return set((await s.scalars(select(ReaderDeletionRow.reader_id).where(
            ReaderDeletionRow.reader_id.in_(sorted(readers)),
            ReaderDeletionRow.deleted_at >= now - READER_DELETION_GRACE))).all())

    async def _count_days(self, s, counts: dict[tuple[date, int, str], list[int]]) -> None:
        """Add (impressions, clicks, reads) per (day, story, page) to `event_days`: one upsert
        on both engines, so two writers' rows of one day add up instead of one failing.
        In key order: PostgreSQL writers that lock the same rows in one order do not
        deadlock."""
        await s.execute(COUNT_DAYS, [
            {"day": d, "story_id": sid, "page": page, "impressions": i, "clicks": c, "reads": r}
            for (d, sid, page), (i, c, r) in sorted(counts.items())])

    async def reader_events(self, reader: str, since: datetime | None = None, limit: int = 2000,
                            types: Sequence[str] | None = None) -> list[EventRecord]:
        """The reader's newest `limit` events (of `types`, default all), newest first."""
        q = select(EventRow).where(EventRow.reader_id == reader)
        if types is not None:
            q = q.where(EventRow.type.in_(list(types)))
        if since:
            q = q.where(EventRow.at >= since)
        q = q.order_by(EventRow.at.desc()).limit(limit)
        async with self.session() as s:
            return [EventRecord(r.event_key, r.reader_id, r.story_id, r.type, r.at, r.dwell_s, r.page)
                    for r in (await s.scalars(q)).all()]

    async def iter_reader_events(self, reader: str, *, batch: int = 5_000
                                 ) -> AsyncIterator[list[ExportedEvent]]:
        """Every event of the reader, by time, then story id, then the order stored, in
        batches (their export), each with its story's URL and title while it is stored. In id
        order, the events of one request came in the order of their keys (`store_events`
        inserts by key, a hash), and an app's queue sent late came after newer events. Keyset
        pages, each its own short read, as `iter_stories`: a reader's export had a limit
        (100,000, newest first) and was cut there without a word."""
        after = None  # (at, story_id, id) of the last event given
        while True:
            # Plain rows, not ORM objects (~4x the cost to build, see get_stories).
            q = (select(EventRow.id, EventRow.event_key, EventRow.story_id, EventRow.type,
                        EventRow.at, EventRow.dwell_s, EventRow.page, StoryRow.url, StoryRow.title)
                 .outerjoin(StoryRow, StoryRow.id == EventRow.story_id)
                 .where(EventRow.reader_id == reader)
                 .order_by(EventRow.at, EventRow.story_id, EventRow.id).limit(batch))
            if after is not None:
                at, sid, eid = after
                q = q.where(or_(EventRow.at > at, and_(EventRow.at == at, or_(
                    EventRow.story_id > sid, and_(EventRow.story_id == sid, EventRow.id > eid)))))
            async with self.session() as s:
                rows = (await s.execute(q)).all()
            if not rows:
                return
            yield [ExportedEvent(r.event_key, reader, r.story_id, r.type, r.at, r.dwell_s, r.page,
                                 r.url, r.title) for r in rows]
            after = (rows[-1].at, rows[-1].story_id, rows[-1].id)

    async def reader_story_ids(self, reader: str, since: datetime | None = None,
                               until: datetime | None = None, types: Sequence[str] = ("click", "read"),
                               limit: int = READER_STORY_IDS_CAP) -> set[int]:
        """The distinct stories the reader had events of `types` for between `since` and
        `until` (both included); the `limit` most recent when there are more. Ids only, not
        events: what a reader read stays out of their feed however long their history, while
        `reader_events` bounds the events a profile is built from."""
        q = select(EventRow.story_id).where(EventRow.reader_id == reader, EventRow.type.in_(list(types)))
        if since:
            q = q.where(EventRow.at >= since)
        if until:
            q = q.where(EventRow.at <= until)
        q = q.group_by(EventRow.story_id).order_by(func.max(EventRow.at).desc()).limit(limit)
        async with self.session() as s:
            return set((await s.scalars(q)).all())

    async def stories_at(self, pages: Iterable[str]) -> set[int]:
        """The stories stored under these canonical URLs or another spelling of each
        (`url_variants`): the articles that events' `page`s name."""
        urls = list({u for page in pages for u in (page, *url_variants(page))})
        out: set[int] = set()
        async with self.session() as s:
            for i in range(0, len(urls), 500):
                out.update((await s.scalars(select(StoryRow.id).where(
                    StoryRow.url.in_(urls[i:i + 500])))).all())
        return out

    async def reader(self, reader: str) -> dict | None:
        async with self.session() as s:
            row = await s.get(ReaderRow, reader)
            if row is None:
                return None
            return {"id": row.id, "preferences": row.preferences or {},
                    "created_at": row.created_at, "last_seen_at": row.last_seen_at}

    async def set_preferences(self, reader: str, prefs: dict, now: datetime | None = None) -> None:
        now = now or utcnow()
        # One upsert, not a look-up then an insert: the reader's first events, written by
        # another process at the same moment (`add_events`), inserted the same new reader.
        table = ReaderRow.__table__
        # Nothing set is none (SQL NULL: Python's None is JSON 'null' in a JSON column): a
        # reader who cleared every list holds nothing retention must keep (`_idle_readers`).
        stored = prefs if any(prefs.values()) else null()
        row = dialect_insert(self.dialect)(table).values(id=reader, preferences=stored, created_at=now,
                                                         last_seen_at=now)
        async with self.writing() as s:
            await s.execute(row.on_conflict_do_update(
                index_elements=[table.c.id], set_={"preferences": row.excluded.preferences}))

    async def delete_reader(self, reader: str, now: datetime | None = None) -> bool:
        """Forget a reader; True when there was one. Their events in flight in any process
        for the next `READER_DELETION_GRACE` are dropped when written (`add_events`)."""
        now = now or utcnow()
        async with self.writing() as s:
            if self.dialect == "postgresql":  # see store_events
                await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": READERS_LOCK})
            await s.execute(delete(EventRow).where(EventRow.reader_id == reader))
            res = await s.execute(delete(ReaderRow).where(ReaderRow.id == reader))
            await s.execute(delete(ReaderDeletionRow).where(
                or_(ReaderDeletionRow.reader_id == reader, self._past_grace(now))))
            s.add(ReaderDeletionRow(reader_id=reader, deleted_at=now))
            return bool(res.rowcount)

    async def prune_reader_deletions(self, now: datetime | None = None) -> int:
        """Drop the deletions older than READER_DELETION_GRACE: past it they guard nothing.
        Only the next `delete_reader` pruned them, so the last reader forgotten kept their id
        in the database for as long as nobody else was (retention calls this each run)."""
        async with self.writing() as s:
            res = await s.execute(delete(ReaderDeletionRow).where(
                self._past_grace(now or utcnow())))
            return res.rowcount or 0

    @staticmethod
    def _past_grace(now: datetime):
        """The reader deletions that guard nothing any more (READER_DELETION_GRACE past)."""
        return ReaderDeletionRow.deleted_at < now - READER_DELETION_GRACE

    @staticmethod
    def _idle_readers(before: datetime):
        # Nothing of theirs is kept past `before` (events retention's cutoff): no preferences
        # (which they set to be kept), no event since, and not seen since. Events before it
        # are retention's to delete (first, in a run; the dry run counts as if they were
        # gone). A reader writing events at the same moment sets `last_seen_at` (SEE_READERS)
        # in the same transaction as the events: PostgreSQL's delete, finding that row
        # changed, checks it again and keeps it; SQLite has one writer.
        kept = select(EventRow.id).where(EventRow.reader_id == ReaderRow.id,
                                         EventRow.at >= before).exists()
        return and_(ReaderRow.preferences.is_(None), ReaderRow.last_seen_at < before, ~kept)

    async def delete_idle_readers(self, before: datetime) -> int:
        """Retention of readers: delete those with nothing left (`_idle_readers`). Each event
        stored a reader row (id, first and last seen) that outlived every event: the widget's
        one id a browser, or a page view where storage is blocked, each kept for ever.

        In batches of RETENTION_BATCH, walking the primary key, as `delete_stories_before`:
        one transaction for all held SQLite's one write lock while it deleted 660k of a
        million readers (the first run over years of widget ids, or `events_days` cut from
        90 to 30), ~50 s, past the 30 s busy timeout of every event the widget sent
        meanwhile. In batches the longest wait was ~1.3 s; the run took 131 s, not 50 (a
        commit a batch; PostgreSQL 40 s, not 13). Each batch's candidates (no preferences, not seen since) are read from
        the readers alone, which holds no lock (a walk of the whole table, 0.2-0.35 s a
        million; an hourly run finds a few hundred), and deleted by id with the whole
        condition: a reader seen since the read, or with an event since, stays. (Their
        events read beside them made PostgreSQL merge the events index from its start,
        for every batch: ~0.3 s a batch a third of the way through.) No index on
        `last_seen_at`: it cut the hourly scan (~0.1 s) to ~0.01 s, but every event's
        upsert would write it, and SQLite took it for the first run too, counting 660k
        readers in 6.7 s, not 0.6 s."""
        deleted = 0
        after = ""  # every id sorts after it
        while True:
            async with self.session() as s:
                batch = list((await s.scalars(
                    select(ReaderRow.id).where(ReaderRow.id > after, ReaderRow.preferences.is_(None),
                                               ReaderRow.last_seen_at < before)
                    .order_by(ReaderRow.id).limit(RETENTION_BATCH))).all())
            if batch:
                async with self.writing() as s:
                    res = await s.execute(delete(ReaderRow).where(
                        ReaderRow.id.in_(batch), self._idle_readers(before)))
                    deleted += res.rowcount or 0
            if len(batch) < RETENTION_BATCH:
                return deleted
            after = batch[-1]

    async def count_idle_readers(self, before: datetime) -> int:
        """How many readers `delete_idle_readers(before)` would drop (`retention --dry-run`)."""
        async with self.session() as s:
            return int(await s.scalar(select(func.count()).select_from(ReaderRow)
                                      .where(self._idle_readers(before))) or 0)

    async def story_stats(self, ids: Iterable[int] | None = None) -> dict[int, tuple[int, int, int]]:
        q = select(StoryStatRow.story_id, StoryStatRow.impressions, StoryStatRow.clicks, StoryStatRow.reads)
        if ids is not None:
            q = q.where(StoryStatRow.story_id.in_(list(ids)))
        async with self.session() as s:
            return {r[0]: (r[1], r[2], r[3]) for r in (await s.execute(q)).all()}

    def _epoch_s(self, column):
        """`column` (a UTC time) as seconds since the epoch, computed by the database: turning
        200k stored times into Python datetimes took ~0.8 s of the event loop (SQLite).
        SQLite's julianday keeps milliseconds; PostgreSQL's epoch microseconds."""
        if self.dialect == "sqlite":
            return (func.julianday(column) - 2440587.5) * 86400.0
        return cast(func.extract("epoch", column), Float)

    async def recent_events(self, since: datetime, types: tuple[str, ...] = ("click", "read"),
                            limit: int = 200_000) -> EventLog:
        """Recent events as columns, newest first, bounded."""
        q = (select(EventRow.reader_id, EventRow.story_id, self._epoch_s(EventRow.at), EventRow.type)
             .where(EventRow.at >= since, EventRow.type.in_(types))
             .order_by(EventRow.at.desc()).limit(limit))
        out = EventLog([], [], [], [])
        async with self.session() as s:
            # Streamed in partitions: turning rows into Python values runs on the event loop,
            # and 200k rows at once held it for ~0.8 s, every time the crowd was refreshed;
            # between partitions other requests get their turn.
            result = await s.stream(q)
            async for part in result.partitions(EVENT_PARTITION):
                readers, story_ids, at_s, kinds = zip(*part, strict=True)
                out.readers.extend(readers)
                out.story_ids.extend(story_ids)
                out.at_s.extend(at_s)
                out.types.extend(kinds)
        return out

    def _utc_day(self, column):
        """`column` (a UTC time) as its UTC day, "YYYY-MM-DD", computed by the database.
        SQLite holds the times as naive UTC text ("2026-11-26 12:00:00.000000", see
        schema.UTCDateTime); PostgreSQL as timestamptz, read here in UTC whatever the
        session's time zone."""
        if self.dialect == "sqlite":
            return func.strftime("%Y-%m-%d", column, type_=String)
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD", type_=String)

    async def _stored_sites(self, s, site: str) -> list[str]:
        """The stored spellings of `site` as site filters compare them (canonical.site_key:
        "www.BBC.co.uk" is "bbc.co.uk"): stories keep the site as they came, and there is no
        key column to match on, so the few distinct names are compared here."""
        want = site_key(site)
        return [n for n in await self._site_names(s) if site_key(n) == want]

    async def widget_stats(self, since: datetime, until: datetime, site: str | None = None,
                           top: int = 10) -> WidgetCounts:
        """Impressions, clicks and reads of [since, until): per UTC day, per site of the story
        (the STATS_TOP_SITES with most clicks, spellings folded), for the `top` stories with
        most clicks, and per page the block was on (the STATS_TOP_PAGES with most
        impressions; events without a page are left out of those only); only stories of
        `site` when given.

        Read from `event_days`, counted as the events were stored: the events of a busy
        widget are millions of rows, its days' counts a row per (day, story, page) shown,
        summed here by the database per day, per story and per page. Those count whole UTC
        days; where [since, until) starts or ends within a day, that day's events outside it
        are counted from the events and taken off (`day_span`). The report's period starts
        at a midnight and ends now: what is taken off is today's events dated after now,
        none or a few from a clock ahead. (A forgotten reader's are no longer there to take
        off.)"""
        if until <= since:
            return WidgetCounts([], [], [])
        first, last, edges = day_span(since, until)
        async with self.session() as s:
            # A blank site is no filter, as for the related filters (`site_key`): it counted
            # only the stories stored without a site.
            sites = await self._stored_sites(s, site) if site and site_key(site) else None
            if sites == []:  # no story of that site: nothing to count
                return WidgetCounts([], [], [])
            days = _event_days_of(EventDayRow.day, first, last, sites)
            by_day = add_up({}, await self._day_totals(s, days), 1)
            by_story = add_up({}, await self._story_totals(s, days), 1)
            if edges:
                for d, sid, name, i, c, r in await self._event_groups(s, edges, sites):
                    add_up(by_day, [(d, i, c, r)], -1)
                    add_up(by_story, [(sid, name, i, c, r)], -1)
            # A day or story whose every event was at the edges is not in the report.
            by_day = {d: n for d, n in by_day.items() if any(n)}
            by_story = {k: n for k, n in by_story.items() if any(n)}
            by_site: dict[str, list[int]] = {}
            for (_, name), (i, c, _) in by_story.items():
                counts = by_site.setdefault(name, [0, 0])
                counts[0], counts[1] = counts[0] + i, counts[1] + c
            # Most clicks first, then most impressions; ties by id (a story has one site).
            ranked = _by_clicks(by_story)[:top]
            titled = {sid: (title, url) for sid, title, url in (await s.execute(
                select(StoryRow.id, StoryRow.title, StoryRow.url)
                .where(StoryRow.id.in_([sid for sid, _ in ranked])))).all()}
            pages = await self._top_pages(s, first, last, edges, sites)
        return WidgetCounts(
            [(d, *by_day[(d,)]) for (d,) in sorted(by_day)],
            fold_sites(by_site)[:STATS_TOP_SITES],
            [StoryCounts(sid, *titled[sid], name, *by_story[(sid, name)][:2])
             for sid, name in ranked if sid in titled],
            pages)

    async def _day_totals(self, s, days) -> list[tuple]:
        """(day "YYYY-MM-DD", impressions, clicks, reads) of the `event_days` rows `days`
        selects, one per day: read in key order, no sort."""
        q = days.with_only_columns(EventDayRow.day, *_summed()).group_by(EventDayRow.day)
        return [(d.isoformat(), i, c, r) for d, i, c, r in (await s.execute(q)).all()]

    async def _story_totals(self, s, days) -> list[tuple]:
        """(story, site, impressions, clicks, reads) of the `event_days` rows `days` selects,
        one per story. Summed per (day, story) first, in key order, then per story: the
        database sorts those groups, not every (day, story, page) row (SQLite, 573k rows:
        0.4 s, not 0.65 s); the stories joined last, once a story, not once a row."""
        per_day = (days.with_only_columns(EventDayRow.story_id, *_summed())
                   .group_by(EventDayRow.day, EventDayRow.story_id).subquery())
        per_story = (select(per_day.c.story_id, *(func.sum(per_day.c[k]).label(k) for k in COUNTS))
                     .group_by(per_day.c.story_id).subquery())
        q = (select(per_story.c.story_id, StoryRow.site, *(per_story.c[k] for k in COUNTS))
             .join(StoryRow, StoryRow.id == per_story.c.story_id))
        return (await s.execute(q)).all()

    async def _event_groups(self, s, spans: list[tuple[datetime, datetime]], sites: list[str] | None):
        """(day, story, site, impressions, clicks, reads) of the events within `spans`
        ([start, end) each), of stories of `sites` when given: the edges `widget_stats`
        takes off the whole days."""
        day = self._utc_day(EventRow.at).label("day")
        q = (select(day, EventRow.story_id, StoryRow.site, *_event_counts(EVENT_TYPES))
             .join(StoryRow, StoryRow.id == EventRow.story_id)
             .where(or_(*(and_(EventRow.at >= a, EventRow.at < b) for a, b in spans)),
                    EventRow.type.in_(EVENT_TYPES))
             .group_by(day, EventRow.story_id, StoryRow.site))
        if sites is not None:
            q = q.where(StoryRow.site.in_(sites))
        return (await s.execute(q)).all()

    async def _top_pages(self, s, first: date, last: date, edges: list[tuple[datetime, datetime]],
                         sites: list[str] | None) -> list[tuple[str, int, int]]:
        """The STATS_TOP_PAGES pages with most impressions in the days first..last less the
        events of the `edges`, then most clicks: (page, impressions, clicks), of stories of
        `sites` when given.

        The edges only lower the counts of the pages they hold, so the top STATS_TOP_PAGES
        are among the whole days' top STATS_TOP_PAGES + that many pages."""
        off: dict[str, list[int]] = {}
        if edges:
            # Cut as `event_days` cuts them; literals, not parameters: PostgreSQL takes the
            # GROUP BY for the selected expression only when they read the same.
            page = func.substr(EventRow.page, literal_column("1"),
                               literal_column(str(EVENT_DAY_PAGE_CHARS)))
            q = (select(page, *_event_counts(("impression", "click")))
                 .where(or_(*(and_(EventRow.at >= a, EventRow.at < b) for a, b in edges)),
                        EventRow.page.is_not(None), EventRow.page != "",
                        EventRow.type.in_(("impression", "click")))
                 .group_by(page))
            # Of stored stories only, as `event_days` counts them (a deleted story's rows go
            # with it; its events stay, for the reader's export).
            q = q.join(StoryRow, StoryRow.id == EventRow.story_id)
            if sites is not None:
                q = q.where(StoryRow.site.in_(sites))
            off = {page: [int(i), int(c)] for page, i, c in (await s.execute(q)).all()}
        # SQLite: "+day" keeps the day off the key (sqlite.org/optoverview.html, "unary +"),
        # so the rows are read from ix_event_days_page, in page order: without statistics
        # (Tidings runs no ANALYZE) it took the key's range of days and sorted every row by
        # page (90 days of a widget under 100k page views a day, 3.75M rows: 4.1-4.8 s, 0.9-1.1 s).
        day = EventDayRow.day
        if self.dialect == "sqlite":
            day = UnaryExpression(day, operator=custom_op("+"), type_=day.type)
        impressions = func.sum(EventDayRow.impressions).label("i")
        clicks = func.sum(EventDayRow.clicks).label("c")
        q = (_event_days_of(day, first, last, sites).with_only_columns(EventDayRow.page, impressions, clicks)
             .where(EventDayRow.page != "")
             .group_by(EventDayRow.page)
             .having(impressions + clicks > 0)  # reads only: not a page the block was seen on
             # Where the block is seen most, clicked or not.
             .order_by(impressions.desc(), clicks.desc(), EventDayRow.page)
             .limit(STATS_TOP_PAGES + len(off)))
        pages = [(page, int(i) - off.get(page, (0, 0))[0], int(c) - off.get(page, (0, 0))[1])
                 for page, i, c in (await s.execute(q)).all()]
        # Stable: ties keep the database's order of pages, as without edges.
        pages.sort(key=lambda p: (-p[1], -p[2]))
        return [p for p in pages if p[1] or p[2]][:STATS_TOP_PAGES]

    async def delete_events_before(self, before: datetime) -> int:
        async with self.writing() as s:
            res = await s.execute(delete(EventRow).where(EventRow.at < before))
            return res.rowcount or 0

    async def count_events_before(self, before: datetime) -> int:
        """How many events `delete_events_before(before)` would drop (`retention --dry-run`)."""
        async with self.session() as s:
            return int(await s.scalar(select(func.count()).select_from(EventRow)
                                      .where(EventRow.at < before)) or 0)

    async def count_event_days_before(self, day: date) -> int:
        """How many rows `delete_event_days_before(day)` would drop (`retention --dry-run`)."""
        async with self.session() as s:
            return int(await s.scalar(select(func.count()).select_from(EventDayRow)
                                      .where(EventDayRow.day < day)) or 0)

    async def delete_event_days_before(self, day: date) -> int:
        """Retention of the report's counts: drop the days before `day`; returns how many rows."""
        async with self.writing() as s:
            res = await s.execute(delete(EventDayRow).where(EventDayRow.day < day))
            return res.rowcount or 0

    # ---------------------------------------------------------------- embedders

    async def register_embedder(self, owner: str, recipe: str, *, lease_s: int,
                                now: datetime | None = None) -> EmbedderSeat:
        """Register a process that embeds stored stories with `recipe`, leased for `lease_s`.
        Registrations that expired a day ago are dropped on the way."""
        async with self.writing() as s:
            now = await self._lease_time(s, now)
            await s.execute(delete(EmbedderRow)
                            .where(EmbedderRow.lease_until < now - timedelta(days=1)))
            row = EmbedderRow(owner=owner[:120], recipe=recipe, started_at=now,
                              lease_until=now + timedelta(seconds=lease_s))
            s.add(row)
            await s.flush()
            return EmbedderSeat(row.id, row.owner, recipe, now)

    async def renew_embedder(self, seat_id: int, *, lease_s: int,
                             now: datetime | None = None) -> bool:
        """Extend a live registration; False if it expired (or is gone). An expired one is not
        revived: it would take back the oldest place from an indexer that started meanwhile."""
        async with self.writing() as s:
            now = await self._lease_time(s, now)
            res = await s.execute(
                update(EmbedderRow)
                .where(EmbedderRow.id == seat_id, EmbedderRow.lease_until > now)
                .values(lease_until=now + timedelta(seconds=lease_s))
                .execution_options(synchronize_session=False))
            return bool(res.rowcount)

    async def drop_embedder(self, seat_id: int) -> None:
        async with self.writing() as s:
            await s.execute(delete(EmbedderRow).where(EmbedderRow.id == seat_id))

    async def live_embedders(self, now: datetime | None = None) -> list[EmbedderSeat]:
        """Every registration whose lease runs, oldest first."""
        async with self.session() as s:
            now = await self._lease_time(s, now)
            q = (select(EmbedderRow.id, EmbedderRow.owner, EmbedderRow.recipe, EmbedderRow.started_at)
                 .where(EmbedderRow.lease_until > now).order_by(EmbedderRow.id))
            return [EmbedderSeat(*r) for r in (await s.execute(q)).all()]

    async def release_orphan_embed_claims(self, seat_id: int, *, lease_s: int,
                                          now: datetime | None = None) -> int:
        """Drop every embedding lease when no indexer but `seat_id` (the caller, which holds
        none yet) is registered: the claims' holders are gone, so they need not run out.
        Returns how many were dropped. One statement, so an indexer registering meanwhile
        either counts as live or claims after it; a claim made after `now` runs past
        `now + lease_s` and is never dropped."""
        async with self.writing() as s:
            now = await self._lease_time(s, now)
            others = (select(EmbedderRow.id)
                      .where(EmbedderRow.id != seat_id, EmbedderRow.lease_until > now).exists())
            res = await s.execute(
                update(StoryRow)
                .where(StoryRow.embed_lease_until.is_not(None),
                       StoryRow.embed_lease_until <= now + timedelta(seconds=lease_s), ~others)
                .values(embed_lease_until=None)
                .execution_options(synchronize_session=False))
            return int(res.rowcount or 0)

    async def leading_embedder(self, now: datetime | None = None) -> EmbedderSeat | None:
        """The oldest live registration: its recipe is the one this database's stories are
        embedded with."""
        async with self.session() as s:
            now = await self._lease_time(s, now)
            q = (select(EmbedderRow.id, EmbedderRow.owner, EmbedderRow.recipe, EmbedderRow.started_at)
                 .where(EmbedderRow.lease_until > now).order_by(EmbedderRow.id).limit(1))
            row = (await s.execute(q)).first()
        return EmbedderSeat(*row) if row else None

    async def latest_vector_recipe(self) -> str | None:
        """The recipe of the newest story's stored vector (one read of the primary key's end):
        what the database's stories were last embedded with, when no indexer runs to say it."""
        q = select(VectorRow.recipe).order_by(VectorRow.story_id.desc()).limit(1)
        async with self.session() as s:
            return await s.scalar(q)

    # ---------------------------------------------------------------- cluster jobs

    async def claim_job(self, name: str, *, owner: str, every_s: int, lease_s: int,
                        now: datetime) -> bool:
        """True if this process should run the singleton job `name` now (once per cluster):
        no run done within `every_s` and no live claim. The claim is a lease of `lease_s`;
        `job_done` records the run. The claim itself recorded it: a run that then failed
        (the database busy, a disk error, the process killed) was tried again by no process
        for `every_s`; now by the first to tick once the lease has run out."""
        try:
            async with self.writing() as s:
                now = await self._lease_time(s, now)
                free = and_(JobLockRow.name == name,
                            or_(JobLockRow.last_run_at.is_(None),
                                JobLockRow.last_run_at <= now - timedelta(seconds=every_s)),
                            or_(JobLockRow.lease_until.is_(None), JobLockRow.lease_until <= now))
                until = now + timedelta(seconds=lease_s)
                # One conditional UPDATE: of two processes at once, the second sees the
                # first's lease (PostgreSQL re-checks the row once the first commits; SQLite
                # has one writer) and changes nothing. A SELECT, then an UPDATE of the row
                # read, let two processes on one SQLite file both claim a due job.
                res = await s.execute(update(JobLockRow).where(free)
                                      .values(owner=owner, lease_until=until)
                                      .execution_options(synchronize_session=False))
                if res.rowcount:
                    return True
                if await s.scalar(select(JobLockRow.name).where(JobLockRow.name == name)):
                    return False
                # The job's first claim in this database; another process may insert the
                # same row at once, and the key makes one of us fail.
                s.add(JobLockRow(name=name, owner=owner, lease_until=until))
        except IntegrityError:
            return False
        return True

    async def renew_job(self, name: str, *, owner: str, lease_s: int, now: datetime) -> bool:
        """Extend `owner`'s claim of the singleton job `name` to `lease_s` from `now`, while
        its run goes on; False if the claim is no longer its own (its lease ran out and
        another process claimed the job, or the run was recorded done)."""
        async with self.writing() as s:
            now = await self._lease_time(s, now)
            res = await s.execute(update(JobLockRow)
                                  .where(JobLockRow.name == name, JobLockRow.owner == owner,
                                         JobLockRow.lease_until.is_not(None))
                                  .values(lease_until=now + timedelta(seconds=lease_s))
                                  .execution_options(synchronize_session=False))
            return bool(res.rowcount)

    async def job_done(self, name: str, *, owner: str, started_at: datetime,
                       settings: str | None = None) -> bool:
        """Record a run of `name` that `owner` claimed at `started_at` as done (the next one
        is due `every_s` after it), with the `settings` it ran with, and end its lease; False
        if the claim is no longer ours (its lease ran out and another process claimed the job)."""
        async with self.writing() as s:
            started_at = await self._lease_time(s, started_at)  # as `claim_job` reads it
            res = await s.execute(update(JobLockRow)
                                  .where(JobLockRow.name == name, JobLockRow.owner == owner)
                                  .values(last_run_at=started_at, lease_until=None,
                                          settings=settings)
                                  .execution_options(synchronize_session=False))
            return bool(res.rowcount)

    async def job_last_run(self, name: str) -> tuple[str, str] | None:
        """The settings the last recorded run of `name` used and the job's owner: the
        process that ran it, or one that claimed the job since and whose run was never
        recorded (killed mid-run), as a claim writes the owner and only `job_done` the
        settings; a job that must know who ran records it in its settings (api.runner).
        None before any run recorded its settings."""
        async with self.session() as s:
            row = (await s.execute(select(JobLockRow.settings, JobLockRow.owner)
                                   .where(JobLockRow.name == name,
                                          JobLockRow.settings.is_not(None)))).first()
            return (row[0], row[1] or "") if row else None


def event_key(reader: str, story_id: int, type_: str, at: datetime, client_id: str | None,
              page: str | None = None) -> str:
    """Idempotency key: the client's event id when given, else a digest of the event itself,
    its page included: a retry sends the same page, while one story shown under two pages at
    one time (an article and its AMP page, a batch of two tabs' impressions) is two events,
    which were stored as one and left a page out of the report. Without a page the key is
    what it always was, so a stored event's retry still finds it."""
    if client_id:
        # A digest of both, apart by a character neither may hold: "a" + "b:c" and "a:b" +
        # "c" were one key, and so were long ids cut to one prefix (the second event lost).
        return "c:" + hashlib.sha256(f"{reader}\0{client_id}".encode()).hexdigest()[:40]
    # One instant, one key, however its offset was written: "10:00+01:00" and "09:00Z" (a
    # device's local time, then a queue's retry in UTC) were two keys, and one click stored
    # twice. UTC is written as it always was ("+00:00"; naive as naive) so stored keys match.
    when = at.astimezone(UTC) if at.tzinfo else at
    raw = f"{reader}|{story_id}|{type_}|{when.isoformat()}" + (f"|{page}" if page else "")
    return "h:" + hashlib.sha256(raw.encode()).hexdigest()[:40]
