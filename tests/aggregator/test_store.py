"""The store's contract, run on SQLite and on the real PostgreSQL (fixture `store`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from aggregator import store as store_module
from aggregator.errors import ChangesPruned
from aggregator.model import SourceSpec, StoryDraft
from aggregator.store import EventRecord, FetchRecord, event_key

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
BODY = " ".join(f"word{i}" for i in range(60))


def draft(url: str, title: str = "A title", **kw) -> StoryDraft:
    return StoryDraft(url=url, title=title, **{"site": "example.org", "source": "src", **kw})


async def test_migrate_is_idempotent(store):
    await store.migrate()
    assert await store.count_stories() == 0


async def test_upsert_by_canonical_url_never_duplicates(store):
    r1 = await store.upsert_stories([draft("https://example.org/a"), draft("https://example.org/b")], NOW)
    assert len(r1.new_ids) == 2
    r2 = await store.upsert_stories([draft("https://example.org/a")], NOW)
    assert r2.new_ids == () and r2.unchanged == 1
    assert await store.count_stories() == 2


async def test_changed_item_is_updated_and_reembedded(store):
    (sid,) = (await store.upsert_stories([draft("https://example.org/a", "Old")], NOW)).new_ids
    await store.save_vectors([(sid, 1, b"\x00" * 16)], "r", NOW)
    assert await store.embed_backlog("r", 10) == []
    r = await store.upsert_stories([draft("https://example.org/a", "New title")], NOW)
    assert r.updated_ids == (sid,)
    story = await store.get_story(sid)
    assert story.title == "New title"
    jobs = await store.embed_backlog("r", 10)
    assert [j.id for j in jobs] == [sid] and jobs[0].embed_version == 2


async def test_a_draft_that_restates_site_source_or_category_corrects_the_story(store):
    (sid,) = (await store.upsert_stories([draft("https://e.org/r", category="politics")], NOW)).new_ids
    await store.save_vectors([(sid, 1, b"\x00" * 16)], "r", NOW)
    seen = (await store.changes_since(0))[-1][0]
    # A collector's draft states none of them: the first feed's section stays.
    r = await store.upsert_stories([draft("https://e.org/r", category="uk", source="other")], NOW)
    assert r.unchanged == 1 and (await store.get_story(sid)).category == "politics"
    # An import line that names them: they change, and the index's card follows (an "add").
    fixed = draft("https://e.org/r", category="world", site="E", source="wire",
                  restates=frozenset({"category", "site", "source"}))
    assert (await store.upsert_stories([fixed], NOW)).updated_ids == (sid,)
    story = await store.get_story(sid)
    assert (story.category, story.site, story.source) == ("world", "E", "wire")
    assert [(c[1], c[2]) for c in await store.changes_since(seen)] == [(sid, "add")]
    assert await store.embed_backlog("r", 10) == []  # same text: the vector stays


async def test_a_link_in_two_feeds_keeps_the_card_its_own_source_gave(store):
    """The same URL in two feeds: each round stored the last feed's title, then the other's
    (A, B, A, B...), and each change re-embedded the story. Only the source that stored it
    first updates its title, summary, body and card; another fills only what it lacks."""
    url = "https://e.org/shared"
    first = draft(url, "Minister resigns", source="a", summary="The minister quit.",
                  tags=("Politics",))
    (sid,) = (await store.upsert_stories([first], NOW)).new_ids
    await store.save_vectors([(sid, 1, b"\x00" * 16)], "r", NOW)
    other = draft(url, "BREAKING: minister out", source="b", summary="Live updates.",
                  text=BODY, author="B Desk", image_url="https://e.org/b.jpg",
                  published_at=NOW - timedelta(hours=1), tags=("Live", "UK"))
    r = await store.upsert_stories([other], NOW)
    assert r.updated_ids == (sid,)  # once: the body, author, image and time it lacked
    story = await store.get_story(sid)
    assert (story.title, story.summary, story.text) == ("Minister resigns", "The minister quit.", BODY)
    assert (story.author, story.image_url, story.published_at) == (
        "B Desk", "https://e.org/b.jpg", NOW - timedelta(hours=1))
    jobs = await store.embed_backlog("r", 10)  # the body it lacked: embedded again, once
    await store.save_vectors([(sid, jobs[0].embed_version, b"\x00" * 16)], "r", NOW)
    for _ in range(2):  # round after round, neither feed changes anything
        r = await store.upsert_stories([first], NOW)
        assert r.unchanged == 1, r
        r = await store.upsert_stories([replace(other, author="Other Desk", text=BODY + " more")], NOW)
        assert r.unchanged == 1, r
    assert (await store.get_story(sid)).title == "Minister resigns"
    assert (await store.get_story(sid)).tags == ("Politics",)  # nor do the other's tags
    assert await store.embed_backlog("r", 10) == []
    # Its own source still corrects it; an import line corrects it whoever stored it.
    await store.upsert_stories([replace(first, title="Minister resigns over report")], NOW)
    assert (await store.get_story(sid)).title == "Minister resigns over report"
    fixed = draft(url, "Minister resigns (corrected)", source="import", authoritative=True)
    assert (await store.upsert_stories([fixed], NOW)).updated_ids == (sid,)
    assert (await store.get_story(sid)).title == "Minister resigns (corrected)"


async def test_tags_are_stored_updated_and_kept_when_a_draft_has_none(store):
    """Feeds' tags were dropped before the store: a reader's muted topics could never match
    them. A draft without tags (the link in a feed without <category>) keeps the stored ones;
    new ones replace them, and the indexes' cards follow (an "add"), the vector stays."""
    (sid,) = (await store.upsert_stories(
        [draft("https://e.org/tags", tags=("Love Island", "ITV"))], NOW)).new_ids
    await store.save_vectors([(sid, 1, b"\x00" * 16)], "r", NOW)
    assert (await store.get_story(sid)).tags == ("Love Island", "ITV")
    seen = (await store.changes_since(0))[-1][0]
    assert (await store.upsert_stories([draft("https://e.org/tags")], NOW)).unchanged == 1
    assert (await store.upsert_stories([draft("https://e.org/tags", tags=("Love Island", "ITV"))],
                                       NOW)).unchanged == 1
    assert (await store.get_story(sid)).tags == ("Love Island", "ITV")
    r = await store.upsert_stories([draft("https://e.org/tags", tags=("Reality TV",))], NOW)
    assert r.updated_ids == (sid,)
    assert [(c[1], c[2]) for c in await store.changes_since(seen)] == [(sid, "add")]
    assert await store.embed_backlog("r", 10) == []
    # Every way a story is read carries them: by id, in batches, newest first, exported.
    (other,) = (await store.upsert_stories([draft("https://e.org/untagged")], NOW)).new_ids
    assert {i: s.tags for i, s in (await store.get_stories([sid, other])).items()} == {
        sid: ("Reality TV",), other: ()}
    assert [s.tags for s in await store.latest_stories(limit=2)] == [(), ("Reality TV",)]
    assert [s.tags async for batch in store.iter_stories() for s in batch] == [("Reality TV",), ()]


async def test_feed_without_body_does_not_wipe_fetched_text(store):
    (sid,) = (await store.upsert_stories([draft("https://e.org/a", text=BODY)], NOW)).new_ids
    await store.upsert_stories([draft("https://e.org/a", summary="teaser")], NOW)
    assert (await store.get_story(sid)).text == BODY


async def test_story_texts_follow_every_change(store):
    """On SQLite the texts come through a separate plain connection: it must see each commit."""
    (sid,) = (await store.upsert_stories(
        [draft("https://e.org/t", summary="first teaser", text=BODY)], NOW)).new_ids
    assert await store.get_story_texts(sid) == ("first teaser", BODY)
    other = " ".join(f"other{i}" for i in range(60))
    await store.upsert_stories([draft("https://e.org/t", summary="second", text=other)], NOW)
    assert await store.get_story_texts(sid) == ("second", other)
    assert await store.get_story_texts(sid + 1000) is None


async def test_story_texts_fall_back_when_the_plain_read_fails(sqlite_url, monkeypatch):
    import sqlite3

    from aggregator.store import Store

    store = Store(sqlite_url)
    await store.migrate()
    try:
        (sid,) = (await store.upsert_stories([draft("https://e.org/f", text=BODY)], NOW)).new_ids

        def locked(sql, params):
            raise sqlite3.OperationalError("database is locked")

        monkeypatch.setattr(store._reader, "one", locked)
        assert await store.get_story_texts(sid) == ("", BODY)
    finally:
        await store.close()


async def test_exact_duplicate_bodies_are_linked_not_listed(store):
    r1 = await store.upsert_stories([draft("https://a.org/x", content_hash="h" * 64, text=BODY)], NOW)
    r2 = await store.upsert_stories(
        [draft("https://b.org/y", content_hash="h" * 64, text=BODY),
         draft("https://c.org/z", content_hash="h" * 64, text=BODY)], NOW)
    assert (r2.duplicates, r2.relinked) == (2, 0)
    copy = await store.get_story(r2.new_ids[0])
    assert copy.duplicate_of == r1.new_ids[0]
    listed = await store.latest_stories(limit=10)
    assert [s.id for s in listed] == [r1.new_ids[0]]
    assert await store.story_ids() == [r1.new_ids[0]]


async def test_latest_is_newest_first_with_keyset_pages(store):
    drafts = [draft(f"https://e.org/{i}", f"T{i}", published_at=NOW - timedelta(hours=i)) for i in range(7)]
    await store.upsert_stories(drafts, NOW)
    page1 = await store.latest_stories(limit=4)
    last = page1[-1]
    page2 = await store.latest_stories(limit=4, before=(last.published_at, last.id))
    titles = [s.title for s in page1 + page2]
    assert titles == [f"T{i}" for i in range(7)]


async def test_future_dates_do_not_pin_a_story_to_the_top(store):
    await store.upsert_stories([draft("https://e.org/old", "old", published_at=NOW - timedelta(hours=1))], NOW)
    await store.upsert_stories([draft("https://e.org/fut", "future", published_at=NOW + timedelta(hours=20))], NOW)
    assert [s.title for s in await store.latest_stories(limit=2)] == ["future", "old"]
    later = NOW + timedelta(hours=2)
    await store.upsert_stories([draft("https://e.org/new", "newer", published_at=later - timedelta(minutes=1))], later)
    assert (await store.latest_stories(limit=1))[0].title == "newer"


async def test_a_category_or_source_is_found_whatever_its_case(store):
    """`category=Politics` found nothing stored as "politics": every lookup compared names
    exactly. An operator may write "Politics" in sources.toml and an import "politics": one
    section, found by any spelling (keys on an index, not lower() over the table)."""
    from aggregator.store import StorySelection

    written = [("Politics", "Wire"), ("politics", "wire"), (" POLITICS ", "WIRE"), ("Straße", "Ünion")]
    r = await store.upsert_stories([
        draft(f"https://e.org/{i}", category=c, source=src, published_at=NOW - timedelta(hours=i))
        for i, (c, src) in enumerate(written)], NOW)
    pol = list(r.new_ids[:3])
    for name in ("politics", "Politics", "POLITICS"):
        assert [x.id for x in await store.latest_stories(limit=10, category=name)] == pol, name
        assert await store.latest_ids(10, category=name) == pol, name
        assert await store.count_stories(StorySelection(category=name)) == 3, name
        exported = [b async for b in store.iter_stories(StorySelection(category=name))]
        assert [x.id for batch in exported for x in batch] == pol, name
    for name in ("wire", "Wire", "WIRE"):
        assert [x.id for x in await store.latest_stories(limit=10, source=name)] == pol, name
        assert await store.latest_ids(10, source=name) == pol, name
    # Unicode case folding: "STRASSE" is "Straße"; "ünion" is "Ünion".
    assert await store.latest_ids(10, category="STRASSE", source="ünion") == [r.new_ids[3]]
    # Stored names keep their spelling; an import that restates one moves its key too.
    assert (await store.get_story(pol[0])).category == "Politics"
    fixed = draft("https://e.org/0", category="World", restates=frozenset({"category"}))
    await store.upsert_stories([fixed], NOW)
    assert await store.latest_ids(10, category="WORLD") == [pol[0]]
    assert await store.latest_ids(10, category="politics") == pol[1:]
    # A source's health counts its stories by key: "Wire" and "WIRE" are the slug "wire"'s.
    await store.sync_sources([SourceSpec("wire", "https://e.org/feed", "politics")], NOW)
    assert [(h.name, h.stories) for h in await store.list_sources()] == [("wire", 3)]


async def test_names_whose_keys_outgrow_them_are_stored_and_found(store):
    """Case folding lengthens some names ("ﬃ", U+FB03, is "ffi"): an import line's source of
    120 such characters (its limit) had a key of 360, and PostgreSQL refused the whole batch
    (varchar(255)) where SQLite stored it. Keys are cut to the column; lookups cut theirs."""
    from aggregator.store import StorySelection

    source, category = "\ufb03" * 120, "\ufb03" * 80
    r = await store.upsert_stories([draft("https://e.org/long", source=source, category=category)], NOW)
    assert len(r.new_ids) == 1
    assert await store.latest_ids(10, source="FFI" * 120) == list(r.new_ids)
    assert await store.latest_ids(10, source=source, category="ffi" * 80) == list(r.new_ids)
    assert await store.count_stories(StorySelection(source=source)) == 1
    # Restated by a later line: its key is cut the same way.
    moved = draft("https://e.org/long", source="x" + source[1:], restates=frozenset({"source"}))
    await store.upsert_stories([moved], NOW)
    assert await store.latest_ids(10, source="x" + "ffi" * 119) == list(r.new_ids)


async def test_a_name_holding_a_nul_selects_nothing(store):
    """PostgreSQL refuses a NUL in a query's text parameter: `/v1/stories?category=%00` and
    `POST /v1/sources/%00/reset` were 500s, and a reader who followed such a category got a
    500 for every feed after (the follow is stored). SQLite selected nothing; so do both."""
    from aggregator.store import StorySelection

    await store.sync_sources([SourceSpec("src", "https://example.org/feed", "politics")])
    await store.upsert_stories([draft("https://e.org/a", category="politics")], NOW)
    for name in ("politics\x00", "src\x00", "\x00"):
        assert await store.latest_stories(category=name) == []
        assert await store.latest_stories(source=name) == []
        assert await store.latest_ids(10, category=name) == []
        assert await store.count_stories(StorySelection(source=name, category=name)) == 0
        assert await store.reset_source(name, NOW) is None
    assert len(await store.latest_ids(10, category="politics", source="src")) == 1

async def test_lookups_by_category_or_source_walk_their_key_index(store):
    """Newest of one section without sorting the section (migration 0008's point), now on
    the keys: comparing lower(category) would scan and sort every story."""
    if store.dialect != "sqlite":
        pytest.skip("the plan checked is SQLite's (PostgreSQL's depends on its statistics)")
    from sqlalchemy.dialects import sqlite

    from aggregator.schema import StoryRow
    from aggregator.store import _of_section

    for column, kw in (("category", {"category": "Politics"}), ("source", {"source": "Wire"})):
        q = (_of_section(select(StoryRow.id).where(StoryRow.duplicate_of.is_(None)),
                         kw.get("source"), kw.get("category"))
             .order_by(StoryRow.sort_at.desc(), StoryRow.id.desc()).limit(50))
        sql = str(q.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
        async with store.engine.connect() as conn:
            plan = " ".join(str(r) for r in (await conn.execute(text("EXPLAIN QUERY PLAN " + sql))).all())
        assert f"ix_stories_{column}_key_sort" in plan and "TEMP B-TREE" not in plan, plan


async def migrate_to(store, revision: str, *, down: bool = False) -> None:
    """The store's database migrated up to `revision` only: as an older version left it
    (`down`: migrated back down to it, as an operator's rollback does)."""
    from alembic import command
    from alembic.config import Config

    from aggregator.store import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))

    def run(sync_conn):
        cfg.attributes["connection"] = sync_conn
        (command.downgrade if down else command.upgrade)(cfg, revision)

    async with store.engine.begin() as conn:
        await conn.run_sync(run)


