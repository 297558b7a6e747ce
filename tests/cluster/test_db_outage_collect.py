"""PostgreSQL goes away in the middle of a `tidings collect` round and comes back (issue 5,
item 2, the collector half; the API half is tests/api/test_db_outage.py).

A real collector process, 40 slow feeds on loopback, claims in windows of 5: once the round is
under way the test's own database is closed to connections and the collector's connections
are terminated (the shared server is never stopped; see test_db_outage.py), for a few seconds.

Asserted from outside: the process stays up through the outage and stops cleanly afterwards;
while the database is away it fetches nothing it could not store (its claims fail); it says so
in a few plain log lines, no tracebacks; once the database is back every source is collected
(its in-flight sources after their lease), every story stored once, no source blamed for the
outage (no error count, no back-off parked on it), within a bounded time, with no restart.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime

import pytest

from tests.api.test_db_outage import bring_database_back, take_database_away
from tests.cluster.cluster import Db, FeedSite, Proc, feed_site, sources_toml

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(120)]

N_SOURCES = 40
WINDOW = 5  # collect.global_limit: sources in flight, so at most this many are cut mid-fetch
LEASE_S = 5  # how long the sources cut mid-fetch wait before they are claimed again
TICK_S = 0.5  # Cluster's collect tick: how often a collector retries while the database is away
FEED_DELAY_S = 0.5  # a round of 40 sources takes ~4 s: the outage lands in its middle
OUTAGE_S = 3.0
RECOVERY_BUDGET_S = LEASE_S + 20.0
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")  # a log record's first line
WARNING_OR_ERROR = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) ")
OUTAGE_EVENT = re.compile(r"collect\.(db_unavailable|claim_failed|unrecorded)\b")


async def round_state(db: Db) -> tuple[int, int]:
    """(sources checked so far, sources leased now); (0, 0) before the schema exists."""
    if not await db.exists():
        return 0, 0
    return len(await db.checked_since(EPOCH)), len(await db.leases())


async def all_collected(db: Db, fs: FeedSite):
    checked, leased = await round_state(db)
    stories, urls = await db.stories(), await db.distinct_urls()
    return ((checked, leased, stories, urls) == (N_SOURCES, 0, fs.stories, fs.stories)
            or f"{checked}/{N_SOURCES} checked, {leased} leased, {stories} stories "
               f"({urls} distinct urls) of {fs.stories}")


async def outage(proc: Proc, fs: FeedSite, pg_server: str, name: str) -> dict:
    """Take the database away for OUTAGE_S; returns the feed hits seen during it."""
    await take_database_away(pg_server, name)
    try:
        start = time.monotonic()
        settled = None  # fetches started before the cut finish within FEED_DELAY_S
        while time.monotonic() - start < OUTAGE_S:
            assert proc.alive(), f"the collector exited during the outage:\n{proc.tail()}"
            if settled is None and time.monotonic() - start >= FEED_DELAY_S + 0.5:
                settled = sum(fs.hits().values())
            await asyncio.sleep(0.1)
        return {"settled": settled, "end": sum(fs.hits().values())}
    finally:
        await bring_database_back(pg_server, name)


async def test_collector_rides_out_a_database_outage_mid_round(
        shared_data, make_cluster, cluster_db, pg_server):
    fs = await feed_site(shared_data, N_SOURCES)
    fs.set_delay(FEED_DELAY_S)
    cl, db = make_cluster({"TIDINGS_COLLECT_LEASE_S": str(LEASE_S),
                           "TIDINGS_COLLECT_GLOBAL_LIMIT": str(WINDOW),
                           "TIDINGS_COLLECT_TICK_S": str(TICK_S)})
    cl.sources_file.write_text(sources_toml(fs))
    name = cluster_db.rsplit("/", 1)[1]
    t0 = time.monotonic()
    try:
        proc = cl.start("collect")

        async def under_way():
            checked, leased = await round_state(db)
            return (8 <= checked < N_SOURCES - WINDOW and leased > 0) or \
                f"{checked} checked, {leased} leased"

        await cl.wait_for(under_way, 60, "the round under way", every_s=0.05)
        cut = await db.leases()
        hits = await outage(proc, fs, pg_server, name)
        back_at = time.monotonic()
        # Without the database a claim fails: nothing new is fetched (and then thrown away).
        assert hits["settled"] == hits["end"], f"feeds fetched while the database was away: {hits}"

        await cl.wait_for(lambda: all_collected(db, fs), RECOVERY_BUDGET_S,
                          "every source collected after the outage")
        recovered_s = time.monotonic() - back_at
        assert proc.alive()

        # Nothing stored twice, no source blamed for the outage, the schedule resumed.
        assert await db.stories() == await db.distinct_urls() == fs.stories
        blamed = await db.fetch("SELECT name, error_count, last_error FROM sources "
                                "WHERE error_count > 0 OR last_error IS NOT NULL")
        assert not blamed, f"sources blamed for the database outage: {blamed[:5]}"
        assert await db.value("SELECT count(*) FROM sources WHERE next_check_at <= now()") == 0
        per_feed = fs.hits()
        refetched = sorted(n for n, h in per_feed.items() if h == 2)
        assert min(per_feed.values()) >= 1 and max(per_feed.values()) <= 2, per_feed
        # Only a fetch cut by the outage is redone (at most a window of them).
        assert len(refetched) <= WINDOW, (refetched, sorted(cut))

        assert cl.stop(proc) == 0, proc.tail()  # SIGTERM after the outage: a clean exit
        log = proc.log.read_text(errors="replace").splitlines()
        assert not [ln for ln in log if "Traceback" in ln], \
            "tracebacks for a database outage:\n" + "\n".join(log[-80:])
        noted = [ln for ln in log if OUTAGE_EVENT.search(ln)]
        assert noted, "the outage left no trace in the log:\n" + "\n".join(log[-40:])
        loud = [ln for ln in log if WARNING_OR_ERROR.match(ln)]
        # One line per cut fetch, one per failed retry tick, a few more; each record short.
        assert len(loud) <= WINDOW + OUTAGE_S / TICK_S + 6, "\n".join(loud)
        continuation = [ln for ln in log if ln.strip() and not STAMP.match(ln)]
        assert len(continuation) <= 2 * len(loud), "\n".join(continuation[:60])
        print(f"\ncollector outage: {len(cut)} leased at the cut, {len(refetched)} refetched, "
              f"recovered {recovered_s:.1f}s after the database came back, "
              f"{len(loud)} warning/error lines, total {time.monotonic() - t0:.1f}s")
    finally:
        cl.close()
        await fs.site.close()
