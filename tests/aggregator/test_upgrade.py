"""An operator's upgrade of a long-running deployment, on SQLite and on the real PostgreSQL:
a database the first version filled (0001: stories and their copies, vectors, the change
log, readers, events, counters, sources) migrated to head keeps every row and serves it
through the store; the index follows the change log from the start; a second migrate
changes nothing; a migration stopped halfway resumes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import text

from aggregator.schema import UTCDateTime
from aggregator.store import Store
from tests.aggregator.test_store import _event_days, head, migrate_to

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TABLES = ("sources", "stories", "story_vectors", "index_changes", "readers", "events",
          "story_stats", "job_locks")


def table(name: str, *columns: str, times: tuple[str, ...] = (), json: tuple[str, ...] = ()):
    """Table `name` as an old version wrote it: plain columns, UTC times and JSON."""
    return sa.table(name, *(sa.column(c) for c in columns),
                    *(sa.column(c, UTCDateTime()) for c in times),
                    *(sa.column(c, sa.JSON()) for c in json))


def source(name: str, *, enabled: bool = True, in_config: bool = True) -> dict:
    return dict(name=name, url=f"https://{name}.org/feed", category="World", kind="auto",
                detected_kind="rss", enabled=enabled, in_config=in_config, weight=1.5,
                interval_s=900, full_text=False, error_count=0, selectors=None,
                stats={"fetches": [[200, 12]]}, etag='"v1"', created_at=NOW - timedelta(days=30),
                updated_at=NOW - timedelta(days=2), last_check_at=NOW, last_success_at=NOW)


def story(sid: int, source: str, copy_of: int | None = None, category: str = "Politics") -> dict:
    at = NOW - timedelta(hours=sid)
    return dict(id=sid, url=f"https://{source}.org/{sid}", original_url=f"https://{source}.org/{sid}?utm=rss",
                title=f"Story {sid}: Straße closed", summary="A summary.", text=f"Body of story {copy_of or sid}.",
                author="Desk", image_url="", site=f"{source}.org", source=source, category=category,
                content_hash=f"hash{copy_of or sid}", duplicate_of=copy_of, embed_version=1,
                published_at=at, collected_at=at, updated_at=at, sort_at=at)


async def fill_first_version(store: Store, recipe: str, vectors: dict[int, bytes]) -> None:
    """Rows as version 0001 stored them. The retired source "gone" holds the original
    story 1, whose copies came from "wire" (2) and the disabled "off" (3)."""
    sources = table("sources", "name", "url", "category", "kind", "detected_kind", "enabled",
                    "in_config", "weight", "interval_s", "full_text", "error_count", "etag",
                    times=("created_at", "updated_at", "last_check_at", "last_success_at"),
                    json=("selectors", "stats"))
    stories = table("stories", "id", "url", "original_url", "title", "summary", "text", "author",
                    "image_url", "site", "source", "category", "content_hash", "duplicate_of",
                    "embed_version", times=("published_at", "collected_at", "updated_at", "sort_at"))
    vector_rows = table("story_vectors", "story_id", "recipe", "embed_version", "vector",
                        times=("embedded_at",))
    changes = table("index_changes", "story_id", "op", times=("at",))
    readers = table("readers", "id", times=("created_at", "last_seen_at"), json=("preferences",))
    events = table("events", "event_key", "reader_id", "story_id", "type", "dwell_s", times=("at",))
    stats = table("story_stats", "story_id", "impressions", "clicks", "reads", times=("last_event_at",))
    locks = table("job_locks", "name", "owner", times=("lease_until", "last_run_at"))
    async with store.engine.begin() as conn:
        await conn.execute(sa.insert(sources), [source("wire"), source("off", enabled=False),
                                                source("gone", in_config=False)])
        await conn.execute(sa.insert(stories), [
            story(1, "gone"), story(2, "wire", copy_of=1), story(3, "off", copy_of=1),
            story(4, "gone", category="World"), story(5, "wire", category="World")])
        await conn.execute(sa.insert(vector_rows), [
            dict(story_id=sid, recipe=recipe, embed_version=1, vector=blob, embedded_at=NOW)
            for sid, blob in vectors.items()])
        await conn.execute(sa.insert(changes), [dict(story_id=sid, op="add", at=NOW) for sid in vectors])
        await conn.execute(sa.insert(readers), [
            dict(id="r1", preferences={"follow_categories": ["politics"], "mute_topics": ["cricket"]},
                 created_at=NOW - timedelta(days=9), last_seen_at=NOW),
            dict(id="r2", preferences=None, created_at=NOW, last_seen_at=NOW)])
        await conn.execute(sa.insert(events), [
            dict(event_key=f"k{n}", reader_id=r, story_id=sid, type=t, dwell_s=dwell, at=NOW - timedelta(hours=h))
            for n, (r, sid, t, dwell, h) in enumerate([
                ("r1", 1, "impression", None, 30), ("r1", 1, "click", None, 30),
                ("r1", 1, "read", 42.5, 29), ("r2", 4, "impression", None, 1), ("r2", 5, "hide", None, 1)])])
        await conn.execute(sa.insert(stats), [
            dict(story_id=1, impressions=1, clicks=1, reads=1, last_event_at=NOW - timedelta(hours=29)),
            dict(story_id=4, impressions=1, clicks=0, reads=0, last_event_at=NOW - timedelta(hours=1))])
        await conn.execute(sa.insert(locks), [dict(name="retention", owner=None, lease_until=None,
                                                   last_run_at=NOW - timedelta(hours=1))])


async def snapshot(store: Store) -> dict[str, list]:
    """Every row of the first version's tables, and the schema revision."""
    out = {}
    async with store.engine.connect() as conn:
        for name in (*TABLES, "alembic_version"):
            out[name] = sorted(map(tuple, (await conn.execute(text(f"SELECT * FROM {name}"))).all()), key=repr)
    return out