def head() -> str:
    """The newest revision this version knows."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from aggregator.store import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


async def stored_before(store, urls: list[str], source: str = "src") -> list[int]:
    """Stories at `urls` written with raw SQL, as an older version stored them: the store's
    queries read the columns of the newest schema (it migrates at start), which a database
    at an old revision lacks. Only the columns of migration 0010 (the keys) on; the ids."""
    import sqlalchemy as sa

    from aggregator.names import name_key
    from aggregator.schema import UTCDateTime

    stories = sa.table("stories", *(sa.column(c) for c in (
        "url", "original_url", "title", "summary", "text", "author", "image_url", "site",
        "source", "category", "source_key", "category_key", "content_hash", "embed_version")),
        *(sa.column(c, UTCDateTime()) for c in ("collected_at", "updated_at", "sort_at")))
    async with store.engine.begin() as conn:
        await conn.execute(sa.insert(stories), [dict(
            url=u, original_url=u, title="A title", summary="", text="", author="", image_url="",
            site="example.org", source=source, category="", source_key=name_key(source),
            category_key="", content_hash="", embed_version=1, collected_at=NOW, updated_at=NOW,
            sort_at=NOW) for u in urls])
        ids = dict((await conn.execute(sa.text("SELECT url, id FROM stories"))).all())
    return [ids[u] for u in urls]


async def test_the_migration_gives_stored_stories_their_keys(db_url):
    """Stories stored before the keys existed get them on upgrade, however they were spelled."""
    import sqlalchemy as sa

    from aggregator.schema import UTCDateTime
    from aggregator.store import Store

    store = Store(db_url)
    stories = sa.table("stories", *(sa.column(c) for c in (
        "url", "original_url", "title", "summary", "text", "author", "image_url", "site",
        "source", "category", "content_hash", "embed_version")),
        *(sa.column(c, UTCDateTime()) for c in ("collected_at", "updated_at", "sort_at")))
    old = [("Politics", "Wire"), ("politics", "wire"), ("Straße", "BBC-Politics"), ("", "")]
    try:
        await migrate_to(store, "0008")
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(stories), [dict(
                url=f"https://e.org/{i}", original_url="", title="t", summary="", text="",
                author="", image_url="", site="e.org", source=src, category=c, content_hash="",
                embed_version=1, collected_at=NOW, updated_at=NOW, sort_at=NOW - timedelta(hours=i))
                for i, (c, src) in enumerate(old)])
        await store.migrate()
        assert len(await store.latest_ids(10, category="POLITICS")) == 2
        assert len(await store.latest_ids(10, source="WIRE")) == 2
        assert len(await store.latest_ids(10, category="strasse", source="bbc-politics")) == 1
        assert len(await store.latest_ids(10, category="")) == 1
    finally:
        await store.close()


async def test_sources_sync_claim_and_record(store):
    specs = [SourceSpec("a", "https://a.org/feed", "politics"), SourceSpec("b", "https://b.org/feed", "entertainment")]
    assert (await store.sync_sources(specs, NOW))["added"] == 2
    claimed = await store.claim_due_sources(NOW, owner="c1", lease_s=60)
    assert {c.spec.name for c in claimed} == {"a", "b"}
    # Leased: a second collector gets nothing until the lease runs out.
    assert await store.claim_due_sources(NOW, owner="c2", lease_s=60) == []
    a = next(c for c in claimed if c.spec.name == "a")
    await store.record_fetch(a.id, FetchRecord(ok=False, next_check_at=NOW + timedelta(minutes=5),
                                               interval_s=300, status=500, error="HTTP 500"), NOW)
    health = {h.name: h for h in await store.list_sources()}
    assert health["a"].status == "error" and health["a"].last_error == "HTTP 500"
    assert health["a"].error_count == 1
    assert health["b"].status == "pending"
    after_lease = NOW + timedelta(seconds=61)
    again = await store.claim_due_sources(after_lease, owner="c2", lease_s=60)
    assert [c.spec.name for c in again] == ["b"]  # a is not due yet; b's lease expired


async def test_a_collector_hands_back_only_its_own_claims(store):
    specs = [SourceSpec(n, f"https://{n}.org/feed", "politics") for n in ("a", "b", "c")]
    await store.sync_sources(specs, NOW)
    mine = await store.claim_due_sources(NOW, owner="c1", lease_s=300, limit=2)
    theirs = await store.claim_due_sources(NOW, owner="c2", lease_s=300)
    assert len(mine) == 2 and len(theirs) == 1
    assert await store.release_source_claims("c1") == 2
    # Due as they were, taken at once by the next claimer; the other collector's stays held.
    again = await store.claim_due_sources(NOW, owner="c3", lease_s=300)
    assert sorted(c.spec.name for c in again) == sorted(c.spec.name for c in mine)
    assert await store.release_source_claims("c1") == 0


async def test_removed_source_is_retired_and_edit_keeps_state(store):
    await store.sync_sources([SourceSpec("a", "https://a.org/feed", "politics")], NOW)
    (c,) = await store.claim_due_sources(NOW, owner="x", lease_s=1)
    await store.record_fetch(c.id, FetchRecord(ok=True, next_check_at=NOW + timedelta(hours=1),
                                               interval_s=900, status=200, etag='"v1"'), NOW)
    await store.sync_sources([SourceSpec("a", "https://a.org/feed", "politics", weight=2.0)], NOW)
    (h,) = await store.list_sources()
    assert h.weight == 2.0 and h.next_check_at == NOW + timedelta(hours=1)
    changes = await store.sync_sources([], NOW)
    assert changes["retired"] == 1 and await store.list_sources() == []


async def test_a_removed_source_stays_listed_as_retired_while_its_stories_stay(store):
    """A source removed from the file vanished from `sources list` and `/v1/sources` while
    its stories stayed and were served: nobody could see whose they were."""
    await store.sync_sources([SourceSpec("a", "https://a.org/feed", "politics", weight=2.0),
                              SourceSpec("b", "https://b.org/feed", "politics"),
                              SourceSpec("empty", "https://e.org/feed", "politics")], NOW)
    await store.upsert_stories([draft("https://a.org/1", source="a"),
                                draft("https://a.org/2", source="a")], NOW)
    later = NOW + timedelta(hours=3)
    assert (await store.sync_sources([SourceSpec("b", "https://b.org/feed", "politics")],
                                     later))["retired"] == 2
    assert [h.name for h in await store.list_sources()] == ["b"]  # metrics, collectors
    # Configured ones first; one removed with no story left is not listed.
    b, a = await store.list_sources(retired=True)
    assert b.name == "b" and b.retired_at is None and b.status == "pending"
    assert (a.name, a.status, a.stories, a.retired_at, a.enabled, a.next_check_at) == (
        "a", "retired", 2, later, False, None)
    assert a.weight == 1.0  # the weight its stories rank with: the boost went with it
    # Back in the file: configured again, not retired.
    await store.sync_sources([SourceSpec("a", "https://a.org/feed", "politics")], later)
    (a,) = [h for h in await store.list_sources(retired=True) if h.name == "a"]
    assert (a.status, a.retired_at, a.enabled) == ("pending", None, True)


async def test_file_difference_says_what_a_sync_would_do_and_writes_nothing(store):
    """`sources list` compares the file with the rows instead of syncing it (run with another
    file it retired every source that file did not name): the comparison is the sync's own
    plan, a rename one name new and one unnamed, a retired source named again new."""
    from aggregator.store import FileDifference

    a, b = SourceSpec("a", "https://a.org/feed", "politics"), SourceSpec("b", "https://b.org/feed", "news")
    await store.sync_sources([a, b, SourceSpec("old", "https://o.org/feed", "news")], NOW)
    await store.sync_sources([a, b], NOW)  # "old" retired
    assert not await store.file_difference([a, b], NOW)
    renamed = SourceSpec("b2", "https://b.org/feed", "news")
    edited = SourceSpec("a", "https://a.org/feed", "politics", weight=2.0)
    back = SourceSpec("old", "https://o.org/feed", "news")
    before = await store.list_sources(retired=True)
    assert await store.file_difference([edited, renamed, back], NOW) == FileDifference(
        new=("b2", "old"), edited=("a",), unnamed=("b",))
    assert await store.file_difference([], NOW) == FileDifference(unnamed=("a", "b"))
    assert await store.list_sources(retired=True) == before


async def test_file_difference_names_the_new_source_that_takes_a_retired_ones_row(store):
    """A new name on the URL of a source retired before adopts its row (`_adoptions`): the
    plan keys it by the retired name, with `in_config` back to true. It was read as the
    retired name come back: the note said "new in the file: old", and `sources list` showed
    no pending row for "fresh", the source the file names."""
    from aggregator.store import FileDifference

    await store.sync_sources([SourceSpec("old", "https://o.org/feed", "news")], NOW)
    await store.sync_sources([], NOW)  # "old" retired
    fresh = SourceSpec("fresh", "https://o.org/feed", "news")
    assert await store.file_difference([fresh], NOW) == FileDifference(new=("fresh",))


async def test_a_removed_source_keeps_its_damping_not_its_boost(store):
    """Removed, a source's stories ranked with its last weight: a boost stayed, for a source
    the operator dropped. A damping, and 0 (kept out of blocks), is their judgement of the
    stories themselves: it stays until the stories age out."""
    from aggregator.store import retired_weight

    assert [retired_weight(w) for w in (0.0, 0.5, 1.0, 3.0)] == [0.0, 0.5, 1.0, 1.0]
    specs = [SourceSpec(n, f"https://{n}.org/feed", "politics", weight=w)
             for n, w in (("boost", 3.0), ("damp", 0.5), ("out", 0.0), ("kept", 2.0))]
    await store.sync_sources(specs, NOW)
    await store.sync_sources(specs[3:], NOW)
    assert await store.source_weights() == {"boost": 1.0, "damp": 0.5, "out": 0.0, "kept": 2.0}


async def test_a_new_source_on_a_removed_ones_url_adopts_its_row_and_stories(store):
    """A new source on the URL of one removed kept storing the feed's known items under the
    old name (and ignored its own corrections of them: `taken_from`), starting its schedule
    afresh; renaming a source in the file was that too."""
    await store.sync_sources([SourceSpec("old", "https://a.org/feed", "politics")], NOW)
    (c,) = await store.claim_due_sources(NOW, owner="x", lease_s=1)
    await store.record_fetch(c.id, FetchRecord(ok=True, next_check_at=NOW + timedelta(hours=1),
                                               interval_s=900, status=200, etag='"v1"'), NOW)
    r = await store.upsert_stories([draft("https://b.org/3", source="other", text=BODY, content_hash="h" * 64),
                                    draft("https://a.org/1", "Frist", source="old"),
                                    draft("https://a.org/2", source="old"),
                                    draft("https://a.org/3", source="old", text=BODY, content_hash="h" * 64)], NOW)
    root, one, two, copy = r.new_ids
    assert (await store.get_story(copy)).duplicate_of == root
    seen = (await store.changes_since(0) or [(0,)])[-1][0]
    await store.sync_sources([], NOW)  # removed first, added back under a new name later
    later = NOW + timedelta(minutes=5)
    changes = await store.sync_sources([SourceSpec("new", "https://a.org/feed", "world")], later)
    assert changes == {"added": 0, "changed": 0, "retired": 0, "adopted": 1, "kept": 0}
    (h,) = await store.list_sources(retired=True)
    assert (h.name, h.stories, h.retired_at, h.category) == ("new", 3, None, "world")
    assert h.next_check_at == NOW + timedelta(hours=1)  # its schedule, not due at once
    assert (await store.get_story(one)).source == "new"
    assert (await store.get_story(copy)).source == "new"
    assert (await store.get_story(root)).source == "other"
    # The indexes' cards name the source: each moved story is logged for them, but copies,
    # which are not indexed.
    assert sorted((sid, op) for _, sid, op in await store.changes_since(seen)) == [
        (one, "add"), (two, "add")]
    # Its own correction of a story now applies (another source's only fills gaps).
    await store.upsert_stories([draft("https://a.org/1", "First", source="new")], later)
    assert (await store.get_story(one)).title == "First"
    # Renamed in one edit, the URL spelled otherwise (canonically the same): the same.
    await store.sync_sources([SourceSpec("newer", "HTTPS://A.org/feed", "world")], later)
    assert [(h.name, h.stories) for h in await store.list_sources(retired=True)] == [("newer", 3)]


async def test_a_category_edit_refiles_the_sources_stories(store):
    """A source moved from "tech" to "apple" in the file was listed as "apple" with its 3
    stories, while every one of them stayed "tech" for good: `?category=apple` and the
    related filters found none, `export --category apple` was refused, and "tech" lived on
    as a section of no source. An import line's own category, and another source's
    stories, stay as they are."""
    await store.sync_sources([SourceSpec("df", "https://df.org/feed", "tech"),
                              SourceSpec("other", "https://o.org/feed", "tech")], NOW)
    r = await store.upsert_stories([draft("https://df.org/1", source="df", category="tech"),
                                    draft("https://df.org/2", source="df", category="Tech"),
                                    draft("https://df.org/3", source="df", category="reviews"),
                                    draft("https://o.org/1", source="other", category="tech")], NOW)
    one, two, imported, others = r.new_ids
    seen = (await store.changes_since(0) or [(0,)])[-1][0]
    later = NOW + timedelta(minutes=5)
    changes = await store.sync_sources([SourceSpec("df", "https://df.org/feed", "apple"),
                                        SourceSpec("other", "https://o.org/feed", "tech")], later)
    assert changes["changed"] == 1
    categories = [(await store.get_story(sid)).category for sid in (one, two, imported, others)]
    assert categories == ["apple", "apple", "reviews", "tech"]
    assert [s.id for s in await store.latest_stories(limit=10, category="APPLE")] == [two, one]
    # The indexes' cards carry the category: each refiled story is logged for them.
    assert sorted((sid, op) for _, sid, op in await store.changes_since(seen)) == [
        (one, "add"), (two, "add")]


async def test_a_machine_whose_file_is_older_keeps_another_machines_newer_edits(store):
    """Two collecting machines, one database. Machine A's operator removes `b` and renames
    `c` to `c2`; machine B, restarted with the file it had, put `b` back and moved `c2`'s
    stories back to `c`, and A's next restart undid that again: the files took turns. B's
    older file now keeps A's edits; an edit of B's file, written later, applies."""
    a, b, c = (SourceSpec(n, f"https://{n}.org/feed", "news") for n in "abc")
    written = NOW - timedelta(days=1)  # both machines' files, before A's edit
    await store.sync_sources([a, b, c], NOW, written_at=written)
    await store.upsert_stories([draft("https://c.org/1", source="c")], NOW)
    edited = NOW + timedelta(minutes=10)
    c2 = replace(c, name="c2")
    changes = await store.sync_sources([a, c2], edited + timedelta(seconds=1), written_at=edited)
    assert (changes["retired"], changes["adopted"]) == (1, 1)

    changes = await store.sync_sources([a, b, c], NOW + timedelta(hours=1), written_at=written)
    assert changes == {"added": 0, "changed": 0, "retired": 0, "adopted": 0, "kept": 2}
    listed = {h.name: (h.status, h.stories) for h in await store.list_sources(retired=True)}
    assert listed == {"a": ("pending", 0), "c2": ("pending", 1)}  # b retired, holds none

    # B's operator edits its file after A's edit: it is the newer one, and applies.
    later = NOW + timedelta(hours=2)
    changes = await store.sync_sources([a, b, c], later + timedelta(seconds=1), written_at=later)
    assert changes == {"added": 0, "changed": 1, "retired": 0, "adopted": 1, "kept": 0}
    assert [h.name for h in await store.list_sources()] == ["a", "b", "c"]


async def test_an_edit_stamped_ahead_of_the_clock_does_not_outlive_the_operators_file(store):
    """A process whose clock ran hours ahead (a hardware clock in local time before NTP set
    it) stamped its edits ahead. Once the clock is right, the operator's later edit of the
    file was refused as older than them ("kept", blamed on another machine's file) until the
    clock caught up. An edit stamped after the sync's own time says nothing of the file."""
    a = SourceSpec("a", "https://a.org/feed", "news")
    ahead = NOW + timedelta(hours=2)
    await store.sync_sources([a], ahead, written_at=ahead - timedelta(minutes=1))
    edited = NOW + timedelta(minutes=5)  # the clock set right; the file edited after that
    changes = await store.sync_sources([replace(a, category="world")],
                                       edited + timedelta(seconds=1), written_at=edited)
    assert (changes["changed"], changes["kept"]) == (1, 0)
    assert [h.category for h in await store.list_sources()] == ["world"]



async def test_a_sources_file_stamped_in_the_future_counts_as_copied_here(tmp_path, sqlite_store, caplog):
    """A sources.toml copied with its time kept (`cp -p`) from a machine whose clock ran
    ahead, modified "in 2030": taken as written then, it was newer than every other
    machine's edit, and each sync of this machine undid them until 2030. It counts as
    copied here (its ctime, this machine's clock), so an edit made elsewhere after the copy
    is kept, and a WARNING names the file and its time."""
    from aggregator.sources import load_sources, written_at

    path = tmp_path / "sources.toml"
    path.write_text('[[source]]\nname = "a"\nurl = "https://a.org/feed"\ncategory = "news"\n',
                    encoding="utf-8")
    ahead = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    os.utime(path, (ahead, ahead))
    copied = datetime.fromtimestamp(path.stat().st_ctime, UTC)  # when utime ran: the clock's
    await sqlite_store.sync_sources(load_sources(path), copied, written_at=written_at(path, copied))
    assert [h.category for h in await sqlite_store.list_sources()] == ["news"]
    # Another machine's operator edits the source after the copy.
    edited = copied + timedelta(minutes=10)
    await sqlite_store.sync_sources([SourceSpec("a", "https://a.org/feed", "world")],
                                    edited + timedelta(seconds=1), written_at=edited)
    # This machine restarts with the copied file, untouched: the older one.
    restarted = copied + timedelta(hours=1)
    caplog.clear()
    changes = await sqlite_store.sync_sources(load_sources(path), restarted,
                                              written_at=written_at(path, restarted))
    assert (changes["changed"], changes["kept"]) == (0, 1)
    assert [h.category for h in await sqlite_store.list_sources()] == ["world"]
    (warned,) = [r for r in caplog.records if r.getMessage().startswith("sources.future_time")]
    assert warned.levelname == "WARNING"
    assert f"file={path} modified=2030-01-01T00:00:00+00:00" in warned.getMessage()

async def test_a_feed_split_between_new_sources_adopts_nothing(store):
    """Two new sources on a removed one's URL (split by rules): which one its stories
    belong to is not for the store to guess; they stay the retired source's."""
    await store.sync_sources([SourceSpec("all", "https://a.org/feed", "news")], NOW)
    await store.upsert_stories([draft("https://a.org/1", source="all")], NOW)
    split = [SourceSpec("sport", "https://a.org/feed", "sport", keep="sport"),
             SourceSpec("rest", "https://a.org/feed", "news", block="sport")]
    assert (await store.sync_sources(split, NOW))["adopted"] == 0
    assert {(h.name, h.status, h.stories) for h in await store.list_sources(retired=True)} == {
        ("all", "retired", 1), ("sport", "pending", 0), ("rest", "pending", 0)}


async def test_purging_a_removed_source_removes_its_stories_as_retention_does(store):
    """An operator could not remove a retired source's stories but by hand in SQL."""
    await store.sync_sources([SourceSpec("gone", "https://a.org/feed", "politics"),
                              SourceSpec("kept", "https://b.org/feed", "politics")], NOW)
    r = await store.upsert_stories([draft("https://a.org/1", source="gone", text=BODY, content_hash="h" * 64),
                                    draft("https://a.org/2", source="gone"),
                                    draft("https://b.org/1", source="kept", text=BODY, content_hash="h" * 64),
                                    draft("https://b.org/2", source="kept")], NOW)
    one, two, copy, kept = r.new_ids
    assert (await store.get_story(copy)).duplicate_of == one
    seen = (await store.changes_since(0) or [(0,)])[-1][0]
    assert await store.purgeable_stories("gone") is None  # the file names it: refused
    assert await store.purge_source("gone") is None and await store.count_stories() == 4
    await store.sync_sources([SourceSpec("kept", "https://b.org/feed", "politics")], NOW)
    assert await store.purgeable_stories("GONE") == 2 and await store.purgeable_stories("x") == 0
    assert sorted(await store.purge_source("gone")) == [one, two]
    assert await store.count_stories() == 2
    assert (await store.get_story(copy)).duplicate_of is None  # a root of its own now
    # The indexes follow: each removal is logged, as for retention.
    assert sorted((sid, op) for _, sid, op in await store.changes_since(seen)) == [
        (one, "remove"), (two, "remove")]
    assert [h.name for h in await store.list_sources(retired=True)] == ["kept"]
    assert "gone" not in await store.source_weights()


async def test_the_migration_dates_the_sources_retired_before_it(db_url):
    """Sources retired before `retired_at` existed take their last write's time."""
    import sqlalchemy as sa

    from aggregator.schema import UTCDateTime
    from aggregator.store import Store

    store = Store(db_url)
    sources = sa.table("sources", *(sa.column(c) for c in (
        "name", "url", "category", "kind", "detected_kind", "enabled", "in_config", "weight",
        "interval_s", "full_text", "error_count")),
        *(sa.column(c, UTCDateTime()) for c in ("created_at", "updated_at")))
    try:
        await migrate_to(store, "0016")
        async with store.engine.begin() as conn:
            await conn.execute(sources.insert(), [
                dict(name=n, url=f"https://{n}.org/feed", category="politics", kind="auto",
                     detected_kind="", enabled=on, in_config=on, weight=1.0, interval_s=900,
                     full_text=False, error_count=0, created_at=NOW,
                     updated_at=NOW + timedelta(days=d)) for n, on, d in (("on", True, 1), ("off", False, 2))])
        await stored_before(store, ["https://off.org/1"], source="off")
        await store.migrate()
        assert {h.name: h.retired_at for h in await store.list_sources(retired=True)} == {
            "on": None, "off": NOW + timedelta(days=2)}
    finally:
        await store.close()


async def test_a_shortened_interval_applies_from_the_edit_not_after_the_old_one(store):
    """Edited from "6h" to "15m", a source kept the next check its 6 h interval had set:
    the operator's new interval took effect hours later."""
    await store.sync_sources([SourceSpec("a", "https://a.org/feed", "politics", interval_s=21600)], NOW)
    (c,) = await store.claim_due_sources(NOW, owner="x", lease_s=1)
    await store.record_fetch(c.id, FetchRecord(ok=True, next_check_at=NOW + timedelta(hours=6),
                                               interval_s=21600, status=200, etag='"v1"'), NOW)
    edit = NOW + timedelta(minutes=10)
    await store.sync_sources([SourceSpec("a", "https://a.org/feed", "politics", interval_s=900)], edit)
    (h,) = await store.list_sources()
    assert h.next_check_at == edit + timedelta(seconds=900)
    (c,) = await store.claim_due_sources(edit + timedelta(seconds=900), owner="x", lease_s=1)
    assert c.etag == '"v1"'  # only the schedule moved: the validators stay


async def test_a_lengthened_interval_counts_from_the_last_check(store):
    """Edited from "15m" to "2h" six minutes after a check, a source was still read nine
    minutes later (`sources list`: NEXT in 9m), once more at the pace the operator had just
    slowed. The new interval counts from the last check; a source never checked stays due."""
    spec = SourceSpec("a", "https://a.org/feed", "politics", interval_s=900)
    await store.sync_sources([spec], NOW)
    (c,) = await store.claim_due_sources(NOW, owner="x", lease_s=1)
    await store.record_fetch(c.id, FetchRecord(ok=True, next_check_at=NOW + timedelta(minutes=15),
                                               interval_s=900, status=200, etag='"v1"'), NOW)
    new = replace(spec, name="new", url="https://new.org/feed")
    await store.sync_sources([spec, new], NOW)
    edit = NOW + timedelta(minutes=6)
    await store.sync_sources([replace(spec, interval_s=7200), replace(new, interval_s=7200)], edit)
    assert {h.name: h.next_check_at for h in await store.list_sources()} == {
        "a": NOW + timedelta(hours=2), "new": NOW}
    (due,) = await store.claim_due_sources(NOW + timedelta(minutes=15), owner="x", lease_s=1)
    assert due.spec.name == "new"


async def test_an_interval_shortened_below_the_floor_is_due_at_the_floor(store):
    """Edited to "1m" under [collect] min_interval_s = 300, a source was due 60 s after the
    edit, while the load's warning (`sources.interval_raised`) said it is checked no more
    often than every 5 minutes: the next check comes within the raised interval."""
    spec = SourceSpec("a", "https://a.org/feed", "politics", interval_s=21600)
    await store.sync_sources([spec], NOW, min_interval_s=300)
    (c,) = await store.claim_due_sources(NOW, owner="x", lease_s=1)
    await store.record_fetch(c.id, FetchRecord(ok=True, next_check_at=NOW + timedelta(hours=6),
                                               interval_s=21600, status=200), NOW)
    edit = NOW + timedelta(minutes=10)
    await store.sync_sources([replace(spec, interval_s=60)], edit, min_interval_s=300)
    (h,) = await store.list_sources()
    assert h.next_check_at == edit + timedelta(seconds=300)


async def test_permanent_redirect_updates_url(store):
    await store.sync_sources([SourceSpec("a", "http://a.org/feed", "politics")], NOW)
    (c,) = await store.claim_due_sources(NOW, owner="x", lease_s=60)
    await store.record_fetch(c.id, FetchRecord(ok=True, next_check_at=NOW, interval_s=900,
                                               new_url="https://a.org/feed"), NOW)
    assert (await store.list_sources())[0].url == "https://a.org/feed"


async def test_a_sync_after_a_permanent_redirect_keeps_the_new_url_and_validators(store):
    """The file still names the old URL after a 301: that is no edit. Comparing it with the
    moved URL put the old one back, dropped the ETag and made the source due (any CLI
    command syncs). Only an edit of the file's URL resets the source."""
    old, moved = "http://a.org/old.xml", "http://a.org/feed.xml"
    await store.sync_sources([SourceSpec("a", old, "politics")], NOW)
    (c,) = await store.claim_due_sources(NOW, owner="x", lease_s=60)
    later = NOW + timedelta(hours=1)
    await store.record_fetch(c.id, FetchRecord(ok=True, next_check_at=later, interval_s=900,
                                               status=200, etag='"v1"', new_url=moved), NOW)
    changes = await store.sync_sources([SourceSpec("a", old, "politics")], NOW + timedelta(minutes=1))
    assert changes == {"added": 0, "changed": 0, "retired": 0, "adopted": 0, "kept": 0}
    (h,) = await store.list_sources()
    assert h.url == moved and h.next_check_at == later
    assert await store.claim_due_sources(NOW + timedelta(minutes=1), owner="x", lease_s=60) == []
    (c,) = await store.claim_due_sources(later, owner="x", lease_s=60)
    assert c.spec.url == moved and c.etag == '"v1"'
    # Another setting edited: still no reset.
    await store.sync_sources([SourceSpec("a", old, "politics", interval_s=600)], later)
    (c,) = await store.claim_due_sources(later + timedelta(minutes=2), owner="x", lease_s=60)
    assert c.spec.url == moved and c.etag == '"v1"' and c.spec.interval_s == 600
    # The operator edits the URL: that one is fetched, from scratch, now.
    edit = later + timedelta(minutes=5)
    assert (await store.sync_sources([SourceSpec("a", "http://b.org/rss", "politics")], edit))["changed"] == 1
    (c,) = await store.claim_due_sources(edit, owner="x", lease_s=60)
    assert c.spec.url == "http://b.org/rss" and c.etag is None


async def test_a_source_is_pending_until_fetched_since_a_reset_or_a_url_edit(store):
    """Health came from the error count alone: a reset of an always-failing source read
    `ok` with no success ever, and a URL edit read `ok` beside the old URL's error."""
    await store.sync_sources([SourceSpec("a", "http://a.org/feed", "politics"),
                              SourceSpec("b", "http://b.org/feed", "politics")], NOW)
    for c in await store.claim_due_sources(NOW, owner="x", lease_s=60):
        failed = c.spec.name == "a"
        await store.record_fetch(c.id, FetchRecord(
            ok=not failed, next_check_at=NOW, interval_s=900, status=404 if failed else 200,
            error="HTTP 404 Not Found" if failed else None), NOW)

    async def health() -> dict:
        return {h.name: (h.status, h.last_error) for h in await store.list_sources()}

    assert await health() == {"a": ("error", "HTTP 404 Not Found"), "b": ("ok", None)}
    t1 = NOW + timedelta(minutes=1)
    assert await store.reset_source("a", t1) and await store.reset_source("b", t1)
    assert await health() == {"a": ("pending", None), "b": ("ok", None)}
    # a fails again; then both URLs are edited: the old URL's error and success are not
    # the new one's.
    (c,) = await store.claim_due_sources(t1, owner="x", lease_s=60, name="a")
    await store.record_fetch(c.id, FetchRecord(ok=False, next_check_at=t1, interval_s=900,
                                               status=404, error="HTTP 404 Not Found"), t1)
    t2 = NOW + timedelta(minutes=2)
    await store.sync_sources([SourceSpec("a", "http://a.org/rss", "politics"),
                              SourceSpec("b", "http://b.org/rss", "politics")], t2)
    assert await health() == {"a": ("pending", None), "b": ("pending", None)}
    for c in await store.claim_due_sources(t2, owner="x", lease_s=60):
        await store.record_fetch(c.id, FetchRecord(ok=True, next_check_at=t2, interval_s=900,
                                                   status=200), t2)
    assert await health() == {"a": ("ok", None), "b": ("ok", None)}


async def test_disabled_and_removed_sources_are_never_claimed_and_never_due(store):
    """Claiming by name dropped the enabled and in-the-file conditions (`collect --source`
    fetched a disabled source); a removed source could be reset to "due" though nothing
    would ever fetch it; a disabled one showed a next check that would never come."""
    await store.sync_sources([SourceSpec("on", "http://a.org/feed", "politics"),
                              SourceSpec("off", "http://b.org/feed", "politics", enabled=False),
                              SourceSpec("gone", "http://c.org/feed", "politics")], NOW)
    await store.sync_sources([SourceSpec("on", "http://a.org/feed", "politics"),
                              SourceSpec("off", "http://b.org/feed", "politics", enabled=False)], NOW)
    for name in ("off", "gone"):
        assert await store.claim_due_sources(NOW, owner="x", lease_s=60, name=name, due_only=False) == []
    assert [c.spec.name for c in await store.claim_due_sources(NOW, owner="x", lease_s=60, name="on")] == ["on"]
    assert await store.reset_source("gone", NOW) is None
    assert await store.reset_source("nope", NOW) is None
    assert await store.reset_source("off", NOW) == "disabled"
    assert await store.reset_source("on", NOW) == "due"
    assert {h.name: h.next_check_at for h in await store.list_sources()} == {"on": NOW, "off": None}
    # One word for it everywhere: the table said `disabled`, `--json` and /v1/sources `pending`.
    assert {h.name: h.status for h in await store.list_sources()} == {"on": "pending", "off": "disabled"}


async def test_a_reset_leaves_a_collectors_claim_so_no_second_collector_fetches_beside_it(store):
    """`sources reset` cleared the lease: on two machines, the other collector claimed the
    source at its next tick and fetched it beside the one fetching it then (the probe's
    feed server counted two requests in one round). The claim now stands; once its holder
    lets go (done, stopped, or its lease ran out) the source is due, as the reset asked."""
    await store.sync_sources([SourceSpec("a", "http://a.org/feed", "politics")], NOW)
    (held,) = await store.claim_due_sources(NOW, owner="c1", lease_s=300)
    assert await store.reset_source("a", NOW) == "due"
    assert await store.claim_due_sources(NOW, owner="c2", lease_s=300) == []
    assert await store.claim_due_sources(NOW, owner="c2", lease_s=300, name="a", due_only=False) == []
    assert await store.release_source_claims("c1") == 1
    assert [c.spec.name for c in await store.claim_due_sources(NOW, owner="c2", lease_s=300)] == ["a"]


async def test_a_reset_during_a_fetch_is_not_undone_by_that_fetchs_record(store):
    """`sources reset` leaves the claim of a fetch under way (no second fetch beside it), but
    that fetch's record, written after, put back what the reset cleared: the page marks it
    started from (the pages it had given up on, not read by it either), validators the next
    check then sent (a 304, the mended pages never tried), and its next check an interval
    away where the reset said due now. The record is stale now, as after an edit: the row
    keeps the reset, and the lease is let go."""
    page = "https://a.org/story"
    await store.sync_sources([SourceSpec("a", "https://a.org/feed", "news")], NOW)
    (c,) = await store.claim_due_sources(NOW, owner="x", lease_s=60)
    await store.record_fetch(c.id, FetchRecord(ok=True, next_check_at=NOW, interval_s=900, status=200,
                                               etag="e1", page_failures={page: 3}), NOW)
    (c,) = await store.claim_due_sources(NOW, owner="x", lease_s=60)  # a fetch under way
    t1 = NOW + timedelta(seconds=10)
    assert await store.reset_source("a", t1) == "due"
    # The fetch's outcome as the collector writes it: the page given up on is not read, its
    # mark carried; the feed's new validators.
    assert not await store.record_fetch(c.id, FetchRecord(
        ok=True, next_check_at=t1 + timedelta(minutes=15), interval_s=900, status=200, etag="e2",
        spec=c.spec, claimed_due=c.next_check_at, page_failures=dict(c.page_failures)), t1)
    (h,) = await store.list_sources()
    assert h.failing_pages == 0
    (again,) = await store.claim_due_sources(t1, owner="y", lease_s=60)
    assert (again.etag, again.page_failures) == (None, {})


async def test_vectors_and_change_log(store):
    ids = (await store.upsert_stories([draft(f"https://e.org/{i}") for i in range(3)], NOW)).new_ids
    await store.save_vectors([(i, 1, b"\x01" * 8) for i in ids], "r", NOW)
    assert sorted(await store.vector_ids("r")) == sorted(ids)
    changes = await store.changes_since(0)
    assert [c[2] for c in changes] == ["add"] * 3
    removed = await store.delete_stories_before(NOW + timedelta(days=1))
    assert sorted(removed) == sorted(ids)
    tail = await store.changes_since(changes[-1][0])
    assert sorted(c[1] for c in tail) == sorted(ids) and {c[2] for c in tail} == {"remove"}
    assert await store.vector_ids("r") == []


async def test_saving_vectors_finds_the_stories_still_there_as_it_releases_them(store):
    """A story deleted while it was embedded gets no vector; which ones are still there is
    what the UPDATE that releases the claims returns, not a second read of the stories (each
    statement costs the event loop ~0.3 ms, and the indexer saves a piece at a time)."""
    from sqlalchemy import event

    ids = (await store.upsert_stories([draft(f"https://e.org/{i}") for i in range(3)], NOW)).new_ids
    async with store.writing() as s:
        await s.execute(text("DELETE FROM stories WHERE id = :id"), {"id": ids[1]})
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(" ".join(statement.split()))

    event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        saved = await store.save_vectors([(i, 1, b"\x01" * 8) for i in ids], "r", NOW)
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", seen)
    assert saved == [ids[0], ids[2]]
    assert sorted(await store.vector_ids("r")) == [ids[0], ids[2]]
    assert sorted(c[1] for c in await store.changes_since(0) if c[2] == "add") == [ids[0], ids[2]]
    assert not [q for q in statements if q.upper().startswith("SELECT") and "FROM stories" in q], statements


async def test_retention_prunes_the_change_log_and_records_its_horizon(store, monkeypatch):
    """Old entries go, recent ones stay, and a watermark behind what went is told so
    (it can no longer replay a re-embed) instead of being handed the rows after the gap."""
    monkeypatch.setattr(store_module, "PRUNE_BATCH", 2)  # several batches
    ids = (await store.upsert_stories([draft(f"https://e.org/{i}") for i in range(5)], NOW)).new_ids
    await store.save_vectors([(i, 1, b"\x01" * 8) for i in ids[:3]], "r", NOW - timedelta(days=40))
    await store.save_vectors([(i, 1, b"\x01" * 8) for i in ids[3:]], "r", NOW)
    log = await store.changes_since(0)
    assert len(log) == 5 and await store.change_horizon() == 0

    assert await store.prune_changes_before(NOW - timedelta(days=30)) == 3
    old_top, recent = log[2][0], log[3:]
    assert await store.change_horizon() == old_top
    assert await store.changes_since(old_top) == recent  # a watermark at the horizon misses nothing
    for behind in (0, old_top - 1):
        with pytest.raises(ChangesPruned) as e:
            await store.changes_since(behind)
        assert (e.value.seq, e.value.horizon) == (behind, old_top)
    assert await store.prune_changes_before(NOW - timedelta(days=30)) == 0  # nothing more is old

    # Everything pruned (a quiet month): the log's position is still the horizon, so a replica
    # starting now is not behind it at once; new entries continue after it.
    assert await store.prune_changes_before(NOW + timedelta(days=1)) == 2
    assert await store.changes_since(log[-1][0]) == []
    assert await store.change_seq() == await store.change_horizon() == log[-1][0]
    await store.save_vectors([(ids[0], 2, b"\x02" * 8)], "r", NOW)
    assert [c[0] > log[-1][0] for c in await store.changes_since(log[-1][0])] == [True]


async def test_events_are_idempotent_and_counted(store):
    (sid,) = (await store.upsert_stories([draft("https://e.org/1")], NOW)).new_ids
    ev = [EventRecord(event_key("r1", sid, "click", NOW, "e1"), "r1", sid, "click", NOW),
          EventRecord(event_key("r1", sid, "impression", NOW, None), "r1", sid, "impression", NOW)]
    assert await store.add_events(ev, NOW) == 2
    assert await store.add_events(ev, NOW) == 0
    assert (await store.story_stats([sid]))[sid] == (1, 1, 0)
    assert len(await store.reader_events("r1")) == 2
    assert await store.delete_reader("r1")
    assert await store.reader_events("r1") == []


async def test_an_event_for_a_story_deleted_meanwhile_costs_only_itself(store):
    """Accepted, then its story was taken down before the batch was written: its foreign
    key failed the whole batch, every other reader's events with it."""
    kept, gone = (await store.upsert_stories([draft("https://e.org/1"), draft("https://e.org/2")], NOW)).new_ids
    async with store.writing() as s:
        await s.execute(text("DELETE FROM stories WHERE id = :id"), {"id": gone})
    ev = [EventRecord(event_key("innocent", kept, "read", NOW, None), "innocent", kept, "read", NOW),
          EventRecord(event_key("other", gone, "click", NOW, None), "other", gone, "click", NOW)]
    assert await store.add_events(ev, NOW) == 1
    assert [e.story_id for e in await store.reader_events("innocent")] == [kept]
    assert await store.reader("other") is None


async def test_a_readers_export_is_by_time_then_story_then_order_stored(store):
    """It was in id order: the events of one request in the order of their keys (a hash,
    `store_events` inserts by key), and a batch sent late (an app's queue) after newer events.
    Paged one event at a time, the ties of time and story still come once each, in order."""
    a, b, c = (await store.upsert_stories([draft(f"https://b.org/{n}", n) for n in "abc"], NOW)).new_ids
    earlier = NOW - timedelta(hours=1)
    one_request = [EventRecord(f"key-{k}", "r", sid, t, NOW)
                   for k, sid, t in (("z", a, "impression"), ("a", c, "impression"), ("m", b, "impression"),
                                     ("b", a, "click"))]
    await store.add_events(one_request, NOW)
    await store.add_events([EventRecord("key-late", "r", c, "read", earlier, 20.0)], NOW)
    expected = [(c, "read", earlier), (a, "click", NOW), (a, "impression", NOW),
                (b, "impression", NOW), (c, "impression", NOW)]
    for batch in (1, 2, 5_000):
        exported = [e for page in [p async for p in store.iter_reader_events("r", batch=batch)] for e in page]
        assert [(e.story_id, e.type, e.at) for e in exported] == expected, batch


async def test_a_readers_events_outlive_their_stories_in_their_export(store):
    """Retention, a takedown and a source purge deleted a story with every reader's events of
    it (a foreign key ON DELETE CASCADE): the reader's export, which promises every event
    they sent, lost their reads without a word. The events stay; the story's URL and title,
    gone from the store (a takedown's too), are not in them."""
    await store.sync_sources([SourceSpec("gone", "https://a.org/feed", "politics")], NOW)
    old, taken, purged, kept = (await store.upsert_stories([
        draft("https://b.org/old", "Old", published_at=NOW - timedelta(days=40)),
        draft("https://b.org/taken", "Taken"), draft("https://a.org/purged", "Purged", source="gone"),
        draft("https://b.org/kept", "Kept")], NOW)).new_ids
    await store.add_events([EventRecord(event_key("r", sid, "read", NOW, None), "r", sid, "read", NOW, 30.0)
                            for sid in (old, taken, purged, kept)], NOW)
    assert await store.delete_stories_before(NOW - timedelta(days=30)) == [old]
    assert await store.take_down(["https://b.org/taken"], reason="legal") == [taken]
    await store.sync_sources([], NOW)
    assert await store.purge_source("gone") == [purged]

    exported = [e for batch in [b async for b in store.iter_reader_events("r")] for e in batch]
    assert sorted(e.story_id for e in exported) == [old, taken, purged, kept]
    assert sorted((e.story_id, e.type, e.dwell_s, e.url, e.title) for e in exported) == [
        (old, "read", 30.0, None, None), (taken, "read", 30.0, None, None),
        (purged, "read", 30.0, None, None), (kept, "read", 30.0, "https://b.org/kept", "Kept")]
    # The counts of stories no longer stored go with them, as before.
    assert set(await store.story_stats()) == {kept}
    report = await store.widget_stats(NOW - timedelta(days=1), NOW + timedelta(hours=1))
    assert report.days == [(NOW.date().isoformat(), 0, 0, 1)]


async def test_the_events_of_a_deleted_story_take_nothing_off_the_report(store):
    """A period that ends within a day takes that day's later events off its counts; the
    events of a story deleted since (kept for the reader's export) were taken off its page's
    count, which no longer held them: the page a block was read on fell out of the report."""
    page = "https://pub.example/article"
    kept, gone = (await store.upsert_stories([draft("https://b.org/kept"), draft("https://b.org/gone")],
                                             NOW)).new_ids
    await store.add_events([*_events(kept, "impression", NOW - timedelta(hours=2), 1, "a", page),
                            *_events(gone, "impression", NOW, 1, "b", page)], NOW)
    await store.take_down(["https://b.org/gone"])
    report = await store.widget_stats(NOW - timedelta(days=1), NOW - timedelta(hours=1))
    assert report.pages == [(page, 1, 0)]


def test_client_event_ids_are_keys_per_reader_without_collisions():
    key = event_key
    assert key("a", 1, "click", NOW, "b:c") != key("a:b", 1, "click", NOW, "c")
    long_id = "x" * 150
    assert key("r", 1, "click", NOW, long_id + "1") != key("r", 1, "click", NOW, long_id + "2")
    # The client's id decides, not the event's fields: a retry is the same event.
    assert key("r", 1, "click", NOW, "e1") == key("r", 2, "read", NOW + timedelta(1), "e1")
    assert all(len(k) <= 160 for k in (key("r" * 128, 1, "read", NOW, "i" * 500),))


async def test_a_deleted_reader_is_not_brought_back_by_an_event_in_flight(store):
    """Another API process accepted the event just before the delete and writes it just
    after: the reader stays forgotten. A minute on, the same id starts afresh."""
    (sid,) = (await store.upsert_stories([draft("https://e.org/1")], NOW)).new_ids
    read = EventRecord(event_key("gone", sid, "read", NOW, None), "gone", sid, "read", NOW)
    assert await store.add_events([read], NOW) == 1
    assert await store.delete_reader("gone", NOW + timedelta(seconds=1))
    late = EventRecord(event_key("gone", sid, "click", NOW, None), "gone", sid, "click", NOW)
    other = EventRecord(event_key("stays", sid, "click", NOW, None), "stays", sid, "click", NOW)
    assert await store.add_events([late, other], NOW + timedelta(seconds=5)) == 1
    assert await store.reader("gone") is None and await store.reader_events("gone") == []
    assert await store.add_events([late], NOW + timedelta(minutes=2)) == 1
    assert await store.reader("gone") is not None


async def test_a_reader_forgotten_while_their_events_are_written_stays_forgotten(store, monkeypatch):
    """The delete commits while another process's batch of the reader's events is being
    written: that batch had looked for forgotten readers just before (PostgreSQL, READ
    COMMITTED), then brought the reader back with the events. A delete now waits for the
    batches under way and deletes what they wrote; a batch starting later sees the delete."""
    from aggregator.store import Store
    from tests.aggregator.test_takedowns import settled

    (sid,) = (await store.upsert_stories([draft("https://e.org/1")], NOW)).new_ids
    first = EventRecord(event_key("gone", sid, "read", NOW, None), "gone", sid, "read", NOW)
    assert await store.add_events([first], NOW) == 1
    checked, release = asyncio.Event(), asyncio.Event()
    real = Store._forgotten

    async def slow_check(s, readers, now):  # the batch's transaction, paused after its check
        found = await real(s, readers, now)
        checked.set()
        await release.wait()
        return found

    monkeypatch.setattr(Store, "_forgotten", staticmethod(slow_check))
    late = EventRecord(event_key("gone", sid, "click", NOW, None), "gone", sid, "click", NOW)
    writing = asyncio.create_task(store.add_events([late], NOW + timedelta(seconds=1)))
    await checked.wait()
    deleting = asyncio.create_task(store.delete_reader("gone", NOW + timedelta(seconds=1)))
    await settled(store, deleting)
    release.set()
    await writing
    assert await deleting
    assert await store.reader("gone") is None and await store.reader_events("gone") == []


async def test_reader_story_ids_hold_every_story_read_however_long_the_history(store):
    """The profile is built from the reader's newest 2,000 clicks and reads; what they read
    before those must still be known, or it comes back in their feed."""
    ids = list((await store.upsert_stories([draft(f"https://e.org/{i}") for i in range(12)], NOW)).new_ids)
    old, busy, late = ids[:4], ids[4:10], ids[10:]
    ev = [EventRecord(event_key("long", i, "read", NOW - timedelta(days=20), None), "long", i, "read",
                      NOW - timedelta(days=20), 40.0) for i in old]
    ev += [EventRecord(event_key("long", busy[n % 6], "click", NOW, f"c{n}"), "long", busy[n % 6], "click",
                       NOW - timedelta(hours=1, seconds=n)) for n in range(2100)]
    ev += [EventRecord(event_key("long", late[0], "read", NOW, None), "long", late[0], "read",
                       NOW + timedelta(minutes=5)),
           EventRecord(event_key("long", late[1], "impression", NOW, None), "long", late[1], "impression", NOW),
           EventRecord(event_key("other", ids[11], "read", NOW, None), "other", ids[11], "read", NOW)]
    assert await store.add_events(ev, NOW) == 2107
    newest = await store.reader_events("long", types=("click", "read"))
    assert len(newest) == 2000 and not {e.story_id for e in newest} & set(old)  # what the profile sees

    month = NOW - timedelta(days=30)
    assert await store.reader_story_ids("long", since=month, until=NOW) == {*old, *busy}
    assert await store.reader_story_ids("long", since=month) == {*old, *busy, late[0]}
    assert await store.reader_story_ids("long", since=NOW - timedelta(days=10), until=NOW) == set(busy)
    assert await store.reader_story_ids("long", types=("impression",)) == {late[1]}
    assert await store.reader_story_ids("other") == {ids[11]}
    assert await store.reader_story_ids("nobody") == set()
    # Past the cap, the most recently engaged stories are the ones kept.
    assert await store.reader_story_ids("long", until=NOW, limit=6) == set(busy)


async def test_recent_events_come_newest_first_across_partitions(store, monkeypatch):
    # Read in partitions (the event loop gets a turn between them): with 3 rows a partition,
    # 7 matching events take three, the last one short.
    monkeypatch.setattr(store_module, "EVENT_PARTITION", 3)
    (sid,) = (await store.upsert_stories([draft("https://e.org/1")], NOW)).new_ids
    types = ("click", "read", "impression")
    ev = [EventRecord(event_key(f"r{i % 2}", sid, types[i % 3], NOW, f"e{i}"), f"r{i % 2}", sid,
                      types[i % 3], NOW - timedelta(minutes=i)) for i in range(10)]
    assert await store.add_events(ev, NOW) == 10
    # Times come as seconds since the epoch (SQLite keeps milliseconds of them).
    expected = [(e.reader, sid, pytest.approx(e.at.timestamp(), abs=1e-3), e.type)
                for e in ev if e.type != "impression"]
    assert len(expected) == 7

    async def rows(*args, **kwargs):
        log = await store.recent_events(*args, **kwargs)
        return list(zip(log.readers, log.story_ids, log.at_s, log.types, strict=True))

    assert await rows(NOW - timedelta(days=1)) == expected
    assert await rows(NOW - timedelta(days=1), limit=4) == expected[:4]
    since = NOW - timedelta(minutes=4, seconds=30)
    assert await rows(since) == expected[:4]  # minutes 0, 1, 3 and 4
    assert len(await store.recent_events(NOW + timedelta(days=1))) == 0


def _claim(store, owner: str, at: datetime) -> Awaitable[bool]:
    """Retention's claim: once an hour, leased for 5 minutes, ticking every 10."""
    return store.claim_job("retention", owner=owner, every_s=3600, lease_s=300, now=at)


async def test_cluster_job_runs_once_an_hour(store):
    assert await _claim(store, "a", NOW)
    assert not await _claim(store, "b", NOW + timedelta(minutes=1))  # a runs it
    assert await store.job_done("retention", owner="a", started_at=NOW)
    for later in (10, 20, 59):  # the other ticks of the hour, of any process
        assert not await _claim(store, "b", NOW + timedelta(minutes=later))
        assert not await _claim(store, "a", NOW + timedelta(minutes=later))
    assert await _claim(store, "b", NOW + timedelta(hours=1))


async def test_a_failed_cluster_job_is_claimed_again_at_the_next_tick(store):
    """Claiming the job recorded its run: a run that failed (the database busy, the process
    killed) was tried again by no process for an hour."""
    assert await _claim(store, "a", NOW)  # ... and a's run fails: no job_done
    assert not await _claim(store, "b", NOW + timedelta(minutes=4))  # a's lease holds
    assert await _claim(store, "a", NOW + timedelta(minutes=10))  # a's own next tick
    # ... fails again; b's next tick takes it, and a's late word changes nothing.
    assert await _claim(store, "b", NOW + timedelta(minutes=20))
    assert not await store.job_done("retention", owner="a", started_at=NOW)
    assert not await _claim(store, "a", NOW + timedelta(minutes=21))
    assert await store.job_done("retention", owner="b", started_at=NOW + timedelta(minutes=20))
    assert not await _claim(store, "a", NOW + timedelta(minutes=79))
    assert await _claim(store, "a", NOW + timedelta(minutes=80))


async def test_a_renewed_claim_keeps_a_long_run_to_its_owner(store):
    """A run longer than its lease renews its claim: no other process takes the job while it
    goes on. A claim lost (its lease ran out first) or a run done cannot be renewed."""
    assert await _claim(store, "a", NOW)
    for minutes in (4, 8, 12):  # a's run goes on, renewing every 4 minutes
        assert await store.renew_job("retention", owner="a", lease_s=300,
                                     now=NOW + timedelta(minutes=minutes))
        assert not await _claim(store, "b", NOW + timedelta(minutes=minutes + 1))
    assert not await store.renew_job("retention", owner="b", lease_s=300,
                                     now=NOW + timedelta(minutes=13))  # not b's to renew
    assert await _claim(store, "b", NOW + timedelta(minutes=18))  # a stopped renewing
    assert not await store.renew_job("retention", owner="a", lease_s=300,
                                     now=NOW + timedelta(minutes=19))
    assert await store.job_done("retention", owner="b", started_at=NOW + timedelta(minutes=18))
    assert not await store.renew_job("retention", owner="b", lease_s=300,
                                     now=NOW + timedelta(minutes=19))  # done: nothing held


async def test_concurrent_claims_of_a_cluster_job_have_one_winner(db_url):
    """Two processes (two stores, their own connections) ticking at once: the job's first
    claim (the row inserted) and a later one (the row updated) each go to one of them."""
    from aggregator.store import Store

    a, b = Store(db_url), Store(db_url)
    await a.migrate()
    try:
        for hour in range(3):
            at = NOW + timedelta(hours=hour)
            won = await asyncio.gather(_claim(a, "a", at), _claim(b, "b", at))
            assert sorted(won) == [False, True]
            owner = "a" if won[0] else "b"
            assert await (a if won[0] else b).job_done("retention", owner=owner, started_at=at)
    finally:
        await a.close()
        await b.close()


async def test_processes_syncing_the_same_new_sources_at_once_all_start(db_url):
    """`tidings run` and `tidings collect` started together on one SQLite file: both read no
    row for the file's new sources, both inserted them, and one stopped on the unique key
    (PostgreSQL's advisory lock keeps them in turn). Two stores, their own connections."""
    from aggregator.store import Store

    a, b = Store(db_url), Store(db_url)
    await a.migrate()
    try:
        for round_ in range(3):
            specs = [SourceSpec(name=f"s{round_}-{i}", url=f"https://s{i}.example/{round_}.xml",
                                category="news") for i in range(200)]
            done = await asyncio.gather(a.sync_sources(specs, NOW), b.sync_sources(specs, NOW))
            assert sorted(d["added"] for d in done) == [0, 200], done
        assert len(await a.list_sources()) == 200  # the last round's; the others retired
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("bad", ["sqlite+nodriver:///x.db", "postgresql+asyncpg://postgres@127.0.0.1:1/none"])
async def test_unusable_database_is_a_store_error(bad, tmp_path):
    from aggregator.errors import StoreError
    from aggregator.store import Store

    with pytest.raises(StoreError):
        s = Store(bad)
        await s.migrate()


async def test_a_database_migrated_by_a_newer_version_is_one_clear_error(db_url):
    """A rolling upgrade: the first new process migrates; an old one restarting printed 96
    lines of alembic traceback and crash-looped. The line names both revisions (it named
    the database's only): the operator learns which version to run."""
    from aggregator.errors import StoreError
    from aggregator.store import Store

    s = Store(db_url)
    await s.migrate()
    async with s.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(StoreError, match="newer version migrated it") as raised:
        await s.migrate()
    assert "revision 0999" in str(raised.value) and f"knows up to {head()}" in str(raised.value)
    assert "\n" not in str(raised.value)
    await s.close()


async def test_a_schema_upgrade_is_logged_before_and_after_it_runs(db_url, caplog):
    """An operator upgrading from an older release: alembic is quiet (its logger at warning),
    so `run` migrated 0011 to the head without a word, and a big events table keeps the API
    down for minutes meanwhile. Said before (what, from which revision to which) and after
    (how long); nothing for a new database, one up to date, or a newer version's."""
    import logging

    from aggregator.errors import StoreError
    from aggregator.store import Store

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "tidings.store" and r.getMessage().startswith("store.migrat")]

    caplog.set_level(logging.INFO, logger="tidings.store")
    s = Store(db_url)
    try:
        await migrate_to(s, "0011")  # as a release of 2026-12-05 left it
        await s.migrate()
        migrating, migrated = said()
        assert migrating.startswith("store.migrating ") and f"from schema revision 0011 to {head()}" in migrating
        assert "older versions" in migrating
        assert migrated.startswith("store.migrated ") and f"from schema revision 0011 to {head()} in " in migrated
        caplog.clear()
        assert await s.migrate() == head() and said() == []  # up to date: nothing to say
        async with s.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
        with pytest.raises(StoreError):
            await s.migrate()
        assert said() == []  # a newer version's schema is the error, not an upgrade
    finally:
        await s.close()
    fresh = Store(db_url.replace("tidings.db", "fresh.db")) if "sqlite" in db_url else None
    if fresh is not None:
        try:
            assert await fresh.migrate() is None and said() == []  # made, not upgraded
        finally:
            await fresh.close()


