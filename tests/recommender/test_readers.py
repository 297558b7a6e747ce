"""The feed service's crowd cache: recounts of the event log stay a bounded share of the time."""

from __future__ import annotations

import asyncio

import pytest

from recommender import readers
from recommender.readers import CROWD_SHARE, FeedService, crowd_due, unknown_follows


def test_a_crowd_is_recounted_after_its_ttl_or_its_cost_whichever_is_later():
    assert not crowd_due(age_s=9.0, ttl_s=10.0, last_cost_s=0.2)
    assert crowd_due(age_s=10.0, ttl_s=10.0, last_cost_s=0.2)
    # A recount that took 3 s waits 30 s: recounts take at most a tenth of the time.
    assert not crowd_due(age_s=29.0, ttl_s=10.0, last_cost_s=3.0, share=0.1)
    assert crowd_due(age_s=30.0, ttl_s=10.0, last_cost_s=3.0, share=0.1)


async def test_the_service_waits_longer_after_a_costly_recount(sqlite_url, monkeypatch):
    from aggregator.store import Store

    store = Store(sqlite_url)
    await store.migrate()
    clock = [1000.0]
    monkeypatch.setattr(readers.time, "monotonic", lambda: clock[0])
    reads = []
    real = store.recent_events

    async def slow_read(*args, **kwargs):  # a log that takes 2 s to read
        reads.append(clock[0])
        clock[0] += 2.0
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, "recent_events", slow_read)
    svc = FeedService(store, corpus=None, crowd_ttl_s=1.0)
    try:
        await svc.crowd()
        assert len(reads) == 1
        clock[0] += 2.0 / CROWD_SHARE - 1.0  # past the TTL, not past ten times the cost
        await svc.crowd()
        await asyncio.sleep(0)
        assert len(reads) == 1
        clock[0] += 1.0
        await svc.crowd()  # served stale while the recount runs in the background
        await svc._refreshing
        assert len(reads) == 2
    finally:
        await store.close()


@pytest.mark.parametrize("share", [0.1, 0.25])
def test_the_recount_wait_grows_with_its_cost(share):
    waits = [next(a / 10 for a in range(0, 10_000) if crowd_due(a / 10, 10.0, cost, share))
             for cost in (0.5, 2.0, 4.0)]
    assert waits == sorted(waits) and waits[0] == 10.0 and waits[-1] == pytest.approx(4.0 / share)


def test_a_feed_snapshot_is_the_whole_second_at_or_after_now():
    from datetime import UTC, datetime

    from recommender.readers import snapshot_time

    t = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
    assert snapshot_time(t) == t
    assert snapshot_time(t.replace(microsecond=1)) == t.replace(second=1)
    assert snapshot_time(t.replace(second=59, microsecond=999_999)) == t.replace(minute=1)


async def test_a_cold_feed_reads_the_sections_with_the_newest_stories(sqlite_url, tmp_path):
    """With more categories than SECTIONS_READ, the heads were read for the first 24 names in
    alphabetical order: the later ones were never read however busy, the early ones however
    quiet. Spellings of one section ("C00", "c00") are one section, with the newer time."""
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from aggregator.model import StoryDraft
    from aggregator.names import name_key
    from aggregator.store import Store
    from recommender.corpus import MetaTable, meta_of
    from recommender.readers import SECTION_HEAD, SECTIONS_READ

    now = datetime(2026, 12, 5, 12, tzinfo=UTC)
    drafts = [StoryDraft(url=f"https://e.org/{i}/{j}", title=f"Story {j} of section {i}",
                         published_at=now - timedelta(hours=100 - i, minutes=j),
                         site="e.org", source="wire", category=f"c{i:02d}")
              for i in range(SECTIONS_READ + 6) for j in range(2)]
    # The section first in alphabetical order is the quietest, but for one story of another
    # spelling, the newest of all.
    drafts.append(StoryDraft(url="https://e.org/0/new", title="Newest", published_at=now,
                             site="e.org", source="wire", category="C00"))
    store = Store(sqlite_url)
    await store.migrate()
    table = MetaTable(tmp_path)
    try:
        ids = (await store.upsert_stories(drafts, now)).new_ids
        table.put_many(meta_of(s) for s in (await store.get_stories(ids)).values())
        svc = FeedService(store, corpus=SimpleNamespace(meta=table))
        newest = await store.newest_story_id()
        heads = await svc._section_heads(newest)
        read = {name_key(s.category) for s in (await store.get_stories(heads)).values()}
        assert read == {"c00", *(f"c{i:02d}" for i in range(7, SECTIONS_READ + 6))}
        assert len(heads) == len(set(heads)) == 3 + 23 * 2 <= SECTIONS_READ * SECTION_HEAD
        assert await svc._section_heads(newest) is heads  # kept for the snapshot
    finally:
        table.close()
        await store.close()