async def test_a_first_version_database_upgrades_keeping_every_row(db_url, tmp_path):
    from recommender.corpus import Corpus
    from recommender.embed import HashingEmbedder
    from recommender.vindex import FaissIndex

    emb = HashingEmbedder(32)
    store = Store(db_url)
    try:
        await migrate_to(store, "0001")
        vectors = dict(zip((1, 4, 5), (v.astype("<f4").tobytes() for v in emb.encode(["a", "b", "c"])),
                           strict=True))
        await fill_first_version(store, emb.recipe, vectors)
        before = await snapshot(store)
        await store.migrate()

        # Every row kept, and served by the store as the new version reads it.
        upgraded = await snapshot(store)
        assert {t: len(rows) for t, rows in upgraded.items() if t in TABLES} == {
            t: len(rows) for t, rows in before.items() if t in TABLES}
        got = await store.get_stories(range(1, 6))
        assert {sid: (s.source, s.category, s.duplicate_of) for sid, s in got.items()} == {
            1: ("gone", "Politics", None), 2: ("wire", "Politics", 1), 3: ("off", "Politics", 1),
            4: ("gone", "World", None), 5: ("wire", "World", None)}
        assert got[1].title == "Story 1: Straße closed" and got[1].published_at == NOW - timedelta(hours=1)
        assert await store.copies_of([1]) == {1: [(2, "wire.org"), (3, "off.org")]}
        assert sorted(await store.latest_ids(10, category="POLITICS")) == [1]  # copies are not listed
        assert await store.load_vectors([1, 4, 5], emb.recipe) == vectors
        listed = {h.name: h for h in await store.list_sources(retired=True)}
        assert {n: (h.status, h.stories, h.enabled) for n, h in listed.items()} == {
            "wire": ("ok", 2, True), "off": ("disabled", 1, False), "gone": ("retired", 2, True)}
        assert listed["gone"].retired_at == NOW - timedelta(days=2)  # its last write (0017)
        assert (await store.reader("r1"))["preferences"] == {"follow_categories": ["politics"],
                                                             "mute_topics": ["cricket"]}
        assert (await store.reader("r2"))["preferences"] == {}
        exported = [e for batch in [b async for b in store.iter_reader_events("r1")] for e in batch]
        assert sorted((e.event_key, e.type, e.dwell_s, e.page) for e in exported) == [
            ("k0", "impression", None, None), ("k1", "click", None, None), ("k2", "read", 42.5, None)]
        assert await store.story_stats() == {1: (1, 1, 1), 4: (1, 0, 0)}
        # The report's counts, made from the stored events by 0016 ("hide" is not counted).
        assert await _event_days(store) == {("2026-11-25", 1, ""): (1, 1, 1), ("2026-11-26", 4, ""): (1, 0, 0)}
        report = await store.widget_stats(datetime(2026, 11, 25, tzinfo=UTC), NOW)
        assert report.days == [("2026-11-25", 1, 1, 1), ("2026-11-26", 1, 0, 0)]

        # A second migrate (the next restart) changes nothing.
        await store.migrate()
        assert await snapshot(store) == upgraded

        # The index starts over the old change log, then follows the new version's.
        corpus = Corpus(store, recipe=emb.recipe, dim=emb.dim, index_dir=Path(tmp_path / "ix"),
                        owner=True, index_factory=lambda: FaissIndex(emb.dim))
        assert (await corpus.start())["indexed"] == 3
        assert sorted(await store.purge_source("gone")) == [1, 4]  # 0004's triggers survived the upgrade
        assert {sid: s.duplicate_of for sid, s in (await store.get_stories(range(1, 6))).items()} == {
            2: None, 3: 2, 5: None}
        assert await corpus.follow() == 2 and sorted(corpus.meta) == [5]
    finally:
        await store.close()


async def test_a_migration_stopped_halfway_resumes(db_url):
    """A process killed while 0016 counted the events (seconds, on a busy widget's millions)
    left SQLite with `event_days` and no version stamp: each restart died on "table
    event_days already exists". A statement that fails late in the revision stops it the
    same way a kill there does."""
    store = Store(db_url)
    try:
        await migrate_to(store, "0015")
        async with store.engine.begin() as conn:  # an index 0016 creates after the table
            await conn.execute(text("CREATE INDEX ix_event_days_story_id ON stories (id)"))
        with pytest.raises(Exception, match="ix_event_days_story_id"):
            await store.migrate()
        async with store.engine.begin() as conn:
            await conn.execute(text("DROP INDEX ix_event_days_story_id"))
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == "0015"
        await store.migrate()
        async with store.engine.connect() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == head()
    finally:
        await store.close()



async def test_a_downgrade_to_the_first_version_keeps_the_rows(db_url):
    """Back to 0001 and up again, rows and all. 0002's downgrade rebuilt `stories` on SQLite
    (a batch: copy, DROP, rename): the DROP deleted through the foreign keys every event,
    vector and counter, and the stories' rows came back without them."""
    store = Store(db_url)
    try:
        await migrate_to(store, "0001")
        await fill_first_version(store, "recipe", {1: b"\0" * 16, 4: b"\1" * 16})
        before = await snapshot(store)
        await store.migrate()
        await migrate_to(store, "0001", down=True)
        assert await snapshot(store) == before
        await store.migrate()
        assert [sid for sid, _ in (await store.story_stats()).items()] == [1, 4]
    finally:
        await store.close()