async def test_parallel_claims_never_overlap(db_url):
    """Three collectors claiming at once (separate engines, as separate processes would)."""
    import asyncio

    from aggregator.store import Store

    stores = [Store(db_url) for _ in range(3)]
    await stores[0].migrate()
    specs = [SourceSpec(f"s{i}", f"https://h{i % 7}.org/feed{i}", "politics") for i in range(120)]
    await stores[0].sync_sources(specs, NOW)
    claimed: list[list[str]] = [[], [], []]

    async def worker(n: int) -> None:
        while True:
            got = await stores[n].claim_due_sources(NOW, owner=f"c{n}", lease_s=300, limit=7)
            if not got:
                return
            claimed[n] += [g.spec.name for g in got]

    try:
        await asyncio.gather(*(worker(n) for n in range(3)))
    finally:
        for s in stores:
            await s.close()
    every = [name for c in claimed for name in c]
    assert sorted(every) == sorted(s.name for s in specs)  # each exactly once


async def test_the_embedding_backlog_is_taken_newest_first(store):
    """A long backlog (a new embedder recipe re-embeds every story) must not hold back the
    stories collected meanwhile: a claim takes the most recently stored ones."""
    old = (await store.upsert_stories(
        [draft(f"https://example.org/old-{i}") for i in range(5)], NOW)).new_ids
    fresh = (await store.upsert_stories(
        [draft(f"https://example.org/new-{i}") for i in range(2)], NOW)).new_ids
    assert [j.id for j in await store.embed_backlog("r1", 2)] == sorted(fresh)
    claimed = await store.claim_embed_backlog("r1", 2, lease_s=600, now=NOW)
    assert [j.id for j in claimed] == sorted(fresh)
    rest = await store.claim_embed_backlog("r1", 10, lease_s=600, now=NOW)
    assert [j.id for j in rest] == sorted(old)


