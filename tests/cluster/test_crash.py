"""Crash safety per role on PostgreSQL (issue 5, item 2): a collector, an indexer and an API
replica, each SIGKILLed in the middle of its work and started again.

After each restart: no story that had been stored is lost (same ids, same URLs), none is
duplicated, every story gets exactly one vector, the index (the replica's memory, the indexer's
saved file) matches the database, and the schedule / backlog resume once the dead process's
leases run out (and not before). The default run has one representative test per role on 100
sources; the `soak` ones (`make soak`) kill repeatedly, at more sources, and all roles at once.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.cluster.cluster import (
    Cluster,
    Db,
    FeedSite,
    Proc,
    block_ids,
    feed_site,
    indexed,
    replicas_hold,
    same_block,
    sources_toml,
    untouched_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

LEASE_S = int(os.environ.get("TIDINGS_CRASH_LEASE_S", "6"))
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
ENV = {
    "TIDINGS_COLLECT_LEASE_S": str(LEASE_S),
    "TIDINGS_INDEX_LEASE_S": str(LEASE_S),
    # Small claim windows, so a kill always leaves claimed-but-unfinished sources behind.
    "TIDINGS_COLLECT_GLOBAL_LIMIT": "10",
}


async def stored(db: Db) -> dict[int, str]:
    return {r[0]: r[1] for r in await db.fetch("SELECT id, url FROM stories")}


async def all_checked(db: Db, n: int, since: datetime = EPOCH):
    done = len(await db.checked_since(since))
    return done == n or f"{done}/{n} sources checked"


async def all_embedded(db: Db):
    v, s = await db.vectors(), len(await db.indexable_ids())
    return (s > 0 and v == s) or f"{v}/{s} vectors"


async def assert_consistent(db: Db, fs: FeedSite, before: dict[int, str]) -> None:
    """Nothing stored before the crash is lost or changed id; nothing is stored twice; every
    story has exactly one vector, stored once (one `add` in the change log)."""
    after = await stored(db)
    lost = {i: u for i, u in before.items() if after.get(i) != u}
    assert not lost, f"{len(lost)} stories lost or changed: {list(lost.items())[:5]}"
    assert len(after) == len(set(after.values())) == fs.stories
    adds = await db.adds_per_story()
    assert set(adds) == await db.indexable_ids()
    twice = {i: n for i, n in adds.items() if n != 1}
    assert not twice, f"stories embedded more than once: {list(twice.items())[:5]}"
    assert not await db.leases()


async def kill_collector_mid_round(cl: Cluster, db: Db, fs: FeedSite, proc: Proc,
                                   since: datetime) -> tuple[set[str], datetime]:
    """SIGKILL `proc` once it has finished a few sources; returns what it still held."""
    fs.set_delay(0.3)

    async def under_way():
        done = await db.checked_since(since)
        mine = [o for o, _ in (await db.leases()).values() if cl.by_owner(o) is proc]
        return (len(done) >= 5 and bool(mine)) or f"{len(done)} done, {len(mine)} held"

    await cl.wait_for(under_way, 60, "collector under way", every_s=0.05)
    cl.kill(proc)
    fs.set_delay(0)
    held = {n: u for n, (o, u) in (await db.leases()).items() if cl.by_owner(o) is proc}
    assert held, "the collector had no claim left when it was killed"
    return set(held), max(held.values())


async def kill_indexer_holding_claims(cl: Cluster, db: Db, proc: Proc) -> int:
    """SIGKILL `proc` while it holds embedding claims (stories leased, vectors not saved).

    The window between claim and save is short with the hashing embedder, so the process is
    frozen (SIGSTOP) the moment claims show up, checked, and killed, or thawed to try again."""
    q = "SELECT count(*) FROM stories WHERE embed_lease_until > now()"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await db.exists() and await db.value(q):
            proc.popen.send_signal(signal.SIGSTOP)
            held = await db.value(q)
            if held:
                cl.kill(proc)
                return held
            proc.popen.send_signal(signal.SIGCONT)
        cl.check_alive()
        await asyncio.sleep(0.005)
    raise AssertionError(f"never caught the indexer holding a claim\n{cl.logs()}")


def saved_index_ids(data_dir: Path) -> set[int]:
    """The ids in the FAISS file an indexer saved (its only durable state)."""
    from recommender.vindex import FaissIndex

    dirs = [d for d in (data_dir / "index").iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    loaded = FaissIndex.load(dirs[0], mmap=False)
    assert loaded is not None, f"no usable index saved in {dirs[0]}"
    return {int(i) for i in np.asarray(loaded.ids())}


@pytest.fixture
async def setup(shared_data, make_cluster, request):
    n = getattr(request, "param", 100)
    fs = await feed_site(shared_data, n)
    cl, db = make_cluster(ENV)
    cl.sources_file.write_text(sources_toml(fs))
    try:
        yield cl, db, fs, n
    finally:
        cl.close()
        await fs.site.close()


async def collector_crash_cycle(cl: Cluster, db: Db, fs: FeedSite, n: int, kills: int) -> dict:
    victim = cl.start("collect")
    since = EPOCH
    figures = {"orphans": 0}
    for _ in range(kills):
        before = await stored(db) if await db.exists() else {}
        orphans, lease_end = await kill_collector_mid_round(cl, db, fs, victim, since)
        figures["orphans"] += len(orphans)
        victim = cl.start("collect")  # the operator restarts it (a new pid, a new owner)
        await untouched_until(cl, fs, orphans, lease_end)
        now = await stored(db)
        assert not [i for i, u in before.items() if now.get(i) != u], "stories lost"
    await cl.wait_for(lambda: all_checked(db, n, since), 60 + LEASE_S, "every source collected")
    return figures


@pytest.mark.parametrize("setup", [100], indirect=True)
async def test_collector_killed_mid_round_restarts_and_resumes(setup):
    cl, db, fs, n = setup
    t0 = time.monotonic()
    cl.start("index")
    await collector_crash_cycle(cl, db, fs, n, kills=1)
    hits = fs.hits()
    assert all(h >= 1 for h in hits.values()) and max(hits.values()) <= 2
    await cl.wait_for(lambda: all_embedded(db), 60, "every story embedded")
    await assert_consistent(db, fs, {})
    # The schedule resumed: every source has its next check ahead, nobody holds a lease.
    late = await db.value("SELECT count(*) FROM sources WHERE next_check_at <= now()")
    assert late == 0
    print(f"\ncollector crash: {time.monotonic() - t0:.1f}s")


@pytest.mark.parametrize("setup", [100], indirect=True)
async def test_indexer_killed_holding_claims_restarts_and_repairs_its_index(setup):
    cl, db, fs, n = setup
    t0 = time.monotonic()
    fs.set_delay(0.3)  # stories arrive over a few seconds
    cl.start("collect")
    indexer = cl.start("index")

    # A clean stop part-way leaves a saved index that the rest of the ingest makes stale.
    async def some_embedded():
        v = await db.vectors() if await db.exists() else 0
        return v >= 20 or f"{v} vectors"

    await cl.wait_for(some_embedded, 60, "first vectors")
    await asyncio.sleep(2)  # its corpus follows the change log every second: let it catch up
    assert cl.stop(indexer) == 0
    stale = saved_index_ids(cl.workdir / indexer.name)
    assert stale, "the clean stop saved an empty index"
    fs.set_delay(0)
    await cl.wait_for(lambda: all_checked(db, n), 60, "stories collected")
    assert len(stale) < len(await db.indexable_ids())

    indexer = cl.start("index", name=indexer.name)
    held = await kill_indexer_holding_claims(cl, db, indexer)
    killed_at = await db.value("SELECT now()")
    # Restarted on the same data dir: it loads the stale file, repairs it against the
    # database, and embeds the dead claims once their lease is out.
    restarted = cl.start("index", name=indexer.name)
    await cl.wait_for(lambda: all_embedded(db), 60 + LEASE_S, "backlog drained after restart")
    late = await db.value("SELECT count(*) FROM story_vectors WHERE embedded_at >= $1", killed_at)
    assert late >= held, "the dead claims were not embedded after the kill"
    await assert_consistent(db, fs, {})
    assert cl.stop(restarted) == 0  # SIGTERM: saves the index file
    assert saved_index_ids(cl.workdir / indexer.name) == await db.indexable_ids()
    loaded = [ln for ln in restarted.tail(100_000).splitlines() if "index.loaded" in ln]
    print(f"\nindexer crash: stale file {len(stale)} ids, {held} claims held at the kill, "
          f"restart {loaded[0].split('index.loaded', 1)[1].strip() if loaded else '?'}, "
          f"{time.monotonic() - t0:.1f}s")


@pytest.mark.parametrize("setup", [100], indirect=True)
async def test_replica_killed_mid_ingest_restarts_and_matches_the_other(setup):
    cl, db, fs, n = setup
    t0 = time.monotonic()
    fs.set_delay(0.2)  # ingest spread over a few seconds, so the kill lands in the middle
    for role in ("collect", "index", "serve", "serve"):
        cl.start(role)
    a, b = [p for p in cl.procs if p.role == "serve"]
    async with httpx.AsyncClient(timeout=10) as client:
        async def some_indexed():
            k = await indexed(client, a)
            return (k or 0) > 0 or f"replica holds {k}"

        await cl.wait_for(some_indexed, 60, "replica serving")
        cl.kill(a)
        a = cl.start("serve", name=a.name)
        fs.set_delay(0)
        await cl.wait_for(lambda: all_checked(db, n), 60, "stories collected")
        await cl.wait_for(lambda: all_embedded(db), 60, "every story embedded")
        want = len(await db.indexable_ids())
        await cl.wait_for(replicas_hold(client, [a, b], want), 30, "both replicas caught up")
        ids = sorted(await db.indexable_ids())
        for sid in random.Random(7).sample(ids, 25):
            x, y = await block_ids(client, a, sid), await block_ids(client, b, sid)
            assert len(x) == 5 and same_block(x, y), f"story {sid}: {x} != {y}"
    await assert_consistent(db, fs, {})
    print(f"\nreplica crash: {time.monotonic() - t0:.1f}s")


# ------------------------------------------------------------------------------ soak


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("setup", [500], indirect=True)
async def test_soak_collector_killed_three_times_in_a_round(setup):
    cl, db, fs, n = setup
    cl.start("index")
    figures = await collector_crash_cycle(cl, db, fs, n, kills=3)
    assert max(fs.hits().values()) <= 2
    await cl.wait_for(lambda: all_embedded(db), 120, "every story embedded")
    await assert_consistent(db, fs, {})
    print(f"\nsoak collector: {figures}")


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("setup", [500], indirect=True)
async def test_soak_indexers_killed_repeatedly_under_ingest(setup):
    cl, db, fs, n = setup
    cl.start("collect")
    other = cl.start("index")
    victim = cl.start("index")
    for _ in range(3):
        await kill_indexer_holding_claims(cl, db, victim)
        victim = cl.start("index", name=victim.name)
    await cl.wait_for(lambda: all_checked(db, n), 120, "stories collected")
    await cl.wait_for(lambda: all_embedded(db), 120 + LEASE_S, "every story embedded")
    await assert_consistent(db, fs, {})
    for p in (other, victim):
        assert cl.stop(p) == 0
        assert saved_index_ids(cl.workdir / p.name) == await db.indexable_ids()


@pytest.mark.soak
@pytest.mark.timeout(900)
@pytest.mark.parametrize("setup", [500], indirect=True)
async def test_soak_whole_cluster_killed_mid_ingest_and_restarted(setup):
    cl, db, fs, n = setup
    fs.set_delay(0.1)
    roles = ("collect", "collect", "index", "index", "serve", "serve")
    for role in roles:
        cl.start(role)

    async def half_way():
        done = len(await db.checked_since(EPOCH)) if await db.exists() else 0
        return done >= n // 2 or f"{done}/{n}"

    await cl.wait_for(half_way, 120, "half the sources collected")
    before = await stored(db)
    for p in list(cl.procs):
        cl.kill(p)
    fs.set_delay(0)
    for p in list(cl.procs):
        cl.start(p.role, name=p.name)
    live = [p for p in cl.procs if p.alive()]
    await cl.wait_for(lambda: all_checked(db, n), 120 + LEASE_S, "every source collected")
    await cl.wait_for(lambda: all_embedded(db), 120 + LEASE_S, "every story embedded")
    await assert_consistent(db, fs, before)
    want = len(await db.indexable_ids())
    replicas = [p for p in live if p.role == "serve"]
    async with httpx.AsyncClient(timeout=10) as client:
        await cl.wait_for(replicas_hold(client, replicas, want), 60, "replicas caught up")
        for sid in random.Random(3).sample(sorted(await db.indexable_ids()), 40):
            x, y = [await block_ids(client, r, sid) for r in replicas]
            assert len(x) == 5 and same_block(x, y), f"story {sid}: {x} != {y}"