async def test_a_first_count_slower_than_the_request_limit_goes_on_for_the_next_requests(sqlite_url):
    """The first crowd count ran in the feed request, under its database limit
    (api.database_timeout_s): an event log slower to read than the limit was cut at every
    request, counted again by the next, and no feed was ever served. The requests that wait
    are 503s (DatabaseTimeout); the one count goes on, and the next request is served by it."""
    from aggregator.errors import DatabaseTimeout
    from aggregator.store import Store, calls_limited, limit_calls

    reads, gate = [], asyncio.Event()

    @limit_calls
    class SlowLog(Store):  # the real Store, its event log slow to read (a held gate)
        async def recent_events(self, *args, **kwargs):
            reads.append(1)
            await gate.wait()
            return await super().recent_events(*args, **kwargs)

    store = SlowLog(sqlite_url)
    await store.migrate()
    svc = FeedService(store, corpus=None)
    try:
        with calls_limited(0.05):
            for _ in range(2):
                with pytest.raises(DatabaseTimeout):
                    await svc.crowd()
        gate.set()
        with calls_limited(5.0):
            crowd = await svc.crowd()
        assert crowd is not None and len(reads) == 1
    finally:
        await store.close()


def test_unknown_follows_are_the_follows_no_known_name_matches():
    prefs = {"follow_categories": ["Politics", "poltics", "Straße"], "follow_sources": ["BBC-News"],
             "mute_categories": ["nowhere"], "mute_sources": ["no-one"], "mute_topics": ["x y"]}
    got = unknown_follows(prefs, categories=["politics", "STRASSE"], sources=["bbc-news"])
    assert got == {"follow_categories": ["poltics"]}  # as given; mutes are not checked
    assert unknown_follows(prefs, categories=[], sources=[]) == {
        "follow_categories": ["Politics", "poltics", "Straße"], "follow_sources": ["BBC-News"]}
    assert unknown_follows({"follow_categories": []}, categories=[], sources=[]) == {}


async def _wire_on_three_sites(store, table, now, ages):
    """A wire story stored apart on three sites (its headline as each writes it, its own text,
    so not one story: vectors at cosine ~0.99) and another story, dated `ages` ago, in the
    store, the meta table and an index. Their ids, and the index."""
    import numpy as np

    from aggregator.model import StoryDraft
    from recommender.corpus import meta_of
    from recommender.vindex import BruteForceIndex

    titles = ["Errors doomed first Dome sale", "Errors doomed first Dome sale | Reuters",
              "'Errors' doomed first Dome sale", "Debate needed on donations cap"]
    drafts = [StoryDraft(url=f"https://site{j}.org/story", title=t, text=f"Body as site {j} wrote it.",
                         published_at=now - age, site=f"site{j}.org", source=f"s{j}",
                         category="politics") for j, (t, age) in enumerate(zip(titles, ages, strict=True))]
    rng = np.random.default_rng(1)
    wire = rng.standard_normal(16)
    vecs = np.stack([wire + 0.01 * rng.standard_normal(16) for _ in range(3)] + [rng.standard_normal(16)])
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    ids = (await store.upsert_stories(drafts, now)).new_ids
    stories = await store.get_stories(ids)
    assert len(ids) == 4 and not any(s.duplicate_of for s in stories.values())
    table.put_many(meta_of(s) for s in stories.values())
    index = BruteForceIndex(16)
    index.add(np.asarray(ids, dtype=np.int64), vecs)
    return ids, index