async def test_the_oldest_live_embedder_leads_and_an_expired_one_is_not_revived(store):
    """The recipe of a database is its oldest live indexer's; an indexer whose lease ran out
    (a machine asleep, a partition) comes back behind the ones that started meanwhile."""
    assert await store.leading_embedder(NOW) is None
    a = await store.register_embedder("host-a:1", "recipe-a", lease_s=60, now=NOW)
    b = await store.register_embedder("host-b:2", "recipe-b", lease_s=60, now=NOW + timedelta(seconds=1))
    lead = await store.leading_embedder(NOW + timedelta(seconds=2))
    assert (lead.id, lead.owner, lead.recipe, lead.started_at) == (a.id, "host-a:1", "recipe-a", NOW)
    # a's lease runs out; b renews in time and leads.
    later = NOW + timedelta(seconds=59)
    assert await store.renew_embedder(b.id, lease_s=60, now=later)
    assert (await store.leading_embedder(NOW + timedelta(seconds=61))).recipe == "recipe-b"
    assert not await store.renew_embedder(a.id, lease_s=60, now=NOW + timedelta(seconds=61))
    assert (await store.leading_embedder(NOW + timedelta(seconds=62))).recipe == "recipe-b"
    # Dropped on close: nobody leads, the next to register does.
    await store.drop_embedder(b.id)
    assert await store.leading_embedder(NOW + timedelta(seconds=62)) is None
    # Long-expired registrations are cleared when another registers.
    c = await store.register_embedder("host-c:3", "recipe-c", lease_s=60, now=NOW + timedelta(days=2))
    assert not await store.renew_embedder(a.id, lease_s=60, now=NOW)  # a's row is gone
    assert (await store.leading_embedder(NOW + timedelta(days=2))).id == c.id


