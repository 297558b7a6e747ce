"""The two coordination points under the cluster, tested fast and in-process on PostgreSQL.

- Collectors running side by side share a scheduled round (claims in windows) and still fetch
  each due source once.
- Writers of the `index_changes` log take turns, so a follower can never read a later `seq`
  before an earlier one is committed (the change a replica would otherwise skip for good).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from aggregator.collect import Collector
from aggregator.model import SourceSpec, StoryDraft
from aggregator.normalize import content_hash
from aggregator.settings import CollectSettings
from aggregator.store import CHANGE_LOG_LOCK, Store
from tests.cluster.cluster import asyncpg_dsn, rss
from tests.localsite import LocalSite

pytestmark = pytest.mark.postgres

ARTICLE = {"title": "A title", "text": "A body of text for the feed item."}


@pytest.fixture
async def pg_store(cluster_db):
    s = Store(cluster_db)
    await s.migrate()
    yield s
    await s.close()


async def test_collectors_share_a_round_and_fetch_each_source_once(pg_store):
    n = 60
    settings = CollectSettings(global_limit=5, per_host_limit=5, lease_s=60)
    async with LocalSite() as site:
        now = datetime.now(UTC)
        routes = [site.route(f"/f{i}.xml", body=rss(i, [ARTICLE], now), delay_s=0.05,
                             content_type="application/rss+xml") for i in range(n)]
        await pg_store.sync_sources([SourceSpec(name=f"s{i}", url=site.url(f"/f{i}.xml"),
                                                category="c", interval_s=3600)
                                     for i in range(n)])
        collectors = [Collector(pg_store, settings, owner=f"c{k}") for k in range(3)]
        reports = await asyncio.gather(*(c.run_round() for c in collectors))
    assert [r.hits for r in routes] == [1] * n
    done = [len(r.sources) for r in reports]
    assert sum(done) == n
    # A window of 5 at a time: the first collector cannot have taken the whole round.
    assert sum(d > 0 for d in done) >= 2, done


async def test_index_change_writers_commit_in_seq_order(pg_store):
    res = await pg_store.upsert_stories([StoryDraft(url="https://x.example/1", title="t",
                                                    summary="s", text="b")])
    sid = res.new_ids[0]
    conn = await asyncpg.connect(asyncpg_dsn(pg_store.url))
    try:
        # Another writer in the middle of its transaction: it holds the turn and has a seq.
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CHANGE_LOG_LOCK)
        first = await conn.fetchval("INSERT INTO index_changes (story_id, op, at) "
                                    "VALUES ($1, 'add', now()) RETURNING seq", sid)
        save = asyncio.create_task(pg_store.save_vectors([(sid, 1, b"\0" * 16)], "r"))
        await asyncio.sleep(0.5)
        assert not save.done(), "a second writer committed while the first held its seq"
        assert await pg_store.changes_since(0) == []  # nothing visible out of order
        await tx.commit()
        await asyncio.wait_for(save, 10)
    finally:
        await conn.close()
    seqs = [seq for seq, _, _ in await pg_store.changes_since(0)]
    assert seqs[0] == first and seqs == sorted(seqs) and len(seqs) == 2


async def _blocked(conn, n: int) -> None:
    """Until `n` other backends wait for a lock (an advisory lock, or a row's)."""
    while await conn.fetchval("SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted") < n:
        await asyncio.sleep(0.02)


async def test_takedown_and_vector_save_of_one_story_do_not_deadlock(pg_store):
    """A takedown deletes the story's copies, then the story: the first DELETE's trigger takes
    the change log's turn, so the takedown must already hold the story's row when it does.
    Otherwise an indexer saving the story's vector meanwhile (its row locked, waiting for the
    turn) and the takedown (the turn held, waiting for the row) deadlocked, and PostgreSQL
    failed one of them."""
    body = "The same wire story, syndicated word for word by two sites. " * 10
    res = await pg_store.upsert_stories([
        StoryDraft(url=f"https://{site}/1", title="t", summary="s", text=body,
                   content_hash=content_hash(body)) for site in ("a.example", "b.example")])
    story, copy = res.new_ids
    assert (await pg_store.get_stories([copy]))[copy].duplicate_of == story
    conn = await asyncpg.connect(asyncpg_dsn(pg_store.url))
    try:
        # Another writer of the change log holds the turn, so both below meet at it.
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CHANGE_LOG_LOCK)
        takedown = asyncio.create_task(pg_store.take_down(["https://a.example/1"]))
        await asyncio.wait_for(_blocked(conn, 1), 10)
        save = asyncio.create_task(pg_store.save_vectors([(story, 1, b"\0" * 16)], "r"))
        await asyncio.wait_for(_blocked(conn, 2), 10)
        await tx.commit()
        removed, present = await asyncio.wait_for(asyncio.gather(takedown, save), 30)
    finally:
        await conn.close()
    assert sorted(removed) == [story, copy]
    assert present == []  # deleted first: the vector is not stored
    assert not await pg_store.get_stories([story, copy])