async def test_the_recount_counts_the_readers_of_a_storys_copies_on_other_sites_once(sqlite_url, tmp_path):
    """A wire story stored apart on three sites: 15 readers a site, and 5 who read it on two
    sites, are 50 readers of it, which each copy trends with; the story a list shows trended
    with the 20 of its own site, and summed copy by copy with 55, above a story 52 had read."""
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from aggregator.store import EventRecord, Store
    from recommender.corpus import MetaTable

    now = datetime(2026, 12, 5, 12, tzinfo=UTC)
    store = Store(sqlite_url)
    await store.migrate()
    table = MetaTable(tmp_path)
    try:
        ids, index = await _wire_on_three_sites(store, table, now, [timedelta(hours=2)] * 4)
        at = now - timedelta(minutes=1)
        events = [EventRecord(f"{j}-{n}", f"r{j}-{n}", ids[j], "read", at) for j in range(3) for n in range(15)]
        events += [EventRecord(f"both-{j}-{n}", f"both-{n}", ids[j], "read", at) for j in (0, 1) for n in range(5)]
        events += [EventRecord(f"o-{n}", f"o-{n}", ids[3], "read", at) for n in range(52)]
        await store.add_events(events, now)
        svc = FeedService(store, corpus=SimpleNamespace(meta=table, vindex=index, dim=16),
                          clock=lambda: now)
        crowd = await svc.crowd()
        decay = 0.5 ** (60 / (6 * 3600))
        assert [crowd.trending[i] for i in ids] == pytest.approx([50 * decay] * 3 + [52 * decay])
        items = await svc.trending(k=4)
        assert [it.id for _, it in items][0] == ids[3] and len(items) == 2  # the story once
    finally:
        table.close()
        await store.close()


async def test_the_head_of_trending_holds_the_copy_a_list_shows(sqlite_url, tmp_path):
    """A wire story stored apart on three sites, collected 3 h, 1 h and 10 min ago, the newest
    from a source the operator weighted 0: each copy trended with the story's readers, and all
    three sat in the head of trending (three of its places, and three times the story in the
    median of the new-story credit). The head holds the copy the trending list shows: the
    newest a list may show."""
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from aggregator.store import EventRecord, Store
    from recommender.corpus import MetaTable

    now = datetime(2026, 12, 5, 12, tzinfo=UTC)
    ages = [timedelta(hours=3), timedelta(hours=1), timedelta(minutes=10), timedelta(hours=2)]
    store = Store(sqlite_url)
    await store.migrate()
    table = MetaTable(tmp_path)
    try:
        ids, index = await _wire_on_three_sites(store, table, now, ages)
        at = now - timedelta(minutes=1)
        events = [EventRecord(f"{j}-{n}", f"r{j}-{n}", ids[j], "read", at) for j in range(3) for n in range(10)]
        events += [EventRecord(f"o-{n}", f"o-{n}", ids[3], "read", at) for n in range(2)]
        await store.add_events(events, now)
        svc = FeedService(store, corpus=SimpleNamespace(meta=table, vindex=index, dim=16),
                          source_weights={"s2": 0.0}, clock=lambda: now)
        crowd = await svc.crowd()
        decay = 0.5 ** (60 / (6 * 3600))
        assert crowd.trending[ids[0]] == crowd.trending[ids[2]] == pytest.approx(30 * decay)
        assert crowd.trending_top == pytest.approx({ids[1]: 30 * decay, ids[3]: 2 * decay})
        assert crowd.trending_prior == pytest.approx(16 * decay)  # the median of 30 and 2
        items = await svc.trending(k=4)
        assert [it.id for _, it in items] == [ids[1], ids[3]]
    finally:
        table.close()
        await store.close()


def test_a_story_muted_on_one_site_stands_in_as_its_first_copy_the_reader_may_see():
    """Each story left out gets the first of its copies, in the order a list shows them, that
    the reader may be shown; one copy for two of a set left out, none for a story without
    copies or whose every copy is out."""
    stand_ins = readers.stand_ins
    copies = {1: [1, 2, 3], 2: [1, 2, 3], 3: [1, 2, 3], 7: [7, 8]}
    assert stand_ins([1], copies, fits={2, 3}) == [2]
    assert stand_ins([1], copies, fits={3}) == [3]
    assert stand_ins([1, 2], copies, fits={3, 9}) == [3]
    assert stand_ins([7, 5], copies, fits={1, 2}) == []


def test_the_trending_order_leaves_out_the_copies_no_list_shows_first():
    assert readers.trending_order({5: 1.0, 3: 2.0, 4: 2.0, 9: 3.0}, hidden={9}) == [3, 4, 5]