async def test_the_latest_vector_recipe_is_the_newest_storys(store):
    """With no indexer running, what the stories were last embedded with: the newest one's."""
    assert await store.latest_vector_recipe() is None
    ids = sorted((await store.upsert_stories(
        [draft(f"https://example.org/v{i}") for i in range(3)], NOW)).new_ids)
    await store.save_vectors([(ids[2], 1, b"\x00" * 16)], "recipe-new", NOW)
    await store.save_vectors([(i, 1, b"\x00" * 16) for i in ids[:2]], "recipe-old", NOW)
    assert await store.latest_vector_recipe() == "recipe-new"  # not the last saved


async def test_embedding_claims_are_exclusive_until_released(store):
    ids = set((await store.upsert_stories(
        [draft(f"https://example.org/{i}") for i in range(4)], NOW)).new_ids)
    first = await store.claim_embed_backlog("r1", 3, lease_s=600, now=NOW)
    assert len(first) == 3
    # Leased: a second indexer only gets the story nobody holds.
    second = await store.claim_embed_backlog("r1", 10, lease_s=600, now=NOW)
    assert [j.id for j in second] == sorted(ids - {j.id for j in first})
    # Released (a shutdown hands its chunk back): available at once, not after the lease.
    await store.release_embed_claims([j.id for j in first])
    again = await store.claim_embed_backlog("r1", 10, lease_s=600, now=NOW)
    assert sorted(j.id for j in again) == sorted(j.id for j in first)


async def test_a_feed_with_lone_surrogates_is_stored_with_them_replaced(store):
    """A JSON Feed may escape a lone surrogate ("\\ud800") or a NUL ("\\u0000"); no database
    encodes the first, PostgreSQL refuses the second in text, and before, the write of the
    source's whole round failed on either, every round."""
    import json

    from aggregator.normalize import normalize
    from aggregator.parse import parse_document

    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "f", "items": [
        {"id": "1", "url": "https://e.org/a#\ud800", "title": "Lone \ud800 title",
         "content_text": "Body \udcff text", "authors": [{"name": "A\udc80"}]},
        {"id": "2", "url": "https://e.org/b", "title": "Fi\u0000ne", "summary": "N\u0000UL"}]}).encode()
    doc = parse_document(body, base_url="https://e.org/feed.json",
                         content_type="application/feed+json")
    drafts = [normalize(i, source=None, now=datetime.now(UTC)) for i in doc.items]
    new = (await store.upsert_stories(drafts)).new_ids
    assert len(new) == 2
    got = await store.get_stories(new)
    a = next(s for s in got.values() if s.url == "https://e.org/a")
    assert a.title == "Lone \ufffd title" and a.text == "Body \ufffd text"
    b = next(s for s in got.values() if s.url == "https://e.org/b")
    assert b.title == "Fine" and b.summary == "NUL"


def test_database_errors_say_what_and_hide_the_password(tmp_path):
    from aggregator.errors import StoreError
    from aggregator.store import Store, shown_url

    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreError, match="cannot create the folder of"):
        Store(f"sqlite+aiosqlite:///{tmp_path / 'a-file' / 'x.db'}")
    assert shown_url("postgresql+asyncpg://tid:s3cret@db:5432/news") == \
        "postgresql+asyncpg://tid:***@db:5432/news"
    assert "s3cret" not in shown_url("not a url://tid:s3cret@db/x")
    with pytest.raises(StoreError) as info:
        Store("postgresql+nosuchdriver://tid:s3cret@db/news")
    assert "s3cret" not in str(info.value) and "tid:***@db" in str(info.value)


# A PostgreSQL URL as hosts hand it out, written for libpq: asyncpg's connect() refused each
# of these options as an unknown keyword, so the copied URL never connected.
LIBPQ_OPTIONS = ("application_name=tidings%20test&connect_timeout=10&sslmode=disable"
                 "&options=-c%20statement_timeout%3D4321&target_session_attrs=read-write"
                 "&channel_binding=prefer")


async def test_libpq_options_in_a_postgres_url_reach_the_server(pg_url):
    from aggregator.store import Store

    s = Store(f"{pg_url}?{LIBPQ_OPTIONS}")
    try:
        await s.migrate()
        async with s.engine.connect() as conn:
            name = await conn.scalar(text("SELECT application_name FROM pg_stat_activity "
                                          "WHERE pid = pg_backend_pid()"))
            assert name == "tidings test"
            assert await conn.scalar(text("SHOW statement_timeout")) == "4321ms"
            assert await conn.scalar(text("SHOW ssl")) == "off"
    finally:
        await s.close()


async def test_sslmode_is_asyncpgs_ssl(pg_url):
    """sslmode=require against this server, which has TLS off, fails as libpq would: the
    mode reached asyncpg (it was refused as an unknown parameter before)."""
    from aggregator.errors import StoreError
    from aggregator.store import Store

    s = Store(f"{pg_url}?sslmode=require")
    try:
        with pytest.raises(StoreError) as info:
            await s.migrate()
    finally:
        await s.close()
    (line,) = str(info.value).splitlines()
    assert "rejected SSL upgrade" in line, line


async def test_connect_timeout_in_the_url_bounds_the_wait_for_a_silent_server():
    """A port that takes the TCP connection and never answers (a dead proxy, a firewall
    that swallows packets) waited asyncpg's 60 s; the URL's connect_timeout now bounds it."""
    import socket
    import time

    from aggregator.errors import StoreError
    from aggregator.store import Store

    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens; never accepts or answers
        port = silent.getsockname()[1]
        s = Store(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test?connect_timeout=1")
        started = time.monotonic()
        try:
            with pytest.raises(StoreError) as info:
                await s.migrate()
        finally:
            await s.close()
        waited_s = time.monotonic() - started
    assert 0.9 < waited_s < 5, waited_s
    (line,) = str(info.value).splitlines()
    assert "no answer within the connect timeout" in line, line


@pytest.mark.parametrize("option, said", [
    ("sslrootcert=/etc/ssl/rds.pem", "sslrootcert: asyncpg does not take it in a URL; set PGSSLROOTCERT"),
    ("sslkey=/k.pem", "sslkey: asyncpg does not take it in a URL; set PGSSLKEY"),
    ("channel_binding=require", "channel_binding=require: asyncpg cannot bind the channel"),
    ("sslmode=required", "sslmode=required is not one of disable, allow, prefer, require"),
    ("connect_timeout=ten", "connect_timeout=ten is not a number of seconds"),
])
def test_libpq_options_asyncpg_cannot_honour_are_refused_in_one_line(option, said):
    from aggregator.errors import StoreError
    from aggregator.store import Store

    with pytest.raises(StoreError) as info:
        Store(f"postgresql+asyncpg://tid:s3cret@db/news?{option}")
    (line,) = str(info.value).splitlines()
    assert said in line and "s3cret" not in line, line


def test_connect_timeout_zero_waits_as_libpq_does():
    from sqlalchemy.engine import make_url

    from aggregator.store import asyncpg_url

    url, args = asyncpg_url(make_url("postgresql+asyncpg://h/db?connect_timeout=0&ssl=require&sslmode=disable"))
    assert args == {"timeout": None}  # libpq: zero waits for ever; asyncpg's own ssl= wins
    assert dict(url.query) == {"ssl": "require"}


# Each body is one story: its copies (same body hash on other URLs) are linked to it, never
# embedded or listed. The links must follow deletes and edits.
BODY_X, BODY_Y, BODY_Z, BODY_W = (" ".join(f"{w}{i}" for i in range(60)) for w in "xyzw")


def syndicated(url: str, body: str, **kw) -> StoryDraft:
    from aggregator.normalize import content_hash

    return draft(url, text=body, content_hash=content_hash(body), **kw)


async def _links(store, *urls: str) -> list[int | None]:
    return [(await store.get_story_by_url(u)).duplicate_of for u in urls]


async def _id(store, url: str) -> int:
    return (await store.get_story_by_url(url)).id


async def _backlog(store) -> set[int]:
    return {j.id for j in await store.embed_backlog("r", 100)}


async def test_copies_of_a_deleted_story_get_a_root_of_their_own(store):
    await store.upsert_stories([syndicated("https://a.org/1", BODY_X, published_at=NOW - timedelta(days=200))], NOW)
    await store.upsert_stories([syndicated("https://b.org/1", BODY_X), syndicated("https://c.org/1", BODY_X),
                                syndicated("https://d.org/1", BODY_X)], NOW)
    a, b, c, d = [await _id(store, f"https://{h}.org/1") for h in "abcd"]
    assert await _links(store, *(f"https://{h}.org/1" for h in "bcd")) == [a, a, a]
    # Retention takes the original: one copy becomes the story, not every copy.
    assert await store.delete_stories_before(NOW - timedelta(days=100)) == [a]
    assert await _links(store, "https://b.org/1", "https://c.org/1", "https://d.org/1") == [None, b, b]
    assert await _backlog(store) == {b}
    # An operator's DELETE (or one from the sqlite3 shell, foreign keys off) does the same.
    async with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            await conn.execute(text("PRAGMA foreign_keys=OFF"))
        await conn.execute(text("DELETE FROM stories WHERE id = :id"), {"id": b})
    assert await _links(store, "https://c.org/1", "https://d.org/1") == [None, c]
    assert await store.story_ids() == [c]


async def test_a_story_and_its_copies_deleted_in_one_statement(store):
    """Retention deletes in batches, and an original is usually stored before its copies, so
    one DELETE often holds both. On PostgreSQL the re-rooting trigger ran BEFORE each row's
    delete and updated copies the same statement was about to delete: the whole DELETE
    failed ("tuple to be updated was already modified by an operation triggered by the
    current command") and retention removed nothing, every hour."""
    old = NOW - timedelta(days=200)
    await store.upsert_stories([syndicated("https://a.org/1", BODY_X, published_at=old)], NOW)
    await store.upsert_stories([syndicated("https://b.org/1", BODY_X, published_at=old),
                                syndicated("https://c.org/1", BODY_X),
                                syndicated("https://d.org/1", BODY_X)], NOW)
    a, b, c, d = [await _id(store, f"https://{h}.org/1") for h in "abcd"]
    assert await _links(store, *(f"https://{h}.org/1" for h in "bcd")) == [a, a, a]
    # Retention takes the original and one copy: the lowest surviving copy becomes the story.
    assert sorted(await store.delete_stories_before(NOW - timedelta(days=100))) == [a, b]
    assert await _links(store, "https://c.org/1", "https://d.org/1") == [None, c]
    # An operator's DELETE of a story and all its copies at once.
    async with store.engine.begin() as conn:
        await conn.execute(text("DELETE FROM stories WHERE id IN (:c, :d)"), {"c": c, "d": d})
    assert await store.count_stories() == 0


async def test_copy_sites_name_the_sites_that_carried_each_story(store):
    await store.upsert_stories([syndicated("https://a.org/1", BODY_X), syndicated("https://e.org/1", BODY_Z)], NOW)
    await store.upsert_stories([syndicated("https://b.org/1", BODY_X, site="b.org"),
                                syndicated("https://c.org/1", BODY_X, site="c.org")], NOW)
    a, e = await _id(store, "https://a.org/1"), await _id(store, "https://e.org/1")
    assert await store.copy_sites([a, e, 999]) == {a: {"b.org", "c.org"}}
    assert await store.copy_sites([e]) == {}
    # SQLite answers at once too, the same; PostgreSQL has no such reader.
    now = store.copy_sites_now([a, e, 999])
    assert now == ({a: {"b.org", "c.org"}} if store.dialect == "sqlite" else None)


async def test_a_story_whose_body_changes_follows_its_new_body(store):
    await store.upsert_stories([syndicated("https://a.org/1", BODY_X), syndicated("https://e.org/1", BODY_Z)], NOW)
    await store.upsert_stories([syndicated("https://b.org/1", BODY_X)], NOW)
    a, b, e = [await _id(store, f"https://{h}.org/1") for h in "abe"]
    await store.save_vectors([(a, 1, b"\0" * 16), (e, 1, b"\0" * 16)], "r", NOW)
    seq = await store.change_seq()

    # An indexed story given a body another story has (a teaser now carrying the wire text):
    # a copy of it, out of the indexes, its vector gone.
    r = await store.upsert_stories([syndicated("https://e.org/1", BODY_X)], NOW)
    assert r.duplicates == 1 and await _links(store, "https://e.org/1") == [a]
    assert r.relinked == 1 and r.updated_ids == (e,)  # an update, counted as one by `import`
    assert (seq + 1, e, "remove") in await store.changes_since(seq)
    assert (await store.load_vectors([a, e], "r")).keys() == {a}
    assert e not in await store.story_ids()

    # A copy whose body changes is a story again, embedded by the backlog.
    await store.upsert_stories([syndicated("https://b.org/1", BODY_W)], NOW)
    assert await _links(store, "https://b.org/1") == [None] and b in await _backlog(store)

    # The original's body changes: its copies keep their body as a story of their own, and a
    # new copy of that body links to it (a chain through a copy would hide the body).
    await store.upsert_stories([syndicated("https://a.org/1", BODY_Y)], NOW)
    assert await _links(store, "https://a.org/1", "https://e.org/1") == [None, None]
    await store.upsert_stories([syndicated("https://f.org/1", BODY_X)], NOW)
    assert await _links(store, "https://f.org/1") == [e]
    assert set(await store.story_ids()) == {a, b, e}


async def test_only_a_fetch_of_its_own_source_takes_a_copy_for_a_moved_storys_old_url(store):
    """A story's copies at URLs its own source's fetch no longer carries are its old URLs
    (it moved) and follow its edits. Another source's feed carrying the story's link (giving
    the body it lacked) tells nothing of what its source carries: a copy from the story's
    own source (a second section of its site) followed that feed's body instead of keeping
    its own as a story of its own."""
    from aggregator.normalize import content_hash

    def teaser(url: str) -> StoryDraft:  # a summary only: the body hash is the summary's
        return draft(url, summary=BODY_X, content_hash=content_hash(BODY_X), source="a")

    await store.sync_sources([SourceSpec("a", "https://a.org/feed", "news"),
                              SourceSpec("b", "https://b.org/feed", "news")], NOW)
    ids = {c.spec.name: c.id for c in await store.claim_due_sources(NOW, owner="x", lease_s=60)}
    await store.upsert_stories([teaser("https://a.org/1"), teaser("https://a.org/2")], NOW,
                               source_id=ids["a"])
    a1, a2 = await _id(store, "https://a.org/1"), await _id(store, "https://a.org/2")
    assert await _links(store, "https://a.org/2") == [a1]
    await store.upsert_stories([syndicated("https://a.org/1", BODY_Y, source="b")], NOW,
                               source_id=ids["b"])
    story, copy = await store.get_story(a1), await store.get_story(a2)
    assert (story.source, story.text) == ("a", BODY_Y)  # the body it lacked
    assert (copy.duplicate_of, copy.summary, copy.text) == (None, BODY_X, "")


async def test_a_takedown_and_an_indexer_saving_the_same_story_do_not_deadlock(store, db_url):
    """PostgreSQL: an operator's transaction holds the story's row and deletes it (its
    trigger then takes the change log's lock); the indexer meanwhile saves that story's
    vector. Taking the log's lock before the rows deadlocked the two."""
    if store.dialect != "postgresql":
        pytest.skip("row and advisory locks are PostgreSQL's")
    import asyncio

    import asyncpg

    (sid,) = (await store.upsert_stories([draft("https://e.org/1")], NOW)).new_ids
    conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT id FROM stories WHERE id = $1 FOR UPDATE", sid)
        saving = asyncio.create_task(store.save_vectors([(sid, 1, b"\0" * 16)], "r", NOW))
        await asyncio.sleep(0.5)  # the indexer is now waiting on the row (or on the log)
        await conn.execute("DELETE FROM stories WHERE id = $1", sid)
        await tx.commit()
        assert await asyncio.wait_for(saving, 10) == []  # the story went: nothing saved
    finally:
        await conn.close()
    assert await store.load_vectors([sid], "r") == {}


async def test_lists_of_stories_walk_the_time_index_not_the_copies_index(store):
    """An index of every duplicate_of (NULLs too) was taken for "duplicate_of IS NULL", the
    condition of every list of stories, and the whole table was sorted per feed request
    (15 -> 70 ms at 100k stories). Copies alone are indexed now."""
    if store.dialect != "sqlite":
        pytest.skip("the plan checked is SQLite's (PostgreSQL's depends on its statistics)")
    from sqlalchemy.dialects import sqlite

    from aggregator.schema import StoryRow

    q = (select(StoryRow.id).where(StoryRow.duplicate_of.is_(None), StoryRow.id <= 10)
         .order_by(StoryRow.sort_at.desc(), StoryRow.id.desc()).limit(200))
    sql = str(q.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    async with store.engine.connect() as conn:
        plan = " ".join(str(r) for r in (await conn.execute(text("EXPLAIN QUERY PLAN " + sql))).all())
        assert "ix_stories_sort" in plan and "TEMP B-TREE" not in plan, plan
        plan = " ".join(str(r) for r in (await conn.execute(
            text("EXPLAIN QUERY PLAN SELECT min(id) FROM stories WHERE duplicate_of = 5"))).all())
        assert "ix_stories_duplicate_of" in plan, plan


def _migrate_at(url: str, barrier) -> None:
    import asyncio

    from aggregator.store import Store

    async def run() -> None:
        s = Store(url)
        barrier.wait()
        try:
            await s.migrate()
        finally:
            await s.close()

    asyncio.run(run())


def test_processes_started_together_on_a_new_sqlite_file_all_migrate(tmp_path):
    """Two commands started at once on a new data dir ran the same DDL at once: one died
    with "table index_changes already exists" (2 of 4 tries, CLI probe)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    for attempt in range(3):
        url = f"sqlite+aiosqlite:///{tmp_path / f'new{attempt}.db'}"
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_migrate_at, args=(url, barrier)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0], f"attempt {attempt}"


async def test_retention_deletes_in_short_transactions(store, monkeypatch):
    """Retention over a large archive (its first run, say) deleted every old story in one
    transaction: 213,600 stories held SQLite's one write lock 14 s, and every write of the
    collector, indexer and API waited (a million: ~65 s, past the 30 s busy timeout). Each
    batch is its own transaction now; the stories removed and the change log are the same."""
    from sqlalchemy import event

    monkeypatch.setattr(store_module, "RETENTION_BATCH", 3)
    old = NOW - timedelta(days=200)
    await store.upsert_stories([draft(f"https://a.org/{i}", published_at=old - timedelta(hours=i))
                                for i in range(10)], NOW)
    await store.upsert_stories([draft("https://a.org/new1"), draft("https://a.org/new2")], NOW)
    doomed = [await _id(store, f"https://a.org/{i}") for i in range(10)]
    commits: list[int] = []

    def committed(conn) -> None:
        commits.append(1)

    event.listen(store.engine.sync_engine, "commit", committed)
    try:
        removed = await store.delete_stories_before(NOW - timedelta(days=100))
    finally:
        event.remove(store.engine.sync_engine, "commit", committed)
    assert sorted(removed) == sorted(doomed)
    assert len(commits) >= 4  # 3 + 3 + 3 + 1
    assert await store.count_stories() == 2
    async with store.engine.begin() as conn:
        logged = (await conn.execute(text(
            "SELECT story_id FROM index_changes WHERE op = 'remove'"))).scalars().all()
    assert sorted(logged) == sorted(doomed)


async def test_retention_deletes_idle_readers_in_short_transactions(store, monkeypatch):
    """Idle readers went in one transaction: the first run over a publisher's widget ids
    (660k of a million) held SQLite's one write lock ~50 s, past the busy timeout of every
    event sent meanwhile. Batches walk the primary key now; readers kept (preferences, an
    event or a visit since) sort among the idle ones and stay."""
    from sqlalchemy import event

    monkeypatch.setattr(store_module, "RETENTION_BATCH", 3)
    (sid,) = (await store.upsert_stories([draft("https://a.org/1")], NOW)).new_ids
    old, cutoff = NOW - timedelta(days=40), NOW - timedelta(days=30)

    def click(reader, at):
        return EventRecord(event_key(reader, sid, "click", at, None), reader, sid, "click", at)

    idle, kept = [f"r{i}" for i in range(8)], ["r3-prefs", "r5-back", "r6-seen", "r7-ahead"]
    await store.add_events([click(r, old) for r in idle + kept], old)
    await store.set_preferences("r3-prefs", {"mute_topics": ["Budget"]}, old)
    await store.add_events([click("r5-back", NOW)], NOW)
    await store.add_events([click("r6-seen", old - timedelta(hours=1))], NOW)  # late: seen now
    await store.add_events([click("r7-ahead", NOW)], old)  # written by a clock behind: an event since
    await store.delete_events_before(cutoff)  # retention's step before the readers'
    commits: list[int] = []

    def committed(conn) -> None:
        commits.append(1)

    event.listen(store.engine.sync_engine, "commit", committed)
    try:
        assert await store.delete_idle_readers(cutoff) == 8
    finally:
        event.remove(store.engine.sync_engine, "commit", committed)
    assert len(commits) >= 3  # 3 + 3 + 2
    assert [r for r in idle + kept if await store.reader(r)] == kept
    assert await store.delete_idle_readers(cutoff) == 0


async def test_deleting_stories_reads_no_table_scan_per_row(store):
    """PostgreSQL's re-rooting trigger looked for a deleted story's copies by reading the
    primary key in order (`min(id)`) when duplicate_of had no statistics yet (vacuumed, not
    analyzed): the whole table once per deleted row (retention of 8,919 of 17,800 stories:
    104 s). Rows read are counted within the deleting transaction (pg_stat_xact_*)."""
    if store.dialect != "postgresql":
        pytest.skip("SQLite's trigger tests EXISTS on the duplicate_of index (migration 0004)")
    async with store.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO stories (url, original_url, title, summary, text, author, image_url, "
            "collected_at, updated_at, sort_at, site, source, category, content_hash, "
            "embed_version) SELECT 'https://a.org/' || g, 'https://a.org/' || g, 't', '', '', "
            "'', '', now(), now(), now(), 'a.org', 's', 'c', md5(g::text), 1 "
            "FROM generate_series(1, 20000) g"))
    async with store.engine.connect() as conn:
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
            text("VACUUM stories"))
    async with store.engine.begin() as conn:
        await conn.execute(text(
            "DELETE FROM stories WHERE id IN (SELECT id FROM stories ORDER BY id LIMIT 15)"))
        read = (await conn.execute(text(
            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
            "FROM pg_stat_xact_user_tables WHERE relname = 'stories'"))).scalar_one()
    assert read < 1000, read  # before: 299,790 (the table, once per deleted story)


async def test_widget_stats_count_the_period_by_utc_day_site_and_story(store):
    """The widget's report (api.stats): counted in SQL per UTC day (SQLite keeps the times as
    text, PostgreSQL as timestamptz: both cut at UTC midnight), per site, per story; events
    before `since` or from `until` on, and other sites' stories with `site`, are left out."""
    a, b, c = (await store.upsert_stories([
        draft("https://news.example/a", "Alpha", site="news.example"),
        draft("https://news.example/b", "Beta", site="news.example"),
        draft("https://other.example/c", "Gamma", site="other.example")], NOW)).new_ids
    since, until = datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 26, 12, tzinfo=UTC)

    def ev(sid, type_, at, n):
        return [EventRecord(event_key(f"r{n}-{i}", sid, type_, at, None), f"r{n}-{i}", sid, type_, at)
                for i in range(n)]

    late_24 = datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)
    await store.add_events([
        *ev(a, "impression", late_24, 4), *ev(a, "click", late_24, 2),  # the 24th, last second
        *ev(a, "impression", NOW - timedelta(hours=1), 3), *ev(a, "read", NOW - timedelta(hours=1), 1),
        *ev(b, "impression", datetime(2026, 11, 26, tzinfo=UTC), 5),  # the 26th, first second
        *ev(b, "click", NOW - timedelta(hours=2), 3),
        *ev(c, "impression", NOW - timedelta(hours=3), 2), *ev(c, "click", NOW - timedelta(hours=3), 1),
        *ev(a, "click", since - timedelta(seconds=1), 7),  # before the period
        *ev(b, "click", until, 6),  # at its end: not in [since, until)
    ], NOW)

    got = await store.widget_stats(since, until)
    assert got.days == [("2026-11-24", 4, 2, 0), ("2026-11-26", 10, 4, 1)]  # the quiet 25th absent
    assert got.sites == [("news.example", 12, 5), ("other.example", 2, 1)]
    assert [(s.id, s.title, s.site, s.impressions, s.clicks) for s in got.stories] == [
        (b, "Beta", "news.example", 5, 3), (a, "Alpha", "news.example", 7, 2),
        (c, "Gamma", "other.example", 2, 1)]
    assert [s.id for s in (await store.widget_stats(since, until, top=1)).stories] == [b]

    # A site as filters compare it: any case, "www.", a URL of it.
    for spelling in ("news.example", "WWW.News.Example", "https://news.example/x"):
        only = await store.widget_stats(since, until, site=spelling)
        assert only.days == [("2026-11-24", 4, 2, 0), ("2026-11-26", 8, 3, 1)], spelling
        assert only.sites == [("news.example", 12, 5)] and {s.id for s in only.stories} == {a, b}
    nothing = await store.widget_stats(since, until, site="nowhere.example")
    assert nothing.days == nothing.sites == nothing.stories == []


def _events(sid: int, type_: str, at: datetime, n: int, tag: str, page: str | None = None):
    return [EventRecord(event_key(f"{tag}{i}", sid, type_, at, None), f"{tag}{i}", sid, type_, at,
                        page=page) for i in range(n)]


async def test_widget_stats_count_the_pages_the_blocks_were_on(store):
    """Per page the widget's block was under, most impressions first, top 20; events without
    a page (older ones, API clients) and reads are in the days and stories only."""
    a, b, c = (await store.upsert_stories([
        draft("https://news.example/a", "Alpha", site="news.example"),
        draft("https://news.example/b", "Beta", site="news.example"),
        draft("https://other.example/c", "Gamma", site="other.example")], NOW)).new_ids
    since, until = NOW - timedelta(days=1), NOW + timedelta(hours=1)
    home, story = "https://pub.example/", "https://pub.example/2026/story"
    await store.add_events([
        *_events(a, "impression", NOW, 3, "h", home), *_events(b, "impression", NOW, 3, "h", home),
        *_events(a, "click", NOW, 2, "hc", home),
        *_events(a, "impression", NOW, 4, "s", story), *_events(c, "impression", NOW, 4, "s", story),
        *_events(c, "click", NOW, 1, "sc", story), *_events(c, "read", NOW, 5, "sr", story),
        *_events(b, "impression", NOW, 7, "old"),  # no page: not in `pages`
        *_events(b, "click", since - timedelta(seconds=1), 9, "before", home),  # out of the period
        *[e for n in range(21) for e in _events(c, "impression", NOW, 1, f"p{n}-",
                                                f"https://pub.example/p{n}")],
    ], NOW)
    got = await store.widget_stats(since, until)
    assert got.pages[:2] == [(story, 8, 1), (home, 6, 2)]
    assert len(got.pages) == 20 and got.pages[2][1:] == (1, 0)  # 2 of the 21 one-timers cut
    assert got.days == [(NOW.date().isoformat(), 42, 3, 5)]  # the page-less ones counted there
    # Of one site's stories: the pages where they were shown, theirs counted.
    only = await store.widget_stats(since, until, site="news.example")
    assert only.pages == [(home, 6, 2), (story, 4, 0)]


async def test_widget_stats_fold_the_spellings_of_one_site(store):
    """An import keeps a site as written ("www.BBC.co.uk"), the collector as its host
    ("bbc.co.uk"): one site, one row, as the `site` filter takes them; shown as the spelling
    with most clicks."""
    a, b, c = (await store.upsert_stories([
        draft("https://www.bbc.co.uk/a", "Collected", site="bbc.co.uk"),
        draft("https://www.bbc.co.uk/b", "Imported", site="www.BBC.co.uk"),
        draft("https://other.example/c", "Other", site="other.example")], NOW)).new_ids
    await store.add_events([
        *_events(a, "impression", NOW, 5, "a"), *_events(a, "click", NOW, 1, "ac"),
        *_events(b, "impression", NOW, 2, "b"), *_events(b, "click", NOW, 3, "bc"),
        *_events(c, "click", NOW, 2, "cc")], NOW)
    since, until = NOW - timedelta(days=1), NOW + timedelta(hours=1)
    assert (await store.widget_stats(since, until)).sites == [
        ("www.BBC.co.uk", 7, 4), ("other.example", 0, 2)]
    assert (await store.widget_stats(since, until, site="bbc.co.uk")).sites == [
        ("www.BBC.co.uk", 7, 4)]


async def test_site_keys_are_the_stored_sites_as_the_site_filter_compares_them(store):
    """What `--site` and `--exclude-site` can match (the CLI refuses the rest): each stored
    site once, keyed as canonical.site_key keys the filter's value; a story without a site
    gives none."""
    await store.upsert_stories([
        draft("https://www.bbc.co.uk/a", site="bbc.co.uk"),
        draft("https://www.bbc.co.uk/b", site="www.BBC.co.uk"),
        draft("https://m.guardian.example/c", site="m.guardian.example"),
        draft("https://news.example/d", site="Example"),
        draft("https://news.example/e", site="")], NOW)
    assert await store.site_keys() == {"bbc.co.uk", "guardian.example", "example"}


async def test_the_migration_keeps_stored_events_without_a_page(db_url):
    """Migration 0015 adds `events.page`: events stored before keep their counts and have
    none (in the report's days, not its pages); new ones store theirs."""
    import sqlalchemy as sa

    from aggregator.schema import UTCDateTime
    from aggregator.store import Store

    store = Store(db_url)
    try:
        await migrate_to(store, "0014")
        (sid,) = await stored_before(store, ["https://e.org/a"])
        events = sa.table("events", *(sa.column(c) for c in ("event_key", "reader_id", "story_id",
                                                               "type", "dwell_s")),
                          sa.column("at", UTCDateTime()))
        readers = sa.table("readers", sa.column("id"), sa.column("created_at", UTCDateTime()),
                           sa.column("last_seen_at", UTCDateTime()))
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(readers), [{"id": "old", "created_at": NOW, "last_seen_at": NOW}])
            await conn.execute(sa.insert(events), [
                {"event_key": f"k{i}", "reader_id": "old", "story_id": sid, "type": t, "dwell_s": None,
                 "at": NOW} for i, t in enumerate(("impression", "click"))])
        await store.migrate()
        assert sorted((e.type, e.page) for e in await store.reader_events("old")) == [
            ("click", None), ("impression", None)]
        await store.add_events(_events(sid, "impression", NOW, 1, "new", "https://pub.example/x"), NOW)
        got = await store.widget_stats(NOW - timedelta(days=1), NOW + timedelta(hours=1))
        assert got.days == [(NOW.date().isoformat(), 2, 1, 0)]
        assert got.pages == [("https://pub.example/x", 1, 0)]
    finally:
        await store.close()


async def test_the_migration_lets_stored_events_outlive_their_stories(db_url):
    """Migration 0019 drops the events' foreign key to stories (SQLite rebuilds the table):
    the events stored before keep every column and outlive a story deleted after. A
    downgrade deletes those, as the key would have, and puts the key back."""
    from aggregator.store import Store

    store = Store(db_url)
    try:
        await migrate_to(store, "0018")
        page = "https://pub.example/a"
        kept, gone = await stored_before(store, ["https://e.org/kept", "https://e.org/gone"])
        await store.add_events([EventRecord("k1", "r", kept, "read", NOW, 12.5, page),
                                EventRecord("k2", "r", gone, "click", NOW)], NOW)
        await store.migrate()
        await store.take_down(["https://e.org/gone"])
        exported = [e for batch in [b async for b in store.iter_reader_events("r")] for e in batch]
        assert [(e.event_key, e.story_id, e.type, e.at, e.dwell_s, e.page, e.url) for e in exported] == [
            ("k1", kept, "read", NOW, 12.5, page, "https://e.org/kept"), ("k2", gone, "click", NOW, None, None, None)]

        await migrate_to(store, "0018", down=True)
        assert [e.event_key for e in await store.reader_events("r")] == ["k1"]
        async with store.writing() as s:
            await s.execute(text("DELETE FROM stories WHERE id = :id"), {"id": kept})
        assert await store.reader_events("r") == []  # the key's cascade is back
    finally:
        await store.close()


# ------------------------------------------------------------ the report's days counts


async def _event_days(store) -> dict[tuple[str, int, str], tuple[int, int, int]]:
    """`event_days` as {(UTC day, story, page or ""): (impressions, clicks, reads)}."""
    async with store.engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT day, story_id, page, impressions, clicks, reads FROM event_days"))).all()
    return {(str(d), sid, page): (i, c, r) for d, sid, page, i, c, r in rows}


def _counted(events, key) -> dict:
    """[impressions, clicks, reads] per key(event): the straightforward count."""
    out: dict = {}
    for e in events:
        out.setdefault(key(e), [0, 0, 0])[("impression", "click", "read").index(e.type)] += 1
    return out


async def test_the_report_from_the_days_counts_is_the_events_counted_one_by_one(store):
    """`widget_stats` reads the counts `add_events` keeps per (UTC day, story, page), not
    the events. Over random events (six days, midnights and their last microsecond, stories
    of sites spelt two ways, pages or none, the three types, events sent again in later
    batches and twice in one), the report says what counting the distinct events one by one
    says: for whole days, for a period cut within its first and last day, for one site; and
    the counts kept are each (day, story, page)'s."""
    import random

    from aggregator.store import fold_sites

    rnd = random.Random(20261126)
    names = ["news.example", "www.News.Example", "other.example", "third.example"]
    ids = (await store.upsert_stories([
        draft(f"https://s{n}.example/{n}", f"Story {n}", site=names[n % 4]) for n in range(12)],
        NOW)).new_ids
    site_of = {sid: names[n % 4] for n, sid in enumerate(ids)}
    pages = [f"https://pub.example/page-{c}" for c in "abcdef"] + [None]
    midnight = NOW.replace(hour=0)
    events = []
    for n in range(700):
        at = rnd.choice([
            midnight - timedelta(days=rnd.randrange(5), seconds=rnd.randrange(86400)),
            midnight - timedelta(days=rnd.randrange(5)),  # a midnight
            midnight - timedelta(days=rnd.randrange(5), microseconds=1),  # the day's last
            NOW + timedelta(seconds=rnd.randrange(7200)),  # today, after NOW
        ])
        type_ = rnd.choices(("impression", "click", "read"), (10, 3, 1))[0]
        sid, reader = rnd.choice(ids), f"r{rnd.randrange(40)}"
        events.append(EventRecord(event_key(reader, sid, type_, at, f"e{n}"), reader, sid, type_, at,
                                  page=rnd.choice(pages)))
    sent = events + rnd.sample(events, 150)  # sent again
    rnd.shuffle(sent)
    i = 0
    while i < len(sent):
        batch = sent[i:i + rnd.randrange(1, 40)]
        await store.add_events(batch + batch[:rnd.randrange(3)], NOW + timedelta(hours=3))
        i += len(batch)

    def utc_day(e):
        return e.at.astimezone(UTC).date().isoformat()

    assert await _event_days(store) == {
        k: tuple(v) for k, v in _counted(events, lambda e: (utc_day(e), e.story_id, e.page or "")).items()}

    def expected(since, until, site=None):
        of = [e for e in events if since <= e.at < until
              and (site is None or site_of[e.story_id].lower().removeprefix("www.") == site)]
        stories = _counted(of, lambda e: e.story_id)
        shown = {p: n for p, n in _counted([e for e in of if e.page], lambda e: e.page).items()
                 if n[0] or n[1]}
        return (sorted((d, *n) for d, n in _counted(of, utc_day).items()),
                fold_sites({name: [sum(stories[s][k] for s in stories if site_of[s] == name)
                                   for k in (0, 1)]
                            for name in {site_of[s] for s in stories}}),
                sorted(((s, site_of[s], n[0], n[1]) for s, n in stories.items()),
                       key=lambda t: (-t[3], -t[2], t[0])),
                sorted(((p, n[0], n[1]) for p, n in shown.items()), key=lambda t: (-t[1], -t[2], t[0])))

    periods = [
        (midnight - timedelta(days=4), midnight + timedelta(days=1), None),  # whole days
        (midnight - timedelta(days=4), NOW, None),  # as the endpoint asks: today so far
        (midnight - timedelta(days=3, hours=-7, minutes=13), NOW - timedelta(days=1, hours=2), None),
        (midnight - timedelta(days=3, hours=-7, minutes=13), NOW, "news.example"),
    ]
    for since, until, site in periods:
        got = await store.widget_stats(since, until, site=site, top=100)
        days, sites, stories, shown = expected(since, until, site)
        assert got.days == days, (since, until, site)
        assert got.sites == sites, (since, until, site)
        assert [(s.id, s.site, s.impressions, s.clicks) for s in got.stories] == stories
        assert got.pages == shown, (since, until, site)


async def test_an_event_sent_again_is_counted_once(store):
    """The widget resends a batch it got no answer for, and a batch may hold one event
    twice: the day's counts take the events `add_events` stored, not the ones it was sent."""
    (sid,) = (await store.upsert_stories([draft("https://e.org/a")], NOW)).new_ids
    page = "https://pub.example/a"
    batch = [*_events(sid, "impression", NOW, 3, "i", page), *_events(sid, "click", NOW, 1, "c", page)]
    assert await store.add_events(batch, NOW) == 4
    assert await store.add_events([*batch, batch[0]], NOW) == 0
    new = _events(sid, "impression", NOW, 1, "new", page)
    assert await store.add_events([*new, *new, batch[1]], NOW) == 1
    assert await _event_days(store) == {(NOW.date().isoformat(), sid, page): (4, 1, 0)}
    got = await store.widget_stats(NOW - timedelta(days=1), NOW + timedelta(hours=1))
    assert got.days == [(NOW.date().isoformat(), 4, 1, 0)] and got.pages == [(page, 4, 1)]


async def test_writers_at_once_store_each_event_once_and_count_it_once(db_url):
    """Several processes write events at the same moment (`serve --workers N`, API replicas
    on one database), each with its own connections. Every round, a new reader's beacon
    reaches two writers twice (the same two event keys in both batches, in either order)
    with one event more each, and two other new readers' events reach the other two; all of
    them about the round's new story and one story every round shares. Read-then-write, two
    writers both inserted the new reader, one event key or the new story's counts row (one
    batch failed), or both added to the shared story's counts as they had read them (one's
    lost). Written as upserts, nothing fails and each event is stored and counted once."""
    import random

    from aggregator.store import Store

    rnd = random.Random(20261207)
    writers = [Store(db_url) for _ in range(4)]
    try:
        await writers[0].migrate()
        # A connection open in each writer's pool, so their first batches start together.
        await asyncio.gather(*(w.existing_ids([1]) for w in writers))
        (every,) = (await writers[0].upsert_stories([draft("https://e.org/every")], NOW)).new_ids
        page = "https://pub.example/p"
        distinct: list[EventRecord] = []
        for n in range(40):
            (new,) = (await writers[0].upsert_stories([draft(f"https://e.org/{n}")], NOW)).new_ids

            def ev(reader, sid, type_, tag):
                return EventRecord(event_key(reader, sid, type_, NOW, tag), reader, sid, type_, NOW,
                                   page=page)

            beacon = [ev(f"r{n}", new, "impression", "s1"), ev(f"r{n}", every, "click", "s2")]
            own = [[ev(f"r{n}", new, "read", "w0")], [ev(f"r{n}", every, "read", "w1")],
                   [ev(f"r{n}-2", new, "impression", "i"), ev(f"r{n}-2", every, "click", "c")],
                   [ev(f"r{n}-3", every, "impression", "i"), ev(f"r{n}-3", new, "click", "c")]]
            batches = [rnd.sample(beacon + own[0], 3), rnd.sample(beacon + own[1], 3), own[2], own[3]]
            stored = await asyncio.gather(*(w.add_events(batch, NOW)
                                            for w, batch in zip(writers, batches, strict=True)))
            fresh = beacon + [e for mine in own for e in mine]
            assert sum(stored) == len(fresh), (n, stored)
            distinct += fresh

        store = writers[0]
        by_story = _counted(distinct, lambda e: e.story_id)
        assert await store.story_stats(by_story) == {sid: tuple(c) for sid, c in by_story.items()}
        assert await _event_days(store) == {
            (NOW.date().isoformat(), sid, page): tuple(c) for sid, c in by_story.items()}
        for reader in {e.reader for e in distinct}:
            assert sorted(e.event_key for e in await store.reader_events(reader)) == sorted(
                e.event_key for e in distinct if e.reader == reader)
    finally:
        for w in writers:
            await w.close()


async def test_a_new_readers_settings_and_first_events_written_at_once_both_land(db_url):
    """A reader's first settings (`PUT` preferences) and first events, written by two
    processes at the same moment: both looked the reader up, found none and inserted it, and
    one failed on the duplicate reader."""
    from aggregator.store import Store

    writers = [Store(db_url) for _ in range(2)]
    try:
        await writers[0].migrate()
        await asyncio.gather(*(w.existing_ids([1]) for w in writers))
        (sid,) = (await writers[0].upsert_stories([draft("https://e.org/prefs")], NOW)).new_ids
        for n in range(30):
            reader = f"new{n}"
            event = EventRecord(event_key(reader, sid, "click", NOW, "k"), reader, sid, "click", NOW)
            settings = {"follow_sources": [f"s{n}"]}

            async def later(delay: float, reader: str, settings: dict):
                # Started a moment after the events: their writer checks the story and the
                # reader's deletion first, so set at once the settings were usually in first.
                await asyncio.sleep(delay)
                await writers[0].set_preferences(reader, settings, NOW)

            await asyncio.gather(later(n % 6 * 0.001, reader, settings),
                                 writers[1].add_events([event], NOW))
            assert (await writers[0].reader(reader))["preferences"] == settings, n
            assert [e.event_key for e in await writers[0].reader_events(reader)] == [event.event_key]
        # Settings given again replace the first ones.
        await writers[1].set_preferences("new0", {"mute_topics": ["x"]}, NOW)
        assert (await writers[0].reader("new0"))["preferences"] == {"mute_topics": ["x"]}
    finally:
        for w in writers:
            await w.close()


async def test_the_migration_counts_the_events_stored_before(db_url):
    """Migration 0016 counts the events already stored into `event_days`, each on its UTC
    day as the report cut them: on PostgreSQL whatever the session's time zone (here
    UTC+14, where the 24th's last microsecond is the 25th's afternoon). New events then add
    to those rows."""
    import sqlalchemy as sa

    from aggregator.schema import UTCDateTime
    from aggregator.store import Store

    store = Store(db_url)
    try:
        await migrate_to(store, "0015")
        if store.dialect == "postgresql":
            async with store.engine.begin() as conn:
                await conn.execute(text(
                    f'ALTER DATABASE "{store.engine.url.database}" SET TimeZone TO \'Pacific/Kiritimati\''))
            await store.engine.dispose()  # new connections take the zone
        a, b = await stored_before(store, ["https://e.org/a", "https://e.org/b"])
        events = sa.table("events", *(sa.column(c) for c in ("event_key", "reader_id", "story_id",
                                                               "type", "dwell_s", "page")),
                          sa.column("at", UTCDateTime()))
        readers = sa.table("readers", sa.column("id"), sa.column("created_at", UTCDateTime()),
                           sa.column("last_seen_at", UTCDateTime()))
        last = datetime(2026, 11, 24, 23, 59, 59, 999999, tzinfo=UTC)
        first = datetime(2026, 11, 25, tzinfo=UTC)
        page = "https://pub.example/a"
        old = [(a, "impression", last, page), (a, "click", last, page), (a, "impression", first, page),
               (a, "impression", first, None), (a, "read", first, None), (b, "impression", first, page)]
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(readers), [{"id": "old", "created_at": NOW, "last_seen_at": NOW}])
            await conn.execute(sa.insert(events), [
                {"event_key": f"k{n}", "reader_id": "old", "story_id": sid, "type": t, "dwell_s": None,
                 "at": at, "page": p} for n, (sid, t, at, p) in enumerate(old)])
        await store.migrate()
        assert await _event_days(store) == {
            ("2026-11-24", a, page): (1, 1, 0), ("2026-11-25", a, page): (1, 0, 0),
            ("2026-11-25", a, ""): (1, 0, 1), ("2026-11-25", b, page): (1, 0, 0)}
        await store.add_events(_events(a, "click", first, 1, "new", page), NOW)
        got = await store.widget_stats(datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 26, tzinfo=UTC))
        assert got.days == [("2026-11-24", 1, 1, 0), ("2026-11-25", 3, 1, 1)]
        assert got.pages == [(page, 3, 2)]
    finally:
        await store.close()


async def test_a_deleted_story_takes_its_days_counts_along(store):
    """A takedown (or retention) deletes stories: their rows of `event_days` go with them
    (a foreign key), as their events do."""
    a, b = (await store.upsert_stories([draft("https://e.org/a"), draft("https://e.org/b")], NOW)).new_ids
    await store.add_events([*_events(a, "impression", NOW, 2, "a", "https://pub.example/x"),
                            *_events(b, "click", NOW, 1, "b")], NOW)
    assert {sid for _, sid, _ in await _event_days(store)} == {a, b}
    assert await store.take_down(["https://e.org/a"], reason="test", now=NOW) == [a]
    assert await _event_days(store) == {(NOW.date().isoformat(), b, ""): (0, 1, 0)}


async def test_a_forgotten_readers_counts_stay_in_the_report(store):
    """Forgetting a reader deletes their events; the report's counts hold no reader and
    keep their share: a privacy request does not rewrite the publisher's past traffic."""
    (sid,) = (await store.upsert_stories([draft("https://e.org/a")], NOW)).new_ids
    await store.add_events([*_events(sid, "impression", NOW, 3, "keep"),
                            *_events(sid, "click", NOW, 1, "forget")], NOW)
    assert await store.delete_reader("forget0", NOW)
    assert await store.reader_events("forget0") == []
    got = await store.widget_stats(NOW - timedelta(days=1), NOW + timedelta(hours=1))
    assert got.days == [(NOW.date().isoformat(), 3, 1, 0)]
    assert [(s.id, s.impressions, s.clicks) for s in got.stories] == [(sid, 3, 1)]


async def test_a_page_too_long_for_an_index_entry_is_counted_under_its_start(store):
    """A page that percent-encoding made long (2,000 characters of another script: 12k) is
    counted under its first EVENT_DAY_PAGE_CHARS characters: whole, it was too long for
    PostgreSQL's index of `event_days` and failed its batch, every reader's events with it."""
    from aggregator.canonical import canonical_url
    from aggregator.schema import EVENT_DAY_PAGE_CHARS

    (sid,) = (await store.upsert_stories([draft("https://e.org/a")], NOW)).new_ids
    long = canonical_url("https://pub.example/" + "ж" * 2000)
    assert len(long) > 10_000
    assert await store.add_events([*_events(sid, "impression", NOW, 2, "long", long),
                                   *_events(sid, "click", NOW, 1, "short", "https://pub.example/b")],
                                  NOW) == 3
    got = await store.widget_stats(NOW - timedelta(days=1), NOW + timedelta(hours=1))
    assert got.pages == [(long[:EVENT_DAY_PAGE_CHARS], 2, 0), ("https://pub.example/b", 0, 1)]


async def test_the_top_pages_are_read_in_page_order_on_sqlite(store):
    """SQLite, without statistics (Tidings runs no ANALYZE), took the key's range of days
    for the top pages and sorted every row of the period by page (90 days of a widget under
    100k page views a day, 3.75M rows: 4.1-4.8 s); they are read from ix_event_days_page, in
    page order (0.9 s). The plan of the statement the report runs."""
    if store.dialect != "sqlite":
        pytest.skip("PostgreSQL hashes the groups; the index is SQLite's")
    from sqlalchemy import event

    ran = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        if "GROUP BY event_days.page" in statement:
            ran.append((statement, parameters))

    event.listen(store.engine.sync_engine, "before_cursor_execute", grab)
    try:
        await store.widget_stats(NOW - timedelta(days=89, hours=12), NOW)
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", grab)
    ((statement, parameters),) = ran
    async with store.engine.connect() as conn:
        plan = " ".join(str(r) for r in (await conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + statement, parameters)).all())
    assert "ix_event_days_page" in plan and "TEMP B-TREE FOR GROUP BY" not in plan, plan


def test_libpq_keepalive_options_are_read_from_the_url():
    from sqlalchemy.engine import make_url

    from aggregator.store import Keepalive, url_keepalive

    url, keepalive = url_keepalive(make_url("postgresql+asyncpg://h/db?sslmode=require"))
    assert keepalive == Keepalive() and dict(url.query) == {"sslmode": "require"}  # on by default
    url, keepalive = url_keepalive(make_url(
        "postgresql+asyncpg://h/db?keepalives=1&keepalives_idle=30&keepalives_count=3&tcp_user_timeout=0"))
    assert keepalive == Keepalive(idle_s=30, count=3, user_timeout_ms=0) and not url.query
    assert url_keepalive(make_url("postgresql+asyncpg://h/db?keepalives=0&keepalives_idle=5"))[1] is None


@pytest.mark.parametrize("option", ["keepalives_idle=1m", "keepalives_count=-1"])
def test_a_bad_keepalive_option_is_refused_in_one_line(option):
    from aggregator.errors import StoreError
    from aggregator.store import Store

    with pytest.raises(StoreError) as info:
        Store(f"postgresql+asyncpg://tid:s3cret@db/news?{option}")
    (line,) = str(info.value).splitlines()
    assert option in line and "s3cret" not in line, line


def _socket_options(store_conn) -> list[int]:
    import socket

    sock = store_conn.driver_connection._transport.get_extra_info("socket")
    return [sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            *(sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name))
              for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT"))]


@pytest.mark.postgres
@pytest.mark.skipif(not hasattr(__import__("socket"), "TCP_USER_TIMEOUT"), reason="Linux socket options")
async def test_postgresql_connections_have_tcp_keepalives(pg_url):
    """asyncpg turns no keepalive on (libpq does): a pooled connection whose peer went away
    without a word (a network change, a NAT that forgot it) held the job or command that
    queried on it for ever. Each connection is now probed, and dropped ~2 min after its peer
    stops answering; a URL's libpq keepalive options, refused before as unknown keywords of
    asyncpg's connect(), tune or turn them off."""
    from aggregator.store import (
        KEEPALIVE_COUNT,
        KEEPALIVE_IDLE_S,
        KEEPALIVE_INTERVAL_S,
        TCP_USER_TIMEOUT_MS,
        Store,
    )

    for query, expected in (
            ("", [1, KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT, TCP_USER_TIMEOUT_MS]),
            ("?keepalives_idle=30&keepalives_interval=5&tcp_user_timeout=9000",
             [1, 30, 5, KEEPALIVE_COUNT, 9000])):
        s = Store(pg_url + query)
        try:
            await s.migrate()  # the options in the URL are taken, not refused
            async with s.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                assert _socket_options(await conn.get_raw_connection()) == expected, query
        finally:
            await s.close()
    s = Store(pg_url + "?keepalives=0")
    try:
        async with s.engine.connect() as conn:
            assert _socket_options(await conn.get_raw_connection())[0] == 0
    finally:
        await s.close()


async def test_source_sections_are_the_files_sources_with_their_categories(store):
    """What a reader's follows are checked against besides the stories (api/readers.py): a
    source in the file is known before its first story, a removed one no longer is."""
    await store.sync_sources([SourceSpec("wire", "https://e.org/feed", "politics"),
                              SourceSpec("arts-desk", "https://e.org/arts", "Culture", enabled=False)], NOW)
    assert sorted(await store.source_sections()) == [("arts-desk", "Culture"), ("wire", "politics")]
    await store.sync_sources([SourceSpec("wire", "https://e.org/feed", "politics")], NOW)
    assert await store.source_sections() == [("wire", "politics")]


async def test_leases_hold_between_machines_whose_clocks_differ(pg_url):
    """Leases are written and compared on the database's clock. On each process's own, a
    machine 10 minutes ahead (no NTP, a VM resumed) took the others' live claims for run
    out: it fetched their sources and embedded their stories a second time, ran retention
    beside them, and took the leading indexer for dead (two recipes then re-embed each
    other's stories for ever)."""
    from aggregator.store import Store, utcnow

    right = Store(pg_url)
    await right.migrate()
    ahead = Store(pg_url, clock=lambda: utcnow() + timedelta(minutes=10))
    behind = Store(pg_url, clock=lambda: utcnow() - timedelta(minutes=10))
    try:
        await right.sync_sources([SourceSpec("a", "https://a.org/feed", "politics")], utcnow())
        await right.upsert_stories([draft("https://example.org/a")], utcnow())
        assert len(await right.claim_due_sources(utcnow(), owner="right", lease_s=300)) == 1
        assert len(await right.claim_embed_backlog("r", 10, lease_s=300)) == 1
        assert await right.claim_job("retention", owner="right", every_s=3600, lease_s=300,
                                     now=utcnow())
        seat = await right.register_embedder("right:1", "r", lease_s=60)

        assert await ahead.claim_due_sources(ahead.clock(), owner="ahead", lease_s=300) == []
        assert await ahead.claim_embed_backlog("r", 10, lease_s=300) == []
        assert not await ahead.claim_job("retention", owner="ahead", every_s=3600, lease_s=300,
                                         now=ahead.clock())
        assert (await ahead.leading_embedder()).id == seat.id
        # And a machine 10 minutes behind: its live registration is not taken for dead.
        mine = await behind.register_embedder("behind:2", "r2", lease_s=60)
        assert [s.id for s in await right.live_embedders()] == [seat.id, mine.id]
    finally:
        for s in (right, ahead, behind):
            await s.close()


async def test_a_readers_events_are_found_by_type_and_time_without_reading_them_all(store):
    """A feed page reads a reader's clicks and reads, impressions and read stories within a
    window: on `reader_id` alone each query read and sorted every event of the reader (35-55
    ms each for a reader with 60,000 events on SQLite). Migration 0018's index answers them
    by (reader, type, time), the read stories from the index alone."""
    import sqlalchemy as sa

    async with store.engine.connect() as conn:
        indexes = await conn.run_sync(lambda c: sa.inspect(c).get_indexes("events"))
        found = {ix["name"]: ix["column_names"] for ix in indexes}
        assert found.get("ix_events_reader_type_at") == ["reader_id", "type", "at", "story_id"]
        assert "ix_events_reader_id" not in found  # its first column covers it
        if store.dialect == "sqlite":
            plan = (await conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT story_id FROM events WHERE reader_id = 'r' AND "
                "type IN ('click', 'read') AND at >= '2026-01-01' AND at <= '2026-02-01' "
                "GROUP BY story_id ORDER BY max(at) DESC LIMIT 10")).all()
            assert any("COVERING INDEX ix_events_reader_type_at" in str(row[-1]) for row in plan)
    (sid,) = (await store.upsert_stories([draft("https://example.org/ev")], NOW)).new_ids
    await store.add_events([EventRecord(f"k{i}", "r", sid, t, NOW + timedelta(minutes=i))
                            for i, t in enumerate(["impression", "click", "read"])], NOW)
    assert [e.type for e in await store.reader_events("r", types=("click", "read"))] == ["read", "click"]
    assert await store.reader_story_ids("r", since=NOW) == {sid}


async def test_stored_selectors_read_across_versions_of_a_cluster(store):
    """Machines of one database upgrade one at a time. The rows stored every selector field,
    so a version that did not know a newer field (`next`, `timezone`) failed on every HTML
    source (`Selectors(**row)`), and a newer version read an older version's row as an edit
    (validators dropped, fetched again). Defaults are now left out, unknown fields ignored."""
    from aggregator.model import Selectors
    from aggregator.schema import SourceRow

    sel = Selectors(item="li", link="a", date="time")
    specs = [SourceSpec("listing", "https://l.org/news", "politics", kind="html", selectors=sel)]
    await store.sync_sources(specs, NOW)
    async with store.session() as s:
        stored = await s.scalar(select(SourceRow.selectors).where(SourceRow.name == "listing"))
    assert stored == {"item": "li", "link": "a", "date": "time"}  # what an older version reads
    for written in ({"item": "li", "link": "a", "title": "", "summary": "", "date": "time",
                     "image": "", "pages": 1},  # as the version before wrote every field
                    {"item": "li", "link": "a", "date": "time", "later_field": "x"}):  # a newer one
        async with store.writing() as s:
            await s.execute(SourceRow.__table__.update().where(SourceRow.name == "listing")
                            .values(selectors=written))
        assert (await store.sync_sources(specs, NOW + timedelta(hours=1)))["changed"] == 0
        (due,) = await store.claim_due_sources(NOW + timedelta(days=1), owner="t", lease_s=60,
                                               name="listing")
        assert due.spec.selectors == sel
        await store.release_source_claims("t")


async def test_two_collectors_storing_one_move_at_once_move_the_story_once(db_url):
    """A source's lease ran out mid-fetch and a second collector fetched it too: both store
    the round that moved a story (its item id at a new URL) at the same moment, each with
    its own connections. The story takes the new URL once and its old URL stays one copy."""
    from aggregator.normalize import content_hash
    from aggregator.store import Store

    writers = [Store(db_url) for _ in range(2)]
    try:
        await writers[0].migrate()
        store = writers[0]
        await store.sync_sources([SourceSpec("a", "https://a.org/feed", "news")], NOW)
        (state,) = await store.claim_due_sources(NOW, owner="x", lease_s=60)
        await asyncio.gather(*(w.existing_ids([1]) for w in writers))
        for n in range(8):
            old, new = f"https://a.org/{n}/strike", f"https://a.org/{n}/strike-ends"
            body = f"{BODY_X} round{n}"
            first = draft(old, source="a", text=body, content_hash=content_hash(body), item_id=f"p{n}")
            (sid,) = (await store.upsert_stories([first], NOW, source_id=state.id, carried=[old])).new_ids
            moved = replace(first, url=new, title="Strike ends")
            await asyncio.gather(*(w.upsert_stories([moved], NOW, source_id=state.id, carried=[new])
                                   for w in writers))
            at_new, at_old = await store.get_story_by_url(new), await store.get_story_by_url(old)
            assert (at_new.id, at_new.duplicate_of, at_new.title) == (sid, None, "Strike ends"), n
            assert at_old.duplicate_of == sid, n
        assert await store.count_stories() == 16
    finally:
        for w in writers:
            await w.close()


async def test_retention_keeps_a_moved_storys_old_url_while_the_story_stays(store):
    """A story moved to a new URL keeps its old one as a copy, dated as the story then was.
    The publisher dates the story anew later (a live story updated): retention dropped the
    old URL by its own date while the story stayed, and the widget on the old page, the
    events naming it and blocks asked by it no longer found the story. A corrected time now
    keeps the story's place too (its `sort_at`), so the two go together; a copy dated before
    its story (a wire story another site dates by its first publication) still stays while
    the story does."""
    from aggregator.normalize import content_hash

    await store.sync_sources([SourceSpec("a", "https://a.org/feed", "news")], NOW)
    (state,) = await store.claim_due_sources(NOW, owner="x", lease_s=60)
    old, new = "https://a.org/strike", "https://a.org/strike-ends"
    first = draft(old, source="a", text=BODY_X, content_hash=content_hash(BODY_X), item_id="p1",
                  published_at=NOW - timedelta(days=10))

    async def round_(d: StoryDraft) -> None:
        await store.upsert_stories([d], NOW, source_id=state.id, carried=[d.url])

    await round_(first)
    sid = await _id(store, old)
    await round_(replace(first, url=new, title="Strike ends"))
    await round_(replace(first, url=new, title="Strike ends", published_at=NOW - timedelta(days=1)))
    assert await store.count_stories_before(NOW - timedelta(days=11)) == 0
    assert await store.count_stories_before(NOW - timedelta(days=5)) == 2  # the story and its old URL

    body = f"{BODY_X} wire"
    (root,) = (await store.upsert_stories([draft("https://b.org/wire", text=body, content_hash=content_hash(body),
                                                 published_at=NOW - timedelta(days=1))], NOW)).new_ids
    await store.upsert_stories([draft("https://c.org/wire", site="c.org", text=body, content_hash=content_hash(body),
                                      published_at=NOW - timedelta(days=10))], NOW)
    assert (await store.get_story_by_url("https://c.org/wire")).duplicate_of == root
    cutoff, old_id = NOW - timedelta(days=5), await _id(store, old)
    assert await store.count_stories_before(cutoff) == 2
    assert sorted(await store.delete_stories_before(cutoff)) == sorted([sid, old_id])
    assert (await store.get_story_by_url("https://c.org/wire")).duplicate_of == root
